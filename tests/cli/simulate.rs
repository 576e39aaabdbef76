//! `pipeline simulate`: reproducible, realistic enough to train on, and the source of the
//! bundled week.

use crate::common;
use common::{Project, repo};

use std::collections::BTreeMap;
use std::path::Path;

fn files(dir: &Path) -> BTreeMap<String, Vec<u8>> {
    let mut out = BTreeMap::new();
    let mut todo = vec![dir.to_path_buf()];
    while let Some(d) = todo.pop() {
        for e in std::fs::read_dir(&d).unwrap() {
            let e = e.unwrap();
            if e.file_type().unwrap().is_dir() {
                todo.push(e.path());
            } else if e.file_name().to_string_lossy().starts_with("metrics_") {
                let rel = e.path().strip_prefix(dir).unwrap().to_string_lossy().into_owned();
                out.insert(rel, std::fs::read(e.path()).unwrap());
            }
        }
    }
    out
}

#[test]
fn bundled_week_is_reproduced_byte_for_byte() {
    let p = Project::empty();
    // The command in data/metrics/README.md.
    p.simulate(&["--days", "7", "--start", "2025-10-06", "--seed", "42", "--layout", "s3", "--gzip", "--out", "week"]);
    let made = files(&p.path().join("week"));
    let bundled = files(&repo().join("data/metrics"));
    assert_eq!(made.keys().collect::<Vec<_>>(), bundled.keys().collect::<Vec<_>>());
    for (name, bytes) in &made {
        assert!(bytes == &bundled[name], "{name} differs from the bundled file");
    }
}

#[test]
fn seeds_decide_the_bytes() {
    let p = Project::empty();
    p.simulate(&["--days", "1", "--seed", "7", "--layout", "flat", "--out", "a"]);
    p.simulate(&["--days", "1", "--seed", "7", "--layout", "flat", "--out", "b"]);
    p.simulate(&["--days", "1", "--seed", "8", "--layout", "flat", "--out", "c"]);
    let a = p.read("a/metrics_20251006.csv");
    assert_eq!(a, p.read("b/metrics_20251006.csv"));
    assert_ne!(a, p.read("c/metrics_20251006.csv"));
}

#[test]
fn a_missing_trace_says_where_it_was_looked_for() {
    let p = Project::empty();
    // The default trace is a path in the project folder; this folder has none.
    p.pipeline(&["simulate", "--days", "1", "--out", "d"])
        .code(1)
        .stderr_has("opening trace data/traces/worldcup98/wc98_requests_per_minute.csv.gz")
        .stderr_has("run from the project folder, or pass --trace");
    assert!(!p.path().join("d").exists(), "nothing is written without a trace");
}

#[test]
fn a_load_factor_must_be_positive() {
    let p = Project::empty();
    for bad in ["--load=0", "--load=-1", "--load=NaN"] {
        p.pipeline(&["simulate", "--days", "1", bad, "--out", "d"]).code(1).stderr_has("--load must be a factor above 0");
    }
    assert!(!p.path().join("d").exists(), "nothing is written for a bad factor");
}

#[test]
fn rows_look_like_the_collector_wrote_them() {
    let p = Project::empty();
    p.simulate(&["--days", "1", "--layout", "flat", "--services", "frontend,payments", "--out", "d"]);
    let text = p.read("d/metrics_20251006.csv");
    let mut lines = text.lines();
    assert_eq!(lines.next().unwrap(), common::HEADER);
    let rows: Vec<Vec<&str>> = lines.map(|l| l.split(',').collect()).collect();
    assert!(rows.iter().all(|r| r.len() == 23));
    // Collected from 06:00 to 22:00 every ~30 s, for both services (a new name is simulated too).
    assert_eq!(rows.len(), 2 * 16 * 120);
    assert!(rows[0][0].starts_with("2025-10-06T06:00:0"), "{}", rows[0][0]);
    assert!(rows.last().unwrap()[0].starts_with("2025-10-06T21:59:3"));
    assert!(rows.iter().any(|r| r[1] == "payments"));
    // Jitter: timestamps carry microseconds and are not on a 30 s grid.
    assert!(rows.iter().filter(|r| r[0].contains('.')).count() > rows.len() / 2);
}

/// Over the bundled week every service must span several replica counts and every seed
/// label (up, down, keep) must occur, or the models have nothing to learn.
#[test]
fn a_week_exercises_replicas_and_every_label() {
    let p = Project::empty();
    let out = p.simulate(&["--days", "7", "--out", "w"]).stdout();
    let table: Vec<&str> = out.lines().skip(2).take(7).collect();
    assert_eq!(table.len(), 7, "{out}");
    for line in table {
        let f: Vec<&str> = line.split_whitespace().collect();
        let (lo, hi) = f[2].split_once('–').unwrap();
        let (lo, hi): (u32, u32) = (lo.parse().unwrap(), hi.parse().unwrap());
        assert!(hi - lo >= 3, "{line}: replicas should move");
        for pct in &f[3..6] {
            let v: f64 = pct.trim_end_matches('%').parse().unwrap();
            assert!(v > 0.0, "{line}: every label must occur");
        }
    }
}
