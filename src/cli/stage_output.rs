//! A pipeline's stages and their cached outputs, for the commands that look at them
//! (`status`, `inspect`, `query`, `export`).

use std::path::PathBuf;
use std::sync::Arc;

use anyhow::Result;

use super::PipelineArgs;
use crate::cache::{Cache, Entry};
use crate::dag::Pipeline;
use crate::dag::plan::{self, Plan};
use crate::store::Store;

/// The cache a pipeline's stages live in, with the shared store behind it if there is one.
pub fn cache_for(p: &Pipeline) -> Result<Cache> {
    let store = p.store.as_deref().map(Store::open).transpose()?;
    Ok(Cache::new(crate::artifacts::layout::Layout::of(&p.root).cache()).with_store(store))
}

pub async fn load_plan(args: &PipelineArgs) -> Result<(Arc<Plan>, Cache)> {
    let p = args.load()?;
    let cache = cache_for(&p)?;
    let plan = plan::plan(p, crate::ops::build, &cache).await?;
    Ok((Arc::new(plan), cache))
}

/// The cached entry of a stage for the current spec, or an error saying how to get one.
pub fn cached_entry(plan: &Plan, cache: &Cache, stage: &str) -> Result<Entry> {
    let Some(s) = plan.get(stage) else {
        anyhow::bail!(
            "no stage `{stage}` in {} (stages: {})",
            plan.pipeline.file.display(),
            plan.stages.iter().map(|s| s.name.as_str()).collect::<Vec<_>>().join(", ")
        );
    };
    match &s.cached {
        Some(e) => Ok(e.clone()),
        None => anyhow::bail!(
            "stage `{stage}` has no cached output for the current pipeline ({}); run `pipeline run` first",
            s.why_stale(cache, &plan.pipeline.name).join("; ")
        ),
    }
}

/// The file of a stage's main output or one of its side tables.
pub fn table_path(entry: &Entry, stage: &str, table: Option<&str>) -> Result<PathBuf> {
    match table {
        None => Ok(entry.output()),
        Some(t) => entry.tables().into_iter().find(|(n, _)| n == t).map(|(_, p)| p).ok_or_else(|| {
            let names: Vec<String> = entry.tables().into_iter().map(|(n, _)| n).collect();
            anyhow::anyhow!("stage `{stage}` has no table `{t}` (side tables: {})", if names.is_empty() { "none".into() } else { names.join(", ") })
        }),
    }
}
