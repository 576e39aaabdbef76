//! A policy on the simulated cluster, in closed loop: its decisions set the replicas, the
//! replicas shape the next rows it sees. What each service went through, the internal HPA's
//! frontier over targets on the same load and seed, and each policy's margin below it.

use std::collections::BTreeMap;
use std::path::PathBuf;

use anyhow::Result;
use serde::Serialize;

use super::scaler::{ScalerSpec, Server};
use super::service::Sample;
use super::{Decider, Options, run};
use crate::evaluation::replay::Score;
use crate::evaluation::replay::frontier::{Frontier, Margin, Point, Saving};

/// CPU % of the ready pods' request over which a service counts as under-provisioned (the
/// pipeline's `target_utilization`).
pub const DEFAULT_TARGET_UTILIZATION: f64 = 70.0;
/// P95 latency over which a minute is slow.
pub const SLOW_MS: f64 = 500.0;
/// Error rate over which a minute counts as failing.
pub const ERROR_RATE: f64 = 0.01;
/// The internal HPA's targets that draw the frontier.
pub const FRONTIER_TARGETS: [f64; 9] = [40.0, 45.0, 50.0, 55.0, 60.0, 65.0, 70.0, 75.0, 80.0];

/// One service's time under a policy, every step of every day.
#[derive(Debug, Clone, Default, PartialEq, Serialize)]
pub struct Tally {
    /// Pods asked for (ready and starting) over time.
    pub pod_hours: f64,
    /// Minutes the load needed more than the target utilisation of the ready pods.
    pub under_provisioned_minutes: f64,
    /// Of those, the minutes the load needed more even of all `max_replicas` pods: the same for
    /// every scaler on one load and seed, out of any policy's reach (raise `maxReplicas`).
    pub capacity_bound_minutes: f64,
    pub slow_minutes: f64,
    pub error_minutes: f64,
    /// Answers a decision server gave, and how many of them were fallbacks or missing.
    pub decisions: u64,
    pub fallbacks: u64,
    /// Minutes into the judged days of the first fallback, if any: when a drift monitor let go.
    pub first_fallback_minute: Option<f64>,
}

impl Tally {
    pub fn add(&mut self, s: &Sample, dt: f64, target_utilization: f64) {
        let minutes = dt / 60.0;
        // Stretch by stretch, as the replay scores: pods paid for, and the ready ones' load.
        for &(needed, pods, seconds) in &s.stretches {
            self.pod_hours += pods * seconds / 3600.0;
            if needed > target_utilization {
                self.under_provisioned_minutes += seconds / 60.0;
            }
        }
        if s.needed_cpu_percent_at_max > target_utilization {
            self.capacity_bound_minutes += minutes;
        }
        if s.p95_ms > SLOW_MS {
            self.slow_minutes += minutes;
        }
        if s.error_rate > ERROR_RATE {
            self.error_minutes += minutes;
        }
    }

    fn merge(&mut self, o: &Tally) {
        self.pod_hours += o.pod_hours;
        self.under_provisioned_minutes += o.under_provisioned_minutes;
        self.capacity_bound_minutes += o.capacity_bound_minutes;
        self.slow_minutes += o.slow_minutes;
        self.error_minutes += o.error_minutes;
        self.decisions += o.decisions;
        self.fallbacks += o.fallbacks;
        self.first_fallback_minute = match (self.first_fallback_minute, o.first_fallback_minute) {
            (Some(a), Some(b)) => Some(a.min(b)),
            (a, b) => a.or(b),
        };
    }

    pub fn total<'a>(tallies: impl IntoIterator<Item = &'a Tally>) -> Tally {
        let mut t = Tally::default();
        for x in tallies {
            t.merge(x);
        }
        t
    }

    fn score(&self) -> Score {
        Score { pod_hours: self.pod_hours, under_provisioned_minutes: self.under_provisioned_minutes, ..Score::default() }
    }

    /// Scored on the minutes a scaler could have avoided.
    fn avoidable_score(&self) -> Score {
        Score { under_provisioned_minutes: self.under_provisioned_minutes - self.capacity_bound_minutes, ..self.score() }
    }
}

/// One `--scaler`'s run.
#[derive(Debug, Clone, Serialize)]
pub struct PolicyRun {
    pub scaler: String,
    /// Where its metrics files went.
    pub out: PathBuf,
    pub files: usize,
    pub services: BTreeMap<String, Tally>,
    pub total: Tally,
    /// Against the internal HPA's frontier at the same pod-hours (positive: beats it).
    pub margin: Option<Margin>,
    /// Against the same frontier at the same under-provisioned minutes: the pod-hours saved.
    pub saving: Option<Saving>,
    /// The same margin as a share of the minutes a scaler could avoid: both sides less the
    /// capacity-bound minutes, which no policy can remove and which dilute `margin.percent`
    /// on a load whose peaks pass what `max_replicas` can serve.
    pub avoidable_margin: Option<Margin>,
    /// Steps whose whole batch the server did not answer.
    pub failed_batches: u64,
}

/// Every `--scaler` on the same load and seed, and the frontier they are judged against.
#[derive(Debug, Clone, Serialize)]
pub struct Comparison {
    /// The world the cluster ran in: its name (as `--world` gave it) and every setting.
    pub world_name: String,
    pub world: super::World,
    pub target_utilization: f64,
    pub frontier: Frontier,
    /// Minutes even `max_replicas` pods could not serve under the target (every scaler's).
    pub capacity_bound_minutes: f64,
    pub runs: Vec<PolicyRun>,
}

/// Where a scaler's files go: `out` itself for one scaler, `out/<n>-hpa-60`, `out/<n>-server`
/// for several.
fn out_dir(opts: &Options, n: usize, total: usize, spec: &ScalerSpec) -> PathBuf {
    if total == 1 {
        return opts.out.clone();
    }
    let name = match spec {
        ScalerSpec::Hpa(None) => "hpa".to_string(),
        ScalerSpec::Hpa(Some(t)) => format!("hpa-{t}"),
        ScalerSpec::Server(_) => "server".to_string(),
        ScalerSpec::Oracle => "oracle".to_string(),
    };
    opts.out.join(format!("{}-{name}", n + 1))
}

/// Runs each scaler, then the internal HPA at every frontier target without writing files.
pub fn compare(opts: &Options, scalers: &[ScalerSpec], token: Option<String>, runtime: tokio::runtime::Handle, target_utilization: f64) -> Result<Comparison> {
    let mut runs = Vec::new();
    for (n, spec) in scalers.iter().enumerate() {
        let out = out_dir(opts, n, scalers.len(), spec);
        let (summary, failed_batches) = match spec {
            ScalerSpec::Hpa(t) => (run(opts, Decider::Hpa(*t), Some(&out), target_utilization)?, 0),
            ScalerSpec::Oracle => (run(opts, Decider::Oracle, Some(&out), target_utilization)?, 0),
            ScalerSpec::Server(url) => {
                let mut server = Server::new(url, token.clone(), runtime.clone())?;
                server.wait_ready(std::time::Duration::from_secs(30))?;
                let s = run(opts, Decider::Server(&mut server), Some(&out), target_utilization)?;
                (s, server.failed_batches)
            }
        };
        let total = Tally::total(summary.tallies.values());
        runs.push(PolicyRun {
            scaler: spec.to_string(),
            out,
            files: summary.files.len(),
            services: summary.tallies,
            total,
            margin: None,
            saving: None,
            avoidable_margin: None,
            failed_batches,
        });
    }
    let mut points = Vec::new();
    let mut capacity_bound_minutes = 0.0;
    for target in FRONTIER_TARGETS {
        let summary = run(opts, Decider::Hpa(Some(target)), None, target_utilization)?;
        let t = Tally::total(summary.tallies.values());
        points.push(Point { target, pod_hours: t.pod_hours, under_provisioned_minutes: t.under_provisioned_minutes });
        capacity_bound_minutes = t.capacity_bound_minutes;
    }
    let frontier = Frontier::new(points);
    let avoidable = Frontier::new(
        frontier.points.iter().map(|p| Point { under_provisioned_minutes: p.under_provisioned_minutes - capacity_bound_minutes, ..p.clone() }).collect(),
    );
    for r in &mut runs {
        r.margin = frontier.margin(&r.total.score());
        r.saving = frontier.saving(&r.total.score());
        r.avoidable_margin = avoidable.margin(&r.total.avoidable_score());
    }
    Ok(Comparison { world_name: String::new(), world: opts.world.clone(), target_utilization, frontier, capacity_bound_minutes, runs })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_step_counts_as_what_the_ready_pods_went_through() {
        let mut t = Tally::default();
        let sample = |needed: f64, at_max: f64, p95: f64, errors: f64| Sample {
            replicas: 4,
            stretches: vec![(needed, 4.0, 30.0)],
            needed_cpu_percent_at_max: at_max,
            p95_ms: p95,
            error_rate: errors,
            ..Sample::default()
        };
        t.add(&sample(69.0, 30.0, 120.0, 0.002), 30.0, 70.0);
        t.add(&sample(71.0, 40.0, 650.0, 0.05), 30.0, 70.0);
        // Starting pods cost pod-hours too: 4 pods for a minute.
        assert_eq!(
            t,
            Tally {
                pod_hours: 4.0 / 60.0,
                under_provisioned_minutes: 0.5,
                capacity_bound_minutes: 0.0,
                slow_minutes: 0.5,
                error_minutes: 0.5,
                decisions: 0,
                fallbacks: 0,
                first_fallback_minute: None
            }
        );
        // A load past what all of max_replicas serve is under-provisioned and out of reach.
        t.add(&sample(120.0, 75.0, 900.0, 0.05), 30.0, 70.0);
        assert_eq!((t.under_provisioned_minutes, t.capacity_bound_minutes), (1.0, 0.5));
        let both = Tally::total([&t, &t]);
        assert_eq!((both.under_provisioned_minutes, both.capacity_bound_minutes, both.pod_hours), (2.0, 1.0, 12.0 / 60.0));
        // Scored against a frontier as the replay's policies are.
        let f = Frontier::new(vec![
            Point { target: 40.0, pod_hours: 1.0, under_provisioned_minutes: 0.0 },
            Point { target: 80.0, pod_hours: 0.0, under_provisioned_minutes: 4.0 },
        ]);
        let m = f.margin(&both.score()).unwrap();
        assert!((m.hpa_minutes - (4.0 - 4.0 * 12.0 / 60.0)).abs() < 1e-12 && m.beats_hpa(), "{m:?}");
        // Out of reach for both sides, the same minutes are a larger share of what was avoidable.
        assert!((both.avoidable_score().under_provisioned_minutes - 1.0).abs() < 1e-12);
    }
}
