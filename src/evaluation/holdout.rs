//! The scoring core evaluate and publish share: a temporal split's hold-out, each model's
//! predictions on it, and every policy replayed on the rows all of them predict.

use std::collections::{BTreeMap, HashMap};
use std::path::{Path, PathBuf};

use anyhow::{Context, Result, bail};

use super::comparison::{self, ReplayTrace, ServiceReplay};
use super::replay;
use super::replay::frontier::Frontier;
use super::{HoldoutScores, score_rows};
use crate::models::model::Model;
use crate::models::row_keys::{RowFilter, RowKeys};
use crate::models::table::Table;

/// How far before a service's first hold-out row evaluate reads: the replay fits capacity and
/// Holt-Winters on that history and the seasonal naive forecast looks a week back, so two
/// weeks give them what the whole table gave while a 90-day table is read as its hold-out and
/// 14 days. At least [`CONTEXT_ROWS`] rows are kept however sparse the history is, so a model's
/// windows reach across the cut (an LSTM-CNN with longer windows predicts the first hold-out
/// rows of a sparse service as having no full window).
pub const HISTORY_SECONDS: i64 = 14 * 86_400;
pub const CONTEXT_ROWS: usize = 512;

/// The rows of each service with hold-out rows from `seconds` before its first hold-out row on,
/// and the [`CONTEXT_ROWS`] latest before that; a service with no hold-out rows is not replayed,
/// so none of its rows. With [`HISTORY_SECONDS`]: what the replay fits and forecasts on; with 0:
/// the hold-out and the windows reaching back across the cut, what the models predict on.
fn reach(keys: &RowKeys, seconds: i64) -> Vec<bool> {
    use std::cmp::Reverse;
    use std::collections::BinaryHeap;
    let ts = &keys.timestamps;
    let mut first_test = vec![i64::MAX; keys.services()];
    for i in (0..keys.len()).filter(|&i| keys.test[i]) {
        let s = keys.service_id(i);
        first_test[s] = first_test[s].min(ts[i]);
    }
    let cut = |s: usize| first_test[s].saturating_sub(seconds * 1_000_000);
    let mut keep: Vec<bool> =
        (0..keys.len()).map(|i| keys.test[i] || (first_test[keys.service_id(i)] != i64::MAX && ts[i] >= cut(keys.service_id(i)))).collect();
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

/// The hold-out rows of a temporal split and two weeks before them, as the replay and the
/// scores read them; the models predict on every feature of the hold-out and the windows
/// before it, read a group of services at a time.
pub struct Holdout {
    /// The keys, target, request rate and CPU (the replay fits capacity and forecasts on them):
    /// a few columns of a 90-day table's two weeks and hold-out, where every feature of them
    /// held most of evaluate's memory.
    pub table: Table,
    /// Table rows in the hold-out.
    pub test: Vec<usize>,
    path: PathBuf,
    /// The rows the models read, one filter per group of services that fits the stage's memory
    /// (a service is never split: its windows run across its rows).
    groups: Vec<Option<RowFilter>>,
}

/// The columns the replay reads besides the keys.
const REPLAY_COLUMNS: [&str; 2] = ["request_count_per_second", "cpu_usage_percent"];

/// Rows of every feature held at once to predict, at most: 1.2 GB of 38 columns.
const PREDICT_ROWS: usize = 4_000_000;
/// What a row read to predict holds: its features, the LSTM-CNN's scaled copy and a forest's
/// block of them (38 columns: 300 bytes each time).
const PREDICT_ROW_BYTES: u64 = 1024;

/// Named predictions scored on the rows every one of them predicts.
pub struct Scored {
    /// Table rows that every model predicted.
    pub rows: Vec<usize>,
    pub names: Vec<String>,
    /// `predictions[m][table row]`, NaN where model m gave none.
    pub predictions: Vec<Vec<f64>>,
    pub services: Vec<ServiceReplay>,
    /// Per policy (`recorded`, `hpa` and each name), summed over services.
    pub totals: BTreeMap<String, replay::Score>,
    /// The reactive HPA at each frontier target, summed over services.
    pub frontier: Frontier,
    /// The HPA target each forecasting policy (`<name>+hpa`, the baselines) runs best with
    /// (none: the forecast alone).
    pub targets: BTreeMap<String, Option<f64>>,
    /// What the replay wants the reader to know.
    pub notes: Vec<String>,
    /// Per name: its risk family, and per service its errors (see `comparison::Compared`).
    pub risk: BTreeMap<String, Vec<super::risk::Scored>>,
    pub errors: BTreeMap<String, BTreeMap<String, Vec<f64>>>,
}

impl Holdout {
    /// What evaluating a split of `input_bytes` holds: its key and replay columns (a tenth of
    /// it at most) and the largest group of services' features it reads at once.
    pub fn memory(input_bytes: u64) -> u64 {
        input_bytes / 10 + PREDICT_ROWS as u64 * PREDICT_ROW_BYTES
    }

    /// The hold-out of `path` and each service's history before it (see [`reach`]); the models
    /// will read the features of as many services at a time as fit in `memory` bytes.
    pub fn load(path: &Path, stage: &str, memory: u64) -> Result<Holdout> {
        let keys = RowKeys::read_with_time(path)?;
        if !keys.test.iter().any(|&t| t) {
            bail!("`{stage}` has no test rows to evaluate on");
        }
        let filter = |keep: Vec<bool>| if keep.iter().all(|&k| k) { None } else { Some(keys.keep(keep)) };
        let replayed: Vec<String> = REPLAY_COLUMNS.iter().map(|c| c.to_string()).collect();
        let table = Table::load_some(path, Some(&replayed), filter(reach(&keys, HISTORY_SECONDS)).as_ref())
            .with_context(|| format!("`{stage}`: the replay needs {}", REPLAY_COLUMNS.join(" and ")))?;
        let test = table.test_rows();
        // Services in groups of what the models read that fit in memory.
        let budget = usize::try_from(memory.saturating_sub(memory / 4) / PREDICT_ROW_BYTES).unwrap_or(usize::MAX).clamp(1, PREDICT_ROWS);
        let read = reach(&keys, 0);
        let mut rows = vec![0usize; keys.services()];
        for i in (0..keys.len()).filter(|&i| read[i]) {
            rows[keys.service_id(i)] += 1;
        }
        let mut group_of = vec![0usize; keys.services()];
        let (mut groups, mut filled) = (1, 0);
        for (s, &n) in rows.iter().enumerate() {
            if filled > 0 && filled + n > budget {
                (groups, filled) = (groups + 1, 0);
            }
            group_of[s] = groups - 1;
            filled += n;
        }
        let groups = (0..groups).map(|g| filter((0..keys.len()).map(|i| read[i] && group_of[keys.service_id(i)] == g).collect())).collect();
        Ok(Holdout { table, test, path: path.to_path_buf(), groups })
    }

    /// Each model's prediction for each hold-out row (in [`Holdout::test`]'s order), `None`
    /// where it has none (a window not full): every feature is read once per group of services
    /// and every model predicts on it.
    pub fn predict(&self, models: &[&Model], progress: &dyn Fn(&str)) -> Result<Vec<Vec<Option<f64>>>> {
        // Each service's hold-out rows, in order: a group's hold-out rows of a service are the same rows.
        let mut slots: HashMap<&str, Vec<usize>> = HashMap::new();
        for (k, &r) in self.test.iter().enumerate() {
            slots.entry(self.table.service(r)).or_default().push(k);
        }
        let mut out = vec![vec![None; self.test.len()]; models.len()];
        if self.groups.len() > 1 {
            tracing::debug!("{}: reading the features of {} groups of services in turn, to fit the stage's memory", self.path.display(), self.groups.len());
        }
        for (g, filter) in self.groups.iter().enumerate() {
            if self.groups.len() > 1 {
                progress(&format!("predicting the hold-out: services, group {} of {}", g + 1, self.groups.len()));
            }
            let part = Table::load_some(&self.path, None, filter.as_ref())?;
            let test = part.test_rows();
            let mut next: HashMap<&str, usize> = HashMap::new();
            let mut at = Vec::with_capacity(test.len());
            for &r in &test {
                let service = part.service(r);
                let n = next.entry(service).or_insert(0);
                let Some(&k) = slots.get(service).and_then(|s| s.get(*n)) else {
                    bail!("{}: {service} has more hold-out rows among the features than among the keys", self.path.display());
                };
                at.push(k);
                *n += 1;
            }
            for (m, model) in models.iter().enumerate() {
                for (&k, p) in at.iter().zip(model.predict_rows(&part, &test)?) {
                    out[m][k] = p;
                }
            }
        }
        Ok(out)
    }

    /// Replays and scores `predictions` (one per name, as [`Holdout::predict`] gives them) on
    /// the hold-out rows that all of them predict, handing each service's replay of each policy
    /// to `trace`.
    pub fn score(
        &self,
        names: Vec<String>,
        predictions: &[Vec<Option<f64>>],
        p: &replay::Params,
        trace: &mut dyn FnMut(ReplayTrace) -> Result<()>,
    ) -> Result<Scored> {
        let rows: Vec<usize> = (0..self.test.len()).filter(|&k| predictions.iter().all(|m| m[k].is_some())).map(|k| self.test[k]).collect();
        if rows.is_empty() {
            bail!("no hold-out row has a prediction from every model (services shorter than a window?)");
        }
        let predictions: Vec<Vec<f64>> = predictions.iter().map(|m| self.table.spread(&self.test, m)).collect();
        let c = comparison::compare(&self.table, &rows, &names, &predictions, p, trace)?;
        Ok(Scored {
            rows,
            names,
            predictions,
            services: c.services,
            totals: c.totals,
            frontier: c.frontier,
            targets: c.targets,
            notes: c.notes,
            risk: c.risk,
            errors: c.errors,
        })
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
        let keep = reach(&keys(&rows), HISTORY_SECONDS);
        let kept = |service: &str| rows.iter().zip(&keep).filter(|(r, k)| r.0 == service && **k).map(|(r, _)| r.1).collect::<Vec<i64>>();
        let web = kept("web");
        // From 14 days before the hold-out (row 672), and the CONTEXT_ROWS rows before that.
        assert_eq!((web.len(), web[0]), (1440 - 672 + CONTEXT_ROWS, (672 - CONTEXT_ROWS as i64) * half_hour));
        assert!(web.windows(2).all(|w| w[1] - w[0] == half_hour), "no gap in what is read");
        assert_eq!(kept("api").len(), 10, "api's sparse history is kept as context");
        assert!(kept("batch").is_empty(), "a service without hold-out rows is not replayed");
        // A table shorter than two weeks is read whole.
        let short: Vec<(&str, i64, &str)> = (0..40).map(|k| ("web", k * DAY / 4, if k >= 32 { "test" } else { "train" })).collect();
        assert!(reach(&keys(&short), HISTORY_SECONDS).iter().all(|&k| k));
        // What the models read: the hold-out and a window's reach before it.
        let models = reach(&keys(&rows), 0);
        let web: Vec<i64> = rows.iter().zip(&models).filter(|(r, k)| r.0 == "web" && **k).map(|(r, _)| r.1).collect();
        assert_eq!((web.len(), web[0]), (96 + CONTEXT_ROWS, (1344 - CONTEXT_ROWS as i64) * half_hour));
    }
}
