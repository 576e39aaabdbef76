//! The executor: run the stages that need it, independent ones at once, and report.

use std::collections::{HashMap, HashSet};
use std::sync::Arc;
use std::time::Instant;

use anyhow::{Context, Result, bail};
use indexmap::IndexMap;
use tokio::sync::Semaphore;
use tokio::task::JoinSet;

use super::cores::Cores;
use super::graph;
use super::memory_budget::{self, MemoryBudget};
use super::plan::Plan;
use super::progress::Progress;
use super::stage::StageContext;
use crate::cache::{Cache, Entry, EntryMeta};

#[derive(Debug, Clone, Default)]
pub struct RunOptions {
    /// Rebuild every selected stage even when a cache entry exists.
    pub force: bool,
    /// Run just this stage; its deps must already be cached.
    pub only: Option<String>,
    /// Rebuild this stage and everything downstream of it.
    pub from: Option<String>,
    /// Run only this stage and what it needs.
    pub until: Option<String>,
    /// Stages running at once.
    pub jobs: usize,
    pub progress: bool,
    /// Bytes a stage's query engine may hold before it spills to disk (`--memory`).
    pub memory: u64,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Outcome {
    Ran,
    Cached,
    Failed(String),
    /// Not run because a stage it needs failed.
    Skipped(String),
    /// Outside `--only`.
    NotSelected,
}

#[derive(Debug, Clone)]
pub struct StageReport {
    pub name: String,
    pub outcome: Outcome,
    pub rows: Option<u64>,
    pub seconds: f64,
    pub key: String,
    pub notes: Vec<String>,
}

#[derive(Debug)]
pub struct RunReport {
    pub stages: Vec<StageReport>,
    pub seconds: f64,
}

impl RunReport {
    pub fn ok(&self) -> bool {
        self.stages.iter().all(|s| !matches!(s.outcome, Outcome::Failed(_) | Outcome::Skipped(_)))
    }

    /// Every stage built or reused: not a partial run (`--only`, `--until`, `--from` that left
    /// stages out), so its record has everything the pipeline makes, the report included.
    pub fn complete(&self) -> bool {
        self.ok() && self.stages.iter().all(|s| s.outcome != Outcome::NotSelected)
    }

    pub fn failed(&self) -> Vec<&StageReport> {
        self.stages.iter().filter(|s| matches!(s.outcome, Outcome::Failed(_))).collect()
    }
}

/// Which stages will run: the selection, minus what is cached unless forced.
pub fn to_run(plan: &Plan, opts: &RunOptions) -> Result<HashSet<String>> {
    let p = &plan.pipeline;
    for (flag, v) in [("--only", &opts.only), ("--from", &opts.from), ("--until", &opts.until)] {
        if let Some(s) = v
            && !p.stages.contains_key(s)
        {
            bail!("{flag} {s}: no such stage (stages: {})", p.stages.keys().cloned().collect::<Vec<_>>().join(", "));
        }
    }
    let forced: HashSet<String> = match &opts.from {
        Some(s) => graph::downstream(&p.stages, s),
        None if opts.force => p.stages.keys().cloned().collect(),
        None => HashSet::new(),
    };
    let selected: HashSet<String> = match (&opts.only, &opts.until) {
        (Some(s), _) => HashSet::from([s.clone()]),
        (None, Some(s)) => graph::upstream(&p.stages, s),
        (None, None) => p.stages.keys().cloned().collect(),
    };
    let run: HashSet<String> = plan
        .stages
        .iter()
        .filter(|s| selected.contains(&s.name) && (s.cached.is_none() || forced.contains(&s.name) || (opts.force && opts.only.is_some())))
        .map(|s| s.name.clone())
        .collect();
    if let Some(only) = &opts.only {
        let stage = plan.get(only).unwrap();
        let missing: Vec<&str> = stage.deps.iter().filter(|d| plan.get(d).is_some_and(|u| u.cached.is_none())).map(String::as_str).collect();
        if !missing.is_empty() {
            bail!(
                "--only {only}: its upstream {} not cached for the current pipeline; run `pipeline run` without --only first",
                if missing.len() == 1 { format!("stage `{}` is", missing[0]) } else { format!("stages {} are", missing.join(", ")) }
            );
        }
    }
    Ok(run)
}

pub async fn execute(plan: Arc<Plan>, cache: Cache, opts: RunOptions) -> Result<RunReport> {
    let started = Instant::now();
    let run = to_run(&plan, &opts)?;
    let progress = Arc::new(Progress::new(opts.progress));
    let cores = crate::io::threads::available();
    let share = Cores::new(cores);
    let jobs = opts.jobs.max(1);
    let slots = Arc::new(Semaphore::new(jobs));
    let budget = MemoryBudget::new(opts.memory, jobs);

    let mut done: HashMap<String, Entry> = HashMap::new();
    let mut reports: IndexMap<String, StageReport> = IndexMap::new();
    for s in &plan.stages {
        let outcome = if run.contains(&s.name) {
            continue;
        } else if s.cached.is_some() {
            Outcome::Cached
        } else {
            Outcome::NotSelected
        };
        // A cached entry may have been built while the store was out of reach.
        let outcome = match (&s.cached, outcome) {
            (Some(e), Outcome::Cached) => match share_entry(&cache, e.clone(), false).await {
                Ok(e) => {
                    done.insert(s.name.clone(), e);
                    Outcome::Cached
                }
                Err(e) => Outcome::Failed(format!("{e:#}")),
            },
            (_, outcome) => outcome,
        };
        reports.insert(
            s.name.clone(),
            StageReport { name: s.name.clone(), rows: s.cached.as_ref().map(|e| e.meta.rows), outcome, seconds: 0.0, key: s.key.hex(), notes: Vec::new() },
        );
    }

    // Stages that become ready together start in this order, longest chain of work first.
    let remaining = super::critical_path::remaining_work(&plan, &cache);
    let mut pending: Vec<&str> = plan.stages.iter().filter(|s| run.contains(&s.name)).map(|s| s.name.as_str()).collect();
    pending.sort_by(|a, b| remaining[*b].total_cmp(&remaining[*a]));
    let mut tasks: JoinSet<(String, Result<(Entry, Vec<String>)>, f64)> = JoinSet::new();
    loop {
        // Start every stage whose deps are all done; skip those whose deps failed.
        let mut i = 0;
        while i < pending.len() {
            let name = pending[i];
            let stage = plan.get(name).unwrap();
            let blocked = stage.deps.iter().find(|d| reports.get(*d).is_some_and(|r| matches!(r.outcome, Outcome::Failed(_) | Outcome::Skipped(_))));
            if let Some(dep) = blocked {
                reports.insert(
                    name.to_string(),
                    StageReport {
                        name: name.to_string(),
                        outcome: Outcome::Skipped(format!("upstream `{dep}` failed")),
                        rows: None,
                        seconds: 0.0,
                        key: stage.key.hex(),
                        notes: Vec::new(),
                    },
                );
                pending.remove(i);
                continue;
            }
            if !stage.deps.iter().all(|d| done.contains_key(d)) {
                i += 1;
                continue;
            }
            pending.remove(i);
            let upstream: IndexMap<String, Entry> = stage.deps.iter().map(|d| (d.clone(), done[d].clone())).collect();
            let plan = plan.clone();
            let cache = cache.clone();
            let progress = progress.clone();
            let slots = slots.clone();
            let name = name.to_string();
            // Every stage may use every core: a fixed share would strand cores when a short
            // sibling finishes first, and the OS shares them fairly while both run.
            let threads = cores;
            let share = share.clone();
            let input_bytes =
                upstream.values().map(|e| memory_budget::table_bytes(&e.output())).sum::<u64>() + stage.parts.inputs.iter().map(|f| f.size).sum::<u64>();
            let need = budget.reservation(stage.stage.memory(input_bytes));
            let budget = budget.clone();
            tasks.spawn(async move {
                let _slot = slots.acquire_owned().await.expect("semaphore never closes");
                let memory = budget
                    .reserve(need, |held| tracing::info!(stage = %name, "waiting for memory: needs {}, running stages hold {held} MiB of --memory", crate::io::memory_size::human(need)))
                    .await;
                let t0 = Instant::now();
                let result = run_stage(&plan, &cache, &progress, &name, upstream, threads, share, memory.bytes).await;
                (name, result, t0.elapsed().as_secs_f64())
            });
        }
        let Some(joined) = tasks.join_next().await else { break };
        let (name, result, seconds) = match joined {
            Ok(r) => r,
            Err(e) => bail!("a stage task panicked: {e}"),
        };
        let key = plan.get(&name).unwrap().key.hex();
        let report = match result {
            Ok((entry, notes)) => {
                let rows = entry.meta.rows;
                done.insert(name.clone(), entry);
                StageReport { name: name.clone(), outcome: Outcome::Ran, rows: Some(rows), seconds, key, notes }
            }
            Err(e) => StageReport { name: name.clone(), outcome: Outcome::Failed(format!("{e:#}")), rows: None, seconds, key, notes: Vec::new() },
        };
        reports.insert(name, report);
    }

    // Report in pipeline order.
    let stages = plan.stages.iter().filter_map(|s| reports.get(&s.name).cloned()).collect();
    Ok(RunReport { stages, seconds: started.elapsed().as_secs_f64() })
}

#[allow(clippy::too_many_arguments)]
async fn run_stage(
    plan: &Plan,
    cache: &Cache,
    progress: &Progress,
    name: &str,
    upstream: IndexMap<String, Entry>,
    threads: usize,
    cores: Cores,
    memory: u64,
) -> Result<(Entry, Vec<String>)> {
    let planned = plan.get(name).unwrap();
    let bar = progress.stage(name);
    let pending = cache.begin(planned.key)?;
    let ctx = StageContext {
        name: name.to_string(),
        pipeline: plan.pipeline.clone(),
        upstream,
        inputs: planned.parts.inputs.clone(),
        files: planned.parts.files.clone(),
        out_dir: pending.dir.clone(),
        progress: bar.clone(),
        threads,
        cores,
        memory,
        store: cache.store().cloned(),
    };
    let t0 = Instant::now();
    let result = planned.stage.run(&ctx).await;
    let output = match result {
        Ok(o) => o,
        Err(e) => {
            cache.abandon(pending);
            bar.finish(false, &format!("{e:#}"));
            return Err(e);
        }
    };
    // Keep the run summary's notes with the entry, so `inspect` can show them later.
    let mut summary = output.summary;
    if !output.notes.is_empty() {
        if summary.is_null() {
            summary = serde_json::json!({});
        }
        if let Some(obj) = summary.as_object_mut() {
            obj.entry("notes").or_insert_with(|| serde_json::json!(output.notes));
        }
    }
    let meta = EntryMeta {
        key: planned.key.hex(),
        pipeline: plan.pipeline.name.clone(),
        stage: name.to_string(),
        parts: planned.parts.clone(),
        rows: output.rows,
        built_at: chrono::Utc::now().to_rfc3339_opts(chrono::SecondsFormat::Secs, true),
        seconds: t0.elapsed().as_secs_f64(),
        files: Default::default(),
        summary,
        sorted_by: output.sorted_by,
    };
    let committed = match cache.commit(pending, meta) {
        Ok(entry) => share_entry(cache, entry, true).await,
        Err(e) => Err(e),
    };
    match committed {
        Ok(entry) => {
            bar.finish(true, &format!("{} rows in {:.2}s", output.rows, t0.elapsed().as_secs_f64()));
            Ok((entry, output.notes))
        }
        Err(e) => {
            bar.finish(false, &format!("{e:#}"));
            Err(e)
        }
    }
}

/// Put a finished entry in the shared store, if there is one. The local entry stays either way,
/// so a run that failed here shares it next time. `built_now`: see `Cache::share`.
async fn share_entry(cache: &Cache, entry: Entry, built_now: bool) -> Result<Entry> {
    if let Some(store) = cache.store() {
        cache.share(&entry, built_now).await.with_context(|| format!("storing the output in the shared store {}", store.url()))?;
    }
    Ok(entry)
}
