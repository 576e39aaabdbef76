//! The decision path against what a cluster and a hostile client send, over a socket to the
//! real server: a rolling update's surge row, a row from the future, a flood of made-up names,
//! a client that never finishes its request, bounds no decision could keep; TLS with a
//! certificate renewed in place, two tokens during a rotation, and Prometheus scraping with one.

use std::io::{Read, Write};
use std::net::TcpStream;
use std::time::{Duration, Instant};

use serde_json::json;

use crate::common::{self, Project, row_json, start_server};

fn agent() -> ureq::Agent {
    ureq::Agent::config_builder().http_status_as_error(false).timeout_global(Some(Duration::from_secs(30))).build().into()
}

fn post(base: &str, path: &str, body: &serde_json::Value) -> (u16, serde_json::Value) {
    let mut r = agent().post(format!("{base}{path}")).header("Content-Type", "application/json").send(body.to_string()).unwrap();
    let code = r.status().as_u16();
    let text = r.body_mut().read_to_string().unwrap_or_default();
    (code, serde_json::from_str(&text).unwrap_or_else(|_| json!(text)))
}

fn get(base: &str, path: &str) -> (u16, String) {
    let mut r = agent().get(format!("{base}{path}")).call().unwrap();
    (r.status().as_u16(), r.body_mut().read_to_string().unwrap_or_default())
}

/// A metric's value in Prometheus text.
fn metric(text: &str, name: &str) -> f64 {
    text.lines().find_map(|l| l.strip_prefix(&format!("{name} "))).unwrap_or_else(|| panic!("no {name} in\n{text}")).parse().unwrap()
}

/// A row stamped `seconds` from now (UTC, as a timestamp without an offset is).
fn row_at(service: &str, seconds: i64, replicas: u32) -> serde_json::Value {
    let mut row = row_json(service, 0, 50.0);
    row["timestamp"] = json!((chrono::Utc::now() + chrono::Duration::seconds(seconds)).format("%Y-%m-%dT%H:%M:%S%.6f").to_string());
    row["replica_count"] = json!(replicas);
    row
}

#[test]
fn a_rolling_updates_surge_row_is_decided_within_the_bounds() {
    let p = Project::empty();
    let s = start_server(&p, &["--max-replicas", "10"], &[]);
    // 10 replicas with maxSurge 25 %: kube-state-metrics counts 13 pods during the update.
    let (code, d) = post(&s.base, "/predict", &row_at("product", -60, 13));
    assert_eq!(code, 200, "{d}");
    assert_eq!((d["predicted_replicas"].as_u64(), d["action"].as_str()), (Some(10), Some("scale_down")), "{d}");
    assert!(d["reasoning"].as_str().unwrap().contains("13 replicas are above --max-replicas 10"), "{d}");
    // The batch a Prometheus step makes: the services after the surge row are decided too.
    let (code, out) = post(&s.base, "/predict/batch", &json!([row_at("product", -30, 13), row_at("order", -30, 3), row_at("cart", -30, 0)]));
    assert_eq!(code, 200, "{out}");
    let replicas: Vec<u64> = out.as_array().unwrap().iter().map(|d| d["predicted_replicas"].as_u64().unwrap()).collect();
    assert_eq!(replicas[0], 10);
    assert!((1..=10).contains(&replicas[1]) && replicas[2] >= 1, "{out}");
    assert_eq!(get(&s.base, "/scale/product").0, 200);
}

#[test]
fn bounds_no_decision_could_keep_are_refused_before_anything_starts() {
    let p = Project::empty();
    p.pipeline(&["serve", "--min-replicas", "5", "--max-replicas", "3"])
        .code(2)
        .stderr_has("--min-replicas/--max-replicas")
        .stderr_has("--min-replicas 5 is above --max-replicas 3");
    p.write("row.json", &row_json("api", 0, 50.0).to_string());
    p.pipeline(&["predict", "row.json", "--min-replicas", "5", "--max-replicas", "3"]).code(2).stderr_has("--min-replicas 5 is above --max-replicas 3");
    p.pipeline(&["serve", "--max-replicas", "0", "--min-replicas", "0"]).code(2).stderr_has("--max-replicas");
    // Durations that no clock could hold are usage errors, not a panic.
    for (flag, value) in [("--every", "1e308h"), ("--max-decision-age", "inf"), ("--header-timeout", "1e300"), ("--reload-every", "NaN")] {
        p.pipeline(&["serve", flag, value]).code(2).stderr_has(flag);
    }
    p.pipeline(&["collect", "--prometheus", "http://127.0.0.1:9", "--once", "--timeout", "1e308h"]).code(2).stderr_has("--timeout");
}

#[test]
fn a_row_from_the_future_is_refused_and_the_present_still_decides() {
    let p = Project::empty();
    let s = start_server(&p, &[], &[]);
    assert_eq!(post(&s.base, "/predict", &row_at("product", -120, 3)).0, 200);
    let mut future = row_json("product", 0, 50.0);
    future["timestamp"] = json!("9999-12-31T23:59:59");
    let (code, e) = post(&s.base, "/predict", &future);
    assert_eq!(code, 422, "{e}");
    assert_eq!(e["field"], "timestamp");
    assert!(e["error"].as_str().unwrap().contains("ahead of this server's clock"), "{e}");
    // The service's clock did not move: the present decides, a minute later too.
    for seconds in [-60, 0] {
        let (code, d) = post(&s.base, "/predict", &row_at("product", seconds, 3));
        assert_eq!(code, 200, "{d}");
    }
    // Within the skew (clocks a little apart) is fine; past it refused.
    assert_eq!(post(&s.base, "/predict", &row_at("product", 120, 3)).0, 200);
    assert_eq!(post(&s.base, "/predict", &row_at("product", 900, 3)).0, 422);
    // A row with its offset is the same instant: 2 h ahead in +02:00 is now.
    let mut zoned = row_at("product", 0, 3);
    zoned["timestamp"] =
        json!((chrono::Utc::now() + chrono::Duration::hours(2) + chrono::Duration::seconds(150)).format("%Y-%m-%dT%H:%M:%S+02:00").to_string());
    let (code, d) = post(&s.base, "/predict", &zoned);
    assert_eq!(code, 200, "{d}");
}

#[test]
fn made_up_names_never_lock_out_a_real_service_and_memory_stays_bounded() {
    let p = Project::empty();
    let s = start_server(&p, &["--max-services", "1000", "--max-body-bytes", "4194304"], &[]);
    assert_eq!(post(&s.base, "/predict", &row_at("product", -600, 3)).0, 200);
    let rss = || -> u64 {
        let status = std::fs::read_to_string(format!("/proc/{}/status", s.pid())).unwrap();
        status.lines().find_map(|l| l.strip_prefix("VmRSS:")).unwrap().trim().trim_end_matches(" kB").parse::<u64>().unwrap() / 1024
    };
    let mut after_first = 0;
    for batch in 0..20 {
        let rows: Vec<serde_json::Value> = (0..1000).map(|i| row_at(&format!("made-up-{batch}-{i}"), -300, 2)).collect();
        let (code, out) = post(&s.base, "/predict/batch", &json!(rows));
        assert_eq!(code, 200, "batch {batch}: {out}");
        if batch == 1 {
            after_first = rss();
        }
    }
    // The real service is decided, from its next row.
    let (code, d) = post(&s.base, "/predict", &row_at("product", -60, 3));
    assert_eq!(code, 200, "{d}");
    let (_, metrics) = get(&s.base, "/metrics");
    assert!(metric(&metrics, "autoscaler_services") <= 1000.0);
    assert!(metric(&metrics, "autoscaler_evicted_services_total") >= 19_000.0);
    let end = rss();
    assert!(end < after_first + 64, "memory grew with the names: {after_first} MiB after 2,000, {end} MiB after 20,000");
    // Names no Deployment can have are refused, naming the field.
    for name in ["Not_A_Name".to_string(), "x".repeat(10_000)] {
        let (code, e) = post(&s.base, "/predict", &row_at(&name, -60, 3));
        assert_eq!((code, e["field"].as_str()), (422, Some("service_name")), "{e}");
    }
}

/// Reads what the server sends until it closes the connection; how long that took.
fn until_closed(mut stream: TcpStream) -> (String, Duration) {
    let t0 = Instant::now();
    stream.set_read_timeout(Some(Duration::from_secs(20))).unwrap();
    let mut got = Vec::new();
    let mut buf = [0u8; 4096];
    loop {
        match stream.read(&mut buf) {
            Ok(0) => break,
            Ok(n) => got.extend_from_slice(&buf[..n]),
            Err(e) if e.kind() == std::io::ErrorKind::WouldBlock || e.kind() == std::io::ErrorKind::TimedOut => panic!("still open after 20 s"),
            Err(_) => break,
        }
    }
    (String::from_utf8_lossy(&got).into_owned(), t0.elapsed())
}

#[test]
fn a_client_that_never_finishes_its_request_is_cut_off() {
    let p = Project::empty();
    let s = start_server(&p, &["--header-timeout", "1s", "--request-timeout", "2s"], &[]);
    let addr = s.base.strip_prefix("http://").unwrap().to_string();
    // Half the headers, then nothing.
    let mut half = TcpStream::connect(&addr).unwrap();
    half.write_all(b"POST /predict HTTP/1.1\r\nHost: x\r\nContent-Type: appl").unwrap();
    let (_, took) = until_closed(half);
    assert!(took < Duration::from_secs(5), "closed after {took:?}");
    // Nothing at all (a connection opened and left idle).
    let (_, took) = until_closed(TcpStream::connect(&addr).unwrap());
    assert!(took < Duration::from_secs(5), "an idle connection closed after {took:?}");
    // The headers, then a body that never comes: 408 within the request timeout.
    let mut slow = TcpStream::connect(&addr).unwrap();
    slow.write_all(b"POST /predict HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\nContent-Length: 1000\r\n\r\n{\"service").unwrap();
    let (answer, took) = until_closed(slow);
    assert!(answer.starts_with("HTTP/1.1 408"), "{answer}");
    assert!(took < Duration::from_secs(6), "answered after {took:?}");
    assert_eq!(get(&s.base, "/healthz").0, 200, "the server goes on");
}

mod tls {
    use super::*;
    use std::sync::Arc;
    use tokio::io::{AsyncReadExt, AsyncWriteExt};

    /// `GET path` over TLS, trusting `roots`: (status, the certificate the server showed).
    fn tls_get(addr: &str, roots: &[&std::path::Path], path: &str, token: Option<&str>) -> (u16, Vec<u8>) {
        use rustls::pki_types::pem::PemObject;
        let runtime = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
        runtime.block_on(async {
            let mut store = rustls::RootCertStore::empty();
            for r in roots {
                for c in rustls::pki_types::CertificateDer::pem_file_iter(r).unwrap() {
                    store.add(c.unwrap()).unwrap();
                }
            }
            let config = rustls::ClientConfig::builder_with_provider(Arc::new(rustls::crypto::ring::default_provider()))
                .with_safe_default_protocol_versions()
                .unwrap()
                .with_root_certificates(store)
                .with_no_client_auth();
            let tcp = tokio::net::TcpStream::connect(addr).await.unwrap();
            let name = rustls::pki_types::ServerName::try_from("localhost").unwrap();
            let mut stream = tokio_rustls::TlsConnector::from(Arc::new(config)).connect(name, tcp).await.expect("TLS handshake");
            let shown = stream.get_ref().1.peer_certificates().unwrap()[0].to_vec();
            let auth = token.map(|t| format!("Authorization: Bearer {t}\r\n")).unwrap_or_default();
            stream.write_all(format!("GET {path} HTTP/1.1\r\nHost: localhost\r\n{auth}Connection: close\r\n\r\n").as_bytes()).await.unwrap();
            let mut answer = Vec::new();
            let _ = stream.read_to_end(&mut answer).await;
            let status = String::from_utf8_lossy(&answer).split(' ').nth(1).and_then(|c| c.parse().ok()).unwrap_or(0);
            (status, shown)
        })
    }

    fn der(cert: &std::path::Path) -> Vec<u8> {
        use rustls::pki_types::pem::PemObject;
        rustls::pki_types::CertificateDer::from_pem_file(cert).unwrap().to_vec()
    }

    #[test]
    fn tls_with_a_certificate_renewed_in_place_and_two_tokens_during_a_rotation() {
        let p = Project::empty();
        let one = common::tls::certificate(p.path(), "one");
        let two = common::tls::certificate(p.path(), "two");
        let (cert, key) = (p.path().join("tls.crt"), p.path().join("tls.key"));
        std::fs::copy(&one.cert, &cert).unwrap();
        std::fs::copy(&one.key, &key).unwrap();
        let (new, old) = ("new-token-0123456789abcdef", "old-token-0123456789abcdef");
        let s =
            start_server(&p, &["--tls-cert", cert.to_str().unwrap(), "--tls-key", key.to_str().unwrap()], &[("PIPELINE_SERVE_TOKEN", &format!("{new},{old}"))]);
        let addr = s.base.strip_prefix("https://").unwrap_or_else(|| panic!("not TLS: {}", s.base)).to_string();
        let roots = [one.ca.as_path(), two.ca.as_path()];
        let (code, shown) = tls_get(&addr, &roots, "/healthz", None);
        assert_eq!((code, shown == der(&one.cert)), (200, true));
        // Either token during a rotation; nothing else.
        for (token, want) in [(Some(new), 200), (Some(old), 200), (Some("another-token-0123456789"), 401), (None, 401)] {
            assert_eq!(tls_get(&addr, &roots, "/metrics", token).0, want, "{token:?}");
        }
        // Plain HTTP to the TLS port gets no answer.
        let mut plain = TcpStream::connect(&addr).unwrap();
        plain.write_all(b"GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n").unwrap();
        assert!(!until_closed(plain).0.contains("200 OK"));
        // The certificate is renewed in place (as a Secret's mount is): the next handshakes show it.
        std::fs::copy(&two.key, &key).unwrap();
        std::fs::copy(&two.cert, &cert).unwrap();
        let deadline = Instant::now() + Duration::from_secs(10);
        while tls_get(&addr, &roots, "/healthz", None).1 != der(&two.cert) {
            assert!(Instant::now() < deadline, "the renewed certificate was not picked up");
            std::thread::sleep(Duration::from_millis(200));
        }
        // A broken file keeps the one that works.
        std::fs::write(&cert, "not a certificate").unwrap();
        std::thread::sleep(Duration::from_millis(1500));
        assert_eq!(tls_get(&addr, &roots, "/healthz", None), (200, der(&two.cert)));
        // A certificate that cannot load is refused at start, naming the file.
        p.pipeline(&["serve", "--tls-cert", cert.to_str().unwrap(), "--tls-key", key.to_str().unwrap()]).code(2).stderr_has("tls.crt");
    }
}

/// Prometheus scrapes /metrics with the token, as the ServiceMonitor in deploy/ sets it up.
#[test]
fn prometheus_scrapes_metrics_with_the_token() {
    assert!(common::prometheus::installed(), "this test needs a real Prometheus: install the Debian package `prometheus` (.ci/run does)");
    let p = Project::empty();
    let token = "scrape-token-0123456789abcdef";
    let s = start_server(&p, &[], &[("PIPELINE_SERVE_TOKEN", token)]);
    let target = s.base.strip_prefix("http://").unwrap().to_string();
    let check = |bearer: Option<&str>| -> f64 {
        let dir = tempfile::tempdir().unwrap();
        let prom = common::prometheus::Prometheus::start_with_token(dir.path(), Some(&target), bearer);
        prom.wait_for_scrapes(2);
        let (_, body) = common::prometheus::get(&format!("{}/api/v1/query?query=up", prom.url())).unwrap();
        let v: serde_json::Value = serde_json::from_str(&body).unwrap();
        v["data"]["result"][0]["value"][1].as_str().unwrap().parse().unwrap()
    };
    assert_eq!(check(Some(token)), 1.0, "scraped with the token");
    assert_eq!(check(None), 0.0, "without it the scrape is refused");
}
