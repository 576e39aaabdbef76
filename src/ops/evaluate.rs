//! `op: evaluate`: every trained model on one common temporal hold-out, and an autoscaling replay.
//!
//! ```yaml
//! evaluate:
//!   op: evaluate
//!   deps: [split_temporal, train_random_forest, train_lstm_cnn]   # the hold-out first, then models
//!   replay: { target_utilization: 70, hpa_target: 60 }             # evaluation::replay::Params
//! ```
//! The hold-out is the test part of the first dep (a temporal split). Each model predicts the
//! same rows (the LSTM-CNN reads its windows' earlier rows from before the cut); a model trained
//! on another split is marked when its training rows overlap the hold-out. The entry holds
//! `evaluation.json`, the predictions as its table, and the replay as side table `replay`.

use std::collections::BTreeMap;
use std::sync::Arc;

use anyhow::{Context, Result};
use async_trait::async_trait;
use datafusion::arrow::array::{Float64Array, RecordBatch, StringArray};
use datafusion::arrow::datatypes::{DataType, Field, Schema};
use serde::Deserialize;
use serde_json::json;

use super::holdout_deps::HoldoutAndModels;
use super::parse_params;
use crate::dag::memory_budget::MemoryNeed;
use crate::dag::spec::{Pipeline, SpecError, StageSpec};
use crate::dag::stage::{Built, Stage, StageContext, StageOutput};
use crate::evaluation::policy_name::PolicyName;
use crate::evaluation::replay;
use crate::evaluation::replay::frontier::{Margin, Saving};
use crate::evaluation::{EVALUATION, Evaluation, Holdout, ModelEvaluation, ModelInfo, ReplayTrace, Scored};
use crate::models::model::Model;
use crate::models::scores;
use crate::models::table::Table;
use crate::models::torch_runtime::DeviceChoice;

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct Params {
    #[serde(default)]
    replay: replay::Params,
}

pub struct Evaluate {
    replay: replay::Params,
    models: Vec<ModelInfo>,
    /// The label rule of the hold-out's labels.
    holdout_rule: String,
}

impl Evaluate {
    pub fn from_spec(p: &Pipeline, spec: &StageSpec, built: &Built) -> Result<Evaluate, SpecError> {
        let deps = HoldoutAndModels::from_spec(p, spec, built)?;
        let params: Params = parse_params(p, spec)?;
        params.replay.check().map_err(|e| p.error(spec, Some("replay"), e.to_string()))?;
        Ok(Evaluate { replay: params.replay, models: deps.models.into_iter().map(|(m, _)| m).collect(), holdout_rule: deps.holdout_rule })
    }
}

#[async_trait]
impl Stage for Evaluate {
    fn version(&self) -> u32 {
        // 2: replicas rounded half to even. 3: the replay with delays, baselines, the frontier.
        // 4: the replay's history is the two weeks before the hold-out (holdout::HISTORY_SECONDS).
        // 5: each model's risk family.
        5
    }

    fn params(&self) -> serde_json::Value {
        json!({ "replay": self.replay, "models": self.models })
    }

    fn memory(&self, input_bytes: u64) -> MemoryNeed {
        HoldoutAndModels::memory(input_bytes)
    }

    fn describe(&self) -> String {
        format!("{} models on the hold-out + replay", self.models.len())
    }

    async fn run(&self, ctx: &StageContext) -> Result<StageOutput> {
        let mut upstream = ctx.upstream.iter();
        let (holdout_stage, holdout_entry) = upstream.next().context("evaluate needs the hold-out split")?;
        let holdout_path = holdout_entry.output();
        let model_dirs: Vec<std::path::PathBuf> = upstream.map(|(_, e)| e.dir.clone()).collect();
        let infos = self.models.clone();
        let rp = self.replay.clone();
        let holdout_stage = holdout_stage.clone();
        let holdout_rule = self.holdout_rule.clone();
        let out_dir = ctx.out_dir.clone();
        let progress = ctx.progress.clone();
        let memory = ctx.memory;
        let eval = tokio::task::spawn_blocking(move || -> Result<Evaluation> {
            progress.message("loading the hold-out");
            let holdout = Holdout::load(&holdout_path, &holdout_stage, memory)?;
            let mut loaded = Vec::new();
            for (info, dir) in infos.iter().zip(&model_dirs) {
                loaded.push(Model::load(dir, DeviceChoice::Cpu).with_context(|| format!("loading the model of `{}`", info.stage))?);
            }
            progress.message("predicting the hold-out");
            let predictions = holdout.predict(&loaded.iter().collect::<Vec<_>>(), &|m| progress.message(m)).context("predicting the hold-out")?;
            progress.message("replaying the hold-out");
            let names: Vec<String> = infos.iter().map(|i| i.stage.clone()).collect();
            // Each service's replay goes to disk as it is replayed.
            let mut replay = ReplayWriter::create(&out_dir.join("replay.parquet"))?;
            let scored = holdout.score(names, &predictions, &rp, &mut |t| replay.write(t))?;
            replay.finish()?;
            let (table, rows, totals) = (&holdout.table, &scored.rows, &scored.totals);
            let bounds = (rp.min_replicas, rp.max_replicas);
            let mut models = Vec::new();
            for (k, (info, model)) in infos.iter().zip(&loaded).enumerate() {
                let m = &model.meta().metrics;
                models.push(ModelEvaluation {
                    info: info.clone(),
                    kind: model.kind(),
                    own_split: serde_json::from_value(m["test"].clone()).ok(),
                    holdout: scored.accuracy(table, k, bounds),
                    training_seconds: m["training_seconds"].as_f64(),
                    single_prediction_us: m["single_prediction_us"].as_f64(),
                    replay: totals.get(&info.stage).cloned().unwrap_or_default(),
                    proactive_replay: totals.get(&PolicyName::Forecast(info.stage.clone()).to_string()).cloned().unwrap_or_default(),
                });
            }
            let margins: BTreeMap<String, Margin> = totals.iter().filter_map(|(policy, s)| Some((policy.clone(), scored.frontier.margin(s)?))).collect();
            let savings: BTreeMap<String, Saving> = totals.iter().filter_map(|(policy, s)| Some((policy.clone(), scored.frontier.saving(s)?))).collect();
            let mut best_by_label_rule: BTreeMap<String, String> = BTreeMap::new();
            // Only models that never saw the hold-out compete for their label rule, on the policy
            // that would serve them.
            let margin = |stage: &str| margins.get(&PolicyName::Forecast(stage.to_string()).to_string()).map_or(f64::NEG_INFINITY, |m| m.minutes);
            for m in models.iter().filter(|m| m.info.honest) {
                match best_by_label_rule.get(&m.info.label_rule) {
                    Some(cur) if margin(cur) >= margin(&m.info.stage) => {}
                    _ => {
                        best_by_label_rule.insert(m.info.label_rule.clone(), m.info.stage.clone());
                    }
                }
            }
            let mut notes = Vec::new();
            for m in &models {
                if !m.info.honest {
                    notes.push(format!(
                        "{} was trained on `{}`, whose training rows include hold-out rows: its hold-out score is optimistic",
                        m.info.stage, m.info.split
                    ));
                }
            }
            notes.extend(scored.notes.iter().cloned());
            for (info, model) in infos.iter().zip(&loaded) {
                if let Some(s) = model.meta().metrics["sampled"].as_str() {
                    notes.push(format!("{} was {s}", info.stage));
                }
            }
            let skipped: Vec<&str> = scored.services.iter().filter(|s| s.capacity.is_none()).map(|s| s.service.as_str()).collect();
            if !skipped.is_empty() {
                notes.push(format!("not replayed (CPU does not rise with load per pod): {}", skipped.join(", ")));
            }
            let busy_service =
                scored.services.iter().filter(|s| s.capacity.is_some()).max_by(|a, b| a.mean_rps.total_cmp(&b.mean_rps)).map(|s| s.service.clone());
            let ts: Vec<i64> = rows.iter().map(|&r| table.timestamps[r]).collect();
            let eval = Evaluation {
                holdout_stage: holdout_stage.clone(),
                holdout_label_rule: holdout_rule,
                rows: rows.len(),
                services: scored.services.len(),
                first_timestamp: ts.iter().copied().min().unwrap_or(0),
                last_timestamp: ts.iter().copied().max().unwrap_or(0),
                models,
                replay_params: rp.clone(),
                replay: totals.clone(),
                frontier: scored.frontier.clone(),
                margins,
                savings,
                hpa_targets: scored.targets.clone(),
                replay_services: scored.services.clone(),
                busy_service,
                best_by_label_rule,
                risk: scored.risk.clone(),
                notes,
            };
            crate::io::fs::write_atomic(&out_dir.join(EVALUATION), &serde_json::to_vec_pretty(&eval)?)?;
            write_predictions(&out_dir.join(crate::cache::OUTPUT), table, &scored, bounds)?;
            Ok(eval)
        })
        .await??;
        let mut notes: Vec<String> = eval
            .models
            .iter()
            .map(|m| {
                format!(
                    "{}: hold-out RMSE {:.3}, exact {:.1}%; under its policy {:.0} min under-provisioned at {:.1} pod-hours ({}; {})",
                    m.info.stage,
                    m.holdout.overall.rmse,
                    100.0 * m.holdout.overall.exact_accuracy,
                    m.proactive_replay.under_provisioned_minutes,
                    m.proactive_replay.pod_hours,
                    eval.margins.get(&PolicyName::Forecast(m.info.stage.clone()).to_string()).map_or("no frontier".to_string(), |g| g.describe()),
                    eval.savings.get(&PolicyName::Forecast(m.info.stage.clone()).to_string()).map_or("no frontier".to_string(), |g| g.describe())
                )
            })
            .collect();
        notes.extend(eval.notes.iter().cloned());
        Ok(StageOutput {
            rows: eval.rows as u64,
            summary: json!({ "rows": eval.rows, "services": eval.services, "best_by_label_rule": eval.best_by_label_rule }),
            notes,
            ..Default::default()
        })
    }
}

fn write_predictions(path: &std::path::Path, table: &Table, scored: &Scored, (lo, hi): (f64, f64)) -> Result<()> {
    let rows = &scored.rows;
    let (mut fields, mut columns) = table.key_columns(rows)?;
    for (name, pred) in scored.names.iter().zip(&scored.predictions) {
        fields.push(Field::new(format!("{name}_prediction"), DataType::Float64, false));
        columns.push(Arc::new(Float64Array::from_iter_values(rows.iter().map(|&r| pred[r]))) as _);
        fields.push(Field::new(format!("{name}_replicas"), DataType::Float64, false));
        columns.push(Arc::new(Float64Array::from_iter_values(rows.iter().map(|&r| scores::replicas(pred[r], lo, hi)))) as _);
    }
    let schema = Arc::new(Schema::new(fields));
    crate::io::table::write_parquet(path, schema.clone(), &[RecordBatch::try_new(schema, columns)?])?;
    Ok(())
}

/// `replay.parquet`: every policy's replicas, ready pods and utilisation, step by step, one
/// batch per service and policy.
struct ReplayWriter {
    schema: Arc<Schema>,
    writer: crate::io::table::TableWriter,
}

impl ReplayWriter {
    fn create(path: &std::path::Path) -> Result<ReplayWriter> {
        let schema = Arc::new(Schema::new(vec![
            Field::new("timestamp", DataType::Int64, false),
            Field::new("service_name", DataType::Utf8, false),
            Field::new("policy", DataType::Utf8, false),
            Field::new("replicas", DataType::Float64, false),
            Field::new("ready", DataType::Float64, false),
            Field::new("utilization", DataType::Float64, false),
        ]));
        Ok(ReplayWriter { writer: crate::io::table::TableWriter::create(path, schema.clone())?, schema })
    }

    fn write(&mut self, t: ReplayTrace) -> Result<()> {
        let n = t.steps.len();
        let f64s = |f: fn(&crate::evaluation::replay::RowState) -> f64| Arc::new(Float64Array::from_iter_values(t.steps.iter().map(f))) as _;
        let batch = RecordBatch::try_new(
            self.schema.clone(),
            vec![
                Arc::new(datafusion::arrow::array::Int64Array::from_iter_values(t.timestamps[..n].iter().copied())),
                Arc::new(StringArray::from_iter_values(std::iter::repeat_n(t.service, n))),
                Arc::new(StringArray::from_iter_values(std::iter::repeat_n(t.policy, n))),
                f64s(|r| r.replicas),
                f64s(|r| r.ready),
                f64s(|r| r.utilization),
            ],
        )?;
        self.writer.write(&batch)
    }

    fn finish(self) -> Result<u64> {
        self.writer.finish()
    }
}
