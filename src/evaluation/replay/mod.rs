//! Autoscaling replay: how a service would have fared under a policy's replica counts, with the
//! delays a real cluster has.
//!
//! Method (also written into the report):
//! 1. Load is the recorded request rate. Each service's CPU model is fitted on the training part
//!    (rows before the hold-out): `cpu% = base + slope × requests/s per pod` (least squares, from
//!    the recorded replicas). That is the per-pod capacity.
//! 2. Time runs on its own clock, not row by row. A policy's decision at row t uses rows ≤ t
//!    only. A pod it adds serves after `pod_startup_seconds`; a pod it removes stops at once
//!    (starting pods first, as a ReplicaSet removes them). Utilisation is the fitted CPU of the
//!    load over the *ready* pods.
//! 3. The reactive HPA sees what metrics-server shows: utilisation averaged over the last
//!    `metrics_window_seconds`, `metrics_delay_seconds` late. Every `hpa_sync_seconds` it asks for
//!    `ceil(ready pods × utilisation / target)` (starting pods count as idle, as Kubernetes
//!    counts them on the way up), leaves replicas alone within its tolerance, scales up at once
//!    and down only to the highest recommendation of the stabilisation window.
//! 4. Forecasting policies are `max(reactive HPA, forecast pods)` with the same stabilisation:
//!    the forecast only ever adds pods ahead of the HPA, as cloud predictive scaling does.
//! 5. Scored per policy: minutes with the ready pods over the target utilisation
//!    (under-provisioned), the share of requests that arrived above the ready pods' capacity at
//!    the target, pod-hours (starting pods included), pod-hours above the fewest that would have
//!    held the target (surplus), and scaling actions per hour.
//! 6. The HPA's frontier: the reactive HPA replayed at several targets gives pod-hours against
//!    under-provisioned minutes. A policy beats the HPA when its point lies below that curve.
//!
//! The load is open-loop (a policy's decisions do not change later requests or features).

pub(crate) mod capacity;
mod cluster;
pub mod forecast;
pub mod frontier;

pub use capacity::Capacity;
pub use cluster::{Outcome, RowState, simulate};

use serde::{Deserialize, Serialize};

use crate::hpa::{Hpa, Rate};

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct Params {
    /// CPU % above which the ready pods count as under-provisioned.
    pub target_utilization: f64,
    /// The reactive HPA's target CPU % (lower than the limit above, for headroom).
    pub hpa_target: f64,
    /// HPA leaves replicas alone while |utilisation / target − 1| is within this.
    pub hpa_tolerance: f64,
    /// Scale down only to the highest recommendation of this window.
    pub scale_down_stabilization_seconds: f64,
    pub min_replicas: f64,
    pub max_replicas: f64,
    /// A row's load holds until the next row, but never longer than this (gaps in data).
    pub max_step_seconds: f64,
    /// A new pod serves this long after it is asked for.
    pub pod_startup_seconds: f64,
    /// metrics-server averages utilisation over this window...
    pub metrics_window_seconds: f64,
    /// ...and the HPA sees it this late.
    pub metrics_delay_seconds: f64,
    /// The HPA (and every policy built on it) decides this often.
    pub hpa_sync_seconds: f64,
    /// Scale up only to the lowest recommendation of this window (Kubernetes: 0).
    pub scale_up_stabilization_seconds: f64,
    /// Within `scale_up_period_seconds`, replicas may grow by this % of what they were at the
    /// period's start, or by `scale_up_pods`, whichever is more (Kubernetes: 100 %, 4 pods,
    /// 15 s); `null` for both: no limit.
    pub scale_up_percent: Option<f64>,
    pub scale_up_pods: Option<f64>,
    pub scale_up_period_seconds: f64,
    /// Within `scale_down_period_seconds`, replicas may shrink by this % or by
    /// `scale_down_pods`, whichever is more (Kubernetes: 100 % per 15 s, no pods policy).
    pub scale_down_percent: Option<f64>,
    pub scale_down_pods: Option<f64>,
    pub scale_down_period_seconds: f64,
    /// HPA targets (CPU %) of the frontier.
    pub frontier_targets: Vec<f64>,
    /// HPA targets a forecast may run its reactive floor at (those above `hpa_target`): with a
    /// good forecast the floor only has to catch what it misses, and can run hotter. Not past
    /// ~80 by default: once a service's CPU saturates at its limit (100 % where the limit is the
    /// request) an HPA aiming at 91 % or more sees nothing to correct, which the replay's
    /// unbounded utilisation does not show and `pipeline simulate --scaler` did.
    pub floor_targets: Vec<f64>,
    /// Also try each forecast alone, with no HPA floor (the HPA then decides only where the
    /// model has no forecast). False keeps a floor under every forecast.
    pub forecast_alone: bool,
    /// Forecasting baselines provision for the peak of this long after the start-up delay.
    pub forecast_horizon_seconds: f64,
    /// The risk levels (probability that demand exceeds the forecast) of each model's family
    /// (`evaluation::risk`).
    pub risk_levels: Vec<f64>,
}

impl Default for Params {
    fn default() -> Params {
        Params {
            target_utilization: 70.0,
            hpa_target: 60.0,
            hpa_tolerance: 0.1,
            scale_down_stabilization_seconds: 300.0,
            min_replicas: 1.0,
            max_replicas: 10.0,
            max_step_seconds: 300.0,
            pod_startup_seconds: 60.0,
            metrics_window_seconds: 60.0,
            metrics_delay_seconds: 30.0,
            hpa_sync_seconds: 15.0,
            scale_up_stabilization_seconds: 0.0,
            scale_up_percent: Some(100.0),
            scale_up_pods: Some(4.0),
            scale_up_period_seconds: 15.0,
            scale_down_percent: Some(100.0),
            scale_down_pods: None,
            scale_down_period_seconds: 15.0,
            frontier_targets: (0..9).map(|k| 40.0 + 5.0 * k as f64).collect(),
            floor_targets: (0..5).map(|k| 60.0 + 5.0 * k as f64).collect(),
            forecast_alone: true,
            forecast_horizon_seconds: 300.0,
            risk_levels: crate::evaluation::risk::LEVELS.to_vec(),
        }
    }
}

impl Params {
    /// The HPA these settings describe, at `target` CPU %: the one model (`crate::hpa`) the
    /// server and the simulator share.
    pub fn hpa(&self, target: f64) -> Hpa {
        Hpa {
            target,
            tolerance: self.hpa_tolerance,
            metrics_window_seconds: self.metrics_window_seconds,
            metrics_delay_seconds: self.metrics_delay_seconds,
            sync_seconds: self.hpa_sync_seconds,
            scale_up_stabilization_seconds: self.scale_up_stabilization_seconds,
            scale_down_stabilization_seconds: self.scale_down_stabilization_seconds,
            scale_up: Rate { percent: self.scale_up_percent, pods: self.scale_up_pods, period_seconds: self.scale_up_period_seconds },
            scale_down: Rate { percent: self.scale_down_percent, pods: self.scale_down_pods, period_seconds: self.scale_down_period_seconds },
            pod_startup_seconds: self.pod_startup_seconds,
        }
    }

    /// What a pipeline file can get wrong here, named by field.
    pub fn check(&self) -> Result<(), InvalidParam> {
        let bad = |field: &'static str, problem: String| Err(InvalidParam { field, problem });
        let positive = [
            ("target_utilization", self.target_utilization),
            ("hpa_target", self.hpa_target),
            ("max_step_seconds", self.max_step_seconds),
            ("hpa_sync_seconds", self.hpa_sync_seconds),
        ];
        for (name, v) in positive {
            if !(v.is_finite() && v > 0.0) {
                return bad(name, format!("must be a number above 0 (it is {v})"));
            }
        }
        let non_negative = [
            ("hpa_tolerance", self.hpa_tolerance),
            ("scale_down_stabilization_seconds", self.scale_down_stabilization_seconds),
            ("pod_startup_seconds", self.pod_startup_seconds),
            ("metrics_window_seconds", self.metrics_window_seconds),
            ("metrics_delay_seconds", self.metrics_delay_seconds),
            ("forecast_horizon_seconds", self.forecast_horizon_seconds),
            ("min_replicas", self.min_replicas),
        ];
        for (name, v) in non_negative {
            if !(v.is_finite() && v >= 0.0) {
                return bad(name, format!("must be a number of at least 0 (it is {v})"));
            }
        }
        // Written so that a NaN fails too.
        #[allow(clippy::neg_cmp_op_on_partial_ord)]
        if !(self.max_replicas >= self.min_replicas.max(1.0)) {
            return bad("max_replicas", format!("({}) must be at least min_replicas and 1", self.max_replicas));
        }
        if let Some(t) = self.frontier_targets.iter().find(|t| !(t.is_finite() && **t > 0.0)) {
            return bad("frontier_targets", format!("has {t}, not a CPU % above 0"));
        }
        if let Some(t) = self.floor_targets.iter().find(|t| !(t.is_finite() && **t > 0.0 && **t <= 100.0)) {
            return bad("floor_targets", format!("has {t}, not a CPU % within 0..100"));
        }
        if let Some(r) = self.risk_levels.iter().find(|r| !(**r > 0.0 && **r < 1.0)) {
            return bad("risk_levels", format!("has {r}, not a probability between 0 and 1"));
        }
        self.hpa(self.hpa_target).check().map_err(|e| {
            // The pipeline file's names for the model's fields.
            let field = match e.field {
                "scale_up" => "scale_up_percent/scale_up_pods/scale_up_period_seconds",
                "scale_down" => "scale_down_percent/scale_down_pods/scale_down_period_seconds",
                "target" => "hpa_target",
                "tolerance" => "hpa_tolerance",
                "sync_seconds" => "hpa_sync_seconds",
                other => other,
            };
            InvalidParam { field, problem: e.problem }
        })?;
        Ok(())
    }
}

/// A replay setting that cannot work.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
#[error("{field} {problem}")]
pub struct InvalidParam {
    pub field: &'static str,
    pub problem: String,
}

/// One service's hold-out, in time order.
#[derive(Debug, Clone)]
pub struct Series {
    /// Microseconds since the epoch, as the metrics schema stores them.
    pub timestamps: Vec<i64>,
    pub rps: Vec<f64>,
    pub recorded: Vec<f64>,
}

impl Series {
    /// Seconds each row's load holds: until the next row, capped; the last row gets the median step.
    pub fn steps(&self, p: &Params) -> Vec<f64> {
        let mut d: Vec<f64> = self.timestamps.windows(2).map(|w| ((w[1] - w[0]) as f64 / 1e6).clamp(0.0, p.max_step_seconds)).collect();
        let mut sorted = d.clone();
        sorted.sort_by(f64::total_cmp);
        d.push(sorted.get(sorted.len() / 2).copied().unwrap_or(30.0));
        d
    }
}

/// How a policy sets replicas.
#[derive(Debug, Clone, Copy)]
pub enum Policy<'a> {
    /// The count for each row, applied when the row arrives (the recorded replicas, or a model's
    /// prediction used as the replica count, as the old system did).
    Given(&'a [f64]),
    /// The reactive HPA at a target CPU %.
    Reactive { target: f64 },
    /// `max(reactive HPA at target, forecast[row])`, scale-down stabilised; without a target,
    /// the forecast alone, stabilised the same way.
    Proactive { target: Option<f64>, forecast: &'a [f64] },
}

#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct Score {
    pub under_provisioned_minutes: f64,
    pub over_provisioned_pod_hours: f64,
    pub pod_hours: f64,
    pub scaling_actions: u64,
    pub hours: f64,
    /// Requests that arrived above what the ready pods serve at the target utilisation...
    #[serde(default)]
    pub requests_over_capacity: f64,
    /// ...out of these.
    #[serde(default)]
    pub requests: f64,
}

impl Score {
    pub fn actions_per_hour(&self) -> f64 {
        if self.hours > 0.0 { self.scaling_actions as f64 / self.hours } else { 0.0 }
    }

    /// Share of requests above the ready pods' capacity (0–1).
    pub fn over_capacity_share(&self) -> f64 {
        if self.requests > 0.0 { self.requests_over_capacity / self.requests } else { 0.0 }
    }

    pub fn add(&mut self, o: &Score) {
        self.under_provisioned_minutes += o.under_provisioned_minutes;
        self.over_provisioned_pod_hours += o.over_provisioned_pod_hours;
        self.pod_hours += o.pod_hours;
        self.scaling_actions += o.scaling_actions;
        self.hours += o.hours;
        self.requests_over_capacity += o.requests_over_capacity;
        self.requests += o.requests;
    }
}
