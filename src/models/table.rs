//! A labelled, split table (a split stage's output) as the matrices models train and predict on.

use anyhow::{bail, Context, Result};
use datafusion::arrow::array::{Array, ArrayRef, AsArray, RecordBatch, UInt64Array};
use datafusion::arrow::datatypes::{DataType, Field, Float64Type, Int64Type};

pub const TARGET: &str = "target_replicas";
/// Columns that are never features.
pub const NOT_FEATURES: &[&str] = &["timestamp", "service_name", "replica_count", TARGET, "split"];

pub struct Table {
    /// Feature names in column order: the order every model keeps.
    pub features: Vec<String>,
    /// Row-major `rows × features`.
    pub x: Vec<f64>,
    pub y: Vec<f64>,
    pub test: Vec<bool>,
    pub services: Vec<String>,
    /// Microseconds since the epoch.
    pub timestamps: Vec<i64>,
    pub replicas: Vec<f64>,
    pub batch: RecordBatch,
}

impl Table {
    pub fn load(path: &std::path::Path) -> Result<Table> {
        let batch = crate::io::table::read_table(path)?;
        Table::from_batch(batch).with_context(|| format!("reading {}", path.display()))
    }

    pub fn from_batch(batch: RecordBatch) -> Result<Table> {
        let schema = batch.schema();
        let col = |name: &str| batch.column_by_name(name).with_context(|| format!("the table has no column `{name}`"));
        let f64s = |name: &str| -> Result<Vec<f64>> {
            let c = datafusion::arrow::compute::cast(col(name)?, &DataType::Float64)?;
            let c = c.as_primitive::<Float64Type>();
            if c.null_count() > 0 {
                bail!("column `{name}` has {} missing values", c.null_count());
            }
            Ok(c.values().to_vec())
        };
        let test = col("split")?.as_string::<i32>().iter().map(|s| s == Some("test")).collect::<Vec<_>>();
        let y = f64s(TARGET)?;
        let replicas = f64s("replica_count")?;
        let services = datafusion::arrow::compute::cast(col("service_name")?, &DataType::Utf8)?;
        let services = services.as_string::<i32>().iter().map(|s| s.unwrap_or("").to_string()).collect();
        let timestamps = datafusion::arrow::compute::cast(col("timestamp")?, &DataType::Int64)?;
        let timestamps = timestamps.as_primitive::<Int64Type>().values().to_vec();
        let features: Vec<String> = schema
            .fields()
            .iter()
            .filter(|f| !NOT_FEATURES.contains(&f.name().as_str()) && f.data_type().is_numeric())
            .map(|f| f.name().clone())
            .collect();
        if features.is_empty() {
            bail!("the table has no feature columns");
        }
        let n = batch.num_rows();
        let nf = features.len();
        let mut x = vec![0.0; n * nf];
        for (j, name) in features.iter().enumerate() {
            for (i, v) in f64s(name).with_context(|| format!("feature `{name}`"))?.into_iter().enumerate() {
                x[i * nf + j] = v;
            }
        }
        Ok(Table { features, x, y, test, services, timestamps, replicas, batch })
    }

    pub fn nf(&self) -> usize {
        self.features.len()
    }

    pub fn len(&self) -> usize {
        self.y.len()
    }

    pub fn is_empty(&self) -> bool {
        self.y.is_empty()
    }

    /// Indices of the `test` rows, in table order.
    pub fn test_rows(&self) -> Vec<usize> {
        (0..self.len()).filter(|&i| self.test[i]).collect()
    }

    /// Predictions for `rows` (as `Model::predict_rows` gives them) spread over the whole table:
    /// NaN for rows not predicted, so other code can index by table row.
    pub fn spread(&self, rows: &[usize], predictions: &[Option<f64>]) -> Vec<f64> {
        let mut v = vec![f64::NAN; self.len()];
        for (&r, p) in rows.iter().zip(predictions) {
            v[r] = p.unwrap_or(f64::NAN);
        }
        v
    }

    /// The key columns (timestamp, service, replicas, target) of `rows`: the left side of every
    /// predictions table.
    pub fn key_columns(&self, rows: &[usize]) -> Result<(Vec<Field>, Vec<ArrayRef>)> {
        let take = UInt64Array::from_iter_values(rows.iter().map(|&i| i as u64));
        let mut fields = Vec::new();
        let mut columns = Vec::new();
        for name in ["timestamp", "service_name", "replica_count", TARGET] {
            let c = self.batch.column_by_name(name).with_context(|| format!("no column `{name}`"))?;
            fields.push(Field::new(name, c.data_type().clone(), true));
            columns.push(datafusion::arrow::compute::take(c, &take, None)?);
        }
        Ok((fields, columns))
    }

    pub fn row(&self, i: usize) -> &[f64] {
        &self.x[i * self.nf()..(i + 1) * self.nf()]
    }

    pub fn service_refs(&self) -> Vec<&str> {
        self.services.iter().map(String::as_str).collect()
    }

    /// A numeric column that is not a feature (request rate, CPU) for the replay.
    pub fn column_f64(&self, name: &str) -> Result<Vec<f64>> {
        let c = self.batch.column_by_name(name).with_context(|| format!("the table has no column `{name}`"))?;
        let c = datafusion::arrow::compute::cast(c, &DataType::Float64)?;
        Ok(c.as_primitive::<Float64Type>().iter().map(|v| v.unwrap_or(f64::NAN)).collect())
    }
}
