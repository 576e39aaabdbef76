//! `pipeline export STAGE PATH`: a stage's cached output as Parquet or CSV.

use std::path::{Path, PathBuf};

use anyhow::{Context, Result, bail};
use datafusion::arrow::csv::WriterBuilder;
use datafusion::parquet::arrow::arrow_reader::ParquetRecordBatchReaderBuilder;

use super::{PipelineArgs, cached_entry, exit, load_plan, table_path};

#[derive(clap::Args, Debug)]
pub struct ExportArgs {
    /// The stage whose output to write.
    pub stage: String,
    /// Where: a .parquet or .csv file.
    pub path: PathBuf,
    #[command(flatten)]
    pub pipeline: PipelineArgs,
    /// A side table instead of the main output.
    #[arg(long, value_name = "NAME")]
    pub table: Option<String>,
}

pub async fn export(a: ExportArgs) -> Result<u8> {
    let (args, stage, table, dest) = (&a.pipeline, a.stage.as_str(), a.table.as_deref(), a.path.as_path());
    let ext = dest.extension().and_then(|e| e.to_str()).unwrap_or_default().to_ascii_lowercase();
    if ext != "parquet" && ext != "csv" {
        bail!("{}: the file name must end in .parquet or .csv", dest.display());
    }
    let (plan, cache) = load_plan(args).await?;
    let entry = cached_entry(&plan, &cache, stage)?;
    let src = table_path(&entry, stage, table)?;
    let dir = dest.parent().filter(|d| !d.as_os_str().is_empty()).unwrap_or(Path::new("."));
    std::fs::create_dir_all(dir)?;
    // Write beside the destination and rename, so a failed export leaves no half file.
    let tmp = tempfile::NamedTempFile::new_in(dir)?;
    let rows = if ext == "parquet" {
        std::fs::copy(&src, tmp.path()).with_context(|| format!("copying {}", src.display()))?;
        ParquetRecordBatchReaderBuilder::try_new(std::fs::File::open(&src)?)?.metadata().file_metadata().num_rows() as u64
    } else {
        let reader = ParquetRecordBatchReaderBuilder::try_new(std::fs::File::open(&src)?)?.build()?;
        let mut w = WriterBuilder::new().with_header(true).build(tmp.as_file());
        let mut rows = 0;
        for batch in reader {
            let batch = batch?;
            rows += batch.num_rows() as u64;
            w.write(&batch)?;
        }
        rows
    };
    tmp.persist(dest).with_context(|| format!("writing {}", dest.display()))?;
    println!("wrote {rows} rows of `{stage}` to {}", dest.display());
    Ok(exit::SUCCESS)
}
