//! `pipeline gc` on this machine: old runs, and the cache entries nothing refers to any more.
//!
//! Kept: the newest `keep_runs` runs and every run younger than `keep_days`, `latest` always;
//! the cache entries those runs used and each stage's last build (what `run` would reuse next),
//! and damaged entries younger than `keep_days`. Never touched: the model registry (promoted and
//! serving versions live there, not in the cache). The shared store is collected by the same
//! rules in `store_gc`, beside this.

use std::collections::HashSet;
use std::path::{Path, PathBuf};

use anyhow::{Context, Result};

use super::layout::Layout;
use super::runs::{MANIFEST, Retention, manifest_keys};
use super::store_gc::Collected;
use crate::cache::Cache;
use crate::io::fs::files_below;

fn dir_bytes(p: &Path) -> u64 {
    files_below(p).unwrap_or_default().iter().filter_map(|f| f.metadata().ok()).map(|m| m.len()).sum()
}

fn age_days(p: &Path) -> f64 {
    p.metadata().and_then(|m| m.modified()).ok().and_then(|t| t.elapsed().ok()).map_or(0.0, |d| d.as_secs_f64() / 86_400.0)
}

/// Collects `artifacts/` by `retention` (with `dry_run`, removes nothing); returns what it
/// removed and the cache keys still wanted here (the store keeps them too).
pub fn collect(root: &Path, retention: Retention, dry_run: bool) -> Result<(Collected, HashSet<String>)> {
    let layout = Layout::of(root);
    let runs_dir = layout.runs();
    let latest = std::fs::read_link(layout.latest_run()).ok().map(|l| l.to_string_lossy().into_owned());
    let mut runs: Vec<PathBuf> =
        std::fs::read_dir(&runs_dir).into_iter().flatten().flatten().map(|e| e.path()).filter(|p| p.is_dir() && !p.is_symlink()).collect();
    // Newest first: by when the manifest was written (run ids sort by time only to the second).
    let written = |r: &PathBuf| r.join(MANIFEST).metadata().and_then(|m| m.modified()).ok();
    runs.sort_by(|a, b| written(b).cmp(&written(a)).then(b.cmp(a)));
    let (mut kept, mut doomed) = (Vec::new(), Vec::new());
    for (i, r) in runs.iter().enumerate() {
        let name = r.file_name().map(|n| n.to_string_lossy().into_owned()).unwrap_or_default();
        if retention.keeps(i, age_days(r), latest.as_deref() == Some(name.as_str())) {
            kept.push(r.clone());
        } else {
            doomed.push(r.clone());
        }
    }
    // Cache entries still wanted: used by a kept run, or the last build of some stage.
    let mut wanted: HashSet<String> = HashSet::new();
    for r in &kept {
        if let Ok(b) = std::fs::read(r.join(MANIFEST)) {
            wanted.extend(manifest_keys(&b).with_context(|| format!("{}/manifest.json", r.display()))?);
        }
    }
    let cache = Cache::new(layout.cache());
    for f in files_below(&cache.stages_dir())? {
        if let Ok(v) = std::fs::read(&f).map_err(anyhow::Error::from).and_then(|b| Ok(serde_json::from_slice::<serde_json::Value>(&b)?))
            && let Some(k) = v["key"].as_str()
        {
            wanted.insert(k.to_string());
        }
    }
    let mut entries: Vec<PathBuf> = std::fs::read_dir(cache.entries_dir()).into_iter().flatten().flatten().map(|e| e.path()).collect();
    entries.retain(|e| !wanted.contains(&e.file_name().unwrap_or_default().to_string_lossy().into_owned()));
    // Leftovers of interrupted runs (no run is active: we hold the lock).
    entries.extend(std::fs::read_dir(cache.tmp_dir()).into_iter().flatten().flatten().map(|e| e.path()));
    entries.extend(
        std::fs::read_dir(cache.corrupt_dir())
            .into_iter()
            .flatten()
            .flatten()
            .map(|e| e.path())
            .filter(|p| retention.keep_days.is_none_or(|d| age_days(p) >= d)),
    );

    let mut bytes = 0u64;
    for p in doomed.iter().chain(&entries) {
        bytes += dir_bytes(p);
        if !dry_run {
            std::fs::remove_dir_all(p).with_context(|| format!("removing {}", p.display()))?;
        }
    }
    Ok((Collected { runs_removed: doomed.len(), runs_kept: kept.len(), entries_removed: entries.len(), bytes }, wanted))
}
