//! `op: train`: fit a model on the `train` rows of a split and score it on the `test` rows.
//!
//! ```yaml
//! train_random_forest:
//!   op: train
//!   deps: [split_shuffled]
//!   model: random_forest
//!   params: { n_estimators: 200, max_depth: 15 }   # any of models::random_forest::Params
//!   cv_folds: 5
//! train_lstm_cnn:
//!   op: train
//!   deps: [split_temporal]                         # windows need time order
//!   model: lstm_cnn
//!   params: { epochs: 100, device: auto }          # any of models::lstm_cnn::Params
//! ```
//! Features are every numeric column except the keys, `replica_count` and the target, or the
//! ones `features:` names (a trailing `*` matches a prefix):
//! ```yaml
//!   features: [request_count_per_second, request_rolling_max, hour_sin, hour_cos, service_*]
//! ```
//! The
//! entry is the model folder (`model.json` + weights, and what each kind adds: importances,
//! training history) and, as its table, the test rows with their predictions.

mod lstm_cnn;
mod random_forest;

use std::sync::Arc;

use anyhow::{Context, Result};
use async_trait::async_trait;
use datafusion::arrow::array::{Float64Array, RecordBatch};
use datafusion::arrow::datatypes::{DataType, Field, Schema};
use serde::Deserialize;
use serde::de::DeserializeOwned;
use serde_json::json;

use super::parse_params;
use crate::dag::memory_budget::MemoryNeed;
use crate::dag::spec::{Pipeline, SpecError, StageSpec};
use crate::dag::stage::{Built, Stage, StageContext, StageOutput};
use crate::models::ModelKind;
use crate::models::lstm_cnn::Params as LstmParams;
use crate::models::random_forest::Params as RfParams;
use crate::models::row_keys::{RowFilter, RowKeys};
use crate::models::scores;
use crate::models::table::Table;

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct Params {
    model: String,
    #[serde(default)]
    params: serde_json::Value,
    /// Random Forest only: k-fold cross-validation on the training part (0 = off).
    #[serde(default)]
    cv_folds: Option<usize>,
    /// Only these features (a trailing `*` matches a prefix); all of them when absent.
    #[serde(default)]
    features: Option<Vec<String>>,
    /// Train on a seeded sample of at most this many training rows (LSTM-CNN: windows),
    /// stratified by service; all of them when absent.
    #[serde(default)]
    max_train_rows: Option<usize>,
    #[serde(default = "one")]
    min_replicas: f64,
    #[serde(default = "ten")]
    max_replicas: f64,
}

fn one() -> f64 {
    1.0
}
fn ten() -> f64 {
    10.0
}

#[derive(Debug, Clone)]
enum Model {
    RandomForest { params: RfParams, cv_folds: usize },
    LstmCnn(LstmParams),
}

pub struct Train {
    model: Model,
    features: Option<Vec<String>>,
    max_train_rows: Option<usize>,
    bounds: (f64, f64),
}

/// A model's `params:` block, with the YAML path of any wrong field.
fn model_params<T: DeserializeOwned>(p: &Pipeline, spec: &StageSpec, v: &serde_json::Value) -> Result<T, SpecError> {
    let v = if v.is_null() { json!({}) } else { v.clone() };
    serde_path_to_error::deserialize::<_, T>(v).map_err(|e| p.error(spec, Some("params"), format!("{} (at `{}`)", e.inner(), e.path())))
}

impl Train {
    pub fn from_spec(p: &Pipeline, spec: &StageSpec, built: &Built) -> Result<Train, SpecError> {
        super::expect_deps(p, spec, 1..=1, "one dep (a split stage)")?;
        let params: Params = parse_params(p, spec)?;
        let kind: ModelKind = params.model.parse().map_err(|e: crate::models::kind::UnknownModel| p.error(spec, Some("model"), e.to_string()))?;
        let model = match kind {
            ModelKind::RandomForest => {
                let rf: RfParams = model_params(p, spec, &params.params)?;
                if rf.n_estimators == 0 || rf.sub_forests == 0 {
                    return Err(p.error(spec, Some("params"), "n_estimators and sub_forests must be at least 1"));
                }
                let cv_folds = params.cv_folds.unwrap_or(5);
                if cv_folds == 1 {
                    return Err(p.error(spec, Some("cv_folds"), "must be 0 (off) or at least 2"));
                }
                Model::RandomForest { params: rf, cv_folds }
            }
            ModelKind::LstmCnn => {
                if !cfg!(feature = "lstm") {
                    return Err(p.error(spec, Some("model"), crate::models::lstm_cnn::NOT_BUILT));
                }
                let lstm: LstmParams = model_params(p, spec, &params.params)?;
                if let Err((field, msg)) = lstm.check() {
                    return Err(p.error(spec, Some("params"), format!("{field}: {msg}")));
                }
                if params.cv_folds.is_some_and(|k| k > 0) {
                    return Err(p.error(
                        spec,
                        Some("cv_folds"),
                        "only the random_forest cross-validates; the lstm_cnn validates on the end of its training part",
                    ));
                }
                let dep = &spec.deps[0];
                if super::upstream_op::<super::split::Split>(built, dep).is_some_and(|s| s.method() == super::split::Method::Shuffled) {
                    return Err(p.error(
                        spec,
                        Some("deps"),
                        format!("`{dep}` is a shuffled split; the lstm_cnn learns from windows in time order and needs a temporal split"),
                    ));
                }
                Model::LstmCnn(lstm)
            }
        };
        if params.features.as_ref().is_some_and(|f| f.is_empty() || f.iter().any(|name| name.trim().is_empty() || name == "*")) {
            return Err(p.error(
                spec,
                Some("features"),
                "list the feature columns to train on (a trailing `*` matches a prefix), or leave `features` out for all of them",
            ));
        }
        if params.max_train_rows.is_some_and(|m| m < 2) {
            return Err(p.error(spec, Some("max_train_rows"), "must be at least 2 (or left out to train on every row)"));
        }
        Ok(Train { model, features: params.features, max_train_rows: params.max_train_rows, bounds: (params.min_replicas, params.max_replicas) })
    }

    /// The model it trains.
    pub fn kind(&self) -> ModelKind {
        match self.model {
            Model::RandomForest { .. } => ModelKind::RandomForest,
            Model::LstmCnn(_) => ModelKind::LstmCnn,
        }
    }
}

/// The given rows with their keys, actual target and prediction: a train stage's table.
fn write_predictions(data: &Table, path: &std::path::Path, rows: &[usize], predicted: &[f64], bounds: (f64, f64)) -> Result<()> {
    let batch = prediction_batch(data, rows, predicted, bounds)?;
    crate::io::table::write_parquet(path, batch.schema(), &[batch])?;
    Ok(())
}

/// `rows` of `data` with their keys, actual target and prediction, as a train stage's table has them.
fn prediction_batch(data: &Table, rows: &[usize], predicted: &[f64], (lo, hi): (f64, f64)) -> Result<RecordBatch> {
    let (mut fields, mut columns) = data.key_columns(rows)?;
    fields.push(Field::new("prediction", DataType::Float64, false));
    columns.push(Arc::new(Float64Array::from(predicted.to_vec())));
    fields.push(Field::new("predicted_replicas", DataType::Float64, false));
    columns.push(Arc::new(Float64Array::from_iter_values(predicted.iter().map(|p| scores::replicas(*p, lo, hi)))));
    Ok(RecordBatch::try_new(Arc::new(Schema::new(fields)), columns)?)
}

/// What a model-specific trainer hands back to the stage.
struct Fitted {
    summary: serde_json::Value,
    note: String,
    test_rows: u64,
}

#[async_trait]
impl Stage for Train {
    fn version(&self) -> u32 {
        // 3: the LSTM-CNN's second convolution padded `same`, Keras initialisation, the scaler
        // fitted on the training windows; predictions rounded half to even in the metrics.
        // 4: with max_train_rows the LSTM-CNN validates on a sample in the same proportion.
        // 5: the LSTM-CNN samples windows in runs of consecutive ones; its latency is measured on
        // validation windows.
        5
    }

    fn params(&self) -> serde_json::Value {
        let (lo, hi) = self.bounds;
        let mut key = match &self.model {
            Model::RandomForest { params, cv_folds } => {
                json!({ "model": self.kind(), "params": params, "cv_folds": cv_folds, "min_replicas": lo, "max_replicas": hi })
            }
            Model::LstmCnn(params) => json!({ "model": self.kind(), "params": params, "min_replicas": lo, "max_replicas": hi }),
        };
        // Only when given, so that a stage training on every feature keeps its cache key.
        if let Some(f) = &self.features {
            key["features"] = json!(f);
        }
        if let Some(m) = self.max_train_rows {
            key["max_train_rows"] = json!(m);
        }
        key
    }

    /// The table as f64 rows, and the training copies each model makes of it (the forest's
    /// sample and smartcore's matrix; the LSTM-CNN's standardised rows and its tensor).
    fn memory(&self, input_bytes: u64) -> MemoryNeed {
        MemoryNeed::Holds(3 * input_bytes)
    }

    /// Relative guesses from the bundled week on 2 cores: an LSTM-CNN trains for minutes, a
    /// forest of 200 trees for tens of seconds per fit (and one more per CV fold).
    fn work_hint(&self) -> f64 {
        match &self.model {
            Model::RandomForest { params, cv_folds } => 20.0 * params.n_estimators as f64 / 200.0 * (1 + cv_folds) as f64,
            Model::LstmCnn(p) => 5.0 * p.epochs.min(40) as f64,
        }
    }

    fn describe(&self) -> String {
        match &self.model {
            Model::RandomForest { params, .. } => format!("random_forest ({} trees)", params.n_estimators),
            Model::LstmCnn(p) => format!("lstm_cnn (≤{} epochs, windows of {})", p.epochs, p.sequence_length),
        }
    }

    async fn run(&self, ctx: &StageContext) -> Result<StageOutput> {
        let (dep, entry) = ctx.upstream.first().context("train needs a split stage")?;
        let input = entry.output();
        let lineage = json!({ "split_stage": dep, "split_key": entry.meta.key, "split_upstream": entry.meta.parts.upstream });
        let (model, cores, progress) = (self.model.clone(), ctx.cores.clone(), ctx.progress.clone());
        let (bounds, out_dir, features, max_train_rows) = (self.bounds, ctx.out_dir.clone(), self.features.clone(), self.max_train_rows);
        let fitted = tokio::task::spawn_blocking(move || -> Result<Fitted> {
            let claim = match &model {
                Model::LstmCnn(p) => cores.reserve(p.threads),
                Model::RandomForest { .. } => cores.claim_when_free(|| progress.message("waiting for a core (another training holds them all)")),
            };
            let mut job = Job { model, bounds, max_train_rows, lineage, out_dir, progress, claim, sampled_from: None };
            job.progress.message("loading");
            match job.model.clone() {
                Model::RandomForest { params, cv_folds } => {
                    let rows = job.forest_sample(&input)?;
                    random_forest::train(&job, &load(&input, features.as_deref(), rows.as_ref())?, &params, cv_folds)
                }
                Model::LstmCnn(params) => lstm_cnn::load_and_train(&job, &input, features.as_deref(), &params),
            }
        })
        .await??;
        Ok(StageOutput { rows: fitted.test_rows, summary: fitted.summary, notes: vec![fitted.note], ..Default::default() })
    }
}

/// The split's `features` (all when `None`, but the pooled forest's load features, which are
/// read only when named) of the rows `rows` keeps (all when `None`).
fn load(input: &std::path::Path, features: Option<&[String]>, rows: Option<&RowFilter>) -> Result<Table> {
    match features {
        Some(_) => Table::load_some(input, features, rows).context("`features`"),
        None => Table::load_some(input, None, rows)?.without_named_only(),
    }
}

/// A training run on a blocking thread: where to write and how many cores it may use.
struct Job {
    model: Model,
    bounds: (f64, f64),
    max_train_rows: Option<usize>,
    lineage: serde_json::Value,
    out_dir: std::path::PathBuf,
    progress: crate::dag::progress::StageProgress,
    claim: crate::dag::cores::Claim,
    /// The training rows of the split, when the table was read with only a sample of them.
    sampled_from: Option<usize>,
}

impl Job {
    /// `candidates` (training rows or windows; `service` names each one's service), sampled to
    /// `max_train_rows` by service with `seed`.
    fn sample<'a>(&self, candidates: Vec<usize>, service: impl Fn(usize) -> &'a str, seed: u64) -> Vec<usize> {
        match self.max_train_rows {
            Some(max) if candidates.len() > max => {
                let services: Vec<&str> = candidates.iter().map(|&c| service(c)).collect();
                crate::models::sample::stratified(&services, max, seed).into_iter().map(|k| candidates[k]).collect()
            }
            _ => candidates,
        }
    }

    /// The rows a forest with `max_train_rows` reads: its sample of the training rows (the
    /// same rows [`Job::sample`] picks from the whole table) and every test row, chosen from
    /// the split's service and split columns alone. `None`: every row.
    fn forest_sample(&mut self, input: &std::path::Path) -> Result<Option<RowFilter>> {
        let (Model::RandomForest { params, .. }, Some(max)) = (&self.model, self.max_train_rows) else { return Ok(None) };
        let keys = RowKeys::read(input)?;
        let available: Vec<usize> = (0..keys.len()).filter(|&i| !keys.test[i]).collect();
        if available.len() <= max {
            return Ok(None);
        }
        self.sampled_from = Some(available.len());
        let mut keep = keys.test.clone();
        for i in self.sample(available, |i| keys.service(i), params.seed) {
            keep[i] = true;
        }
        let filter = keys.keep(keep);
        self.progress.message(&format!("loading {} sampled training rows and the test rows of {}", max, keys.len()));
        Ok(Some(filter))
    }

    fn meta(&self, kind: ModelKind, features: &[String], params: serde_json::Value, metrics: serde_json::Value) -> crate::models::ModelMeta {
        crate::models::ModelMeta {
            kind,
            format: 1,
            features: features.to_vec(),
            params,
            metrics,
            lineage: self.lineage.clone(),
            trained_at: chrono::Utc::now().to_rfc3339_opts(chrono::SecondsFormat::Secs, true),
            tool_version: env!("CARGO_PKG_VERSION").into(),
        }
    }

    fn note(&self, test: &scores::Scores, fit_seconds: f64, single_us: f64) -> String {
        format!(
            "test RMSE {:.3}, exact {:.1}%, within-1 {:.1}%; fit {:.1}s, {:.1} µs per decision",
            test.rmse,
            100.0 * test.exact_accuracy,
            100.0 * test.within_1_accuracy,
            fit_seconds,
            single_us
        )
    }
}

/// Mean time of `f` over `n` calls, in microseconds: the single-decision latency a server sees.
fn latency_us(n: usize, mut f: impl FnMut(usize) -> f64) -> f64 {
    let n = n.max(1);
    let t = std::time::Instant::now();
    let mut sink = 0.0;
    for i in 0..n {
        sink += f(i);
    }
    std::hint::black_box(sink);
    t.elapsed().as_secs_f64() * 1e6 / n as f64
}
