use std::path::PathBuf;
use std::process::ExitCode;

use autoscale::cli::{self, exit, PipelineArgs};
use clap::{Parser, Subcommand};

#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

/// Memory settings for this process, each kept when its variable is set.
fn tune_memory() {
    no_huge_pages();
    prompt_purge();
}

/// No transparent huge pages for this process. mimalloc asks for them on its regions
/// (madvise); then every page it touches after returning memory to the kernel comes back as a
/// zeroed 2 MiB page: perf put 17-28% of each data stage's CPU time in zeroing pages, and the
/// 1M-row features benchmark peaked ~30 MB higher. (MIMALLOC_ALLOW_THP=1 keeps them; libtorch
/// asks for none.)
fn no_huge_pages() {
    #[cfg(target_os = "linux")]
    if std::env::var_os("MIMALLOC_ALLOW_THP").is_none() {
        // SAFETY: a process attribute; no memory is touched.
        unsafe { libc::prctl(libc::PR_SET_THP_DISABLE, 1, 0, 0, 0) };
    }
}

// mimalloc's options are an enum of the C library (mimalloc.h, `mi_option_e`, of the mimalloc v3
// that Cargo.lock pins through libmimalloc-sys 0.1.49); the test below pins the positions.
unsafe extern "C" {
    fn mi_option_set(option: i32, value: std::ffi::c_long);
    #[cfg(test)]
    fn mi_option_get(option: i32) -> std::ffi::c_long;
}
const MI_OPTION_PURGE_DELAY: i32 = 15;

/// Return freed memory to the kernel after 250 ms instead of mimalloc's 1 s. Ingest frees its
/// parsed columns while it builds the table from them; held for a second, both were resident at
/// once and the 1M-row benchmark peaked at 497-507 MiB; with 250 ms at 485-488 MiB and no
/// slower (100 ms: ~450 MiB but 0.2-0.3 s slower). (MIMALLOC_PURGE_DELAY sets it.)
fn prompt_purge() {
    if std::env::var_os("MIMALLOC_PURGE_DELAY").is_none() {
        // SAFETY: sets an integer option of the allocator; allowed at any time, from any thread.
        unsafe { mi_option_set(MI_OPTION_PURGE_DELAY, 250) };
    }
}

/// Train and serve replica-count predictions for Kubernetes autoscaling.
///
/// A pipeline is a YAML file of stages (ingest, sql, …). Every stage's output is cached as
/// Parquet under artifacts/cache, keyed by everything it depends on, so re-running only
/// recomputes what changed.
#[derive(Parser)]
#[command(name = "pipeline", version, max_term_width = 100)]
#[command(after_help = "Exit codes: 0 success, 1 a stage or command failed, 2 invalid pipeline file or arguments, 3 another run holds the project (with --no-wait).")]
struct Cli {
    /// More log detail (-v debug, -vv trace); RUST_LOG overrides.
    #[arg(short, long, global = true, action = clap::ArgAction::Count)]
    verbose: u8,
    /// Log format on stderr: `text` for people, `json` for log collectors (one event per line).
    #[arg(long, global = true, default_value = "text", value_parser = ["text", "json"])]
    log_format: String,
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Run the pipeline: build every stage whose inputs changed, reuse the rest.
    Run(cli::run::RunArgs),
    /// For each stage: fresh (cached for the current inputs) or stale, and what changed.
    Status {
        #[command(flatten)]
        pipeline: PipelineArgs,
    },
    /// Show the stage graph.
    Dag {
        #[command(flatten)]
        pipeline: PipelineArgs,
        /// `text` for a terminal, `dot` for Graphviz, `mermaid` for Markdown.
        #[arg(long, default_value = "text", value_parser = ["text", "dot", "mermaid"])]
        format: String,
    },
    /// Describe a stage's cached output: schema, rows, size, key, and the first rows.
    Inspect {
        /// The stage to look at.
        stage: String,
        #[command(flatten)]
        pipeline: PipelineArgs,
        /// How many rows to show.
        #[arg(long, short = 'n', default_value_t = 10)]
        rows: usize,
        /// Only the schema.
        #[arg(long)]
        schema: bool,
        /// A side table instead of the main output (e.g. `quarantine` of ingest).
        #[arg(long, value_name = "NAME")]
        table: Option<String>,
    },
    /// Run SQL over the cached outputs; each stage is a table named after it.
    Query {
        /// The query, e.g. "SELECT service_name, count(*) FROM ingest GROUP BY 1".
        sql: String,
        #[command(flatten)]
        pipeline: PipelineArgs,
        /// At most this many rows are printed.
        #[arg(long, default_value_t = 100)]
        limit: usize,
    },
    /// Read a cluster's metrics rows from Prometheus into day files (live, or backfilled).
    ///
    /// Every --every seconds, one row per service (the 23 columns, in the units of README.md's
    /// data contract) from cAdvisor, kube-state-metrics and ingress-nginx series; the PromQL of
    /// each column is in collect.yaml. Rows go to YYYY/MM/metrics_YYYYMMDD.csv below --out, a
    /// folder or s3://bucket/prefix, where `pipeline run` reads them. With --from/--to, past days
    /// are rebuilt from Prometheus' history at 30 s steps, so a team can train on day one.
    Collect(cli::collect::CollectArgs),
    /// Write realistic metrics CSVs driven by a real request-rate trace.
    ///
    /// Each service has pods with a capacity and a Kubernetes-HPA-like controller; CPU, RAM,
    /// latency, errors, queue and restarts follow from load and ready replicas. The output is
    /// the collector's 23-column CSV, one file per day, rows between 06:00 and 22:00.
    ///
    /// With --scaler URL a running `pipeline serve` sets the replicas instead (closed loop: each
    /// step every service's row goes to its /predict/batch, the answers are actuated as an HPA
    /// actuates), and the summary compares it with the internal HPA's frontier on the same load.
    Simulate(cli::simulate::SimulateArgs),
    /// Serve scaling decisions over HTTP (for HPA via Prometheus, or KEDA's metrics-api).
    ///
    /// POST /predict takes one raw metrics row (the collector's 23 fields as JSON) and answers
    /// with a decision; POST /predict/batch takes an array. GET /scale/{service} is the last
    /// decision for KEDA, GET /metrics is Prometheus text, GET /healthz and /readyz are probes.
    /// A newly promoted model is picked up within --reload-every without a restart.
    Serve(cli::serve::ServeArgs),
    /// Decisions for raw metrics rows from the promoted model, without a server.
    ///
    /// ROWS is a JSON file (or - for standard input) holding one row with the collector's 23
    /// fields, an array of rows, or one row per line; rows are taken in order, so several rows
    /// of a service give it the history its rolling features need (the LSTM-CNN needs 12).
    /// Prints the decision as `POST /predict` would answer it (one row), or one decision per
    /// line. Example: `pipeline predict data/row.json`.
    Predict(cli::predict::PredictArgs),
    /// Remove old runs and the cache entries no kept run or stage refers to.
    ///
    /// Keeps the newest --keep-runs runs, every run younger than --keep-days, and `latest`;
    /// keeps each stage's last build. Never touches the model registry (promoted versions).
    Gc {
        /// The project folder (the one holding artifacts/).
        #[arg(long, default_value = ".", value_name = "DIR")]
        root: PathBuf,
        /// How many of the newest runs to keep.
        #[arg(long, default_value_t = 10, value_name = "N")]
        keep_runs: usize,
        /// Also keep every run younger than this many days.
        #[arg(long, value_name = "D")]
        keep_days: Option<f64>,
        /// Say what would be removed, remove nothing.
        #[arg(long)]
        dry_run: bool,
        /// If a run holds the project, exit with code 3 instead of waiting.
        #[arg(long)]
        no_wait: bool,
        /// Also collect this shared store (s3://bucket/prefix) by the same rules, keeping every
        /// entry this machine keeps. Given explicitly, never taken from PIPELINE_STORE: other
        /// machines may be using the store, so run it where no other run is going on.
        #[arg(long, value_name = "URL")]
        store: Option<String>,
    },
    /// The model registry: versions, the serving one, promotion and rollback.
    Models {
        #[command(subcommand)]
        command: cli::models::ModelsCommand,
        /// The registry folder.
        #[arg(long, default_value = "artifacts/models", value_name = "DIR", global = true)]
        registry: PathBuf,
        /// Work on the registry of this shared store (s3://bucket/prefix): fetched first, and a
        /// promotion or rollback is shared at once.
        #[arg(long, value_name = "URL", env = "PIPELINE_STORE", global = true)]
        store: Option<String>,
    },
    /// Run a Ballista scheduler for the SQL stages of `--engine ballista://HOST:PORT`.
    ///
    /// With one or more `pipeline executor` processes this is a cluster that runs the SQL stages
    /// of any pipeline (its rolling_* functions included); results stream back to the `pipeline
    /// run` that sent them, which writes its cache as usual. The executors must read the stages'
    /// files at the paths the run gives (a shared folder mounted at the same path).
    Scheduler(cli::cluster::SchedulerArgs),
    /// Run a Ballista executor: the tasks of the SQL stages its scheduler hands it.
    Executor(cli::cluster::ExecutorArgs),
    /// Write a stage's cached output to a file; `.parquet` or `.csv` by extension.
    Export {
        stage: String,
        path: PathBuf,
        #[command(flatten)]
        pipeline: PipelineArgs,
        /// A side table instead of the main output.
        #[arg(long, value_name = "NAME")]
        table: Option<String>,
    },
}

fn main() -> ExitCode {
    tune_memory();
    let args = Cli::parse();
    cli::logging::init(args.verbose, &args.log_format);
    let runtime = match tokio::runtime::Builder::new_multi_thread().enable_all().build() {
        Ok(r) => r,
        Err(e) => {
            eprintln!("error: cannot start the async runtime: {e}");
            return ExitCode::from(exit::FAILURE);
        }
    };
    // One event per line for log collectors: bars would interleave with them.
    let json_logs = args.log_format == "json";
    let result = runtime.block_on(async move {
        match args.command {
            Command::Run(args) => cli::run::run(args, json_logs).await,
            Command::Status { pipeline } => cli::status::status(pipeline).await,
            Command::Dag { pipeline, format } => cli::dag::dag(pipeline, &format),
            Command::Inspect { stage, pipeline, rows, schema, table } => {
                cli::inspect::inspect(pipeline, &stage, table.as_deref(), rows, schema).await
            }
            Command::Query { sql, pipeline, limit } => cli::query::query(pipeline, &sql, limit).await,
            Command::Collect(args) => cli::collect::collect(args).await,
            Command::Simulate(args) => {
                let runtime = tokio::runtime::Handle::current();
                tokio::task::spawn_blocking(move || cli::simulate::simulate(args, runtime)).await?
            }
            Command::Serve(args) => cli::serve::serve(args).await,
            Command::Predict(args) => tokio::task::spawn_blocking(move || cli::predict::predict(args)).await?,
            Command::Gc { root, keep_runs, keep_days, dry_run, no_wait, store } => {
                let retention = autoscale::artifacts::runs::Retention { keep_runs, keep_days };
                cli::gc::gc(cli::gc::Options { root, retention, dry_run, no_wait, store: cli::open_store(store.as_deref())? }).await
            }
            Command::Models { command, registry, store } => cli::models::models(&registry, cli::open_store(store.as_deref())?, command).await,
            Command::Scheduler(args) => cli::cluster::scheduler(args).await,
            Command::Executor(args) => cli::cluster::executor(args).await,
            Command::Export { stage, path, pipeline, table } => {
                cli::export::export(pipeline, &stage, table.as_deref(), &path).await
            }
        }
    });
    match result {
        Ok(code) => ExitCode::from(code),
        Err(e) => {
            eprintln!("error: {e:#}");
            ExitCode::from(exit::code_for(&e))
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

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
            &["scheduler"],
            &["executor"],
            &["export", "ingest", "x.csv"],
        ] {
            let mut argv = vec!["pipeline"];
            argv.extend_from_slice(args);
            if let Err(e) = Cli::try_parse_from(&argv) {
                panic!("{argv:?}: {e}");
            }
        }
    }

    #[test]
    fn mimalloc_option_positions_match_the_linked_library() {
        // purge_delay and the two options after it with distinct defaults (1000 ms, 32, 32): a
        // mimalloc upgrade that moved them fails here rather than setting another option.
        if std::env::vars_os().any(|(k, _)| k.to_string_lossy().starts_with("MIMALLOC_")) {
            return;
        }
        let got = unsafe { [MI_OPTION_PURGE_DELAY, 19, 20].map(|o| mi_option_get(o)) };
        assert_eq!(got, [1000, 32, 32]);
    }
}
