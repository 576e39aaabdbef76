//! One module per `pipeline` subcommand; each is a function from parsed arguments to an
//! exit code.

pub mod cluster;
pub mod collect;
pub mod dag;
pub mod exit;
pub mod export;
pub mod gc;
pub mod inspect;
pub mod logging;
pub mod models;
pub mod predict;
pub mod query;
pub mod run;
pub mod serve;
pub mod simulate;
pub mod status;

use std::path::PathBuf;
use std::sync::Arc;

use anyhow::Result;

use crate::cache::{Cache, Entry};
use crate::pipeline::plan::{self, Plan};
use crate::pipeline::{spec, Pipeline, SpecError};
use crate::store::Store;

/// Which pipeline, with which param overrides.
#[derive(clap::Args, Debug, Clone)]
pub struct PipelineArgs {
    /// The pipeline file [default: pipelines/train.yaml].
    #[arg(value_name = "PIPELINE")]
    pub file: Option<PathBuf>,
    /// The pipeline file, as an option.
    #[arg(long = "pipeline", short = 'p', value_name = "PIPELINE", conflicts_with = "file")]
    pub flag: Option<PathBuf>,
    /// Override a pipeline param, e.g. --set date=2024-10 (repeatable).
    #[arg(long = "set", value_name = "NAME=VALUE", value_parser = spec::parse_override)]
    pub set: Vec<(String, serde_json::Value)>,
    /// Share the cache and artifacts through s3://bucket/prefix (overrides the file's `store:`);
    /// credentials and endpoint come from the AWS_* variables.
    #[arg(long, value_name = "URL", env = "PIPELINE_STORE")]
    pub store: Option<String>,
    /// Run the SQL stages on a Ballista cluster: ballista://HOST:PORT (a `pipeline scheduler`),
    /// ballista:standalone (one inside this process), or local (overrides the file's `engine:`).
    #[arg(long, value_name = "URL", env = "PIPELINE_ENGINE")]
    pub engine: Option<String>,
}

impl PipelineArgs {
    pub fn path(&self) -> PathBuf {
        self.file.clone().or_else(|| self.flag.clone()).unwrap_or_else(|| PathBuf::from("pipelines/train.yaml"))
    }

    pub fn load(&self) -> Result<Arc<Pipeline>> {
        let mut p = spec::load(&self.path(), &self.set)?;
        if let Some(url) = &self.store {
            check_store_flag(url)?;
            p.store = Some(url.clone());
        }
        if let Some(engine) = &self.engine {
            p.engine = crate::engine::Engine::parse(engine)
                .map_err(|m| SpecError { file: "--engine".into(), loc: None, stage: None, field: None, message: m })?;
        }
        Ok(Arc::new(p))
    }
}

/// A `--store` URL given to a command that has no pipeline file; a malformed one is a usage
/// error (exit 2).
pub fn open_store(url: Option<&str>) -> Result<Option<Store>> {
    let Some(url) = url else { return Ok(None) };
    check_store_flag(url)?;
    Ok(Some(Store::open(url)?))
}

/// A flag of `pipeline COMMAND` with a value that cannot work: a usage error (exit 2).
pub fn usage_error(command: &str, flag: &str, message: impl Into<String>) -> anyhow::Error {
    SpecError { file: format!("pipeline {command}").into(), loc: None, stage: None, field: Some(flag.into()), message: message.into() }.into()
}

fn check_store_flag(url: &str) -> Result<(), SpecError> {
    crate::store::check_url(url).map_err(|e| SpecError { file: "--store".into(), loc: None, stage: None, field: None, message: e.to_string() })
}

/// The cache a pipeline's stages live in, with the shared store behind it if there is one.
pub fn cache_for(p: &Pipeline) -> Result<Cache> {
    let store = p.store.as_deref().map(Store::open).transpose()?;
    Ok(Cache::new(crate::artifacts::layout::Layout::of(&p.root).cache()).with_store(store))
}

pub async fn load_plan(args: &PipelineArgs) -> Result<(Arc<Plan>, Cache)> {
    let p = args.load()?;
    let cache = cache_for(&p)?;
    let plan = plan::plan(p, crate::ops::build, &cache).await?;
    Ok((Arc::new(plan), cache))
}

/// The cached entry of a stage for the current spec, or an error saying how to get one.
pub fn cached_entry(plan: &Plan, cache: &Cache, stage: &str) -> Result<Entry> {
    let Some(s) = plan.get(stage) else {
        anyhow::bail!(
            "no stage `{stage}` in {} (stages: {})",
            plan.pipeline.file.display(),
            plan.stages.iter().map(|s| s.name.as_str()).collect::<Vec<_>>().join(", ")
        );
    };
    match &s.cached {
        Some(e) => Ok(e.clone()),
        None => anyhow::bail!(
            "stage `{stage}` has no cached output for the current pipeline ({}); run `pipeline run` first",
            s.why_stale(cache, &plan.pipeline.name).join("; ")
        ),
    }
}

/// The file of a stage's main output or one of its side tables.
pub fn table_path(entry: &Entry, stage: &str, table: Option<&str>) -> Result<PathBuf> {
    match table {
        None => Ok(entry.output()),
        Some(t) => entry.tables().into_iter().find(|(n, _)| n == t).map(|(_, p)| p).ok_or_else(|| {
            let names: Vec<String> = entry.tables().into_iter().map(|(n, _)| n).collect();
            anyhow::anyhow!(
                "stage `{stage}` has no table `{t}` (side tables: {})",
                if names.is_empty() { "none".into() } else { names.join(", ") }
            )
        }),
    }
}

/// A bar for a command's long work; hidden when stderr is not a terminal (cron, CI, a pipe).
pub fn progress_bar(len: u64, unit: &str) -> indicatif::ProgressBar {
    use std::io::IsTerminal;
    if !std::io::stderr().is_terminal() {
        return indicatif::ProgressBar::hidden();
    }
    let bar = indicatif::ProgressBar::new(len);
    let style = format!("{{bar:30}} {{pos}}/{{len}} {unit} {{elapsed}}");
    if let Ok(s) = indicatif::ProgressStyle::with_template(&style) {
        bar.set_style(s);
    }
    bar
}

/// The longest duration a flag takes: past it a value is a typo, and every value up to it
/// is a valid `std::time::Duration` (`Duration::from_secs_f64` panics past u64 seconds).
pub const MAX_SECONDS: f64 = 366.0 * 86_400.0;

/// A duration as people write it on a command line: `30`, `30s`, `2m`, `1h` (seconds out),
/// more than 0 and at most a year.
pub fn parse_seconds(text: &str) -> Result<f64, String> {
    let t = text.trim();
    let (number, scale) = match t.char_indices().last() {
        Some((i, 's')) => (&t[..i], 1.0),
        Some((i, 'm')) => (&t[..i], 60.0),
        Some((i, 'h')) => (&t[..i], 3600.0),
        _ => (t, 1.0),
    };
    match number.trim().parse::<f64>().map(|v| v * scale) {
        Ok(v) if v > 0.0 && v <= MAX_SECONDS => Ok(v),
        Ok(v) if v > MAX_SECONDS => Err(format!("`{text}` is longer than a year: write e.g. 30, 30s, 5m or 1h")),
        _ => Err(format!("`{text}` is not a duration: write e.g. 30, 30s, 5m or 1h")),
    }
}

#[cfg(test)]
mod tests {
    #[test]
    fn durations_as_people_write_them() {
        assert_eq!(super::parse_seconds("30"), Ok(30.0));
        assert_eq!(super::parse_seconds("30s"), Ok(30.0));
        assert_eq!(super::parse_seconds("0.5"), Ok(0.5));
        assert_eq!(super::parse_seconds("5m"), Ok(300.0));
        assert_eq!(super::parse_seconds("1h"), Ok(3600.0));
        assert!(super::parse_seconds("0").is_err());
        // Nothing that would overflow a Duration gets through.
        for huge in ["1e308h", "inf", "NaN", "1e300", "400d", "9999999999h"] {
            assert!(super::parse_seconds(huge).is_err(), "{huge}");
        }
        assert_eq!(super::parse_seconds("8784h"), Ok(366.0 * 86_400.0));
        assert!(super::parse_seconds("soon").unwrap_err().contains("not a duration"));
    }
}
