//! What the collector adds to a raw sample: the mean and least-squares slope over the last
//! 10 samples of the service, and the row as it writes it.

use std::collections::VecDeque;

/// The last 10 samples of one series.
#[derive(Default, Clone)]
pub struct Window {
    values: VecDeque<f64>,
}

impl Window {
    pub const LEN: usize = 10;

    pub fn push(&mut self, v: f64) {
        if self.values.len() == Self::LEN {
            self.values.pop_front();
        }
        self.values.push_back(v);
    }

    pub fn mean(&self) -> f64 {
        self.values.iter().sum::<f64>() / self.values.len().max(1) as f64
    }

    /// Slope per sample of the least-squares line through (0, v0) … (n-1, vn-1).
    pub fn slope(&self) -> f64 {
        let n = self.values.len();
        if n < 2 {
            return 0.0;
        }
        let xm = (n - 1) as f64 / 2.0;
        let ym = self.mean();
        let (mut num, mut den) = (0.0, 0.0);
        for (i, v) in self.values.iter().enumerate() {
            let dx = i as f64 - xm;
            num += dx * (v - ym);
            den += dx * dx;
        }
        num / den
    }
}

/// Round as the collector does before writing (`round(x, d)`).
pub fn round(x: f64, decimals: i32) -> f64 {
    let f = 10f64.powi(decimals);
    let r = (x * f).round() / f;
    if r == 0.0 { 0.0 } else { r }
}

/// Python's `isoformat()`: microseconds only when non-zero.
pub fn isoformat(micros: i64) -> String {
    let dt = chrono::DateTime::from_timestamp_micros(micros).expect("simulated times are in range").naive_utc();
    if dt.and_utc().timestamp_subsec_micros() == 0 { dt.format("%Y-%m-%dT%H:%M:%S").to_string() } else { dt.format("%Y-%m-%dT%H:%M:%S%.6f").to_string() }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn mean_and_slope_over_last_ten() {
        let mut w = Window::default();
        assert_eq!(w.slope(), 0.0);
        for i in 0..15 {
            w.push(2.0 * i as f64 + 1.0);
        }
        assert!((w.slope() - 2.0).abs() < 1e-12);
        assert!((w.mean() - (2.0 * 9.5 + 1.0)).abs() < 1e-12, "mean of the last 10 (5..=14)");
    }

    #[test]
    fn isoformat_like_python() {
        assert_eq!(isoformat(1_759_730_400_000_000), "2025-10-06T06:00:00");
        assert_eq!(isoformat(1_759_730_400_937_643), "2025-10-06T06:00:00.937643");
    }
}
