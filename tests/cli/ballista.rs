//! The SQL stages on Ballista: in-process (standalone) and as `pipeline scheduler` and
//! `pipeline executor` processes on loopback, each equal to the local run, column by column.

use std::net::{TcpListener, TcpStream};
use std::process::{Child, Stdio};
use std::time::{Duration, Instant};

use crate::common::{self, Project};

const SQL_STAGES: [&str; 2] = ["features", "labels"];

/// Each SQL stage's table and recorded order, from a project that ran them.
fn tables(p: &Project) -> Vec<(datafusion::arrow::array::RecordBatch, serde_json::Value)> {
    SQL_STAGES
        .iter()
        .map(|s| {
            let dir = p.entry_dir(s, &[]);
            (common::read_parquet(&dir.join("output.parquet")), common::json(&dir.join("meta.json"))["sorted_by"].clone())
        })
        .collect()
}

fn local_run() -> Vec<(datafusion::arrow::array::RecordBatch, serde_json::Value)> {
    let p = Project::new();
    p.pipeline(&["run", "--until", "labels"]).ok();
    tables(&p)
}

#[test]
fn sql_stages_on_a_standalone_cluster_equal_the_local_run() {
    let p = Project::new();
    p.pipeline(&["run", "--until", "labels", "--engine", "ballista:standalone"]).ok().stdout_has("3 ran");
    let (remote, local) = (tables(&p), local_run());
    for ((stage, (r, r_order)), (l, l_order)) in SQL_STAGES.iter().zip(&remote).zip(&local) {
        assert!(r.num_rows() > 1000, "{stage}: {} rows", r.num_rows());
        assert_eq!(r.schema(), l.schema(), "{stage}");
        assert_eq!(r, l, "{stage}");
        assert_eq!(r_order, l_order, "{stage}: the order is the plan's");
    }
    assert_eq!(local[0].1[0]["column"], "service_name", "a sorted stage, so the order was compared");
}

fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port()
}

/// Killed with the test.
struct Process(Child);

impl Drop for Process {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

fn spawn(args: &[&str], env: &[(&'static str, String)]) -> Process {
    let mut command = common::command();
    command.args(args).envs(env.iter().map(|(k, v)| (k, v))).stdout(Stdio::null()).stderr(Stdio::null());
    Process(command.spawn().unwrap())
}

fn wait_for(port: u16) {
    let start = Instant::now();
    while TcpStream::connect(("127.0.0.1", port)).is_err() {
        assert!(start.elapsed() < Duration::from_secs(30), "nothing listens on {port}");
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// `pipeline scheduler` and its `pipeline executor`s as processes on loopback, killed with the
/// test. Executors report every second and the scheduler gives up on one after three.
struct Cluster {
    scheduler: String,
    _scheduler: Process,
    executors: Vec<(Process, tempfile::TempDir)>,
}

impl Cluster {
    fn start(executors: usize, env: &[(&'static str, String)]) -> Cluster {
        let port = free_port();
        let scheduler = format!("127.0.0.1:{port}");
        let process = spawn(&["scheduler", "--bind", &scheduler, "--executor-timeout", "3"], env);
        wait_for(port);
        let executors: Vec<_> = (0..executors)
            .map(|_| {
                let (data, control, work) = (free_port(), free_port(), tempfile::tempdir().unwrap());
                let args = [
                    "executor",
                    "--scheduler",
                    &scheduler,
                    "--bind",
                    &format!("127.0.0.1:{data}"),
                    "--grpc-port",
                    &control.to_string(),
                    "--concurrent-tasks",
                    "1",
                    "--heartbeat",
                    "1",
                    "--work-dir",
                    work.path().to_str().unwrap(),
                ]
                .map(String::from);
                let args: Vec<&str> = args.iter().map(String::as_str).collect();
                let executor = spawn(&args, env);
                wait_for(data);
                (executor, work)
            })
            .collect();
        Cluster { scheduler, _scheduler: process, executors }
    }

    fn engine(&self) -> String {
        format!("ballista://{}", self.scheduler)
    }
}

#[test]
fn sql_stages_on_a_scheduler_and_two_executors_reading_the_store_equal_the_local_run() {
    let moto = crate::common::moto::Moto::start();
    moto.create_bucket("team");
    let cluster = Cluster::start(2, &moto.env());
    let p = Project::new();
    let engine = cluster.engine();
    let mut env = moto.env();
    env.push(("PIPELINE_ENGINE", engine));
    p.pipeline_env(&["run", "--until", "labels", "--store", "s3://team/shared"], &env).ok().stdout_has("3 ran");
    let (remote, local) = (tables(&p), local_run());
    for ((stage, (r, r_order)), (l, l_order)) in SQL_STAGES.iter().zip(&remote).zip(&local) {
        assert_eq!(r, l, "{stage}");
        assert_eq!(r_order, l_order, "{stage}");
    }
    // This machine has ingest's entry; only the cluster's reads fetch the store's copy.
    let ingest = p.entry_dir("ingest", &[]);
    let key = ingest.file_name().unwrap().to_str().unwrap();
    let reads = moto.requests(&format!("GET /team/shared/cache/entries/{key}/output.parquet"));
    assert!(reads > 0, "the cluster read ingest's entry from the store");
}

#[test]
fn an_executor_killed_mid_stage_fails_the_stage_naming_the_engine_and_writes_nothing() {
    let mut cluster = Cluster::start(1, &[]);
    let p = Project::new();
    p.pipeline(&["run", "--until", "ingest"]).ok();
    let (mut executor, work) = cluster.executors.pop().unwrap();
    let mut run = common::command()
        .current_dir(p.path())
        .args(["run", "--until", "features", "--engine", &cluster.engine()])
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    // A job's folder in the executor's work dir: its first task is running.
    let start = Instant::now();
    while std::fs::read_dir(work.path()).unwrap().flatten().all(|e| e.file_name().to_string_lossy().starts_with("datafusion")) {
        assert!(start.elapsed() < Duration::from_secs(60), "the executor never got a task");
        std::thread::sleep(Duration::from_millis(2));
    }
    executor.0.kill().unwrap();
    let status = wait_with_timeout(&mut run, Duration::from_secs(60));
    let mut stderr = String::new();
    std::io::Read::read_to_string(run.stderr.as_mut().unwrap(), &mut stderr).unwrap();
    assert_eq!(status.code(), Some(1), "{stderr}");
    assert!(stderr.contains(&format!("in sql/features.sql on the engine {}", cluster.engine())), "{stderr}");
    assert!(stderr.contains("no executor re-registered"), "Ballista's reason is kept: {stderr}");
    let cache = p.path().join("artifacts/cache");
    let entries: Vec<_> = walk(&cache.join("entries")).into_iter().filter(|m| m.ends_with("meta.json")).collect();
    assert_eq!(entries.len(), 1, "only ingest's entry: {entries:?}");
    assert_eq!(walk(&cache.join("tmp")), Vec::<String>::new(), "nothing half-written left behind");
}

fn wait_with_timeout(child: &mut Child, limit: Duration) -> std::process::ExitStatus {
    let start = Instant::now();
    loop {
        if let Some(status) = child.try_wait().unwrap() {
            return status;
        }
        if start.elapsed() > limit {
            let _ = child.kill();
            panic!("the run did not end within {limit:?} of its executor dying");
        }
        std::thread::sleep(Duration::from_millis(50));
    }
}

#[test]
fn a_scheduler_that_is_not_there_fails_the_stage_naming_the_engine_and_caches_nothing() {
    let p = Project::new();
    let engine = format!("ballista://127.0.0.1:{}", free_port());
    p.pipeline(&["run", "--until", "features", "--engine", &engine]).code(1).stderr_has(&format!("in sql/features.sql on the engine {engine}"));
    let cached = p.path().join("artifacts/cache");
    let entries: Vec<_> = walk(&cached).into_iter().filter(|m| m.ends_with("meta.json")).collect();
    assert_eq!(entries.len(), 1, "only ingest's entry: {entries:?}");
    p.pipeline(&["run", "--until", "features", "--engine", "local"]).ok().stdout_has("1 ran, 1 cached");
}

#[test]
fn an_engine_that_is_not_one_is_a_usage_error() {
    let p = Project::new();
    p.pipeline(&["run", "--engine", "spark://x"]).code(2).stderr_has("`spark://x` is not an engine");
}

/// Ballista has no authentication: a port other machines reach is refused unless asked for.
#[test]
fn scheduler_and_executor_refuse_an_open_port_without_insecure() {
    let p = Project::empty();
    for command in ["scheduler", "executor"] {
        p.pipeline(&[command, "--bind", "0.0.0.0:0"]).code(2).stderr_has("Ballista has no authentication").stderr_has("--insecure");
    }
}

fn walk(dir: &std::path::Path) -> Vec<String> {
    let Ok(read) = std::fs::read_dir(dir) else { return Vec::new() };
    read.flatten().flat_map(|e| if e.path().is_dir() { walk(&e.path()) } else { vec![e.path().to_string_lossy().into_owned()] }).collect()
}
