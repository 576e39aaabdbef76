//! A service's CPU as a function of the load per pod: what turns a request rate into pods.

use serde::{Deserialize, Serialize};

use super::Params;

#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct Capacity {
    /// CPU % with no load.
    pub base: f64,
    /// CPU % per request/s per pod.
    pub slope: f64,
    pub r2: f64,
    pub rows: usize,
}

impl Capacity {
    /// Least squares over rows with load and replicas; `None` when CPU does not rise with load
    /// (the replay cannot say anything about such a service).
    pub fn fit(rps: &[f64], cpu: &[f64], replicas: &[f64]) -> Option<Capacity> {
        let pts: Vec<(f64, f64)> =
            rps.iter().zip(cpu).zip(replicas).filter(|((l, c), r)| l.is_finite() && c.is_finite() && **r > 0.0).map(|((l, c), r)| (l / r, *c)).collect();
        let n = pts.len() as f64;
        if pts.len() < 3 {
            return None;
        }
        let (mx, my) = (pts.iter().map(|p| p.0).sum::<f64>() / n, pts.iter().map(|p| p.1).sum::<f64>() / n);
        let sxx: f64 = pts.iter().map(|p| (p.0 - mx) * (p.0 - mx)).sum();
        let sxy: f64 = pts.iter().map(|p| (p.0 - mx) * (p.1 - my)).sum();
        let syy: f64 = pts.iter().map(|p| (p.1 - my) * (p.1 - my)).sum();
        Capacity::from_moments((mx, my), (sxx, sxy, syy), pts.len())
    }

    /// The least-squares line from the means of load per pod and CPU and their centred sums of
    /// squares and products (also what `serving::capacity` keeps online); `None` when CPU does
    /// not rise with load.
    pub fn from_moments((mx, my): (f64, f64), (sxx, sxy, syy): (f64, f64, f64), rows: usize) -> Option<Capacity> {
        if sxx <= 0.0 || sxy <= 0.0 {
            return None;
        }
        let slope = sxy / sxx;
        let base = (my - slope * mx).max(0.0);
        let r2 = if syy > 0.0 { sxy * sxy / (sxx * syy) } else { 0.0 };
        Some(Capacity { base, slope, r2, rows })
    }

    /// CPU % of each of `ready` pods sharing `rps`; infinite with no pod to serve it.
    pub fn utilization(&self, rps: f64, ready: f64) -> f64 {
        if ready <= 0.0 {
            return f64::INFINITY;
        }
        self.base + self.slope * rps / ready
    }

    /// Requests/s that `ready` pods serve at `target` CPU %.
    pub fn serves(&self, ready: f64, target: f64) -> f64 {
        ready * (target - self.base).max(0.0) / self.slope
    }

    /// The fewest pods that keep utilisation at or under `target`, within the bounds.
    pub fn needed(&self, rps: f64, target: f64, p: &Params) -> f64 {
        let headroom = target - self.base;
        let n = if headroom <= 0.0 { p.max_replicas } else { ceil(self.slope * rps / headroom) };
        n.clamp(p.min_replicas, p.max_replicas)
    }
}

pub use crate::hpa::ceil;

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn capacity_is_recovered_from_recorded_rows() {
        let rps = [100.0, 200.0, 300.0, 400.0, 120.0];
        let reps = [2.0, 2.0, 3.0, 4.0, 1.0];
        let cpu: Vec<f64> = rps.iter().zip(&reps).map(|(l, r)| 10.0 + 0.5 * l / r).collect();
        let c = Capacity::fit(&rps, &cpu, &reps).unwrap();
        assert!((c.base - 10.0).abs() < 1e-9 && (c.slope - 0.5).abs() < 1e-9 && (c.r2 - 1.0).abs() < 1e-9, "{c:?}");
        // CPU that falls with load says nothing about capacity.
        assert!(Capacity::fit(&rps, &[50.0, 40.0, 30.0, 20.0, 45.0], &reps).is_none());
        assert_eq!(c.needed(0.0, 70.0, &Params::default()), 1.0);
        let c = Capacity { base: 10.0, slope: 1.0, r2: 1.0, rows: 1 };
        assert_eq!(c.needed(121.0, 70.0, &Params::default()), 3.0);
        assert_eq!(c.needed(120.0, 70.0, &Params::default()), 2.0);
        assert_eq!(c.serves(2.0, 70.0), 120.0);
        assert_eq!(c.utilization(60.0, 0.0), f64::INFINITY);
    }
}
