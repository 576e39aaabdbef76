//! Sequences for the LSTM-CNN: windows of consecutive rows of one service, standardised with a
//! scaler fitted on the rows of the training windows only (not validation, not test).
//!
//! A window belongs to the part (train, validation, test) of its last row, the row whose label
//! it predicts; its earlier rows may come from before that part's cut, as they would in serving.

use serde::{Deserialize, Serialize};

/// Per-feature mean and standard deviation (population, as scikit-learn's StandardScaler).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Scaler {
    pub features: Vec<String>,
    pub mean: Vec<f64>,
    pub std: Vec<f64>,
}

impl Scaler {
    /// Fits on the rows `pick` selects of a row-major matrix. A constant feature gets std 1,
    /// so it scales to zero instead of dividing by zero.
    pub fn fit(features: &[String], x: &[f64], pick: impl Fn(usize) -> bool) -> Scaler {
        let nf = features.len().max(1);
        Scaler::fit_rows(features, (0..x.len() / nf).filter(|&i| pick(i)).map(|i| &x[i * nf..(i + 1) * nf]))
    }

    /// Fits on `rows`, each a row of `features`' values.
    pub fn fit_rows<R: AsRef<[f64]>>(features: &[String], rows: impl Iterator<Item = R>) -> Scaler {
        let nf = features.len();
        let (mut mean, mut m2, mut n) = (vec![0.0; nf], vec![0.0; nf], 0.0);
        // Welford: one pass, stable for large means (memory is in bytes).
        for row in rows {
            let row = row.as_ref();
            n += 1.0;
            for j in 0..nf {
                let v = row[j];
                let d = v - mean[j];
                mean[j] += d / n;
                m2[j] += d * (v - mean[j]);
            }
        }
        let std = m2.iter().map(|s| if n > 0.0 && s / n > 0.0 { (s / n).sqrt() } else { 1.0 }).collect();
        Scaler { features: features.to_vec(), mean, std }
    }

    /// A scaler read from a file: one finite mean and one positive, finite std per feature,
    /// else standardising a row would index past its vectors or divide by zero.
    pub fn check(&self) -> Result<(), String> {
        let nf = self.features.len();
        if self.mean.len() != nf || self.std.len() != nf {
            return Err(format!("{} features but {} means and {} stds", nf, self.mean.len(), self.std.len()));
        }
        if let Some(j) = (0..nf).find(|&j| !self.mean[j].is_finite() || !(self.std[j].is_finite() && self.std[j] > 0.0)) {
            return Err(format!("feature `{}` has mean {} and std {}", self.features[j], self.mean[j], self.std[j]));
        }
        Ok(())
    }

    /// Standardises one row into `out` (f32: what the network computes in).
    pub fn transform_into(&self, row: &[f64], out: &mut [f32]) {
        self.transform_part(0, row, out)
    }

    /// Standardises `part`, the features from position `offset` on, into `out`.
    pub fn transform_part(&self, offset: usize, part: &[f64], out: &mut [f32]) {
        for j in 0..part.len() {
            out[j] = ((part[j] - self.mean[offset + j]) / self.std[offset + j]) as f32;
        }
    }

    pub fn transform(&self, x: &[f64]) -> Vec<f32> {
        let nf = self.features.len();
        let mut out = vec![0f32; x.len()];
        for (row, o) in x.chunks_exact(nf).zip(out.chunks_exact_mut(nf)) {
            self.transform_into(row, o);
        }
        out
    }
}

/// A table's rows standardised for the network, with the one-hot columns kept as each row's
/// service: `values` `[rows, stored]` (the first `stored` features) and, for the rest, row
/// `services[i]` of `one_hot` `[services + 1, features - stored]`, the standardised 0/1 vector
/// of each service (the last: none). A window's input is the two side by side, the numbers
/// a dense `[rows, features]` matrix would hold, at a fraction of its size with many services.
#[derive(Debug, Clone, PartialEq)]
pub struct ScaledRows {
    pub rows: usize,
    pub features: usize,
    pub values: Vec<f32>,
    pub stored: usize,
    pub services: Vec<i64>,
    pub one_hot: Vec<f32>,
}

impl ScaledRows {
    /// Rows with every feature stored: `x` is `[rows, nf]`.
    pub fn dense(x: Vec<f32>, nf: usize) -> ScaledRows {
        ScaledRows { rows: x.len() / nf.max(1), features: nf, values: x, stored: nf, services: Vec::new(), one_hot: Vec::new() }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Part {
    Train,
    Validation,
    Test,
}

/// One window: `len` consecutive rows of one service in time order (the last is the labelled
/// one), as the position of its last row in [`WindowSet`]'s order. 8 bytes, where a list of
/// its rows took 120: a table of 10M rows has 10M windows.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Window {
    end: u32,
    pub part: Part,
}

impl Window {
    /// Whether this window ends on the row after `previous`'s last one in the by-service order:
    /// for two windows of one service, the next window in time.
    pub fn follows(&self, previous: &Window) -> bool {
        self.end == previous.end + 1
    }
}

/// A table's windows: every row by service and time (`order`), and the windows over it.
#[derive(Debug, Clone)]
pub struct WindowSet {
    order: Vec<u32>,
    len: usize,
    pub windows: Vec<Window>,
}

impl WindowSet {
    /// The table rows `w` covers, in time order.
    pub fn rows(&self, w: &Window) -> &[u32] {
        let end = w.end as usize;
        &self.order[end + 1 - self.len..=end]
    }

    /// The row whose label `w` predicts.
    pub fn last(&self, w: &Window) -> usize {
        self.order[w.end as usize] as usize
    }

    /// The windows of `part`.
    pub fn part(&self, part: Part) -> Vec<Window> {
        self.windows.iter().copied().filter(|w| w.part == part).collect()
    }

    /// Which of `n` table rows `windows` cover (what a scaler of the training part is fitted on).
    pub fn rows_of(&self, windows: &[Window], n: usize) -> Vec<bool> {
        let mut covered = vec![false; n];
        for w in windows {
            for &r in self.rows(w) {
                covered[r as usize] = true;
            }
        }
        covered
    }

    /// The windows as row indices `[n, len]` (flattened) into the table, with the label of each
    /// window's last row: what the network gathers its inputs from, a mini-batch at a time, so
    /// memory holds every row once rather than once per window that covers it.
    pub fn index(&self, windows: &[Window], y: &[f64]) -> (Vec<i64>, Vec<f32>) {
        let labels = windows.iter().map(|w| y[self.last(w)] as f32).collect();
        (self.row_index(windows), labels)
    }

    /// The windows as row indices `[n, len]` (flattened), as [`WindowSet::index`] without labels.
    pub fn row_index(&self, windows: &[Window]) -> Vec<i64> {
        windows.iter().flat_map(|w| self.rows(w).iter().map(|&r| i64::from(r))).collect()
    }

    /// The same windows over a table of only the rows `keep` marks (row r becomes the number
    /// of kept rows before it). Only windows whose rows are all kept may be used after.
    pub fn restrict(&self, keep: &[bool]) -> WindowSet {
        let mut position = Vec::with_capacity(keep.len());
        let mut next = 0u32;
        for &k in keep {
            position.push(if k { next } else { u32::MAX });
            next += u32::from(k);
        }
        WindowSet { order: self.order.iter().map(|&r| position[r as usize]).collect(), len: self.len, windows: self.windows.clone() }
    }

    /// The windows' rows stacked into one block `[n, len, nf]` (flattened): a single window's
    /// input, or a few; training and evaluation gather from [`WindowSet::index`] instead.
    pub fn stack(&self, windows: &[Window], x_scaled: &[f32], nf: usize) -> Vec<f32> {
        let mut xs = Vec::with_capacity(windows.len() * self.len * nf);
        for w in windows {
            for &r in self.rows(w) {
                let r = r as usize;
                xs.extend_from_slice(&x_scaled[r * nf..(r + 1) * nf]);
            }
        }
        xs
    }
}

/// Windows of `len` consecutive rows per service (`services[i]`: row i's name or id, in the
/// names' order). `test[i]` marks the test rows; of each service's training windows the last
/// `validation_fraction` (in time) become validation.
pub fn windows<S: Ord + Copy>(services: &[S], timestamps: &[i64], test: &[bool], len: usize, validation_fraction: f64) -> WindowSet {
    let mut by: std::collections::BTreeMap<S, Vec<u32>> = Default::default();
    for (i, s) in services.iter().enumerate() {
        by.entry(*s).or_default().push(i as u32);
    }
    let mut order: Vec<u32> = Vec::with_capacity(services.len());
    let mut out = Vec::with_capacity(services.len());
    for rows in by.values_mut() {
        rows.sort_by_key(|&i| timestamps[i as usize]);
        let (base, first) = (order.len(), out.len());
        order.extend_from_slice(rows);
        for end in len.max(1) - 1..rows.len() {
            let part = if test[rows[end] as usize] { Part::Test } else { Part::Train };
            out.push(Window { end: (base + end) as u32, part });
        }
        let train: Vec<usize> = (first..out.len()).filter(|&w| out[w].part == Part::Train).collect();
        let n_val = (train.len() as f64 * validation_fraction).round() as usize;
        for &w in &train[train.len() - n_val..] {
            out[w].part = Part::Validation;
        }
        *rows = Vec::new();
    }
    WindowSet { order, len: len.max(1), windows: out }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_scaler_from_a_file_is_checked_before_it_scales_anything() {
        let f = |n: usize| (0..n).map(|i| format!("f{i}")).collect::<Vec<_>>();
        let good = Scaler { features: f(2), mean: vec![0.0, 1.0], std: vec![1.0, 2.0] };
        assert_eq!(good.check(), Ok(()));
        let short = Scaler { std: vec![1.0], ..good.clone() };
        assert_eq!(short.check().unwrap_err(), "2 features but 2 means and 1 stds");
        let zero = Scaler { std: vec![1.0, 0.0], ..good.clone() };
        assert!(zero.check().unwrap_err().contains("`f1`"));
        assert!(Scaler { mean: vec![f64::NAN, 0.0], ..good }.check().is_err());
    }

    #[test]
    fn windows_never_cross_services_and_follow_time() {
        // Two services interleaved and out of order.
        let s = ["a", "b", "a", "b", "a", "a", "b", "a"];
        let t = [3, 0, 1, 1, 2, 0, 2, 4];
        let test = [false; 8];
        let w = windows(&s, &t, &test, 3, 0.0);
        // a has rows (by time) 5,2,4,0,7 → 3 windows; b has 1,3,6 → 1 window.
        let rows: Vec<&[u32]> = w.windows.iter().map(|x| w.rows(x)).collect();
        assert_eq!(rows, [&[5, 2, 4], &[2, 4, 0], &[4, 0, 7], &[1, 3, 6]]);
        assert_eq!(w.windows.iter().map(|x| w.last(x)).collect::<Vec<_>>(), [4, 0, 7, 6]);
        // Indices for the network, and the same rows stacked.
        let y: Vec<f64> = (0..8).map(f64::from).collect();
        let (index, labels) = w.index(&w.windows[1..3], &y);
        assert_eq!((index, labels), (vec![2, 4, 0, 4, 0, 7], vec![0.0, 7.0]));
        let x: Vec<f32> = (0..8).map(|v| v as f32).collect();
        assert_eq!(w.stack(&w.windows[3..], &x, 1), [1.0, 3.0, 6.0]);
    }

    #[test]
    fn restricted_windows_read_the_same_rows_of_the_smaller_table() {
        let (s, t) = (["a"; 6], [0, 1, 2, 3, 4, 5]);
        let w = windows(&s, &t, &[false; 6], 2, 0.0);
        // Rows 0 and 1 dropped: the windows over rows 2..=5 keep their rows, renumbered.
        let r = w.restrict(&[false, false, true, true, true, true]);
        assert_eq!(r.rows(&r.windows[2]), [0, 1]);
        assert_eq!((r.rows(&r.windows[4]), r.last(&r.windows[4])), (&[2u32, 3][..], 3));
        let ids = [0u32; 6];
        assert_eq!(windows(&ids, &t, &[false; 6], 2, 0.0).windows, w.windows, "ids group as names do");
    }

    #[test]
    fn parts_follow_the_last_row_and_validation_is_the_end_of_training() {
        let n = 20;
        let s = vec!["a"; n];
        let t: Vec<i64> = (0..n as i64).collect();
        let test: Vec<bool> = (0..n).map(|i| i >= 16).collect();
        let w = windows(&s, &t, &test, 4, 0.25);
        // 17 windows end at rows 3..=19: 4 test (16..=19), 13 training of which round(3.25)=3 validation.
        let parts: Vec<Part> = w.windows.iter().map(|w| w.part).collect();
        assert_eq!(parts.iter().filter(|p| **p == Part::Test).count(), 4);
        assert_eq!(parts.iter().filter(|p| **p == Part::Validation).count(), 3);
        assert_eq!(w.windows[10].part, Part::Validation);
        assert_eq!(w.windows[9].part, Part::Train);
        // The first test window reaches back before the cut.
        assert_eq!(w.rows(&w.windows[13]), [13, 14, 15, 16]);
        assert_eq!(w.windows[13].part, Part::Test);
    }

    #[test]
    fn the_training_part_is_the_rows_of_training_windows_only() {
        let n = 20;
        let s = vec!["a"; n];
        let t: Vec<i64> = (0..n as i64).collect();
        let test: Vec<bool> = (0..n).map(|i| i >= 16).collect();
        let w = windows(&s, &t, &test, 4, 0.25);
        let train = w.part(Part::Train);
        // Training windows end at rows 3..=12; rows 13..=15 only feed validation windows.
        let covered = w.rows_of(&train, n);
        assert_eq!(covered.iter().filter(|c| **c).count(), 13);
        assert!(covered[12] && !covered[13] && !covered[16]);
        let x: Vec<f64> = (0..n).map(|i| i as f64).collect();
        let sc = Scaler::fit(&["x".to_string()], &x, |i| covered[i]);
        assert_eq!(sc.mean, vec![6.0]);
    }

    #[test]
    fn a_service_shorter_than_a_window_gives_none() {
        let w = windows(&["a", "a"], &[0, 1], &[false, false], 3, 0.2);
        assert!(w.windows.is_empty());
    }

    #[test]
    fn scaler_uses_only_picked_rows_and_survives_constants() {
        let f = vec!["x".to_string(), "c".to_string()];
        // Rows: (1,5) (3,5) (100,5); fit on the first two only.
        let x = [1.0, 5.0, 3.0, 5.0, 100.0, 5.0];
        let sc = Scaler::fit(&f, &x, |i| i < 2);
        assert_eq!(sc.mean, vec![2.0, 5.0]);
        assert_eq!(sc.std, vec![1.0, 1.0]); // population std of (1,3) is 1; constant → 1
        assert_eq!(sc.transform(&x), vec![-1.0, 0.0, 1.0, 0.0, 98.0, 0.0]);
    }
}
