//! `pipeline query "SQL"`: SQL over every cached stage output of the current pipeline.

use anyhow::{Context, Result};
use datafusion::arrow::util::pretty::pretty_format_batches;
use futures::StreamExt;

use super::{PipelineArgs, exit, load_plan};
use crate::ops::sql::register_entry;

#[derive(clap::Args, Debug)]
pub struct QueryArgs {
    /// The query, e.g. "SELECT service_name, count(*) FROM ingest GROUP BY 1".
    pub sql: String,
    #[command(flatten)]
    pub pipeline: PipelineArgs,
    /// At most this many rows are printed.
    #[arg(long, default_value_t = 100)]
    pub limit: usize,
}

pub async fn query(a: QueryArgs) -> Result<u8> {
    let (sql, limit) = (a.sql.as_str(), a.limit);
    let (plan, _cache) = load_plan(&a.pipeline).await?;
    let session = crate::features::session(crate::io::threads::available());
    let mut missing = Vec::new();
    for s in &plan.stages {
        match &s.cached {
            Some(e) => register_entry(&session, &s.name, e).await?,
            None => missing.push(s.name.as_str()),
        }
    }
    if !missing.is_empty() {
        eprintln!("note: not cached for the current pipeline, so not queryable: {}", missing.join(", "));
    }
    crate::features::named_windows::check(sql).map_err(|m| anyhow::anyhow!("in the query: {m}"))?;
    let df = session.sql(sql).await.context("in the query")?;
    // Stream and stop at the limit rather than wrapping the query: EXPLAIN must stay the root.
    let mut stream = df.execute_stream().await.context("running the query")?;
    let mut batches = Vec::new();
    let mut n = 0;
    let mut more = false;
    while let Some(batch) = stream.next().await {
        let batch = batch.context("running the query")?;
        if n + batch.num_rows() > limit {
            batches.push(batch.slice(0, limit - n));
            more = true;
            break;
        }
        n += batch.num_rows();
        batches.push(batch);
    }
    println!("{}", pretty_format_batches(&batches)?);
    if more {
        eprintln!("(showing the first {limit} rows; --limit N for more)");
    }
    Ok(exit::SUCCESS)
}
