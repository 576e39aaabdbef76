//! The scoring core evaluate and publish share: a temporal split's hold-out, each model's
//! predictions on it, and every policy replayed on the rows all of them predict.

use std::collections::BTreeMap;
use std::path::Path;

use anyhow::{bail, Result};
use serde::{Deserialize, Serialize};

use super::comparison;
use super::replay::frontier::Frontier;
use super::replay::{self, Capacity};
use super::{score_rows, HoldoutScores};
use crate::models::model::Model;
use crate::models::table::Table;

/// The hold-out rows of a temporal split, with the training rows before them (the LSTM-CNN's
/// windows reach back across the cut, and the replay fits each service's capacity on them).
pub struct Holdout {
    pub table: Table,
    /// Table rows in the hold-out.
    pub test: Vec<usize>,
}

/// One policy's replay of one service.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct ServiceReplay {
    pub service: String,
    pub capacity: Option<Capacity>,
    pub mean_rps: f64,
    pub policies: BTreeMap<String, replay::Score>,
    /// The reactive HPA at each frontier target.
    #[serde(default)]
    pub frontier: Vec<(f64, replay::Score)>,
}

/// One row of one policy's replay: what it asked for and what served.
#[derive(Debug, Clone)]
pub struct ReplayRow {
    pub timestamp: i64,
    pub service: String,
    pub policy: String,
    pub replicas: f64,
    pub ready: f64,
    pub utilization: f64,
}

pub type ReplayRows = Vec<ReplayRow>;

/// Named predictions scored on the rows every one of them predicts.
pub struct Scored {
    /// Table rows that every model predicted.
    pub rows: Vec<usize>,
    pub names: Vec<String>,
    /// `predictions[m][table row]`, NaN where model m gave none.
    pub predictions: Vec<Vec<f64>>,
    pub services: Vec<ServiceReplay>,
    pub replay_rows: ReplayRows,
    /// Per policy (`recorded`, `hpa` and each name), summed over services.
    pub totals: BTreeMap<String, replay::Score>,
    /// The reactive HPA at each frontier target, summed over services.
    pub frontier: Frontier,
    /// The HPA target each forecasting policy (`<name>+hpa`, the baselines) runs best with.
    pub targets: BTreeMap<String, f64>,
    /// What the replay wants the reader to know.
    pub notes: Vec<String>,
}

impl Holdout {
    pub fn load(path: &Path, stage: &str) -> Result<Holdout> {
        let table = Table::load(path)?;
        let test = table.test_rows();
        if test.is_empty() {
            bail!("`{stage}` has no test rows to evaluate on");
        }
        Ok(Holdout { table, test })
    }

    /// `model`'s prediction for each hold-out row, `None` where it has none (a window not full).
    pub fn predict(&self, model: &Model) -> Result<Vec<Option<f64>>> {
        model.predict_rows(&self.table, &self.test)
    }

    /// Replays and scores `predictions` (one per name, as [`Holdout::predict`] gives them) on
    /// the hold-out rows that all of them predict.
    pub fn score(&self, names: Vec<String>, predictions: &[Vec<Option<f64>>], p: &replay::Params) -> Result<Scored> {
        let rows: Vec<usize> =
            (0..self.test.len()).filter(|&k| predictions.iter().all(|m| m[k].is_some())).map(|k| self.test[k]).collect();
        if rows.is_empty() {
            bail!("no hold-out row has a prediction from every model (services shorter than a window?)");
        }
        let predictions: Vec<Vec<f64>> = predictions.iter().map(|m| self.table.spread(&self.test, m)).collect();
        let c = comparison::compare(&self.table, &rows, &names, &predictions, p)?;
        Ok(Scored { rows, names, predictions, services: c.services, replay_rows: c.rows, totals: c.totals, frontier: c.frontier, targets: c.targets, notes: c.notes })
    }
}

impl Scored {
    /// Accuracy of model `m` on the scored rows: overall, per service and as actions.
    pub fn accuracy(&self, table: &Table, m: usize, bounds: (f64, f64)) -> HoldoutScores {
        score_rows(&self.rows, &table.service_refs(), &table.y, &table.replicas, &self.predictions[m], bounds)
    }

    /// Under-provisioned minutes of a policy over every replayed service.
    pub fn under_provisioned_minutes(&self, policy: &str) -> f64 {
        self.totals.get(policy).map_or(0.0, |s| s.under_provisioned_minutes)
    }
}
