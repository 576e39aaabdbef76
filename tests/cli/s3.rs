//! Ingest from S3 against a real S3 API server (moto) on loopback.

use crate::common;
use common::Project;
use common::moto::Moto;

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

    let env = moto.env();
    let args = ["run", "pipelines/s3.yaml", "--set", "metrics_uri=s3://metrics-bucket/metrics/", "--set", "date=2024-10"];
    let run = p.pipeline_env(&args, &env).ok();
    assert_eq!(run.stage_status("ingest"), "ran");
    let days = p
        .pipeline_env(
            &["query", "-p", "pipelines/s3.yaml", "--set", "metrics_uri=s3://metrics-bucket/metrics/", "--set", "date=2024-10", "SELECT day, n FROM per_day"],
            &env,
        )
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
