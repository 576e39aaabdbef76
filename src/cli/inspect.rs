//! `pipeline inspect STAGE`: what a stage's cached output holds.

use anyhow::{Context, Result};
use datafusion::arrow::util::pretty::pretty_format_batches;
use datafusion::parquet::arrow::arrow_reader::ParquetRecordBatchReaderBuilder;

use super::{PipelineArgs, cached_entry, exit, load_plan, table_path};

#[derive(clap::Args, Debug)]
pub struct InspectArgs {
    /// The stage to look at.
    pub stage: String,
    #[command(flatten)]
    pub pipeline: PipelineArgs,
    /// How many rows to show.
    #[arg(long, short = 'n', default_value_t = 10)]
    pub rows: usize,
    /// Only the schema.
    #[arg(long)]
    pub schema: bool,
    /// A side table instead of the main output (e.g. `quarantine` of ingest).
    #[arg(long, value_name = "NAME")]
    pub table: Option<String>,
}

pub async fn inspect(a: InspectArgs) -> Result<u8> {
    let (stage, table, rows, schema_only) = (a.stage.as_str(), a.table.as_deref(), a.rows, a.schema);
    let (plan, cache) = load_plan(&a.pipeline).await?;
    let entry = cached_entry(&plan, &cache, stage)?;
    let path = table_path(&entry, stage, table)?;
    let file = std::fs::File::open(&path).with_context(|| format!("opening {}", path.display()))?;
    let builder = ParquetRecordBatchReaderBuilder::try_new(file)?;
    let total = builder.metadata().file_metadata().num_rows();
    let schema = builder.schema().clone();
    let name = match table {
        Some(t) => format!("{stage} (table {t})"),
        None => stage.to_string(),
    };
    println!("stage:    {name}");
    println!("op:       {}", entry.meta.parts.op);
    println!("key:      {}", entry.meta.key);
    println!("built:    {} in {:.2}s", entry.meta.built_at, entry.meta.seconds);
    println!("rows:     {total}");
    println!("size:     {}", human_bytes(std::fs::metadata(&path)?.len()));
    println!("file:     {}", path.display());
    let sides: Vec<String> = entry.tables().into_iter().map(|(n, _)| n).collect();
    if !sides.is_empty() && table.is_none() {
        println!("tables:   {} (see --table)", sides.join(", "));
    }
    if let Some(notes) = entry.meta.summary.get("notes").and_then(|n| n.as_array()).filter(|n| !n.is_empty()) {
        println!("notes:");
        for n in notes {
            println!("  {}", n.as_str().unwrap_or_default());
        }
    }
    println!("schema:   {} columns", schema.fields().len());
    for f in schema.fields() {
        println!("  {:<40} {}{}", f.name(), f.data_type(), if f.is_nullable() { "" } else { " not null" });
    }
    if !schema_only && rows > 0 {
        let reader = builder.with_batch_size(rows).with_limit(rows).build()?;
        let batches: Vec<_> = reader.collect::<Result<_, _>>()?;
        println!("first {} rows:", rows.min(total as usize));
        println!("{}", pretty_format_batches(&batches)?);
    }
    Ok(exit::SUCCESS)
}

pub fn human_bytes(b: u64) -> String {
    const UNITS: [&str; 4] = ["B", "KiB", "MiB", "GiB"];
    let mut v = b as f64;
    let mut u = 0;
    while v >= 1024.0 && u < UNITS.len() - 1 {
        v /= 1024.0;
        u += 1;
    }
    if u == 0 { format!("{b} B") } else { format!("{v:.1} {}", UNITS[u]) }
}
