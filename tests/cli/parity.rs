//! The SQL features and labels against the pandas and Polars references (tests/reference/):
//! every feature column within 1e-9, every label exactly, on the bundled week and on a small
//! sample built to hit the edge cases.

use crate::common;
use common::{HEADER, Project, copy_dir, repo, tool};

use std::process::Command;

/// Run the default pipeline's labels on `metrics` (a folder in the project) with `rule`, run
/// each reference (pandas, Polars) on the same files, and compare.
fn assert_parity(p: &Project, metrics: &str, rule: &str) {
    let set_uri = format!("metrics_uri={metrics}");
    let set_rule = format!("label_rule={rule}");
    p.pipeline(&["run", "--until", "labels", "--set", &set_uri, "--set", &set_rule]).ok();
    p.pipeline(&["export", "labels", "ours.parquet", "--set", &set_uri, "--set", &set_rule]).ok();
    let py = tool("python3");
    let reference = repo().join("tests/reference");
    // The pandas reference builds the one-hot service columns the pipeline leaves to its models.
    for (script, one_hot) in [("features.py", Some("service_")), ("features_polars.py", None)] {
        let status = Command::new(&py)
            .current_dir(p.path())
            .args([reference.join(script).to_str().unwrap(), metrics, "ref.parquet", "--label-rule", rule])
            .status()
            .expect("python3 with pandas and Polars (scripts/setup.sh installs them)");
        assert!(status.success(), "the reference {script} failed on {metrics}");
        let mut compare = Command::new(&py);
        compare.current_dir(p.path()).args([reference.join("compare.py").to_str().unwrap(), "ours.parquet", "ref.parquet", "--tolerance", "1e-9"]);
        if let Some(prefix) = one_hot {
            compare.args(["--one-hot-in-model", prefix]);
        }
        let out = compare.output().unwrap();
        assert!(
            out.status.success(),
            "{metrics} with label_rule={rule}: SQL and {script} disagree:\n{}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
    }
}

fn project_with_bundled_week() -> Project {
    let p = Project::empty();
    copy_dir(&repo().join("pipelines"), &p.path().join("pipelines"));
    copy_dir(&repo().join("sql"), &p.path().join("sql"));
    copy_dir(&repo().join("data/metrics"), &p.path().join("data/metrics"));
    p
}

#[test]
fn bundled_week_matches_reference_for_both_label_rules() {
    let p = project_with_bundled_week();
    assert_parity(&p, "data/metrics", "seed");
    assert_parity(&p, "data/metrics", "hpa");
}

/// A file built for the corners: a service with one row, one shorter than a window, ties,
/// zero limits and zero replicas (divisors), thresholds crossed both ways, and a service
/// whose rows straddle midnight.
fn edge_cases() -> String {
    let mut rows = vec![HEADER.to_string()];
    let mut push = |ts: String, svc: &str, cpu: f64, ram: f64, rt: f64, reps: i64, cpu_limit: f64, ram_limit: f64| {
        rows.push(format!(
            "{ts},{svc},{cpu},{cpu},0.5,{ram},{ram},-0.25,{rps},{rps},{rt},{reps},0,1,0.5,{cpu_limit},256,{ram_limit},{q},0.06,1,1,0",
            rps = cpu * 2.0,
            q = reps * 2,
        ));
    };
    push("2025-10-06T12:00:00".into(), "solo", 80.0, 80.0, 600.0, 3, 1.0, 512.0);
    for i in 0..5 {
        push(format!("2025-10-06T12:00:{:02}.5", i * 10), "short", 20.0 + i as f64, 20.0, 100.0, 2, 0.0, 0.0);
    }
    // Ties: the same values repeated, then a jump; zero replicas in the divisors.
    for i in 0..30 {
        let cpu = if i < 12 {
            50.0
        } else if i < 20 {
            85.0
        } else {
            10.0
        };
        let ram = if i < 20 { 40.0 } else { 20.0 };
        let rt = if i % 3 == 0 { 450.0 } else { 450.0 + (i % 7) as f64 * 30.0 };
        let reps = if i == 5 { 0 } else { 4 };
        push(format!("2025-10-06T13:{:02}:{:02}.123456", i / 2, (i % 2) * 30), "ties", cpu, ram, rt, reps, 1.0, 512.0);
    }
    // Across midnight and the night gap, out of order in the file.
    for i in (0..14).rev() {
        let (day, hour) = if i < 7 { (6, 21) } else { (7, 6) };
        push(format!("2025-10-{day:02}T{hour:02}:{:02}:00", 50 + i % 7), "night", 25.0 + (i * 7 % 11) as f64, 30.0, 520.0 - i as f64, 10, 2.0, 1024.0);
    }
    // Seasonal: the same minutes a day and a week apart, across 5-minute slot edges, with slots
    // missing on one day but not the other (lags and peaks by slot number, not by row).
    for (day, scale) in [(6, 1.0), (7, 2.0), (8, 1.5), (13, 3.0)] {
        for (k, (minute, second)) in [(4, 59.9), (5, 0.0), (9, 30.0), (10, 0.0), (14, 59.0), (20, 0.0)].into_iter().enumerate() {
            if day == 8 && k == 2 {
                continue;
            }
            push(format!("2025-10-{day:02}T12:{minute:02}:{second:06.3}"), "daily", scale * (20.0 + 7.0 * k as f64), 30.0, 100.0, 2, 1.0, 512.0);
        }
    }
    rows.join("\n") + "\n"
}

#[test]
fn edge_cases_match_reference() {
    let p = project_with_bundled_week().file("edge/metrics_20251006.csv", &edge_cases());
    assert_parity(&p, "edge", "seed");
    assert_parity(&p, "edge", "hpa");
}

/// One service's rows as a collector in Europe/Paris writes them across the night of
/// 2025-10-26, when 03:00 CEST becomes 02:00 CET: the hour from 02:00 comes twice, with its offset.
fn dst_fall_back() -> String {
    use chrono::TimeZone;
    let paris: chrono_tz::Tz = "Europe/Paris".parse().unwrap();
    let start = chrono::Utc.with_ymd_and_hms(2025, 10, 25, 22, 0, 0).unwrap();
    let mut rows = vec![HEADER.to_string()];
    for i in 0..600 {
        let t = (start + chrono::Duration::seconds(30 * i)).with_timezone(&paris);
        let cpu = 40.0 + (i % 17) as f64;
        rows.push(format!(
            "{},web,{cpu},{cpu},0.5,40,40,0,{rps},{rps},{rt},3,0,1,0.5,1,256,512,2,0.01,0,0,0",
            t.format("%Y-%m-%dT%H:%M:%S%:z"),
            rps = cpu * 2.0,
            rt = 100.0 + (i % 5) as f64
        ));
    }
    rows.join("\n") + "\n"
}

#[test]
fn a_dst_fall_back_keeps_every_row_and_the_features_agree() {
    let text = dst_fall_back();
    let p = project_with_bundled_week().file("dst/2025/10/metrics_20251026.csv", &text);
    assert_parity(&p, "dst", "seed");
    // Not one row of the repeated hour is taken for a duplicate.
    let out = p.pipeline(&["inspect", "ingest", "--set", "metrics_uri=dst"]).ok().stdout();
    assert!(out.contains("rows:     600"), "{out}");
    p.pipeline(&["export", "ingest", "ingest.parquet", "--set", "metrics_uri=dst"]).ok();
    let ingest = common::read_parquet(&p.path().join("ingest.parquet"));
    // The server reads each line to the same instant as ingest (UTC), so its hour features, computed
    // from that instant as the SQL's are, agree too.
    let mut served: Vec<i64> = text
        .lines()
        .skip(1)
        .map(|l| {
            let mut v = serde_json::Map::new();
            for (name, field) in HEADER.split(',').zip(l.split(',')) {
                v.insert(name.into(), if name == "timestamp" || name == "service_name" { field.into() } else { field.parse::<f64>().unwrap().into() });
            }
            autoscale::serving::features::RawRow::from_json(&serde_json::Value::Object(v)).unwrap().timestamp
        })
        .collect();
    served.sort();
    assert_eq!(served, common::i64_column(&ingest, "timestamp"));
    assert!(served.windows(2).all(|w| w[1] - w[0] == 30_000_000), "30 s apart through the fall-back");
}

#[test]
fn features_have_the_spec_columns() {
    let p = project_with_bundled_week();
    p.pipeline(&["run", "--until", "features"]).ok();
    let out = p.pipeline(&["inspect", "features", "--schema"]).ok().stdout();
    for col in [
        "cpu_usage_percent",
        "node_memory_pressure_flag",
        "hour_sin",
        "hour_cos",
        "cpu_utilization_ratio",
        "ram_utilization_ratio",
        "cpu_change_rate",
        "ram_change_rate",
        "request_change_rate",
        "cpu_rolling_std",
        "ram_rolling_std",
        "request_rolling_max",
        "response_time_rolling_p95",
        "cpu_per_replica",
        "ram_per_replica",
        "requests_per_replica",
        "system_pressure",
        "request_rate_yesterday",
        "request_peak_yesterday",
        "request_rate_last_week",
        "request_peak_last_week",
        "request_rate_holt_winters",
    ] {
        assert!(out.contains(&format!("  {col} ")), "features lacks {col}:\n{out}");
    }
    // 3 keys + 18 core + 15 engineered + 5 seasonal; the 7 services' one-hot columns are the
    // models' input layer's, so the table does not widen with the services.
    assert!(out.contains("schema:   41 columns") && !out.contains("service_authen"), "{out}");
    p.pipeline(&["run", "--set", "label_rule=hap"]).code(2).stderr_has("`label_rule` is \"hap\"; it must be one of \"seed\", \"hpa\"");
}
