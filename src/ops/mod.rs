//! Stage ops. Each op is a module with a type implementing [`Stage`]; [`build`] is the one
//! place that maps an `op:` name to it.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use anyhow::Result;
use async_trait::async_trait;
use datafusion::arrow::array::RecordBatch;
use datafusion::arrow::datatypes::{DataType, Schema, SchemaRef};
use datafusion::common::config::{ParquetColumnOptions, TableParquetOptions};
use datafusion::parquet::arrow::arrow_writer::compute_leaves;
use datafusion::parquet::arrow::ArrowWriter;
use datafusion::parquet::file::properties::{WriterProperties, WriterPropertiesBuilder};
use indexmap::IndexMap;
use serde::de::DeserializeOwned;

use crate::cache::{Entry, InputFile};
use crate::pipeline::progress::StageProgress;
use crate::pipeline::spec::{Pipeline, SpecError, StageSpec};

pub mod evaluate;
pub mod ingest;
pub mod publish;
pub mod report;
pub mod split;
pub mod sql;
pub mod train;

/// The ops a pipeline may use, for `build` and for error messages.
pub const OPS: &[&str] = &["ingest", "sql", "split", "train", "evaluate", "report", "publish"];

/// Everything a running stage may use.
pub struct StageContext {
    pub name: String,
    pub pipeline: Arc<Pipeline>,
    /// Each dep's finished entry, by stage name, in the order the stage declared them.
    pub upstream: IndexMap<String, Entry>,
    /// The input files the cache key was computed from (`Stage::inputs` when the run was
    /// planned). Read these, as listed then, so the entry holds what its key says even when a
    /// collector writes between planning and reading.
    pub inputs: Vec<InputFile>,
    /// Blake3 of each of the stage's project files (`Stage::files`) when its key was computed.
    pub files: std::collections::BTreeMap<String, String>,
    /// Write outputs here: `output.parquet` and any side tables or files.
    pub out_dir: PathBuf,
    pub progress: StageProgress,
    /// Threads this stage may keep busy.
    pub threads: usize,
    /// For stages that compute for long: claim a share so siblings do not oversubscribe.
    pub cores: crate::pipeline::cores::Cores,
}

impl StageContext {
    pub fn output_path(&self) -> PathBuf {
        self.out_dir.join(crate::cache::OUTPUT)
    }

    /// A project file the key was computed from (`rel` as `Stage::files` gave it), refused if
    /// it was edited since: the entry would be filed under the old text's key.
    pub fn read_keyed_file(&self, rel: &str, path: &Path) -> Result<String> {
        read_keyed_file(&self.files, rel, path)
    }
}

fn read_keyed_file(keyed: &std::collections::BTreeMap<String, String>, rel: &str, path: &Path) -> Result<String> {
    let text = std::fs::read_to_string(path).map_err(|e| anyhow::anyhow!("reading {}: {e}", path.display()))?;
    let now = blake3::hash(text.as_bytes()).to_hex().to_string();
    anyhow::ensure!(keyed.get(rel) == Some(&now), "{rel} was edited after this run started; run again to build with the new text");
    Ok(text)
}

/// One key of the order a stage's main output is sorted in, so downstream SQL can skip sorts.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct SortKey {
    pub column: String,
    #[serde(default)]
    pub descending: bool,
    #[serde(default)]
    pub nulls_first: bool,
}

impl SortKey {
    pub fn asc(column: &str) -> SortKey {
        SortKey { column: column.to_string(), descending: false, nulls_first: false }
    }
}

/// What a stage reports when it finishes.
#[derive(Debug, Default)]
pub struct StageOutput {
    pub rows: u64,
    /// The order of `output.parquet`, when there is one.
    pub sorted_by: Vec<SortKey>,
    /// Facts kept with the cache entry and shown by `inspect`.
    pub summary: serde_json::Value,
    /// Lines worth a user's attention in the run summary ("12 rows quarantined").
    pub notes: Vec<String>,
}

#[async_trait]
pub trait Stage: Send + Sync {
    /// Bump when this op's output changes for the same inputs; old entries stop matching.
    fn version(&self) -> u32;
    /// The resolved params that determine the output (part of the cache key).
    fn params(&self) -> serde_json::Value;
    /// Project files read by the stage, as written in the pipeline, hashed by content.
    fn files(&self) -> Vec<PathBuf> {
        Vec::new()
    }
    /// External inputs (listed, not read) that the output depends on.
    async fn inputs(&self) -> Result<Vec<InputFile>> {
        Ok(Vec::new())
    }
    /// One line for `dag` and `status` ("sql/features.sql", "data/metrics (2024-10)").
    fn describe(&self) -> String;
    async fn run(&self, ctx: &StageContext) -> Result<StageOutput>;
}

/// Build the stage for a spec, checking its params.
pub fn build(p: &Pipeline, spec: &StageSpec) -> Result<Arc<dyn Stage>, SpecError> {
    Ok(match spec.op.as_str() {
        "ingest" => Arc::new(ingest::Ingest::from_spec(p, spec)?),
        "sql" => Arc::new(sql::Sql::from_spec(p, spec)?),
        "split" => Arc::new(split::Split::from_spec(p, spec)?),
        "train" => Arc::new(train::Train::from_spec(p, spec)?),
        "evaluate" => Arc::new(evaluate::Evaluate::from_spec(p, spec)?),
        "report" => Arc::new(report::ReportOp::from_spec(p, spec)?),
        "publish" => Arc::new(publish::Publish::from_spec(p, spec)?),
        other => {
            return Err(p.error(spec, Some("op"), format!("unknown op `{other}` (known ops: {})", OPS.join(", "))));
        }
    })
}

/// Read an op's typed params from the stage's fields; a type error names the field and its line.
pub fn parse_params<T: DeserializeOwned>(p: &Pipeline, spec: &StageSpec) -> Result<T, SpecError> {
    let value = serde_json::Value::Object(spec.params.clone());
    serde_path_to_error::deserialize(value).map_err(|e| {
        let path = e.path().to_string();
        let field = path.split(['.', '[']).next().filter(|f| !f.is_empty() && *f != "?").map(str::to_string);
        let inner = e.into_inner().to_string();
        // serde_json names unknown fields itself; point at that field's line.
        let field = field.or_else(|| {
            inner.strip_prefix("unknown field `").and_then(|r| r.split('`').next()).map(str::to_string)
        });
        let message = if path.is_empty() || path == "." { inner } else { format!("{inner} (at `{path}`)") };
        p.error(spec, field.as_deref(), message)
    })
}

/// Check that a stage has exactly the number of deps its op needs.
pub fn expect_deps(p: &Pipeline, spec: &StageSpec, range: std::ops::RangeInclusive<usize>, what: &str) -> Result<(), SpecError> {
    if range.contains(&spec.deps.len()) {
        Ok(())
    } else {
        Err(p.error(spec, Some("deps"), format!("op `{}` needs {what}, found {}", spec.op, spec.deps.len())))
    }
}

/// A project file named by a stage must exist now, not halfway through a run.
pub fn existing_file(p: &Pipeline, spec: &StageSpec, field: &str, rel: &str) -> Result<PathBuf, SpecError> {
    let path = p.resolve_path(rel);
    if path.is_file() {
        Ok(path)
    } else {
        Err(p.error(spec, Some(field), format!("file {} does not exist", path.display())))
    }
}

/// Rows per Parquet row group in cache entries. A writer keeps a row group's encoded columns in
/// memory until it flushes it (the library's default is 1M rows); 128K rows bounds that and
/// still gives every core whole columns to encode.
pub const ROW_GROUP_ROWS: usize = 128 * 1024;

/// The cache's Parquet settings, for DataFusion's writer (SQL stages) and, through
/// `writer_properties`, for ours: LZ4 (fastest to write and read), and dictionaries only for
/// strings: dictionary-encoding float columns costs more time than it saves space for metrics.
pub fn table_parquet_options(schema: &Schema) -> TableParquetOptions {
    let mut o = TableParquetOptions::default();
    o.global.compression = Some("lz4_raw".into());
    o.global.dictionary_enabled = Some(false);
    o.global.max_row_group_size = ROW_GROUP_ROWS;
    for f in schema.fields() {
        if matches!(f.data_type(), DataType::Utf8 | DataType::Utf8View) {
            let c = ParquetColumnOptions { dictionary_enabled: Some(true), ..Default::default() };
            o.column_specific_options.insert(f.name().clone(), c);
        }
    }
    o
}

/// `table_parquet_options` for the parquet crate's writer.
pub fn writer_properties(schema: &Schema) -> Result<WriterProperties> {
    let mut options = table_parquet_options(schema);
    // ArrowWriter embeds the Arrow schema itself; DataFusion's conversion would insist on it.
    options.global.skip_arrow_metadata = true;
    Ok(WriterPropertiesBuilder::try_from(&options)?.build())
}

/// A whole Parquet file as one batch (stages whose algorithms need every row at once).
pub fn read_table(path: &Path) -> Result<RecordBatch> {
    use datafusion::parquet::arrow::arrow_reader::ParquetRecordBatchReaderBuilder;
    let file = std::fs::File::open(path).map_err(|e| anyhow::anyhow!("opening {}: {e}", path.display()))?;
    let builder = ParquetRecordBatchReaderBuilder::try_new(file)?;
    let schema = builder.schema().clone();
    let batches: Vec<RecordBatch> = builder.build()?.collect::<Result<_, _>>()?;
    Ok(datafusion::arrow::compute::concat_batches(&schema, &batches)?)
}

/// Write batches as one Parquet file; returns the row count. Each row group's columns are
/// encoded and compressed on all cores (one thread took 0.35 s for ingest's 1M rows).
pub fn write_parquet(path: &Path, schema: SchemaRef, batches: &[RecordBatch]) -> Result<u64> {
    let file = std::fs::File::create(path)?;
    let props = writer_properties(&schema)?;
    let (mut writer, columns) = ArrowWriter::try_new(file, schema.clone(), Some(props))?.into_serialized_writer()?;
    let threads = crate::pipeline::cores::available();
    let mut rows = 0;
    let mut row_group = 0;
    for batch in batches {
        let mut start = 0;
        while start < batch.num_rows() {
            let len = ROW_GROUP_ROWS.min(batch.num_rows() - start);
            let slice = batch.slice(start, len);
            let mut leaves = Vec::new();
            for (field, column) in schema.fields().iter().zip(slice.columns()) {
                leaves.extend(compute_leaves(field, column)?);
            }
            let jobs = columns.create_column_writers(row_group)?.into_iter().zip(leaves).collect();
            let chunks = crate::pipeline::cores::map_on_threads(jobs, threads, |(mut column, leaf)| {
                column.write(&leaf)?;
                column.close()
            });
            let mut group = writer.next_row_group()?;
            for chunk in chunks {
                chunk?.append_to_row_group(&mut group)?;
            }
            group.close()?;
            row_group += 1;
            start += len;
            rows += len as u64;
        }
    }
    writer.close()?;
    Ok(rows)
}

#[cfg(test)]
mod tests {
    use super::*;
    use datafusion::arrow::array::{Float64Array, StringArray};
    use datafusion::arrow::datatypes::Field;
    use datafusion::parquet::basic::Compression;
    use datafusion::parquet::file::reader::{FileReader, SerializedFileReader};

    /// Each column chunk's (compression, has a dictionary page), by column name.
    fn chunks(path: &Path) -> Vec<(String, Compression, bool)> {
        let reader = SerializedFileReader::new(std::fs::File::open(path).unwrap()).unwrap();
        let group = reader.metadata().row_group(0);
        group.columns().iter().map(|c| (c.column_path().string(), c.compression(), c.dictionary_page_offset().is_some())).collect()
    }

    #[test]
    fn a_stage_reads_the_text_its_key_was_computed_from() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("features.sql");
        std::fs::write(&path, "SELECT 1").unwrap();
        let keyed = [("sql/features.sql".to_string(), blake3::hash(b"SELECT 1").to_hex().to_string())].into();
        assert_eq!(read_keyed_file(&keyed, "sql/features.sql", &path).unwrap(), "SELECT 1");
        std::fs::write(&path, "SELECT 2").unwrap();
        let e = read_keyed_file(&keyed, "sql/features.sql", &path).unwrap_err();
        assert_eq!(e.to_string(), "sql/features.sql was edited after this run started; run again to build with the new text");
    }

    #[tokio::test]
    async fn both_writers_write_cache_entries_alike() {
        let schema = Arc::new(Schema::new(vec![
            Field::new("service_name", DataType::Utf8, false),
            Field::new("cpu", DataType::Float64, true),
        ]));
        let batch = RecordBatch::try_new(
            schema.clone(),
            vec![Arc::new(StringArray::from(vec!["api", "api", "web"])), Arc::new(Float64Array::from(vec![Some(1.5), None, Some(2.0)]))],
        )
        .unwrap();
        let dir = tempfile::tempdir().unwrap();
        let ours = dir.path().join("ours.parquet");
        assert_eq!(write_parquet(&ours, schema.clone(), std::slice::from_ref(&batch)).unwrap(), 3);
        let theirs = dir.path().join("datafusion.parquet");
        let session = datafusion::prelude::SessionContext::new();
        session
            .read_batch(batch)
            .unwrap()
            .write_parquet(
                theirs.to_str().unwrap(),
                datafusion::dataframe::DataFrameWriteOptions::new().with_single_file_output(true),
                Some(table_parquet_options(&schema)),
            )
            .await
            .unwrap();
        let expected = vec![("service_name".to_string(), Compression::LZ4_RAW, true), ("cpu".to_string(), Compression::LZ4_RAW, false)];
        assert_eq!(chunks(&ours), expected);
        assert_eq!(chunks(&theirs), expected);
    }
}
