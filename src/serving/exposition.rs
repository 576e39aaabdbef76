//! What `GET /metrics` exposes, in Prometheus' classic text format (what `promtool check
//! metrics` and every Prometheus read).

use std::collections::BTreeMap;
use std::fmt::Write;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use super::predictor::Decision;

/// Upper bounds of the decision latency histogram, in seconds.
const BUCKETS: [f64; 14] = [5e-6, 1e-5, 2.5e-5, 5e-5, 1e-4, 2.5e-4, 5e-4, 1e-3, 2.5e-3, 5e-3, 1e-2, 2.5e-2, 0.1, 1.0];

struct ServiceGauges {
    predicted: f64,
    current: f64,
    confidence: f64,
    /// When the last decision was made, for its age at /scale.
    at: Instant,
    /// The decision's place among all decisions: the smallest makes room at the bound.
    seq: u64,
    /// scale_down, no_change, scale_up
    decisions: [u64; 3],
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
    fallbacks: BTreeMap<&'static str, u64>,
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

    pub fn record(&self, d: &Decision, fallback: Option<&'static str>, seconds: f64) {
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
            seq: 0,
            decisions: [0; 3],
        });
        g.at = Instant::now();
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
            *s.fallbacks.entry(f).or_default() += 1;
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

    /// The last decision for a service: (predicted, current, confidence, age).
    pub fn last(&self, service: &str) -> Option<(f64, f64, f64, Duration)> {
        let s = self.state.lock().unwrap_or_else(|p| p.into_inner());
        s.services.get(service).map(|g| (g.predicted, g.current, g.confidence, g.at.elapsed()))
    }

    pub fn render(&self, model: Option<(&str, &str)>) -> String {
        let s = self.state.lock().unwrap_or_else(|p| p.into_inner());
        let mut o = String::new();
        let _ = writeln!(o, "# HELP autoscaler_model_info The model being served (1), by model and version.\n# TYPE autoscaler_model_info gauge");
        if let Some((m, v)) = model {
            let _ = writeln!(o, "autoscaler_model_info{{model=\"{}\",version=\"{}\"}} 1", label(m), label(v));
        }
        let gauges: [(&str, &str, fn(&ServiceGauges) -> f64); 3] = [
            ("autoscaler_predicted_replicas", "Replicas the last decision recommends, per service.", |g| g.predicted),
            ("autoscaler_current_replicas", "Replicas the service reported in its last row.", |g| g.current),
            ("autoscaler_confidence", "Confidence of the last decision (0.4 to 1), per service.", |g| g.confidence),
        ];
        for (name, help, get) in gauges {
            let _ = writeln!(o, "# HELP {name} {help}\n# TYPE {name} gauge");
            for (svc, g) in &s.services {
                let _ = writeln!(o, "{name}{{service=\"{}\"}} {}", label(svc), get(g));
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
            "# HELP autoscaler_fallbacks_total Decisions that kept the current replicas instead of asking the model, by reason.\n# TYPE autoscaler_fallbacks_total counter"
        );
        for (reason, n) in &s.fallbacks {
            let _ = writeln!(o, "autoscaler_fallbacks_total{{reason=\"{reason}\"}} {n}");
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
        for s in ["a", "b", "a", "c"] {
            m.record(&decision(s), None, 1e-5);
        }
        assert_eq!(m.services(), 2);
        assert!(m.last("b").is_none(), "b's last decision is the oldest");
        assert!(m.last("a").is_some() && m.last("c").is_some());
        let text = m.render(None);
        assert!(text.contains("autoscaler_evicted_services_total 1"), "{text}");
        assert!(text.contains("autoscaler_services 2"), "{text}");
    }
}
