//! Planning: build every stage, compute its cache key from its inputs, and say whether a
//! usable entry exists or why not.

use std::collections::BTreeMap;
use std::sync::Arc;

use anyhow::{Context, Result};

use super::graph;
use super::spec::{Pipeline, SpecError};
use super::stage::{BuildStage, Built, Stage};
use crate::cache::{Cache, CacheKey, Entry, KeyParts};

pub struct PlannedStage {
    pub name: String,
    pub op: String,
    pub deps: Vec<String>,
    pub stage: Arc<dyn Stage>,
    pub parts: KeyParts,
    pub key: CacheKey,
    /// A complete entry for this key, if one exists.
    pub cached: Option<Entry>,
}

impl PlannedStage {
    /// Why this stage has no entry for its current key: what differs from its last build.
    pub fn why_stale(&self, cache: &Cache, pipeline: &str) -> Vec<String> {
        if self.cached.is_some() {
            return Vec::new();
        }
        match cache.last_built(pipeline, &self.name) {
            Some(last) => self.parts.changes_since(&last.parts),
            None => vec!["never built".to_string()],
        }
    }
}

pub struct Plan {
    pub pipeline: Arc<Pipeline>,
    pub stages: Vec<PlannedStage>,
}

impl Plan {
    pub fn get(&self, name: &str) -> Option<&PlannedStage> {
        self.stages.iter().find(|s| s.name == name)
    }
}

/// Build all stages with the op registry `build` (checking their params) without touching
/// inputs or the cache.
pub fn build_stages(p: &Pipeline, build: BuildStage) -> Result<Vec<(String, Arc<dyn Stage>)>, SpecError> {
    let mut built = Built::new();
    for name in graph::topo_order(&p.stages).expect("spec::parse rejects cycles") {
        let stage = build(p, &p.stages[&name], &built)?;
        built.insert(name, stage);
    }
    Ok(built.into_iter().collect())
}

/// Compute every stage's key in dependency order and look it up in the cache.
pub async fn plan(pipeline: Arc<Pipeline>, build: BuildStage, cache: &Cache) -> Result<Plan> {
    let built = build_stages(&pipeline, build)?;
    plan_built(pipeline, built, cache).await
}

/// `plan` for stages already built by [`build_stages`] (a run checks them before it takes the
/// project's lock, and plans under it: planning fetches from the shared store into the cache).
pub async fn plan_built(pipeline: Arc<Pipeline>, built: Vec<(String, Arc<dyn Stage>)>, cache: &Cache) -> Result<Plan> {
    let mut stages: Vec<PlannedStage> = Vec::with_capacity(built.len());
    for (name, stage) in built {
        let spec = &pipeline.stages[&name];
        let mut files = BTreeMap::new();
        for rel in stage.files() {
            let path = pipeline.resolve_path(&rel.to_string_lossy());
            let bytes = std::fs::read(&path).with_context(|| format!("stage `{name}`: reading {}", path.display()))?;
            files.insert(rel.to_string_lossy().into_owned(), blake3::hash(&bytes).to_hex().to_string());
        }
        let upstream = spec
            .deps
            .iter()
            .map(|d| {
                let up = stages.iter().find(|s| &s.name == d).expect("deps come first in topological order");
                (d.clone(), up.key.hex())
            })
            .collect();
        let mut inputs = stage.inputs().await.with_context(|| format!("stage `{name}`: listing its inputs"))?;
        inputs.sort();
        let parts = KeyParts {
            op: spec.op.clone(),
            op_version: stage.version(),
            code_version: env!("CARGO_PKG_VERSION").to_string(),
            params: stage.params(),
            files,
            upstream,
            inputs,
        };
        let key = parts.key();
        let cached = cache.fetch(key).await.with_context(|| format!("stage `{name}`"))?;
        stages.push(PlannedStage { name, op: spec.op.clone(), deps: spec.deps.clone(), stage, parts, key, cached });
    }
    Ok(Plan { pipeline, stages })
}
