//! `op: sql`: a DataFusion query from a file in `sql/`, over its upstream stages as tables.
//!
//! ```yaml
//! features:
//!   op: sql
//!   deps: [ingest]
//!   sql: sql/features.sql
//!   params: { window: 10 }   # `${window}` in the SQL text
//!   # `${one_hot}` becomes one 0/1 column per distinct value of a column of an upstream table,
//!   # named prefix + value, in alphabetical order (the set of services is only known at run time).
//!   one_hot: { column: service_name, from: ingest, prefix: service_ }
//!   choices: { label_rule: [seed, hpa] }   # refuse other values before anything runs
//! ```

use std::path::PathBuf;

use anyhow::{Context, Result};
use async_trait::async_trait;
use datafusion::dataframe::DataFrameWriteOptions;
use datafusion::prelude::ParquetReadOptions;
use serde::Deserialize;
use serde_json::Value;

use super::parse_params;
use crate::dag::memory_budget::MemoryNeed;
use crate::dag::spec::{Pipeline, SpecError, StageSpec};
use crate::dag::stage::{Stage, StageContext, StageOutput};

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct Params {
    sql: String,
    #[serde(default)]
    params: serde_json::Map<String, Value>,
    one_hot: Option<OneHot>,
    /// Allowed values of some params, checked before anything runs: `{ label_rule: [seed, hpa] }`.
    #[serde(default)]
    choices: std::collections::BTreeMap<String, Vec<Value>>,
}

#[derive(Debug, Clone, Deserialize, serde::Serialize)]
#[serde(deny_unknown_fields)]
struct OneHot {
    column: String,
    from: String,
    prefix: String,
}

pub struct Sql {
    file: PathBuf,
    rel: String,
    params: serde_json::Map<String, Value>,
    one_hot: Option<OneHot>,
}

impl Sql {
    /// One of the stage's `params:` (`label_rule` of the labels stage, say).
    pub fn param(&self, name: &str) -> Option<&Value> {
        self.params.get(name)
    }

    pub fn from_spec(p: &Pipeline, spec: &StageSpec) -> Result<Sql, SpecError> {
        let params: Params = parse_params(p, spec)?;
        let file = super::existing_file(p, spec, "sql", &params.sql)?;
        let text = std::fs::read_to_string(&file).map_err(|e| p.error(spec, Some("sql"), format!("cannot read {}: {e}", file.display())))?;
        if let Some(o) = &params.one_hot
            && !spec.deps.contains(&o.from)
        {
            return Err(p.error(spec, Some("one_hot"), format!("`from: {}` must be one of the stage's deps ({})", o.from, spec.deps.join(", "))));
        }
        for (name, allowed) in &params.choices {
            let v = params.params.get(name).ok_or_else(|| p.error(spec, Some("choices"), format!("`{name}` is not in the stage's params")))?;
            if !allowed.contains(v) {
                let list: Vec<String> = allowed.iter().map(|a| a.to_string()).collect();
                return Err(p.error(spec, Some("params"), format!("`{name}` is {v}; it must be one of {}", list.join(", "))));
            }
        }
        let mut vars = params.params.clone();
        if params.one_hot.is_some() {
            vars.insert("one_hot".into(), Value::from(0));
        }
        let rendered = render(&text, &vars).map_err(|m| p.error(spec, Some("params"), format!("{}: {m}", params.sql)))?;
        // Param values are literals (a string param with a line break aside), so the rendered
        // text keeps the file's line numbers for the message.
        crate::features::named_windows::check(&rendered).map_err(|m| p.error(spec, Some("sql"), format!("{}: {m}", params.sql)))?;
        Ok(Sql { file, rel: params.sql, params: params.params, one_hot: params.one_hot })
    }
}

/// The `${one_hot}` expansion: `CAST(col = 'v' AS DOUBLE) AS "prefix_v"` per distinct value.
async fn one_hot_columns(session: &datafusion::prelude::SessionContext, o: &OneHot) -> Result<String> {
    let q = format!("SELECT DISTINCT CAST(\"{}\" AS VARCHAR) AS v FROM \"{}\" WHERE \"{}\" IS NOT NULL ORDER BY v", o.column, o.from, o.column);
    let batches = session.sql(&q).await?.collect().await.context("one_hot: listing distinct values")?;
    let mut cols = Vec::new();
    for b in &batches {
        let arr = datafusion::arrow::compute::cast(b.column(0), &datafusion::arrow::datatypes::DataType::Utf8)?;
        let arr = arr.as_any().downcast_ref::<datafusion::arrow::array::StringArray>().context("one_hot values")?;
        for v in arr.iter().flatten() {
            let lit = v.replace('\'', "''");
            let name = format!("{}{v}", o.prefix).replace('"', "\"\"");
            cols.push(format!("CAST(\"{}\" = '{lit}' AS DOUBLE) AS \"{name}\"", o.column));
        }
    }
    anyhow::ensure!(!cols.is_empty(), "one_hot: `{}` of `{}` has no values", o.column, o.from);
    Ok(cols.join(",\n    "))
}

/// Why a SQL template cannot be filled in from the stage's params.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum RenderError {
    #[error("unclosed `${{`")]
    Unclosed,
    #[error("the SQL uses `${{{name}}}` but the stage's `params` has no `{name}` (it has: {})", if .known.is_empty() { "none".to_string() } else { .known.join(", ") })]
    Unknown { name: String, known: Vec<String> },
    #[error("param `{0}` must be a string, number or boolean")]
    NotAScalar(String),
}

/// Substitute `${name}` in the SQL text with the stage's params as SQL literals.
pub fn render(sql: &str, params: &serde_json::Map<String, Value>) -> Result<String, RenderError> {
    render_with(sql, params, &[])
}

/// `render`, with some names bound to raw SQL text instead of literals.
pub fn render_with(sql: &str, params: &serde_json::Map<String, Value>, raw: &[(&str, String)]) -> Result<String, RenderError> {
    let mut out = String::with_capacity(sql.len());
    let mut rest = sql;
    while let Some(start) = rest.find("${") {
        out.push_str(&rest[..start]);
        let after = &rest[start + 2..];
        let end = after.find('}').ok_or(RenderError::Unclosed)?;
        let name = after[..end].trim();
        if let Some((_, text)) = raw.iter().find(|(n, _)| *n == name) {
            out.push_str(text);
            rest = &after[end + 1..];
            continue;
        }
        let v = params.get(name).ok_or_else(|| RenderError::Unknown { name: name.into(), known: params.keys().cloned().collect() })?;
        match v {
            Value::String(s) => out.push_str(&format!("'{}'", s.replace('\'', "''"))),
            Value::Number(n) => out.push_str(&n.to_string()),
            Value::Bool(b) => out.push_str(if *b { "TRUE" } else { "FALSE" }),
            _ => return Err(RenderError::NotAScalar(name.into())),
        }
        rest = &after[end + 1..];
    }
    out.push_str(rest);
    Ok(out)
}

#[async_trait]
impl Stage for Sql {
    fn version(&self) -> u32 {
        1
    }

    fn params(&self) -> Value {
        serde_json::json!({ "sql": self.rel, "params": self.params, "one_hot": self.one_hot })
    }

    fn files(&self) -> Vec<PathBuf> {
        vec![PathBuf::from(&self.rel)]
    }

    fn memory(&self, _input_bytes: u64) -> MemoryNeed {
        MemoryNeed::Spills
    }

    fn describe(&self) -> String {
        self.rel.clone()
    }

    async fn run(&self, ctx: &StageContext) -> Result<StageOutput> {
        let text = ctx.read_keyed_file(&self.rel, &self.file)?;
        let spill = crate::artifacts::layout::Layout::of(&ctx.pipeline.root).spill();
        let session = crate::features::stage_session(ctx.threads, ctx.memory, &spill)?;
        for (name, entry) in &ctx.upstream {
            register_entry(&session, name, entry).await?;
        }
        let mut raw = Vec::new();
        if let Some(o) = &self.one_hot {
            raw.push(("one_hot", one_hot_columns(&session, o).await?));
        }
        let query = render_with(&text, &self.params, &raw).map_err(|m| anyhow::anyhow!("{}: {m}", self.rel))?;
        ctx.progress.message(&format!("running {}", self.rel));
        let df = session.sql(&query).await.with_context(|| format!("in {}", self.rel))?;
        let plan = df.clone().create_physical_plan().await.with_context(|| format!("in {}", self.rel))?;
        let sorted_by = output_order(&plan);
        let engine = &ctx.pipeline.engine;
        if !engine.is_local() {
            // Planned here too, for the order and types of what the cluster sends back.
            let rows = self.run_on_cluster(ctx, &query, plan.schema()).await.with_context(|| format!("in {} on the engine {engine}", self.rel))?;
            ctx.progress.set_rows(rows);
            return Ok(StageOutput { rows, sorted_by, ..Default::default() });
        }
        let options = crate::io::table::table_parquet_options(&plan.schema());
        // DataFusion's writer encodes row groups and columns in parallel; ours would use one core.
        let written = df
            .write_parquet(&ctx.output_path().to_string_lossy(), DataFrameWriteOptions::new().with_single_file_output(true), Some(options))
            .await
            .map_err(|e| over_memory(e, ctx.memory))
            .with_context(|| format!("in {}", self.rel))?;
        let rows = written.first().and_then(|b| b.column(0).as_any().downcast_ref::<datafusion::arrow::array::UInt64Array>()).map(|a| a.value(0)).unwrap_or(0);
        ctx.progress.set_rows(rows);
        Ok(StageOutput { rows, sorted_by, ..Default::default() })
    }
}

#[cfg(not(feature = "ballista"))]
impl Sql {
    async fn run_on_cluster(&self, _: &StageContext, _: &str, _: datafusion::arrow::datatypes::SchemaRef) -> Result<u64> {
        anyhow::bail!("{}", crate::engine::NO_BALLISTA)
    }
}

#[cfg(feature = "ballista")]
impl Sql {
    /// The query on a Ballista cluster, its result streamed into the entry's file as it comes
    /// (cast to `schema`, the local plan's: Ballista reads strings as Utf8, not Utf8View).
    async fn run_on_cluster(&self, ctx: &StageContext, query: &str, schema: datafusion::arrow::datatypes::SchemaRef) -> Result<u64> {
        use futures::StreamExt;
        let session = crate::engine::ballista::client_session(&ctx.pipeline.engine, ctx.threads).await?;
        // With a shared store the cluster reads the upstream entries there (the run put them there
        // when they finished); without one, its executors must see this machine's paths.
        for (name, entry) in &ctx.upstream {
            register_entry_in(&session, name, entry, ctx.store.as_ref()).await?;
        }
        let mut stream = session.sql(query).await?.execute_stream().await?;
        let mut writer = crate::io::table::TableWriter::create(&ctx.output_path(), schema.clone())?;
        while let Some(batch) = stream.next().await {
            let batch = batch?;
            let columns =
                batch.columns().iter().zip(schema.fields()).map(|(c, f)| datafusion::arrow::compute::cast(c, f.data_type())).collect::<Result<Vec<_>, _>>()?;
            writer.write(&datafusion::arrow::array::RecordBatch::try_new(schema.clone(), columns)?)?;
        }
        writer.finish()
    }
}

/// A query that needed more memory than `--memory` and could not spill it says what to change.
fn over_memory(e: datafusion::error::DataFusionError, memory: u64) -> anyhow::Error {
    let text = e.to_string();
    let error = anyhow::Error::new(e);
    if text.contains("Resources exhausted") {
        error.context(format!(
            "the query needed more memory than its share of run --memory allows ({}: the budget over --jobs) and could not spill the rest; raise --memory or lower --jobs",
            crate::io::memory_size::human(memory)
        ))
    } else {
        error
    }
}

/// The order the plan's output comes in, as plain columns (what `ORDER BY` at the end gives).
fn output_order(plan: &std::sync::Arc<dyn datafusion::physical_plan::ExecutionPlan>) -> Vec<crate::io::table::SortKey> {
    use datafusion::physical_expr::expressions::Column;
    let Some(ordering) = plan.properties().output_ordering() else { return Vec::new() };
    let mut keys = Vec::new();
    for e in ordering.iter() {
        match e.expr.downcast_ref::<Column>() {
            Some(c) => {
                keys.push(crate::io::table::SortKey { column: c.name().to_string(), descending: e.options.descending, nulls_first: e.options.nulls_first })
            }
            None => break,
        }
    }
    keys
}

/// Read options for a finished stage: its declared order lets DataFusion skip sorts.
fn read_options(entry: &crate::cache::Entry) -> ParquetReadOptions<'static> {
    let order: Vec<datafusion::logical_expr::SortExpr> =
        entry.meta.sorted_by.iter().map(|k| datafusion::prelude::col(format!("\"{}\"", k.column)).sort(!k.descending, k.nulls_first)).collect();
    let opts = ParquetReadOptions::default();
    if order.is_empty() { opts } else { opts.file_sort_order(vec![order]) }
}

/// Register a finished stage as a table named after it, and its side tables as `<stage>_<side>`.
pub async fn register_entry(session: &datafusion::prelude::SessionContext, name: &str, entry: &crate::cache::Entry) -> Result<()> {
    register_entry_in(session, name, entry, None).await
}

/// `register_entry`, reading the entry's copy in `store` when there is one.
#[cfg_attr(not(feature = "ballista"), allow(dead_code))]
async fn register_entry_in(
    session: &datafusion::prelude::SessionContext,
    name: &str,
    entry: &crate::cache::Entry,
    store: Option<&crate::store::Store>,
) -> Result<()> {
    let location = |path: std::path::PathBuf| -> Result<String> {
        match store {
            Some(store) => entry.url_in(store, &path),
            // Absolute: a Ballista executor resolves the path in its own working folder.
            None => Ok(std::path::absolute(path)?.to_string_lossy().into_owned()),
        }
    };
    let output = location(entry.output())?;
    session.register_parquet(name, &output, read_options(entry)).await.with_context(|| format!("registering stage `{name}` ({output})"))?;
    for (side, path) in entry.tables() {
        let path = location(path)?;
        session
            .register_parquet(format!("{name}_{side}"), &path, ParquetReadOptions::default())
            .await
            .with_context(|| format!("registering `{name}_{side}` ({path})"))?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn params_become_sql_literals() {
        let p = json!({"cpu": 70, "name": "o'k", "on": true}).as_object().unwrap().clone();
        assert_eq!(render("x > ${cpu} AND n = ${name} AND ${on}", &p).unwrap(), "x > 70 AND n = 'o''k' AND TRUE");
        assert!(render("${nope}", &p).unwrap_err().to_string().contains("no `nope`"));
        assert_eq!(render("${cpu", &p), Err(RenderError::Unclosed));
    }
}
