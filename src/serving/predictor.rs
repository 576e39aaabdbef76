//! The predictor: a promoted model, each service's recent rows, and the guardrails. It takes a
//! raw 23-column row and answers with a [`Decision`], computing every feature itself.

use std::collections::VecDeque;
use std::path::{Path, PathBuf};
use std::sync::{Arc, RwLock};
use std::time::Duration;

use anyhow::{Context, Result};
use serde::{Deserialize, Serialize};

use super::features::{self, FieldError, History, RawRow};
use super::services::Bounded;
use crate::artifacts::models::Registry;
use crate::evaluation::policy::PolicySpec;
use crate::hpa::{Ask, Hpa, OnlineHpa, Recommendation};
use crate::models::model::Model;
use crate::models::torch_runtime::DeviceChoice;
use crate::models::{ModelKind, SERVICE_PREFIX};

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
    /// The reactive HPA's target CPU % when no model decides (a model's version brings its own).
    pub hpa_target: f64,
    /// Hold each decision this long against a lower one. 0 by default: what acts on decisions
    /// (KEDA's HPA, `pipeline simulate --scaler`) already holds scale-downs for its window, and
    /// a second hold here made every pod wait out both, ten minutes where the replay had five.
    pub stabilization_seconds: f64,
    /// When a service's forecasts count as drifting (the reactive HPA then decides for it).
    pub drift: super::drift::DriftBounds,
    /// Minutes of a service's rows before the pooled forest forecasts for it: its capacity is
    /// fitted on them (`serving::capacity`).
    pub capacity_min_minutes: f64,
}

impl Default for Guardrails {
    fn default() -> Guardrails {
        Guardrails {
            min_replicas: 1,
            max_replicas: 10,
            max_step: 2,
            hpa_target: 60.0,
            stabilization_seconds: 0.0,
            drift: Default::default(),
            capacity_min_minutes: super::capacity::DEFAULT_MIN_MINUTES,
        }
    }
}

impl Guardrails {
    /// The reactive HPA that decides when no model does.
    fn reactive(&self) -> Hpa {
        self.held(crate::evaluation::replay::Params::default().hpa(self.hpa_target))
    }

    /// A policy's HPA settings with this server's hold: the replay's stabilisation and rate
    /// limits are the actuator's (the HPA acting on the decisions), applied once downstream, not
    /// again here.
    fn held(&self, r: Hpa) -> Hpa {
        Hpa { scale_down_stabilization_seconds: self.stabilization_seconds, ..r.unheld() }
    }

    fn bounds(&self) -> (f64, f64) {
        (self.min_replicas as f64, self.max_replicas as f64)
    }

    /// Settings no decision could keep, as (the flags at fault, why): checked before a server
    /// starts or a row is read.
    pub fn check(&self) -> Result<(), (&'static str, String)> {
        if self.max_replicas == 0 {
            return Err(("--max-replicas", "must be at least 1".into()));
        }
        if self.min_replicas > self.max_replicas {
            return Err(("--min-replicas/--max-replicas", format!("--min-replicas {} is above --max-replicas {}", self.min_replicas, self.max_replicas)));
        }
        if !(self.hpa_target > 0.0 && self.hpa_target <= 1000.0) {
            return Err(("--hpa-target", format!("{} is not a CPU % the HPA can aim for (0 < target ≤ 1000)", self.hpa_target)));
        }
        if !(0.0..=86_400.0).contains(&self.stabilization_seconds) {
            return Err(("--stabilization-seconds", format!("{} is not within 0..86400 seconds", self.stabilization_seconds)));
        }
        if !(0.0..=1440.0).contains(&self.capacity_min_minutes) {
            return Err(("--capacity-min-minutes", format!("{} is not within 0..1440 minutes", self.capacity_min_minutes)));
        }
        self.drift.check()
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
    /// The services of its one-hot columns, for saying which it knows (`ModelMeta::knows_service`
    /// decides).
    services: Vec<String>,
    /// How its output becomes replicas, as publish promoted it.
    pub policy: PolicySpec,
    /// The member of its risk family publish chose: what each service's forecast is raised by.
    pub risk: Option<crate::evaluation::risk::RiskMember>,
    /// Each service's seasonal profile at the end of its training data (a model that reads
    /// seasonal features): a service new to this server starts from it.
    profiles: crate::features::seasonal::Profiles,
    /// The pooled forest the version carries (`models::pooled`), for services this model was
    /// not trained on and those where it replayed no worse.
    pooled: Option<PooledForest>,
}

/// A version's pooled forest and the services it serves.
pub struct PooledForest {
    model: Model,
    plan: Result<features::Plan, Vec<String>>,
    choice: crate::models::pooled::PooledChoice,
}

impl Loaded {
    pub fn from_dir(dir: &Path, kind: ModelKind, version: &str, policy: PolicySpec) -> Result<Loaded> {
        let name = kind.as_str();
        let model = Model::load(dir, DeviceChoice::Cpu).with_context(|| format!("loading {name} {version} from {}", dir.display()))?;
        let plan = features::Plan::new(&model.meta().features, SERVICE_PREFIX);
        let services = model.meta().features.iter().filter_map(|f| f.strip_prefix(SERVICE_PREFIX)).map(str::to_string).collect();
        let profiles = crate::features::seasonal::Profiles::load(dir)?.unwrap_or_default();
        Ok(Loaded {
            model,
            name: name.to_string(),
            version: version.to_string(),
            dir: dir.to_path_buf(),
            plan,
            services,
            policy,
            risk: None,
            profiles,
            pooled: None,
        })
    }

    /// With the pooled forest of the version's `pooled/` folder, serving as `choice` says.
    pub fn with_pooled(mut self, choice: crate::models::pooled::PooledChoice) -> Result<Loaded> {
        let dir = self.dir.join(crate::models::pooled::DIR);
        let model = Model::load(&dir, DeviceChoice::Cpu)
            .with_context(|| format!("loading the pooled forest of {} {} from {}", self.name, self.version, dir.display()))?;
        let plan = features::Plan::new(&model.meta().features, SERVICE_PREFIX);
        self.pooled = Some(PooledForest { model, plan, choice });
        Ok(self)
    }

    /// Whether a pooled forest comes with it.
    pub fn has_pooled(&self) -> bool {
        self.pooled.is_some()
    }

    /// The version's own model alone, as it served before versions carried a pooled forest.
    pub fn without_pooled(self) -> Loaded {
        Loaded { pooled: None, ..self }
    }

    /// Whether the version gives `service` to its pooled forest (which forecasts for it once the
    /// server has fitted its capacity; a service its own forest knows stays with that until then).
    pub fn pooled_serves(&self, service: &str) -> bool {
        self.pooled.as_ref().is_some_and(|p| p.choice.pooled_serves(service, self.model.meta().knows_service(service)))
    }

    /// The promoted version of `kind` in a registry, with the policy it was promoted with.
    /// Whether its model reads the seasonal features (and so each service's profile).
    pub fn reads_seasonal(&self) -> bool {
        crate::features::seasonal::Profiles::wanted_by(&self.model.meta().features)
    }

    pub fn promoted(registry: &Registry, kind: ModelKind) -> Result<Option<Loaded>> {
        let Some((version, dir)) = registry.serving_dir(kind.as_str())? else { return Ok(None) };
        let info = registry.versions(kind.as_str())?.into_iter().find(|v| v.version == version);
        let policy = info.as_ref().and_then(|v| v.policy.clone()).unwrap_or(PolicySpec::AsPredicted);
        let pooled = info.as_ref().and_then(|v| v.pooled.clone());
        let risk = info.and_then(|v| v.risk);
        let loaded = Loaded { risk, ..Loaded::from_dir(&dir, kind, &version, policy)? };
        Ok(Some(match pooled {
            Some(choice) => loaded.with_pooled(choice)?,
            None => loaded,
        }))
    }
}

#[derive(Default)]
struct ServiceState {
    history: History,
    /// The last rows' features, newest last (the LSTM-CNN reads a window of them).
    recent: VecDeque<features::Named>,
    /// The reactive HPA on this service's rows: the floor under a forecast, and the decision
    /// when no model can give one.
    hpa: OnlineHpa,
    /// Its forecasts against the demand that came.
    monitor: super::drift::Monitor,
    /// What one of its pods serves, fitted on its rows (the pooled forest's load features).
    capacity: super::capacity::OnlineCapacity,
}

/// Holds at most this many recent feature rows per service (the longest window any model reads).
const KEEP: usize = 64;

/// Services kept by default (`serve --max-services`).
pub const MAX_SERVICES: usize = 10_000;

pub struct Predictor {
    model: RwLock<Option<Arc<Loaded>>>,
    guard: Guardrails,
    services: Bounded<ServiceState>,
    /// Rows stamped further ahead of this machine's clock are refused; none: no clock to compare
    /// with (`pipeline predict` replays files of any date).
    max_clock_skew: Option<Duration>,
}

/// A decision and how it was reached, for metrics.
pub struct Outcome {
    pub decision: Decision,
    /// Why the model was not used, when it was not.
    pub fallback: Option<&'static str>,
    /// A service whose state made room for this row's (at `--max-services`).
    pub evicted: Option<String>,
    /// How the decision was reached, for the decision record (`/metrics`, `/scale`).
    pub record: Record,
}

/// Which term of a policy set the decided replicas.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Term {
    /// The forecast, above the reactive HPA (or alone, under a forecast-only policy).
    Forecast,
    /// The reactive HPA, above the forecast or without one (a fallback).
    Reactive,
    /// Both asked for the same replicas.
    Both,
}

impl Term {
    pub const ALL: [Term; 3] = [Term::Forecast, Term::Reactive, Term::Both];

    pub fn name(self) -> &'static str {
        match self {
            Term::Forecast => "forecast",
            Term::Reactive => "reactive",
            Term::Both => "both",
        }
    }
}

/// The terms behind one decision.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Record {
    /// The model's forecast in pods (its risk offset added, before the guardrails); none when
    /// the model gave none.
    pub forecast: Option<f64>,
    /// The reactive HPA's recommendation in pods.
    pub reactive: f64,
    pub decided_by: Term,
    /// The row's timestamp, seconds since the epoch.
    pub row_time: f64,
    /// The row's CPU %, request rate and P95 latency (ms), and the target CPU % of the HPA the
    /// policy runs: what the dashboard sets the decision against.
    pub cpu_percent: f64,
    pub requests_per_second: f64,
    pub latency_p95_ms: f64,
    pub target_cpu: f64,
    /// The service's recent forecasts against the demand that came (none judged yet: none).
    pub errors: Option<super::drift::Errors>,
}

impl Record {
    /// A record of `row` with the given terms, the row's own numbers and the forecasts' errors.
    fn of(row: &RawRow, forecast: Option<f64>, reactive: f64, decided_by: Term, target_cpu: f64, errors: Option<super::drift::Errors>) -> Record {
        Record {
            forecast,
            reactive,
            decided_by,
            row_time: row.timestamp as f64 / 1e6,
            cpu_percent: row.get("cpu_usage_percent"),
            requests_per_second: row.get("request_count_per_second"),
            latency_p95_ms: row.get("response_time_ms"),
            target_cpu,
            errors,
        }
    }
}

impl Predictor {
    pub fn new(model: Option<Loaded>, guard: Guardrails) -> Predictor {
        Predictor { model: RwLock::new(model.map(Arc::new)), guard, services: Bounded::new(MAX_SERVICES), max_clock_skew: None }
    }

    /// Keeps at most `n` services: the one whose last row is oldest makes room for a new one.
    pub fn max_services(mut self, n: usize) -> Predictor {
        self.services = Bounded::new(n);
        self
    }

    /// Refuses rows stamped more than `skew` ahead of this machine's clock (UTC), so one row
    /// from the future cannot hold a service's clock there and refuse every row after it.
    pub fn max_clock_skew(mut self, skew: Option<Duration>) -> Predictor {
        self.max_clock_skew = skew;
        self
    }

    /// How many services have state.
    pub fn services(&self) -> usize {
        self.services.len()
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
    pub fn decide(&self, row: &RawRow) -> Result<Outcome, FieldError> {
        self.check_clock(row)?;
        let model = self.model();
        let current = row.replicas();
        let slot = self.services.get(&row.service);
        let mut guard = slot.state.lock().unwrap_or_else(|p| p.into_inner());
        let state = &mut *guard;
        if state.history.last_timestamp.is_some_and(|t| row.timestamp <= t) {
            return Err(FieldError {
                field: crate::row::TIMESTAMP.into(),
                message: format!("is not after the last row of `{}` already seen; send rows in time order", row.service),
            });
        }
        if state.history.profile.is_empty()
            && let Some(p) = model.as_ref().and_then(|m| m.profiles.services.get(&row.service))
            && p.ends_before(row.timestamp)
        {
            state.history.profile = p.clone();
        }
        let named = state.history.push(row);
        state.capacity.push(row.timestamp as f64 / 1e6, row.get("request_count_per_second"), row.get("cpu_usage_percent"), row.replicas());
        if state.recent.len() == KEEP {
            state.recent.pop_front();
        }
        state.recent.push_back(named);
        let std = named[features::position("cpu_rolling_std").expect("a computed feature")];
        let confidence = confidence(row.get("cpu_usage_percent_slope"), std);
        let now = row.timestamp as f64 / 1e6;
        let cpu = row.get("cpu_usage_percent");
        let reactive = match model.as_ref().map(|m| &m.policy) {
            Some(PolicySpec::Proactive(r) | PolicySpec::Forecast(r)) => self.guard.held(r.clone()),
            _ => self.guard.reactive(),
        };
        let (lo, hi) = self.guard.bounds();
        // The pods at the top of the HPA's tolerance band, where the demand labels count them.
        let aim = reactive.target * (1.0 + reactive.tolerance);
        let forecast = match &model {
            None => Err(("no_model", "no promoted model is loaded".to_string())),
            Some(loaded) => {
                let raised = loaded.risk.as_ref().map_or(0.0, |r| r.offset(&row.service));
                self.output(loaded, state, row, aim).map(|output| crate::models::scores::replicas(output + raised, lo, hi))
            }
        };
        // Every forecast is judged once its window has passed, trusted or not, so a drifting
        // one is seen coming back.
        // The demand that came is the CPU of the pods serving, not of every pod asked for.
        let serving = state.hpa.ready(now, current, reactive.pod_startup_seconds);
        state.monitor.observe(now, serving, cpu, aim, reactive.pod_startup_seconds, forecast.as_ref().ok().copied(), &self.guard.drift);
        let forecast = match (forecast, state.monitor.drift(&self.guard.drift)) {
            (Ok(_), Some(why)) => Err(("forecast_drift", why)),
            (f, _) => f,
        };
        // The HPA sees every row, whoever decides, so its window and stabilisation stay whole;
        // a proactive policy's forecast is its floor, a forecast policy's decides alone.
        let part = match (model.as_ref().map(|m| &m.policy), &forecast) {
            (Some(PolicySpec::Proactive(_)), Ok(f)) => Ask::Metrics { floor: *f },
            (Some(PolicySpec::Forecast(_)), Ok(f)) => Ask::Replicas(*f),
            _ => Ask::Metrics { floor: 0.0 },
        };
        let rec = state.hpa.decide(now, cpu, current, part, &reactive, (lo, hi));
        let decided_by = match (model.as_ref().map(|m| &m.policy), &forecast) {
            (Some(PolicySpec::Forecast(_) | PolicySpec::AsPredicted), _) => Term::Forecast,
            (_, Ok(f)) if *f > rec.reactive => Term::Forecast,
            (_, Ok(f)) if *f == rec.reactive => Term::Both,
            _ => Term::Reactive,
        };
        let record = Record::of(row, forecast.as_ref().ok().copied(), rec.reactive, decided_by, reactive.target, state.monitor.errors());
        let decision = match (model, forecast) {
            (_, Err((kind, reason))) => {
                return Ok(Outcome { evicted: slot.evicted, ..self.reactive_only(row, rec, &reactive, kind, &reason, confidence, state.monitor.errors()) });
            }
            (None, Ok(_)) => unreachable!("a forecast needs a model"),
            (Some(loaded), Ok(forecast)) => match &loaded.policy {
                PolicySpec::AsPredicted => self.decision(row, current, forecast, confidence, None),
                PolicySpec::Proactive(r) => {
                    let why = format!(
                        "forecast {forecast} pods; reactive HPA {} (CPU {:.1}% over {:.0} s, target {:.0}%)",
                        rec.reactive, rec.utilization, r.metrics_window_seconds, r.target
                    );
                    self.decision(row, current, rec.replicas, confidence, Some(why))
                }
                PolicySpec::Forecast(_) => {
                    let why = format!("forecast {forecast} pods; reactive HPA {} (not applied: the forecast decides)", rec.reactive);
                    self.decision(row, current, rec.replicas, confidence, Some(why))
                }
            },
        };
        Ok(Outcome { decision, fallback: None, evicted: slot.evicted, record })
    }

    /// Rebuilds `service`'s seasonal profile from its past request rates ((seconds since the
    /// epoch, rate), in time order), unless this server has had rows of it already.
    pub fn rebuild_profile(&self, service: &str, history: &[(i64, f64)]) {
        let slot = self.services.get(service);
        let mut state = slot.state.lock().unwrap_or_else(|p| p.into_inner());
        if state.history.last_timestamp.is_some() {
            return;
        }
        let mut profile = crate::features::seasonal::Profile::default();
        for &(t, rate) in history {
            profile.push(t * 1_000_000, rate);
        }
        state.history.profile = profile;
    }

    /// A row stamped too far ahead is refused before it touches its service's state: taken,
    /// it would move the service's clock and every row after it would be "not after the last".
    fn check_clock(&self, row: &RawRow) -> Result<(), FieldError> {
        let Some(skew) = self.max_clock_skew else { return Ok(()) };
        let ahead = row.timestamp.saturating_sub(chrono::Utc::now().timestamp_micros());
        if ahead as f64 > skew.as_secs_f64() * 1e6 {
            return Err(FieldError {
                field: crate::row::TIMESTAMP.into(),
                message: format!(
                    "is {:.0} s ahead of this server's clock (more than --max-clock-skew {:.0} s): refused, and the service's clock stays where it was; a timestamp without an offset is UTC, so a collector writing local time must add its offset",
                    ahead as f64 / 1e6,
                    skew.as_secs_f64()
                ),
            });
        }
        Ok(())
    }

    /// The model's raw output for this row, or why there is none (a fallback kind and reason):
    /// the per-service forest for a service it knows, unless the version's choice gives it the
    /// pooled forest, which also takes every service it does not know once its capacity is fitted.
    fn output(&self, loaded: &Loaded, state: &ServiceState, row: &RawRow, aim: f64) -> Result<f64, (&'static str, String)> {
        let known = loaded.model.meta().knows_service(&row.service);
        let min_seconds = self.guard.capacity_min_minutes * 60.0;
        let fitted = |aim: f64| state.capacity.rps_per_pod(aim, min_seconds);
        // The pooled forest where the version gives it the service, once the service's capacity
        // is fitted; until then a service the version's own forest knows stays with it.
        let (model, plan, aim, who) = match &loaded.pooled {
            Some(p) if loaded.pooled_serves(&row.service) && !(known && fitted(p.choice.aim_cpu).is_none()) => {
                (&p.model, &p.plan, p.choice.aim_cpu, "the pooled forest")
            }
            _ if known => (&loaded.model, &loaded.plan, aim, "the model"),
            _ => {
                return Err(("unknown_service", format!("service `{}` is unknown to the model (trained on {})", row.service, loaded.services.join(", "))));
            }
        };
        let plan =
            plan.as_ref().map_err(|missing| ("model_error", format!("the model needs features this server does not compute: {}", missing.join(", "))))?;
        // Load features count the service's load in pods of its capacity: none before it is fitted.
        let rps_per_pod = match plan.reads_load() {
            false => None,
            true => Some(fitted(aim).ok_or_else(|| {
                let span = state.capacity.span_seconds() / 60.0;
                let why = if span < self.guard.capacity_min_minutes {
                    format!(
                        "{who} forecasts `{}` once its capacity is fitted on {} minutes of its rows (--capacity-min-minutes); it has {span:.0}",
                        row.service, self.guard.capacity_min_minutes
                    )
                } else {
                    format!("`{}`'s load per pod has not varied enough, or its CPU has not risen with it, for what one pod serves to be fitted", row.service)
                };
                ("warming_up", why)
            })?),
        };
        let named = state.recent.back().expect("the row was just pushed");
        let nf = model.meta().features.len();
        match model {
            Model::RandomForest { forest, .. } => {
                let mut x = Vec::with_capacity(nf);
                plan.extend(named, &row.service, rps_per_pod, &mut x);
                finite(forest.predict_row(&x))
            }
            Model::LstmCnn { net, .. } => {
                let len = net.params.sequence_length;
                if state.recent.len() < len {
                    return Err(("warming_up", format!("the LSTM-CNN needs {len} rows of `{}`, has {}", row.service, state.recent.len())));
                }
                let mut window = Vec::with_capacity(len * nf);
                for named in state.recent.iter().skip(state.recent.len() - len) {
                    plan.extend(named, &row.service, rps_per_pod, &mut window);
                }
                net.predict_raw(&window).map_err(|e| ("model_error", format!("the model failed: {e}"))).and_then(finite)
            }
        }
    }

    /// The policy's replicas within the guardrails, with the old predictor's reasons and `why`.
    /// Replicas outside the bounds (a rolling update's surge pods counted by kube-state-metrics,
    /// a Deployment scaled by hand) come back within them, however far that is.
    fn decision(&self, row: &RawRow, current: f64, wanted: f64, confidence: f64, why: Option<String>) -> Decision {
        let g = &self.guard;
        let (lo, hi) = g.bounds();
        let step = g.max_step as f64;
        let stepped = wanted.clamp(current - step, current + step);
        let predicted = stepped.clamp(lo, hi);
        let change = predicted - current;
        let action = crate::evaluation::Action::of(current, predicted);
        let mut reasons = reasons(row, action);
        reasons.extend(why);
        if stepped != wanted && stepped == predicted {
            reasons.push(format!("the policy said {wanted}; limited to ±{} per decision", g.max_step));
        }
        if current > hi {
            reasons
                .push(format!("{current} replicas are above --max-replicas {}, as during a rolling update's surge: decided within the bounds", g.max_replicas));
        } else if current < lo {
            reasons.push(format!("{current} replicas are below --min-replicas {}: decided within the bounds", g.min_replicas));
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

    /// No model output: the reactive HPA decides, within the guardrails.
    #[allow(clippy::too_many_arguments)] // one call site, each a part of the fallback's record
    fn reactive_only(
        &self,
        row: &RawRow,
        rec: Recommendation,
        r: &Hpa,
        kind: &'static str,
        reason: &str,
        confidence: f64,
        errors: Option<super::drift::Errors>,
    ) -> Outcome {
        let mut d = self.decision(row, row.replicas(), rec.replicas, confidence, None);
        d.reasoning = format!(
            "fallback: {reason}; the reactive HPA decides (CPU {:.1}% over {:.0} s, target {:.0}%): {}",
            rec.utilization, r.metrics_window_seconds, r.target, d.reasoning
        );
        let record = Record::of(row, None, rec.reactive, Term::Reactive, r.target, errors);
        Outcome { decision: d, fallback: Some(kind), evicted: None, record }
    }
}

/// A model output that is not a number of pods (NaN, infinite) is the model's failure: the
/// reactive HPA decides instead, and the fallback says so.
fn finite(output: f64) -> Result<f64, (&'static str, String)> {
    if output.is_finite() { Ok(output) } else { Err(("model_error", format!("the model gave {output} for this row, not a number of pods"))) }
}

/// Keep the current replicas, saying why (a row too broken to read).
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
        for (n, _) in crate::row::NUMERIC {
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
        let down = p.decision(&r, 5.0, 2.0, 1.0, None);
        assert_eq!((down.action.as_str(), down.change, down.predicted_replicas), ("scale_down", 2, 3));
        let up = p.decision(&r, 5.0, 7.0, 1.0, None);
        assert_eq!((up.action.as_str(), up.change), ("scale_up", 2));
    }

    #[test]
    fn without_a_model_the_reactive_hpa_decides() {
        let p = Predictor::new(None, Guardrails { max_step: 10, stabilization_seconds: 300.0, ..Guardrails::default() });
        let at = |ts: &str, cpu: f64, replicas: f64| {
            let mut r = row(&[("cpu_usage_percent", cpu), ("replica_count", replicas)]);
            r.timestamp = crate::row::parse_timestamp(ts).unwrap().0;
            p.decide(&r).unwrap()
        };
        // ceil(3 × 90 / 60) = 5.
        let o = at("2025-10-13T10:00:00", 90.0, 3.0);
        assert_eq!((o.decision.predicted_replicas, o.fallback), (5, Some("no_model")));
        assert!(
            o.decision
                .reasoning
                .starts_with("fallback: no promoted model is loaded; the reactive HPA decides (CPU 90.0% over 60 s, target 60%): High CPU usage"),
            "{}",
            o.decision.reasoning
        );
        // Quiet rows: the HPA wants 2, but holds 5 for the stabilisation window.
        let o = at("2025-10-13T10:01:00", 20.0, 5.0);
        assert_eq!(o.decision.predicted_replicas, 5);
        let o = at("2025-10-13T10:06:30", 20.0, 5.0);
        assert_eq!(o.decision.predicted_replicas, 2, "{}", o.decision.reasoning);

        // By default the server does not hold: the actuator's HPA does (KEDA, the simulator).
        let p = Predictor::new(None, Guardrails { max_step: 10, ..Guardrails::default() });
        let at = |ts: &str, cpu: f64, replicas: f64| {
            let mut r = row(&[("cpu_usage_percent", cpu), ("replica_count", replicas)]);
            r.timestamp = crate::row::parse_timestamp(ts).unwrap().0;
            p.decide(&r).unwrap().decision.predicted_replicas
        };
        assert_eq!(at("2025-10-13T10:00:00", 90.0, 3.0), 5);
        // 20 % over the window (90, 20) averages 55 %: within the tolerance; then 20 % alone,
        // on the 3 pods that serve while the 2 asked for at 10:00 start: 1; once they serve, 2.
        assert_eq!(at("2025-10-13T10:00:30", 20.0, 5.0), 5);
        assert_eq!(at("2025-10-13T10:01:00", 20.0, 5.0), 1);
        assert_eq!(at("2025-10-13T10:01:30", 20.0, 5.0), 2);
    }

    #[test]
    fn replicas_outside_the_bounds_are_decided_within_them() {
        // A rolling update at 10 replicas with 25 % surge: kube-state-metrics counts 13 pods.
        let p = Predictor::new(None, Guardrails::default());
        let o = p.decide(&row(&[("replica_count", 13.0), ("cpu_usage_percent", 50.0)])).unwrap();
        assert_eq!((o.decision.predicted_replicas, o.decision.action.as_str(), o.decision.change), (10, "scale_down", 3));
        assert!(o.decision.reasoning.contains("13 replicas are above --max-replicas 10"), "{}", o.decision.reasoning);
        // However far out, and whatever the step: within the bounds.
        let p = Predictor::new(None, Guardrails { min_replicas: 2, max_step: 1, ..Guardrails::default() });
        let o = p.decide(&row(&[("replica_count", 0.0), ("cpu_usage_percent", 0.0)])).unwrap();
        assert_eq!(o.decision.predicted_replicas, 2, "{}", o.decision.reasoning);
        assert!(o.decision.reasoning.contains("below --min-replicas 2"), "{}", o.decision.reasoning);
        let mut far = row(&[("replica_count", 4_000_000_000.0), ("cpu_usage_percent", 95.0)]);
        far.service = "other".into();
        assert_eq!(p.decide(&far).unwrap().decision.predicted_replicas, 10);
    }

    #[test]
    fn guardrails_no_decision_could_keep_are_named() {
        assert!(Guardrails::default().check().is_ok());
        let e = Guardrails { min_replicas: 5, max_replicas: 3, ..Guardrails::default() }.check().unwrap_err();
        assert_eq!(e, ("--min-replicas/--max-replicas", "--min-replicas 5 is above --max-replicas 3".to_string()));
        assert_eq!(Guardrails { max_replicas: 0, min_replicas: 0, ..Guardrails::default() }.check().unwrap_err().0, "--max-replicas");
        assert_eq!(Guardrails { hpa_target: f64::NAN, ..Guardrails::default() }.check().unwrap_err().0, "--hpa-target");
        assert_eq!(Guardrails { stabilization_seconds: -1.0, ..Guardrails::default() }.check().unwrap_err().0, "--stabilization-seconds");
        assert_eq!(Guardrails { capacity_min_minutes: f64::NAN, ..Guardrails::default() }.check().unwrap_err().0, "--capacity-min-minutes");
        assert_eq!(Guardrails { capacity_min_minutes: 1441.0, ..Guardrails::default() }.check().unwrap_err().0, "--capacity-min-minutes");
    }

    /// A forest folder whose one tree answers `value` for every row (of one feature, CPU).
    fn constant_forest(value: f64) -> tempfile::TempDir {
        use crate::models::random_forest::{Forest, LEAF, Node};
        let dir = tempfile::tempdir().unwrap();
        let meta = crate::models::ModelMeta {
            kind: crate::models::ModelKind::RandomForest,
            format: 1,
            features: vec!["cpu_usage_percent".into()],
            params: serde_json::json!({}),
            metrics: serde_json::json!({}),
            lineage: serde_json::json!({}),
            trained_at: String::new(),
            tool_version: String::new(),
        };
        let forest = Forest { n_features: 1, nodes: vec![Node { feature: LEAF, value, left: 0, right: 0 }], roots: vec![0] };
        crate::models::save_forest(dir.path(), &meta, &forest).unwrap();
        dir
    }

    #[test]
    fn a_model_output_that_is_not_a_number_falls_back_to_the_hpa() {
        let dir = constant_forest(f64::NAN);
        let r = crate::evaluation::replay::Params::default().hpa(60.0);
        for policy in [PolicySpec::AsPredicted, PolicySpec::Proactive(r.clone()), PolicySpec::Forecast(r.clone())] {
            let loaded = Loaded::from_dir(dir.path(), ModelKind::RandomForest, "v1", policy.clone()).unwrap();
            let p = Predictor::new(Some(loaded), Guardrails::default());
            let o = p.decide(&row(&[("replica_count", 3.0), ("cpu_usage_percent", 90.0)])).unwrap();
            assert_eq!(o.fallback, Some("model_error"), "{policy:?}: {}", o.decision.reasoning);
            // ceil(3 × 90 / 60) = 5: the HPA's answer, not 0 pods.
            assert_eq!(o.decision.predicted_replicas, 5, "{policy:?}: {}", o.decision.reasoning);
            assert!(o.decision.reasoning.contains("the model gave NaN"), "{}", o.decision.reasoning);
        }
    }

    #[test]
    fn a_risk_member_raises_each_services_forecast_by_its_own_offset() {
        // A forest that forecasts 2 pods for every row.
        let dir = constant_forest(2.0);
        let risk = crate::evaluation::risk::RiskMember { level: 0.1, offsets: [("api".to_string(), 1.6)].into(), pooled: -0.4 };
        let decided = |risk: Option<crate::evaluation::risk::RiskMember>, service: &str| {
            let loaded = Loaded { risk, ..Loaded::from_dir(dir.path(), ModelKind::RandomForest, "v1", PolicySpec::AsPredicted).unwrap() };
            let p = Predictor::new(Some(loaded), Guardrails { max_step: 10, ..Guardrails::default() });
            let mut r = row(&[("replica_count", 2.0)]);
            r.service = service.to_string();
            p.decide(&r).unwrap().decision.predicted_replicas
        };
        assert_eq!(decided(None, "api"), 2);
        assert_eq!(decided(Some(risk.clone()), "api"), 4, "2 + 1.6, rounded");
        assert_eq!(decided(Some(risk), "web"), 2, "a service the hold-out did not have: 2 - 0.4, rounded");
    }

    #[test]
    fn seasonal_features_read_the_versions_profile_or_one_rebuilt_and_fall_back_without() {
        use crate::features::seasonal::{self, Profile, Profiles};
        use crate::models::random_forest::{Forest, LEAF, Node};
        let dir = tempfile::tempdir().unwrap();
        let meta = crate::models::ModelMeta {
            kind: crate::models::ModelKind::RandomForest,
            format: 1,
            features: vec!["request_rate_yesterday".into()],
            params: serde_json::json!({}),
            metrics: serde_json::json!({}),
            lineage: serde_json::json!({}),
            trained_at: String::new(),
            tool_version: String::new(),
        };
        // 1 pod while yesterday's load was at most 50 requests/s, 6 above.
        let leaf = |value| Node { feature: LEAF, value, left: 0, right: 0 };
        let forest = Forest { n_features: 1, nodes: vec![Node { feature: 0, value: 50.0, left: 1, right: 2 }, leaf(1.0), leaf(6.0)], roots: vec![0] };
        crate::models::save_forest(dir.path(), &meta, &forest).unwrap();
        // Training ended the day before the rows: 100 requests/s at their time of day.
        let today = row(&[]).timestamp;
        let yesterday = today - 86_400 * 1_000_000;
        let mut api = Profile::default();
        api.push(yesterday, 100.0);
        api.push(yesterday + 300 * 1_000_000, 5.0);
        let profiles = Profiles { services: [("api".to_string(), api)].into() };
        std::fs::write(dir.path().join(seasonal::FILE), serde_json::to_vec(&profiles).unwrap()).unwrap();
        let loaded = Loaded::from_dir(dir.path(), ModelKind::RandomForest, "v1", PolicySpec::AsPredicted).unwrap();
        assert!(loaded.reads_seasonal());
        let p = Predictor::new(Some(loaded), Guardrails { max_step: 10, ..Guardrails::default() });
        let decide = |service: &str, timestamp: i64| {
            let mut r = row(&[("replica_count", 1.0), ("request_count_per_second", 10.0)]);
            (r.service, r.timestamp) = (service.to_string(), timestamp);
            p.decide(&r).unwrap().decision.predicted_replicas
        };
        assert_eq!(decide("api", today), 6, "yesterday from the version's profile");
        assert_eq!(decide("web", today), 1, "no profile: yesterday falls back to its own 10 requests/s");
        // A rebuilt profile (from Prometheus' history) serves a service the version did not know.
        p.rebuild_profile("db", &[(yesterday / 1_000_000, 100.0), (yesterday / 1_000_000 + 300, 5.0)]);
        assert_eq!(decide("db", today), 6);
        // Rows older than the profile's end do not read it: it would hand them their own future.
        let p2 = Predictor::new(Some(Loaded::from_dir(dir.path(), ModelKind::RandomForest, "v1", PolicySpec::AsPredicted).unwrap()), Guardrails::default());
        let mut r = row(&[("replica_count", 1.0), ("request_count_per_second", 10.0)]);
        r.timestamp = yesterday;
        assert_eq!(p2.decide(&r).unwrap().decision.predicted_replicas, 1);
    }

    #[test]
    fn a_forecast_that_drifts_hands_the_service_to_the_reactive_hpa_until_it_is_right_again() {
        // A forest that forecasts 3 pods: right while 3 pods run at 60 % CPU, 3 short once a
        // release doubles the CPU per request (120 %: 6 pods needed).
        let dir = constant_forest(3.0);
        let r = crate::evaluation::replay::Params::default().hpa(60.0);
        let loaded = Loaded::from_dir(dir.path(), ModelKind::RandomForest, "v1", PolicySpec::Proactive(r)).unwrap();
        // On by default.
        let p = Predictor::new(Some(loaded), Guardrails::default());
        let start = row(&[]).timestamp;
        let mut first_drift = None;
        for k in 0..480 {
            let t = k as i64 * 30;
            // Two hours right, then the release; CPU at 3 pods whatever the decision (the load
            // does not follow the decisions here).
            let cpu = if t < 7200 { 55.0 } else { 110.0 };
            let mut r = row(&[("replica_count", 3.0), ("cpu_usage_percent", cpu)]);
            r.timestamp = start + t * 1_000_000;
            let o = p.decide(&r).unwrap();
            if t < 7200 {
                assert_eq!(o.fallback, None, "at {t} s: {}", o.decision.reasoning);
            } else if o.fallback == Some("forecast_drift") && first_drift.is_none() {
                first_drift = Some(t);
                assert!(o.decision.reasoning.contains("the forecast has drifted"), "{}", o.decision.reasoning);
                assert_eq!(o.record.decided_by, Term::Reactive);
            }
        }
        // 2 pods short from the release on: the short share passes 75 % once three quarters of
        // the 30-minute window hold such forecasts, plus their own start-up and window (210 s).
        let after = first_drift.expect("the monitor trips") - 7200;
        assert!(after <= 1350 + 210, "it took {after} s");
        // Off (`--drift-window-seconds 0`), it never does.
        let off = Guardrails { drift: super::super::drift::DriftBounds { window_seconds: 0.0, ..Default::default() }, ..Guardrails::default() };
        let r = crate::evaluation::replay::Params::default().hpa(60.0);
        let p = Predictor::new(Some(Loaded::from_dir(dir.path(), ModelKind::RandomForest, "v1", PolicySpec::Proactive(r)).unwrap()), off);
        for k in 0..480 {
            let mut r = row(&[("replica_count", 3.0), ("cpu_usage_percent", if k < 240 { 55.0 } else { 110.0 })]);
            r.timestamp = start + k * 30 * 1_000_000;
            assert_eq!(p.decide(&r).unwrap().fallback, None);
        }
    }

    #[test]
    fn a_row_from_the_future_is_refused_and_leaves_the_clock_alone() {
        let p = Predictor::new(None, Guardrails::default()).max_clock_skew(Some(Duration::from_secs(300)));
        let stamped = |offset: chrono::Duration| {
            let mut r = row(&[("replica_count", 3.0)]);
            r.timestamp = (chrono::Utc::now() + offset).timestamp_micros();
            r
        };
        let e = p.decide(&stamped(chrono::Duration::days(365 * 7000))).err().expect("refused");
        assert_eq!(e.field, "timestamp");
        assert!(e.message.contains("ahead of this server's clock"), "{e}");
        assert_eq!(p.services(), 0, "no state for a refused row");
        p.decide(&stamped(chrono::Duration::seconds(-60))).unwrap();
        assert!(p.decide(&stamped(chrono::Duration::minutes(10))).is_err());
        p.decide(&stamped(chrono::Duration::seconds(-30))).expect("the present still decides");
        p.decide(&stamped(chrono::Duration::seconds(120))).expect("within the skew");
    }

    #[test]
    fn services_past_the_bound_evict_the_idlest() {
        let p = Predictor::new(None, Guardrails::default()).max_services(3);
        for name in ["a", "b", "c", "d"] {
            let mut r = row(&[("replica_count", 3.0)]);
            r.service = name.into();
            let o = p.decide(&r).unwrap();
            assert_eq!(o.evicted.as_deref(), (name == "d").then_some("a"));
        }
        assert_eq!(p.services(), 3);
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
