//! Evaluation: every model scored on one common temporal hold-out (the honest comparison),
//! per service, as scaling actions, and as an autoscaling replay.

pub mod replay;
mod result;

pub use result::{Evaluation, ModelEvaluation, ModelInfo, EVALUATION};

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use anyhow::Result;

use crate::models::metrics::{self, Scores};
use crate::models::table::Table;
use replay::{Capacity, Series};

/// What a replica count means relative to the current one.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Action {
    ScaleDown,
    NoChange,
    ScaleUp,
}

impl Action {
    pub const ALL: [Action; 3] = [Action::ScaleDown, Action::NoChange, Action::ScaleUp];

    pub fn of(current: f64, target: f64) -> Action {
        if target > current {
            Action::ScaleUp
        } else if target < current {
            Action::ScaleDown
        } else {
            Action::NoChange
        }
    }

    pub fn name(self) -> &'static str {
        match self {
            Action::ScaleDown => "scale_down",
            Action::NoChange => "no_change",
            Action::ScaleUp => "scale_up",
        }
    }

    fn index(self) -> usize {
        self as usize
    }
}

/// Counts of (actual action, predicted action): `counts[actual][predicted]`, in `Action::ALL` order.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct Confusion {
    pub counts: [[u64; 3]; 3],
}

impl Confusion {
    pub fn add(&mut self, actual: Action, predicted: Action) {
        self.counts[actual.index()][predicted.index()] += 1;
    }

    /// Share of rows whose action was predicted right.
    pub fn agreement(&self) -> f64 {
        let total: u64 = self.counts.iter().flatten().sum();
        let right: u64 = (0..3).map(|i| self.counts[i][i]).sum();
        if total == 0 { 0.0 } else { right as f64 / total as f64 }
    }
}

/// One model on the common hold-out.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct HoldoutScores {
    pub overall: Scores,
    pub per_service: BTreeMap<String, Scores>,
    pub confusion: Confusion,
}

/// Scores predictions on the given rows: overall, per service and as actions.
pub fn score_rows(rows: &[usize], services: &[String], actual: &[f64], current: &[f64], predicted: &[f64], bounds: (f64, f64)) -> HoldoutScores {
    let (lo, hi) = bounds;
    let take = |v: &[f64], pick: &[usize]| pick.iter().map(|&i| v[i]).collect::<Vec<f64>>();
    let overall = metrics::score(&take(actual, rows), &take(predicted, rows), lo, hi);
    let mut by: BTreeMap<&str, Vec<usize>> = BTreeMap::new();
    for &r in rows {
        by.entry(services[r].as_str()).or_default().push(r);
    }
    let per_service = by.into_iter().map(|(s, rs)| (s.to_string(), metrics::score(&take(actual, &rs), &take(predicted, &rs), lo, hi))).collect();
    let mut confusion = Confusion::default();
    for &r in rows {
        confusion.add(Action::of(current[r], actual[r]), Action::of(current[r], metrics::replicas(predicted[r], lo, hi)));
    }
    HoldoutScores { overall, per_service, confusion }
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct ServiceReplay {
    pub service: String,
    pub capacity: Option<Capacity>,
    pub mean_rps: f64,
    pub policies: BTreeMap<String, replay::Score>,
}


/// Rows of the replay table: (timestamp, service, policy, replicas, utilisation).
pub type ReplayRows = Vec<(i64, String, String, f64, f64)>;

/// Replays `rows` of `table` (the hold-out) per service: the recorded replicas, the reactive HPA
/// and each named model's predictions (`predictions[m][row]`).
pub fn replay_table(table: &Table, rows: &[usize], names: &[String], predictions: &[Vec<f64>], p: &replay::Params) -> Result<(Vec<ServiceReplay>, ReplayRows)> {
    let rps = table.column_f64("request_count_per_second")?;
    let cpu = table.column_f64("cpu_usage_percent")?;
    let mut by: BTreeMap<&str, Vec<usize>> = BTreeMap::new();
    for &r in rows {
        by.entry(table.services[r].as_str()).or_default().push(r);
    }
    let mut services = Vec::new();
    let mut out_rows = Vec::new();
    for (service, mut rs) in by {
        rs.sort_by_key(|&r| table.timestamps[r]);
        let train: Vec<usize> = (0..table.len()).filter(|&i| !table.test[i] && table.services[i] == service).collect();
        let pick = |v: &[f64], idx: &[usize]| idx.iter().map(|&i| v[i]).collect::<Vec<f64>>();
        let capacity = Capacity::fit(&pick(&rps, &train), &pick(&cpu, &train), &pick(&table.replicas, &train));
        let series = Series { timestamps: rs.iter().map(|&r| table.timestamps[r]).collect(), rps: pick(&rps, &rs), recorded: pick(&table.replicas, &rs) };
        let mean_rps = series.rps.iter().sum::<f64>() / series.rps.len().max(1) as f64;
        let mut policies = BTreeMap::new();
        if let Some(cap) = &capacity {
            let mut all: Vec<(String, Vec<f64>)> = vec![("recorded".into(), series.recorded.clone()), ("hpa".into(), replay::hpa(&series, cap, p))];
            for (name, pred) in names.iter().zip(predictions) {
                all.push((name.clone(), rs.iter().map(|&r| metrics::replicas(pred[r], p.min_replicas, p.max_replicas)).collect()));
            }
            for (policy, replicas) in all {
                let (score, util) = replay::score(&series, cap, &replicas, p);
                for i in 0..replicas.len() {
                    out_rows.push((series.timestamps[i], service.to_string(), policy.clone(), replicas[i], util[i]));
                }
                policies.insert(policy, score);
            }
        }
        services.push(ServiceReplay { service: service.to_string(), capacity, mean_rps, policies });
    }
    Ok((services, out_rows))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn actions_and_confusion() {
        assert_eq!(Action::of(3.0, 4.0), Action::ScaleUp);
        assert_eq!(Action::of(3.0, 3.0), Action::NoChange);
        let services: Vec<String> = ["a", "a", "b", "b"].iter().map(|s| s.to_string()).collect();
        let actual = [4.0, 3.0, 2.0, 5.0];
        let current = [3.0, 3.0, 3.0, 5.0];
        let predicted = [4.2, 3.9, 2.6, 5.1];
        let s = score_rows(&[0, 1, 2, 3], &services, &actual, &current, &predicted, (1.0, 10.0));
        // Actual: up, keep, down, keep. Predicted (rounded 4, 4, 3, 5): up, up, keep, keep.
        assert_eq!(s.confusion.counts[Action::ScaleUp as usize][Action::ScaleUp as usize], 1);
        assert_eq!(s.confusion.counts[Action::NoChange as usize][Action::ScaleUp as usize], 1);
        assert_eq!(s.confusion.counts[Action::ScaleDown as usize][Action::NoChange as usize], 1);
        assert_eq!(s.confusion.agreement(), 0.5);
        assert_eq!(s.per_service["a"].rows, 2);
        assert_eq!(s.per_service["b"].exact_accuracy, 0.5);
        assert_eq!(s.overall.exact_accuracy, 0.5);
    }
}
