//! `pipeline gc`: remove old runs and the cache entries nothing refers to any more, here
//! (`artifacts::local_gc`) and, with `--store`, in the shared store by the same rules
//! (`artifacts::store_gc`). Holds the run lock, so it never races a run on this machine.

use std::path::PathBuf;

use anyhow::Result;

use super::exit;
use crate::artifacts::runs::Retention;
use crate::store::Store;

pub struct Options {
    pub root: PathBuf,
    pub retention: Retention,
    pub dry_run: bool,
    pub no_wait: bool,
    pub store: Option<Store>,
}

pub async fn gc(o: Options) -> Result<u8> {
    let _lock = crate::artifacts::lock::RunLock::acquire(&o.root, !o.no_wait, |holder| eprintln!("waiting for a run to finish ({holder})"))?;
    let verb = if o.dry_run { "would remove" } else { "removed" };
    let (here, wanted) = crate::artifacts::local_gc::collect(&o.root, o.retention, o.dry_run)?;
    println!(
        "{verb} {} runs and {} cache entries ({:.1} MiB); kept {} runs; the model registry is never collected",
        here.runs_removed,
        here.entries_removed,
        here.bytes as f64 / 1048576.0,
        here.runs_kept
    );
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
