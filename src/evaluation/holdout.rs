//! The scoring core evaluate and publish share: a temporal split's hold-out, each model's
//! predictions on it, and every policy replayed on the rows all of them predict.

use std::collections::BTreeMap;
use std::path::Path;

use anyhow::{bail, Context, Result};
use serde::{Deserialize, Serialize};

use super::replay::frontier::{Frontier, Point};
use super::replay::{self, forecast, Capacity, Policy, Series};
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
        let mut by_target: Vec<(f64, replay::Score)> = p.frontier_targets.iter().map(|&t| (t, replay::Score::default())).collect();
        for s in &services {
            for (policy, sc) in &s.policies {
                totals.entry(policy.clone()).or_default().add(sc);
            }
            for ((_, total), (_, sc)) in by_target.iter_mut().zip(&s.frontier) {
                total.add(sc);
            }
        }
        let frontier = Frontier::new(
            by_target
                .into_iter()
                .map(|(target, s)| Point { target, pod_hours: s.pod_hours, under_provisioned_minutes: s.under_provisioned_minutes })
                .collect(),
        );
        Ok(Scored { rows, names, predictions, services, replay_rows, totals, frontier })
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

/// Replays `rows` of `table` (the hold-out) per service: the recorded replicas, the reactive
/// HPA (and its frontier), the forecasting baselines, and each named model both as the old
/// system used it (its prediction is the replica count) and proactively (`<name>+hpa`: the
/// prediction as a floor under the reactive HPA). `predictions[m][table row]`.
fn replay_table(table: &Table, rows: &[usize], names: &[String], predictions: &[Vec<f64>], p: &replay::Params) -> Result<(Vec<ServiceReplay>, ReplayRows)> {
    let rps = table.column_f64("request_count_per_second").context("the replay needs the request rate")?;
    let cpu = table.column_f64("cpu_usage_percent").context("the replay needs CPU usage")?;
    let mut scored: BTreeMap<&str, Vec<usize>> = BTreeMap::new();
    for &r in rows {
        scored.entry(table.services[r].as_str()).or_default().push(r);
    }
    let mut history: BTreeMap<&str, Vec<usize>> = BTreeMap::new();
    for i in 0..table.len() {
        if scored.contains_key(table.services[i].as_str()) {
            history.entry(table.services[i].as_str()).or_default().push(i);
        }
    }
    let bounded = |v: f64| metrics::replicas(v, p.min_replicas, p.max_replicas);
    let mut services = Vec::new();
    let mut out_rows = Vec::new();
    for (service, mut rs) in scored {
        rs.sort_by_key(|&r| table.timestamps[r]);
        let mut all = history.remove(service).unwrap_or_default();
        all.sort_by_key(|&r| table.timestamps[r]);
        // Holt-Winters is fitted on the rows before the hold-out starts.
        let fit_until = all.iter().position(|&r| table.test[r]).unwrap_or(all.len());
        let pick = |v: &[f64], idx: &[usize]| idx.iter().map(|&i| v[i]).collect::<Vec<f64>>();
        let train: Vec<usize> = all.iter().copied().filter(|&i| !table.test[i]).collect();
        let capacity = Capacity::fit(&pick(&rps, &train), &pick(&cpu, &train), &pick(&table.replicas, &train));
        let series = Series { timestamps: rs.iter().map(|&r| table.timestamps[r]).collect(), rps: pick(&rps, &rs), recorded: pick(&table.replicas, &rs) };
        let mean_rps = series.rps.iter().sum::<f64>() / series.rps.len().max(1) as f64;
        let mut policies = BTreeMap::new();
        let mut frontier = Vec::new();
        if let Some(cap) = &capacity {
            let seconds: Vec<f64> = all.iter().map(|&i| table.timestamps[i] as f64 / 1e6).collect();
            let load_rps = pick(&rps, &all);
            let load = forecast::Load { seconds: &seconds, rps: &load_rps };
            let position: std::collections::HashMap<usize, usize> = all.iter().enumerate().map(|(k, &r)| (r, k)).collect();
            let at: Vec<usize> = rs.iter().map(|r| position[r]).collect();
            let pods = |peak: f64| cap.needed(peak, p.hpa_target, p);
            let seasonal: Vec<f64> = forecast::seasonal_naive(&load, &at, p).into_iter().map(|f| f.map_or(p.min_replicas, pods)).collect();
            let holt_winters: Option<Vec<f64>> = forecast::holt_winters(&load, fit_until, &at, p).map(|f| f.into_iter().map(pods).collect());
            let given: Vec<Vec<f64>> = predictions.iter().map(|pred| rs.iter().map(|&r| bounded(pred[r])).collect()).collect();

            let mut run: Vec<(String, Policy)> = vec![
                ("recorded".into(), Policy::Given(&series.recorded)),
                ("hpa".into(), Policy::Reactive { target: p.hpa_target }),
                ("seasonal_naive".into(), Policy::Proactive { target: p.hpa_target, forecast: &seasonal }),
            ];
            if let Some(f) = &holt_winters {
                run.push(("holt_winters".into(), Policy::Proactive { target: p.hpa_target, forecast: f }));
            }
            for (name, g) in names.iter().zip(&given) {
                run.push((name.clone(), Policy::Given(g)));
                run.push((format!("{name}+hpa"), Policy::Proactive { target: p.hpa_target, forecast: g }));
            }
            for (policy, how) in run {
                let o = replay::simulate(&series, cap, &how, p);
                for (i, row) in o.rows.iter().enumerate() {
                    out_rows.push(ReplayRow { timestamp: series.timestamps[i], service: service.to_string(), policy: policy.clone(), replicas: row.replicas, ready: row.ready, utilization: row.utilization });
                }
                policies.insert(policy, o.score);
            }
            for &target in &p.frontier_targets {
                frontier.push((target, replay::simulate(&series, cap, &Policy::Reactive { target }, p).score));
            }
        }
        services.push(ServiceReplay { service: service.to_string(), capacity, mean_rps, policies, frontier });
    }
    Ok((services, out_rows))
}
