//! `pipeline gc`: remove old runs and the cache entries nothing refers to any more.
//!
//! Kept: the newest `--keep-runs` runs and every run younger than `--keep-days`, `latest`
//! always; the cache entries those runs used and each stage's last build (what `run` would
//! reuse next). Never touched: the model registry (promoted and serving versions live there,
//! not in the cache). Holds the run lock, so it never races a run on this machine. With
//! `--store`, the shared store is collected by the same rules afterwards (`artifacts::store_gc`).

use std::collections::HashSet;
use std::path::{Path, PathBuf};

use anyhow::{Context, Result};

use super::exit;
use crate::artifacts::layout::Layout;
use crate::artifacts::runs::{manifest_keys, Retention, MANIFEST};
use crate::cache::Cache;
use crate::io::fs::files_below;
use crate::store::Store;

pub struct Options {
    pub root: PathBuf,
    pub retention: Retention,
    pub dry_run: bool,
    pub no_wait: bool,
    pub store: Option<Store>,
}

fn dir_bytes(p: &Path) -> u64 {
    files_below(p).unwrap_or_default().iter().filter_map(|f| f.metadata().ok()).map(|m| m.len()).sum()
}

fn age_days(p: &Path) -> f64 {
    p.metadata().and_then(|m| m.modified()).ok().and_then(|t| t.elapsed().ok()).map_or(0.0, |d| d.as_secs_f64() / 86_400.0)
}

pub async fn gc(o: Options) -> Result<u8> {
    let _lock = crate::artifacts::lock::RunLock::acquire(&o.root, !o.no_wait, |holder| eprintln!("waiting for a run to finish ({holder})"))?;
    let verb = if o.dry_run { "would remove" } else { "removed" };
    let wanted = collect_local(&o, verb)?;
    if let Some(store) = &o.store {
        let s = crate::artifacts::store_gc::collect(store, o.retention, &wanted, o.dry_run).await?;
        println!(
            "{}: {verb} {} runs and {} cache entries ({:.1} MiB); kept {} runs",
            store.url(),
            s.runs_removed,
            s.entries_removed,
            s.bytes as f64 / 1048576.0,
            s.runs_kept
        );
    }
    Ok(exit::SUCCESS)
}

/// Collect `artifacts/`; returns the cache keys still wanted here (the store keeps them too).
fn collect_local(o: &Options, verb: &str) -> Result<HashSet<String>> {
    let layout = Layout::of(&o.root);
    let runs_dir = layout.runs();
    let latest = std::fs::read_link(layout.latest_run()).ok().map(|l| l.to_string_lossy().into_owned());
    let mut runs: Vec<PathBuf> = std::fs::read_dir(&runs_dir).into_iter().flatten().flatten().map(|e| e.path()).filter(|p| p.is_dir() && !p.is_symlink()).collect();
    // Newest first: by when the manifest was written (run ids sort by time only to the second).
    let written = |r: &PathBuf| r.join(MANIFEST).metadata().and_then(|m| m.modified()).ok();
    runs.sort_by(|a, b| written(b).cmp(&written(a)).then(b.cmp(a)));
    let (mut kept, mut doomed) = (Vec::new(), Vec::new());
    for (i, r) in runs.iter().enumerate() {
        let name = r.file_name().map(|n| n.to_string_lossy().into_owned()).unwrap_or_default();
        if o.retention.keeps(i, age_days(r), latest.as_deref() == Some(name.as_str())) {
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
    entries.extend(std::fs::read_dir(cache.corrupt_dir()).into_iter().flatten().flatten().map(|e| e.path()).filter(|p| o.retention.keep_days.is_none_or(|d| age_days(p) >= d)));

    let mut bytes = 0u64;
    for p in doomed.iter().chain(&entries) {
        bytes += dir_bytes(p);
        if !o.dry_run {
            std::fs::remove_dir_all(p).with_context(|| format!("removing {}", p.display()))?;
        }
    }
    println!(
        "{verb} {} runs and {} cache entries ({:.1} MiB); kept {} runs; the model registry is never collected",
        doomed.len(),
        entries.len(),
        bytes as f64 / 1048576.0,
        kept.len()
    );
    Ok(wanted)
}
