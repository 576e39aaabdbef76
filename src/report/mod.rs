//! The comparison report: what the old system printed (both models' metrics, who wins each,
//! times, a recommendation), now decided on the honest hold-out and the autoscaling replay.
//!
//! [`Report`] is built once from the evaluation and written three ways: `comparison_report.json`
//! (the struct itself), `comparison_report.txt` and `report.html` (with the plots inlined).

pub mod figures;
pub mod html;
mod metric;
pub mod plots;
mod text;

use crate::evaluation::policy_name::PolicyName;
use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use crate::evaluation::Confusion;
use crate::evaluation::replay;
use crate::evaluation::replay::frontier::{Margin, Point, Saving};
use crate::evaluation::{Evaluation, ModelEvaluation};
use crate::models::scores::Scores;

pub use metric::Metric;
pub use text::render as render_text;

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct MetricRow {
    pub metric: Metric,
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
    /// What the policy is, in words.
    pub kind: String,
    pub under_provisioned_minutes: f64,
    /// % of requests that arrived above the ready pods' capacity at the target.
    pub requests_over_capacity_percent: f64,
    pub over_provisioned_pod_hours: f64,
    pub pod_hours: f64,
    pub actions_per_hour: f64,
    /// Against the reactive HPA's frontier at the same pod-hours.
    pub frontier_margin: Option<Margin>,
    /// Against the same frontier at the same under-provisioned minutes.
    #[serde(default)]
    pub frontier_saving: Option<Saving>,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Report {
    pub generated_at: String,
    pub pipeline: String,
    pub holdout: String,
    /// Models in the honest comparison (trained without the hold-out, same labels).
    pub models: Vec<String>,
    pub kinds: Vec<crate::models::ModelKind>,
    pub honest_comparison: Vec<MetricRow>,
    pub own_split: Vec<OwnSplit>,
    pub per_service: BTreeMap<String, BTreeMap<String, Scores>>,
    pub confusion: BTreeMap<String, Confusion>,
    pub replay_method: String,
    pub replay_params: replay::Params,
    pub replay: Vec<PolicyRow>,
    /// The reactive HPA at each target: pod-hours against under-provisioned minutes.
    pub frontier: Vec<Point>,
    /// The risk families of the models that forecast demand (the `demand` label rule), whose
    /// levels mean "the chance that demand exceeds the forecast".
    #[serde(default)]
    pub risk: BTreeMap<String, Vec<crate::evaluation::risk::Scored>>,
    pub replay_service: Option<String>,
    pub label_rules: BTreeMap<String, String>,
    pub better_label_rule: Option<String>,
    pub recommendation: String,
    pub recommended_model: Option<String>,
    pub notes: Vec<String>,
}

pub const REPLAY_METHOD: &str = "Load is the recorded request rate. Per service, CPU is fitted on the training part as \
base + slope × (requests/s per pod), from the recorded replicas; that is the per-pod capacity. Time runs on its own clock: \
a decision at a row uses rows up to it only, a new pod serves pod_startup_seconds after it is asked for (and costs pod-hours \
while it starts), a removed pod stops at once. The reactive HPA sees utilisation averaged over metrics_window_seconds, \
metrics_delay_seconds late, every hpa_sync_seconds, asks for ceil(ready pods × utilisation / target) outside its tolerance, \
and scales down only to the highest recommendation of the stabilisation window. Forecasting policies (`+hpa`, \
seasonal_naive, holt_winters) take max(reactive HPA, forecast pods) with the same stabilisation; a model's policy without \
`+hpa` uses its prediction as the replica count, as the old system did. Under-provisioned minutes: time with the ready \
pods over the target utilisation. The frontier is the reactive HPA replayed at several targets; a policy beats the HPA \
when it has fewer under-provisioned minutes than the frontier at its own pod-hours (the margin). The load is open-loop: \
a policy's decisions do not change later requests.";

/// Replay policies as tables and plots list them: the recorded replicas, the HPA, the
/// baselines, then models (each as predicted, then with the HPA floor).
pub fn policy_order(a: &str, b: &str) -> std::cmp::Ordering {
    let rank = |p: &str| match PolicyName::from(p) {
        PolicyName::Recorded => 0,
        PolicyName::Hpa => 1,
        PolicyName::SeasonalNaive => 2,
        PolicyName::HoltWinters => 3,
        _ => 4,
    };
    rank(a).cmp(&rank(b)).then(a.cmp(b))
}

/// What a policy of the replay is; `target`: the HPA target under a forecast.
/// What a policy of the replay is, in words. `target`: the HPA floor a forecasting policy ran
/// with (`Some(None)`: the forecast alone, stabilised; `None`: not recorded).
pub fn policy_kind(policy: &str, target: Option<Option<f64>>) -> String {
    let under = match target {
        Some(None) => "stabilised, no HPA floor: ".to_string(),
        Some(Some(t)) => format!("HPA at {t:.0}% + "),
        None => "HPA + ".to_string(),
    };
    match PolicyName::from(policy) {
        PolicyName::Recorded => "the replica counts in the data".into(),
        PolicyName::Hpa => "reactive HPA".into(),
        PolicyName::SeasonalNaive => format!("{under}the same window a day (or week) before"),
        PolicyName::HoltWinters => format!("{under}Holt-Winters forecast of the load"),
        PolicyName::Forecast(_) => format!("{under}the model's forecast"),
        PolicyName::Predicted(_) => "the model's prediction as replicas".into(),
    }
}

pub fn build(eval: &Evaluation, pipeline: &str) -> Report {
    let honest: Vec<&ModelEvaluation> = {
        let h: Vec<_> = eval.models.iter().filter(|m| m.info.honest && m.info.label_rule == eval.holdout_label_rule).collect();
        if h.is_empty() { eval.models.iter().collect() } else { h }
    };
    let models: Vec<String> = honest.iter().map(|m| m.info.stage.clone()).collect();
    let row = |metric: Metric| {
        let higher = metric.higher_is_better();
        let values: Vec<f64> = honest.iter().map(|m| metric.of(m)).collect();
        let best = values
            .iter()
            .enumerate()
            .filter(|(_, v)| v.is_finite())
            .max_by(|a, b| if higher { a.1.total_cmp(b.1) } else { b.1.total_cmp(a.1) })
            .map(|(i, _)| models[i].clone());
        let tie = values.iter().filter(|v| v.is_finite()).all(|v| *v == values[0]) && values.len() > 1;
        MetricRow { metric, higher_is_better: higher, values, winner: if tie { None } else { best } }
    };
    let honest_comparison = Metric::ALL.into_iter().map(row).collect();
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
            kind: policy_kind(policy, eval.hpa_targets.get(policy).copied()),
            under_provisioned_minutes: s.under_provisioned_minutes,
            requests_over_capacity_percent: 100.0 * s.over_capacity_share(),
            over_provisioned_pod_hours: s.over_provisioned_pod_hours,
            pod_hours: s.pod_hours,
            actions_per_hour: s.actions_per_hour(),
            frontier_margin: eval.margins.get(policy).cloned(),
            frontier_saving: eval.savings.get(policy).cloned(),
        })
        .collect();
    replay.sort_by(|a, b| policy_order(&a.policy, &b.policy));

    let better_label_rule = eval
        .best_by_label_rule
        .iter()
        .filter_map(|(rule, stage)| eval.margins.get(&PolicyName::Forecast(stage.clone()).to_string()).map(|m| (rule.clone(), m.minutes)))
        .max_by(|a, b| a.1.total_cmp(&b.1))
        .map(|(rule, _)| rule)
        .filter(|_| eval.best_by_label_rule.len() > 1);

    // Every model that never saw the hold-out competes to be served, whatever its labels.
    let unseen: Vec<&ModelEvaluation> = eval.models.iter().filter(|m| m.info.honest).collect();
    let (recommended_model, recommendation) = recommend(eval, &unseen);
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
        kinds: honest.iter().map(|m| m.kind).collect(),
        models,
        honest_comparison,
        own_split,
        per_service,
        confusion,
        replay_method: REPLAY_METHOD.to_string(),
        replay_params: eval.replay_params.clone(),
        replay,
        frontier: eval.frontier.points.clone(),
        risk: eval
            .risk
            .iter()
            .filter(|(stage, _)| eval.models.iter().any(|m| &m.info.stage == *stage && m.info.label_rule == "demand"))
            .map(|(s, f)| (s.clone(), f.clone()))
            .collect(),
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

/// The policy to serve: of the unseen-hold-out models' forecasts under the reactive HPA,
/// the one furthest below the HPA's frontier, if any is below it at all.
fn recommend(eval: &Evaluation, honest: &[&ModelEvaluation]) -> (Option<String>, String) {
    if honest.is_empty() {
        return (None, "No model was evaluated.".into());
    }
    // What publish would promote: the forecast under the HPA (the models as the old system
    // used them stay in the table, for comparison).
    let candidates = honest.iter().map(|m| PolicyName::Forecast(m.info.stage.clone()).to_string());
    let best = candidates.filter_map(|policy| Some((eval.margins.get(&policy)?.clone(), policy))).max_by(|a, b| a.0.minutes.total_cmp(&b.0.minutes));
    let Some((margin, policy)) = best else {
        return (None, "No service could be replayed (CPU does not rise with load per pod), so no policy can be judged against the HPA; keep the HPA.".into());
    };
    let score = &eval.replay[&policy];
    let name = PolicyName::from(policy.as_str());
    let model = honest.iter().find(|m| Some(m.info.stage.as_str()) == name.stage()).expect("a candidate is an honest model");
    let facts = format!(
        "{:.0} under-provisioned minutes at {:.1} pod-hours, {}; {:.1}% exact accuracy on the hold-out",
        score.under_provisioned_minutes,
        score.pod_hours,
        margin.describe(),
        100.0 * model.holdout.overall.exact_accuracy
    );
    if margin.beats_hpa() {
        let how = match eval.hpa_targets.get(&policy) {
            Some(None) => "alone (stabilised; no HPA floor did better)".to_string(),
            Some(Some(t)) => format!("as a floor under the reactive HPA at a {t:.0}% target"),
            None => "as a floor under the reactive HPA".to_string(),
        };
        (Some(model.info.stage.clone()), format!("Serve {} ({}) {how}: {facts}.", model.info.stage, model.kind))
    } else {
        (None, format!("Keep the reactive HPA: no model's policy beats it at the same pod-hours. The best, {policy}, has {facts}."))
    }
}
