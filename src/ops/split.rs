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
use crate::pipeline::stage::{Stage, StageContext, StageOutput};
use crate::pipeline::spec::{Pipeline, SpecError, StageSpec};

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
pub fn assign(method: Method, fraction: f64, seed: u64, services: &[&str], timestamps: &[i64]) -> Vec<bool> {
    let n = services.len();
    let mut test = vec![false; n];
    match method {
        Method::Shuffled => {
            let mut idx: Vec<usize> = (0..n).collect();
            crate::rng::Rng::new(seed, 1).shuffle(&mut idx);
            // scikit-learn's train_test_split: the test part is ceil(n·f) rows.
            let k = ((n as f64 * fraction).ceil() as usize).min(n);
            for &i in &idx[..k] {
                test[i] = true;
            }
        }
        Method::Temporal => {
            let mut by: std::collections::BTreeMap<&str, Vec<usize>> = Default::default();
            for (i, s) in services.iter().enumerate() {
                by.entry(s).or_default().push(i);
            }
            for rows in by.values_mut() {
                rows.sort_by_key(|&i| timestamps[i]);
                let k = (rows.len() as f64 * fraction).round() as usize;
                for &i in &rows[rows.len() - k..] {
                    test[i] = true;
                }
            }
        }
    }
    test
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

    fn describe(&self) -> String {
        format!("{:?} {}% test", self.params.method, (self.params.test_fraction * 100.0).round()).to_lowercase()
    }

    async fn run(&self, ctx: &StageContext) -> Result<StageOutput> {
        let (dep, entry) = ctx.upstream.first().context("split needs its input stage")?;
        let input = entry.output();
        let (method, fraction, seed) = (self.params.method, self.params.test_fraction, self.params.seed);
        let out = ctx.output_path();
        let dep = dep.clone();
        let (train, test) = tokio::task::spawn_blocking(move || -> Result<(u64, u64)> {
            let table = crate::io::table::read_table(&input)?;
            let schema = table.schema();
            let col = |name: &str| table.column_by_name(name).with_context(|| format!("`{dep}` has no column `{name}`"));
            let services = datafusion::arrow::compute::cast(col(crate::metrics::SERVICE)?, &DataType::Utf8)?;
            let services: Vec<&str> = services.as_string::<i32>().iter().map(|s| s.unwrap_or("")).collect();
            let ts = datafusion::arrow::compute::cast(col(crate::metrics::TIMESTAMP)?, &DataType::Int64)?;
            let ts = ts.as_primitive::<datafusion::arrow::datatypes::Int64Type>().values().to_vec();
            let test = assign(method, fraction, seed, &services, &ts);
            let labels: StringArray = test.iter().map(|&t| Some(if t { "test" } else { "train" })).collect();
            let mut fields: Vec<Arc<Field>> = schema.fields().iter().cloned().collect();
            fields.push(Arc::new(Field::new("split", DataType::Utf8, false)));
            let mut columns = table.columns().to_vec();
            columns.push(Arc::new(labels));
            let schema = Arc::new(Schema::new(fields));
            let batch = RecordBatch::try_new(schema.clone(), columns)?;
            crate::io::table::write_parquet(&out, schema, &[batch])?;
            let n_test = test.iter().filter(|t| **t).count() as u64;
            Ok((test.len() as u64 - n_test, n_test))
        })
        .await??;
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
    fn temporal_takes_the_end_of_each_service() {
        let s = ["a", "b", "a", "b", "a", "b", "a", "b", "a", "b"];
        let t = [0, 0, 1, 1, 2, 2, 3, 3, 4, 4];
        let a = assign(Method::Temporal, 0.4, 0, &s, &t);
        assert_eq!(a, vec![false, false, false, false, false, false, true, true, true, true]);
    }
}
