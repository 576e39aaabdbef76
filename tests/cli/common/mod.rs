//! A throwaway project folder and the real `pipeline` binary, so each test reads as one CLI
//! scenario: `Project::new().file(...).pipeline(args).ok().stdout_has("cached")`.
#![allow(dead_code)]

pub mod moto;
pub mod prometheus;
pub mod tls;

use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};

pub const HEADER: &str = "timestamp,service_name,cpu_usage_percent,cpu_usage_percent_last_5_min,cpu_usage_percent_slope,ram_usage_percent,ram_usage_percent_last_5_min,ram_usage_percent_slope,request_count_per_second,request_count_per_second_last_5_min,response_time_ms,replica_count,is_holiday,is_weekend,cpu_request,cpu_limit,ram_request,ram_limit,queue_length,error_rate,pod_restart_count,node_cpu_pressure_flag,node_memory_pressure_flag";

/// One valid metrics row.
pub fn row(ts: &str, service: &str, cpu: f64) -> String {
    format!("{ts},{service},{cpu},50,0.1,40,40,0,100,90,120,3,0,0,0.5,1,256,512,0,0.01,0,0,0")
}

/// One valid `/predict` body: `second` seconds after 10:00, every metric 1 but the CPU and
/// 3 replicas.
pub fn row_json(service: &str, second: u32, cpu: f64) -> serde_json::Value {
    let mut v = serde_json::json!({ "timestamp": format!("2025-10-13T10:{:02}:{:02}", second / 60, second % 60), "service_name": service });
    for (n, _) in autoscale::row::NUMERIC {
        v[n] = serde_json::json!(1.0);
    }
    v["cpu_usage_percent"] = serde_json::json!(cpu);
    v["replica_count"] = serde_json::json!(3);
    v
}

pub fn repo() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

/// A Python-side tool from the project's `.venv` (made by scripts/setup.sh), else from PATH.
pub fn tool(name: &str) -> PathBuf {
    let local = repo().join(".venv/bin").join(name);
    if local.exists() { local } else { PathBuf::from(name) }
}

/// The binary, as tests run it. Tests run side by side on few cores: libtorch's OpenMP workers
/// must sleep, not spin, while they wait, or parallel test processes slow each other tenfold.
pub fn command() -> Command {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_pipeline"));
    cmd.env_remove("RUST_LOG").env("OMP_WAIT_POLICY", "PASSIVE");
    cmd
}

pub struct Project {
    pub dir: tempfile::TempDir,
}

impl Project {
    /// An empty project.
    pub fn empty() -> Project {
        Project { dir: tempfile::tempdir().expect("temp dir") }
    }

    /// A project with the repository's pipelines and SQL, and small simulated metrics
    /// (2 days, 3 services) in `data/metrics`.
    pub fn new() -> Project {
        let p = Project::bare();
        p.simulate(&["--days", "2", "--services", "frontend,order,recommender", "--out", "data/metrics"]);
        p
    }

    /// The repository's pipelines and SQL, and no data.
    pub fn bare() -> Project {
        let p = Project::empty();
        copy_dir(&repo().join("pipelines"), &p.path().join("pipelines"));
        copy_dir(&repo().join("sql"), &p.path().join("sql"));
        p
    }

    pub fn path(&self) -> &Path {
        self.dir.path()
    }

    pub fn file(self, rel: &str, contents: &str) -> Project {
        let path = self.path().join(rel);
        std::fs::create_dir_all(path.parent().unwrap()).unwrap();
        std::fs::write(path, contents).unwrap();
        self
    }

    pub fn write(&self, rel: &str, contents: &str) {
        let path = self.path().join(rel);
        std::fs::create_dir_all(path.parent().unwrap()).unwrap();
        std::fs::write(path, contents).unwrap();
    }

    pub fn read(&self, rel: &str) -> String {
        std::fs::read_to_string(self.path().join(rel)).unwrap_or_else(|e| panic!("reading {rel}: {e}"))
    }

    /// The cache entry folder of a stage built with these `--set`s (`inspect` names it).
    pub fn entry_dir(&self, stage: &str, sets: &[&str]) -> PathBuf {
        let mut args = vec!["inspect", stage, "--schema"];
        args.extend_from_slice(sets);
        let out = self.pipeline(&args).ok().stdout();
        let file = out.lines().find_map(|l| l.strip_prefix("file:     ")).expect("inspect names the file").trim().to_string();
        self.path().join(file).parent().unwrap().to_path_buf()
    }

    pub fn simulate(&self, args: &[&str]) -> Run {
        let trace = repo().join("data/traces/worldcup98/wc98_requests_per_minute.csv.gz");
        let mut all = vec!["simulate", "--trace", trace.to_str().unwrap()];
        all.extend_from_slice(args);
        self.pipeline(&all).ok()
    }

    /// Run the real binary in the project folder.
    pub fn pipeline(&self, args: &[&str]) -> Run {
        self.pipeline_env::<&str, &str>(args, &[])
    }

    pub fn pipeline_env<K: AsRef<std::ffi::OsStr>, V: AsRef<std::ffi::OsStr>>(&self, args: &[&str], env: &[(K, V)]) -> Run {
        let mut cmd = command();
        cmd.args(args).current_dir(self.path());
        for (k, v) in env {
            cmd.env(k, v);
        }
        let out = cmd.output().expect("running pipeline");
        Run { args: args.iter().map(|s| s.to_string()).collect(), out }
    }
}

pub struct Run {
    args: Vec<String>,
    pub out: Output,
}

impl Run {
    pub fn stdout(&self) -> String {
        String::from_utf8_lossy(&self.out.stdout).into_owned()
    }

    pub fn stderr(&self) -> String {
        String::from_utf8_lossy(&self.out.stderr).into_owned()
    }

    fn context(&self) -> String {
        format!("`pipeline {}`\n--- stdout\n{}\n--- stderr\n{}", self.args.join(" "), self.stdout(), self.stderr())
    }

    pub fn ok(self) -> Run {
        assert!(self.out.status.success(), "expected success from {}", self.context());
        self
    }

    pub fn code(self, code: i32) -> Run {
        assert_eq!(self.out.status.code(), Some(code), "exit code of {}", self.context());
        self
    }

    pub fn stdout_has(self, needle: &str) -> Run {
        assert!(self.stdout().contains(needle), "stdout lacks {needle:?} in {}", self.context());
        self
    }

    pub fn stdout_lacks(self, needle: &str) -> Run {
        assert!(!self.stdout().contains(needle), "stdout has {needle:?} in {}", self.context());
        self
    }

    pub fn stderr_has(self, needle: &str) -> Run {
        assert!(self.stderr().contains(needle), "stderr lacks {needle:?} in {}", self.context());
        self
    }

    /// The status column of a stage in the run summary.
    pub fn stage_status(&self, stage: &str) -> String {
        self.stdout()
            .lines()
            .find(|l| l.split_whitespace().next() == Some(stage))
            .and_then(|l| l.split_whitespace().nth(1))
            .unwrap_or_else(|| panic!("no summary line for `{stage}` in {}", self.context()))
            .to_string()
    }
}

pub fn copy_dir(from: &Path, to: &Path) {
    std::fs::create_dir_all(to).unwrap();
    for e in std::fs::read_dir(from).unwrap() {
        let e = e.unwrap();
        let dest = to.join(e.file_name());
        if e.file_type().unwrap().is_dir() {
            copy_dir(&e.path(), &dest);
        } else {
            std::fs::copy(e.path(), dest).unwrap();
        }
    }
}

/// How many entries a folder has (0 when it does not exist).
pub fn count(dir: &Path) -> usize {
    std::fs::read_dir(dir).map(|r| r.count()).unwrap_or(0)
}

/// A JSON file, parsed.
pub fn json(path: &Path) -> serde_json::Value {
    serde_json::from_slice(&std::fs::read(path).unwrap_or_else(|e| panic!("{}: {e}", path.display()))).unwrap()
}

/// A whole Parquet file as one batch.
pub fn read_parquet(path: &Path) -> datafusion::arrow::array::RecordBatch {
    use datafusion::parquet::arrow::arrow_reader::ParquetRecordBatchReaderBuilder;
    let file = std::fs::File::open(path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    let builder = ParquetRecordBatchReaderBuilder::try_new(file).unwrap();
    let schema = builder.schema().clone();
    let batches: Vec<_> = builder.build().unwrap().map(|b| b.unwrap()).collect();
    datafusion::arrow::compute::concat_batches(&schema, &batches).unwrap()
}

/// A column as f64 (casting integers and timestamps).
pub fn f64_column(t: &datafusion::arrow::array::RecordBatch, name: &str) -> Vec<f64> {
    use datafusion::arrow::array::AsArray;
    let c = t.column_by_name(name).unwrap_or_else(|| panic!("no column {name}"));
    let c = datafusion::arrow::compute::cast(c, &datafusion::arrow::datatypes::DataType::Float64).unwrap();
    c.as_primitive::<datafusion::arrow::datatypes::Float64Type>().values().to_vec()
}

pub fn i64_column(t: &datafusion::arrow::array::RecordBatch, name: &str) -> Vec<i64> {
    use datafusion::arrow::array::AsArray;
    let c = datafusion::arrow::compute::cast(t.column_by_name(name).unwrap(), &datafusion::arrow::datatypes::DataType::Int64).unwrap();
    c.as_primitive::<datafusion::arrow::datatypes::Int64Type>().values().to_vec()
}

pub fn str_column(t: &datafusion::arrow::array::RecordBatch, name: &str) -> Vec<String> {
    use datafusion::arrow::array::AsArray;
    let c = datafusion::arrow::compute::cast(t.column_by_name(name).unwrap(), &datafusion::arrow::datatypes::DataType::Utf8).unwrap();
    c.as_string::<i32>().iter().map(|s| s.unwrap_or("").to_string()).collect()
}

/// A `pipeline serve` on a free loopback port, stopped when dropped.
pub struct Server {
    child: Child,
    pub base: String,
}

impl Server {
    /// The server process, for its memory (`/proc/PID/status`).
    pub fn pid(&self) -> u32 {
        self.child.id()
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

pub fn start_server(p: &Project, extra: &[&str], env: &[(&str, &str)]) -> Server {
    let mut cmd = command();
    cmd.args(["serve", "--addr", "127.0.0.1:0", "--reload-every", "0.1"])
        .args(extra)
        .current_dir(p.path())
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .env_remove("PIPELINE_SERVE_TOKEN");
    for (k, v) in env {
        cmd.env(k, v);
    }
    let mut child = cmd.spawn().unwrap();
    let mut line = String::new();
    BufReader::new(child.stdout.take().unwrap()).read_line(&mut line).unwrap();
    let base = line
        .trim()
        .strip_prefix("listening on ")
        .unwrap_or_else(|| panic!("the server did not start (first line {line:?}); run it by hand to see why"))
        .to_string();
    Server { child, base }
}

/// `days` of one point a minute from midnight, with `load(hour of day)`.
pub fn daily_trace(days: u32, load: impl Fn(f64) -> f64) -> String {
    let mut out = String::from("time,value\n");
    let start = chrono::NaiveDate::from_ymd_opt(2025, 10, 6).unwrap().and_hms_opt(0, 0, 0).unwrap();
    for m in 0..days * 24 * 60 {
        let t = start + chrono::Duration::minutes(m as i64);
        out.push_str(&format!("{},{:.3}\n", t.format("%Y-%m-%d %H:%M:%S"), load(m as f64 / 60.0 % 24.0)));
    }
    out
}
