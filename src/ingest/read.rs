//! Reading many metrics files at once: a few fetched concurrently (S3 latency), each parsed on a
//! blocking thread (CPU), the parsed pieces gathered by one thread into sorted runs as they come,
//! so the rows held are one run's whatever the number and size of the files.

use std::path::PathBuf;
use std::sync::Arc;

use anyhow::{Context, Result};
use futures::{StreamExt, TryStreamExt};

use super::ParsedFile;
use super::sorted_runs::Runs;
use super::source::{MetricsFile, Source};

/// How to read: threads to parse with, the rows of a sorted run, where runs past the first go.
pub struct Reading {
    pub threads: usize,
    pub run_rows: usize,
    pub spill: PathBuf,
}

/// Parses `files` of `source` into sorted runs; `file_done` is called as each file is parsed.
pub async fn read_files(source: Arc<Source>, files: &[MetricsFile], how: Reading, file_done: impl Fn() + Clone + Send + 'static) -> Result<Runs> {
    // One big file gets every thread; many files share them.
    let threads_per_file = if files.len() == 1 { how.threads } else { 1 };
    let names: Vec<String> = files.iter().map(|f| f.display.clone()).collect();
    let (pieces, mut arriving) = tokio::sync::mpsc::channel::<ParsedFile>(how.threads.max(2));
    let (run_rows, spill) = (how.run_rows, how.spill);
    let gathering = tokio::task::spawn_blocking(move || {
        let mut runs = Runs::new(names, run_rows, spill);
        while let Some(piece) = arriving.blocking_recv() {
            runs.push(piece)?;
        }
        anyhow::Ok(runs)
    });
    let parsing: Result<Vec<()>> = futures::stream::iter(files.iter().cloned())
        .map(|f| {
            let source = source.clone();
            let pieces = pieces.clone();
            let file_done = file_done.clone();
            async move {
                let reader = source.reader(&f).await?;
                let name = f.display.clone();
                tokio::task::spawn_blocking(move || {
                    // A send fails only once the gathering thread has failed; its error is the one reported.
                    super::parse_reader(&name, reader, threads_per_file, &mut |piece| drop(pieces.blocking_send(piece)))
                })
                .await
                .context("parser thread")??;
                file_done();
                anyhow::Ok(())
            }
        })
        .buffer_unordered(how.threads.max(2))
        .try_collect()
        .await;
    drop(pieces);
    let runs = gathering.await.context("ingest's gathering thread")?;
    parsing?;
    runs
}
