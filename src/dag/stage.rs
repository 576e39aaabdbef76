//! The contract between the engine and every op: what a stage declares (version, params,
//! files, inputs) for its cache key, what it gets when it runs, and what it reports. The
//! engine never names an op: `cli` hands `plan` the op registry (`ops::build`).

use std::path::{Path, PathBuf};
use std::sync::Arc;

use anyhow::Result;
use async_trait::async_trait;
use indexmap::IndexMap;

use super::memory_budget::MemoryNeed;
use super::progress::StageProgress;
use super::spec::{Pipeline, SpecError, StageSpec};
use crate::cache::{Entry, InputFile};
use crate::io::table::SortKey;

/// The stages built so far, by name, in dependency order: every upstream stage of the one being
/// built is there, so an op reads what its upstream stages are (a split's method and fraction,
/// a SQL stage's params) from them, typed, instead of from the YAML (see `ops::upstream`).
pub type Built = IndexMap<String, Arc<dyn Stage>>;

/// Builds the stage of a spec, checking its params: the op registry the engine is given.
pub type BuildStage = fn(&Pipeline, &StageSpec, &Built) -> Result<Arc<dyn Stage>, SpecError>;

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
    pub cores: super::cores::Cores,
    /// Bytes of `run --memory` reserved for this stage: a SQL stage's pool, past which it spills.
    pub memory: u64,
    /// The shared store the run's entries also go to (`--store`), where a cluster reads them.
    pub store: Option<crate::store::Store>,
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

/// `Any`, so an op can see an upstream stage as the op it is.
#[async_trait]
pub trait Stage: std::any::Any + Send + Sync {
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
    /// What it holds while it runs, given what its inputs take in memory (upstream tables and
    /// input files): by default its inputs once, as a stage that reads them whole.
    fn memory(&self, input_bytes: u64) -> MemoryNeed {
        MemoryNeed::Holds(input_bytes)
    }
    /// A guess at this stage's work in seconds on a first run (later runs use the last
    /// build's time), so the scheduler starts the longest chain first: most stages take about
    /// a second, training takes minutes.
    fn work_hint(&self) -> f64 {
        1.0
    }
    async fn run(&self, ctx: &StageContext) -> Result<StageOutput>;
}

#[cfg(test)]
mod tests {
    use super::*;

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
}
