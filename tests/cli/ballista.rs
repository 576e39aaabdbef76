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

fn spawn(args: &[String]) -> Process {
    Process(common::command().args(args).stdout(Stdio::null()).stderr(Stdio::null()).spawn().unwrap())
}

fn wait_for(port: u16) {
    let start = Instant::now();
    while TcpStream::connect(("127.0.0.1", port)).is_err() {
        assert!(start.elapsed() < Duration::from_secs(30), "nothing listens on {port}");
        std::thread::sleep(Duration::from_millis(50));
    }
}

#[test]
fn sql_stages_on_a_scheduler_and_two_executors_equal_the_local_run() {
    let scheduler_port = free_port();
    let scheduler = format!("127.0.0.1:{scheduler_port}");
    let _scheduler = spawn(&["scheduler".into(), "--bind".into(), scheduler.clone()]);
    wait_for(scheduler_port);
    let mut executors = Vec::new();
    for _ in 0..2 {
        let (data, control) = (free_port(), free_port());
        executors.push((
            spawn(&[
                "executor".into(),
                "--scheduler".into(),
                scheduler.clone(),
                "--bind".into(),
                format!("127.0.0.1:{data}"),
                "--grpc-port".into(),
                control.to_string(),
                "--concurrent-tasks".into(),
                "1".into(),
            ]),
            data,
        ));
    }
    for (_, port) in &executors {
        wait_for(*port);
    }

    let p = Project::new();
    let engine = format!("ballista://{scheduler}");
    p.pipeline_env(&["run", "--until", "labels"], &[("PIPELINE_ENGINE", engine.as_str())]).ok().stdout_has("3 ran");
    let (remote, local) = (tables(&p), local_run());
    for ((stage, (r, r_order)), (l, l_order)) in SQL_STAGES.iter().zip(&remote).zip(&local) {
        assert_eq!(r, l, "{stage}");
        assert_eq!(r_order, l_order, "{stage}");
    }
}

#[test]
fn a_scheduler_that_is_not_there_fails_the_stage_naming_the_engine_and_caches_nothing() {
    let p = Project::new();
    let engine = format!("ballista://127.0.0.1:{}", free_port());
    p.pipeline(&["run", "--until", "features", "--engine", &engine])
        .code(1)
        .stderr_has(&format!("in sql/features.sql on the engine {engine}"));
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

fn walk(dir: &std::path::Path) -> Vec<String> {
    let Ok(read) = std::fs::read_dir(dir) else { return Vec::new() };
    read.flatten()
        .flat_map(|e| if e.path().is_dir() { walk(&e.path()) } else { vec![e.path().to_string_lossy().into_owned()] })
        .collect()
}
