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
fn warm_up_days_are_lived_through_but_never_written() {
    let p = Project::empty();
    p.simulate(&["--days", "1", "--warm-up-days", "2", "--start", "2025-10-08", "--layout", "flat", "--out", "warm"]);
    p.simulate(&["--days", "1", "--start", "2025-10-08", "--layout", "flat", "--out", "cold"]);
    let (warm, cold) = (files(&p.path().join("warm")), files(&p.path().join("cold")));
    assert_eq!(warm.keys().collect::<Vec<_>>(), ["metrics_20251008.csv"], "only the judged day");
    let lines = |b: &[u8]| String::from_utf8_lossy(b).lines().map(str::to_string).collect::<Vec<_>>();
    let (w, c) = (lines(&warm["metrics_20251008.csv"]), lines(&cold["metrics_20251008.csv"]));
    assert_eq!(w.len(), c.len(), "the same rows of the judged day");
    assert!(w[1..].iter().all(|l| l.starts_with("2025-10-08T")));
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

/// The day's request rates and replicas per row of one service, from a flat-layout day file.
fn column(p: &Project, file: &str, service: &str, at: usize) -> Vec<f64> {
    p.read(file).lines().skip(1).map(|l| l.split(',').collect::<Vec<_>>()).filter(|r| r[1] == service).map(|r| r[at].parse().unwrap()).collect()
}

#[test]
fn a_world_changes_the_cluster_and_names_what_it_cannot_be() {
    let p = Project::empty();
    let out = p.pipeline(&["simulate", "--list-worlds"]).ok().stdout();
    assert_eq!(out.lines().count(), 1 + 15, "{out}");
    assert!(out.lines().any(|l| l.split_whitespace().take(2).eq(["jvm-knee", "180s"])), "{out}");
    for name in ["default", "jvm-knee", "flash-crowds", "tight-max", "hostile", "heavier-release"] {
        assert!(out.lines().any(|l| l.starts_with(name)), "{name} in {out}");
    }
    let day =
        |world: &str, out: &str| p.simulate(&["--days", "1", "--seed", "7", "--layout", "flat", "--services", "frontend", "--world", world, "--out", out]);
    day("default", "default");
    p.simulate(&["--days", "1", "--seed", "7", "--layout", "flat", "--services", "frontend", "--out", "plain"]);
    assert_eq!(p.read("default/metrics_20251006.csv"), p.read("plain/metrics_20251006.csv"), "`default` is the world without --world");
    // A flash crowd: for a while every row asks more, up to 2-5 times the default's load at that
    // time (the trace part of it: a floor of 4 % of the peak stays).
    day("flash-crowds", "crowd");
    let (calm, crowd) = (column(&p, "default/metrics_20251006.csv", "frontend", 8), column(&p, "crowd/metrics_20251006.csv", "frontend", 8));
    let ratios: Vec<f64> = calm.iter().zip(&crowd).map(|(a, b)| b / a).collect();
    let peak = ratios.iter().copied().fold(0.0, f64::max);
    assert!((1.3..=5.1).contains(&peak), "the crowd's peak: ×{peak}");
    let crowded = ratios.iter().filter(|r| (**r - 1.0).abs() > 1e-6).count();
    assert!((20..=2 * 60 + 2).contains(&crowded), "20-60 minutes of 30 s rows: {crowded}");
    // Tight maxReplicas: frontend's 10 become 8, the cap a day at eight times the load reaches.
    let busy = |world: &str, out: &str| {
        p.simulate(&["--days", "1", "--seed", "7", "--layout", "flat", "--services", "frontend", "--load", "8", "--world", world, "--out", out]);
        column(&p, &format!("{out}/metrics_20251006.csv"), "frontend", 11).into_iter().fold(0.0, f64::max)
    };
    assert_eq!((busy("default", "busy"), busy("tight-max", "tight")), (10.0, 8.0));
    // Settings are named; a wrong one is a usage error naming its field, and writes nothing.
    p.pipeline(&["simulate", "--days", "1", "--world", "mars", "--out", "x"]).code(2).stderr_has("jvm-knee");
    p.pipeline(&["simulate", "--days", "1", "--world-set", "knee=2", "--out", "x"]).code(2).stderr_has("`knee` must be within 0.05..1");
    p.pipeline(&["simulate", "--days", "1", "--world-set", "knees=0.5", "--out", "x"]).code(2).stderr_has("`knees` is not a setting of a world");
    p.pipeline(&["simulate", "--days", "1", "--world-set", "flash_crowd_factor=[5,2]", "--out", "x"]).code(2).stderr_has("flash_crowd_factor");
    p.pipeline(&["simulate", "--days", "1", "--hpa", "pod_startup_seconds=90", "--out", "x"]).code(2).stderr_has("--pod-startup-seconds");
    assert!(!p.path().join("x").exists());
}
