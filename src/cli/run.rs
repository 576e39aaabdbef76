//! `pipeline run`.

use std::sync::Arc;

use anyhow::{Context, Result};

use super::{PipelineArgs, exit};
use crate::artifacts::models::Registry;
use crate::artifacts::{runs, shared};
use crate::dag::run::{self, Outcome, RunOptions, RunReport};

/// `pipeline run`'s flags, declared once: clap reads them, the engine gets [`RunOptions`].
#[derive(clap::Args, Debug)]
pub struct RunArgs {
    #[command(flatten)]
    pub pipeline: PipelineArgs,
    /// Rebuild the stages even when a cached output exists.
    #[arg(long)]
    pub force: bool,
    /// Run only this stage (its upstream stages must already be cached).
    #[arg(long, value_name = "STAGE", conflicts_with = "from")]
    pub only: Option<String>,
    /// Rebuild this stage and everything downstream of it.
    #[arg(long, value_name = "STAGE")]
    pub from: Option<String>,
    /// Run only this stage and the stages it needs.
    #[arg(long, value_name = "STAGE", conflicts_with = "only")]
    pub until: Option<String>,
    /// How many stages may run at once [default: number of cores].
    #[arg(long, short = 'j', value_name = "N")]
    pub jobs: Option<usize>,
    /// Show what would run and why, without running anything.
    #[arg(long)]
    pub dry_run: bool,
    /// No progress bars, even on a terminal.
    #[arg(long)]
    pub no_progress: bool,
    /// If another run holds this project, exit with code 3 instead of waiting for it.
    #[arg(long)]
    pub no_wait: bool,
    /// Memory the stages running at once may hold together: a size (8GiB, 512MiB) or a share of
    /// this machine (80%). A stage that would pass it beside the running ones waits for them;
    /// SQL stages get an equal part per job and spill sorts and joins past it to artifacts/spill/.
    #[arg(long, value_name = "SIZE", default_value = "80%", value_parser = crate::io::memory_size::parse_size)]
    pub memory: u64,
}

impl RunArgs {
    fn options(&self, no_progress: bool) -> RunOptions {
        RunOptions {
            force: self.force,
            only: self.only.clone(),
            from: self.from.clone(),
            until: self.until.clone(),
            jobs: self.jobs.unwrap_or_else(crate::io::threads::available),
            progress: !(self.no_progress || no_progress),
            memory: self.memory,
        }
    }
}

/// Runs the pipeline; `json_logs` turns the progress bars off (they would interleave with the events).
pub async fn run(flags: RunArgs, json_logs: bool) -> Result<u8> {
    let pipeline = flags.pipeline.load()?;
    // An invalid pipeline is refused before anything is touched, the lock file included.
    let built = crate::dag::plan::build_stages(&pipeline, crate::ops::build)?;
    // One run per project at a time: two would race on the same cache entries and models. Taken
    // before planning, since planning fetches the shared store's entries into the cache.
    let _lock = match flags.dry_run {
        true => None,
        false => Some(crate::artifacts::lock::RunLock::acquire(&pipeline.root, !flags.no_wait, |holder| {
            eprintln!("waiting for another `pipeline run` on this project to finish ({holder})");
        })?),
    };
    let cache = super::cache_for(&pipeline)?;
    let plan = Arc::new(crate::dag::plan::plan_built(pipeline, built, &cache).await?);
    let opts = flags.options(json_logs);
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
    let root = &plan.pipeline.root;
    if let Some(store) = cache.store() {
        shared::pull_registry(store, &Registry::of_project(root))
            .await
            .with_context(|| format!("fetching the model registry from the shared store {}", store.url()))?;
    }
    let run_id = runs::new_run_id();
    let report = run::execute(Arc::clone(&plan), cache.clone(), opts).await?;
    print_summary(&report);
    let dir = runs::record(&plan.pipeline, &cache, &run_id, &flags.pipeline.set, &report)?;
    tracing::debug!("run recorded in {}", dir.display());
    for f in report.failed() {
        if let Outcome::Failed(e) = &f.outcome {
            eprintln!("error: stage `{}` failed: {e}", f.name);
        }
    }
    if let Some(store) = cache.store() {
        let latest = report.complete().then_some(run_id.as_str());
        if let Err(e) = shared::push(store, root, latest).await {
            eprintln!("error: the run's models and record are kept here but could not be shared in {}: {e:#}\n       the next run shares them", store.url());
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
