//! The HPA acting on a Deployment over time: pods that serve `pod_startup_seconds` after they
//! are asked for and stop at once, a decision at every sync, and what metrics-server sees in
//! between. The replay and the simulator both run their clusters through [`Autoscaler::advance`],
//! so the judge and the simulated cluster act alike.

use std::collections::VecDeque;

use super::{Ask, Controller, Hpa, Segment};

/// Pods asked for, ready, and starting.
#[derive(Debug, Clone)]
pub struct Pods {
    /// Replicas asked for (NaN before the first).
    pub replicas: f64,
    /// When each ready pod was asked for (its age, for what grows with it: memory), oldest first.
    ready: Vec<f64>,
    /// (ready at, asked at) of the starting pods, earliest first.
    starting: VecDeque<(f64, f64)>,
    /// Changes of the replica count.
    pub actions: u64,
}

impl Default for Pods {
    fn default() -> Pods {
        Pods { replicas: f64::NAN, ready: Vec::new(), starting: VecDeque::new(), actions: 0 }
    }
}

impl Pods {
    pub fn ready(&self) -> f64 {
        self.ready.len() as f64
    }

    pub fn total(&self) -> f64 {
        (self.ready.len() + self.starting.len()) as f64
    }

    /// When the next starting pod serves.
    pub fn next_ready(&self) -> Option<f64> {
        self.starting.front().map(|s| s.0)
    }

    /// When each ready pod was asked for.
    pub fn ready_since(&self) -> &[f64] {
        &self.ready
    }

    /// Asks for `want` pods at `now`: new ones serve after `startup`; removed ones go at once,
    /// those not ready yet first and the last due of them first (the newest, when start-ups are
    /// alike), as a ReplicaSet removes them.
    pub fn set(&mut self, want: f64, now: f64, startup: f64) {
        if want != self.replicas {
            self.actions += u64::from(self.replicas.is_finite());
        }
        self.replicas = want;
        let mut total = self.total();
        while total < want {
            self.enqueue(now + startup, now);
            total += 1.0;
        }
        while total > want {
            if self.starting.pop_back().is_none() {
                self.ready.pop();
            }
            total -= 1.0;
        }
        self.start_due(now);
    }

    /// Pods whose start-up is over serve from `now`.
    pub fn start_due(&mut self, now: f64) {
        while self.starting.front().is_some_and(|s| s.0 <= now) {
            let (_, asked) = self.starting.pop_front().expect("checked");
            self.ready.push(asked);
        }
    }

    /// Every ready pod was restarted at `now` (a rollout): its age starts again.
    pub fn renew(&mut self, now: f64) {
        self.ready.iter_mut().for_each(|since| *since = now);
    }

    /// The ready pod `i` restarts at `now` (killed for its memory): it serves again after `startup`.
    pub fn restart(&mut self, i: usize, now: f64, startup: f64) {
        self.ready.remove(i);
        self.enqueue(now + startup, now);
    }

    /// A pod asked for at `asked` serves from `ready_at`: in order of serving, since start-ups
    /// may differ (the simulator's spread); those due later go first when replicas fall.
    fn enqueue(&mut self, ready_at: f64, asked: f64) {
        let at = self.starting.partition_point(|s| s.0 <= ready_at);
        self.starting.insert(at, (ready_at, asked));
    }
}

/// A stretch of time with the same pods: what is accounted and what metrics-server sees.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Stretch {
    pub start: f64,
    pub end: f64,
    pub ready: f64,
    /// Ready and starting (what is paid for).
    pub total: f64,
    /// CPU % of each ready pod.
    pub utilization: f64,
}

/// The state at the start of a span, after the decision there.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct State {
    pub replicas: f64,
    pub ready: f64,
    pub utilization: f64,
}

/// An HPA (or a policy through it) and the pods it sets.
#[derive(Debug, Clone, Default)]
pub struct Autoscaler {
    pub pods: Pods,
    controller: Controller,
    next_sync: f64,
}

impl Autoscaler {
    /// `replicas` pods, all ready, at `now`; the first sync is at `now`.
    pub fn new(replicas: f64, now: f64) -> Autoscaler {
        let mut pods = Pods::default();
        pods.set(replicas, now, 0.0);
        Autoscaler { pods, controller: Controller::default(), next_sync: now }
    }

    /// Runs `[from, to)` under a load whose CPU % per ready pod is `utilization(ready)`: with
    /// `ask` (None: the pods are set from outside, nothing decides), the HPA decides at every
    /// sync it reaches; starting pods serve when due; each stretch of the same pods is handed to
    /// `visit` and shown to metrics-server. Returns the state at `from`, after its decision.
    pub fn advance(
        &mut self,
        (from, to): (f64, f64),
        hpa: &Hpa,
        bounds: (f64, f64),
        ask: Option<Ask>,
        utilization: impl Fn(f64) -> f64,
        mut visit: impl FnMut(&Stretch),
    ) -> State {
        let mut now = from;
        let mut state = None;
        loop {
            self.pods.start_due(now);
            if let Some(ask) = ask {
                if now >= self.next_sync {
                    let want = self.controller.decide(now, self.pods.replicas, ask, bounds, hpa);
                    self.pods.set(want, now, hpa.pod_startup_seconds);
                    while self.next_sync <= now {
                        self.next_sync += hpa.sync_seconds;
                    }
                }
            }
            let u = utilization(self.pods.ready());
            state.get_or_insert(State { replicas: self.pods.replicas, ready: self.pods.ready(), utilization: u });
            let mut until = to;
            if ask.is_some() {
                until = until.min(self.next_sync);
            }
            if let Some(ready_at) = self.pods.next_ready() {
                until = until.min(ready_at);
            }
            if until <= now {
                break;
            }
            let stretch = Stretch { start: now, end: until, ready: self.pods.ready(), total: self.pods.total(), utilization: u };
            visit(&stretch);
            self.controller.observe(Segment { start: now, end: until, utilization: u, ready: stretch.ready }, hpa);
            now = until;
            // The span's end is the next span's start: what happens then uses the next span.
            if now >= to {
                break;
            }
        }
        state.expect("set on the first pass")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pods_start_late_stop_at_once_and_the_newest_starting_go_first() {
        let mut p = Pods::default();
        p.set(2.0, 0.0, 60.0);
        assert_eq!((p.ready(), p.total(), p.actions), (0.0, 2.0, 0));
        p.start_due(60.0);
        assert_eq!(p.ready(), 2.0);
        p.set(4.0, 100.0, 60.0);
        p.set(3.0, 110.0, 60.0);
        assert_eq!((p.ready(), p.total(), p.next_ready()), (2.0, 3.0, Some(160.0)), "the newest starting pod went");
        p.set(1.0, 120.0, 60.0);
        assert_eq!((p.ready(), p.total(), p.actions), (1.0, 1.0, 3));
        // No start-up: a pod serves as it is asked for.
        p.set(2.0, 130.0, 0.0);
        assert_eq!(p.ready(), 2.0);
        p.restart(0, 140.0, 60.0);
        assert_eq!((p.ready(), p.total(), p.next_ready()), (1.0, 2.0, Some(200.0)));
        // Start-ups that differ: the pods serve in order of readiness, not of asking.
        p.set(3.0, 150.0, 20.0);
        assert_eq!((p.total(), p.next_ready()), (3.0, Some(170.0)));
        p.set(2.0, 160.0, 20.0);
        assert_eq!(p.next_ready(), Some(170.0), "the pod due last went");
    }
}
