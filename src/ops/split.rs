//! `op: split`: mark each row of the labelled table `train` or `test`, in a column `split`.
//!
//! ```yaml
//! split_shuffled:
//!   op: split
//!   deps: [labels]
//!   method: shuffled      # rows drawn at random (the old Random Forest's split)
//!   test_fraction: 0.2
//!   seed: 42
//! split_temporal:
//!   op: split
//!   deps: [labels]
//!   method: temporal      # the last test_fraction of each service's time is test
//!   test_fraction: 0.2
//! ```
//! Keeping one table with a column (rather than two tables) keeps both halves queryable
//! together: `SELECT split, count(*) FROM split_temporal GROUP BY 1`.

use std::sync::Arc;

use anyhow::{Context, Result};
use async_trait::async_trait;
use datafusion::arrow::array::{AsArray, RecordBatch, StringArray};
use datafusion::arrow::datatypes::{DataType, Field, Schema};
use serde::Deserialize;
use serde_json::json;

use super::parse_params;
use crate::dag::memory_budget::MemoryNeed;
use crate::dag::spec::{Pipeline, SpecError, StageSpec};
use crate::dag::stage::{Stage, StageContext, StageOutput};

#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, serde::Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Method {
    Shuffled,
    Temporal,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct Params {
    method: Method,
    #[serde(default = "default_fraction")]
    test_fraction: f64,
    #[serde(default = "default_seed")]
    seed: u64,
}

fn default_fraction() -> f64 {
    0.2
}

fn default_seed() -> u64 {
    42
}

pub struct Split {
    params: Params,
}

impl Split {
    pub fn method(&self) -> Method {
        self.params.method
    }

    pub fn test_fraction(&self) -> f64 {
        self.params.test_fraction
    }

    pub fn from_spec(p: &Pipeline, spec: &StageSpec) -> Result<Split, SpecError> {
        super::expect_deps(p, spec, 1..=1, "one dep (the labelled table)")?;
        let params: Params = parse_params(p, spec)?;
        if !(params.test_fraction > 0.0 && params.test_fraction < 1.0) {
            return Err(p.error(spec, Some("test_fraction"), "must be between 0 and 1 (exclusive)"));
        }
        Ok(Split { params })
    }
}

/// Which rows are test: `shuffled` draws ceil(n·f) rows (as scikit-learn) with a seeded permutation;
/// `temporal` takes, per service, the rows at or after the service's time quantile 1−f.
/// `services` are any ids, one per row.
pub fn assign<S: Ord + Copy>(method: Method, fraction: f64, seed: u64, services: &[S], timestamps: &[i64]) -> Vec<bool> {
    match method {
        Method::Shuffled => shuffled(services.len(), fraction, seed),
        Method::Temporal => {
            let mut test = vec![false; services.len()];
            let mut by: std::collections::BTreeMap<S, Vec<usize>> = Default::default();
            for (i, s) in services.iter().enumerate() {
                by.entry(*s).or_default().push(i);
            }
            for rows in by.values_mut() {
                rows.sort_by_key(|&i| timestamps[i]);
                let k = (rows.len() as f64 * fraction).round() as usize;
                for &i in &rows[rows.len() - k..] {
                    test[i] = true;
                }
            }
            test
        }
    }
}

/// ceil(n·f) of n rows, drawn with a seeded permutation (scikit-learn's train_test_split sizes).
fn shuffled(n: usize, fraction: f64, seed: u64) -> Vec<bool> {
    let mut test = vec![false; n];
    let mut idx: Vec<usize> = (0..n).collect();
    crate::rng::Rng::new(seed, 1).shuffle(&mut idx);
    let k = ((n as f64 * fraction).ceil() as usize).min(n);
    for &i in &idx[..k] {
        test[i] = true;
    }
    test
}

/// Rows per batch read back in the second pass.
const BATCH_ROWS: usize = 64 * 1024;

/// The input's services (as ids) and timestamps, read alone: the first of split's two passes.
fn keys(input: &std::path::Path, dep: &str) -> Result<(Vec<u32>, Vec<i64>)> {
    use datafusion::parquet::arrow::ProjectionMask;
    use datafusion::parquet::arrow::arrow_reader::ParquetRecordBatchReaderBuilder;
    let file = std::fs::File::open(input).with_context(|| format!("opening {}", input.display()))?;
    let builder = ParquetRecordBatchReaderBuilder::try_new(file)?;
    let fields = builder.schema().fields().clone();
    let index = |name: &str| fields.iter().position(|f| f.name() == name).with_context(|| format!("`{dep}` has no column `{name}`"));
    let (si, ti) = (index(crate::row::SERVICE)?, index(crate::row::TIMESTAMP)?);
    let mask = ProjectionMask::roots(builder.parquet_schema(), [si, ti]);
    let rows = builder.metadata().file_metadata().num_rows() as usize;
    let reader = builder.with_projection(mask).with_batch_size(BATCH_ROWS).build()?;
    let (mut ids, mut ts) = (Vec::with_capacity(rows), Vec::with_capacity(rows));
    let mut names: std::collections::HashMap<String, u32> = Default::default();
    for batch in reader {
        let batch = batch?;
        let services = datafusion::arrow::compute::cast(batch.column_by_name(crate::row::SERVICE).expect("projected"), &DataType::Utf8)?;
        for s in services.as_string::<i32>().iter() {
            let s = s.unwrap_or("");
            let next = names.len() as u32;
            ids.push(match names.get(s) {
                Some(id) => *id,
                None => *names.entry(s.to_string()).or_insert(next),
            });
        }
        let t = datafusion::arrow::compute::cast(batch.column_by_name(crate::row::TIMESTAMP).expect("projected"), &DataType::Int64)?;
        ts.extend_from_slice(t.as_primitive::<datafusion::arrow::datatypes::Int64Type>().values());
    }
    Ok((ids, ts))
}

/// Split in two passes over the input, so memory holds the keys and one batch, not the table:
/// the keys decide which rows are test; then each batch is read, marked and written.
fn split_file(input: &std::path::Path, out: &std::path::Path, dep: &str, method: Method, fraction: f64, seed: u64) -> Result<(u64, u64)> {
    use datafusion::parquet::arrow::arrow_reader::ParquetRecordBatchReaderBuilder;
    let file = std::fs::File::open(input).with_context(|| format!("opening {}", input.display()))?;
    let builder = ParquetRecordBatchReaderBuilder::try_new(file)?;
    // A shuffled split needs only the row count; a temporal one each row's service and time.
    let test = match method {
        Method::Shuffled => shuffled(builder.metadata().file_metadata().num_rows() as usize, fraction, seed),
        Method::Temporal => {
            let (ids, ts) = keys(input, dep)?;
            assign(method, fraction, seed, &ids, &ts)
        }
    };
    let mut fields: Vec<Arc<Field>> = builder.schema().fields().iter().cloned().collect();
    fields.push(Arc::new(Field::new("split", DataType::Utf8, false)));
    let schema = Arc::new(Schema::new(fields));
    let mut writer = crate::io::table::TableWriter::create(out, schema.clone())?;
    let mut row = 0;
    for batch in builder.with_batch_size(BATCH_ROWS).build()? {
        let batch = batch?;
        let labels: StringArray = test[row..row + batch.num_rows()].iter().map(|&t| Some(if t { "test" } else { "train" })).collect();
        row += batch.num_rows();
        let mut columns = batch.columns().to_vec();
        columns.push(Arc::new(labels));
        writer.write(&RecordBatch::try_new(schema.clone(), columns)?)?;
    }
    writer.finish()?;
    let n_test = test.iter().filter(|t| **t).count() as u64;
    Ok((test.len() as u64 - n_test, n_test))
}

#[async_trait]
impl Stage for Split {
    fn version(&self) -> u32 {
        // 2: the shuffled test part is ceil(n·f) rows, as scikit-learn.
        2
    }

    fn params(&self) -> serde_json::Value {
        json!({ "method": self.params.method, "test_fraction": self.params.test_fraction, "seed": self.params.seed })
    }

    /// It streams: the first pass's two key columns and a batch at a time.
    fn memory(&self, input_bytes: u64) -> MemoryNeed {
        MemoryNeed::Holds((64 << 20) + input_bytes / 16)
    }

    fn describe(&self) -> String {
        format!("{:?} {}% test", self.params.method, (self.params.test_fraction * 100.0).round()).to_lowercase()
    }

    async fn run(&self, ctx: &StageContext) -> Result<StageOutput> {
        let (dep, entry) = ctx.upstream.first().context("split needs its input stage")?;
        let input = entry.output();
        let (method, fraction, seed) = (self.params.method, self.params.test_fraction, self.params.seed);
        let out = ctx.output_path();
        let dep = dep.clone();
        let (train, test) = tokio::task::spawn_blocking(move || split_file(&input, &out, &dep, method, fraction, seed)).await??;
        Ok(StageOutput {
            rows: train + test,
            sorted_by: entry.meta.sorted_by.clone(),
            summary: json!({ "train_rows": train, "test_rows": test }),
            notes: vec![format!("{train} train / {test} test rows")],
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn shuffled_is_seeded_and_sized() {
        let s = vec!["a"; 1000];
        let t: Vec<i64> = (0..1000).collect();
        let a = assign(Method::Shuffled, 0.2, 42, &s, &t);
        assert_eq!(a.iter().filter(|x| **x).count(), 200);
        assert_eq!(a, assign(Method::Shuffled, 0.2, 42, &s, &t));
        assert_ne!(a, assign(Method::Shuffled, 0.2, 43, &s, &t));
    }

    #[test]
    fn shuffled_test_size_is_ceil_as_in_scikit_learn() {
        // 0.2 × 1001 = 200.2: train_test_split takes 201 test rows (round would give 200).
        let s = vec!["a"; 1001];
        let t: Vec<i64> = (0..1001).collect();
        assert_eq!(assign(Method::Shuffled, 0.2, 42, &s, &t).iter().filter(|x| **x).count(), 201);
        assert_eq!(assign(Method::Shuffled, 0.999, 42, &s[..3], &t[..3]).iter().filter(|x| **x).count(), 3);
    }

    #[test]
    fn two_passes_mark_every_row_as_one_pass_did() {
        // Past one batch, services interleaved and out of time order.
        let n = BATCH_ROWS + 1000;
        let services: Vec<String> = (0..n).map(|i| format!("svc{}", i % 7)).collect();
        let ts: Vec<i64> = (0..n as i64).map(|i| (i * 7919) % 100_003).collect();
        let cpu: Vec<f64> = (0..n).map(|i| i as f64).collect();
        let schema = Arc::new(Schema::new(vec![
            Field::new(crate::row::TIMESTAMP, DataType::Int64, false),
            Field::new(crate::row::SERVICE, DataType::Utf8, false),
            Field::new("cpu", DataType::Float64, false),
        ]));
        let batch = RecordBatch::try_new(
            schema.clone(),
            vec![
                Arc::new(datafusion::arrow::array::Int64Array::from(ts.clone())),
                Arc::new(StringArray::from(services.clone())),
                Arc::new(datafusion::arrow::array::Float64Array::from(cpu)),
            ],
        )
        .unwrap();
        let dir = tempfile::tempdir().unwrap();
        let input = dir.path().join("in.parquet");
        crate::io::table::write_parquet(&input, schema, &[batch]).unwrap();
        for method in [Method::Temporal, Method::Shuffled] {
            let out = dir.path().join("out.parquet");
            let (train, test) = split_file(&input, &out, "labels", method, 0.2, 42).unwrap();
            let names: Vec<&str> = services.iter().map(String::as_str).collect();
            let want = assign(method, 0.2, 42, &names, &ts);
            let t = crate::io::table::read_table(&out).unwrap();
            let got: Vec<bool> = t.column_by_name("split").unwrap().as_string::<i32>().iter().map(|s| s == Some("test")).collect();
            assert_eq!(got, want, "{method:?}");
            assert_eq!((train + test) as usize, n);
            let cpu = t.column_by_name("cpu").unwrap().as_primitive::<datafusion::arrow::datatypes::Float64Type>();
            assert_eq!(cpu.value(n - 1), (n - 1) as f64, "rows stay in order");
        }
    }

    #[test]
    fn temporal_takes_the_end_of_each_service() {
        let s = ["a", "b", "a", "b", "a", "b", "a", "b", "a", "b"];
        let t = [0, 0, 1, 1, 2, 2, 3, 3, 4, 4];
        let a = assign(Method::Temporal, 0.4, 0, &s, &t);
        assert_eq!(a, vec![false, false, false, false, false, false, true, true, true, true]);
    }
}
