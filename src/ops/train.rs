//! `op: train`: fit a model on the `train` rows of a split and score it on the `test` rows.
//!
//! ```yaml
//! train_random_forest:
//!   op: train
//!   deps: [split_shuffled]
//!   model: random_forest
//!   params: { n_estimators: 200, max_depth: 15 }   # any of models::random_forest::Params
//!   cv_folds: 5
//! ```
//! Features are every numeric column except the keys, `replica_count` and the target. The
//! entry holds `model.json` + weights, `importances.csv`/`.json`, and as its table the test
//! rows with their predictions.

use std::sync::Arc;
use std::time::Instant;

use anyhow::{bail, Context, Result};
use async_trait::async_trait;
use datafusion::arrow::array::{Array, AsArray, Float64Array, RecordBatch};
use datafusion::arrow::datatypes::{DataType, Field, Float64Type, Schema};
use serde::Deserialize;
use serde_json::json;

use super::{parse_params, Stage, StageContext, StageOutput};
use crate::models::metrics::{self, Scores};
use crate::models::random_forest::{self, Params as RfParams};
use crate::models::{self, ModelMeta};
use crate::pipeline::spec::{Pipeline, SpecError, StageSpec};

pub const TARGET: &str = "target_replicas";
/// Columns that are never features.
const NOT_FEATURES: &[&str] = &["timestamp", "service_name", "replica_count", TARGET, "split"];

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct Params {
    model: String,
    #[serde(default)]
    params: serde_json::Value,
    #[serde(default = "default_folds")]
    cv_folds: usize,
    #[serde(default = "one")]
    min_replicas: f64,
    #[serde(default = "ten")]
    max_replicas: f64,
}

fn default_folds() -> usize {
    5
}
fn one() -> f64 {
    1.0
}
fn ten() -> f64 {
    10.0
}

pub struct Train {
    params: Params,
    rf: RfParams,
}

impl Train {
    pub fn from_spec(p: &Pipeline, spec: &StageSpec) -> Result<Train, SpecError> {
        super::expect_deps(p, spec, 1..=1, "one dep (a split stage)")?;
        let params: Params = parse_params(p, spec)?;
        let rf = match params.model.as_str() {
            "random_forest" => {
                let v = if params.params.is_null() { json!({}) } else { params.params.clone() };
                serde_path_to_error::deserialize::<_, RfParams>(v)
                    .map_err(|e| p.error(spec, Some("params"), format!("{} (at `{}`)", e.inner(), e.path())))?
            }
            other => return Err(p.error(spec, Some("model"), format!("unknown model `{other}` (known: random_forest)"))),
        };
        if rf.n_estimators == 0 || rf.sub_forests == 0 {
            return Err(p.error(spec, Some("params"), "n_estimators and sub_forests must be at least 1"));
        }
        if params.cv_folds == 1 {
            return Err(p.error(spec, Some("cv_folds"), "must be 0 (off) or at least 2"));
        }
        Ok(Train { params, rf })
    }
}

/// The training table as matrices.
struct Data {
    features: Vec<String>,
    /// Row-major.
    x: Vec<f64>,
    y: Vec<f64>,
    test: Vec<bool>,
    table: RecordBatch,
}

fn load(path: &std::path::Path) -> Result<Data> {
    let table = super::read_table(path)?;
    let schema = table.schema();
    let col = |name: &str| table.column_by_name(name).with_context(|| format!("the training table has no column `{name}`"));
    let split = col("split")?.as_string::<i32>().iter().map(|s| s == Some("test")).collect::<Vec<_>>();
    let y = datafusion::arrow::compute::cast(col(TARGET)?, &DataType::Float64)?.as_primitive::<Float64Type>().values().to_vec();
    let features: Vec<String> = schema
        .fields()
        .iter()
        .filter(|f| !NOT_FEATURES.contains(&f.name().as_str()) && f.data_type().is_numeric())
        .map(|f| f.name().clone())
        .collect();
    if features.is_empty() {
        bail!("the training table has no feature columns");
    }
    let n = table.num_rows();
    let mut x = vec![0.0; n * features.len()];
    for (j, name) in features.iter().enumerate() {
        let c = datafusion::arrow::compute::cast(col(name)?, &DataType::Float64)?;
        let c = c.as_primitive::<Float64Type>();
        if c.null_count() > 0 {
            bail!("feature `{name}` has {} missing values", c.null_count());
        }
        for (i, v) in c.values().iter().enumerate() {
            x[i * features.len() + j] = *v;
        }
    }
    Ok(Data { features, x, y, test: split, table })
}

/// The rows of a row-major matrix (and their targets) that `pick` selects.
fn rows(x: &[f64], y: &[f64], nf: usize, pick: impl Fn(usize) -> bool) -> (Vec<f64>, Vec<f64>) {
    let mut xs = Vec::new();
    let mut ys = Vec::new();
    for i in 0..y.len() {
        if pick(i) {
            xs.extend_from_slice(&x[i * nf..(i + 1) * nf]);
            ys.push(y[i]);
        }
    }
    (xs, ys)
}

#[async_trait]
impl Stage for Train {
    fn version(&self) -> u32 {
        1
    }

    fn params(&self) -> serde_json::Value {
        json!({
            "model": self.params.model,
            "params": self.rf,
            "cv_folds": self.params.cv_folds,
            "min_replicas": self.params.min_replicas,
            "max_replicas": self.params.max_replicas,
        })
    }

    fn describe(&self) -> String {
        format!("{} ({} trees)", self.params.model, self.rf.n_estimators)
    }

    async fn run(&self, ctx: &StageContext) -> Result<StageOutput> {
        let (dep, entry) = ctx.upstream.first().context("train needs a split stage")?;
        let input = entry.output();
        let rf = self.rf.clone();
        let (folds, lo, hi) = (self.params.cv_folds, self.params.min_replicas, self.params.max_replicas);
        let threads = ctx.threads;
        let out_dir = ctx.out_dir.clone();
        let progress = ctx.progress.clone();
        let lineage = json!({ "split_stage": dep, "split_key": entry.meta.key, "split_upstream": entry.meta.parts.upstream });
        let summary = tokio::task::spawn_blocking(move || -> Result<serde_json::Value> {
            progress.message("loading");
            let data = load(&input)?;
            let nf = data.features.len();
            let (xtr, ytr) = rows(&data.x, &data.y, nf, |i| !data.test[i]);
            let (xte, yte) = rows(&data.x, &data.y, nf, |i| data.test[i]);
            if ytr.is_empty() || yte.is_empty() {
                bail!("the split has {} train and {} test rows; both are needed", ytr.len(), yte.len());
            }

            progress.message(&format!("fitting {} trees on {} rows × {nf} features", rf.n_estimators, ytr.len()));
            let t0 = Instant::now();
            let fitted = random_forest::fit(&xtr, &ytr, nf, &rf, threads)?;
            let train_seconds = t0.elapsed().as_secs_f64();
            let t_batch = Instant::now();
            let predicted = fitted.forest.predict_batch(&xte, threads);
            let batch_seconds = t_batch.elapsed().as_secs_f64();
            let test = metrics::score(&yte, &predicted, lo, hi);

            // Single-row latency, as a server would see it.
            let probe = yte.len().min(2000);
            let t1 = Instant::now();
            let mut sink = 0.0;
            for r in 0..probe {
                sink += fitted.forest.predict_row(&xte[r * nf..(r + 1) * nf]);
            }
            let single_us = t1.elapsed().as_secs_f64() * 1e6 / probe as f64;
            std::hint::black_box(sink);

            let cv = if folds >= 2 { Some(cross_validate(&xtr, &ytr, nf, &rf, folds, threads, &progress)?) } else { None };

            let meta = ModelMeta {
                kind: "random_forest".into(),
                format: 1,
                features: data.features.clone(),
                params: serde_json::to_value(&rf)?,
                metrics: json!({
                    "test": test,
                    "cv_rmse_mean": cv.map(|c| c.0),
                    "cv_rmse_std": cv.map(|c| c.1),
                    "training_seconds": train_seconds,
                    "single_prediction_us": single_us,
                    "batch_predict_seconds": batch_seconds,
                    "train_rows": ytr.len(),
                    "test_rows": yte.len(),
                }),
                lineage,
                trained_at: chrono::Utc::now().to_rfc3339_opts(chrono::SecondsFormat::Secs, true),
                tool_version: env!("CARGO_PKG_VERSION").into(),
            };
            models::save_forest(&out_dir, &meta, &fitted.forest)?;
            write_importances(&out_dir, &data.features, &fitted.importances)?;
            write_predictions(&out_dir, &data, &predicted, lo, hi)?;
            Ok(json!({ "model": meta, "test": test_summary(&test) }))
        })
        .await??;
        let m = &summary["model"]["metrics"];
        let note = format!(
            "test RMSE {:.3}, exact {:.1}%, within-1 {:.1}%; fit {:.1}s, {:.1} µs per decision",
            m["test"]["rmse"].as_f64().unwrap_or_default(),
            100.0 * m["test"]["exact_accuracy"].as_f64().unwrap_or_default(),
            100.0 * m["test"]["within_1_accuracy"].as_f64().unwrap_or_default(),
            m["training_seconds"].as_f64().unwrap_or_default(),
            m["single_prediction_us"].as_f64().unwrap_or_default(),
        );
        let rows = m["test_rows"].as_u64().unwrap_or_default();
        Ok(StageOutput { rows, summary, notes: vec![note], ..Default::default() })
    }
}

fn test_summary(s: &Scores) -> serde_json::Value {
    json!({ "rmse": s.rmse, "exact_accuracy": s.exact_accuracy })
}

/// k-fold RMSE on the training part: rows shuffled with the model's seed, then cut into
/// contiguous folds (scikit-learn's KFold over an already shuffled training set).
fn cross_validate(x: &[f64], y: &[f64], nf: usize, rf: &RfParams, folds: usize, threads: usize, progress: &crate::pipeline::progress::StageProgress) -> Result<(f64, f64)> {
    let n = y.len();
    let mut order: Vec<usize> = (0..n).collect();
    crate::rng::Rng::new(rf.seed, 2).shuffle(&mut order);
    let mut rmses = Vec::with_capacity(folds);
    for k in 0..folds {
        progress.message(&format!("cross-validation fold {}/{folds}", k + 1));
        let (a, b) = (n * k / folds, n * (k + 1) / folds);
        let held: std::collections::HashSet<usize> = order[a..b].iter().copied().collect();
        let (xtr, ytr) = rows(x, y, nf, |i| !held.contains(&i));
        let (xva, yva) = rows(x, y, nf, |i| held.contains(&i));
        let f = random_forest::fit(&xtr, &ytr, nf, rf, threads)?;
        let p = f.forest.predict_batch(&xva, threads);
        rmses.push(metrics::score(&yva, &p, f64::MIN, f64::MAX).rmse);
    }
    let mean = rmses.iter().sum::<f64>() / folds as f64;
    let std = (rmses.iter().map(|r| (r - mean) * (r - mean)).sum::<f64>() / folds as f64).sqrt();
    Ok((mean, std))
}

fn write_importances(dir: &std::path::Path, features: &[String], imp: &[f64]) -> Result<()> {
    let mut pairs: Vec<(&String, f64)> = features.iter().zip(imp.iter().copied()).collect();
    pairs.sort_by(|a, b| b.1.total_cmp(&a.1).then(a.0.cmp(b.0)));
    let mut csv = String::from("feature,importance\n");
    for (f, v) in &pairs {
        csv.push_str(&format!("{f},{v}\n"));
    }
    crate::cache::write_atomic(&dir.join("importances.csv"), csv.as_bytes())?;
    let json: Vec<serde_json::Value> = pairs.iter().map(|(f, v)| json!({ "feature": f, "importance": v })).collect();
    crate::cache::write_atomic(&dir.join("importances.json"), &serde_json::to_vec_pretty(&json)?)
}

/// The test rows with their keys, actual target and prediction: the stage's table.
fn write_predictions(dir: &std::path::Path, data: &Data, predicted: &[f64], lo: f64, hi: f64) -> Result<()> {
    let idx: Vec<u64> = (0..data.test.len()).filter(|&i| data.test[i]).map(|i| i as u64).collect();
    let take = datafusion::arrow::array::UInt64Array::from(idx);
    let mut fields = Vec::new();
    let mut columns = Vec::new();
    for name in ["timestamp", "service_name", "replica_count", TARGET] {
        let c = data.table.column_by_name(name).with_context(|| format!("no column `{name}`"))?;
        fields.push(Field::new(name, c.data_type().clone(), true));
        columns.push(datafusion::arrow::compute::take(c, &take, None)?);
    }
    fields.push(Field::new("prediction", DataType::Float64, false));
    columns.push(Arc::new(Float64Array::from(predicted.to_vec())));
    fields.push(Field::new("predicted_replicas", DataType::Float64, false));
    columns.push(Arc::new(Float64Array::from_iter_values(predicted.iter().map(|p| metrics::replicas(*p, lo, hi)))));
    let schema = Arc::new(Schema::new(fields));
    let batch = RecordBatch::try_new(schema.clone(), columns)?;
    super::write_parquet(&dir.join(crate::cache::OUTPUT), schema, &[batch])?;
    Ok(())
}
