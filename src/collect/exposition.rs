//! What the live collector exposes on `--metrics-addr` (`GET /metrics`, Prometheus' text
//! format): its steps, the steps it skipped because Prometheus did not answer, the rows it took
//! and the rows still waiting to be written, and when it last wrote the day files. The
//! dashboard (deploy/grafana) and the alerts (deploy/alerts) read them.

use std::fmt::Write;
use std::sync::atomic::{AtomicU64, Ordering};

#[derive(Default)]
pub struct CollectorMetrics {
    steps: AtomicU64,
    skipped: AtomicU64,
    rows: AtomicU64,
    backlog: AtomicU64,
    flush_failures: AtomicU64,
    /// Seconds since the epoch, as f64 bits; 0 before the first write.
    last_flush: AtomicU64,
}

impl CollectorMetrics {
    /// A step that took `rows` rows.
    pub fn step(&self, rows: usize) {
        self.steps.fetch_add(1, Ordering::Relaxed);
        self.rows.fetch_add(rows as u64, Ordering::Relaxed);
    }

    /// A step Prometheus did not answer: skipped, never invented.
    pub fn skipped(&self) {
        self.steps.fetch_add(1, Ordering::Relaxed);
        self.skipped.fetch_add(1, Ordering::Relaxed);
    }

    pub fn backlog(&self, rows: usize) {
        self.backlog.store(rows as u64, Ordering::Relaxed);
    }

    pub fn flushed(&self, at_unix: f64) {
        self.last_flush.store(at_unix.to_bits(), Ordering::Relaxed);
    }

    pub fn flush_failed(&self) {
        self.flush_failures.fetch_add(1, Ordering::Relaxed);
    }

    pub fn render(&self) -> String {
        let mut o = String::new();
        let series: [(&str, &str, &str, f64); 6] = [
            ("autoscaler_collector_steps_total", "counter", "Steps of the live loop (one row per service each).", self.steps.load(Ordering::Relaxed) as f64),
            (
                "autoscaler_collector_skipped_steps_total",
                "counter",
                "Steps skipped because Prometheus did not answer (their rows are missing, never invented).",
                self.skipped.load(Ordering::Relaxed) as f64,
            ),
            ("autoscaler_collector_rows_total", "counter", "Rows taken from Prometheus.", self.rows.load(Ordering::Relaxed) as f64),
            (
                "autoscaler_collector_backlog_rows",
                "gauge",
                "Rows taken but not yet written to the day files (written at each flush; more while the output is away).",
                self.backlog.load(Ordering::Relaxed) as f64,
            ),
            (
                "autoscaler_collector_flush_failures_total",
                "counter",
                "Writes of the day files that failed (their rows are kept for the next).",
                self.flush_failures.load(Ordering::Relaxed) as f64,
            ),
            (
                "autoscaler_collector_last_flush_timestamp_seconds",
                "gauge",
                "When the day files were last written, seconds since the epoch (0: not yet).",
                f64::from_bits(self.last_flush.load(Ordering::Relaxed)),
            ),
        ];
        for (name, kind, help, value) in series {
            let _ = writeln!(o, "# HELP {name} {help}\n# TYPE {name} {kind}\n{name} {value}");
        }
        o
    }
}

/// Serves `GET /metrics` on `listener` until the process ends.
pub async fn serve(listener: tokio::net::TcpListener, metrics: std::sync::Arc<CollectorMetrics>) {
    use axum::routing::get;
    let app = axum::Router::new().route(
        "/metrics",
        get(move || {
            let m = metrics.clone();
            async move { ([(axum::http::header::CONTENT_TYPE, "text/plain; version=0.0.4")], m.render()) }
        }),
    );
    if let Err(e) = axum::serve(listener, app).await {
        tracing::warn!("the collector's /metrics stopped: {e}");
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_collector_counts_its_steps_skips_and_rows() {
        let m = CollectorMetrics::default();
        m.step(7);
        m.skipped();
        m.step(7);
        m.backlog(3);
        m.flushed(1.7e9);
        let text = m.render();
        for line in [
            "autoscaler_collector_steps_total 3",
            "autoscaler_collector_skipped_steps_total 1",
            "autoscaler_collector_rows_total 14",
            "autoscaler_collector_backlog_rows 3",
            "autoscaler_collector_last_flush_timestamp_seconds 1700000000",
        ] {
            assert!(text.contains(&format!("\n{line}\n")), "lacks {line}:\n{text}");
        }
    }
}
