//! The scoring core evaluate and publish share: a temporal split's hold-out, each model's
//! predictions on it, and every policy replayed on the rows all of them predict.

use std::collections::BTreeMap;
use std::path::Path;

use anyhow::{bail, Context, Result};
use serde::{Deserialize, Serialize};

use super::replay::{self, Capacity, Series};
use super::{score_rows, HoldoutScores};
use crate::models::metrics;
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
}

/// Rows of the replay table: (timestamp, service, policy, replicas, utilisation).
pub type ReplayRows = Vec<(i64, String, String, f64, f64)>;

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
        let (services, replay_rows) = replay_table(&self.table, &rows, &names, &predictions, p)?;
        let mut totals: BTreeMap<String, replay::Score> = BTreeMap::new();
        for s in &services {
            for (policy, sc) in &s.policies {
                totals.entry(policy.clone()).or_default().add(sc);
            }
        }
        Ok(Scored { rows, names, predictions, services, replay_rows, totals })
    }
}

impl Scored {
    /// Accuracy of model `m` on the scored rows: overall, per service and as actions.
    pub fn accuracy(&self, table: &Table, m: usize, bounds: (f64, f64)) -> HoldoutScores {
        score_rows(&self.rows, &table.services, &table.y, &table.replicas, &self.predictions[m], bounds)
    }

    /// Under-provisioned minutes of a policy over every replayed service.
    pub fn under_provisioned_minutes(&self, policy: &str) -> f64 {
        self.totals.get(policy).map_or(0.0, |s| s.under_provisioned_minutes)
    }
}

/// Replays `rows` of `table` (the hold-out) per service: the recorded replicas, the reactive HPA
/// and each named model's predictions (`predictions[m][row]`).
fn replay_table(table: &Table, rows: &[usize], names: &[String], predictions: &[Vec<f64>], p: &replay::Params) -> Result<(Vec<ServiceReplay>, ReplayRows)> {
    let rps = table.column_f64("request_count_per_second").context("the replay needs the request rate")?;
    let cpu = table.column_f64("cpu_usage_percent").context("the replay needs CPU usage")?;
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
