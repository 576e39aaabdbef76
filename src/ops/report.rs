//! `op: report`: the comparison report and its plots from an evaluation.
//!
//! ```yaml
//! report:
//!   op: report
//!   deps: [evaluate, train_random_forest, train_lstm_cnn]   # the evaluation, then models for their plots
//! ```
//! Writes `comparison_report.txt` / `.json`, `model_comparison.png`, `prediction_comparison.png`,
//! `rf_predictions.png`, `lstm_cnn_predictions.png`, `rf_feature_importance.png`, `lstm_cnn_training_history.png`, `replay.png` and a
//! self-contained `report.html`; its table is the replay summary per policy. Each run links
//! the report into `artifacts/runs/<run-id>/report/`.

use std::path::Path;
use std::sync::Arc;

use anyhow::{Context, Result};
use async_trait::async_trait;
use datafusion::arrow::array::{Array, Float64Array, RecordBatch, StringArray};
use datafusion::arrow::datatypes::{DataType, Field, Schema};
use serde_json::json;

use crate::dag::spec::{Pipeline, SpecError, StageSpec};
use crate::dag::stage::{Stage, StageContext, StageOutput};
use crate::evaluation::{EVALUATION, Evaluation};
use crate::report::{self, Report};

pub struct ReportOp;

impl ReportOp {
    pub fn from_spec(p: &Pipeline, spec: &StageSpec) -> Result<ReportOp, SpecError> {
        let first = spec.deps.first().and_then(|d| p.stages.get(d));
        if first.is_none_or(|s| s.op != "evaluate") {
            return Err(p.error(spec, Some("deps"), "op `report` needs an evaluate stage first (then, optionally, train stages for their plots)"));
        }
        for d in &spec.deps[1..] {
            if p.stages[d].op != "train" {
                return Err(p.error(spec, Some("deps"), format!("`{d}` is not a train stage")));
            }
        }
        if !spec.params.is_empty() {
            let field = spec.params.keys().next().cloned().unwrap_or_default();
            return Err(p.error(spec, Some(&field), format!("op `report` takes no field `{field}`")));
        }
        Ok(ReportOp)
    }
}

#[async_trait]
impl Stage for ReportOp {
    fn version(&self) -> u32 {
        // 2: rf_predictions.png and lstm_cnn_predictions.png. 3: the replay with delays, frontier.png.
        3
    }

    fn params(&self) -> serde_json::Value {
        json!({})
    }

    fn describe(&self) -> String {
        "text, JSON, HTML and PNG plots".into()
    }

    async fn run(&self, ctx: &StageContext) -> Result<StageOutput> {
        let mut deps = ctx.upstream.values();
        let eval_entry = deps.next().context("report needs an evaluate stage")?.clone();
        let model_dirs: Vec<std::path::PathBuf> = deps.map(|e| e.dir.clone()).collect();
        let out = ctx.out_dir.clone();
        let pipeline = ctx.pipeline.name.clone();
        let progress = ctx.progress.clone();
        let report = tokio::task::spawn_blocking(move || -> Result<Report> {
            let eval: Evaluation = serde_json::from_slice(&std::fs::read(eval_entry.dir.join(EVALUATION))?).context("reading the evaluation")?;
            let report = report::build(&eval, &pipeline);
            let text = report::render_text(&report);
            crate::io::fs::write_atomic(&out.join("comparison_report.txt"), text.as_bytes())?;
            crate::io::fs::write_atomic(&out.join("comparison_report.json"), &serde_json::to_vec_pretty(&report)?)?;
            progress.message("drawing plots");
            report::figures::draw(&out, &report, &eval, &eval_entry.dir, &model_dirs)?;
            let html = report::html::render(&report, &text, &out, report::figures::FILES);
            crate::io::fs::write_atomic(&out.join("report.html"), html.as_bytes())?;
            write_summary_table(&out.join(crate::cache::OUTPUT), &report)?;
            Ok(report)
        })
        .await??;
        let mut notes = vec![report.recommendation.clone()];
        if let Some(rule) = &report.better_label_rule {
            notes.push(format!("label rule with the better replay: {rule}"));
        }
        Ok(StageOutput { rows: report.replay.len() as u64, summary: json!({ "recommended_model": report.recommended_model }), notes, ..Default::default() })
    }
}

fn write_summary_table(path: &Path, r: &Report) -> Result<()> {
    let schema = Arc::new(Schema::new(vec![
        Field::new("policy", DataType::Utf8, false),
        Field::new("under_provisioned_minutes", DataType::Float64, false),
        Field::new("requests_over_capacity_percent", DataType::Float64, false),
        Field::new("over_provisioned_pod_hours", DataType::Float64, false),
        Field::new("pod_hours", DataType::Float64, false),
        Field::new("actions_per_hour", DataType::Float64, false),
        Field::new("frontier_margin_minutes", DataType::Float64, true),
        Field::new("frontier_saving_pod_hours", DataType::Float64, true),
    ]));
    let col = |f: fn(&report::PolicyRow) -> f64| Arc::new(Float64Array::from_iter_values(r.replay.iter().map(f))) as Arc<dyn Array>;
    let batch = RecordBatch::try_new(
        schema.clone(),
        vec![
            Arc::new(StringArray::from_iter_values(r.replay.iter().map(|p| p.policy.as_str()))),
            col(|p| p.under_provisioned_minutes),
            col(|p| p.requests_over_capacity_percent),
            col(|p| p.over_provisioned_pod_hours),
            col(|p| p.pod_hours),
            col(|p| p.actions_per_hour),
            Arc::new(Float64Array::from(r.replay.iter().map(|p| p.frontier_margin.as_ref().map(|m| m.minutes)).collect::<Vec<_>>())),
            Arc::new(Float64Array::from(r.replay.iter().map(|p| p.frontier_saving.as_ref().and_then(|s| s.pod_hours)).collect::<Vec<_>>())),
        ],
    )?;
    crate::io::table::write_parquet(path, schema, &[batch])?;
    Ok(())
}
