//! Ingest from S3 against a real S3 API server (moto) on loopback.

mod common;
use common::Project;

use std::net::{TcpListener, TcpStream};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

/// A moto server on a free loopback port, stopped when dropped.
struct Moto {
    child: Child,
    port: u16,
}

impl Moto {
    fn start() -> Moto {
        let port = TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port();
        let child = Command::new(common::tool("moto_server"))
            .args(["-H", "127.0.0.1", "-p", &port.to_string()])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("moto_server must be installed (pip install 'moto[server]'); .ci/run installs it");
        let deadline = Instant::now() + Duration::from_secs(30);
        while TcpStream::connect(("127.0.0.1", port)).is_err() {
            assert!(Instant::now() < deadline, "moto_server did not start on port {port}");
            std::thread::sleep(Duration::from_millis(100));
        }
        Moto { child, port }
    }

    fn endpoint(&self) -> String {
        format!("http://127.0.0.1:{}", self.port)
    }

    /// Create a bucket and upload every file under `dir` below `prefix`, with boto3.
    fn upload(&self, dir: &std::path::Path, bucket: &str, prefix: &str) {
        let script = r#"
import os, sys, boto3
endpoint, bucket, prefix, root = sys.argv[1:5]
s3 = boto3.client("s3", endpoint_url=endpoint, region_name="us-east-1",
                  aws_access_key_id="testing", aws_secret_access_key="testing")
s3.create_bucket(Bucket=bucket)
for dirpath, _, files in os.walk(root):
    for f in files:
        path = os.path.join(dirpath, f)
        s3.upload_file(path, bucket, prefix + os.path.relpath(path, root))
"#;
        let status = Command::new(common::tool("python3"))
            .args(["-c", script, &self.endpoint(), bucket, prefix, dir.to_str().unwrap()])
            .status()
            .expect("python3 with boto3");
        assert!(status.success(), "uploading test files to moto failed");
    }
}

impl Drop for Moto {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

const PIPELINE: &str = "
params:
  metrics_uri: data/metrics
  date: ''
  s3_endpoint: ''
stages:
  ingest:
    op: ingest
    source: ${metrics_uri}
    date: ${date}
  per_day:
    op: sql
    deps: [ingest]
    sql: sql/per_day.sql
";

#[test]
fn ingest_reads_a_month_from_s3() {
    let moto = Moto::start();
    let p = Project::empty()
        .file("pipelines/s3.yaml", PIPELINE)
        .file("sql/per_day.sql", "SELECT CAST(timestamp AS DATE) AS day, count(*) AS n FROM ingest GROUP BY 1 ORDER BY 1");
    // Two days of October and one of November, in the collector's YYYY/MM/ layout.
    p.simulate(&["--days", "3", "--start", "2024-10-30", "--services", "order,product", "--out", "local"]);
    moto.upload(&p.path().join("local"), "metrics-bucket", "metrics/");

    let endpoint = moto.endpoint();
    let env = [
        ("AWS_ACCESS_KEY_ID", "testing"),
        ("AWS_SECRET_ACCESS_KEY", "testing"),
        ("AWS_REGION", "us-east-1"),
        ("AWS_ENDPOINT_URL", endpoint.as_str()),
    ];
    let args = ["run", "pipelines/s3.yaml", "--set", "metrics_uri=s3://metrics-bucket/metrics/", "--set", "date=2024-10"];
    let run = p.pipeline_env(&args, &env).ok();
    assert_eq!(run.stage_status("ingest"), "ran");
    let days = p
        .pipeline_env(&["query", "-p", "pipelines/s3.yaml", "--set", "metrics_uri=s3://metrics-bucket/metrics/", "--set", "date=2024-10", "SELECT day, n FROM per_day"], &env)
        .ok();
    let out = days.stdout();
    assert!(out.contains("2024-10-30") && out.contains("2024-10-31"), "{out}");
    assert!(!out.contains("2024-11-01"), "the month filter must exclude November: {out}");
    // Unchanged objects (same ETags): nothing reruns.
    let again = p.pipeline_env(&args, &env).ok();
    assert_eq!(again.stage_status("ingest"), "cached");
}

#[test]
fn endpoint_can_come_from_the_stage() {
    let moto = Moto::start();
    let p = Project::empty()
        .file("pipelines/s3.yaml", &PIPELINE.replace("    date: ${date}\n", "    date: ${date}\n    endpoint: ${s3_endpoint}\n"))
        .file("sql/per_day.sql", "SELECT count(*) AS n FROM ingest");
    p.simulate(&["--days", "1", "--start", "2024-10-15", "--services", "order", "--out", "local"]);
    moto.upload(&p.path().join("local"), "stage-bucket", "metrics/");
    let endpoint = format!("s3_endpoint={}", moto.endpoint());
    let env = [("AWS_ACCESS_KEY_ID", "testing"), ("AWS_SECRET_ACCESS_KEY", "testing"), ("AWS_REGION", "us-east-1")];
    p.pipeline_env(&["run", "pipelines/s3.yaml", "--set", "metrics_uri=s3://stage-bucket/metrics", "--set", &endpoint, "--set", "date=2024-10-15"], &env)
        .ok()
        .stdout_has("2 ran");
    // A bucket that does not exist fails the stage with S3's reason, not a panic.
    p.pipeline_env(&["run", "pipelines/s3.yaml", "--set", "metrics_uri=s3://no-such-bucket/metrics", "--set", &endpoint], &env)
        .code(1)
        .stderr_has("listing s3://no-such-bucket/metrics");
}
