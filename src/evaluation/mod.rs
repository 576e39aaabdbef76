//! Evaluation: every model scored on one common temporal hold-out (the honest comparison),
//! per service, as scaling actions, and as an autoscaling replay.

mod comparison;
mod holdout;
pub mod policy;
pub mod policy_name;
pub mod replay;
mod result;
pub mod risk;

pub use comparison::{ReplayTrace, ServiceReplay};
pub use holdout::{Holdout, Scored};
pub use result::{EVALUATION, Evaluation, ModelEvaluation, ModelInfo};

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use crate::models::scores::{self, Scores};

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
pub fn score_rows(rows: &[usize], services: &[impl AsRef<str>], actual: &[f64], current: &[f64], predicted: &[f64], bounds: (f64, f64)) -> HoldoutScores {
    let (lo, hi) = bounds;
    let take = |v: &[f64], pick: &[usize]| pick.iter().map(|&i| v[i]).collect::<Vec<f64>>();
    let overall = scores::score(&take(actual, rows), &take(predicted, rows), lo, hi);
    let mut by: BTreeMap<&str, Vec<usize>> = BTreeMap::new();
    for &r in rows {
        by.entry(services[r].as_ref()).or_default().push(r);
    }
    let per_service = by.into_iter().map(|(s, rs)| (s.to_string(), scores::score(&take(actual, &rs), &take(predicted, &rs), lo, hi))).collect();
    let mut confusion = Confusion::default();
    for &r in rows {
        confusion.add(Action::of(current[r], actual[r]), Action::of(current[r], scores::replicas(predicted[r], lo, hi)));
    }
    HoldoutScores { overall, per_service, confusion }
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
