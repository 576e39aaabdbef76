//! Cached tables as Parquet: the writer settings both writers share (ours and DataFusion's),
//! reading a whole file, and the sort order a table is known to have.

use std::path::Path;

use anyhow::Result;
use datafusion::arrow::array::RecordBatch;
use datafusion::arrow::datatypes::{DataType, Schema, SchemaRef};
use datafusion::common::config::{ParquetColumnOptions, TableParquetOptions};
use datafusion::parquet::arrow::ArrowWriter;
use datafusion::parquet::arrow::arrow_writer::compute_leaves;
use datafusion::parquet::file::properties::{WriterProperties, WriterPropertiesBuilder};

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
    read_columns(path, |_| true)
}

/// A reader of the columns of a Parquet file that `keep` names: the others are never decoded.
fn projected(path: &Path, keep: impl Fn(&str) -> bool) -> Result<datafusion::parquet::arrow::arrow_reader::ParquetRecordBatchReader> {
    use datafusion::parquet::arrow::ProjectionMask;
    use datafusion::parquet::arrow::arrow_reader::ParquetRecordBatchReaderBuilder;
    let file = std::fs::File::open(path).map_err(|e| anyhow::anyhow!("opening {}: {e}", path.display()))?;
    let builder = ParquetRecordBatchReaderBuilder::try_new(file)?;
    let roots: Vec<usize> = builder.schema().fields().iter().enumerate().filter(|(_, f)| keep(f.name())).map(|(i, _)| i).collect();
    let mask = ProjectionMask::roots(builder.parquet_schema(), roots);
    Ok(builder.with_projection(mask).build()?)
}

/// The columns of a Parquet file that `keep` names, a batch at a time: for a file read to pick
/// a few of its rows.
pub fn read_batches(path: &Path, keep: impl Fn(&str) -> bool) -> Result<impl Iterator<Item = Result<RecordBatch>>> {
    Ok(projected(path, keep)?.map(|b| b.map_err(anyhow::Error::from)))
}

/// The columns of a Parquet file that `keep` names (by their names, in the file's order), as one
/// batch: the others are never decoded.
pub fn read_columns(path: &Path, keep: impl Fn(&str) -> bool) -> Result<RecordBatch> {
    use datafusion::arrow::array::RecordBatchReader;
    let reader = projected(path, keep)?;
    let schema = reader.schema();
    let batches: Vec<RecordBatch> = reader.collect::<Result<_, _>>()?;
    Ok(datafusion::arrow::compute::concat_batches(&schema, &batches)?)
}

/// Write batches as one Parquet file; returns the row count.
pub fn write_parquet(path: &Path, schema: SchemaRef, batches: &[RecordBatch]) -> Result<u64> {
    let mut w = TableWriter::create(path, schema)?;
    for b in batches {
        w.write(b)?;
    }
    w.finish()
}

/// A Parquet file written batch by batch with the cache's settings. A row group's columns stay
/// open while batches arrive, each batch encoded into them on all cores (one thread took 0.35 s
/// for ingest's 1M rows), so memory holds one batch and the group's encoded pages, never the
/// group's rows.
pub struct TableWriter {
    schema: SchemaRef,
    writer: datafusion::parquet::file::writer::SerializedFileWriter<std::fs::File>,
    factory: datafusion::parquet::arrow::arrow_writer::ArrowRowGroupWriterFactory,
    /// The open row group's column writers, and its rows so far.
    open: Option<(Vec<datafusion::parquet::arrow::arrow_writer::ArrowColumnWriter>, usize)>,
    row_group: usize,
    rows: u64,
}

impl TableWriter {
    pub fn create(path: &Path, schema: SchemaRef) -> Result<TableWriter> {
        let file = std::fs::File::create(path).map_err(|e| anyhow::anyhow!("creating {}: {e}", path.display()))?;
        let props = writer_properties(&schema)?;
        let (writer, factory) = ArrowWriter::try_new(file, schema.clone(), Some(props))?.into_serialized_writer()?;
        Ok(TableWriter { schema, writer, factory, open: None, row_group: 0, rows: 0 })
    }

    pub fn write(&mut self, batch: &RecordBatch) -> Result<()> {
        let mut start = 0;
        while start < batch.num_rows() {
            let (columns, rows) = match self.open.take() {
                Some(open) => open,
                None => (self.factory.create_column_writers(self.row_group)?, 0),
            };
            let len = (ROW_GROUP_ROWS - rows).min(batch.num_rows() - start);
            let slice = batch.slice(start, len);
            let mut leaves = Vec::new();
            for (field, column) in self.schema.fields().iter().zip(slice.columns()) {
                leaves.extend(compute_leaves(field, column)?);
            }
            let jobs: Vec<_> = columns.into_iter().zip(leaves).collect();
            let written = super::threads::map_on_threads(jobs, super::threads::available(), |(mut column, leaf)| {
                column.write(&leaf)?;
                Ok::<_, datafusion::parquet::errors::ParquetError>(column)
            });
            let columns = written.into_iter().collect::<Result<Vec<_>, _>>()?;
            self.open = Some((columns, rows + len));
            start += len;
            if rows + len == ROW_GROUP_ROWS {
                self.close_group()?;
            }
        }
        Ok(())
    }

    fn close_group(&mut self) -> Result<()> {
        let Some((columns, rows)) = self.open.take() else { return Ok(()) };
        let chunks = super::threads::map_on_threads(columns, super::threads::available(), |column| column.close());
        let mut group = self.writer.next_row_group()?;
        for chunk in chunks {
            chunk?.append_to_row_group(&mut group)?;
        }
        group.close()?;
        self.row_group += 1;
        self.rows += rows as u64;
        Ok(())
    }

    /// Writes the last row group and the footer; returns the row count.
    pub fn finish(mut self) -> Result<u64> {
        self.close_group()?;
        self.writer.close()?;
        Ok(self.rows)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use datafusion::arrow::array::{Float64Array, StringArray};
    use datafusion::arrow::datatypes::Field;
    use datafusion::parquet::basic::Compression;
    use datafusion::parquet::file::reader::{FileReader, SerializedFileReader};
    use std::sync::Arc;

    /// Each column chunk's (compression, has a dictionary page), by column name.
    fn chunks(path: &Path) -> Vec<(String, Compression, bool)> {
        let reader = SerializedFileReader::new(std::fs::File::open(path).unwrap()).unwrap();
        let group = reader.metadata().row_group(0);
        group.columns().iter().map(|c| (c.column_path().string(), c.compression(), c.dictionary_page_offset().is_some())).collect()
    }

    #[tokio::test]
    async fn both_writers_write_cache_entries_alike() {
        let schema = Arc::new(Schema::new(vec![Field::new("service_name", DataType::Utf8, false), Field::new("cpu", DataType::Float64, true)]));
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
