//! `artifacts/runs/<run-id>/manifest.json` for every run, and `artifacts/runs/latest`
//! pointing at the newest complete run (no failure, no stage left out by `--only`/`--until`/`--from`).

use std::path::{Path, PathBuf};

use anyhow::Result;
use serde::Serialize;

use crate::cache::Cache;
use crate::dag::Pipeline;
use crate::dag::run::{Outcome, RunReport};
use crate::io::fs::write_atomic;

#[derive(Serialize)]
struct StageRecord<'a> {
    stage: &'a str,
    outcome: &'a str,
    detail: Option<&'a str>,
    key: &'a str,
    rows: Option<u64>,
    seconds: f64,
    notes: &'a [String],
}

/// A run folder's record, written last: a folder without it is not a finished run.
pub const MANIFEST: &str = "manifest.json";

pub fn new_run_id() -> String {
    let now = chrono::Utc::now();
    format!("{}-{:04x}", now.format("%Y%m%dT%H%M%S%.3fZ"), (now.timestamp_subsec_micros() ^ std::process::id()) & 0xffff)
}

/// Which runs `pipeline gc` keeps: the newest `keep_runs`, every run younger than `keep_days`,
/// and the one `latest` names.
#[derive(Debug, Clone, Copy)]
pub struct Retention {
    pub keep_runs: usize,
    pub keep_days: Option<f64>,
}

impl Retention {
    /// `rank`: 0 for the newest run.
    pub fn keeps(&self, rank: usize, age_days: f64, is_latest: bool) -> bool {
        rank < self.keep_runs || self.keep_days.is_some_and(|d| age_days < d) || is_latest
    }
}

/// The cache keys a run's manifest says its stages used.
pub fn manifest_keys(manifest: &[u8]) -> Result<Vec<String>> {
    let m: serde_json::Value = serde_json::from_slice(manifest)?;
    Ok(m["stages"].as_array().into_iter().flatten().filter_map(|s| s["key"].as_str().map(str::to_string)).collect())
}

pub fn runs_dir(p: &Pipeline) -> PathBuf {
    super::layout::Layout::of(&p.root).runs()
}

/// Write the run's manifest, a copy of its report and links to the model versions it
/// published; when it is complete (every stage built or reused), move `latest` to it, so
/// `latest/report/` survives a quick `--until` or `--only`.
pub fn record(p: &Pipeline, cache: &Cache, run_id: &str, overrides: &[(String, serde_json::Value)], report: &RunReport) -> Result<PathBuf> {
    let dir = runs_dir(p).join(run_id);
    std::fs::create_dir_all(&dir)?;
    let models = keep_outputs(p, cache, &dir, report)?;
    let stages: Vec<StageRecord> = report
        .stages
        .iter()
        .map(|s| {
            let (outcome, detail) = match &s.outcome {
                Outcome::Ran => ("ran", None),
                Outcome::Cached => ("cached", None),
                Outcome::Failed(e) => ("failed", Some(e.as_str())),
                Outcome::Skipped(e) => ("skipped", Some(e.as_str())),
                Outcome::NotSelected => ("not selected", None),
            };
            StageRecord { stage: &s.name, outcome, detail, key: &s.key, rows: s.rows, seconds: s.seconds, notes: &s.notes }
        })
        .collect();
    let manifest = serde_json::json!({
        "run_id": run_id,
        "pipeline": p.name,
        "pipeline_file": p.file,
        "pipeline_blake3": blake3::hash(p.source.as_bytes()).to_hex().to_string(),
        "set": overrides.iter().map(|(k, v)| (k.clone(), v.clone())).collect::<serde_json::Map<_, _>>(),
        "params": p.params,
        "tool_version": env!("CARGO_PKG_VERSION"),
        "finished_at": chrono::Utc::now().to_rfc3339_opts(chrono::SecondsFormat::Secs, true),
        "ok": report.ok(),
        "seconds": report.seconds,
        "stages": stages,
        "models": models,
    });
    write_atomic(&dir.join(MANIFEST), &serde_json::to_vec_pretty(&manifest)?)?;
    if report.complete() {
        point_latest(&runs_dir(p), run_id)?;
    }
    Ok(dir)
}

/// Copies the report stage's files into `<run>/report/` (cache entries may be collected later;
/// a run's report stays) and links `<run>/models/<model>` to each published version.
fn keep_outputs(p: &Pipeline, cache: &Cache, dir: &Path, report: &RunReport) -> Result<Vec<serde_json::Value>> {
    let mut models = Vec::new();
    for s in &report.stages {
        if !matches!(s.outcome, Outcome::Ran | Outcome::Cached) {
            continue;
        }
        let Some(spec) = p.stages.get(&s.name) else { continue };
        let entry = cache.entry_path(&s.key);
        match spec.op.as_str() {
            "report" => {
                let tmp = dir.join(".report.tmp");
                std::fs::create_dir_all(&tmp)?;
                for f in std::fs::read_dir(&entry)?.flatten() {
                    let name = f.file_name();
                    if name != "meta.json" && f.path().is_file() {
                        std::fs::copy(f.path(), tmp.join(&name))?;
                    }
                }
                std::fs::rename(&tmp, dir.join("report"))?;
            }
            "publish" => {
                let meta: serde_json::Value = serde_json::from_slice(&std::fs::read(entry.join("meta.json"))?)?;
                for d in meta["summary"]["decisions"].as_array().into_iter().flatten() {
                    let (Some(model), Some(version)) = (d["model"].as_str(), d["version"].as_str()) else { continue };
                    let links = dir.join("models");
                    std::fs::create_dir_all(&links)?;
                    #[cfg(unix)]
                    std::os::unix::fs::symlink(Path::new("../../../models").join(model).join(version), links.join(model))?;
                    models.push(serde_json::json!({ "model": model, "version": version, "promoted": d["promoted"], "reason": d["reason"] }));
                }
            }
            _ => {}
        }
    }
    Ok(models)
}

/// Replace the `latest` link atomically: a new link under a temp name, renamed over the old.
fn point_latest(runs: &Path, run_id: &str) -> Result<()> {
    let tmp = runs.join(format!(".latest-{}", std::process::id()));
    let _ = std::fs::remove_file(&tmp);
    #[cfg(unix)]
    std::os::unix::fs::symlink(run_id, &tmp)?;
    #[cfg(not(unix))]
    std::fs::write(&tmp, run_id)?;
    std::fs::rename(&tmp, runs.join("latest"))?;
    Ok(())
}
