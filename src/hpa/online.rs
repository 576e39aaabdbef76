//! The HPA on the rows a server receives: each row is what the metrics showed, so the window
//! is over rows (no delay: they are already late), and the decision is the controller's.
//!
//! A row's `replica_count` counts the pods asked for, starting ones included
//! (`kube_deployment_status_replicas`), and its CPU is that of the pods serving. Kubernetes
//! multiplies the CPU by the ready pods only; multiplying by every pod over-asks while pods
//! start, and each over-ask starts more. The row has no ready count, so the HPA here reads it
//! from the rows' history: a pod that was there a start-up ago serves now.

use std::collections::VecDeque;

use super::controller::Ask;
use super::{Hpa, Rates, Stabilizer};

/// Most rows the window keeps, however close together they arrive (a row every 30 s fills a 60 s
/// window with 3; a flood must not grow it).
const WINDOW_ROWS: usize = 256;

#[derive(Debug, Default, Clone)]
pub struct OnlineHpa {
    /// (seconds, CPU %) of the rows inside the metrics window, oldest first.
    seen: VecDeque<(f64, f64)>,
    /// (seconds, replicas) of the rows since the last one a pod start-up ago, oldest first.
    counts: VecDeque<(f64, f64)>,
    stabilizer: Stabilizer,
    rates: Rates,
}

/// What the policy decided for one row.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Recommendation {
    /// The reactive HPA's own recommendation.
    pub reactive: f64,
    /// The CPU % it acted on (the window's average).
    pub utilization: f64,
    /// The pods it took as ready: the fewest replicas since a pod start-up ago.
    pub ready: f64,
    /// The replicas to set: the ask within the bounds, stabilised and rate-limited.
    pub replicas: f64,
}

impl OnlineHpa {
    /// The decision for a row at `now` with `cpu` % and `replicas`; `ask` is a forecast's part
    /// (`Metrics { floor }` under the HPA, `Replicas` alone). The HPA sees every row whoever
    /// decides, so its window stays whole.
    pub fn decide(&mut self, now: f64, cpu: f64, replicas: f64, ask: Ask, hpa: &Hpa, (lo, hi): (f64, f64)) -> Recommendation {
        self.seen.push_back((now, cpu));
        while (self.seen.front().is_some_and(|(t, _)| now - t >= hpa.metrics_window_seconds.max(1e-9)) && self.seen.len() > 1) || self.seen.len() > WINDOW_ROWS
        {
            self.seen.pop_front();
        }
        let utilization = self.seen.iter().map(|s| s.1).sum::<f64>() / self.seen.len() as f64;
        let ready = self.ready(now, replicas, hpa.pod_startup_seconds);
        self.counts.push_back((now, replicas));
        while self.counts.get(1).is_some_and(|(t, _)| now - t >= hpa.pod_startup_seconds) || self.counts.len() > WINDOW_ROWS {
            self.counts.pop_front();
        }
        let reactive = hpa.recommend(utilization, ready, replicas).clamp(lo, hi);
        let wanted = match ask {
            Ask::Metrics { floor } => reactive.max(floor),
            Ask::Replicas(pods) => pods,
        }
        .clamp(lo, hi);
        let stabilised = self.stabilizer.apply(now, wanted, replicas, hpa.scale_up_stabilization_seconds, hpa.scale_down_stabilization_seconds);
        let set = self.rates.limit(now, stabilised, replicas, &hpa.scale_up, &hpa.scale_down).clamp(lo, hi);
        self.rates.record(now, replicas, set);
        Recommendation { reactive, utilization, ready, replicas: set }
    }

    /// The pods serving at `now` for a row with `replicas`: those of the last row at least
    /// `startup` old that are still asked for, so the fewest replicas from that row on. With no
    /// row that old (a server's first minute), every pod counts, as before it knew better. A
    /// query: the row is recorded by [`OnlineHpa::decide`], so the drift monitor can ask first.
    pub fn ready(&self, now: f64, replicas: f64, startup: f64) -> f64 {
        if startup <= 0.0 {
            return replicas; // the row itself is a start-up old
        }
        // The rows `decide` keeps once this one is in: from the last a start-up old, at most
        // WINDOW_ROWS with it.
        let from = self.counts.iter().rposition(|&(t, _)| now - t >= startup).unwrap_or(0);
        let from = from.max((self.counts.len() + 1).saturating_sub(WINDOW_ROWS));
        self.counts.iter().skip(from).map(|c| c.1).fold(replicas, f64::min)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn held() -> Hpa {
        Hpa { scale_up: super::super::Rate::UNLIMITED, scale_down: super::super::Rate::UNLIMITED, ..Hpa::default() }
    }

    #[test]
    fn the_online_hpa_averages_the_window_and_holds_pods_for_the_stabilisation() {
        let mut h = OnlineHpa::default();
        let r = held();
        let floor = |f: f64| Ask::Metrics { floor: f };
        // 3 pods at 90 %: ceil(3 × 90 / 60) = 5.
        assert_eq!(h.decide(0.0, 90.0, 3.0, floor(0.0), &r, (1.0, 10.0)).replicas, 5.0);
        // Next row 30 % on 5 pods: the window (90, 30) averages 60 %: within the tolerance.
        let d = h.decide(30.0, 30.0, 5.0, floor(0.0), &r, (1.0, 10.0));
        assert_eq!((d.utilization, d.reactive, d.replicas), (60.0, 5.0, 5.0));
        // Then 30 % alone on the 5 pods, all ready a start-up on: the HPA wants 3, but 5 was
        // recommended within 5 minutes.
        let d = h.decide(90.0, 30.0, 5.0, floor(0.0), &r, (1.0, 10.0));
        assert_eq!((d.ready, d.reactive, d.replicas), (5.0, 3.0, 5.0));
        // A forecast of 7 pods lifts the decision above the HPA at once.
        assert_eq!(h.decide(120.0, 30.0, 5.0, floor(7.0), &r, (1.0, 10.0)).replicas, 7.0);
        // Six minutes on at 30 % on 7 ready pods, the window has forgotten the 7:
        // ceil(7 × 30 / 60) = 4.
        h.decide(430.0, 30.0, 7.0, floor(0.0), &r, (1.0, 10.0));
        let d = h.decide(490.0, 30.0, 7.0, floor(0.0), &r, (1.0, 10.0));
        assert_eq!((d.ready, d.reactive, d.replicas), (7.0, 4.0, 4.0));
    }

    #[test]
    fn pods_still_starting_do_not_count_as_serving() {
        // Kubernetes' HPA counts a pod that is not ready as idle; a server that counted it at
        // the ready pods' CPU would ask for more pods while the first ones start, and more again.
        let mut h = OnlineHpa::default();
        let r = held();
        let floor = Ask::Metrics { floor: 0.0 };
        let start = Hpa::default().pod_startup_seconds;
        assert_eq!(start, 60.0);
        // 3 pods at 90 %: 5.
        assert_eq!(h.decide(0.0, 90.0, 3.0, floor, &r, (1.0, 20.0)).replicas, 5.0);
        // The next rows show 5 pods, two of them starting, the 3 still at 90 %: still 5, where
        // ceil(5 × 90 / 60) would be 8.
        for now in [30.0, 60.0] {
            let d = h.decide(now, 90.0, 5.0, floor, &r, (1.0, 20.0));
            assert_eq!((d.ready, d.reactive, d.replicas), (3.0, 5.0, 5.0), "at {now} s");
        }
        // A start-up after the first row that showed them, the 5 serve: still at 90 %, 8.
        let d = h.decide(90.0, 90.0, 5.0, floor, &r, (1.0, 20.0));
        assert_eq!((d.ready, d.reactive), (5.0, 8.0));
        // Pods taken away are gone at once.
        assert_eq!(h.decide(120.0, 90.0, 4.0, floor, &r, (1.0, 20.0)).ready, 4.0);
        // Asked first for the row (the drift monitor does), the answer is the decision's.
        assert_eq!(h.ready(150.0, 6.0, start), 4.0);
        assert_eq!(h.decide(150.0, 90.0, 6.0, floor, &r, (1.0, 20.0)).ready, 4.0);
        assert_eq!(h.counts.len(), 3, "the rows at 90, 120 and 150 s");
    }

    #[test]
    fn with_no_start_up_every_pod_serves() {
        let mut h = OnlineHpa::default();
        let r = Hpa { pod_startup_seconds: 0.0, ..held() };
        h.decide(0.0, 90.0, 3.0, Ask::Metrics { floor: 0.0 }, &r, (1.0, 20.0));
        assert_eq!(h.decide(30.0, 90.0, 5.0, Ask::Metrics { floor: 0.0 }, &r, (1.0, 20.0)).ready, 5.0);
    }

    #[test]
    fn a_forecast_alone_sets_the_replicas_and_is_held_for_the_stabilisation() {
        let mut h = OnlineHpa::default();
        let r = held();
        // 3 pods at 90 %: the HPA would want 5; the forecast says 3, and decides.
        let d = h.decide(0.0, 90.0, 3.0, Ask::Replicas(3.0), &r, (1.0, 10.0));
        assert_eq!((d.reactive, d.replicas), (5.0, 3.0));
        // Up at once, down only to the highest forecast of the last 5 minutes.
        assert_eq!(h.decide(30.0, 30.0, 3.0, Ask::Replicas(7.0), &r, (1.0, 10.0)).replicas, 7.0);
        assert_eq!(h.decide(60.0, 30.0, 7.0, Ask::Replicas(2.0), &r, (1.0, 10.0)).replicas, 7.0);
        assert_eq!(h.decide(331.0, 30.0, 7.0, Ask::Replicas(2.0), &r, (1.0, 10.0)).replicas, 2.0);
        // Within the bounds.
        assert_eq!(h.decide(360.0, 30.0, 2.0, Ask::Replicas(0.0), &r, (1.0, 10.0)).replicas, 2.0, "2 was asked for at 331 s");
        assert_eq!(h.decide(700.0, 30.0, 2.0, Ask::Replicas(40.0), &r, (1.0, 10.0)).replicas, 10.0);
    }

    #[test]
    fn rows_in_a_flood_do_not_grow_the_windows() {
        let mut h = OnlineHpa::default();
        let r = Hpa::default();
        for i in 0..100_000 {
            h.decide(i as f64 * 1e-6, 50.0, 3.0, Ask::Metrics { floor: 0.0 }, &r, (1.0, 10.0));
        }
        assert_eq!((h.seen.len(), h.counts.len(), h.stabilizer.len()), (WINDOW_ROWS, WINDOW_ROWS, 256));
    }
}
