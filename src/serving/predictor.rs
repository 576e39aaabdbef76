//! The predictor: a promoted model, each service's recent rows, and the guardrails. It takes a
//! raw 23-column row and answers with a [`Decision`], computing every feature itself.

use std::collections::{HashMap, VecDeque};
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, RwLock};

use anyhow::{Context, Result};
use serde::{Deserialize, Serialize};

use super::features::{self, History, RawRow};
use crate::artifacts::models::Registry;
use crate::models::model::Model;
use crate::models::torch_runtime::DeviceChoice;

/// What the caller should do, with why: the old `get_scaling_decision` fields.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Decision {
    pub service_name: String,
    pub current_replicas: u32,
    pub predicted_replicas: u32,
    pub action: String,
    pub change: i32,
    pub confidence: f64,
    pub reasoning: String,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct Guardrails {
    pub min_replicas: u32,
    pub max_replicas: u32,
    /// The most replicas one decision may add or remove.
    pub max_step: u32,
}

impl Default for Guardrails {
    fn default() -> Guardrails {
        Guardrails { min_replicas: 1, max_replicas: 10, max_step: 2 }
    }
}

/// A loaded model and where it came from.
pub struct Loaded {
    pub model: Model,
    pub name: String,
    pub version: String,
    pub dir: PathBuf,
    /// How to build its feature vector, or the features this server cannot compute.
    plan: Result<features::Plan, Vec<String>>,
    /// The services of its one-hot columns.
    services: Vec<String>,
}

impl Loaded {
    pub fn from_dir(dir: &Path, name: &str, version: &str) -> Result<Loaded> {
        let model = Model::load(dir, DeviceChoice::Cpu).with_context(|| format!("loading {name} {version} from {}", dir.display()))?;
        let plan = features::Plan::new(&model.meta().features, "service_");
        let services = model.meta().features.iter().filter_map(|f| f.strip_prefix("service_")).map(str::to_string).collect();
        Ok(Loaded { model, name: name.to_string(), version: version.to_string(), dir: dir.to_path_buf(), plan, services })
    }

    /// The promoted version of `name` in a registry.
    pub fn promoted(registry: &Registry, name: &str) -> Result<Option<Loaded>> {
        match registry.serving_dir(name)? {
            Some((version, dir)) => Ok(Some(Loaded::from_dir(&dir, name, &version)?)),
            None => Ok(None),
        }
    }
}

#[derive(Default)]
struct ServiceState {
    history: History,
    /// The last rows' features, newest last (the LSTM-CNN reads a window of them).
    recent: VecDeque<features::Named>,
}

/// Holds at most this many recent feature rows per service (the longest window any model reads).
const KEEP: usize = 64;

pub struct Predictor {
    model: RwLock<Option<Arc<Loaded>>>,
    guard: Guardrails,
    services: Mutex<HashMap<String, ServiceState>>,
}

/// A decision and how it was reached, for metrics.
pub struct Outcome {
    pub decision: Decision,
    /// Why the model was not used, when it was not.
    pub fallback: Option<&'static str>,
}

impl Predictor {
    pub fn new(model: Option<Loaded>, guard: Guardrails) -> Predictor {
        Predictor { model: RwLock::new(model.map(Arc::new)), guard, services: Mutex::new(HashMap::new()) }
    }

    /// Swaps the model in; requests in flight finish with the one they started with.
    pub fn replace_model(&self, model: Option<Loaded>) {
        *self.model.write().unwrap_or_else(|p| p.into_inner()) = model.map(Arc::new);
    }

    pub fn model(&self) -> Option<Arc<Loaded>> {
        self.model.read().unwrap_or_else(|p| p.into_inner()).clone()
    }

    /// The decision for one row. The row joins its service's history whatever happens, unless
    /// it is older than the newest row already seen (then it is refused as invalid).
    pub fn decide(&self, row: &RawRow) -> Result<Outcome, features::FieldError> {
        let model = self.model();
        let current = row.replicas();
        let mut services = self.services.lock().unwrap_or_else(|p| p.into_inner());
        let state = services.entry(row.service.clone()).or_default();
        if state.history.last_timestamp.is_some_and(|t| row.timestamp <= t) {
            return Err(features::FieldError {
                field: crate::metrics::TIMESTAMP.into(),
                message: format!("is not after the last row of `{}` already seen; send rows in time order", row.service),
            });
        }
        let named = state.history.push(row);
        if state.recent.len() == KEEP {
            state.recent.pop_front();
        }
        state.recent.push_back(named);
        let std = named[features::position("cpu_rolling_std").expect("a computed feature")];
        let confidence = confidence(row.get("cpu_usage_percent_slope"), std);
        let Some(loaded) = model else {
            return Ok(self.fallback(row, "no_model", "no promoted model is loaded; keeping the current replicas"));
        };
        if !loaded.services.contains(&row.service) {
            let reason = format!("service `{}` is unknown to the model (trained on {}); keeping the current replicas", row.service, loaded.services.join(", "));
            return Ok(self.fallback(row, "unknown_service", reason));
        }
        let plan = match &loaded.plan {
            Ok(p) => p,
            Err(missing) => return Ok(self.fallback(row, "model_error", format!("the model needs features this server does not compute: {}", missing.join(", ")))),
        };
        let nf = loaded.model.meta().features.len();
        let output = match &loaded.model {
            Model::RandomForest { forest, .. } => {
                let mut x = Vec::with_capacity(nf);
                plan.extend(&named, &row.service, &mut x);
                forest.predict_row(&x)
            }
            Model::LstmCnn { net, .. } => {
                let len = net.params.sequence_length;
                if state.recent.len() < len {
                    let reason = format!("the LSTM-CNN needs {len} rows of `{}`, has {}; keeping the current replicas", row.service, state.recent.len());
                    return Ok(self.fallback(row, "warming_up", reason));
                }
                let mut window = Vec::with_capacity(len * nf);
                for named in state.recent.iter().skip(state.recent.len() - len) {
                    plan.extend(named, &row.service, &mut window);
                }
                match net.predict_raw(&window) {
                    Ok(p) => p,
                    Err(e) => return Ok(self.fallback(row, "model_error", format!("the model failed: {e}"))),
                }
            }
        };
        drop(services);
        Ok(Outcome { decision: self.decision(row, current, output, confidence), fallback: None })
    }

    /// The model's output turned into replicas within the guardrails, with its reasons.
    fn decision(&self, row: &RawRow, current: f64, output: f64, confidence: f64) -> Decision {
        let g = &self.guard;
        let (lo, hi) = (g.min_replicas as f64, g.max_replicas as f64);
        let model_says = crate::models::metrics::replicas(output, lo, hi);
        let step = g.max_step as f64;
        let predicted = model_says.clamp((current - step).max(lo), (current + step).min(hi).max(lo));
        let change = predicted - current;
        let action = crate::evaluation::Action::of(current, predicted);
        let mut reasons = reasons(row, action);
        if predicted != model_says {
            reasons.push(format!("the model said {model_says}; limited to ±{} per decision", g.max_step));
        }
        Decision {
            service_name: row.service.clone(),
            current_replicas: current as u32,
            predicted_replicas: predicted as u32,
            action: action.name().to_string(),
            // The old predictor's `change` is the size of the step; `action` gives its direction.
            change: change.abs() as i32,
            confidence,
            reasoning: reasons.join("; "),
        }
    }

    fn fallback(&self, row: &RawRow, kind: &'static str, reason: impl Into<String>) -> Outcome {
        Outcome { decision: fallback(&row.service, row.replicas(), reason.into()), fallback: Some(kind) }
    }
}

/// Keep the current replicas, saying why (a missing model, an unknown service, a bad row).
pub fn fallback(service: &str, current: f64, reason: String) -> Decision {
    Decision {
        service_name: service.to_string(),
        current_replicas: current as u32,
        predicted_replicas: current as u32,
        action: "no_change".into(),
        change: 0,
        confidence: 0.4,
        reasoning: format!("fallback: {reason}"),
    }
}

/// 1 − min(|CPU slope|/100, 0.3) − min(CPU rolling std/100, 0.3), within [0.4, 1], rounded to
/// two decimals as Python's `round(x, 2)` does: on the exact binary value, ties to even, so 0.625
/// gives 0.62 where `(x·100).round()/100` gives 0.63.
pub fn confidence(cpu_slope: f64, cpu_rolling_std: f64) -> f64 {
    let c = 1.0 - (cpu_slope.abs() / 100.0).min(0.3) - (cpu_rolling_std / 100.0).min(0.3);
    format!("{:.2}", c.clamp(0.4, 1.0)).parse().expect("a formatted float parses")
}

/// The metrics behind an action, in the old predictor's words and thresholds
/// (`_generate_reasoning` of its inference.py), so dashboards and alerts keyed on them still match.
fn reasons(row: &RawRow, action: crate::evaluation::Action) -> Vec<String> {
    use crate::evaluation::Action;
    let (cpu, ram, rt, err) = (row.get("cpu_usage_percent"), row.get("ram_usage_percent"), row.get("response_time_ms"), row.get("error_rate"));
    let requests = row.get("request_count_per_second");
    let mut r = Vec::new();
    match action {
        Action::ScaleUp => {
            if cpu > 70.0 {
                r.push(format!("High CPU usage ({cpu:.1}%)"));
            }
            if ram > 75.0 {
                r.push(format!("High RAM usage ({ram:.1}%)"));
            }
            if rt > 500.0 {
                r.push(format!("High response time ({rt:.1}ms)"));
            }
            if err > 0.05 {
                r.push(format!("High error rate ({:.2}%)", 100.0 * err));
            }
            if r.is_empty() {
                r.push("Predicted increase in load".to_string());
            }
        }
        Action::ScaleDown => {
            if cpu < 30.0 && ram < 35.0 {
                r.push(format!("Low resource utilization (CPU: {cpu:.1}%, RAM: {ram:.1}%)"));
            }
            if requests < 1.0 {
                r.push(format!("Low request rate ({requests:.2} req/s)"));
            }
            if r.is_empty() {
                r.push("Resources are under-utilized".to_string());
            }
        }
        Action::NoChange => r.push("Current capacity is optimal".to_string()),
    }
    r
}

#[cfg(test)]
mod tests {
    use super::*;

    fn row(values: &[(&str, f64)]) -> RawRow {
        let mut v = serde_json::json!({ "timestamp": "2025-10-13T10:00:00", "service_name": "api" });
        for (n, _) in crate::metrics::NUMERIC {
            v[n] = serde_json::json!(1.0);
        }
        v["error_rate"] = serde_json::json!(0.0);
        for (n, x) in values {
            v[*n] = serde_json::json!(x);
        }
        RawRow::from_json(&v).unwrap()
    }

    #[test]
    fn reasons_are_the_old_predictors_words() {
        use crate::evaluation::Action;
        let hot = row(&[("cpu_usage_percent", 75.5), ("ram_usage_percent", 80.0), ("response_time_ms", 612.34), ("error_rate", 0.0734)]);
        assert_eq!(
            reasons(&hot, Action::ScaleUp).join("; "),
            "High CPU usage (75.5%); High RAM usage (80.0%); High response time (612.3ms); High error rate (7.34%)"
        );
        assert_eq!(reasons(&row(&[("cpu_usage_percent", 50.0)]), Action::ScaleUp), ["Predicted increase in load"]);
        let idle = row(&[("cpu_usage_percent", 12.0), ("ram_usage_percent", 20.0), ("request_count_per_second", 0.5)]);
        assert_eq!(reasons(&idle, Action::ScaleDown).join("; "), "Low resource utilization (CPU: 12.0%, RAM: 20.0%); Low request rate (0.50 req/s)");
        let busy_ram = row(&[("cpu_usage_percent", 12.0), ("ram_usage_percent", 50.0), ("request_count_per_second", 40.0)]);
        assert_eq!(reasons(&busy_ram, Action::ScaleDown), ["Resources are under-utilized"]);
        assert_eq!(reasons(&idle, Action::NoChange), ["Current capacity is optimal"]);
    }

    #[test]
    fn change_is_the_size_of_the_step_as_before() {
        let p = Predictor::new(None, Guardrails::default());
        let r = row(&[("replica_count", 5.0)]);
        let down = p.decision(&r, 5.0, 2.0, 1.0);
        assert_eq!((down.action.as_str(), down.change, down.predicted_replicas), ("scale_down", 2, 3));
        let up = p.decision(&r, 5.0, 7.0, 1.0);
        assert_eq!((up.action.as_str(), up.change), ("scale_up", 2));
    }

    #[test]
    fn confidence_follows_the_spec() {
        assert_eq!(confidence(0.0, 0.0), 1.0);
        assert_eq!(confidence(-12.345, 5.0), 0.83);
        assert_eq!(confidence(80.0, 90.0), 0.4);
        // Python's round(x, 2): an exact tie goes to even (0.625 → 0.62), the rest by the stored value.
        assert_eq!(confidence(25.0, 12.5), 0.62);
        assert_eq!(confidence(0.0, 12.5), 0.88);
        assert_eq!(confidence(17.5, 0.0), 0.82);
    }
}
