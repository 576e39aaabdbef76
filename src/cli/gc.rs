//! `pipeline gc`: remove old runs and the cache entries nothing refers to any more, here
//! (`artifacts::local_gc`) and, with `--store`, in the shared store by the same rules
//! (`artifacts::store_gc`). Holds the run lock, so it never races a run on this machine.

use std::path::PathBuf;

use anyhow::Result;

use super::exit;
use crate::artifacts::runs::Retention;

#[derive(clap::Args, Debug)]
pub struct GcArgs {
    /// The project folder (the one holding artifacts/).
    #[arg(long, default_value = ".", value_name = "DIR")]
    pub root: PathBuf,
    /// How many of the newest runs to keep.
    #[arg(long, default_value_t = 10, value_name = "N")]
    pub keep_runs: usize,
    /// Also keep every run younger than this many days.
    #[arg(long, value_name = "D")]
    pub keep_days: Option<f64>,
    /// Say what would be removed, remove nothing.
    #[arg(long)]
    pub dry_run: bool,
    /// If a run holds the project, exit with code 3 instead of waiting.
    #[arg(long)]
    pub no_wait: bool,
    /// Also collect this shared store (s3://bucket/prefix) by the same rules, keeping every
    /// entry this machine keeps. Given explicitly, never taken from PIPELINE_STORE (unlike the
    /// other commands' --store): other machines may be using the store, so run it where no
    /// other run is going on.
    #[arg(long, value_name = "URL")]
    pub store: Option<String>,
}

pub async fn gc(a: GcArgs) -> Result<u8> {
    let store = super::args::open_store(a.store.as_deref())?;
    let retention = Retention { keep_runs: a.keep_runs, keep_days: a.keep_days };
    let _lock = crate::artifacts::lock::RunLock::acquire(&a.root, !a.no_wait, |holder| eprintln!("waiting for a run to finish ({holder})"))?;
    let verb = if a.dry_run { "would remove" } else { "removed" };
    let (here, wanted) = crate::artifacts::local_gc::collect(&a.root, retention, a.dry_run)?;
    println!(
        "{verb} {} runs and {} cache entries ({:.1} MiB); kept {} runs; the model registry is never collected",
        here.runs_removed,
        here.entries_removed,
        here.bytes as f64 / 1048576.0,
        here.runs_kept
    );
    if let Some(store) = &store {
        let s = crate::artifacts::store_gc::collect(store, retention, &wanted, a.dry_run).await?;
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
