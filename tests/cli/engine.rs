//! The engine through the real binary: caching, reruns, status, the inspection commands,
//! failures and invalid pipeline files.

use crate::common;
use common::Project;

/// ingest → per_service → busiest, plus a sibling of per_service.
const PIPELINE: &str = "
name: t
params:
  metrics_uri: data/metrics
  date: ''
stages:
  ingest:
    op: ingest
    source: ${metrics_uri}
    date: ${date}
  per_service:
    op: sql
    deps: [ingest]
    sql: sql/per_service.sql
  busiest:
    op: sql
    deps: [per_service]
    sql: sql/busiest.sql
  hourly:
    op: sql
    deps: [ingest]
    sql: sql/hourly.sql
    params: {min_cpu: 0}
";

fn project() -> Project {
    Project::new()
        .file("pipelines/t.yaml", PIPELINE)
        .file("sql/per_service.sql", "SELECT service_name, count(*) AS n, max(replica_count) AS max_replicas FROM ingest GROUP BY service_name")
        .file("sql/busiest.sql", "SELECT * FROM per_service ORDER BY n DESC, service_name LIMIT 1")
        .file("sql/hourly.sql", "SELECT date_trunc('hour', timestamp) AS hour, avg(cpu_usage_percent) AS cpu FROM ingest WHERE cpu_usage_percent >= ${min_cpu} GROUP BY 1 ORDER BY 1")
}

const T: &str = "pipelines/t.yaml";

#[test]
fn second_run_is_fully_cached() {
    let p = project();
    let first = p.pipeline(&["run", T]).ok();
    for s in ["ingest", "per_service", "busiest", "hourly"] {
        assert_eq!(first.stage_status(s), "ran");
    }
    let second = p.pipeline(&["run", T]).ok().stdout_has("0 ran, 4 cached, 0 failed");
    // Cron mode: each log event is one JSON object per line on stderr.
    let json = p.pipeline(&["--log-format", "json", "run", T, "--force", "--only", "hourly"]).ok();
    let events: Vec<serde_json::Value> = json.stderr().lines().map(|l| serde_json::from_str(l).expect("a JSON event per line")).collect();
    assert!(events.iter().any(|e| e["message"].as_str().is_some_and(|m| m.starts_with("hourly: "))), "{events:?}");
    assert_eq!(second.stage_status("busiest"), "cached");
    assert!(p.path().join("artifacts/runs/latest/manifest.json").exists(), "a finished run is recorded as latest");
}

#[test]
fn editing_sql_reruns_that_stage_and_its_dependants_only() {
    let p = project();
    p.pipeline(&["run", T]).ok();
    p.write("sql/per_service.sql", "SELECT service_name, count(*) AS n, min(replica_count) AS max_replicas FROM ingest GROUP BY service_name");
    p.pipeline(&["status", T])
        .ok()
        .stdout_has("per_service  stale   file sql/per_service.sql changed")
        .stdout_has("busiest      stale   upstream `per_service` changed")
        .stdout_has("hourly       fresh");
    let run = p.pipeline(&["run", T]).ok();
    assert_eq!(run.stage_status("ingest"), "cached");
    assert_eq!(run.stage_status("hourly"), "cached");
    assert_eq!(run.stage_status("per_service"), "ran");
    assert_eq!(run.stage_status("busiest"), "ran");
    p.pipeline(&["status", T]).ok().stdout_has("everything is up to date");
}

#[test]
fn status_names_changed_params_and_inputs() {
    let p = project();
    p.pipeline(&["run", T]).ok();
    p.pipeline(&["status", T, "--set", "date=2025-10-06"])
        .ok()
        .stdout_has("param `date` changed: \"\" → \"2025-10-06\"")
        .stdout_has("input files changed: 1 removed");
    // A param inside the stage's SQL params.
    let yaml = PIPELINE.replace("{min_cpu: 0}", "{min_cpu: 10}");
    p.write(T, &yaml);
    p.pipeline(&["status", T]).ok().stdout_has("param `params.min_cpu` changed: 0 → 10");
    // A new metrics file.
    let day = p.read("data/metrics/2025/10/metrics_20251006.csv");
    p.write("data/metrics/2025/10/metrics_20251008.csv", &day.replace("2025-10-06", "2025-10-08"));
    p.pipeline(&["status", T]).ok().stdout_has("input files changed: 1 added (data/metrics/2025/10/metrics_20251008.csv)");
}

/// Local metrics are keyed by their bytes: a copy of the project (new paths, inodes and
/// modification times, as a fresh clone or a restored backup has) reuses every stage.
#[test]
fn a_copied_project_reuses_every_stage() {
    let p = project();
    p.pipeline(&["run", T]).ok();
    let copy = Project::empty();
    for dir in ["pipelines", "sql", "data", "artifacts/cache"] {
        common::copy_dir(&p.path().join(dir), &copy.path().join(dir));
    }
    copy.pipeline(&["status", T]).ok().stdout_has("everything is up to date");
    copy.pipeline(&["run", T]).ok().stdout_has("0 ran, 4 cached, 0 failed");
    // Touched, same bytes: nothing to rebuild. Other bytes of the same size: ingest reruns.
    let day = copy.path().join("data/metrics/2025/10/metrics_20251006.csv");
    let later = std::time::SystemTime::now() + std::time::Duration::from_secs(60);
    std::fs::File::options().write(true).open(&day).unwrap().set_modified(later).unwrap();
    copy.pipeline(&["status", T]).ok().stdout_has("everything is up to date");
    let text = copy.read("data/metrics/2025/10/metrics_20251006.csv");
    let edited = text.replacen(",0,0,0\n", ",0,0,1\n", 1);
    assert_eq!(edited.len(), text.len());
    assert_ne!(edited, text);
    copy.write("data/metrics/2025/10/metrics_20251006.csv", &edited);
    copy.pipeline(&["status", T]).ok().stdout_has("input files changed: 1 modified (data/metrics/2025/10/metrics_20251006.csv)");
}

#[test]
fn only_from_force_and_dry_run() {
    let p = project();
    p.pipeline(&["run", T, "--only", "busiest"]).code(1).stderr_has("upstream stage `per_service` is not cached");
    p.pipeline(&["run", T, "--dry-run"]).ok().stdout_has("run     ingest").stdout_has("never built");
    assert!(!p.path().join("artifacts/cache/entries").exists(), "a dry run builds nothing");
    p.pipeline(&["run", T]).ok();
    let from = p.pipeline(&["run", T, "--from", "per_service"]).ok();
    assert_eq!(from.stage_status("ingest"), "cached");
    assert_eq!(from.stage_status("per_service"), "ran");
    assert_eq!(from.stage_status("busiest"), "ran");
    assert_eq!(from.stage_status("hourly"), "cached");
    let entry_inode = || std::os::unix::fs::MetadataExt::ino(&std::fs::metadata(p.entry_dir("hourly", &["-p", T])).unwrap());
    let before = entry_inode();
    let only = p.pipeline(&["run", T, "--only", "hourly", "--force"]).ok();
    assert_eq!(only.stage_status("hourly"), "ran");
    assert_eq!(only.stage_status("ingest"), "cached");
    assert_ne!(entry_inode(), before, "a forced build replaces the cached entry (after a code change it may differ)");
    let all = p.pipeline(&["run", T, "--force", "--jobs", "1"]).ok();
    assert_eq!(all.stage_status("ingest"), "ran");
    let until = p.pipeline(&["run", T, "--until", "per_service", "--force"]).ok();
    assert_eq!(until.stage_status("per_service"), "ran");
    assert_eq!(until.stage_status("ingest"), "ran");
    assert_eq!(until.stage_status("busiest"), "cached", "downstream of --until is left alone");
    assert_eq!(until.stage_status("hourly"), "cached", "outside --until's reach");
    // A partial run that leaves a stale stage out does not become `latest`.
    let latest = || std::fs::read_link(p.path().join("artifacts/runs/latest")).unwrap();
    let complete = latest();
    p.write("sql/busiest.sql", "SELECT * FROM per_service ORDER BY n, service_name LIMIT 1");
    let partial = p.pipeline(&["run", T, "--until", "per_service"]).ok();
    assert_eq!(partial.stage_status("busiest"), "-");
    assert_eq!(latest(), complete, "latest stays on the last complete run");
    p.pipeline(&["run", T]).ok();
    assert_ne!(latest(), complete, "a complete run moves it");
}

#[test]
fn inspect_query_export_and_dag() {
    let p = project();
    p.pipeline(&["inspect", "ingest", "-p", T]).code(1).stderr_has("run `pipeline run` first");
    p.pipeline(&["run", T]).ok();
    p.pipeline(&["inspect", "ingest", "-p", T, "--rows", "3"])
        .ok()
        .stdout_has("rows:     ")
        .stdout_has("cpu_usage_percent_last_5_min")
        .stdout_has("Timestamp(µs)")
        .stdout_has("first 3 rows:")
        .stdout_has("tables:   quarantine");
    p.pipeline(&["inspect", "ingest", "-p", T, "--table", "quarantine", "--schema"]).ok().stdout_has("reason");
    p.pipeline(&["inspect", "nope", "-p", T]).code(1).stderr_has("no stage `nope`");
    p.pipeline(&["query", "-p", T, "SELECT service_name, n FROM per_service ORDER BY service_name"])
        .ok()
        .stdout_has("| frontend     |")
        .stdout_has("| recommender  |");
    p.pipeline(&["query", "-p", T, "SELECT count(*) AS bad FROM ingest_quarantine"]).ok().stdout_has("| 0   |");
    p.pipeline(&["query", "-p", T, "SELECT lag(n) OVER (w ORDER BY n) FROM per_service WINDOW w AS (PARTITION BY service_name)"])
        .code(1)
        .stderr_has("extends the named window `w`");
    p.pipeline(&["export", "per_service", "out/per_service.csv", "-p", T]).ok().stdout_has("wrote 3 rows");
    let csv = p.read("out/per_service.csv");
    assert!(csv.starts_with("service_name,n,max_replicas\n"), "{csv}");
    assert_eq!(csv.lines().count(), 4);
    p.pipeline(&["export", "ingest", "out/ingest.parquet", "-p", T]).ok();
    p.pipeline(&["export", "ingest", "out/quarantine.parquet", "-p", T, "--table", "quarantine"]).ok().stdout_has("wrote 0 rows");
    assert!(p.read("out/per_service.csv").contains("order"));
    p.pipeline(&["export", "ingest", "out/ingest.txt", "-p", T]).code(1).stderr_has(".parquet or .csv");
    p.pipeline(&["dag", T]).ok().stdout_has("  per_service").stdout_has("← per_service");
    p.pipeline(&["dag", T, "--format", "dot"]).ok().stdout_has("per_service -> busiest;");
    p.pipeline(&["dag", T, "--format", "mermaid"]).ok().stdout_has("ingest --> hourly");
}

#[test]
fn a_failing_stage_stops_its_dependants_and_keeps_siblings() {
    let p = project();
    p.write("sql/per_service.sql", "SELECT no_such_column FROM ingest");
    let run = p.pipeline(&["run", T]).code(1).stderr_has("stage `per_service` failed").stderr_has("no_such_column");
    assert_eq!(run.stage_status("per_service"), "FAILED");
    assert_eq!(run.stage_status("busiest"), "skipped");
    assert_eq!(run.stage_status("hourly"), "ran");
    assert!(!p.path().join("artifacts/runs/latest").exists(), "a failed run is not `latest`");
    // The finished sibling is reused once the failure is fixed.
    p.write("sql/per_service.sql", "SELECT service_name, count(*) AS n FROM ingest GROUP BY service_name");
    let run = p.pipeline(&["run", T]).ok();
    assert_eq!(run.stage_status("hourly"), "cached");
    assert_eq!(run.stage_status("ingest"), "cached");
    // No half-built entries are left behind.
    let tmp = p.path().join("artifacts/cache/tmp");
    assert_eq!(std::fs::read_dir(tmp).unwrap().count(), 0);
}

/// Each broken pipeline file: exit 2, one message with file:line, stage and field, and nothing run.
#[test]
fn invalid_pipelines_are_rejected_before_anything_runs() {
    let p = project();
    let cases: &[(&str, &str, &str)] = &[
        ("syntax", "stages:\n  ingest:\n    op: ingest\n    source: [data\n", "bad.yaml:4"),
        (
            "unknown op",
            "stages:\n  ingest:\n    op: ingest\n    source: data/metrics\n  x:\n    op: transmogrify\n",
            "bad.yaml:6:9: stage `x`, field `op`: unknown op `transmogrify` (known ops: ingest, sql, split, train",
        ),
        (
            "unknown dep",
            "stages:\n  x:\n    op: sql\n    deps: [ingset]\n    sql: sql/busiest.sql\n",
            "bad.yaml:4:11: stage `x`, field `deps`: unknown stage `ingset`",
        ),
        (
            "cycle",
            "stages:\n  a:\n    op: sql\n    deps: [b]\n    sql: sql/busiest.sql\n  b:\n    op: sql\n    deps: [a]\n    sql: sql/busiest.sql\n",
            "dependency cycle",
        ),
        (
            "wrong type",
            "stages:\n  ingest:\n    op: ingest\n    source: data/metrics\n    max_bad_fraction: lots\n",
            "bad.yaml:5:23: stage `ingest`, field `max_bad_fraction`: invalid type: string \"lots\", expected f64",
        ),
        (
            "unknown field",
            "stages:\n  ingest:\n    op: ingest\n    source: data/metrics\n    sauce: x\n",
            "bad.yaml:5:12: stage `ingest`, field `sauce`: unknown field `sauce`",
        ),
        (
            "missing file",
            "stages:\n  ingest:\n    op: ingest\n    source: data/metrics\n  x:\n    op: sql\n    deps: [ingest]\n    sql: sql/nope.sql\n",
            "bad.yaml:8:10: stage `x`, field `sql`: file",
        ),
        ("bad date", "stages:\n  ingest:\n    op: ingest\n    source: data/metrics\n    date: October\n", "field `date`: `October` is not a month"),
        (
            "window extended in place",
            "stages:\n  ingest:\n    op: ingest\n    source: data/metrics\n  x:\n    op: sql\n    deps: [ingest]\n    sql: sql/extended.sql\n",
            "bad.yaml:8:10: stage `x`, field `sql`: sql/extended.sql: line 2: `OVER (w ROWS ...)` extends the named window `w`",
        ),
    ];
    // DataFusion would run this over the whole table, without the window's PARTITION BY.
    p.write("sql/extended.sql", "SELECT service_name,\n  max(cpu_usage_percent) OVER (w ROWS BETWEEN 2 PRECEDING AND CURRENT ROW)\nFROM ingest WINDOW w AS (PARTITION BY service_name ORDER BY timestamp)");
    for (what, yaml, expected) in cases {
        p.write("pipelines/bad.yaml", yaml);
        let run = p.pipeline(&["run", "pipelines/bad.yaml"]).code(2);
        let err = run.stderr();
        assert!(err.contains(expected), "{what}: expected {expected:?} in:\n{err}");
        assert_eq!(err.trim().lines().count(), 1, "{what}: one message, got:\n{err}");
    }
    assert!(!p.path().join("artifacts").exists(), "nothing may run for an invalid pipeline");
    p.pipeline(&["run", T, "--set", "dat=2024-10"]).code(2).stderr_has("no param `dat`");
}

#[test]
fn help_is_written_for_people() {
    let p = Project::empty();
    p.pipeline(&["--help"]).ok().stdout_has("Exit codes").stdout_has("simulate");
    p.pipeline(&["run", "--help"]).ok().stdout_has("--set <NAME=VALUE>").stdout_has("Rebuild this stage and everything downstream");
}

#[test]
fn stages_that_would_pass_memory_together_run_one_after_the_other() {
    let yaml = "stages:\n  ingest: {op: ingest, source: metrics}\n  by_time: {op: split, deps: [ingest], method: temporal, test_fraction: 0.2}\n  at_random: {op: split, deps: [ingest], method: shuffled, test_fraction: 0.2, seed: 1}\n";
    let p = Project::empty().file("pipelines/s.yaml", yaml);
    p.simulate(&["--days", "1", "--services", "a,b", "--out", "metrics"]);
    p.pipeline(&["run", "pipelines/s.yaml", "--until", "ingest"]).ok();
    // Each split holds at least 64 MiB: two of them do not fit in 100 MiB, so one waits.
    let run = p.pipeline(&["run", "pipelines/s.yaml", "--memory", "100MiB", "--jobs", "2"]).ok().stderr_has("waiting for memory");
    assert_eq!((run.stage_status("by_time").as_str(), run.stage_status("at_random").as_str()), ("ran", "ran"));
    // With room for both, nobody waits.
    let run = p.pipeline(&["run", "pipelines/s.yaml", "--memory", "1GiB", "--jobs", "2", "--force"]).ok();
    assert!(!run.stderr().contains("waiting for memory"), "{}", run.stderr());
}

#[test]
fn a_sort_larger_than_memory_spills_and_a_query_that_cannot_says_so() {
    // ~215k rows (~40 MB as Arrow): more than the 24 MiB the sort may hold.
    let p = Project::empty()
        .file("pipelines/s.yaml", "stages:\n  ingest: {op: ingest, source: metrics}\n  sorted: {op: sql, deps: [ingest], sql: sql/sorted.sql}\n")
        .file("sql/sorted.sql", "SELECT * FROM ingest ORDER BY cpu_usage_percent DESC, service_name, timestamp");
    p.simulate(&["--days", "14", "--services", "a,b,c,d,e,f,g,h", "--out", "metrics"]);
    p.pipeline(&["run", "pipelines/s.yaml", "--until", "ingest"]).ok();
    // One job: the SQL stage's pool is the whole budget (with more, each job slot gets a part).
    p.pipeline(&["run", "pipelines/s.yaml", "--memory", "24MiB", "--jobs", "1"]).ok();
    let t = common::read_parquet(&p.entry_dir("sorted", &["-p", "pipelines/s.yaml"]).join("output.parquet"));
    assert!(t.num_rows() > 200_000, "{}", t.num_rows());
    let cpu = common::f64_column(&t, "cpu_usage_percent");
    assert!(cpu.windows(2).all(|w| w[0] >= w[1]), "sorted through the spill");
    let spill = p.path().join("artifacts/spill");
    assert!(
        spill.is_dir() && std::fs::read_dir(&spill).unwrap().flatten().all(|e| e.path().is_dir() && std::fs::read_dir(e.path()).unwrap().next().is_none()),
        "spill files are removed"
    );
    // Less than a sort needs to merge: a clear failure, nothing cached.
    p.pipeline(&["run", "pipelines/s.yaml", "--memory", "1MiB", "--force", "--only", "sorted"])
        .code(1)
        .stderr_has("more memory than its share of run --memory allows (1.0 MiB")
        .stderr_has("raise --memory");
}
