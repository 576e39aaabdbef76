//! The reactive HPA as the replay runs it: what metrics-server shows, and what the HPA asks for.

use std::collections::VecDeque;

use super::Params;
use crate::evaluation::policy::{Reactive, Stabilizer};

/// A stretch of time with one load and one number of ready pods.
#[derive(Debug, Clone, Copy)]
pub struct Segment {
    pub start: f64,
    pub end: f64,
    /// Utilisation of each ready pod (infinite with none).
    pub utilization: f64,
    pub ready: f64,
}

/// What metrics-server has seen, and the recommendations of the stabilisation window.
#[derive(Debug, Default)]
pub struct Controller {
    seen: VecDeque<Segment>,
    stabilizer: Stabilizer,
}

impl Controller {
    pub fn observe(&mut self, s: Segment, p: &Params) {
        self.seen.push_back(s);
        let keep_from = s.end - p.metrics_delay_seconds - p.metrics_window_seconds;
        while self.seen.front().is_some_and(|f| f.end < keep_from) {
            self.seen.pop_front();
        }
    }

    /// (utilisation, ready pods), time-averaged over the metrics window as seen at `now`; `None`
    /// before any pod has reported.
    fn measured(&self, now: f64, p: &Params) -> Option<(f64, f64)> {
        let to = now - p.metrics_delay_seconds;
        let from = to - p.metrics_window_seconds;
        let (mut time, mut util, mut ready) = (0.0, 0.0, 0.0);
        for s in &self.seen {
            // A zero-length window (metrics_window_seconds: 0) reads the latest value at `to`.
            let (a, b) = (s.start.max(from), s.end.min(to));
            let w = if p.metrics_window_seconds == 0.0 { f64::from(s.start <= to && to <= s.end) } else { (b - a).max(0.0) };
            if w > 0.0 && s.ready > 0.0 {
                time += w;
                util += w * s.utilization;
                ready += w * s.ready;
            }
        }
        (time > 0.0).then(|| (util / time, ready / time))
    }

    /// The HPA's recommendation at `now` for a target CPU %, with `floor` pods asked for besides
    /// (a forecast; 0 for the plain HPA), or `floor` alone without a target; then the
    /// stabilised replica count.
    pub fn decide(&mut self, now: f64, current: f64, target: Option<f64>, floor: f64, p: &Params) -> f64 {
        let reactive = match (target, self.measured(now, p)) {
            (None, _) => floor,
            (Some(target), Some((u, ready))) => Reactive { target, ..Reactive::of(p) }.recommend(u, ready, current),
            (Some(_), None) => current,
        };
        let wanted = reactive.max(floor).clamp(p.min_replicas, p.max_replicas);
        self.stabilizer.apply(now, wanted, current, p.scale_down_stabilization_seconds)
    }
}
