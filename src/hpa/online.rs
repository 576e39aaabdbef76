//! The HPA on the rows a server receives: each row is what the metrics showed, so the window
//! is over rows (no delay: they are already late), and the decision is the controller's.

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
        let reactive = hpa.recommend(utilization, replicas, replicas).clamp(lo, hi);
        let wanted = match ask {
            Ask::Metrics { floor } => reactive.max(floor),
            Ask::Replicas(pods) => pods,
        }
        .clamp(lo, hi);
        let stabilised = self.stabilizer.apply(now, wanted, replicas, hpa.scale_up_stabilization_seconds, hpa.scale_down_stabilization_seconds);
        let set = self.rates.limit(now, stabilised, replicas, &hpa.scale_up, &hpa.scale_down).clamp(lo, hi);
        self.rates.record(now, replicas, set);
        Recommendation { reactive, utilization, replicas: set }
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
        // Then 30 % alone: the HPA wants 3, but 5 was recommended within 5 minutes.
        let d = h.decide(60.0, 30.0, 5.0, floor(0.0), &r, (1.0, 10.0));
        assert_eq!((d.reactive, d.replicas), (3.0, 5.0));
        // A forecast of 7 pods lifts the decision above the HPA at once.
        assert_eq!(h.decide(90.0, 30.0, 5.0, floor(7.0), &r, (1.0, 10.0)).replicas, 7.0);
        // Six minutes on at 30 %, the window has forgotten the 7: ceil(7 × 30 / 60) = 4.
        let d = h.decide(460.0, 30.0, 7.0, floor(0.0), &r, (1.0, 10.0));
        assert_eq!((d.reactive, d.replicas), (4.0, 4.0));
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
        assert_eq!((h.seen.len(), h.stabilizer.len()), (WINDOW_ROWS, 256));
    }
}
