//! The comparison report: what the old system printed (both models' metrics, who wins each,
//! times, a recommendation), now decided on the honest hold-out and the autoscaling replay.
//!
//! [`Report`] is built once from the evaluation and written three ways: `comparison_report.json`
//! (the struct itself), `comparison_report.txt` and `report.html` (with the plots inlined).

pub mod html;
pub mod plots;
mod text;

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use crate::evaluation::replay;
use crate::evaluation::Confusion;
use crate::models::metrics::Scores;
use crate::evaluation::{Evaluation, ModelEvaluation};

pub use text::render as render_text;

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct MetricRow {
    pub metric: String,
    pub higher_is_better: bool,
    /// One value per model, in `Report::models` order.
    pub values: Vec<f64>,
    pub winner: Option<String>,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct OwnSplit {
    pub model: String,
    pub split: String,
    pub scores: Option<Scores>,
    /// Trained on rows of the hold-out's time range (a shuffled split of overlapping windows).
    pub leaks_future: bool,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct PolicyRow {
    pub policy: String,
    pub under_provisioned_minutes: f64,
    pub over_provisioned_pod_hours: f64,
    pub pod_hours: f64,
    pub actions_per_hour: f64,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Report {
    pub generated_at: String,
    pub pipeline: String,
    pub holdout: String,
    /// Models in the honest comparison (trained without the hold-out, same labels).
    pub models: Vec<String>,
    pub kinds: Vec<String>,
    pub honest_comparison: Vec<MetricRow>,
    pub own_split: Vec<OwnSplit>,
    pub per_service: BTreeMap<String, BTreeMap<String, Scores>>,
    pub confusion: BTreeMap<String, Confusion>,
    pub replay_method: String,
    pub replay_params: replay::Params,
    pub replay: Vec<PolicyRow>,
    pub replay_service: Option<String>,
    pub label_rules: BTreeMap<String, String>,
    pub better_label_rule: Option<String>,
    pub recommendation: String,
    pub recommended_model: Option<String>,
    pub notes: Vec<String>,
}

pub const REPLAY_METHOD: &str = "Load is the recorded request rate. Per service, CPU is fitted on the training part as \
base + slope × (requests/s per pod), from the recorded replicas; that is the per-pod capacity. Each policy sets a replica \
count per hold-out row, held until the next row, and its utilisation is the fitted CPU of that row's load over its pods. \
Under-provisioned minutes: time with utilisation over the target (a proxy for SLO violations). Surplus pod-hours: pods \
beyond the fewest that would have kept utilisation under the target. Policies: the recorded replicas, a reactive HPA \
(ceil(replicas × utilisation / HPA target), 10 % tolerance, 5-minute scale-down stabilisation) and each model's predicted \
replicas. Open loop: inputs come from the recorded run, so a policy's decisions do not change later load or features.";

/// Replay policies as tables and plots list them: the recorded replicas, the HPA, then models.
pub fn policy_order(a: &str, b: &str) -> std::cmp::Ordering {
    let rank = |p: &str| match p {
        "recorded" => 0,
        "hpa" => 1,
        _ => 2,
    };
    rank(a).cmp(&rank(b)).then(a.cmp(b))
}

/// Ranks for the replay: fewer under-provisioned minutes first, then fewer surplus pod-hours.
fn replay_key(s: &replay::Score) -> (f64, f64) {
    (s.under_provisioned_minutes, s.over_provisioned_pod_hours)
}

pub fn build(eval: &Evaluation, pipeline: &str) -> Report {
    let honest: Vec<&ModelEvaluation> = {
        let h: Vec<_> = eval.models.iter().filter(|m| m.info.honest && m.info.label_rule == eval.holdout_label_rule).collect();
        if h.is_empty() { eval.models.iter().collect() } else { h }
    };
    let models: Vec<String> = honest.iter().map(|m| m.info.stage.clone()).collect();
    let row = |metric: &str, higher: bool, f: &dyn Fn(&ModelEvaluation) -> f64| {
        let values: Vec<f64> = honest.iter().map(|m| f(m)).collect();
        let best = values
            .iter()
            .enumerate()
            .filter(|(_, v)| v.is_finite())
            .max_by(|a, b| if higher { a.1.total_cmp(b.1) } else { b.1.total_cmp(a.1) })
            .map(|(i, _)| models[i].clone());
        let tie = values.iter().filter(|v| v.is_finite()).all(|v| *v == values[0]) && values.len() > 1;
        MetricRow { metric: metric.to_string(), higher_is_better: higher, values, winner: if tie { None } else { best } }
    };
    let nan = f64::NAN;
    let honest_comparison = vec![
        row("RMSE", false, &|m| m.holdout.overall.rmse),
        row("MAE", false, &|m| m.holdout.overall.mae),
        row("R²", true, &|m| m.holdout.overall.r2),
        row("exact accuracy", true, &|m| m.holdout.overall.exact_accuracy),
        row("within-1 accuracy", true, &|m| m.holdout.overall.within_1_accuracy),
        row("action agreement", true, &|m| m.holdout.confusion.agreement()),
        row("under-provisioned minutes (replay)", false, &|m| m.replay.under_provisioned_minutes),
        row("surplus pod-hours (replay)", false, &|m| m.replay.over_provisioned_pod_hours),
        row("training seconds", false, &|m| m.training_seconds.unwrap_or(nan)),
        row("single prediction µs", false, &|m| m.single_prediction_us.unwrap_or(nan)),
    ];
    let own_split = eval
        .models
        .iter()
        .map(|m| OwnSplit { model: m.info.stage.clone(), split: m.info.split.clone(), scores: m.own_split.clone(), leaks_future: !m.info.honest })
        .collect();
    let mut per_service: BTreeMap<String, BTreeMap<String, Scores>> = BTreeMap::new();
    for m in &honest {
        for (s, sc) in &m.holdout.per_service {
            per_service.entry(s.clone()).or_default().insert(m.info.stage.clone(), sc.clone());
        }
    }
    let confusion = honest.iter().map(|m| (m.info.stage.clone(), m.holdout.confusion.clone())).collect();
    let mut replay: Vec<PolicyRow> = eval
        .replay
        .iter()
        .map(|(policy, s)| PolicyRow {
            policy: policy.clone(),
            under_provisioned_minutes: s.under_provisioned_minutes,
            over_provisioned_pod_hours: s.over_provisioned_pod_hours,
            pod_hours: s.pod_hours,
            actions_per_hour: s.actions_per_hour(),
        })
        .collect();
    replay.sort_by(|a, b| policy_order(&a.policy, &b.policy));

    let better_label_rule = eval
        .best_by_label_rule
        .iter()
        .filter_map(|(rule, stage)| eval.replay.get(stage).map(|s| (rule.clone(), replay_key(s))))
        .min_by(|a, b| a.1.partial_cmp(&b.1).unwrap_or(std::cmp::Ordering::Equal))
        .map(|(rule, _)| rule)
        .filter(|_| eval.best_by_label_rule.len() > 1);

    let (recommended_model, recommendation) = recommend(eval, &honest);
    let mut notes = eval.notes.clone();
    notes.insert(
        0,
        "The old report scored the Random Forest on a shuffled split: its test rows sit between training rows whose windows \
overlap them, so that score leaks the future. The common temporal hold-out above (the last part of each service's time, \
unseen by the models compared) is the honest comparison."
            .to_string(),
    );
    Report {
        generated_at: chrono::Utc::now().to_rfc3339_opts(chrono::SecondsFormat::Secs, true),
        pipeline: pipeline.to_string(),
        holdout: format!(
            "{} rows of {} services, {} to {} (test part of `{}`, label rule `{}`)",
            eval.rows,
            eval.services,
            time(eval.first_timestamp),
            time(eval.last_timestamp),
            eval.holdout_stage,
            eval.holdout_label_rule
        ),
        kinds: honest.iter().map(|m| m.kind.clone()).collect(),
        models,
        honest_comparison,
        own_split,
        per_service,
        confusion,
        replay_method: REPLAY_METHOD.to_string(),
        replay_params: eval.replay_params.clone(),
        replay,
        replay_service: eval.busy_service.clone(),
        label_rules: eval.best_by_label_rule.clone(),
        better_label_rule,
        recommendation,
        recommended_model,
        notes,
    }
}

fn time(us: i64) -> String {
    chrono::DateTime::from_timestamp_micros(us).map(|t| t.format("%Y-%m-%d %H:%M").to_string()).unwrap_or_default()
}

/// The model to serve: the best replay among the honest candidates, measured against the HPA.
fn recommend(eval: &Evaluation, honest: &[&ModelEvaluation]) -> (Option<String>, String) {
    let Some(best) = honest.iter().min_by(|a, b| {
        replay_key(&a.replay)
            .partial_cmp(&replay_key(&b.replay))
            .unwrap_or(std::cmp::Ordering::Equal)
            .then(b.holdout.overall.exact_accuracy.total_cmp(&a.holdout.overall.exact_accuracy))
    }) else {
        return (None, "No model was evaluated.".into());
    };
    let name = &best.info.stage;
    let mut text = format!(
        "Serve {name} ({}): on the honest hold-out it has the best replay ({:.0} under-provisioned minutes, {:.1} surplus pod-hours) \
with {:.1}% exact and {:.1}% within-1 accuracy.",
        best.kind,
        best.replay.under_provisioned_minutes,
        best.replay.over_provisioned_pod_hours,
        100.0 * best.holdout.overall.exact_accuracy,
        100.0 * best.holdout.overall.within_1_accuracy
    );
    if let Some(hpa) = eval.replay.get("hpa") {
        if replay_key(&best.replay) > replay_key(hpa) {
            text.push_str(&format!(
                " The reactive HPA replays better still ({:.0} minutes, {:.1} pod-hours): keep the HPA as the primary scaler and use the model's \
decisions as a floor or an early warning until a model beats it.",
                hpa.under_provisioned_minutes, hpa.over_provisioned_pod_hours
            ));
        } else {
            text.push_str(&format!(" It also beats the reactive HPA ({:.0} minutes, {:.1} pod-hours).", hpa.under_provisioned_minutes, hpa.over_provisioned_pod_hours));
        }
    }
    (Some(name.clone()), text)
}
