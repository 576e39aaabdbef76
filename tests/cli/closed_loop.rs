//! `pipeline simulate --scaler`: a simulated cluster follows a running decision server, and the
//! summary judges it against the internal HPA's frontier on the same load and seed.

use crate::common;
use common::{Project, daily_trace, json, start_server};

use std::io::{BufRead, BufReader, Read, Write};
use std::net::TcpListener;

/// Quiet nights, a steep morning ramp, a busy day, an evening decline.
fn ramp(h: f64) -> f64 {
    match h {
        h if h < 7.0 => 80.0,
        h if h < 8.0 => 80.0 + 920.0 * (h - 7.0),
        h if h < 18.0 => 1000.0 + 60.0 * (h * 3.0).sin(),
        h if h < 21.0 => 1000.0 - 300.0 * (h - 18.0),
        _ => 80.0,
    }
}

/// A decision server on the same batch API as `pipeline serve`, answering each batch with
/// `decide(rows)`, or 503 when that gives nothing.
fn stub_server(decide: fn(&[serde_json::Value]) -> Option<Vec<serde_json::Value>>) -> String {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let base = format!("http://{}", listener.local_addr().unwrap());
    std::thread::spawn(move || {
        for stream in listener.incoming() {
            let Ok(mut stream) = stream else { continue };
            let mut reader = BufReader::new(stream.try_clone().unwrap());
            let (mut request, mut length) = (String::new(), 0usize);
            reader.read_line(&mut request).unwrap();
            loop {
                let mut h = String::new();
                reader.read_line(&mut h).unwrap();
                if h.trim().is_empty() {
                    break;
                }
                if let Some(v) = h.to_ascii_lowercase().strip_prefix("content-length:") {
                    length = v.trim().parse().unwrap();
                }
            }
            let mut body = vec![0; length];
            reader.read_exact(&mut body).unwrap();
            let (status, answer) = if request.starts_with("POST /predict/batch") {
                let rows: Vec<serde_json::Value> = serde_json::from_slice(&body).unwrap();
                match decide(&rows) {
                    Some(d) => ("200 OK", serde_json::to_string(&d).unwrap()),
                    None => ("503 Service Unavailable", "{\"error\": \"no model\"}".to_string()),
                }
            } else {
                ("200 OK", "ok".into())
            };
            let _ =
                write!(stream, "HTTP/1.1 {status}\r\nContent-Type: application/json\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{answer}", answer.len());
        }
    });
    base
}

/// Not the world the policy was tuned in: pods take 3 minutes (spread) to serve, and slow down
/// past 60 % of their capacity, so queueing starts early (src/simulate/world.rs).
const WORLD: &str = "jvm-knee";

/// One unseen day (seed 7) of the two services in `WORLD`, each `--scaler` in turn, judged against
/// the internal HPA's frontier; the summary goes to `summary`.
fn closed_day(p: &Project, extra: &[&str], scalers: &[&str], out: &str, summary: &str) -> common::Run {
    let mut args = vec!["simulate", "--days", "1", "--seed", "7", "--services", "frontend,order", "--trace", "trace.csv", "--world", WORLD];
    args.extend_from_slice(extra);
    for s in scalers {
        args.extend_from_slice(&["--scaler", s]);
    }
    args.extend_from_slice(&["--out", out, "--summary", summary]);
    p.pipeline(&args).ok()
}

#[test]
fn a_served_policy_runs_the_cluster_and_is_judged_against_the_hpa_frontier() {
    // Trained on 4 days of the ramp in the same world, told its pods' start-up once; the demand
    // forest is published with the policy its replay chose.
    let p = Project::bare().file("trace.csv", &daily_trace(4, ramp));
    p.pipeline(&["simulate", "--days", "4", "--services", "frontend,order", "--trace", "trace.csv", "--world", WORLD, "--out", "data/metrics"]).ok();
    let quick = [
        "--set",
        "rf_trees=16",
        "--set",
        "cv_folds=0",
        "--set",
        "lstm_epochs=1",
        "--set",
        "device=cpu",
        "--set",
        "require_beating_hpa=false",
        "--set",
        "pod_startup_seconds=180",
    ];
    let mut run = vec!["run", "--until", "publish", "--no-progress"];
    run.extend_from_slice(&quick);
    p.pipeline(&run).ok().stdout_has("random_forest v1: promoted");
    let server = start_server(&p, &[], &[]);
    // The policy that never scales: every service keeps its current replicas.
    let holding = stub_server(|rows| Some(rows.iter().map(|r| serde_json::json!({ "predicted_replicas": r["replica_count"], "reasoning": "hold" })).collect()));

    // An unseen day (another seed): the served policy, the internal HPA, and holding.
    let out = closed_day(&p, &[], &[&server.base, "hpa:60", &holding, "oracle"], "closed", "summary.json");
    eprintln!("{}", out.stdout());
    let s = json(&p.path().join("summary.json"));
    assert_eq!((s["world_name"].as_str(), s["world"]["pod_startup_seconds"].as_f64(), s["world"]["knee"].as_f64()), (Some(WORLD), Some(180.0), Some(0.6)));
    assert_eq!(s["frontier"]["points"].as_array().unwrap().len(), 9, "the internal HPA at 40..80 %");
    let runs = s["runs"].as_array().unwrap();
    let (served, hpa, held, oracle) = (&runs[0], &runs[1], &runs[2], &runs[3]);
    for dir in ["closed/1-server", "closed/2-hpa-60", "closed/3-server"] {
        assert_eq!(common::count(&p.path().join(dir)), 1, "{dir} has the day's files");
    }
    // Every scaler faced the same load: each row's time, service and request rate are the same
    // whoever set the replicas (the replicas, and so CPU and latency, differ).
    let day = |dir: &str| {
        let month = p.path().join(dir).join("2025/10");
        std::fs::read_to_string(std::fs::read_dir(month).unwrap().next().unwrap().unwrap().path()).unwrap()
    };
    let load = |dir: &str| -> Vec<String> {
        day(dir).lines().map(|l| l.split(',').enumerate().filter(|(i, _)| [0, 1, 8].contains(i)).map(|(_, f)| f).collect::<Vec<_>>().join(",")).collect()
    };
    assert_eq!(load("closed/1-server"), load("closed/2-hpa-60"));
    assert_eq!(load("closed/1-server"), load("closed/3-server"));
    assert_ne!(day("closed/2-hpa-60"), day("closed/3-server"), "holding and the HPA scale differently");
    let minutes = |r: &serde_json::Value, what: &str| r["total"][what].as_f64().unwrap();
    let margin = |r: &serde_json::Value| r["margin"]["minutes"].as_f64().unwrap();
    // Every step asked the server once per service, and the forest answered every one.
    assert_eq!(served["total"]["decisions"], 2 * 2880, "{}", served["total"]);
    assert_eq!(served["total"]["fallbacks"], 0, "{}", served["total"]);
    assert_eq!(held["total"]["fallbacks"], 0, "holding is a decision too: {}", held["total"]);
    // The internal HPA at 60 % lies on its own frontier; holding the replicas lies far above it
    // (it uses fewer pods than the HPA at 80 %, which earns it nothing).
    assert!(margin(hpa).abs() < 1e-9, "{}", hpa["margin"]);
    assert!(margin(held) < -500.0, "{}", held["margin"]);
    assert!(minutes(held, "slow_minutes") > 10.0 * minutes(served, "slow_minutes").max(1.0), "{served} vs {held}");
    // The proactive policy lies below the HPA's frontier: fewer under-provisioned minutes than
    // the HPA at the same pod-hours (here also fewer than the HPA at 60 %)...
    assert!(margin(served) > 0.0, "served {} vs the frontier: {}", served["total"], served["margin"]);
    assert!(minutes(served, "under_provisioned_minutes") < minutes(hpa, "under_provisioned_minutes"), "{served} vs {hpa}");
    // ...and fewer pod-hours than the HPA would need to be as healthy: the frontier, read at the
    // served policy's minutes, lies at more pod-hours than it spent.
    let points: Vec<(f64, f64)> = s["frontier"]["points"]
        .as_array()
        .unwrap()
        .iter()
        .map(|p| (p["under_provisioned_minutes"].as_f64().unwrap(), p["pod_hours"].as_f64().unwrap()))
        .collect();
    let healthier: Vec<f64> = points.iter().filter(|(m, _)| *m <= minutes(served, "under_provisioned_minutes")).map(|p| p.1).collect();
    let hpa_cost = healthier.iter().copied().fold(f64::INFINITY, f64::min);
    assert!(minutes(served, "pod_hours") < hpa_cost, "the HPA is as healthy only at {hpa_cost} pod-hours (frontier {points:?}); served {}", served["total"]);
    let out = out.stdout_has("above the HPA frontier").stdout_has("hpa:60: 0.0 min");
    // The forecast that knew the future: healthier than the HPA at 60 % and below its frontier,
    // the limit a forecast can reach in this world.
    assert!(margin(oracle) > 0.0 && minutes(oracle, "under_provisioned_minutes") < minutes(hpa, "under_provisioned_minutes"), "{oracle}");
    assert_eq!(oracle["total"]["decisions"], 2 * 2880, "{}", oracle["total"]);
    out.stdout_has("oracle (knew the future): ");

    // Twice the load passes what max_replicas serve at the target on the busy day. Those
    // minutes are the load's, the same for every scaler and part of each one's under-provisioned
    // minutes; the HPA at 5 % keeps all of max_replicas up and is left with those alone.
    let out = closed_day(&p, &["--load", "2"], &[&server.base, "hpa:5"], "doubled", "doubled.json");
    let total_rps = |dir: &str| -> f64 { day(dir).lines().skip(1).map(|l| l.split(',').nth(8).unwrap().parse::<f64>().unwrap()).sum() };
    let ratio = total_rps("doubled/1-server") / total_rps("closed/1-server");
    assert!((ratio - 2.0).abs() < 0.05, "--load 2 doubles every request rate: {ratio}");
    let s = json(&p.path().join("doubled.json"));
    let runs = s["runs"].as_array().unwrap();
    let (served, all_pods) = (&runs[0], &runs[1]);
    let bound = s["capacity_bound_minutes"].as_f64().unwrap();
    assert!(bound > 0.0, "twice the busy day passes what max_replicas serve at 60 %: {}", all_pods["total"]);
    for r in runs {
        assert_eq!(minutes(r, "capacity_bound_minutes"), bound, "{}", r["scaler"]);
        assert!(minutes(r, "under_provisioned_minutes") >= bound, "{}", r["total"]);
    }
    assert!(minutes(all_pods, "under_provisioned_minutes") - bound < 0.1 * bound, "{}", all_pods["total"]);
    // The margin over what was avoidable: the same minutes, a larger share of fewer minutes.
    let share = |r: &serde_json::Value, which: &str| r[which]["percent"].as_f64().unwrap();
    let avoided = served["avoidable_margin"]["minutes"].as_f64().unwrap();
    assert!((avoided - margin(served)).abs() < 1e-6, "{}", served);
    assert!(margin(served).abs() > 0.0, "{}", served);
    assert!(share(served, "avoidable_margin").abs() > share(served, "margin").abs(), "{}", served);
    out.stdout_has("even of all max replicas").stdout_has("of the minutes a scaler could avoid");

    // A server that stops answering: the day still runs with the replicas it had, every step
    // is counted, and the exit code says so.
    let failing = stub_server(|_| None);
    p.pipeline(&["simulate", "--days", "1", "--services", "order", "--trace", "trace.csv", "--scaler", &failing, "--out", "failing"])
        .code(1)
        .stderr_has("gave no decisions: HTTP 503")
        .stdout_has("(2880 steps unanswered)");
}

#[test]
fn a_release_that_doubles_the_cpu_per_request_hands_the_service_to_the_hpa_within_the_monitors_time() {
    // Trained on 4 days of the ramp in the default world; judged on a day whose noon brings a
    // release that doubles the CPU per request (the world `heavier-release`), which no forecast
    // of requests can see.
    let p = Project::bare().file("trace.csv", &daily_trace(4, ramp));
    p.pipeline(&["simulate", "--days", "4", "--services", "frontend,order", "--trace", "trace.csv", "--out", "data/metrics"]).ok();
    let quick = ["rf_trees=16", "cv_folds=0", "lstm_epochs=1", "device=cpu", "require_beating_hpa=false"];
    let mut run = vec!["run", "--until", "publish", "--no-progress"];
    for q in &quick {
        run.extend_from_slice(&["--set", q]);
    }
    p.pipeline(&run).ok().stdout_has("random_forest v1: promoted");
    let off = start_server(&p, &["--drift-window-seconds", "0"], &[]);
    let on = start_server(&p, &["--drift-window-seconds", "1800"], &[]);
    let args = ["simulate", "--days", "1", "--seed", "7", "--services", "frontend,order", "--trace", "trace.csv", "--world", "heavier-release"];
    let mut args = args.to_vec();
    args.extend_from_slice(&["--scaler", &off.base, "--scaler", &on.base, "--out", "released", "--summary", "released.json"]);
    let out = p.pipeline(&args).ok();
    eprintln!("{}", out.stdout());
    let s = json(&p.path().join("released.json"));
    assert_eq!(s["world"]["release_cpu_factor"].as_f64(), Some(2.0));
    let runs = s["runs"].as_array().unwrap();
    let (off, on) = (&runs[0]["total"], &runs[1]["total"]);
    // Off, the forecast decides all day, wrong by half from noon; on, the forecasts are judged
    // and the first service goes to the HPA after the release, within the time docs/serving.md
    // gives (two thirds of the 30-minute window, plus the forecasts' own start-up and window).
    assert_eq!(off["fallbacks"], 0, "{off}");
    let first = on["first_fallback_minute"].as_f64().unwrap_or_else(|| panic!("the monitor never let go: {on}"));
    assert!((720.0..=720.0 + 25.0).contains(&first), "first fallback at minute {first} of the day; the release was at 720");
    let minutes = |t: &serde_json::Value| t["under_provisioned_minutes"].as_f64().unwrap();
    assert!(minutes(on) < 0.5 * minutes(off), "the monitor saves most of the afternoon: {on} vs {off}");
    out.stdout_has("first fallback").stdout_has("12:");
}
