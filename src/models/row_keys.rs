//! Which rows of a split a model reads. A model that trains on a sample reads every row's
//! service and split first (two narrow columns), picks its rows, and then reads the features of
//! those rows alone: at 50M rows the forest's 200,000 sampled rows and its test rows, not 50M.

use anyhow::{Context, Result};
use datafusion::arrow::array::{ArrayRef, AsArray};
use datafusion::arrow::datatypes::DataType;

/// Services as they are met, batch after batch: each row's id in order of first sight, then
/// (`finish`) the names sorted and each row's position among them.
#[derive(Default)]
pub(super) struct ServiceIds {
    seen: std::collections::HashMap<String, u32>,
    ids: Vec<u32>,
}

impl ServiceIds {
    pub(super) fn with_capacity(rows: usize) -> ServiceIds {
        ServiceIds { ids: Vec::with_capacity(rows), ..Default::default() }
    }

    /// Names known before any row is read (those of the whole file, when only some of its
    /// rows are), so that a service keeps its one-hot column whichever rows are read.
    pub(super) fn know(&mut self, names: &[String]) {
        for name in names {
            let next = self.seen.len() as u32;
            self.seen.entry(name.clone()).or_insert(next);
        }
    }

    pub(super) fn extend(&mut self, column: &ArrayRef) -> Result<()> {
        let column = datafusion::arrow::compute::cast(column, &DataType::Utf8)?;
        let mut last: Option<(&str, u32)> = None;
        for s in column.as_string::<i32>().iter() {
            let s = s.unwrap_or("");
            let id = match last {
                Some((name, id)) if name == s => id,
                _ => {
                    let next = self.seen.len() as u32;
                    *self.seen.entry(s.to_string()).or_insert(next)
                }
            };
            last = Some((s, id));
            self.ids.push(id);
        }
        Ok(())
    }

    pub(super) fn finish(self) -> (Vec<String>, Vec<u32>) {
        let mut names: Vec<(String, u32)> = self.seen.into_iter().collect();
        names.sort_unstable();
        let mut position = vec![0u32; names.len()];
        for (p, (_, id)) in names.iter().enumerate() {
            position[*id as usize] = p as u32;
        }
        let ids = self.ids.into_iter().map(|id| position[id as usize]).collect();
        (names.into_iter().map(|(n, _)| n).collect(), ids)
    }
}

/// Every row's service and whether it is a test row, in file order (5 bytes a row), and its
/// timestamp when asked for (8 more).
pub struct RowKeys {
    names: Vec<String>,
    ids: Vec<u32>,
    pub test: Vec<bool>,
    /// Microseconds since the epoch; empty unless read with [`RowKeys::read_with_time`].
    pub timestamps: Vec<i64>,
}

impl RowKeys {
    pub fn read(path: &std::path::Path) -> Result<RowKeys> {
        RowKeys::read_columns(path, false)
    }

    pub fn read_with_time(path: &std::path::Path) -> Result<RowKeys> {
        RowKeys::read_columns(path, true)
    }

    fn read_columns(path: &std::path::Path, time: bool) -> Result<RowKeys> {
        use datafusion::arrow::datatypes::Int64Type;
        use datafusion::parquet::arrow::ProjectionMask;
        use datafusion::parquet::arrow::arrow_reader::ParquetRecordBatchReaderBuilder;
        let read = || -> Result<RowKeys> {
            let builder = ParquetRecordBatchReaderBuilder::try_new(std::fs::File::open(path)?)?;
            let rows = usize::try_from(builder.metadata().file_metadata().num_rows()).unwrap_or(0);
            let position = |name: &str| builder.schema().index_of(name).map_err(|_| anyhow::anyhow!("the table has no column `{name}`"));
            let mut roots = vec![position("service_name")?, position("split")?];
            if time {
                roots.push(position("timestamp")?);
            }
            let mask = ProjectionMask::roots(builder.parquet_schema(), roots);
            let mut services = ServiceIds::with_capacity(rows);
            let mut test = Vec::with_capacity(rows);
            let mut timestamps = Vec::with_capacity(if time { rows } else { 0 });
            for batch in builder.with_projection(mask).build()? {
                let batch = batch?;
                services.extend(batch.column_by_name("service_name").context("service_name")?)?;
                test.extend(batch.column_by_name("split").context("split")?.as_string::<i32>().iter().map(|s| s == Some("test")));
                if time {
                    let ts = datafusion::arrow::compute::cast(batch.column_by_name("timestamp").context("timestamp")?, &DataType::Int64)?;
                    timestamps.extend_from_slice(ts.as_primitive::<Int64Type>().values());
                }
            }
            let (names, ids) = services.finish();
            Ok(RowKeys { names, ids, test, timestamps })
        };
        read().with_context(|| format!("reading the service and split of {}", path.display()))
    }

    /// Each row's position among the file's services (sorted by name).
    pub fn service_ids(&self) -> &[u32] {
        &self.ids
    }

    /// Row `i`'s position among the file's services (sorted by name).
    pub fn service_id(&self, i: usize) -> usize {
        self.ids[i] as usize
    }

    pub fn services(&self) -> usize {
        self.names.len()
    }

    pub fn len(&self) -> usize {
        self.ids.len()
    }

    pub fn is_empty(&self) -> bool {
        self.ids.is_empty()
    }

    pub fn service(&self, i: usize) -> &str {
        &self.names[self.ids[i] as usize]
    }

    /// The file's services, sorted.
    pub fn service_names(&self) -> &[String] {
        &self.names
    }

    /// The rows `keep` marks, with every service of the file known.
    pub fn keep(&self, keep: Vec<bool>) -> RowFilter {
        RowFilter { keep, services: self.names.clone() }
    }
}

/// Rows of a file to read (`keep[i]`, in file order) and the file's services.
pub struct RowFilter {
    pub(super) keep: Vec<bool>,
    pub(super) services: Vec<String>,
}

impl RowFilter {
    /// The rows `keep` marks of a file whose services are `services`.
    pub fn new(keep: Vec<bool>, services: Vec<String>) -> RowFilter {
        RowFilter { keep, services }
    }

    pub fn rows(&self) -> usize {
        self.keep.iter().filter(|&&k| k).count()
    }
}
