//! `pipeline collect` and `pipeline serve --prometheus` against a real Prometheus that scrapes
//! an exporter with known series (see common::prometheus).

use std::collections::HashMap;
use std::io::{BufRead, BufReader};
use std::process::Stdio;
use std::time::{Duration, Instant};

// The queried columns, in collect.yaml's order: the order of `EXPECTED`'s values.
use autoscale::collect::config::QUERIED;

use crate::common::prometheus::{self, EXPECTED, Exporter, Prometheus, get};
use crate::common::{HEADER, Project, command, start_server};

/// Rates of a live query move with where the scrapes fall in the window: Prometheus
/// extrapolates to the window's edges only up to half a scrape interval past a gap, so a window
/// that begins or ends in an outage reads low, never high, for these linear counters. Ratios of
/// rates (P95, error rate) and gauges do not move.
const RATES: [&str; 3] = ["cpu_usage_percent", "request_count_per_second", "queue_length"];
/// Flags that compare a rate with a threshold (node-1 at 95 % of its CPU, over 90 %): a window
/// with an outage may read under the threshold, so there the flag may drop, never rise.
const RATE_FLAGS: [&str; 1] = ["node_cpu_pressure_flag"];

/// How far a rate may be from the exporter's, as fractions of it: (at least, at most).
type RateBounds = (f64, f64);
/// Every scrape of the window there (the first rows, with two minutes of history behind them).
const FULL_WINDOW: RateBounds = (0.98, 1.02);
/// A window that may hold an outage: low by the gap's share of the minute, never high.
const WINDOW_WITH_GAPS: RateBounds = (0.5, 1.02);

fn require_prometheus() {
    assert!(prometheus::installed(), "these tests need a real Prometheus: install the Debian package `prometheus` (.ci/run does)");
}

/// The built-in collect.yaml, for the test cluster's namespace.
fn config() -> String {
    std::fs::read_to_string(crate::common::repo().join("pipelines/collect.yaml")).unwrap().replace("namespace: default", "namespace: shop")
}

fn now() -> i64 {
    std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap().as_secs() as i64
}

/// collect.yaml with one column's query replaced (its `when_missing` kept).
fn with_query(config: &str, column: &str, query: &str) -> String {
    let start = config.find(&format!("\n  {column}:\n")).unwrap_or_else(|| panic!("no column {column}")) + 1;
    let mut end = start;
    let mut kept = String::new();
    for (i, line) in config[start..].split_inclusive('\n').enumerate() {
        if i > 0 && !line.starts_with("    ") {
            break;
        }
        if line.trim_start().starts_with("when_missing:") {
            kept.push_str(line);
        }
        end += line.len();
    }
    format!("{}  {column}:\n    query: '{}'\n{kept}{}", &config[..start], query.replace('\'', "''"), &config[end..])
}

/// A data line as column → field.
fn fields(line: &str) -> HashMap<&'static str, String> {
    let names: Vec<&'static str> = HEADER.split(',').collect();
    let values: Vec<&str> = line.split(',').collect();
    assert_eq!(values.len(), 23, "not a 23-field row: {line}");
    names.into_iter().zip(values).map(|(n, v)| (n, v.to_string())).collect()
}

fn assert_expected(row: &HashMap<&'static str, String>, service: &str, values: &[&str; 14], (low, high): RateBounds) {
    assert_eq!(row["service_name"], service);
    for (col, want) in QUERIED.iter().zip(values) {
        let got = &row[*col];
        if RATES.contains(col) {
            let (g, w): (f64, f64) = (got.parse().unwrap(), want.parse().unwrap());
            assert!(g >= low * w - 1e-9 && g <= high * w + 1e-9, "{service} {col}: {got}, expected {low}..{high} × {want}");
        } else if RATE_FLAGS.contains(col) && low < FULL_WINDOW.0 {
            assert!(got == want || got == "0", "{service} {col}: {got}, expected {want} or 0 (an outage in the window)");
        } else {
            assert_eq!(got, want, "{service} {col}");
        }
    }
}

/// Prometheus with two minutes of the exporter's history (so rates over [1m] have a full
/// window at once), scraping the live exporter.
fn live_cluster(p: &Project) -> (Exporter, Prometheus) {
    let t = now();
    let exporter = Exporter::start();
    prometheus::write_history(p.path(), &prometheus::history(t - 120, t - 2, 1, Some(&exporter.addr)));
    let prom = Prometheus::start(p.path(), Some(&exporter.addr));
    prom.wait_for_scrapes(2);
    (exporter, prom)
}

#[test]
fn collect_once_serve_and_the_live_loop_read_a_real_prometheus() {
    require_prometheus();
    let p = Project::empty().file("collect.yaml", &config());
    let (_exporter, mut prom) = live_cluster(&p);
    let url = prom.url();

    // One row per discovered service (batch is not labelled for autoscaling), in the contract's units.
    let out = p.pipeline(&["collect", "--prometheus", &url, "--config", "collect.yaml", "--once"]).ok().stdout();
    let lines: Vec<&str> = out.lines().collect();
    assert_eq!(lines[0], HEADER);
    assert_eq!(lines.len(), 3, "{out}");
    for (line, (service, values)) in lines[1..].iter().zip(EXPECTED) {
        let row = fields(line);
        assert_expected(&row, service, &values, FULL_WINDOW);
        assert_eq!(row["cpu_usage_percent_last_5_min"], row["cpu_usage_percent"], "one row: its own mean");
        assert_eq!(row["cpu_usage_percent_slope"], "0");
        assert_eq!(row["is_holiday"], "0");
    }
    println!("collect --once:\n{out}");

    // Faults in the queries: nothing, NaN and several series leave the field empty (with a
    // warning naming the column) unless the column says no data means zero; a query
    // Prometheus rejects is a mistake in collect.yaml (exit 2).
    let mut faulty = with_query(&config(), "cpu_limit", "sum(no_such_metric)");
    faulty = with_query(&faulty, "ram_request", "0 * sum(kube_pod_info) / 0");
    faulty = with_query(&faulty, "ram_limit", r#"kube_pod_info{namespace="shop"}"#);
    faulty = with_query(&faulty, "queue_length", "sum(no_such_metric)");
    p.write("faulty.yaml", &faulty);
    let run = p.pipeline(&["collect", "--prometheus", &url, "--config", "faulty.yaml", "--once"]).ok();
    let web = fields(run.stdout().lines().nth(2).unwrap());
    assert_eq!((web["cpu_limit"].as_str(), web["ram_request"].as_str(), web["ram_limit"].as_str()), ("", "", ""));
    assert_eq!(web["queue_length"], "0", "queue_length: no data means zero");
    assert_eq!(web["cpu_request"], "0.5");
    for needle in ["column=\"ram_limit\"", "series where one is needed", "column=\"ram_request\""] {
        assert!(run.stderr().contains(needle), "stderr lacks {needle}:\n{}", run.stderr());
    }
    p.write("broken.yaml", &with_query(&config(), "cpu_limit", "sum(rate(x[1m])"));
    p.pipeline(&["collect", "--prometheus", &url, "--config", "broken.yaml", "--once"])
        .code(2)
        .stderr_has("broken.yaml")
        .stderr_has("Prometheus rejected the query");

    // The server takes the rows itself: /scale answers with nothing posting rows, and falls
    // back once Prometheus is gone longer than --max-decision-age.
    {
        let server = start_server(&p, &["--prometheus", &url, "--collect-config", "collect.yaml", "--every", "0.5", "--max-decision-age", "3"], &[]);
        let scale = |svc: &str| {
            let (code, body) = get(&format!("{}/scale/{svc}", server.base)).unwrap();
            (code, serde_json::from_str::<serde_json::Value>(&body).unwrap())
        };
        let deadline = Instant::now() + Duration::from_secs(20);
        while scale("web").0 != 200 {
            assert!(Instant::now() < deadline, "no decision for web from Prometheus: {:?}", scale("web"));
            std::thread::sleep(Duration::from_millis(200));
        }
        let (_, web) = scale("web");
        assert_eq!(web["currentReplicas"], 2);
        assert!(web["ageSeconds"].as_f64().unwrap() < 3.0, "{web}");
        // api's pod has no limits: its row still decides (the limits' columns hold the requests).
        let (code, api) = scale("api");
        assert_eq!((code, api["currentReplicas"].as_u64()), (200, Some(1)), "{api}");
        assert_eq!(scale("batch").0, 404, "not discovered, not decided");
        prom.stop();
        std::thread::sleep(Duration::from_secs(4));
        let (code, web) = scale("web");
        assert_eq!(code, 503, "{web}");
        assert_eq!(web["desiredReplicas"], 2, "a stale decision falls back to the current replicas");
        assert!(web["error"].as_str().unwrap().contains("rows stopped coming"), "{web}");
        let (_, metrics) = get(&format!("{}/metrics", server.base)).unwrap();
        let failures: f64 = metrics.lines().find_map(|l| l.strip_prefix("autoscaler_prometheus_failures_total ")).unwrap().parse().unwrap();
        assert!(failures >= 1.0, "{metrics}");
    }

    // The live loop: Prometheus killed mid-loop; steps are skipped and counted, never invented,
    // the loop goes on when it is back, and the day file stays valid CSV throughout.
    prom.restart();
    prom.wait_for_scrapes(1);
    let metrics_addr = std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().to_string();
    let mut collector = command()
        .args([
            "collect",
            "--prometheus",
            &url,
            "--config",
            "collect.yaml",
            "--every",
            "0.5s",
            "--flush-every",
            "0.3s",
            "--out",
            "out",
            "--metrics-addr",
            &metrics_addr,
        ])
        .current_dir(p.path())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let rows = || -> Vec<String> {
        let mut all = Vec::new();
        for f in walk(&p.path().join("out")) {
            let text = std::fs::read_to_string(&f).unwrap();
            let mut lines = text.lines();
            assert_eq!(lines.next(), Some(HEADER), "{}", f.display());
            all.extend(lines.map(str::to_string));
        }
        all
    };
    let wait_rows = |n: usize| {
        let deadline = Instant::now() + Duration::from_secs(20);
        while rows().len() < n {
            assert!(Instant::now() < deadline, "the collector wrote {} rows, expected {n}", rows().len());
            std::thread::sleep(Duration::from_millis(100));
        }
    };
    wait_rows(4);
    prom.stop();
    std::thread::sleep(Duration::from_secs(2));
    let during = rows().len();
    prom.restart();
    wait_rows(during + 4);
    // Its own /metrics count the skipped steps (what the dashboard and the alerts read).
    let (code, metrics) = get(&format!("http://{metrics_addr}/metrics")).expect("the collector serves /metrics");
    let value =
        |name: &str| -> f64 { metrics.lines().find_map(|l| l.strip_prefix(&format!("{name} "))).unwrap_or_else(|| panic!("{metrics}")).parse().unwrap() };
    assert_eq!(code, 200);
    assert!(value("autoscaler_collector_skipped_steps_total") >= 1.0, "{metrics}");
    assert!(value("autoscaler_collector_rows_total") >= rows().len() as f64 && value("autoscaler_collector_last_flush_timestamp_seconds") > 1.7e9, "{metrics}");
    unsafe { libc::kill(collector.id() as i32, libc::SIGTERM) };
    let mut stderr = String::new();
    for line in BufReader::new(collector.stderr.take().unwrap()).lines() {
        stderr.push_str(&line.unwrap());
        stderr.push('\n');
    }
    assert!(collector.wait().unwrap().success(), "{stderr}");
    let skipped: u64 = stderr.lines().find_map(|l| l.split("rows; ").nth(1)?.split(' ').next()?.parse().ok()).unwrap_or_else(|| panic!("{stderr}"));
    assert!(skipped >= 1, "{stderr}");
    let all = rows();
    for line in &all {
        let row = fields(line);
        let service = row["service_name"].clone();
        let values = EXPECTED.iter().find(|(s, _)| *s == service).unwrap().1;
        assert_expected(&row, &service, &values, WINDOW_WITH_GAPS);
    }
    assert!(all.len() >= during + 4);
}

/// An output that never answers (S3 away) cannot hold the collector past its stop timeout:
/// SIGTERM ends it within `--stop-timeout`, saying which rows are lost, exit code 1.
#[test]
fn sigterm_ends_the_collector_within_its_stop_timeout_whatever_the_output_does() {
    require_prometheus();
    let p = Project::empty().file("collect.yaml", &config());
    let (_exporter, prom) = live_cluster(&p);
    // An "S3" that takes connections and never answers, as a store behind a dead proxy: each
    // request waits out its timeout and is retried, for up to 30 s.
    let black_hole = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let endpoint = format!("http://{}", black_hole.local_addr().unwrap());
    let mut collector = command()
        .args(["collect", "--prometheus", &prom.url(), "--config", "collect.yaml", "--every", "0.5s", "--stop-timeout", "2s", "--out", "s3://metrics/here"])
        .env("AWS_ENDPOINT_URL", &endpoint)
        .env("AWS_ACCESS_KEY_ID", "x")
        .env("AWS_SECRET_ACCESS_KEY", "x")
        .env("AWS_REGION", "us-east-1")
        .current_dir(p.path())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    std::thread::sleep(Duration::from_secs(3));
    let asked = Instant::now();
    unsafe { libc::kill(collector.id() as i32, libc::SIGTERM) };
    let mut stderr = String::new();
    for line in BufReader::new(collector.stderr.take().unwrap()).lines() {
        stderr.push_str(&line.unwrap());
        stderr.push('\n');
    }
    let status = collector.wait().unwrap();
    let took = asked.elapsed();
    assert!(took < Duration::from_secs(5), "stopped {took:?} after SIGTERM:\n{stderr}");
    assert_eq!(status.code(), Some(1), "{stderr}");
    assert!(stderr.contains("within --stop-timeout") && stderr.contains("are lost"), "{stderr}");
}

fn walk(dir: &std::path::Path) -> Vec<std::path::PathBuf> {
    let mut out = Vec::new();
    if let Ok(entries) = std::fs::read_dir(dir) {
        for e in entries.flatten() {
            if e.path().is_dir() {
                out.extend(walk(&e.path()));
            } else if e.path().extension().is_some_and(|x| x == "csv") {
                out.push(e.path());
            }
        }
    }
    out.sort();
    out
}

/// A Prometheus holding two days ago's 09:50 to 10:10 UTC, a sample every 15 s (as a scrape
/// interval would), and that day with a function giving its times in seconds.
fn two_days_ago(p: &Project) -> (Prometheus, chrono::NaiveDate, impl Fn(u32, u32) -> i64) {
    let day = chrono::Utc::now().date_naive() - chrono::Duration::days(2);
    let at = move |h: u32, m: u32| day.and_hms_opt(h, m, 0).unwrap().and_utc().timestamp();
    prometheus::write_history(p.path(), &prometheus::history(at(9, 50), at(10, 10), 15, None));
    (Prometheus::start(p.path(), None), day, at)
}

#[test]
fn backfill_rebuilds_past_days_from_prometheus_history_exactly() {
    require_prometheus();
    let p = Project::empty().file("collect.yaml", &config());
    let (prom, day, _) = two_days_ago(&p);
    let d = day.format("%Y-%m-%d").to_string();
    p.pipeline(&["collect", "--prometheus", &prom.url(), "--config", "collect.yaml", "--from", &d, "--to", &d, "--out", "metrics"]).ok();
    let file = p.path().join(format!("metrics/{}/metrics_{}.csv", day.format("%Y/%m"), day.format("%Y%m%d")));
    let text = std::fs::read_to_string(&file).unwrap_or_else(|e| panic!("{}: {e}", file.display()));
    let weekend = u8::from(matches!(chrono::Datelike::weekday(&day), chrono::Weekday::Sat | chrono::Weekday::Sun));
    // From 10:00 every window of the last 10 rows lies inside the history: known to the digit.
    let mut checked = 0;
    for step in 0..=20 {
        let t = day.and_hms_opt(10, 0, 0).unwrap() + chrono::Duration::seconds(30 * step);
        for (service, v) in EXPECTED {
            let want = format!(
                "{},{service},{},{},0,{},{},0,{},{},{},{},0,{weekend},{},{},{},{},{},{},{},{},{}",
                t.format("%Y-%m-%dT%H:%M:%S"),
                v[0],
                v[0],
                v[1],
                v[1],
                v[2],
                v[2],
                v[3],
                v[4],
                v[5],
                v[6],
                v[7],
                v[8],
                v[9],
                v[10],
                v[11],
                v[12],
                v[13]
            );
            assert!(text.lines().any(|l| l == want), "backfill lacks\n{want}\nin\n{text}");
            checked += 1;
        }
    }
    assert_eq!(checked, 42);
    // Nothing before the history starts, nothing invented after it ends (staleness: 5 min).
    let times: Vec<String> = text.lines().skip(1).map(|l| l[11..19].to_string()).collect();
    assert_eq!(times.first().map(String::as_str), Some("09:50:00"), "the first row is the history's first sample");
    assert!(times.iter().all(|t| t.as_str() >= "09:50:00" && t.as_str() <= "10:15:00"), "rows only while Prometheus has data: {times:?}");
    assert!(!text.contains("batch"));

    let run = p.pipeline(&["collect", "--prometheus", &prom.url(), "--config", "collect.yaml", "--from", &d, "--to", &d, "--out", "metrics"]).ok();
    assert_eq!(std::fs::read_to_string(&file).unwrap(), text, "a backfill run twice writes the same day{}", run.stderr());
}

#[test]
fn a_services_request_history_comes_back_every_30_s_for_its_seasonal_profile() {
    require_prometheus();
    let p = Project::empty().file("collect.yaml", &config());
    let (prom, _, at) = two_days_ago(&p);
    let config = autoscale::collect::config::Config::load(Some(&p.path().join("collect.yaml"))).unwrap();
    let client = autoscale::collect::prometheus::Prometheus::new(&prom.url(), std::time::Duration::from_secs(10)).unwrap();
    let mut collector = autoscale::collect::Collector::new(config, client);
    let runtime = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
    let mut history = |service: &str, from: i64, to: i64| runtime.block_on(collector.request_history(service, from, to)).unwrap();
    // web serves 40 requests/s: a point every 30 s from 09:55 to 10:05, its rate as the rows have it.
    let web = history("web", at(9, 55), at(10, 5));
    assert_eq!(web.iter().map(|(t, _)| *t).collect::<Vec<_>>(), (at(9, 55)..=at(10, 5)).step_by(30).collect::<Vec<_>>());
    assert!(web.iter().all(|(_, r)| (*r - 40.0).abs() < 1e-6), "{web:?}");
    // Asked for a day and a half before it (two queries of a day), the same points and none
    // before the history began.
    let long = history("web", at(9, 50) - 129_600, at(10, 5));
    assert!(long.first().is_some_and(|(t, _)| *t >= at(9, 50)), "{:?}", long.first());
    assert!(web.iter().all(|p| long.contains(p)));
    assert!(history("web", at(8, 0), at(9, 40)).is_empty(), "nothing before the history");
}
