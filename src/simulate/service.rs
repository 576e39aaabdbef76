//! One service: pods with a capacity, a Kubernetes-HPA-like controller, and the metrics that
//! follow from load and ready capacity (CPU, RAM, queueing latency, errors, OOM restarts).

use std::collections::VecDeque;

use crate::rng::Rng;

/// What a service is like. Requests are cores, RAM is MiB, as the collector reports them.
#[derive(Debug, Clone)]
pub struct Profile {
    pub name: String,
    /// Requests per second one ready pod serves at 100 % of its CPU request.
    pub pod_capacity_rps: f64,
    /// Load at the trace's 99th percentile.
    pub peak_rps: f64,
    /// Service time with no queueing.
    pub base_latency_ms: f64,
    pub cpu_request: f64,
    pub cpu_limit: f64,
    pub ram_request: f64,
    pub ram_limit: f64,
    /// Memory per pod: idle, per request/s it serves, and a slow leak per hour of uptime.
    pub ram_idle_mib: f64,
    pub ram_per_rps_mib: f64,
    pub ram_leak_mib_per_hour: f64,
    pub min_replicas: u32,
    pub max_replicas: u32,
    /// HPA target CPU utilisation, percent of the request.
    pub target_cpu: f64,
    /// Seconds from scheduling to ready.
    pub startup_s: f64,
    /// Scale down only to the highest decision of this many seconds (the HPA's stabilisation).
    pub stabilization_s: f64,
    /// Seconds this service's load trails the trace (downstream services see load later).
    pub lag_s: i64,
    /// Days into the trace this service starts at, so services differ.
    pub trace_offset_days: i64,
    pub base_error_rate: f64,
}

/// The seven services of the old system, sized as a team sizes maxReplicas: the trace's 99th
/// percentile needs 65-75 % of them at the HPA's 60 % target, so the max leaves room for the
/// load's swings above it (noise reaches x1.4 within minutes); a quiet hour needs one or two.
/// (Sized to 100 % and more, the cap rather than the scaler decided most under-provisioned
/// minutes of a busy day: more than half of the HPA's on a NAB taxi day.)
pub fn default_profiles() -> Vec<Profile> {
    let p = |name: &str, cap: f64, peak: f64, lat: f64, cpu: (f64, f64), ram: (f64, f64), ram_use: (f64, f64, f64), reps: (u32, u32), lag: i64, offset: i64| Profile {
        name: name.to_string(),
        pod_capacity_rps: cap,
        peak_rps: peak,
        base_latency_ms: lat,
        cpu_request: cpu.0,
        cpu_limit: cpu.1,
        ram_request: ram.0,
        ram_limit: ram.1,
        ram_idle_mib: ram_use.0,
        ram_per_rps_mib: ram_use.1,
        ram_leak_mib_per_hour: ram_use.2,
        min_replicas: reps.0,
        max_replicas: reps.1,
        target_cpu: 60.0,
        startup_s: 45.0,
        stabilization_s: 300.0,
        lag_s: lag,
        trace_offset_days: offset,
        base_error_rate: 0.002,
    };
    vec![
        p("frontend", 60.0, 230.0, 35.0, (0.5, 1.0), (256.0, 512.0), (70.0, 1.2, 2.0), (3, 10), 0, 0),
        p("authen", 45.0, 140.0, 25.0, (0.25, 0.5), (128.0, 256.0), (40.0, 0.9, 1.0), (2, 8), 30, 0),
        p("product", 40.0, 180.0, 60.0, (0.5, 1.0), (512.0, 1024.0), (150.0, 3.0, 4.0), (3, 10), 60, 1),
        p("order", 20.0, 63.0, 80.0, (0.5, 0.5), (256.0, 512.0), (90.0, 2.5, 3.0), (1, 8), 120, 2),
        p("booking", 18.0, 60.0, 90.0, (0.5, 1.0), (256.0, 512.0), (100.0, 2.8, 2.5), (2, 8), 180, 3),
        p("profile", 35.0, 84.0, 45.0, (0.25, 0.5), (128.0, 384.0), (55.0, 1.5, 1.5), (2, 6), 90, 4),
        p("recommender", 8.0, 36.0, 90.0, (1.0, 2.0), (1024.0, 2048.0), (500.0, 18.0, 30.0), (1, 10), 240, 5),
    ]
}

#[derive(Debug, Clone)]
struct Pod {
    ready_at: f64,
    /// When its memory was last reset (start or OOM restart).
    mem_since: f64,
}

/// What one step of a service produced, before the collector's rolling columns.
#[derive(Debug, Clone, Default)]
pub struct Sample {
    pub cpu_percent: f64,
    pub ram_percent: f64,
    pub rps: f64,
    pub p95_ms: f64,
    pub replicas: u32,
    pub queue: f64,
    pub error_rate: f64,
    pub restarts: u64,
    /// Cores and MiB in use, for node pressure.
    pub cpu_cores: f64,
    pub ram_mib: f64,
    /// Pods serving, and the CPU % of their request the load asks of them (without noise, and
    /// above 100 % when it is more than they can serve): what under-provisioning is judged on.
    pub ready: u32,
    pub needed_cpu_percent: f64,
    /// The same with every one of `max_replicas` ready: over the target, no scaler could have
    /// kept up (the cap, not the policy, is short).
    pub needed_cpu_percent_at_max: f64,
}

/// A service's own random streams. Demand noise has a stream of its own, drawn once a step, so
/// every scaler given the same seed faces the same load to the request: what a policy's pods do
/// (each pod draws its memory) shifts neither its own load nor another service's.
struct Streams {
    load: Rng,
    /// CPU, latency and error noise: three draws a step, whatever the pods.
    readings: Rng,
    /// Per-pod memory and OOM kills: as many draws as there are pods.
    pods: Rng,
}

impl Streams {
    fn new(seed: u64, index: u64) -> Streams {
        // Stream 0 is the collector's (wake-up jitter); each service takes the next three.
        let at = |k: u64| Rng::new(seed, 1 + 3 * index + k);
        Streams { load: at(0), readings: at(1), pods: at(2) }
    }
}

pub struct Service {
    pub profile: Profile,
    rng: Streams,
    /// Replicas a decision server asked for at the last step; `None`: the internal HPA decides.
    pub wanted: Option<u32>,
    pods: Vec<Pod>,
    /// HPA recommendations of the last five minutes, for scale-down stabilisation.
    recent: VecDeque<(f64, u32)>,
    backlog: f64,
    noise: f64,
    restarts: u64,
    last_cpu: f64,
    last_scale_down: f64,
}

impl Service {
    /// The `index`-th service of a simulation seeded with `seed`.
    pub fn new(profile: Profile, now: f64, seed: u64, index: u64) -> Service {
        let pods = (0..profile.min_replicas).map(|_| Pod { ready_at: now, mem_since: now }).collect();
        Service { profile, rng: Streams::new(seed, index), wanted: None, pods, recent: VecDeque::new(), backlog: 0.0, noise: 0.0, restarts: 0, last_cpu: 30.0, last_scale_down: f64::MIN }
    }

    /// Pods asked for, ready or starting.
    pub fn replicas(&self) -> u32 {
        self.pods.len() as u32
    }

    /// A rolling restart (the nightly deploy): every pod starts afresh, memory included.
    pub fn rollout(&mut self, now: f64) {
        for pod in &mut self.pods {
            pod.mem_since = now;
        }
    }

    /// Advance by `dt` seconds under `load` (normalised trace value) and report.
    pub fn step(&mut self, now: f64, dt: f64, load: f64) -> Sample {
        let p = self.profile.clone();
        self.autoscale(now);
        // Demand: the trace, a floor so nights are not dead, and AR(1) multiplicative noise.
        self.noise = 0.85 * self.noise + 0.15 * self.rng.load.normal() * 0.6;
        let demand = p.peak_rps * (0.04 + 0.96 * load) * self.noise.exp();
        let ready = self.pods.iter().filter(|pod| pod.ready_at <= now).count() as f64;
        let capacity = ready * p.pod_capacity_rps;
        // Requests beyond capacity wait; clients give up after ~30 s, so the backlog is bounded.
        let offered = demand + self.backlog / dt;
        let served = offered.min(capacity);
        let overflow = (offered - served) * dt;
        let max_backlog = capacity.max(p.pod_capacity_rps) * 30.0;
        let dropped = (overflow - max_backlog).max(0.0);
        self.backlog = overflow.min(max_backlog);
        let rho = if capacity > 0.0 { (demand / capacity).min(0.995) } else { 0.995 };

        let cpu_cap = 100.0 * p.cpu_limit / p.cpu_request;
        let util = if ready > 0.0 { served / capacity } else { 0.0 };
        let cpu_percent = (3.0 + 95.0 * util + self.rng.readings.normal() * 1.5).clamp(0.5, cpu_cap);
        self.last_cpu = cpu_percent;

        // Memory per pod: idle + load + leak since its last restart; over the limit, OOM-kill.
        let per_pod_rps = if ready > 0.0 { served / ready } else { 0.0 };
        let mut ram_total = 0.0;
        for pod in &mut self.pods {
            let hours = ((now - pod.mem_since) / 3600.0).max(0.0);
            let mut mib = p.ram_idle_mib + p.ram_per_rps_mib * per_pod_rps + p.ram_leak_mib_per_hour * hours;
            mib *= 1.0 + 0.02 * self.rng.pods.normal();
            if mib > p.ram_limit && self.rng.pods.uniform() < 0.5 {
                self.restarts += 1;
                pod.mem_since = now;
                pod.ready_at = now + p.startup_s;
                mib = p.ram_idle_mib;
            }
            ram_total += mib;
        }
        let n = self.pods.len().max(1) as f64;
        let ram_percent = (100.0 * ram_total / n / p.ram_limit).clamp(0.0, 100.0);

        // Queueing: latency grows like rho/(1-rho) and by the time the backlog takes to drain.
        let wait_ms = if capacity > 0.0 { 1000.0 * self.backlog / capacity } else { 30_000.0 };
        let mean_ms = p.base_latency_ms * (1.0 + 0.6 * rho / (1.0 - rho)) + wait_ms;
        let p95_ms = (mean_ms * (1.9 + 0.15 * self.rng.readings.normal().abs())).min(30_000.0);
        let queue = (rho * rho / (1.0 - rho)).min(50.0) + self.backlog;
        let error_rate = (p.base_error_rate * (1.0 + 0.5 * self.rng.readings.normal()).max(0.1)
            + if rho > 0.92 { (rho - 0.92) * 1.5 } else { 0.0 }
            + if demand > 0.0 { dropped / (demand * dt) } else { 0.0 })
        .clamp(0.0, 1.0);

        Sample {
            cpu_percent,
            ram_percent,
            rps: demand,
            p95_ms,
            replicas: self.pods.len() as u32,
            queue,
            error_rate,
            restarts: self.restarts,
            cpu_cores: ready * p.cpu_request * cpu_percent / 100.0,
            ram_mib: ram_total,
            ready: ready as u32,
            needed_cpu_percent: if ready > 0.0 { 3.0 + 95.0 * demand / capacity } else { f64::INFINITY },
            needed_cpu_percent_at_max: 3.0 + 95.0 * demand / (p.max_replicas.max(1) as f64 * p.pod_capacity_rps),
        }
    }

    /// The HPA: desired = ceil(current × utilisation / target) outside a 10 % tolerance, or
    /// what a decision server asked for. Either is actuated as Kubernetes does: scale-up at
    /// most doubling (or +4) per step, scale-down only to the highest recommendation of the
    /// stabilisation window (five minutes) and by one pod a minute (a common
    /// `behavior.scaleDown` policy), new pods ready after their start-up delay.
    fn autoscale(&mut self, now: f64) {
        let p = &self.profile;
        let current = self.pods.len() as u32;
        let raw = match self.wanted {
            Some(r) => r,
            None => {
                let ratio = self.last_cpu / p.target_cpu;
                if (ratio - 1.0).abs() <= 0.1 { current } else { (current as f64 * ratio).ceil() as u32 }
            }
        };
        let raw = raw.clamp(p.min_replicas, p.max_replicas);
        self.recent.push_back((now, raw));
        while self.recent.front().is_some_and(|(t, _)| now - t > p.stabilization_s) {
            self.recent.pop_front();
        }
        let stabilised = self.recent.iter().map(|(_, r)| *r).max().unwrap_or(raw);
        let desired = if raw > current {
            raw.min((current * 2).max(current + 4))
        } else {
            stabilised.min(current)
        };
        if desired > current {
            for _ in current..desired {
                self.pods.push(Pod { ready_at: now + p.startup_s, mem_since: now });
            }
        } else if desired < current && now - self.last_scale_down >= 60.0 {
            self.pods.truncate(current as usize - 1);
            self.last_scale_down = now;
        }
    }
}
