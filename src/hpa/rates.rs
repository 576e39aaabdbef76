//! What Kubernetes does to a recommendation before it sets replicas: stabilisation windows
//! (`behavior.scaleUp/scaleDown.stabilizationWindowSeconds`) and rate policies (`policies`,
//! `selectPolicy: Max`), as the HPA controller computes them (`normalizeDesiredReplicasWithBehaviors`).

use std::collections::VecDeque;

use serde::{Deserialize, Serialize};

/// Most recommendations or events a window keeps, however close together they come: a sync
/// every 15 s fills a 300 s window with 21; a client sending rows thousands of times a second
/// must not grow it without end. Past it the oldest go first.
const KEEP: usize = 256;

/// A rate policy: within any `period_seconds`, replicas may change by `percent` of what they
/// were at the period's start or by `pods`, whichever allows more. Neither: no limit.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Rate {
    pub percent: Option<f64>,
    pub pods: Option<f64>,
    pub period_seconds: f64,
}

impl Rate {
    /// No limit (the replay's HPA before the one model).
    pub const UNLIMITED: Rate = Rate { percent: None, pods: None, period_seconds: 15.0 };

    pub fn check(&self) -> Result<(), String> {
        for (name, v) in [("percent", self.percent), ("pods", self.pods)] {
            if v.is_some_and(|v| !(v.is_finite() && v >= 0.0)) {
                return Err(format!("`{name}` must be a number of at least 0 (it is {})", v.unwrap_or_default()));
            }
        }
        if !(self.period_seconds.is_finite() && self.period_seconds > 0.0) {
            return Err(format!("`period_seconds` must be above 0 (it is {})", self.period_seconds));
        }
        Ok(())
    }

    fn limited(&self) -> bool {
        self.percent.is_some() || self.pods.is_some()
    }

    /// The most replicas a scale-up may reach from `start` (replicas at the period's start).
    fn up_to(&self, start: f64) -> f64 {
        let by_percent = self.percent.map(|p| (start * (1.0 + p / 100.0)).ceil());
        let by_pods = self.pods.map(|n| start + n);
        by_percent.into_iter().chain(by_pods).fold(f64::NEG_INFINITY, f64::max)
    }

    /// The fewest replicas a scale-down may reach from `start`.
    fn down_to(&self, start: f64) -> f64 {
        let by_percent = self.percent.map(|p| (start * (1.0 - p / 100.0)).floor());
        let by_pods = self.pods.map(|n| start - n);
        by_percent.into_iter().chain(by_pods).fold(f64::INFINITY, f64::min)
    }
}

/// Recommendations over time, for the stabilisation windows.
#[derive(Debug, Default, Clone)]
pub struct Stabilizer {
    recommendations: VecDeque<(f64, f64)>,
}

impl Stabilizer {
    /// The replicas to set at `now` (seconds) given the recommendation and what is set: up only
    /// to the lowest recommendation of the up window (0: at once), down only to the highest of
    /// the down window.
    pub fn apply(&mut self, now: f64, wanted: f64, current: f64, up_window: f64, down_window: f64) -> f64 {
        self.recommendations.push_back((now, wanted));
        let keep = up_window.max(down_window);
        while self.recommendations.front().is_some_and(|(t, _)| now - t > keep) || self.recommendations.len() > KEEP {
            self.recommendations.pop_front();
        }
        let within = |w: f64| self.recommendations.iter().filter(move |(t, _)| now - t <= w).map(|r| r.1);
        let up = within(up_window).fold(wanted, f64::min);
        let down = within(down_window).fold(wanted, f64::max);
        if current < up {
            up
        } else if current > down {
            down
        } else {
            current
        }
    }

    #[cfg(test)]
    pub fn len(&self) -> usize {
        self.recommendations.len()
    }
}

/// The scale events of the last periods, for the rate policies.
#[derive(Debug, Default, Clone)]
pub struct Rates {
    /// (when, replicas added (+) or removed (−)).
    events: VecDeque<(f64, f64)>,
}

impl Rates {
    /// `desired` within what the policies allow from `current` at `now`.
    pub fn limit(&mut self, now: f64, desired: f64, current: f64, up: &Rate, down: &Rate) -> f64 {
        let keep = up.period_seconds.max(down.period_seconds);
        while self.events.front().is_some_and(|(t, _)| now - t >= keep) || self.events.len() > KEEP {
            self.events.pop_front();
        }
        // Replicas at the start of a period: now's, less what the period added, plus what it removed.
        let start = |period: f64| current - self.events.iter().filter(|(t, _)| now - t < period).map(|e| e.1).sum::<f64>();
        if desired > current && up.limited() {
            desired.min(up.up_to(start(up.period_seconds)).max(current))
        } else if desired < current && down.limited() {
            desired.max(down.down_to(start(down.period_seconds)).min(current))
        } else {
            desired
        }
    }

    /// Replicas changed from `from` to `to` at `now`.
    pub fn record(&mut self, now: f64, from: f64, to: f64) {
        if to != from && from.is_finite() {
            self.events.push_back((now, to - from));
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn stabilisation_holds_scale_downs_and_lets_scale_ups_through() {
        let mut s = Stabilizer::default();
        assert_eq!(s.apply(0.0, 5.0, 3.0, 0.0, 300.0), 5.0);
        // Down only to the highest of the last 300 s.
        assert_eq!(s.apply(30.0, 2.0, 5.0, 0.0, 300.0), 5.0);
        assert_eq!(s.apply(301.0, 2.0, 5.0, 0.0, 300.0), 2.0);
        // An up window holds scale-ups to the lowest recommendation in it.
        let mut s = Stabilizer::default();
        s.apply(0.0, 3.0, 3.0, 60.0, 0.0);
        assert_eq!(s.apply(30.0, 8.0, 3.0, 60.0, 0.0), 3.0);
        assert_eq!(s.apply(61.0, 8.0, 3.0, 60.0, 0.0), 8.0, "the 3 left the up window");
    }

    #[test]
    fn kubernetes_default_rates() {
        let h = super::super::Hpa::default();
        let mut r = Rates::default();
        // From 3: up to max(3 × 2, 3 + 4) = 7 within 15 s.
        assert_eq!(r.limit(0.0, 20.0, 3.0, &h.scale_up, &h.scale_down), 7.0);
        r.record(0.0, 3.0, 7.0);
        // Still within the period: its start had 3, so 7 is all it allows.
        assert_eq!(r.limit(10.0, 20.0, 7.0, &h.scale_up, &h.scale_down), 7.0);
        // A new period from 7: up to 14.
        assert_eq!(r.limit(15.0, 20.0, 7.0, &h.scale_up, &h.scale_down), 14.0);
        // Down by 100 %: as far as asked.
        assert_eq!(r.limit(30.0, 1.0, 14.0, &h.scale_up, &h.scale_down), 1.0);
        // One pod a minute, as the simulator used to.
        let one = Rate { percent: None, pods: Some(1.0), period_seconds: 60.0 };
        let mut r = Rates::default();
        assert_eq!(r.limit(0.0, 2.0, 6.0, &h.scale_up, &one), 5.0);
        r.record(0.0, 6.0, 5.0);
        assert_eq!(r.limit(30.0, 2.0, 5.0, &h.scale_up, &one), 5.0);
        assert_eq!(r.limit(60.0, 2.0, 5.0, &h.scale_up, &one), 4.0);
        // Unlimited.
        assert_eq!(Rates::default().limit(0.0, 40.0, 1.0, &Rate::UNLIMITED, &Rate::UNLIMITED), 40.0);
    }
}
