//! A real Prometheus (Debian package `prometheus`) on loopback, scraping a small exporter that
//! serves cAdvisor-, kube-state-metrics- and ingress-nginx-style series with known values; its
//! history can be written beforehand with `promtool tsdb create-blocks-from openmetrics`.

use std::io::{Read, Write};
use std::net::{TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

/// Is the `prometheus` binary here? Tests that need it say so and skip when it is not.
pub fn installed() -> bool {
    Command::new("prometheus").arg("--version").stdout(Stdio::null()).stderr(Stdio::null()).status().is_ok_and(|s| s.success())
}

const MIB: f64 = 1_048_576.0;
/// Counters start high so that Prometheus' rate() never limits its extrapolation at zero.
const BASE: f64 = 1e6;

/// Every series of a small cluster at `t` (seconds since the epoch), in namespace `shop`:
/// `web` (2 pods on node-1, behind ingress-nginx, node-1 CPU-saturated), `api` (1 pod on
/// node-2, no ingress traffic, node-2 under memory pressure), and `batch` (not labelled for
/// autoscaling, so never discovered). `api`'s pod has requests and no limits, as many teams
/// run them. Counters grow linearly, so every rate is exact.
pub fn series(t: f64) -> Vec<(String, f64)> {
    let mut s: Vec<(String, f64)> = Vec::new();
    let mut add = |name: &str, labels: &str, v: f64| s.push((format!("{name}{{{labels}}}"), v));
    for (deploy, label) in [("web", "true"), ("api", "true"), ("batch", "false")] {
        add("kube_deployment_labels", &format!(r#"namespace="shop",deployment="{deploy}",label_autoscale="{label}""#), 1.0);
    }
    let pods = [
        // (deployment, pod, node, cpu cores used, cpu request, cpu limit, memory used MiB, memory
        // request MiB, memory limit MiB, restarts); a limit of 0: the pod has none.
        ("web", "web-5d8f7c-abcde", "node-1", 0.3, 0.5, 1.0, 256.0, 512.0, 1024.0, 1.0),
        ("web", "web-5d8f7c-fghij", "node-1", 0.3, 0.5, 1.0, 256.0, 512.0, 1024.0, 2.0),
        ("api", "api-77b9d-kx2lm", "node-2", 0.1, 0.25, 0.0, 96.0, 128.0, 0.0, 0.0),
        ("batch", "batch-6c4d-zz9qq", "node-2", 2.0, 1.0, 2.0, 900.0, 1024.0, 1024.0, 0.0),
    ];
    for (deploy, replicas) in [("web", 2.0), ("api", 1.0), ("batch", 1.0)] {
        add("kube_deployment_status_replicas", &format!(r#"namespace="shop",deployment="{deploy}""#), replicas);
    }
    for (_, pod, node, cpu, req, lim, mem, mreq, mlim, restarts) in pods {
        let c = format!(r#"namespace="shop",pod="{pod}",container="app""#);
        add("container_cpu_usage_seconds_total", &format!(r#"{c},node="{node}""#), BASE + cpu * t);
        add("container_memory_working_set_bytes", &format!(r#"{c},node="{node}""#), mem * MIB);
        add("kube_pod_container_resource_requests", &format!(r#"{c},resource="cpu",unit="core""#), req);
        if lim > 0.0 {
            add("kube_pod_container_resource_limits", &format!(r#"{c},resource="cpu",unit="core""#), lim);
        }
        add("kube_pod_container_resource_requests", &format!(r#"{c},resource="memory",unit="byte""#), mreq * MIB);
        if mlim > 0.0 {
            add("kube_pod_container_resource_limits", &format!(r#"{c},resource="memory",unit="byte""#), mlim * MIB);
        }
        if restarts > 0.0 {
            add("kube_pod_container_status_restarts_total", &c, restarts);
        }
        add("kube_pod_info", &format!(r#"namespace="shop",pod="{pod}",node="{node}""#), 1.0);
    }
    for (node, used, memory_pressure) in [("node-1", 3.8, false), ("node-2", 0.4, true)] {
        add("container_cpu_usage_seconds_total", &format!(r#"id="/",node="{node}""#), BASE + used * t);
        add("kube_node_status_allocatable", &format!(r#"node="{node}",resource="cpu",unit="core""#), 4.0);
        for (status, v) in [("true", memory_pressure), ("false", !memory_pressure)] {
            add("kube_node_status_condition", &format!(r#"node="{node}",condition="MemoryPressure",status="{status}""#), f64::from(u8::from(v)));
        }
    }
    // web: 40 requests/s, 1 % of them 5xx, every one answered in 100-250 ms (150 ms on average).
    let ingress = r#"exported_namespace="shop",ingress="web",service="web""#;
    add("nginx_ingress_controller_requests", &format!(r#"{ingress},status="200""#), BASE + 39.6 * t);
    add("nginx_ingress_controller_requests", &format!(r#"{ingress},status="500""#), BASE + 0.4 * t);
    for (le, n) in [("0.1", 0.0), ("0.25", 40.0), ("+Inf", 40.0)] {
        add("nginx_ingress_controller_request_duration_seconds_bucket", &format!(r#"{ingress},le="{le}""#), BASE + n * t);
    }
    add("nginx_ingress_controller_request_duration_seconds_sum", ingress, BASE + 6.0 * t);
    add("nginx_ingress_controller_request_duration_seconds_count", ingress, BASE + 40.0 * t);
    s
}

/// The values `collect` must give for `series`, per service, in collect.yaml's column order
/// (cpu %, ram %, requests/s, P95 ms, replicas, cpu request, cpu limit, ram request, ram
/// limit, queue, error rate, restarts, node cpu pressure, node memory pressure).
pub const EXPECTED: [(&str, [&str; 14]); 2] = [
    // No limits: RAM % over the request, and the requests where the limits would be.
    ("api", ["40", "75", "0", "0", "1", "0.25", "0.25", "128", "128", "0", "0", "0", "0", "1"]),
    ("web", ["60", "25", "40", "242.5", "2", "0.5", "1", "512", "1024", "6", "0.01", "3", "1", "0"]),
];

/// The text format a scrape gets, each sample stamped with the time its value was computed.
fn exposition(t: f64) -> String {
    let ms = (t * 1000.0).round() as i64;
    series(t).into_iter().map(|(s, v)| format!("{s} {v} {ms}\n")).collect()
}

/// `series` every `step` seconds from `from` to `to`, as OpenMetrics for promtool; `scraped`
/// gives the exporter's address when the history must continue the series its scrapes make
/// (they carry `job` and `instance` labels).
pub fn history(from: i64, to: i64, step: i64, scraped: Option<&str>) -> String {
    let times: Vec<i64> = (from..=to).step_by(step as usize).collect();
    let names: Vec<String> = series(0.0).into_iter().map(|(s, _)| s).collect();
    let mut text = String::new();
    // OpenMetrics wants each metric's samples together and in time order.
    let mut families: Vec<&str> = names.iter().map(|n| n.split('{').next().unwrap()).collect();
    families.dedup();
    let mut seen = std::collections::HashSet::new();
    for family in families.into_iter().filter(|f| seen.insert(*f)) {
        for (k, name) in names.iter().enumerate().filter(|(_, n)| n.split('{').next().unwrap() == family) {
            let name = match scraped {
                Some(addr) => name.replacen('{', &format!(r#"{{job="exporter",instance="{addr}","#), 1),
                None => name.clone(),
            };
            for &t in &times {
                text.push_str(&format!("{name} {} {t}\n", series(t as f64)[k].1));
            }
        }
    }
    text.push_str("# EOF\n");
    text
}

/// Writes `history` into a TSDB folder with promtool.
pub fn write_history(dir: &Path, openmetrics: &str) {
    let file = dir.join("history.om");
    std::fs::write(&file, openmetrics).unwrap();
    let data = dir.join("data");
    let out = Command::new("promtool").args(["tsdb", "create-blocks-from", "openmetrics"]).arg(&file).arg(&data).output().expect("promtool runs");
    assert!(out.status.success(), "promtool: {}{}", String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr));
}

/// The exporter: answers every request with `exposition(now)`.
pub struct Exporter {
    pub addr: String,
    stop: Arc<AtomicBool>,
}

impl Exporter {
    pub fn start() -> Exporter {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let addr = listener.local_addr().unwrap().to_string();
        listener.set_nonblocking(true).unwrap();
        let stop = Arc::new(AtomicBool::new(false));
        let flag = stop.clone();
        std::thread::spawn(move || {
            while !flag.load(Ordering::Relaxed) {
                match listener.accept() {
                    Ok((stream, _)) => answer(stream),
                    Err(_) => std::thread::sleep(Duration::from_millis(20)),
                }
            }
        });
        Exporter { addr, stop }
    }
}

impl Drop for Exporter {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
    }
}

fn answer(mut stream: TcpStream) {
    let _ = stream.set_nonblocking(false);
    let _ = stream.set_read_timeout(Some(Duration::from_secs(2)));
    let mut buf = [0u8; 4096];
    let mut got = Vec::new();
    while !got.windows(4).any(|w| w == b"\r\n\r\n") {
        match stream.read(&mut buf) {
            Ok(0) | Err(_) => return,
            Ok(n) => got.extend_from_slice(&buf[..n]),
        }
    }
    let now = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap().as_secs_f64();
    let body = exposition(now);
    let _ = write!(
        stream,
        "HTTP/1.1 200 OK\r\nContent-Type: text/plain; version=0.0.4; charset=utf-8\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
        body.len()
    );
}

/// A Prometheus on a free loopback port with its data in `dir/data`, scraping `target` (if
/// any) every second; killed when dropped.
pub struct Prometheus {
    child: Option<Child>,
    port: u16,
    dir: PathBuf,
    target: Option<String>,
    /// Sent as `Authorization: Bearer` with every scrape.
    bearer: Option<String>,
}

impl Prometheus {
    pub fn start(dir: &Path, target: Option<&str>) -> Prometheus {
        Prometheus::start_with_token(dir, target, None)
    }

    /// Scraping `target` with a bearer token, as a ServiceMonitor's `authorization` does.
    pub fn start_with_token(dir: &Path, target: Option<&str>, bearer: Option<&str>) -> Prometheus {
        let port = TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port();
        let mut p = Prometheus { child: None, port, dir: dir.to_path_buf(), target: target.map(str::to_string), bearer: bearer.map(str::to_string) };
        p.restart();
        p
    }

    pub fn url(&self) -> String {
        format!("http://127.0.0.1:{}", self.port)
    }

    /// Kills it (as a crash would).
    pub fn stop(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }

    /// Starts it again on the same port and data.
    pub fn restart(&mut self) {
        self.stop();
        let auth = self.bearer.as_ref().map(|t| format!("    authorization: {{ credentials: '{t}' }}\n")).unwrap_or_default();
        let scrape = match &self.target {
            Some(t) => format!("scrape_configs:\n  - job_name: exporter\n    scrape_interval: 1s\n{auth}    static_configs:\n      - targets: ['{t}']\n"),
            None => "scrape_configs: []\n".into(),
        };
        let config = self.dir.join("prometheus.yml");
        std::fs::write(&config, format!("global:\n  scrape_interval: 1s\n{scrape}")).unwrap();
        let log = std::fs::File::create(self.dir.join("prometheus.log")).unwrap();
        let child = Command::new("prometheus")
            .arg(format!("--config.file={}", config.display()))
            .arg(format!("--storage.tsdb.path={}", self.dir.join("data").display()))
            .arg("--storage.tsdb.retention.time=3650d")
            .arg(format!("--web.listen-address=127.0.0.1:{}", self.port))
            .stdout(Stdio::null())
            .stderr(log)
            .spawn()
            .expect("prometheus runs");
        self.child = Some(child);
        let deadline = Instant::now() + Duration::from_secs(30);
        while get(&format!("{}/-/ready", self.url())).is_none_or(|(code, _)| code != 200) {
            assert!(
                Instant::now() < deadline,
                "prometheus did not get ready:\n{}",
                std::fs::read_to_string(self.dir.join("prometheus.log")).unwrap_or_default()
            );
            std::thread::sleep(Duration::from_millis(100));
        }
    }

    /// Waits until the exporter has been scraped `n` times since now.
    pub fn wait_for_scrapes(&self, n: usize) {
        let first = self.scrape_time();
        let deadline = Instant::now() + Duration::from_secs(30);
        let mut seen = 0;
        let mut last = first;
        while seen < n {
            assert!(Instant::now() < deadline, "the exporter was not scraped");
            std::thread::sleep(Duration::from_millis(200));
            let t = self.scrape_time();
            if t != last && t.is_some() {
                seen += 1;
                last = t;
            }
        }
    }

    fn scrape_time(&self) -> Option<String> {
        // The sample's own time, not the query's.
        let (_, body) = get(&format!("{}/api/v1/query?query=timestamp(up)", self.url()))?;
        let v: serde_json::Value = serde_json::from_str(&body).ok()?;
        v["data"]["result"][0]["value"][1].as_str().map(str::to_string)
    }
}

impl Drop for Prometheus {
    fn drop(&mut self) {
        self.stop();
    }
}

/// A GET over loopback: (status, body), or None when nothing listens.
pub fn get(url: &str) -> Option<(u16, String)> {
    let agent: ureq::Agent = ureq::Agent::config_builder().http_status_as_error(false).timeout_global(Some(Duration::from_secs(5))).build().into();
    let mut r = agent.get(url).call().ok()?;
    let code = r.status().as_u16();
    Some((code, r.body_mut().read_to_string().unwrap_or_default()))
}
