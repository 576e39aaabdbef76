//! The replay's cluster: pods that start late and stop at once, a policy deciding on its clock,
//! and the score of what the ready pods went through.

use super::{Capacity, Params, Policy, Score, Series};
use crate::hpa::{Ask, Autoscaler, Stretch};

/// A row as the policy left it: the replicas asked for, the pods serving, their utilisation.
pub type RowState = crate::hpa::State;

#[derive(Debug, Clone)]
pub struct Outcome {
    pub score: Score,
    pub rows: Vec<RowState>,
}

/// Runs one policy over one service's hold-out: the pods and the HPA are the one model's
/// (`crate::hpa`), as the simulator runs them; the load is the recorded request rate.
pub fn simulate(series: &Series, cap: &Capacity, policy: &Policy, p: &Params) -> Outcome {
    let n = series.rps.len();
    let steps = series.steps(p);
    let first = series.recorded.first().copied().filter(|r| r.is_finite()).unwrap_or(p.min_replicas).clamp(p.min_replicas, p.max_replicas);
    // The hold-out starts with the recorded pods up and serving.
    let mut scaler = Autoscaler::new(first, 0.0);
    // The HPA this policy runs (its floor's target, or the default one where the forecast
    // decides alone).
    let hpa = match policy {
        Policy::Reactive { target } | Policy::Proactive { target: Some(target), .. } => p.hpa(*target),
        _ => p.hpa(p.hpa_target),
    };
    let bounds = (p.min_replicas, p.max_replicas);
    let mut score = Score::default();
    let mut rows = Vec::with_capacity(n);
    let t0 = series.timestamps.first().copied().unwrap_or(0);
    for i in 0..n {
        let start = (series.timestamps[i] - t0) as f64 / 1e6;
        let rps = series.rps[i];
        let ask = match policy {
            Policy::Given(replicas) => {
                scaler.pods.set(replicas[i].clamp(p.min_replicas, p.max_replicas), start, p.pod_startup_seconds);
                None
            }
            Policy::Reactive { .. } => Some(Ask::Metrics { floor: 0.0 }),
            Policy::Proactive { target: Some(_), forecast } => Some(Ask::Metrics { floor: forecast[i] }),
            Policy::Proactive { target: None, forecast } => Some(Ask::Replicas(forecast[i])),
        };
        let row = scaler.advance((start, start + steps[i]), &hpa, bounds, ask, |ready| cap.utilization(rps, ready), |s| account(&mut score, cap, rps, s, p));
        rows.push(row);
    }
    score.scaling_actions = scaler.pods.actions;
    Outcome { score, rows }
}

/// Adds a stretch with its pods to the score.
fn account(s: &mut Score, cap: &Capacity, rps: f64, st: &Stretch, p: &Params) {
    let dt = st.end - st.start;
    if dt <= 0.0 {
        return;
    }
    if st.utilization > p.target_utilization {
        s.under_provisioned_minutes += dt / 60.0;
    }
    s.pod_hours += st.total * dt / 3600.0;
    s.over_provisioned_pod_hours += (st.total - cap.needed(rps, p.target_utilization, p)).max(0.0) * dt / 3600.0;
    s.requests += rps * dt;
    s.requests_over_capacity += (rps - cap.serves(st.ready, p.target_utilization)).max(0.0) * dt;
    s.hours += dt / 3600.0;
}

#[cfg(test)]
mod tests {
    use super::*;

    fn cap() -> Capacity {
        // 10 % idle, +1 % per request/s per pod: 60 rps on one pod is 70 %.
        Capacity { base: 10.0, slope: 1.0, r2: 1.0, rows: 100 }
    }

    /// 30 s rows: `before` rps for the first `at` rows, then `after`.
    fn step(n: usize, at: usize, before: f64, after: f64) -> Series {
        Series {
            timestamps: (0..n as i64).map(|i| i * 30_000_000).collect(),
            rps: (0..n).map(|i| if i < at { before } else { after }).collect(),
            recorded: vec![1.0; n],
        }
    }

    fn close(a: f64, b: f64) -> bool {
        (a - b).abs() < 1e-9
    }

    #[test]
    fn new_pods_serve_only_after_they_start() {
        // 60 → 120 rps at 2:00; the second pod is asked for exactly then.
        let s = step(10, 4, 60.0, 120.0);
        let on_time = [1.0, 1.0, 1.0, 1.0, 2.0, 2.0, 2.0, 2.0, 2.0, 2.0];
        let instant = Params { pod_startup_seconds: 0.0, ..Params::default() };
        let o = simulate(&s, &cap(), &Policy::Given(&on_time), &instant);
        assert_eq!(o.score.under_provisioned_minutes, 0.0, "2 pods at 120 rps are at 70 %, not over");
        let p = Params::default();
        let o = simulate(&s, &cap(), &Policy::Given(&on_time), &p);
        assert!(close(o.score.under_provisioned_minutes, 1.0), "one pod serves 120 rps until 3:00: {:?}", o.score);
        assert_eq!(o.rows[4], RowState { replicas: 2.0, ready: 1.0, utilization: 130.0 });
        assert_eq!(o.rows[6].ready, 2.0);
        // Starting pods are paid for: 1 pod for 2 minutes, 2 for 3.
        assert!(close(o.score.pod_hours, (120.0 + 2.0 * 180.0) / 3600.0));
        // 60 of the 120 rps found no room for a minute: 3600 of 28800 requests.
        assert!(close(o.score.over_capacity_share(), 0.125), "{:?}", o.score);
        assert_eq!(o.score.scaling_actions, 1);

        // Asked for two minutes early, the pod is ready when the load comes.
        let early = [1.0, 2.0, 2.0, 2.0, 2.0, 2.0, 2.0, 2.0, 2.0, 2.0];
        let e = simulate(&s, &cap(), &Policy::Given(&early), &p);
        assert_eq!(e.score.under_provisioned_minutes, 0.0);
        assert!(e.score.pod_hours > o.score.pod_hours);
    }

    #[test]
    fn the_hpa_reacts_to_what_metrics_server_shows_late() {
        // 30 rps (40 %) → 120 rps (130 % on one pod) at 2:00.
        let s = step(20, 4, 30.0, 120.0);
        let p = Params::default();
        let o = simulate(&s, &cap(), &Policy::Reactive { target: 60.0 }, &p);
        // At 2:45 the window [1:15, 2:15] averages 62.5 %: within the 10 % tolerance. At 3:00
        // [1:30, 2:30] averages 85 %: ceil(1 × 85 / 60) = 2. At 3:30 the window is all 130 %: 3.
        let replicas: Vec<f64> = o.rows.iter().map(|r| r.replicas).collect();
        assert_eq!(replicas[..8], [1.0, 1.0, 1.0, 1.0, 1.0, 1.0, 2.0, 3.0]);
        // Ready a minute later: 2 pods at 4:00 (70 %, no longer over), 3 at 4:30.
        let ready: Vec<f64> = o.rows.iter().map(|r| r.ready).collect();
        assert_eq!(ready[6..10], [1.0, 1.0, 2.0, 3.0]);
        assert!(close(o.score.under_provisioned_minutes, 2.0), "{:?}", o.score);
        assert_eq!(replicas[19], 3.0, "50 % on 3 pods is within no scale-down: {replicas:?}");

        // With no delays the same HPA sees the load 15 s after it comes, and its pods serve at once.
        let instant = Params { pod_startup_seconds: 0.0, metrics_delay_seconds: 0.0, metrics_window_seconds: 0.0, ..p.clone() };
        let i = simulate(&s, &cap(), &Policy::Reactive { target: 60.0 }, &instant);
        assert!(close(i.score.under_provisioned_minutes, 0.25), "{:?}", i.score);
    }

    #[test]
    fn a_forecast_adds_pods_ahead_of_the_hpa_and_never_removes_them_early() {
        let s = step(20, 8, 30.0, 120.0);
        let p = Params::default();
        // The forecast asks for 2 pods from 2:00, two minutes before the load.
        let forecast: Vec<f64> = (0..20).map(|i| if i >= 4 { 2.0 } else { 1.0 }).collect();
        let o = simulate(&s, &cap(), &Policy::Proactive { target: Some(60.0), forecast: &forecast }, &p);
        assert_eq!(o.rows[4].replicas, 2.0);
        assert_eq!(o.score.under_provisioned_minutes, 0.0, "{:?}", o.rows);
        let hpa = simulate(&s, &cap(), &Policy::Reactive { target: 60.0 }, &p);
        assert!(hpa.score.under_provisioned_minutes >= 2.0);
        // A forecast below what the HPA wants changes nothing.
        let low = vec![1.0; 20];
        let l = simulate(&s, &cap(), &Policy::Proactive { target: Some(60.0), forecast: &low }, &p);
        assert_eq!(l.rows, hpa.rows);
    }

    #[test]
    fn a_forecast_alone_is_all_that_scales_and_is_held_like_the_hpa() {
        let s = step(40, 8, 30.0, 120.0);
        let p = Params::default();
        // Without a floor, a forecast that misses the load leaves it under-provisioned.
        let low = vec![1.0; 40];
        let l = simulate(&s, &cap(), &Policy::Proactive { target: None, forecast: &low }, &p);
        assert!(l.rows.iter().all(|r| r.replicas == 1.0), "{:?}", l.rows);
        assert!(close(l.score.under_provisioned_minutes, 16.0), "{:?}", l.score);
        // 2 pods from 2:00 to 4:00, then 1: held until five minutes after the last 2 (at 3:45).
        let brief: Vec<f64> = (0..40).map(|i| if (4..8).contains(&i) { 2.0 } else { 1.0 }).collect();
        let b = simulate(&s, &cap(), &Policy::Proactive { target: None, forecast: &brief }, &p);
        let replicas: Vec<f64> = b.rows.iter().map(|r| r.replicas).collect();
        assert_eq!(replicas[3..6], [1.0, 2.0, 2.0]);
        assert!(replicas[8..18].iter().all(|&r| r == 2.0) && replicas[18..].iter().all(|&r| r == 1.0), "{replicas:?}");
    }

    #[test]
    fn scale_down_waits_for_the_stabilisation_window() {
        // 3 pods at 120 rps (50 %), then 10 rps from 10:00.
        let s = Series { recorded: vec![3.0; 50], ..step(50, 20, 120.0, 10.0) };
        let o = simulate(&s, &cap(), &Policy::Reactive { target: 60.0 }, &Params::default());
        let replicas: Vec<f64> = o.rows.iter().map(|r| r.replicas).collect();
        // ceil(3 × 50 / 60) = 3 until the drop shows: 2 from 11:00, 1 from 11:30 (windows
        // [9:30, 10:30] and [10:00, 11:00]). The last 3 (10:45) leaves the 5-minute window at
        // 15:45, the last 2 (11:15) at 16:15.
        assert!(replicas[..32].iter().all(|&r| r == 3.0), "{replicas:?}");
        assert_eq!(replicas[32..35], [2.0, 1.0, 1.0]);
        assert_eq!(o.score.scaling_actions, 2);
    }
}
