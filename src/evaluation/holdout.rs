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
use crate::models::row_keys::RowKeys;
use crate::models::table::Table;

/// How far before a service's first hold-out row evaluate reads: the replay fits capacity and
/// Holt-Winters on that history and the seasonal naive forecast looks a week back, so two
/// weeks give them what the whole table gave while a 90-day table is read as its hold-out and
/// 14 days. At least [`CONTEXT_ROWS`] rows are kept however sparse the history is, so a model's
/// windows reach across the cut (an LSTM-CNN with longer windows predicts the first hold-out
/// rows of a sparse service as having no full window).
pub const HISTORY_SECONDS: i64 = 14 * 86_400;
pub const CONTEXT_ROWS: usize = 512;

/// The rows evaluate reads: every row from [`HISTORY_SECONDS`] before the service's first
/// hold-out row on, and the [`CONTEXT_ROWS`] latest before that; a service with no hold-out
/// rows is not replayed, so none of its rows.
fn history(keys: &RowKeys) -> Vec<bool> {
    use std::cmp::Reverse;
    use std::collections::BinaryHeap;
    let ts = &keys.timestamps;
    let mut first_test = vec![i64::MAX; keys.services()];
    for i in (0..keys.len()).filter(|&i| keys.test[i]) {
        let s = keys.service_id(i);
        first_test[s] = first_test[s].min(ts[i]);
    }
    let cut = |s: usize| first_test[s].saturating_sub(HISTORY_SECONDS * 1_000_000);
    let mut keep: Vec<bool> = (0..keys.len()).map(|i| keys.test[i] || (first_test[keys.service_id(i)] != i64::MAX && ts[i] >= cut(keys.service_id(i)))).collect();
    // The latest rows before each service's cut, a bounded heap per service.
    let mut latest: Vec<BinaryHeap<Reverse<(i64, usize)>>> = vec![BinaryHeap::new(); keys.services()];
    for i in (0..keys.len()).filter(|&i| !keep[i]) {
        let s = keys.service_id(i);
        if first_test[s] == i64::MAX {
            continue;
        }
        latest[s].push(Reverse((ts[i], i)));
        if latest[s].len() > CONTEXT_ROWS {
            latest[s].pop();
        }
    }
    for Reverse((_, i)) in latest.into_iter().flatten() {
        keep[i] = true;
    }
    keep
}

/// The hold-out rows of a temporal split, with the training rows before them (the LSTM-CNN's
/// windows reach back across the cut, and the replay fits each service's capacity on them):
/// at most two weeks of them.
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
    /// The HPA target each forecasting policy (`<name>+hpa`, the baselines) runs best with
    /// (none: the forecast alone).
    pub targets: BTreeMap<String, Option<f64>>,
    /// What the replay wants the reader to know.
    pub notes: Vec<String>,
}

impl Holdout {
    /// The hold-out of `path` and each service's history before it (see [`history`]).
    pub fn load(path: &Path, stage: &str) -> Result<Holdout> {
        let keys = RowKeys::read_with_time(path)?;
        if !keys.test.iter().any(|&t| t) {
            bail!("`{stage}` has no test rows to evaluate on");
        }
        let keep = history(&keys);
        let table = if keep.iter().all(|&k| k) { Table::load(path)? } else { Table::load_some(path, None, Some(&keys.keep(keep)))? };
        let test = table.test_rows();
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

#[cfg(test)]
mod tests {
    use super::*;
    use datafusion::arrow::array::{ArrayRef, RecordBatch, StringArray, TimestampMicrosecondArray};
    use std::sync::Arc;

    const DAY: i64 = 86_400;

    /// `(service, seconds, split)` rows as a split's key columns, read back as [`RowKeys`].
    fn keys(rows: &[(&str, i64, &str)]) -> RowKeys {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("split.parquet");
        let batch = RecordBatch::try_from_iter([
            ("timestamp", Arc::new(TimestampMicrosecondArray::from_iter_values(rows.iter().map(|r| r.1 * 1_000_000))) as ArrayRef),
            ("service_name", Arc::new(rows.iter().map(|r| Some(r.0)).collect::<StringArray>()) as ArrayRef),
            ("split", Arc::new(rows.iter().map(|r| Some(r.2)).collect::<StringArray>()) as ArrayRef),
        ])
        .unwrap();
        crate::io::table::write_parquet(&path, batch.schema(), &[batch]).unwrap();
        RowKeys::read_with_time(&path).unwrap()
    }

    #[test]
    fn evaluate_reads_two_weeks_before_the_hold_out_and_a_window_of_sparse_history() {
        // web: a row every 30 minutes for 30 days, the last 2 days held out.
        let half_hour = 1800;
        let mut rows: Vec<(&str, i64, &str)> = (0..1440).map(|k| ("web", k * half_hour, if k >= 1344 { "test" } else { "train" })).collect();
        // api: one row a week, hold-out at the end; batch: no hold-out at all.
        rows.extend((0..10).map(|k| ("api", k * 7 * DAY, if k == 9 { "test" } else { "train" })));
        rows.extend((0..5).map(|k| ("batch", k * DAY, "train")));
        let keep = history(&keys(&rows));
        let kept = |service: &str| rows.iter().zip(&keep).filter(|(r, k)| r.0 == service && **k).map(|(r, _)| r.1).collect::<Vec<i64>>();
        let web = kept("web");
        // From 14 days before the hold-out (row 672), and the CONTEXT_ROWS rows before that.
        assert_eq!((web.len(), web[0]), (1440 - 672 + CONTEXT_ROWS, (672 - CONTEXT_ROWS as i64) * half_hour));
        assert!(web.windows(2).all(|w| w[1] - w[0] == half_hour), "no gap in what is read");
        assert_eq!(kept("api").len(), 10, "api's sparse history is kept as context");
        assert!(kept("batch").is_empty(), "a service without hold-out rows is not replayed");
        // A table shorter than two weeks is read whole.
        let short: Vec<(&str, i64, &str)> = (0..40).map(|k| ("web", k * DAY / 4, if k >= 32 { "test" } else { "train" })).collect();
        assert!(history(&keys(&short)).iter().all(|&k| k));
    }
}
