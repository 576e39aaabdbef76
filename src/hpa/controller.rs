//! The HPA controller over time: what metrics-server has seen (stretches of constant load and
//! ready pods, averaged over its window, seen late), and the decision at each sync.

use std::collections::VecDeque;

use super::{Hpa, Rates, Stabilizer};

/// A stretch of time with one load and one number of ready pods.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Segment {
    pub start: f64,
    pub end: f64,
    /// Utilisation of each ready pod, CPU % of its request (infinite with none).
    pub utilization: f64,
    pub ready: f64,
}

/// What the HPA is asked to do at a sync.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Ask {
    /// Its own recommendation from the metrics, at its target, never below `floor` pods (a
    /// forecast; 0 for the plain HPA).
    Metrics { floor: f64 },
    /// These replicas, whatever the metrics say (a forecast alone, or a decision server's
    /// answer that this HPA acts on), stabilised and rate-limited as its own would be.
    Replicas(f64),
}

/// What metrics-server has seen, and the recommendations and scale events of the windows.
#[derive(Debug, Default, Clone)]
pub struct Controller {
    seen: VecDeque<Segment>,
    stabilizer: Stabilizer,
    rates: Rates,
}

impl Controller {
    pub fn observe(&mut self, s: Segment, hpa: &Hpa) {
        self.seen.push_back(s);
        let keep_from = s.end - hpa.metrics_delay_seconds - hpa.metrics_window_seconds;
        while self.seen.front().is_some_and(|f| f.end < keep_from) {
            self.seen.pop_front();
        }
    }

    /// (utilisation, ready pods), time-averaged over the metrics window as seen at `now`; `None`
    /// before any pod has reported.
    pub fn measured(&self, now: f64, hpa: &Hpa) -> Option<(f64, f64)> {
        let to = now - hpa.metrics_delay_seconds;
        let from = to - hpa.metrics_window_seconds;
        let (mut time, mut util, mut ready) = (0.0, 0.0, 0.0);
        for s in &self.seen {
            // A zero-length window (metrics_window_seconds: 0) reads the latest value at `to`.
            let (a, b) = (s.start.max(from), s.end.min(to));
            let w = if hpa.metrics_window_seconds == 0.0 { f64::from(s.start <= to && to <= s.end) } else { (b - a).max(0.0) };
            if w > 0.0 && s.ready > 0.0 {
                time += w;
                util += w * s.utilization;
                ready += w * s.ready;
            }
        }
        (time > 0.0).then(|| (util / time, ready / time))
    }

    /// The replicas to set at `now`, from `current`: the recommendation (`ask`), within
    /// `bounds`, stabilised, then within the rate policies. The change is remembered for the
    /// rates, so call it only where its answer is set.
    pub fn decide(&mut self, now: f64, current: f64, ask: Ask, (lo, hi): (f64, f64), hpa: &Hpa) -> f64 {
        let wanted = match ask {
            Ask::Replicas(r) => r,
            Ask::Metrics { floor } => {
                let reactive = match self.measured(now, hpa) {
                    Some((u, ready)) => hpa.recommend(u, ready, current),
                    None => current,
                };
                reactive.max(floor)
            }
        }
        .clamp(lo, hi);
        let stabilised = self.stabilizer.apply(now, wanted, current, hpa.scale_up_stabilization_seconds, hpa.scale_down_stabilization_seconds);
        let set = self.rates.limit(now, stabilised, current, &hpa.scale_up, &hpa.scale_down).clamp(lo, hi);
        self.rates.record(now, current, set);
        set
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_window_is_time_weighted_and_late() {
        let h = Hpa::default();
        let mut c = Controller::default();
        c.observe(Segment { start: 0.0, end: 30.0, utilization: 40.0, ready: 1.0 }, &h);
        c.observe(Segment { start: 30.0, end: 60.0, utilization: 130.0, ready: 1.0 }, &h);
        c.observe(Segment { start: 60.0, end: 90.0, utilization: 130.0, ready: 1.0 }, &h);
        // At 90 s the HPA sees [0, 60]: half 40 %, half 130 %.
        assert_eq!(c.measured(90.0, &h), Some((85.0, 1.0)));
        // ceil(1 × 85 / 60) = 2, within the default rates from 1 (up to 5).
        assert_eq!(c.decide(90.0, 1.0, Ask::Metrics { floor: 0.0 }, (1.0, 10.0), &h), 2.0);
        // A server's answer is held and limited as the HPA's own.
        assert_eq!(c.decide(105.0, 2.0, Ask::Replicas(40.0), (1.0, 50.0), &h), 6.0, "from 2 at most 2 + 4 within 15 s");
        assert_eq!(c.decide(120.0, 6.0, Ask::Replicas(1.0), (1.0, 50.0), &h), 6.0, "held for the scale-down window");
    }
}
