//! The `pipeline` command line: [`Cli`] is every command and flag, each command's flags and
//! its function live in one module of this folder, and [`execute`] runs the one asked for.
//! Flags that several commands take are declared once, in [`args`].

pub mod args;
#[cfg(feature = "ballista")]
pub mod ballista;
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
pub mod stage_output;
pub mod status;

use anyhow::Result;
use clap::{Parser, Subcommand};

pub use args::{LogFormat, MAX_SECONDS, PipelineArgs, parse_seconds, usage_error};
pub use stage_output::{cache_for, cached_entry, load_plan, table_path};

/// Train and serve replica-count predictions for Kubernetes autoscaling.
///
/// A pipeline is a YAML file of stages (ingest, sql, …). Every stage's output is cached as
/// Parquet under artifacts/cache, keyed by everything it depends on, so re-running only
/// recomputes what changed.
#[derive(Parser)]
#[command(name = "pipeline", version, max_term_width = 100)]
#[command(
    after_help = "Exit codes: 0 success, 1 a stage or command failed, 2 invalid pipeline file, flag or input (nothing ran), 3 another run holds the project (with --no-wait)."
)]
pub struct Cli {
    /// More log detail (-v debug, -vv trace); RUST_LOG overrides.
    #[arg(short, long, global = true, action = clap::ArgAction::Count)]
    pub verbose: u8,
    /// Log format on stderr.
    #[arg(long, global = true, value_enum, default_value_t = LogFormat::Text)]
    pub log_format: LogFormat,
    #[command(subcommand)]
    pub command: Command,
}

#[derive(Subcommand)]
pub enum Command {
    /// Run the pipeline: build every stage whose inputs changed, reuse the rest.
    Run(run::RunArgs),
    /// For each stage: fresh (cached for the current inputs) or stale, and what changed.
    Status(status::StatusArgs),
    /// Show the stage graph.
    Dag(dag::DagArgs),
    /// Describe a stage's cached output: schema, rows, size, key, and the first rows.
    Inspect(inspect::InspectArgs),
    /// Run SQL over the cached outputs; each stage is a table named after it.
    Query(query::QueryArgs),
    /// Read a cluster's metrics rows from Prometheus into day files (live, or backfilled).
    ///
    /// Every --every seconds, one row per service (the 23 columns, in the units of
    /// docs/data-contract.md) from cAdvisor, kube-state-metrics and ingress-nginx series; the
    /// PromQL of each column is in collect.yaml. Rows go to YYYY/MM/metrics_YYYYMMDD.csv below
    /// --out, a folder or s3://bucket/prefix, where `pipeline run` reads them. With --from/--to,
    /// past days are rebuilt from Prometheus' history at 30 s steps, so a team can train on day one.
    Collect(collect::CollectArgs),
    /// Write realistic metrics CSVs driven by a real request-rate trace.
    ///
    /// Each service has pods with a capacity and a Kubernetes HPA (the same model the replay
    /// judges by); CPU, RAM, latency, errors, queue and restarts follow from load and ready
    /// replicas. The output is the collector's 23-column CSV, one file per day, rows between
    /// 06:00 and 22:00.
    ///
    /// With --scaler URL a running `pipeline serve` sets the replicas instead (closed loop: each
    /// step every service's row goes to its /predict/batch, the answers are actuated as an HPA
    /// actuates), and the summary compares it with the internal HPA's frontier on the same load.
    Simulate(simulate::SimulateArgs),
    /// Serve scaling decisions over HTTP (for HPA via Prometheus, or KEDA's metrics-api).
    ///
    /// POST /predict takes one raw metrics row (the collector's 23 fields as JSON) and answers
    /// with a decision; POST /predict/batch takes an array. GET /scale/{service} is the last
    /// decision for KEDA, GET /metrics is Prometheus text, GET /healthz and /readyz are probes.
    /// A newly promoted model is picked up within --reload-every without a restart; with
    /// --store the registry is fetched from the shared store at start and every 10 s.
    Serve(serve::ServeArgs),
    /// Decisions for raw metrics rows from the promoted model, without a server.
    ///
    /// ROWS is a JSON file (or - for standard input) holding one row with the collector's 23
    /// fields, an array of rows, or one row per line; rows are taken in order, so several rows
    /// of a service give it the history its rolling features need (the LSTM-CNN needs 12).
    /// Prints the decision as `POST /predict` would answer it (one row), or one decision per
    /// line. Example: `pipeline predict data/row.json`.
    Predict(predict::PredictArgs),
    /// Remove old runs and the cache entries no kept run or stage refers to.
    ///
    /// Keeps the newest --keep-runs runs, every run younger than --keep-days, and `latest`;
    /// keeps each stage's last build. Never touches the model registry (promoted versions).
    Gc(gc::GcArgs),
    /// The model registry: versions, the serving one, promotion and rollback.
    Models(models::ModelsArgs),
    /// Run a Ballista scheduler for the SQL stages of `--engine ballista://HOST:PORT`.
    ///
    /// With one or more `pipeline executor` processes this is a cluster that runs the SQL stages
    /// of any pipeline (its rolling_* functions included); results stream back to the `pipeline
    /// run` that sent them, which writes its cache as usual. The executors must read the stages'
    /// files at the paths the run gives (a shared folder mounted at the same path).
    #[cfg(feature = "ballista")]
    Scheduler(ballista::SchedulerArgs),
    /// Run a Ballista executor: the tasks of the SQL stages its scheduler hands it.
    #[cfg(feature = "ballista")]
    Executor(ballista::ExecutorArgs),
    /// Write a stage's cached output to a file; `.parquet` or `.csv` by extension.
    Export(export::ExportArgs),
}

/// Runs one command to its exit code. `log_format` says whether bars may be drawn (JSON logs
/// go to collectors, and bars would interleave with their lines).
pub async fn execute(command: Command, log_format: LogFormat) -> Result<u8> {
    match command {
        Command::Run(a) => run::run(a, log_format == LogFormat::Json).await,
        Command::Status(a) => status::status(a).await,
        Command::Dag(a) => dag::dag(a),
        Command::Inspect(a) => inspect::inspect(a).await,
        Command::Query(a) => query::query(a).await,
        Command::Collect(a) => collect::collect(a).await,
        Command::Simulate(a) => {
            let runtime = tokio::runtime::Handle::current();
            tokio::task::spawn_blocking(move || simulate::simulate(a, runtime)).await?
        }
        Command::Serve(a) => serve::serve(a).await,
        Command::Predict(a) => tokio::task::spawn_blocking(move || predict::predict(a)).await?,
        Command::Gc(a) => gc::gc(a).await,
        Command::Models(a) => models::models(a).await,
        #[cfg(feature = "ballista")]
        Command::Scheduler(a) => ballista::scheduler(a).await,
        #[cfg(feature = "ballista")]
        Command::Executor(a) => ballista::executor(a).await,
        Command::Export(a) => export::export(a).await,
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

#[cfg(test)]
mod tests {
    use clap::Parser;

    use super::Cli;

    /// A flag whose parser and field disagree in type panics only when it is parsed: parse every
    /// command with its defaults.
    #[test]
    fn every_command_parses_with_its_defaults() {
        use clap::CommandFactory;
        Cli::command().debug_assert();
        for args in [
            &["run"][..],
            &["status"],
            &["dag"],
            &["inspect", "ingest"],
            &["query", "SELECT 1"],
            &["collect", "--prometheus", "http://p:9090", "--once"],
            &["simulate", "--out", "x"],
            &["serve"],
            &["predict", "-"],
            &["gc"],
            &["models", "list"],
            &["export", "ingest", "x.csv"],
            #[cfg(feature = "ballista")]
            &["scheduler"],
            #[cfg(feature = "ballista")]
            &["executor"],
        ] {
            let mut argv = vec!["pipeline"];
            argv.extend_from_slice(args);
            if let Err(e) = Cli::try_parse_from(&argv) {
                panic!("{argv:?}: {e}");
            }
        }
    }

    /// Shared flag groups are declared once and still read where each command documents them.
    #[test]
    fn shared_flags_read_the_same_on_every_command() {
        for argv in [
            &["pipeline", "run", "--store", "s3://b/p"][..],
            &["pipeline", "serve", "--store", "s3://b/p"],
            &["pipeline", "models", "list", "--store", "s3://b/p"],
            &["pipeline", "models", "--store", "s3://b/p", "list"],
        ] {
            let cli = Cli::try_parse_from(argv).unwrap_or_else(|e| panic!("{argv:?}: {e}"));
            let store = match cli.command {
                super::Command::Run(a) => a.pipeline.store.url,
                super::Command::Serve(a) => a.store.url,
                super::Command::Models(a) => a.store.url,
                _ => unreachable!(),
            };
            assert_eq!(store.as_deref(), Some("s3://b/p"), "{argv:?}");
        }
        assert!(Cli::try_parse_from(["pipeline", "dag", "--format", "svg"]).is_err(), "formats are a fixed choice");
        assert!(Cli::try_parse_from(["pipeline", "--log-format", "xml", "status"]).is_err());
    }
}
