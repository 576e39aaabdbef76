//! The Kubernetes HPA, as one model: what the replay judges every policy against, what the
//! server's online HPA decides with, and what the simulator's controller and actuator do. A
//! judge and a judged that each had their own HPA drifted apart unseen (the simulator scaled up
//! at most ×2 or +4 pods a 30 s step and down one pod a minute, the replay without limits); here
//! there is one, and a test drives the replay and the simulator with the same load and requires
//! the same decisions.
//!
//! Defaults are Kubernetes' documented ones (`autoscaling/v2`, `behavior`): a 15 s sync, a 10 %
//! tolerance, scale-up by 100 % or 4 pods per 15 s (whichever is more), scale-down stabilised
//! over 300 s and by at most 100 % per 15 s. What Kubernetes leaves to the cluster has the
//! replay's long-standing values: metrics-server's 60 s window seen 30 s late, and pods ready
//! 60 s after they are asked for. Every field is a param.
//!
//! - [`Hpa`]: the settings, and the formula (`ceil(ready × utilisation / target)` outside the
//!   tolerance).
//! - [`Controller`]: what metrics-server has seen (time-weighted segments) and the decision at a
//!   sync: recommendation, stabilisation, rate limits.
//! - [`Autoscaler`]: the controller acting on a Deployment's pods over time (start-up, syncs,
//!   what metrics-server sees): the replay's cluster and the simulator's both run through it.
//! - [`OnlineHpa`]: the same decision on the rows a server receives, each one what the metrics
//!   showed.

mod controller;
mod deployment;
mod online;
mod rates;

pub use controller::{Ask, Controller, Segment};
pub use deployment::{Autoscaler, Pods, State, Stretch};
pub use online::{OnlineHpa, Recommendation};
pub use rates::{Rate, Rates, Stabilizer};

use serde::{Deserialize, Serialize};

/// The HPA's settings. Serialised in a model version's policy (`version.json`); the names a
/// version written before this model used (`stabilization_seconds`, `window_seconds`) still read.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct Hpa {
    /// CPU % the HPA aims for.
    pub target: f64,
    /// No change while |utilisation / target − 1| is within this.
    pub tolerance: f64,
    /// metrics-server averages utilisation over this window...
    #[serde(alias = "window_seconds")]
    pub metrics_window_seconds: f64,
    /// ...and the HPA sees it this late.
    pub metrics_delay_seconds: f64,
    /// The HPA decides this often.
    pub sync_seconds: f64,
    /// Scale up only to the lowest recommendation of this window (0: at once).
    pub scale_up_stabilization_seconds: f64,
    /// Scale down only to the highest recommendation of this window.
    #[serde(alias = "stabilization_seconds")]
    pub scale_down_stabilization_seconds: f64,
    /// How fast replicas may grow.
    pub scale_up: Rate,
    /// How fast replicas may shrink.
    pub scale_down: Rate,
    /// A new pod serves this long after it is asked for.
    pub pod_startup_seconds: f64,
}

impl Default for Hpa {
    fn default() -> Hpa {
        Hpa {
            target: 60.0,
            tolerance: 0.1,
            metrics_window_seconds: 60.0,
            metrics_delay_seconds: 30.0,
            sync_seconds: 15.0,
            scale_up_stabilization_seconds: 0.0,
            scale_down_stabilization_seconds: 300.0,
            scale_up: Rate { percent: Some(100.0), pods: Some(4.0), period_seconds: 15.0 },
            scale_down: Rate { percent: Some(100.0), pods: None, period_seconds: 15.0 },
            pod_startup_seconds: 60.0,
        }
    }
}

/// A setting that cannot hold, by name.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
#[error("`{field}` {problem}")]
pub struct InvalidSetting {
    pub field: &'static str,
    pub problem: String,
}

impl Hpa {
    /// The HPA's formula: `ceil(ready × utilisation / target)`, or `current` within the
    /// tolerance. Pods not ready yet count as idle, as Kubernetes counts them on the way up.
    pub fn recommend(&self, utilization: f64, ready: f64, current: f64) -> f64 {
        if (utilization / self.target - 1.0).abs() <= self.tolerance { current } else { ceil(ready * utilization / self.target) }
    }

    /// The same settings without the limits Kubernetes adds to a recommendation (stabilisation
    /// windows and rates): what a server answers when the HPA acting on it holds and limits.
    pub fn unheld(&self) -> Hpa {
        Hpa {
            scale_up_stabilization_seconds: 0.0,
            scale_down_stabilization_seconds: 0.0,
            scale_up: Rate::UNLIMITED,
            scale_down: Rate::UNLIMITED,
            ..self.clone()
        }
    }

    pub fn check(&self) -> Result<(), InvalidSetting> {
        let bad = |field: &'static str, problem: String| Err(InvalidSetting { field, problem });
        for (field, v) in [("target", self.target), ("sync_seconds", self.sync_seconds)] {
            if !(v.is_finite() && v > 0.0) {
                return bad(field, format!("must be a number above 0 (it is {v})"));
            }
        }
        for (field, v) in [
            ("tolerance", self.tolerance),
            ("metrics_window_seconds", self.metrics_window_seconds),
            ("metrics_delay_seconds", self.metrics_delay_seconds),
            ("scale_up_stabilization_seconds", self.scale_up_stabilization_seconds),
            ("scale_down_stabilization_seconds", self.scale_down_stabilization_seconds),
            ("pod_startup_seconds", self.pod_startup_seconds),
        ] {
            if !(v.is_finite() && v >= 0.0) {
                return bad(field, format!("must be a number of at least 0 (it is {v})"));
            }
        }
        for (field, r) in [("scale_up", &self.scale_up), ("scale_down", &self.scale_down)] {
            r.check().map_err(|problem| InvalidSetting { field, problem })?;
        }
        Ok(())
    }
}

/// `ceil` that ignores the float noise of a ratio that is a whole number (3 × 80 / 60 = 4.000…01).
pub fn ceil(x: f64) -> f64 {
    (x - 1e-9).ceil()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_version_written_before_the_model_still_reads() {
        let old = serde_json::json!({ "target": 70.0, "tolerance": 0.1, "stabilization_seconds": 300.0, "window_seconds": 60.0 });
        let hpa: Hpa = serde_json::from_value(old).unwrap();
        assert_eq!(hpa, Hpa { target: 70.0, ..Hpa::default() });
        let round = serde_json::to_value(&hpa).unwrap();
        assert_eq!(serde_json::from_value::<Hpa>(round).unwrap(), hpa);
    }

    #[test]
    fn the_formula_and_its_tolerance() {
        let h = Hpa::default();
        assert_eq!(h.recommend(90.0, 3.0, 3.0), 5.0);
        assert_eq!(h.recommend(65.0, 3.0, 3.0), 3.0, "within 10 %");
        assert_eq!(h.recommend(80.0, 3.0, 3.0), 4.0, "3 × 80 / 60 is 4, not 5");
        assert!(Hpa { sync_seconds: 0.0, ..h.clone() }.check().is_err());
        assert!(Hpa { scale_up: Rate { percent: Some(-1.0), pods: None, period_seconds: 15.0 }, ..h }.check().is_err());
    }
}
