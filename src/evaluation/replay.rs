//! Autoscaling replay: would a service have been healthy with the replica counts a policy sets?
//!
//! Method (also written into the report):
//! 1. Load is the recorded request rate. Each service's CPU model is fitted on the training part
//!    (rows before the hold-out): `cpu% = base + per_pod_rps × slope`, where per_pod_rps is the
//!    request rate divided by the recorded replicas (least squares). This is the per-pod capacity.
//! 2. A policy is a replica count per hold-out row, held until the next row. Its utilisation is
//!    the fitted CPU at that row's load spread over its replicas.
//! 3. Scored per policy: minutes over the target utilisation (under-provisioned: a proxy for SLO
//!    violations), pod-hours above the fewest pods that would have stayed under the target
//!    (over-provisioned), and scaling actions per hour.
//!
//! The replay is open-loop: features and load come from the recorded run, so a policy's earlier
//! decisions do not change later inputs. It ranks policies; it does not predict latencies.

use serde::{Deserialize, Serialize};

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct Params {
    /// CPU % above which a row counts as under-provisioned.
    pub target_utilization: f64,
    /// The reactive HPA's target CPU % (lower than the limit above, for headroom).
    pub hpa_target: f64,
    /// HPA leaves replicas alone while |utilisation / target − 1| is within this.
    pub hpa_tolerance: f64,
    /// HPA scales down only to the highest recommendation of this window.
    pub scale_down_stabilization_seconds: f64,
    pub min_replicas: f64,
    pub max_replicas: f64,
    /// A row holds its replicas until the next row, but never longer than this (gaps in data).
    pub max_step_seconds: f64,
}

impl Default for Params {
    fn default() -> Params {
        Params {
            target_utilization: 70.0,
            hpa_target: 60.0,
            hpa_tolerance: 0.1,
            scale_down_stabilization_seconds: 300.0,
            min_replicas: 1.0,
            max_replicas: 10.0,
            max_step_seconds: 300.0,
        }
    }
}

/// A service's CPU as a function of the load per pod.
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
        let pts: Vec<(f64, f64)> = rps
            .iter()
            .zip(cpu)
            .zip(replicas)
            .filter(|((l, c), r)| l.is_finite() && c.is_finite() && **r > 0.0)
            .map(|((l, c), r)| (l / r, *c))
            .collect();
        let n = pts.len() as f64;
        if pts.len() < 3 {
            return None;
        }
        let (mx, my) = (pts.iter().map(|p| p.0).sum::<f64>() / n, pts.iter().map(|p| p.1).sum::<f64>() / n);
        let sxx: f64 = pts.iter().map(|p| (p.0 - mx) * (p.0 - mx)).sum();
        let sxy: f64 = pts.iter().map(|p| (p.0 - mx) * (p.1 - my)).sum();
        let syy: f64 = pts.iter().map(|p| (p.1 - my) * (p.1 - my)).sum();
        if sxx <= 0.0 || sxy <= 0.0 {
            return None;
        }
        let slope = sxy / sxx;
        let base = (my - slope * mx).max(0.0);
        let r2 = if syy > 0.0 { sxy * sxy / (sxx * syy) } else { 0.0 };
        Some(Capacity { base, slope, r2, rows: pts.len() })
    }

    pub fn utilization(&self, rps: f64, replicas: f64) -> f64 {
        self.base + self.slope * rps / replicas.max(1e-9)
    }

    /// The fewest pods that keep utilisation at or under `target`, within the bounds.
    pub fn needed(&self, rps: f64, target: f64, p: &Params) -> f64 {
        let headroom = target - self.base;
        let n = if headroom <= 0.0 { p.max_replicas } else { (self.slope * rps / headroom).ceil() };
        n.clamp(p.min_replicas, p.max_replicas)
    }
}

/// One service's hold-out, in time order.
#[derive(Debug, Clone)]
pub struct Series {
    /// Microseconds since the epoch, as the metrics schema stores them.
    pub timestamps: Vec<i64>,
    pub rps: Vec<f64>,
    pub recorded: Vec<f64>,
}

impl Series {
    /// Seconds each row's decision holds: until the next row, capped; the last row gets the
    /// median step.
    pub fn steps(&self, p: &Params) -> Vec<f64> {
        let mut d: Vec<f64> = self.timestamps.windows(2).map(|w| ((w[1] - w[0]) as f64 / 1e6).clamp(0.0, p.max_step_seconds)).collect();
        let mut sorted = d.clone();
        sorted.sort_by(f64::total_cmp);
        d.push(sorted.get(sorted.len() / 2).copied().unwrap_or(30.0));
        d
    }
}

/// The reactive HPA: `ceil(replicas × utilisation / target)` each row, up at once, down only
/// to the highest recommendation of the stabilisation window.
pub fn hpa(series: &Series, cap: &Capacity, p: &Params) -> Vec<f64> {
    let mut out = Vec::with_capacity(series.rps.len());
    let mut recent: std::collections::VecDeque<(i64, f64)> = Default::default();
    let mut current = series.recorded.first().copied().unwrap_or(p.min_replicas).clamp(p.min_replicas, p.max_replicas);
    for (i, &load) in series.rps.iter().enumerate() {
        let t = series.timestamps[i];
        let u = cap.utilization(load, current);
        let ratio = u / p.hpa_target;
        let desired = if (ratio - 1.0).abs() <= p.hpa_tolerance { current } else { (current * ratio).ceil() }.clamp(p.min_replicas, p.max_replicas);
        recent.push_back((t, desired));
        while recent.front().is_some_and(|(t0, _)| (t - t0) as f64 / 1e6 > p.scale_down_stabilization_seconds) {
            recent.pop_front();
        }
        current = if desired >= current { desired } else { recent.iter().map(|r| r.1).fold(f64::MIN, f64::max).min(current) };
        out.push(current);
    }
    out
}

#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct Score {
    pub under_provisioned_minutes: f64,
    pub over_provisioned_pod_hours: f64,
    pub pod_hours: f64,
    pub scaling_actions: u64,
    pub hours: f64,
}

impl Score {
    pub fn actions_per_hour(&self) -> f64 {
        if self.hours > 0.0 { self.scaling_actions as f64 / self.hours } else { 0.0 }
    }

    pub fn add(&mut self, o: &Score) {
        self.under_provisioned_minutes += o.under_provisioned_minutes;
        self.over_provisioned_pod_hours += o.over_provisioned_pod_hours;
        self.pod_hours += o.pod_hours;
        self.scaling_actions += o.scaling_actions;
        self.hours += o.hours;
    }
}

/// Scores one policy's replicas on one service; also returns each row's utilisation.
pub fn score(series: &Series, cap: &Capacity, replicas: &[f64], p: &Params) -> (Score, Vec<f64>) {
    let steps = series.steps(p);
    let mut s = Score::default();
    let mut util = Vec::with_capacity(replicas.len());
    for (i, &r) in replicas.iter().enumerate() {
        let dt = steps[i];
        let u = cap.utilization(series.rps[i], r);
        util.push(u);
        if u > p.target_utilization {
            s.under_provisioned_minutes += dt / 60.0;
        }
        let needed = cap.needed(series.rps[i], p.target_utilization, p);
        s.over_provisioned_pod_hours += (r - needed).max(0.0) * dt / 3600.0;
        s.pod_hours += r * dt / 3600.0;
        if i > 0 && r != replicas[i - 1] {
            s.scaling_actions += 1;
        }
        s.hours += dt / 3600.0;
    }
    (s, util)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn cap() -> Capacity {
        // 10 % idle, +1 % per request/s per pod: 60 rps on one pod is 70 %.
        Capacity { base: 10.0, slope: 1.0, r2: 1.0, rows: 100 }
    }

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
        assert_eq!(Capacity { base: 10.0, slope: 1.0, r2: 1.0, rows: 1 }.needed(121.0, 70.0, &Params::default()), 3.0);
    }

    #[test]
    fn scoring_counts_minutes_pods_and_actions() {
        let s = Series { timestamps: vec![0, 60_000_000, 120_000_000, 180_000_000], rps: vec![60.0, 120.0, 120.0, 30.0], recorded: vec![1.0; 4] };
        let p = Params::default();
        // Replicas 1,1,2,2: utilisation 70 (not over), 130 (over), 70, 25.
        let (sc, util) = score(&s, &cap(), &[1.0, 1.0, 2.0, 2.0], &p);
        assert_eq!(util, vec![70.0, 130.0, 70.0, 25.0]);
        assert_eq!(sc.under_provisioned_minutes, 1.0);
        assert_eq!(sc.scaling_actions, 1);
        // Needed: 1, 2, 2, 1 → one surplus pod for the last minute.
        assert!((sc.over_provisioned_pod_hours - 1.0 / 60.0).abs() < 1e-12);
        assert!((sc.hours - 4.0 / 60.0).abs() < 1e-12);
    }

    #[test]
    fn hpa_scales_up_at_once_and_down_after_the_window() {
        let p = Params { hpa_target: 60.0, ..Params::default() };
        // 30 s rows: a burst at row 2, then quiet for 10 minutes.
        let n = 24;
        let ts: Vec<i64> = (0..n).map(|i| i * 30_000_000).collect();
        let rps: Vec<f64> = (0..n).map(|i| if i == 2 { 250.0 } else { 20.0 }).collect();
        let s = Series { timestamps: ts, rps, recorded: vec![1.0; n as usize] };
        let r = hpa(&s, &cap(), &p);
        assert_eq!(r[1], 1.0);
        assert_eq!(r[2], 5.0, "ceil(1 × 260 / 60) = 5 at once");
        // Quiet rows recommend fewer pods, but the burst's recommendation holds for 5 minutes.
        assert_eq!(r[11], 5.0);
        assert!(r[13] < 5.0, "scaled down once the window passed: {r:?}");
        assert!(r.iter().all(|&x| (1.0..=10.0).contains(&x)));
    }
}
