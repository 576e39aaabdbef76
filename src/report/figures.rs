//! The report's figures, prepared from an evaluation and drawn: the model comparison, the
//! predictions, each model's own plots, every policy against the HPA's frontier, and the replay
//! of the busiest service (read a batch at a time from `replay.parquet`).

use std::collections::BTreeMap;
use std::path::Path;

use anyhow::{Context, Result};
use datafusion::arrow::array::AsArray;
use datafusion::arrow::datatypes::{DataType, Float64Type, Int64Type};

use super::{Report, plots};
use crate::evaluation::Evaluation;
use crate::evaluation::policy_name::PolicyName;
use crate::models::ModelKind;
use crate::models::lstm_cnn::Epoch;

/// The figures, by file, with their captions (the HTML report lists them in this order).
pub const FILES: &[(&str, &str)] = &[
    ("model_comparison.png", "Models on the common temporal hold-out"),
    ("frontier.png", "Every policy against the reactive HPA's frontier"),
    ("replay.png", "Autoscaling replay of the busiest service"),
    ("prediction_comparison.png", "Predicted vs actual, error histograms and the last hold-out steps"),
    ("rf_predictions.png", "Random Forest: actual vs predicted over the hold-out"),
    ("lstm_cnn_predictions.png", "LSTM-CNN: actual vs predicted over the hold-out"),
    ("rf_feature_importance.png", "Random Forest feature importance"),
    ("lstm_cnn_training_history.png", "LSTM-CNN training history"),
];

/// Draws every figure of `r` into `out`.
pub fn draw(out: &Path, r: &Report, eval: &Evaluation, eval_dir: &Path, model_dirs: &[std::path::PathBuf]) -> Result<()> {
    use super::Metric;
    let value = |metric: Metric| r.honest_comparison.iter().find(|m| m.metric == metric).map(|m| m.values.clone()).unwrap_or_default();
    let bars = [Metric::Rmse, Metric::Mae, Metric::R2, Metric::ExactAccuracy, Metric::Within1Accuracy, Metric::TrainingSeconds].map(|metric| plots::Bars {
        metric: metric.label(),
        values: value(metric),
        higher_is_better: metric.higher_is_better(),
    });
    plots::model_comparison(&out.join("model_comparison.png"), &r.models, &bars)?;

    // Predictions: actual vs each compared model on the common hold-out rows.
    let table = crate::io::table::read_table(&eval_dir.join(crate::cache::OUTPUT))?;
    let f64s = |name: &str| -> Result<Vec<f64>> {
        let c = datafusion::arrow::compute::cast(table.column_by_name(name).with_context(|| format!("no column `{name}`"))?, &DataType::Float64)?;
        Ok(c.as_primitive::<Float64Type>().iter().map(|v| v.unwrap_or(f64::NAN)).collect())
    };
    let actual = f64s("target_replicas")?;
    let predicted: Vec<Vec<f64>> = r.models.iter().map(|m| f64s(&format!("{m}_prediction"))).collect::<Result<_>>()?;
    let services: Vec<String> = {
        let c = datafusion::arrow::compute::cast(table.column_by_name("service_name").context("no service_name")?, &DataType::Utf8)?;
        c.as_string::<i32>().iter().map(|s| s.unwrap_or("").to_string()).collect()
    };
    let busy = r.replay_service.clone().or_else(|| services.first().cloned()).unwrap_or_default();
    let ts: Vec<i64> = datafusion::arrow::compute::cast(table.column_by_name("timestamp").context("no timestamp")?, &DataType::Int64)?
        .as_primitive::<Int64Type>()
        .values()
        .to_vec();
    let mut rows: Vec<usize> = (0..services.len()).filter(|&i| services[i] == busy).collect();
    rows.sort_by_key(|&i| ts[i]);
    let last: Vec<usize> = rows[rows.len().saturating_sub(200)..].to_vec();
    let mut series = vec![("actual target".to_string(), last.iter().map(|&i| actual[i]).collect::<Vec<f64>>())];
    for (m, p) in r.models.iter().zip(&predicted) {
        let (lo, hi) = (eval.replay_params.min_replicas, eval.replay_params.max_replicas);
        series.push((m.clone(), last.iter().map(|&i| crate::models::scores::replicas(p[i], lo, hi)).collect()));
    }
    let per_model: Vec<plots::ModelPredictions> =
        r.models.iter().zip(&predicted).map(|(m, p)| plots::ModelPredictions { name: m, actual: &actual, predicted: p }).collect();
    plots::prediction_comparison(
        &out.join("prediction_comparison.png"),
        &per_model,
        &format!("{busy}: the last {} hold-out steps (predicted replicas)", last.len()),
        &series,
    )?;

    // The old training scripts' plot per model (rf_predictions.png, lstm_cnn_predictions.png),
    // for the compared model of each kind: its raw output against the target over the hold-out.
    for (file, kind) in [("rf_predictions.png", ModelKind::RandomForest), ("lstm_cnn_predictions.png", ModelKind::LstmCnn)] {
        let Some(i) = r.models.iter().position(|m| eval.models.iter().any(|e| &e.info.stage == m && e.kind == kind)) else { continue };
        let series = [
            ("actual target".to_string(), rows.iter().map(|&j| actual[j]).collect()),
            ("predicted (raw output)".to_string(), rows.iter().map(|&j| predicted[i][j]).collect()),
        ];
        plots::model_predictions(&out.join(file), &per_model[i], &format!("{busy}: the whole hold-out ({} steps)", rows.len()), &series)?;
    }

    // Per-model plots from the model folders.
    for dir in model_dirs {
        let meta = crate::models::read_any_meta(dir)?;
        let name = dir_stage(eval, &meta).unwrap_or_else(|| meta.kind.to_string());
        let files = crate::models::ModelDir::new(dir);
        if meta.kind == ModelKind::RandomForest && files.importances_json().exists() && !out.join("rf_feature_importance.png").exists() {
            let imp: Vec<serde_json::Value> = serde_json::from_slice(&std::fs::read(files.importances_json())?)?;
            let pairs: Vec<(String, f64)> =
                imp.iter().map(|v| (v["feature"].as_str().unwrap_or("").to_string(), v["importance"].as_f64().unwrap_or(0.0))).collect();
            plots::feature_importance(&out.join("rf_feature_importance.png"), &name, &pairs)?;
        }
        if meta.kind == ModelKind::LstmCnn && files.history_json().exists() && !out.join("lstm_cnn_training_history.png").exists() {
            let history: Vec<Epoch> = serde_json::from_slice(&std::fs::read(files.history_json())?)?;
            let best = meta.metrics["best_epoch"].as_u64().unwrap_or(0) as usize;
            plots::training_history(&out.join("lstm_cnn_training_history.png"), &name, &history, best)?;
        }
    }

    // Every policy against the HPA's frontier.
    if !r.frontier.is_empty() {
        let hpa: Vec<(f64, f64, f64)> = r.frontier.iter().map(|q| (q.target, q.pod_hours, q.under_provisioned_minutes)).collect();
        let points: Vec<plots::PolicyPoint> = r
            .replay
            .iter()
            .filter(|p| PolicyName::from(p.policy.as_str()) != PolicyName::Hpa)
            .map(|p| plots::PolicyPoint {
                policy: p.policy.clone(),
                pod_hours: p.pod_hours,
                minutes: p.under_provisioned_minutes,
                margin: p.frontier_margin.as_ref().map(|m| m.minutes),
                saving: p.frontier_saving.as_ref().map(|s| s.pod_hours),
            })
            .collect();
        let families: Vec<plots::Family> = r
            .risk
            .iter()
            .filter(|(_, members)| !members.is_empty())
            .map(|(model, members)| plots::Family {
                model: model.clone(),
                members: members.iter().map(|m| (m.level, m.pod_hours, m.under_provisioned_minutes)).collect(),
            })
            .collect();
        plots::frontier(&out.join("frontier.png"), &hpa, &points, &families)?;
    }

    // The replay of the busiest service.
    if let Some(service) = &r.replay_service {
        // Batch by batch, keeping the service's rows: the file holds every service and policy.
        let shown = |p: &str| match PolicyName::from(p) {
            PolicyName::Recorded | PolicyName::Hpa => true,
            PolicyName::Forecast(stage) => r.models.contains(&stage),
            _ => false,
        };
        let mut traces: BTreeMap<String, plots::PolicyTrace> = BTreeMap::new();
        let mut start = i64::MAX;
        let read = |c: &str| ["service_name", "policy", "timestamp", "replicas", "utilization"].contains(&c);
        for batch in crate::io::table::read_batches(&eval_dir.join("replay.parquet"), read)? {
            let replay = batch?;
            let s = replay.column_by_name("service_name").context("replay has no service_name")?.as_string::<i32>();
            let pol = replay.column_by_name("policy").context("replay has no policy")?.as_string::<i32>();
            let t = replay.column_by_name("timestamp").context("replay has no timestamp")?.as_primitive::<Int64Type>();
            let reps = replay.column_by_name("replicas").context("replay has no replicas")?.as_primitive::<Float64Type>();
            let util = replay.column_by_name("utilization").context("replay has no utilization")?.as_primitive::<Float64Type>();
            for i in (0..replay.num_rows()).filter(|&i| s.value(i) == service) {
                start = start.min(t.value(i));
                if !shown(pol.value(i)) {
                    continue;
                }
                let tr = traces.entry(pol.value(i).to_string()).or_insert_with(|| plots::PolicyTrace {
                    policy: pol.value(i).to_string(),
                    hours: vec![],
                    replicas: vec![],
                    utilization: vec![],
                });
                // Microseconds for now, hours from the service's start once it is known.
                tr.hours.push(t.value(i) as f64);
                tr.replicas.push(reps.value(i));
                tr.utilization.push(util.value(i));
            }
        }
        for tr in traces.values_mut() {
            for h in &mut tr.hours {
                *h = (*h - start as f64) / 3.6e9;
            }
        }
        let mut traces: Vec<plots::PolicyTrace> = traces.into_values().collect();
        traces.sort_by(|a, b| super::policy_order(&a.policy, &b.policy));
        plots::replay(&out.join("replay.png"), service, &traces, &r.models, eval.replay_params.target_utilization)?;
    }
    Ok(())
}

/// The stage name the evaluation knows a model folder by (its lineage names the split only).
fn dir_stage(eval: &Evaluation, meta: &crate::models::ModelMeta) -> Option<String> {
    let split = meta.lineage["split_stage"].as_str()?;
    eval.models.iter().find(|m| m.info.split == split && m.kind == meta.kind).map(|m| m.info.stage.clone())
}
