//! Where everything under a project's `artifacts/` folder lives. One type owns the paths, so
//! no module spells them out; the cache's own sub-folders are `Cache`'s.
//!
//! ```text
//! artifacts/
//!   cache/                 stage entries (cache::Cache), input-hashes.json (ingest::fingerprint)
//!   runs/<run-id>/         each run's manifest, report and model links; runs/latest
//!   models/<model>/v<N>/   the model registry
//!   spill/                 temporary files of queries larger than `run --memory`
//!   run.lock               one run per project at a time
//! ```

use std::path::{Path, PathBuf};

#[derive(Debug, Clone)]
pub struct Layout {
    artifacts: PathBuf,
}

impl Layout {
    /// The layout of the project in `project` (the folder that holds `pipelines/`).
    pub fn of(project: &Path) -> Layout {
        Layout { artifacts: project.join("artifacts") }
    }

    pub fn artifacts(&self) -> &Path {
        &self.artifacts
    }

    pub fn cache(&self) -> PathBuf {
        self.artifacts.join("cache")
    }

    /// The remembered content hashes of local input files.
    pub fn input_hashes(&self) -> PathBuf {
        self.cache().join("input-hashes.json")
    }

    pub fn runs(&self) -> PathBuf {
        self.artifacts.join("runs")
    }

    /// The link to the last complete run.
    pub fn latest_run(&self) -> PathBuf {
        self.runs().join("latest")
    }

    pub fn models(&self) -> PathBuf {
        self.artifacts.join("models")
    }

    /// Where query engines spill what does not fit in `run --memory` (temporary files only).
    pub fn spill(&self) -> PathBuf {
        self.artifacts.join("spill")
    }

    pub fn run_lock(&self) -> PathBuf {
        self.artifacts.join("run.lock")
    }
}
