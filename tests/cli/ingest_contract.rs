//! The data contract at ingest, one kind of messy file at a time, through the real binary:
//! what was kept, what was quarantined (file, line, reason), and what was said.

use crate::common;
use common::{HEADER, Project, row};

const PIPELINE: &str = "
params:
  max_bad: 0.5
stages:
  ingest:
    op: ingest
    source: messy
    max_bad_fraction: ${max_bad}
";

fn messy_project() -> Project {
    let good = |ts: &str, svc: &str| row(ts, svc, 42.0);
    Project::empty()
        .file("pipelines/p.yaml", PIPELINE)
        // 3 good rows, then a line cut off by a killed writer (no trailing newline).
        .file(
            "messy/metrics_20251006.csv",
            &format!(
                "{HEADER}\n{}\n{}\n{}\n{}",
                good("2025-10-06T06:00:00.937643", "order"),
                good("2025-10-06T06:00:30.1", "order"),
                good("2025-10-06T06:01:00", "order"),
                &good("2025-10-06T06:01:30", "order")[..60],
            ),
        )
        // A double write (identical) and a conflicting one, for rows of the file above.
        .file(
            "messy/metrics_20251007.csv",
            &format!(
                "{HEADER}\n{}\n{}\n{}\n",
                good("2025-10-06T06:00:00.937643", "order"),
                row("2025-10-06T06:01:00", "order", 99.0),
                good("2025-10-07T06:00:00", "order"),
            ),
        )
        // Bad values, out-of-order rows, zoned timestamps, a new service.
        .file(
            "messy/metrics_20251008.csv",
            &format!(
                "{HEADER}\n{}\n{}\n{}\n{}\n{}\n{}\n{}\n",
                good("2025-10-08T06:01:00", "order"),
                good("2025-10-08T06:00:00", "order"),
                row("2025-10-08T06:02:00", "order", f64::NAN),
                good("2025-10-08T06:03:00", "order").replacen(",42,", ",,", 1),
                good("2025-10-08T06:04:00", "order").replacen(",42,", ",high,", 1),
                good("2025-10-08T08:05:00+02:00", "order"),
                good("2025-10-08T06:00:00", "payments"),
            ),
        )
        // An extra column.
        .file("messy/metrics_20251009.csv", &format!("{HEADER},gpu_usage\n{},7\n", good("2025-10-09T06:00:00", "order")))
        .file("messy/metrics_20251010.csv", "")
        .file("messy/metrics_20251011.csv", &format!("{HEADER}\n"))
}

#[test]
fn messy_files_keep_good_rows_and_quarantine_bad_ones() {
    let p = messy_project();
    let run = p.pipeline(&["run", "pipelines/p.yaml"]).ok();
    let run = run
        .stdout_has("6 rows quarantined (4 invalid, 2 duplicates); see `pipeline inspect ingest --table quarantine`")
        .stdout_has("1 timestamps carried a zone and were converted to UTC")
        .stdout_has("rows were out of order in their file and have been sorted")
        .stdout_has("new service: payments")
        .stdout_has("messy/metrics_20251009.csv: ignored column not in the schema: gpu_usage")
        .stdout_has("messy/metrics_20251010.csv: empty file, nothing to read")
        .stdout_has("messy/metrics_20251011.csv: header only, no rows");
    // 3 + 1 (Oct 7) + 4 (Oct 8: two good order rows, the zoned one, payments) + 1 (Oct 9).
    assert!(run.stdout().lines().any(|l| l.starts_with("ingest") && l.contains(" 9 ")), "{}", run.stdout());

    let q = p.pipeline(&["query", "-p", "pipelines/p.yaml", "SELECT file, line, reason FROM ingest_quarantine ORDER BY file, line"]).ok();
    let table = q.stdout();
    for expected in [
        "| messy/metrics_20251006.csv | 5    | torn last line: the file ends mid-row",
        "| messy/metrics_20251007.csv | 2    | duplicate of messy/metrics_20251006.csv:2",
        "| messy/metrics_20251007.csv | 3    | same service and timestamp as messy/metrics_20251006.csv:4 with different values; kept the first",
        "| messy/metrics_20251008.csv | 4    | column `cpu_usage_percent`: NaN",
        "| messy/metrics_20251008.csv | 5    | column `cpu_usage_percent`: empty",
        "| messy/metrics_20251008.csv | 6    | column `cpu_usage_percent`: `high` is not a number",
    ] {
        assert!(table.contains(expected), "quarantine lacks {expected:?}:\n{table}");
    }
    // The kept rows are ordered per service by time, the zoned one at 06:05 UTC.
    let kept = p
        .pipeline(&[
            "query",
            "-p",
            "pipelines/p.yaml",
            "SELECT service_name, CAST(timestamp AS VARCHAR) AS ts, cpu_usage_percent FROM ingest WHERE timestamp >= '2025-10-08' AND timestamp < '2025-10-09'",
        ])
        .ok()
        .stdout();
    let order: Vec<&str> = kept.lines().filter(|l| l.contains("| order")).collect();
    assert_eq!(order.len(), 3, "{kept}");
    assert!(order[0].contains("06:00:00") && order[1].contains("06:01:00") && order[2].contains("06:05:00"), "{kept}");
}

#[test]
fn a_file_without_a_required_column_fails_the_stage_by_name() {
    let p = messy_project().file("messy/metrics_20251012.csv", &format!("{}\n", HEADER.replace(",queue_length", "")));
    p.pipeline(&["run", "pipelines/p.yaml"]).code(1).stderr_has("stage `ingest` failed: messy/metrics_20251012.csv:1: required column missing: queue_length");
}

#[test]
fn too_many_bad_rows_fail_the_stage_with_examples() {
    let p = messy_project();
    p.pipeline(&["run", "pipelines/p.yaml", "--set", "max_bad=0.1"])
        .code(1)
        .stderr_has("4 of 15 rows (26.7%) break the data contract, over max_bad_fraction = 0.1")
        .stderr_has("messy/metrics_20251006.csv:5: torn last line");
}

#[test]
fn a_headerless_file_is_unusable() {
    let p = Project::empty().file("pipelines/p.yaml", PIPELINE).file("messy/metrics_20251006.csv", &format!("{}\n", row("2025-10-06T06:00:00", "order", 1.0)));
    p.pipeline(&["run", "pipelines/p.yaml"]).code(1).stderr_has("no header row");
}

#[test]
fn no_matching_files_is_a_clear_error() {
    let p = messy_project();
    let yaml = PIPELINE.replace("    source: messy\n", "    source: messy\n    date: 2024-01\n");
    p.write("pipelines/p.yaml", &yaml);
    p.pipeline(&["run", "pipelines/p.yaml"]).code(1).stderr_has("no metrics files (*.csv, *.csv.gz) in messy for date 2024-01");
}

#[test]
fn a_file_in_other_units_is_a_contract_violation_naming_the_column() {
    // What the old Python collector wrote: memory in bytes, the error rate in percent.
    let old_units = |ts: &str| row(ts, "order", 42.0).replace(",256,512,", ",268435456,536870912,").replace(",0.01,", ",1.5,");
    let p = Project::empty().file("pipelines/p.yaml", PIPELINE).file(
        "messy/metrics_20251006.csv",
        &format!("{HEADER}\n{}\n{}\n{}\n", old_units("2025-10-06T06:00:00"), old_units("2025-10-06T06:00:30"), row("2025-10-06T06:01:00", "order", 42.0)),
    );
    p.pipeline(&["run", "pipelines/p.yaml"])
        .code(1)
        .stderr_has("2 of 3 rows (66.7%) break the data contract")
        .stderr_has("column `ram_request`: 268435456 is not MiB per pod (it looks like bytes)")
        .stderr_has("column `error_rate`: 1.5 is not a fraction 0–1 (it looks like a percentage)");
}

#[test]
fn a_table_past_its_memory_is_merged_from_sorted_runs_on_disk_to_the_same_table() {
    // Two simulated days, with one day's first rows written again in another file: identical
    // ones, and one with other values.
    let p = Project::new();
    let day = std::fs::read_dir(p.path().join("data/metrics")).unwrap();
    let mut files: Vec<std::path::PathBuf> = walk(day);
    files.sort();
    let first = std::fs::read_to_string(&files[0]).unwrap_or_else(|_| {
        let mut text = String::new();
        std::io::Read::read_to_string(&mut flate2::read::GzDecoder::new(std::fs::File::open(&files[0]).unwrap()), &mut text).unwrap();
        text
    });
    let mut again: Vec<String> = first.lines().take(40).map(String::from).collect();
    let (rest, flag) = again[39].rsplit_once(',').unwrap();
    again[39] = format!("{rest},{}", if flag == "0" { 1 } else { 0 });
    p.write("data/metrics/2099/01/rewritten.csv", &(again.join("\n") + "\n"));

    let read = |name: &str| common::read_parquet(&p.entry_dir("ingest", &[]).join(name));
    // 1 MiB for ingest: runs of at least 4,096 rows, so the ~11,500 rows are merged from two or
    // three (a run closes at the first piece past 4,096 rows, and pieces arrive in any order).
    p.pipeline(&["run", "--until", "ingest", "--memory", "1MiB"]).ok().stdout_has("39 duplicates");
    let spilled = common::json(&p.entry_dir("ingest", &[]).join("meta.json"));
    let (table, quarantine) = (read("output.parquet"), read("quarantine.parquet"));
    p.pipeline(&["run", "--until", "ingest", "--force"]).ok();
    let in_memory = common::json(&p.entry_dir("ingest", &[]).join("meta.json"));
    let runs = spilled["summary"]["sorted_runs_on_disk"].as_u64().unwrap();
    assert!((2..=3).contains(&runs), "{spilled}");
    assert!(in_memory.to_string().contains("\"sorted_runs_on_disk\":0"), "{in_memory}");
    assert_eq!(table, read("output.parquet"));
    assert_eq!(quarantine, read("quarantine.parquet"));
    let reasons = common::str_column(&quarantine, "reason");
    assert_eq!(reasons.iter().filter(|r| r.starts_with("duplicate of data/metrics/2025")).count(), 38, "{reasons:?}");
    assert_eq!(reasons.iter().filter(|r| r.contains("with different values; kept the first")).count(), 1, "{reasons:?}");
    assert!(!p.path().join("artifacts/spill").read_dir().unwrap().any(|_| true), "the runs are removed");
}

fn walk(dir: std::fs::ReadDir) -> Vec<std::path::PathBuf> {
    dir.flatten()
        .flat_map(|e| if e.path().is_dir() { walk(std::fs::read_dir(e.path()).unwrap()) } else { vec![e.path()] })
        .filter(|p| p.to_string_lossy().contains(".csv"))
        .collect()
}
