//! `pipeline run`.

use std::sync::Arc;

use anyhow::{Context, Result};

use super::{exit, load_plan, PipelineArgs};
use crate::artifacts::models::Registry;
use crate::artifacts::{runs, shared};
use crate::pipeline::run::{self, Outcome, RunOptions, RunReport};

pub struct Flags {
    pub force: bool,
    pub only: Option<String>,
    pub from: Option<String>,
    pub until: Option<String>,
    pub jobs: Option<usize>,
    pub dry_run: bool,
    pub no_progress: bool,
    pub no_wait: bool,
}

pub async fn run(args: PipelineArgs, flags: Flags) -> Result<u8> {
    let (plan, cache) = load_plan(&args).await?;
    let cores = crate::pipeline::cores::available();
    let opts = RunOptions {
        force: flags.force,
        only: flags.only,
        from: flags.from,
        until: flags.until,
        jobs: flags.jobs.unwrap_or(cores),
        progress: !flags.no_progress,
    };
    if flags.dry_run {
        let will_run = run::to_run(&plan, &opts)?;
        for s in &plan.stages {
            if will_run.contains(&s.name) {
                let why = if s.cached.is_some() { vec!["forced".to_string()] } else { s.why_stale(&cache, &plan.pipeline.name) };
                println!("run     {:<20} {}", s.name, why.join("; "));
            } else if s.cached.is_some() {
                println!("cached  {:<20}", s.name);
            } else {
                println!("skip    {:<20} not selected", s.name);
            }
        }
        return Ok(exit::SUCCESS);
    }
    // One run per project at a time: two would race on the same cache entries and models.
    let _lock = crate::artifacts::lock::RunLock::acquire(&plan.pipeline.root, !flags.no_wait, |holder| {
        eprintln!("waiting for another `pipeline run` on this project to finish ({holder})");
    })?;
    let root = &plan.pipeline.root;
    if let Some(store) = cache.store() {
        shared::pull_registry(store, &Registry::of_project(root))
            .await
            .with_context(|| format!("fetching the model registry from the shared store {}", store.url()))?;
    }
    let run_id = runs::new_run_id();
    let report = run::execute(Arc::clone(&plan), cache.clone(), opts).await?;
    print_summary(&report);
    let dir = runs::record(&plan.pipeline, &cache, &run_id, &args.set, &report)?;
    tracing::debug!("run recorded in {}", dir.display());
    for f in report.failed() {
        if let Outcome::Failed(e) = &f.outcome {
            eprintln!("error: stage `{}` failed: {e}", f.name);
        }
    }
    if let Some(store) = cache.store() {
        let latest = report.complete().then_some(run_id.as_str());
        if let Err(e) = shared::push(store, root, latest).await {
            eprintln!(
                "error: the run's models and record are kept here but could not be shared in {}: {e:#}\n       the next run shares them",
                store.url()
            );
            return Ok(exit::FAILURE);
        }
    }
    Ok(if report.ok() { exit::SUCCESS } else { exit::FAILURE })
}

fn print_summary(report: &RunReport) {
    let width = report.stages.iter().map(|s| s.name.len()).max().unwrap_or(5).max(5);
    println!("{:<width$}  {:<8} {:>10} {:>8}", "stage", "status", "rows", "time");
    for s in &report.stages {
        let status = match &s.outcome {
            Outcome::Ran => "ran",
            Outcome::Cached => "cached",
            Outcome::Failed(_) => "FAILED",
            Outcome::Skipped(_) => "skipped",
            Outcome::NotSelected => "-",
        };
        let rows = s.rows.map(|r| r.to_string()).unwrap_or_else(|| "-".into());
        let time = if s.outcome == Outcome::Ran || matches!(s.outcome, Outcome::Failed(_)) { format!("{:.2}s", s.seconds) } else { "-".into() };
        println!("{:<width$}  {:<8} {:>10} {:>8}", s.name, status, rows, time);
        if let Outcome::Skipped(why) = &s.outcome {
            println!("{:<width$}    {why}", "");
        }
        for n in &s.notes {
            println!("{:<width$}    {n}", "");
        }
    }
    let ran = report.stages.iter().filter(|s| s.outcome == Outcome::Ran).count();
    let cached = report.stages.iter().filter(|s| s.outcome == Outcome::Cached).count();
    println!("{ran} ran, {cached} cached, {} failed in {:.2}s", report.failed().len(), report.seconds);
}
