//! What `GET /metrics` exposes, in Prometheus' classic text format (what `promtool check
//! metrics` and every Prometheus read).

use std::collections::BTreeMap;
use std::fmt::Write;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use super::predictor::{Decision, Record, Term};

/// Upper bounds of the decision latency histogram, in seconds.
const BUCKETS: [f64; 14] = [5e-6, 1e-5, 2.5e-5, 5e-5, 1e-4, 2.5e-4, 5e-4, 1e-3, 2.5e-3, 5e-3, 1e-2, 2.5e-2, 0.1, 1.0];

struct ServiceGauges {
    predicted: f64,
    current: f64,
    confidence: f64,
    /// When the last decision was made, for its age at /scale.
    at: Instant,
    /// The same, seconds since the epoch, for alerts (`time() - …`).
    at_unix: f64,
    /// The decision's place among all decisions: the smallest makes room at the bound.
    seq: u64,
    /// scale_down, no_change, scale_up
    decisions: [u64; 3],
    record: Record,
    /// Decisions by the term that set them, in `Term::ALL` order.
    terms: [u64; 3],
    fallbacks: BTreeMap<&'static str, u64>,
    /// The last decision's fallback, if it was one.
    fallback: Option<&'static str>,
    /// The last decision's reasons, for /scale (why it scaled).
    reasoning: String,
}

/// The last decision for a service, as `/scale` reports it.
pub struct Last {
    pub predicted: f64,
    pub current: f64,
    pub confidence: f64,
    pub age: Duration,
    pub record: Record,
    pub fallback: Option<&'static str>,
    pub fallbacks: BTreeMap<&'static str, u64>,
    pub reasoning: String,
}

#[derive(Default)]
struct State {
    /// At most `Metrics::max_services`: the service whose last decision is oldest makes room
    /// (its counters start again from zero if it comes back).
    services: BTreeMap<String, ServiceGauges>,
    /// Services whose series were dropped to make room.
    evicted: u64,
    /// Decisions recorded so far.
    seq: u64,
    buckets: [u64; BUCKETS.len()],
    latency_sum: f64,
    latency_count: u64,
    rejected: u64,
    /// Steps at which Prometheus (`serve --prometheus`) did not answer.
    pull_failures: u64,
}

pub struct Exposition {
    state: Mutex<State>,
    max_services: usize,
}

impl Default for Exposition {
    fn default() -> Exposition {
        Exposition::new(super::predictor::MAX_SERVICES)
    }
}

/// A label value as the text format wants it.
fn label(v: &str) -> String {
    v.replace('\\', "\\\\").replace('"', "\\\"").replace('\n', "\\n")
}

impl Exposition {
    /// Series for at most `max_services` services (`--max-services`, as the predictor's state).
    pub fn new(max_services: usize) -> Exposition {
        Exposition { state: Mutex::new(State::default()), max_services: max_services.max(1) }
    }

    pub fn record(&self, d: &Decision, fallback: Option<&'static str>, record: &Record, seconds: f64) {
        let mut s = self.state.lock().unwrap_or_else(|p| p.into_inner());
        s.seq += 1;
        let seq = s.seq;
        if !s.services.contains_key(&d.service_name) && s.services.len() >= self.max_services {
            if let Some(oldest) = s.services.iter().min_by_key(|(_, g)| g.seq).map(|(k, _)| k.clone()) {
                s.services.remove(&oldest);
                s.evicted += 1;
            }
        }
        let g = s.services.entry(d.service_name.clone()).or_insert_with(|| ServiceGauges {
            predicted: 0.0,
            current: 0.0,
            confidence: 0.0,
            at: Instant::now(),
            at_unix: 0.0,
            seq: 0,
            decisions: [0; 3],
            record: *record,
            terms: [0; 3],
            fallbacks: BTreeMap::new(),
            fallback: None,
            reasoning: String::new(),
        });
        g.at = Instant::now();
        g.at_unix = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map_or(0.0, |d| d.as_secs_f64());
        g.record = *record;
        g.terms[Term::ALL.iter().position(|t| *t == record.decided_by).expect("a term")] += 1;
        g.fallback = fallback;
        g.reasoning.clone_from(&d.reasoning);
        g.seq = seq;
        g.predicted = d.predicted_replicas as f64;
        g.current = d.current_replicas as f64;
        g.confidence = d.confidence;
        let i = match d.action.as_str() {
            "scale_down" => 0,
            "scale_up" => 2,
            _ => 1,
        };
        g.decisions[i] += 1;
        if let Some(f) = fallback {
            *g.fallbacks.entry(f).or_default() += 1;
        }
        for (b, le) in BUCKETS.iter().enumerate() {
            if seconds <= *le {
                s.buckets[b] += 1;
            }
        }
        s.latency_sum += seconds;
        s.latency_count += 1;
    }

    pub fn services(&self) -> usize {
        self.state.lock().unwrap_or_else(|p| p.into_inner()).services.len()
    }

    pub fn rejected(&self) {
        self.state.lock().unwrap_or_else(|p| p.into_inner()).rejected += 1;
    }

    pub fn pull_failed(&self) {
        self.state.lock().unwrap_or_else(|p| p.into_inner()).pull_failures += 1;
    }

    /// The last decision for a service.
    pub fn last(&self, service: &str) -> Option<Last> {
        let s = self.state.lock().unwrap_or_else(|p| p.into_inner());
        s.services.get(service).map(|g| Last {
            predicted: g.predicted,
            current: g.current,
            confidence: g.confidence,
            age: g.at.elapsed(),
            record: g.record,
            fallback: g.fallback,
            fallbacks: g.fallbacks.clone(),
            reasoning: g.reasoning.clone(),
        })
    }

    pub fn render(&self, model: Option<(&str, &str)>) -> String {
        let s = self.state.lock().unwrap_or_else(|p| p.into_inner());
        let mut o = String::new();
        let _ = writeln!(o, "# HELP autoscaler_model_info The model being served (1), by model and version.\n# TYPE autoscaler_model_info gauge");
        if let Some((m, v)) = model {
            let _ = writeln!(o, "autoscaler_model_info{{model=\"{}\",version=\"{}\"}} 1", label(m), label(v));
        }
        // Per service, at most --max-services of each (a service's series go when it makes room).
        let gauges: [(&str, &str, fn(&ServiceGauges) -> Option<f64>); 13] = [
            ("autoscaler_predicted_replicas", "Replicas the last decision recommends (the decided replicas), per service.", |g| Some(g.predicted)),
            ("autoscaler_current_replicas", "Replicas the service reported in its last row.", |g| Some(g.current)),
            ("autoscaler_confidence", "Confidence of the last decision (0.4 to 1), per service.", |g| Some(g.confidence)),
            (
                "autoscaler_forecast_replicas",
                "The model's forecast in pods at the last decision (risk offset added, before the guardrails); absent when it gave none.",
                |g| g.record.forecast,
            ),
            ("autoscaler_reactive_replicas", "The reactive HPA's recommendation in pods at the last decision.", |g| Some(g.record.reactive)),
            ("autoscaler_last_row_timestamp_seconds", "Timestamp of the service's last row, seconds since the epoch.", |g| Some(g.record.row_time)),
            ("autoscaler_last_decision_timestamp_seconds", "When the service's last decision was made, seconds since the epoch.", |g| Some(g.at_unix)),
            ("autoscaler_cpu_utilization_ratio", "CPU utilisation in the service's last row (0.6: 60 %).", |g| Some(g.record.cpu_percent / 100.0)),
            ("autoscaler_target_cpu_utilization_ratio", "Target CPU utilisation of the HPA the served policy runs, at the last decision.", |g| {
                Some(g.record.target_cpu / 100.0)
            }),
            ("autoscaler_requests_per_second", "Request rate in the service's last row.", |g| Some(g.record.requests_per_second)),
            ("autoscaler_latency_p95_seconds", "P95 response time in the service's last row.", |g| Some(g.record.latency_p95_ms / 1000.0)),
            (
                "autoscaler_forecast_error_pods",
                "Mean absolute error in pods of the service's forecasts judged in the last window against the demand that came; absent before one is judged.",
                |g| g.record.errors.map(|e| e.mean_error_pods),
            ),
            ("autoscaler_forecast_short_ratio", "Share of those forecasts that fell short of the demand by a pod or more.", |g| {
                g.record.errors.map(|e| e.short_share)
            }),
        ];
        for (name, help, get) in gauges {
            let _ = writeln!(o, "# HELP {name} {help}\n# TYPE {name} gauge");
            for (svc, g) in &s.services {
                if let Some(v) = get(g) {
                    let _ = writeln!(o, "{name}{{service=\"{}\"}} {v}", label(svc));
                }
            }
        }
        let name = "autoscaler_decisions_by_term_total";
        let _ = writeln!(
            o,
            "# HELP {name} Decisions per service by the term that set the replicas: forecast, reactive (the HPA, or a fallback) or both.\n# TYPE {name} counter"
        );
        for (svc, g) in &s.services {
            for (i, term) in Term::ALL.iter().enumerate() {
                let _ = writeln!(o, "{name}{{service=\"{}\",term=\"{}\"}} {}", label(svc), term.name(), g.terms[i]);
            }
        }
        let _ = writeln!(o, "# HELP autoscaler_decisions_total Decisions made, per service and action.\n# TYPE autoscaler_decisions_total counter");
        for (svc, g) in &s.services {
            for (i, action) in ["scale_down", "no_change", "scale_up"].iter().enumerate() {
                let _ = writeln!(o, "autoscaler_decisions_total{{service=\"{}\",action=\"{action}\"}} {}", label(svc), g.decisions[i]);
            }
        }
        let _ = writeln!(
            o,
            "# HELP autoscaler_fallbacks_total Decisions the reactive HPA made because the model could not, per service and reason.\n# TYPE autoscaler_fallbacks_total counter"
        );
        for (svc, g) in &s.services {
            for (reason, n) in &g.fallbacks {
                let _ = writeln!(o, "autoscaler_fallbacks_total{{service=\"{}\",reason=\"{reason}\"}} {n}", label(svc));
            }
        }
        let _ = writeln!(
            o,
            "# HELP autoscaler_services Services with state in this server (at most --max-services).\n# TYPE autoscaler_services gauge\nautoscaler_services {}",
            s.services.len()
        );
        let _ = writeln!(
            o,
            "# HELP autoscaler_evicted_services_total Services whose state made room for another at --max-services (their series start again if they come back).\n# TYPE autoscaler_evicted_services_total counter\nautoscaler_evicted_services_total {}",
            s.evicted
        );
        let _ = writeln!(
            o,
            "# HELP autoscaler_rejected_rows_total Rows refused as invalid (4xx).\n# TYPE autoscaler_rejected_rows_total counter\nautoscaler_rejected_rows_total {}",
            s.rejected
        );
        let _ = writeln!(
            o,
            "# HELP autoscaler_prometheus_failures_total Steps at which Prometheus did not answer (serve --prometheus).\n# TYPE autoscaler_prometheus_failures_total counter\nautoscaler_prometheus_failures_total {}",
            s.pull_failures
        );
        let name = "autoscaler_decision_latency_seconds";
        let _ = writeln!(o, "# HELP {name} Time to reach a decision, features and model included.\n# TYPE {name} histogram");
        for (b, le) in BUCKETS.iter().enumerate() {
            let _ = writeln!(o, "{name}_bucket{{le=\"{le}\"}} {}", s.buckets[b]);
        }
        let _ = writeln!(o, "{name}_bucket{{le=\"+Inf\"}} {}\n{name}_sum {}\n{name}_count {}", s.latency_count, s.latency_sum, s.latency_count);
        o
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn decision(service: &str) -> Decision {
        Decision {
            service_name: service.into(),
            current_replicas: 3,
            predicted_replicas: 4,
            action: "scale_up".into(),
            change: 1,
            confidence: 1.0,
            reasoning: String::new(),
        }
    }

    #[test]
    fn series_stay_within_the_service_bound() {
        let m = Exposition::new(2);
        let record = Record {
            forecast: Some(4.0),
            reactive: 3.0,
            decided_by: Term::Forecast,
            row_time: 1.7e9,
            cpu_percent: 55.0,
            requests_per_second: 40.0,
            latency_p95_ms: 250.0,
            target_cpu: 60.0,
            errors: Some(super::super::drift::Errors { judged: 20, short_share: 0.25, mean_error_pods: 0.5 }),
        };
        for s in ["a", "b", "a", "c"] {
            m.record(&decision(s), (s == "b").then_some("no_model"), &record, 1e-5);
        }
        assert_eq!(m.services(), 2);
        assert!(m.last("b").is_none(), "b's last decision is the oldest");
        assert!(m.last("a").is_some() && m.last("c").is_some());
        let text = m.render(None);
        assert!(text.contains("autoscaler_evicted_services_total 1"), "{text}");
        assert!(text.contains("autoscaler_services 2"), "{text}");
        assert!(!text.contains("service=\"b\""), "an evicted service's series go with it: {text}");
        for line in [
            "autoscaler_forecast_replicas{service=\"a\"} 4",
            "autoscaler_reactive_replicas{service=\"c\"} 3",
            "autoscaler_decisions_by_term_total{service=\"a\",term=\"forecast\"} 2",
            "autoscaler_last_row_timestamp_seconds{service=\"a\"} 1700000000",
            "autoscaler_cpu_utilization_ratio{service=\"a\"} 0.55",
            "autoscaler_target_cpu_utilization_ratio{service=\"a\"} 0.6",
            "autoscaler_latency_p95_seconds{service=\"c\"} 0.25",
            "autoscaler_forecast_error_pods{service=\"a\"} 0.5",
            "autoscaler_forecast_short_ratio{service=\"a\"} 0.25",
        ] {
            assert!(text.contains(line), "lacks {line}: {text}");
        }
    }
}
