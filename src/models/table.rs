//! A labelled, split table (a split stage's output) as the matrices models train and predict on.

use std::borrow::Cow;

use anyhow::{Context, Result, bail};
use datafusion::arrow::array::{Array, ArrayRef, AsArray, RecordBatch};
use datafusion::arrow::datatypes::{DataType, Field, Float64Type, Int64Type, Schema};

use super::row_keys::{RowFilter, ServiceIds};
use super::sequences::{ScaledRows, Scaler};
use super::{ModelMeta, SERVICE_PREFIX};

mod chunks;

pub const TARGET: &str = "target_replicas";
/// Columns that are never features.
pub const NOT_FEATURES: &[&str] = &["timestamp", "service_name", "replica_count", TARGET, "split"];

/// The model's input layer: the table's numeric columns, then, unless the table has its own
/// (`one_hot:` in a SQL stage), one 0/1 column `service_<name>` per service in the table, in
/// name order. Kept out of the cached tables so they stay as narrow with 200 services as with 2,
/// and out of the table's own matrix (a row's service is one index) so it holds 4 features of
/// 200 services in 4 columns: the 0/1 values are written only into the matrices models take
/// ([`Table::matrix`], [`Table::dense`]; [`Table::scaled`] keeps them as the service).
#[derive(Clone, Debug)]
pub struct Table {
    /// Feature names in column order: the order every model keeps.
    pub features: Vec<String>,
    /// Row-major `rows × stored` values of the first `stored` features.
    x: Vec<f64>,
    stored: usize,
    /// Each row's position among the one-hot features after them (`features[stored..]`),
    /// [`NO_SERVICE`] for a service that has none; empty when there are none.
    hot: Vec<u32>,
    pub y: Vec<f64>,
    pub test: Vec<bool>,
    /// The table's services, sorted, and each row's position among them.
    service_names: Vec<String>,
    service_ids: Vec<u32>,
    /// Microseconds since the epoch.
    pub timestamps: Vec<i64>,
    pub replicas: Vec<f64>,
    /// The Arrow types of the key columns as stored, for the tables of predictions.
    keys: KeyTypes,
}

/// The types the key columns (timestamp, service, replicas, target) had in the split: a table of
/// predictions writes them back as they were, from the values the table keeps anyway.
#[derive(Clone, Debug)]
struct KeyTypes {
    timestamp: DataType,
    service: DataType,
    replicas: DataType,
    target: DataType,
}

const NO_SERVICE: u32 = u32::MAX;

/// The columns a table of the features `wanted` names reads, and whether it adds the one-hot
/// service columns.
fn columns_for(wanted: &[String]) -> (impl Fn(&str) -> bool + '_, bool) {
    let keep = |name: &str| NOT_FEATURES.contains(&name) || wanted.iter().any(|w| matches(w, name));
    (keep, wanted.iter().any(|w| matches(w, SERVICE_PREFIX) || w.starts_with(SERVICE_PREFIX)))
}

/// Whether feature `f` is one that `wanted` names: the name, or a prefix ending in `*`.
fn matches(wanted: &str, f: &str) -> bool {
    match wanted.strip_suffix('*') {
        Some(prefix) => f.starts_with(prefix),
        None => wanted == f,
    }
}

impl Table {
    pub fn load(path: &std::path::Path) -> Result<Table> {
        Table::read(path, |_| true, true, None)
    }

    /// The table with only the features `wanted` names (as [`Table::select`]), reading from the
    /// file only those columns and the keys: a model on 4 features of 40 holds a tenth.
    pub fn load_features(path: &std::path::Path, wanted: &[String]) -> Result<Table> {
        Table::load_some(path, Some(wanted), None)
    }

    /// The features `wanted` names (all when `None`) of the rows `rows` keeps (all when `None`).
    pub fn load_some(path: &std::path::Path, wanted: Option<&[String]>, rows: Option<&RowFilter>) -> Result<Table> {
        let Some(wanted) = wanted else { return Table::read(path, |_| true, true, rows) };
        let (keep, one_hot) = columns_for(wanted);
        match Table::read(path, keep, one_hot, rows).and_then(|t| t.select(wanted)) {
            Ok(t) => Ok(t),
            // A name that matches nothing: say so with the whole table's features, not the few read.
            Err(_) => Table::read(path, |_| true, true, rows)?.select(wanted),
        }
    }

    /// The columns of a Parquet file that `keep` names, of the rows `rows` keeps, read batch by
    /// batch into the table's own vectors: no Arrow copy of the table is held, nor two while
    /// batches are joined.
    fn read(path: &std::path::Path, keep: impl Fn(&str) -> bool, one_hot: bool, rows: Option<&RowFilter>) -> Result<Table> {
        use datafusion::arrow::compute::filter_record_batch;
        use datafusion::parquet::arrow::ProjectionMask;
        use datafusion::parquet::arrow::arrow_reader::ParquetRecordBatchReaderBuilder;
        let opened = || -> Result<Table> {
            let file = std::fs::File::open(path)?;
            let builder = ParquetRecordBatchReaderBuilder::try_new(file)?;
            let in_file = usize::try_from(builder.metadata().file_metadata().num_rows()).unwrap_or(0);
            let roots: Vec<usize> = builder.schema().fields().iter().enumerate().filter(|(_, f)| keep(f.name())).map(|(i, _)| i).collect();
            let mask = ProjectionMask::roots(builder.parquet_schema(), roots);
            let reader = builder.with_projection(mask).build()?;
            let schema = datafusion::arrow::array::RecordBatchReader::schema(&reader);
            let batches = reader.map(|b| b.map_err(anyhow::Error::from));
            match rows {
                None => Table::build(&schema, in_file, batches, one_hot, &[]),
                Some(filter) => {
                    if filter.keep.len() != in_file {
                        bail!("the row filter has {} rows, the file {in_file}", filter.keep.len());
                    }
                    let mut offset = 0;
                    let kept = batches.map(|b| {
                        let b = b?;
                        let mask = datafusion::arrow::array::BooleanArray::from(filter.keep[offset..offset + b.num_rows()].to_vec());
                        offset += b.num_rows();
                        Ok(filter_record_batch(&b, &mask)?)
                    });
                    Table::build(&schema, filter.rows(), kept, one_hot, &filter.services)
                }
            }
        };
        opened().with_context(|| format!("reading {}", path.display()))
    }

    pub fn from_batch(batch: RecordBatch) -> Result<Table> {
        Table::build(&batch.schema(), batch.num_rows(), std::iter::once(Ok(batch.clone())), true, &[])
    }

    /// `one_hot`: add the service columns when the table has none. `rows`: how many the batches
    /// hold, so each vector is sized once. `services`: names known beyond the batches' own.
    fn build(schema: &Schema, rows: usize, batches: impl Iterator<Item = Result<RecordBatch>>, one_hot: bool, services: &[String]) -> Result<Table> {
        let field = |name: &str| schema.field_with_name(name).map_err(|_| anyhow::anyhow!("the table has no column `{name}`"));
        let keys = KeyTypes {
            timestamp: field("timestamp")?.data_type().clone(),
            service: field("service_name")?.data_type().clone(),
            replicas: field("replica_count")?.data_type().clone(),
            target: field(TARGET)?.data_type().clone(),
        };
        field("split")?;
        let mut features: Vec<String> =
            schema.fields().iter().filter(|f| !NOT_FEATURES.contains(&f.name().as_str()) && f.data_type().is_numeric()).map(|f| f.name().clone()).collect();
        let columns = features.len();
        let (mut x, mut y, mut test, mut replicas, mut timestamps) =
            (Vec::with_capacity(rows * columns), Vec::with_capacity(rows), Vec::with_capacity(rows), Vec::with_capacity(rows), Vec::with_capacity(rows));
        let known = services;
        let mut services = ServiceIds::with_capacity(rows);
        services.know(known);
        for batch in batches {
            let batch = batch?;
            let col = |name: &str| batch.column_by_name(name).with_context(|| format!("the table has no column `{name}`"));
            let f64s = |name: &str| -> Result<ArrayRef> {
                let c = datafusion::arrow::compute::cast(col(name)?, &DataType::Float64)?;
                if c.null_count() > 0 {
                    bail!("column `{name}` has {} missing values", c.null_count());
                }
                Ok(c)
            };
            test.extend(col("split")?.as_string::<i32>().iter().map(|s| s == Some("test")));
            y.extend_from_slice(f64s(TARGET)?.as_primitive::<Float64Type>().values());
            replicas.extend_from_slice(f64s("replica_count")?.as_primitive::<Float64Type>().values());
            services.extend(col("service_name")?)?;
            let ts = datafusion::arrow::compute::cast(col("timestamp")?, &DataType::Int64)?;
            timestamps.extend_from_slice(ts.as_primitive::<Int64Type>().values());
            let start = x.len();
            x.resize(start + batch.num_rows() * columns, 0.0);
            for (j, name) in features.iter().enumerate() {
                let values = f64s(name).with_context(|| format!("feature `{name}`"))?;
                for (i, v) in values.as_primitive::<Float64Type>().values().iter().enumerate() {
                    x[start + i * columns + j] = *v;
                }
            }
        }
        let (service_names, service_ids) = services.finish();
        let one_hot = one_hot && !features.iter().any(|f| f.starts_with(SERVICE_PREFIX));
        if one_hot {
            features.extend(service_names.iter().map(|s| format!("{SERVICE_PREFIX}{s}")));
        }
        if features.is_empty() {
            bail!("the table has no feature columns");
        }
        let hot = if one_hot { service_ids.clone() } else { Vec::new() };
        Ok(Table { features, x, stored: columns, hot, y, test, service_names, service_ids, timestamps, replicas, keys })
    }

    /// Keeps the features `wanted` names, in the table's order; a name ending in `*` matches
    /// every feature it begins (`service_*`). A name that matches nothing is refused.
    pub fn select(self, wanted: &[String]) -> Result<Table> {
        if let Some(w) = wanted.iter().find(|w| !self.features.iter().any(|f| matches(w, f))) {
            let why = if NOT_FEATURES.contains(&w.as_str()) { " (keys, replica_count and the target are never features)" } else { "" };
            bail!("no feature matches `{w}`{why}; the table's features are {}", self.features.join(", "));
        }
        let columns: Vec<usize> = (0..self.nf()).filter(|&c| wanted.iter().any(|w| matches(w, &self.features[c]))).collect();
        let (features, x, stored, hot) = self.project(&columns);
        Ok(Table { features, x, stored, hot, ..self })
    }

    /// The table as `meta`'s model reads it: its features, in its order, whatever else the
    /// table holds (see [`ModelMeta::feature_columns`]).
    pub fn for_model(&self, meta: &ModelMeta) -> Result<Cow<'_, Table>> {
        let columns = meta.feature_columns(&self.features)?;
        if columns.len() == self.nf() && columns.iter().enumerate().all(|(i, &c)| i == c) {
            return Ok(Cow::Borrowed(self));
        }
        Ok(Cow::Owned(self.with_features(&columns)))
    }

    /// The features `columns` (positions), in that order: names, stored values, how many are
    /// stored and the rows' one-hot positions. The one-hot columns that end `columns` stay
    /// one-hot; any before a stored one are written out.
    fn project(&self, columns: &[usize]) -> (Vec<String>, Vec<f64>, usize, Vec<u32>) {
        let stored = columns.iter().rposition(|&c| c < self.stored).map_or(0, |p| p + 1);
        let mut x = Vec::with_capacity(self.len() * stored);
        for i in 0..self.len() {
            x.extend(columns[..stored].iter().map(|&c| self.value(i, c)));
        }
        let hot = if stored == columns.len() {
            Vec::new()
        } else {
            let mut position = vec![NO_SERVICE; self.nf() - self.stored];
            for (q, &c) in columns[stored..].iter().enumerate() {
                position[c - self.stored] = q as u32;
            }
            self.hot.iter().map(|&k| if k == NO_SERVICE { NO_SERVICE } else { position[k as usize] }).collect()
        };
        (columns.iter().map(|&c| self.features[c].clone()).collect(), x, stored, hot)
    }

    /// Row `i`'s value of feature `c`.
    fn value(&self, i: usize, c: usize) -> f64 {
        if c < self.stored { self.x[i * self.stored + c] } else { f64::from(u8::from(self.hot[i] as usize == c - self.stored)) }
    }

    /// Appends row `i`'s features, in order, to `out`.
    pub fn extend_row(&self, i: usize, out: &mut Vec<f64>) {
        out.extend_from_slice(&self.x[i * self.stored..(i + 1) * self.stored]);
        if self.stored < self.nf() {
            let start = out.len();
            out.resize(start + self.nf() - self.stored, 0.0);
            if self.hot[i] != NO_SERVICE {
                out[start + self.hot[i] as usize] = 1.0;
            }
        }
    }

    /// Whether every stored feature of row `i` is a number: a load feature of a service whose
    /// capacity could not be fitted is NaN (`sql/labels.sql`), and such a row is neither trained
    /// nor predicted on.
    pub fn finite(&self, i: usize) -> bool {
        self.x[i * self.stored..(i + 1) * self.stored].iter().all(|v| v.is_finite())
    }

    /// The table without the features only a train stage's `features` may name (the pooled
    /// forest's load features): what a stage that names none trains on.
    pub fn without_named_only(self) -> Result<Table> {
        if !self.features.iter().any(|f| f.starts_with(super::pooled::LOAD_PREFIX)) {
            return Ok(self);
        }
        let kept: Vec<String> = self.features.iter().filter(|f| !f.starts_with(super::pooled::LOAD_PREFIX)).cloned().collect();
        self.select(&kept)
    }

    /// Row `i`'s features.
    pub fn row(&self, i: usize) -> Vec<f64> {
        let mut out = Vec::with_capacity(self.nf());
        self.extend_row(i, &mut out);
        out
    }

    /// The row-major `rows × features` matrix of `rows`.
    pub fn matrix(&self, rows: &[usize]) -> Vec<f64> {
        let mut out = Vec::with_capacity(rows.len() * self.nf());
        for &i in rows {
            self.extend_row(i, &mut out);
        }
        out
    }

    /// `f` of the matrices of `rows`, a block of rows at a time (a test set of 2M rows × 200
    /// services is 3 GB as one matrix), its outputs concatenated.
    pub fn map_chunks<T>(&self, rows: &[usize], mut f: impl FnMut(&[f64]) -> Vec<T>) -> Vec<T> {
        let mut out = Vec::with_capacity(rows.len());
        for block in rows.chunks(65_536) {
            out.extend(f(&self.matrix(block)));
        }
        out
    }

    /// The row-major `rows × features` matrix of every row (borrowed when nothing is one-hot).
    pub fn dense(&self) -> Cow<'_, [f64]> {
        if self.stored == self.nf() { Cow::Borrowed(&self.x) } else { Cow::Owned(self.matrix(&(0..self.len()).collect::<Vec<_>>())) }
    }

    /// A scaler fitted on the rows `pick` selects, read row by row (no dense copy).
    pub fn fit_scaler(&self, pick: impl Fn(usize) -> bool) -> Scaler {
        Scaler::fit_rows(&self.features, (0..self.len()).filter(|&i| pick(i)).map(|i| self.row(i)))
    }

    /// Every row standardised by `scaler` (f32: what the LSTM-CNN computes in), the one-hot
    /// columns as each row's service (see [`ScaledRows`]).
    pub fn scaled(&self, scaler: &Scaler) -> ScaledRows {
        let stored = self.stored;
        let mut values = vec![0f32; self.len() * stored];
        if stored > 0 {
            for (i, o) in values.chunks_exact_mut(stored).enumerate() {
                scaler.transform_into(&self.x[i * stored..(i + 1) * stored], o);
            }
        }
        let hot = self.nf() - stored;
        if hot == 0 {
            return ScaledRows { rows: self.len(), features: stored, values, stored, services: Vec::new(), one_hot: Vec::new() };
        }
        // Row q: service q's 0/1 vector standardised; the last row: no service (all zeros).
        let mut one_hot = vec![0f32; (hot + 1) * hot];
        let mut vector = vec![0.0; hot];
        for (q, o) in one_hot.chunks_exact_mut(hot).enumerate() {
            vector.fill(0.0);
            if q < hot {
                vector[q] = 1.0;
            }
            scaler.transform_part(stored, &vector, o);
        }
        let services = self.hot.iter().map(|&k| if k == NO_SERVICE { hot as i64 } else { i64::from(k) }).collect();
        ScaledRows { rows: self.len(), features: self.nf(), values, stored, services, one_hot }
    }

    fn with_features(&self, columns: &[usize]) -> Table {
        let (features, x, stored, hot) = self.project(columns);
        Table {
            features,
            x,
            stored,
            hot,
            y: self.y.clone(),
            test: self.test.clone(),
            service_names: self.service_names.clone(),
            service_ids: self.service_ids.clone(),
            timestamps: self.timestamps.clone(),
            replicas: self.replicas.clone(),
            keys: self.keys.clone(),
        }
    }

    pub fn nf(&self) -> usize {
        self.features.len()
    }

    pub fn len(&self) -> usize {
        self.y.len()
    }

    /// Free the feature values once a model holds its own copy of them (the LSTM-CNN's scaled
    /// f32 rows): the keys, targets and services stay, for the table of predictions. Reading a
    /// feature value afterwards is a bug.
    pub fn release_values(&mut self) {
        self.x = Vec::new();
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

    /// The key columns (timestamp, service, replicas, target) of `rows`, in the types the split
    /// stored them in: the left side of every predictions table.
    pub fn key_columns(&self, rows: &[usize]) -> Result<(Vec<Field>, Vec<ArrayRef>)> {
        use datafusion::arrow::array::{Float64Array, Int64Array, StringArray};
        use datafusion::arrow::compute::cast;
        let timestamps: ArrayRef = std::sync::Arc::new(Int64Array::from_iter_values(rows.iter().map(|&i| self.timestamps[i])));
        let services: ArrayRef = std::sync::Arc::new(rows.iter().map(|&i| Some(self.service(i))).collect::<StringArray>());
        let replicas: ArrayRef = std::sync::Arc::new(Float64Array::from_iter_values(rows.iter().map(|&i| self.replicas[i])));
        let target: ArrayRef = std::sync::Arc::new(Float64Array::from_iter_values(rows.iter().map(|&i| self.y[i])));
        let k = &self.keys;
        let mut fields = Vec::new();
        let mut columns = Vec::new();
        for (name, values, ty) in [
            ("timestamp", timestamps, &k.timestamp),
            ("service_name", services, &k.service),
            ("replica_count", replicas, &k.replicas),
            (TARGET, target, &k.target),
        ] {
            fields.push(Field::new(name, ty.clone(), true));
            columns.push(cast(&values, ty)?);
        }
        Ok((fields, columns))
    }

    /// Row `i`'s position among the table's services (sorted by name).
    pub fn service_id(&self, i: usize) -> u32 {
        self.service_ids[i]
    }

    /// Row `i`'s service.
    pub fn service(&self, i: usize) -> &str {
        &self.service_names[self.service_ids[i] as usize]
    }

    pub fn service_refs(&self) -> Vec<&str> {
        self.service_ids.iter().map(|&k| self.service_names[k as usize].as_str()).collect()
    }

    /// A stored feature's values (request rate, CPU) for the replay.
    pub fn column_f64(&self, name: &str) -> Result<Vec<f64>> {
        let c = self.features[..self.stored].iter().position(|f| f == name).with_context(|| format!("the table has no column `{name}`"))?;
        Ok((0..self.len()).map(|i| self.x[i * self.stored + c]).collect())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use datafusion::arrow::array::{Float64Array, Int64Array, StringArray, TimestampMicrosecondArray};
    use std::sync::Arc;

    /// Two rows of two services; `one_hot`: with the SQL stage's one-hot columns.
    fn batch(one_hot: bool) -> RecordBatch {
        let f = |v: [f64; 2]| Arc::new(Float64Array::from(v.to_vec())) as ArrayRef;
        let mut columns = vec![
            ("timestamp", Arc::new(TimestampMicrosecondArray::from(vec![0, 30_000_000])) as ArrayRef),
            ("service_name", Arc::new(StringArray::from(vec!["web", "api"])) as ArrayRef),
            ("replica_count", Arc::new(Int64Array::from(vec![2, 1])) as ArrayRef),
            ("cpu_usage_percent", f([60.0, 40.0])),
            ("request_count_per_second", f([40.0, 0.0])),
        ];
        if one_hot {
            columns.extend([("service_api", f([0.0, 1.0])), ("service_web", f([1.0, 0.0]))]);
        }
        columns.extend([
            ("target_replicas", Arc::new(Int64Array::from(vec![3, 1])) as ArrayRef),
            ("split", Arc::new(StringArray::from(vec!["train", "test"])) as ArrayRef),
        ]);
        RecordBatch::try_from_iter(columns).unwrap()
    }

    fn table() -> Table {
        Table::from_batch(batch(true)).unwrap()
    }

    #[test]
    fn a_table_without_one_hot_columns_gets_them_in_the_models_input() {
        let (sql, model) = (table(), Table::from_batch(batch(false)).unwrap());
        assert_eq!(model.features, sql.features);
        assert_eq!(model.dense(), sql.dense());
        assert_eq!(model.matrix(&[1, 0]), sql.matrix(&[1, 0]));
        assert_eq!(model.map_chunks(&[1, 0], |x| x.to_vec()), sql.matrix(&[1, 0]));
        assert_eq!((model.stored, sql.stored), (2, 4), "the one-hot values are not stored");
        assert_eq!((model.service(0), model.service_refs()), ("web", vec!["web", "api"]));
        // One service: its column is all ones.
        let one = Table::from_batch(batch(false).slice(1, 1)).unwrap();
        assert_eq!((one.features.last().map(String::as_str), one.row(0)), (Some("service_api"), vec![40.0, 0.0, 1.0]));
    }

    #[test]
    fn features_are_the_numeric_columns_but_keys_replicas_and_target() {
        let t = table();
        assert_eq!(t.features, ["cpu_usage_percent", "request_count_per_second", "service_api", "service_web"]);
        assert_eq!(t.row(1), [40.0, 0.0, 1.0, 0.0]);
        assert_eq!((t.y.clone(), t.replicas.clone(), t.test.clone()), (vec![3.0, 1.0], vec![2.0, 1.0], vec![false, true]));
    }

    #[test]
    fn scaled_rows_hold_what_the_dense_matrix_standardised_holds() {
        let t = Table::from_batch(batch(false)).unwrap();
        let scaler = t.fit_scaler(|_| true);
        let dense = scaler.transform(&t.dense());
        let s = t.scaled(&scaler);
        assert_eq!((s.rows, s.features, s.stored, s.services.clone()), (2, 4, 2, vec![1, 0]));
        for i in 0..2 {
            let service = s.services[i] as usize;
            let row = [&s.values[i * 2..i * 2 + 2], &s.one_hot[service * 2..service * 2 + 2]].concat();
            assert_eq!(row, &dense[i * 4..i * 4 + 4]);
        }
    }

    #[test]
    fn load_features_reads_only_the_named_columns_and_the_keys() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("split.parquet");
        let b = batch(false);
        crate::io::table::write_parquet(&path, b.schema(), &[b]).unwrap();
        let t = Table::load_features(&path, &["service_*".into(), "request_count_per_second".into()]).unwrap();
        assert_eq!(t.features, ["request_count_per_second", "service_api", "service_web"]);
        assert_eq!((t.row(0), t.stored), (vec![40.0, 0.0, 1.0], 1));
        let t = Table::load_features(&path, &["cpu_usage_percent".into()]).unwrap();
        assert_eq!((t.features.clone(), t.y.clone()), (vec!["cpu_usage_percent".to_string()], vec![3.0, 1.0]));
        let e = Table::load_features(&path, &["cpu".into()]).unwrap_err().to_string();
        assert!(e.contains("no feature matches `cpu`") && e.contains("request_count_per_second, service_api"), "{e}");
    }

    #[test]
    fn a_row_filter_reads_those_rows_and_keeps_every_service() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("split.parquet");
        let b = batch(false);
        crate::io::table::write_parquet(&path, b.schema(), &[b.clone(), b]).unwrap();
        let keys = crate::models::row_keys::RowKeys::read(&path).unwrap();
        assert_eq!((keys.len(), keys.service(0), keys.service(1), keys.test.clone()), (4, "web", "api", vec![false, true, false, true]));
        // Only `web`'s second row: `api` keeps its one-hot column, with no row of its own.
        let t = Table::load_some(&path, None, Some(&keys.keep(vec![false, false, true, false]))).unwrap();
        let whole = Table::load(&path).unwrap();
        assert_eq!((t.len(), t.features.clone(), t.row(0)), (1, whole.features.clone(), whole.row(2)));
        assert_eq!((t.service(0), t.y.clone(), t.test.clone()), ("web", vec![3.0], vec![false]));
        let t = Table::load_some(&path, Some(&["request_count_per_second".into()]), Some(&keys.keep(vec![true, true, false, false]))).unwrap();
        assert_eq!((t.features.clone(), t.row(1)), (vec!["request_count_per_second".to_string()], vec![0.0]));
        assert!(Table::load_some(&path, None, Some(&keys.keep(vec![true]))).is_err(), "a filter of another file");
    }

    #[test]
    fn select_keeps_the_named_features_in_table_order_and_refuses_unknown_names() {
        let t = table().select(&["service_*".into(), "request_count_per_second".into()]).unwrap();
        assert_eq!(t.features, ["request_count_per_second", "service_api", "service_web"]);
        assert_eq!(t.row(0), [40.0, 0.0, 1.0]);
        assert_eq!(t.y, [3.0, 1.0]);
        let e = table().select(&["requests".into()]).unwrap_err().to_string();
        assert!(e.contains("no feature matches `requests`") && e.contains("request_count_per_second"), "{e}");
        let e = table().select(&["replica_count".into()]).unwrap_err().to_string();
        assert!(e.contains("never features"), "{e}");
    }

    #[test]
    fn a_model_reads_its_own_features_by_name() {
        let meta = ModelMeta {
            kind: crate::models::ModelKind::RandomForest,
            format: 1,
            features: vec!["service_web".into(), "cpu_usage_percent".into(), "service_api".into()],
            params: serde_json::Value::Null,
            metrics: serde_json::Value::Null,
            lineage: serde_json::Value::Null,
            trained_at: String::new(),
            tool_version: String::new(),
        };
        let t = table();
        let view = t.for_model(&meta).unwrap();
        assert_eq!(view.row(0), [1.0, 60.0, 0.0]);
        // With the one-hot in the input layer: a service column before a stored one is written
        // out, the one after stays an index.
        let narrow = Table::from_batch(batch(false)).unwrap();
        let view = narrow.for_model(&meta).unwrap();
        assert_eq!((view.row(0), view.row(1), view.stored), (vec![1.0, 60.0, 0.0], vec![0.0, 40.0, 1.0], 2));
        assert!(matches!(t.select(&["service_*".into()]).unwrap().for_model(&meta), Err(e) if e.to_string().contains("missing cpu_usage_percent")));
    }
}
