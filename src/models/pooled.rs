//! The pooled forest: one forest for every service, trained on features that name none. Its
//! load features are the service's load in pods of its own fitted capacity (what one pod
//! serves at the top of the HPA's tolerance band): `sql/labels.sql` writes them with the
//! capacity fitted on the rows before the hold-out, and the server computes them with the
//! capacity it fits online from a new service's first rows (`serving::capacity`). So a service
//! the pipeline never saw gets forecasts once the server has a few minutes of its rows, where
//! the per-service forest (one-hot service columns) can only answer `unknown_service`.
//!
//! A version of the `random_forest` model carries the pooled forest beside its own (the
//! registry's folder `pooled/`), and `version.json`'s `pooled` says which of the two serves
//! each trained service ([`PooledChoice`]); a service it does not list gets the pooled one.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

/// The prefix of the load features; a train stage reads them only when its `features` names
/// them, so the forests that read every feature stay as they were.
pub const LOAD_PREFIX: &str = "load_pods";

/// Each load feature and the request feature it is in pods of.
pub const LOAD_FEATURES: [(&str, &str); 4] = [
    ("load_pods", "request_count_per_second"),
    ("load_pods_last_5_min", "request_count_per_second_last_5_min"),
    ("load_pods_rolling_max", "request_rolling_max"),
    ("load_pods_change", "request_change_rate"),
];

/// The request feature `load` (a load feature's name) is in pods of.
pub fn load_source(load: &str) -> Option<&'static str> {
    LOAD_FEATURES.iter().find(|(l, _)| *l == load).map(|(_, s)| *s)
}

/// The registry folder, inside a `random_forest` version, that holds the pooled forest.
pub const DIR: &str = "pooled";

/// Which forest serves a service the per-service forest was trained on.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Serves {
    /// The forest trained on the service's name.
    PerService,
    /// The pooled forest, no worse on the hold-out's replay of this service.
    Pooled,
}

/// `version.json`'s `pooled`: the per-service choice publish made on the hold-out's replay.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct PooledChoice {
    /// Per trained service, the forest that serves it; a service not listed (never trained on,
    /// or without a capacity to compare on) gets the per-service forest when it knows the
    /// service, else the pooled one.
    pub services: BTreeMap<String, Serves>,
    /// The pooled forest's stage, for `pipeline models show`.
    pub stage: String,
    /// The CPU % at which its load features count pods: its labels' `target_cpu × (1 +
    /// hpa_tolerance)`, so the server's capacity gives the same pods the training rows had.
    pub aim_cpu: f64,
}

impl PooledChoice {
    /// Whether the pooled forest serves `service`, given whether the per-service one knows it.
    pub fn pooled_serves(&self, service: &str, known: bool) -> bool {
        match self.services.get(service) {
            Some(s) => *s == Serves::Pooled,
            None => !known,
        }
    }
}

/// Per service, the forest that replays it better: the pooled one when it is at least as
/// healthy (no more under-provisioned minutes) for at most `COST_SLACK` more pod-hours, as the
/// same service's replay under the per-service forest gives them. Services missing from either
/// map keep the per-service forest.
pub fn choose(per_service: &BTreeMap<String, (f64, f64)>, pooled: &BTreeMap<String, (f64, f64)>) -> BTreeMap<String, Serves> {
    per_service
        .iter()
        .map(|(service, &(minutes, pod_hours))| {
            let serves = match pooled.get(service) {
                Some(&(m, h)) if m <= minutes && h <= pod_hours * (1.0 + COST_SLACK) => Serves::Pooled,
                _ => Serves::PerService,
            };
            (service.clone(), serves)
        })
        .collect()
}

/// The pod-hours the pooled forest may cost above the per-service one and still serve a
/// service where it is as healthy: 1 %, the replay's own noise between two forests.
pub const COST_SLACK: f64 = 0.01;

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_pooled_forest_serves_a_trained_service_only_where_it_replays_no_worse() {
        let per: BTreeMap<String, (f64, f64)> =
            [("a", (10.0, 100.0)), ("b", (10.0, 100.0)), ("c", (10.0, 100.0)), ("d", (5.0, 50.0))].into_iter().map(|(s, v)| (s.to_string(), v)).collect();
        let pooled: BTreeMap<String, (f64, f64)> =
            [("a", (9.0, 100.5)), ("b", (11.0, 90.0)), ("c", (10.0, 102.0))].into_iter().map(|(s, v)| (s.to_string(), v)).collect();
        let c = choose(&per, &pooled);
        assert_eq!(c["a"], Serves::Pooled, "healthier within the cost slack");
        assert_eq!(c["b"], Serves::PerService, "cheaper but less healthy");
        assert_eq!(c["c"], Serves::PerService, "as healthy but 2 % dearer");
        assert_eq!(c["d"], Serves::PerService, "no pooled replay to compare");
        let choice = PooledChoice { services: c, stage: "train".into(), aim_cpu: 66.0 };
        assert!(choice.pooled_serves("a", true) && !choice.pooled_serves("b", true));
        assert!(choice.pooled_serves("new", false), "a service never trained on gets the pooled forest");
        assert!(!choice.pooled_serves("unlisted", true));
        assert_eq!(load_source("load_pods_rolling_max"), Some("request_rolling_max"));
        assert_eq!(serde_json::to_string(&Serves::PerService).unwrap(), "\"per_service\"");
    }
}
