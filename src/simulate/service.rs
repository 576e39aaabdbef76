//! One service: pods with a capacity, the HPA of `crate::hpa` (the replay's, the server's), and
//! the metrics that follow from load and ready capacity (CPU, RAM, queueing latency, errors,
//! OOM restarts).

use super::world::World;
use crate::hpa::{Ask, Autoscaler, Hpa};
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
    /// Seconds this service's load trails the trace (downstream services see load later).
    pub lag_s: i64,
    /// Days into the trace this service starts at, so services differ.
    pub trace_offset_days: i64,
    pub base_error_rate: f64,
    /// How far demand and CPU readings wander from the trace (1: as the profiles were measured;
    /// 0: the trace exactly, to compare the simulator's HPA with the replay's on one load).
    pub noise: f64,
}

/// The seven services of the old system, sized as a team sizes maxReplicas: the trace's 99th
/// percentile needs 65-75 % of them at the HPA's 60 % target, so the max leaves room for the
/// load's swings above it (noise reaches x1.4 within minutes); a quiet hour needs one or two.
/// (Sized to 100 % and more, the cap rather than the scaler decided most under-provisioned
/// minutes of a busy day: more than half of the HPA's on a NAB taxi day.)
pub fn default_profiles() -> Vec<Profile> {
    let p = |name: &str, cap: f64, peak: f64, lat: f64, cpu: (f64, f64), ram: (f64, f64), ram_use: (f64, f64, f64), reps: (u32, u32), lag: i64, offset: i64| {
        Profile {
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
            lag_s: lag,
            trace_offset_days: offset,
            base_error_rate: 0.002,
            noise: 1.0,
        }
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
    /// The step's stretches of the same pods: (the CPU % of their request the load asks of the
    /// ready pods, without noise and above 100 % when it is more than they can serve; pods paid
    /// for, ready and starting; seconds): what under-provisioning and cost are judged on, as
    /// the replay judges them.
    pub stretches: Vec<(f64, f64, f64)>,
    /// The CPU % the load asks with every one of `max_replicas` ready: over the target, no
    /// scaler could have kept up (the cap, not the policy, is short).
    pub needed_cpu_percent_at_max: f64,
}

/// A service's demand: the trace, a floor so nights are not dead, and AR(1) multiplicative noise
/// from a stream of its own, drawn once a step, so every scaler given the same seed faces the
/// same load to the request (and the oracle can read it ahead): what a policy's pods do (each pod
/// draws its memory) shifts neither its own load nor another service's.
pub struct Demand {
    rng: Rng,
    noise: f64,
}

impl Demand {
    /// The `index`-th service's demand in a simulation seeded with `seed`.
    pub fn new(seed: u64, index: u64) -> Demand {
        Demand { rng: Rng::new(seed, 1 + 3 * index), noise: 0.0 }
    }

    /// Requests per second at the next step, under `load` (the normalised trace value).
    pub fn next(&mut self, p: &Profile, load: f64) -> f64 {
        self.noise = 0.85 * self.noise + 0.15 * self.rng.normal() * 0.6 * p.noise;
        p.peak_rps * (0.04 + 0.96 * load) * self.noise.exp()
    }
}

/// A service's other random streams.
struct Streams {
    /// CPU, latency and error noise: three draws a step, whatever the pods.
    readings: Rng,
    /// Per-pod memory and OOM kills: as many draws as there are pods.
    pods: Rng,
    /// The start-up of the pods asked for in a step: one draw a step.
    startup: Rng,
}

impl Streams {
    fn new(seed: u64, index: u64) -> Streams {
        // Stream 0 is the collector's (wake-up jitter); each service takes the next three.
        // Stream 1 + 3 × index is the demand's.
        let at = |k: u64| Rng::new(seed, 1 + 3 * index + k);
        Streams { readings: at(1), pods: at(2), startup: Rng::new(seed, (1 << 40) + index) }
    }
}

pub struct Service {
    pub profile: Profile,
    /// The HPA (its target the profile's, or the scaler's) and the pods it sets.
    pub hpa: Hpa,
    rng: Streams,
    demand: Demand,
    /// Replicas a decision server asked for at the last step; `None`: the HPA decides on CPU.
    pub wanted: Option<u32>,
    scaler: Autoscaler,
    /// How pods start and slow down.
    world: World,
    /// The HPA's start-up: the median of the spread ones.
    startup_median: f64,
    backlog: f64,
    restarts: u64,
    /// When the world's release lands (never: infinity); the simulation knows its judged days.
    pub release_at: f64,
}

impl Service {
    /// The `index`-th service of a simulation seeded with `seed`, scaled by `hpa`, in the
    /// default world (pods alike, CPU linear in load).
    pub fn new(profile: Profile, hpa: Hpa, now: f64, seed: u64, index: u64) -> Service {
        Service::in_world(profile, hpa, &World::default(), now, seed, index)
    }

    /// The same in `world`: its start-up spread around `hpa.pod_startup_seconds`, its capacity
    /// curve and its initial replicas (the profile's bounds are the world's already).
    pub fn in_world(profile: Profile, hpa: Hpa, world: &World, now: f64, seed: u64, index: u64) -> Service {
        let scaler = Autoscaler::new(world.initial(profile.min_replicas, profile.max_replicas) as f64, now);
        let startup_median = hpa.pod_startup_seconds;
        Service {
            profile,
            hpa,
            rng: Streams::new(seed, index),
            demand: Demand::new(seed, index),
            wanted: None,
            scaler,
            world: world.clone(),
            startup_median,
            backlog: 0.0,
            restarts: 0,
            release_at: f64::INFINITY,
        }
    }

    /// Pods asked for, ready or starting.
    pub fn replicas(&self) -> u32 {
        self.scaler.pods.replicas as u32
    }

    /// A rolling restart (the nightly deploy): every pod starts afresh, memory included.
    pub fn rollout(&mut self, now: f64) {
        self.scaler.pods.renew(now);
    }

    /// Advance by `dt` seconds under `load` (normalised trace value) and report. The HPA decides
    /// at each of its syncs within the step (on what metrics-server saw, or on the server's
    /// answer), as the replay's does; the step's load meets the pods ready through it.
    pub fn step(&mut self, now: f64, dt: f64, load: f64) -> Sample {
        let mut p = self.profile.clone();
        p.pod_capacity_rps *= self.world.capacity_factor(now, self.release_at);
        let demand = self.demand.next(&p, load);
        // Requests beyond capacity wait; clients give up after ~30 s, so the backlog is bounded.
        let offered = demand + self.backlog / dt;
        let cpu_cap = 100.0 * p.cpu_limit / p.cpu_request;
        let reading = self.rng.readings.normal() * 1.5 * p.noise;
        // CPU %: 3 idle, 95 more at a pod's capacity (the replay's `base + slope × rps / ready`,
        // computed in the same order); in a world with a knee, steeper past it, and a pod serves
        // only up to where its request is all busy.
        let slope = 95.0 / p.pod_capacity_rps;
        let world = &self.world;
        let busy = |rps: f64, ready: f64| if world.knee >= 1.0 { slope * rps / ready } else { 95.0 * world.busy(rps / ready / p.pod_capacity_rps) };
        let pod_serves = p.pod_capacity_rps * world.saturation();
        // CPU % of a ready pod with `ready` pods serving: what metrics-server reports.
        let cpu_of = |ready: f64| {
            let served = if ready > 0.0 { offered.min(ready * pod_serves) } else { 0.0 };
            let busy = if ready > 0.0 { busy(served, ready) } else { 0.0 };
            (3.0 + busy + reading).clamp(0.5, cpu_cap)
        };
        let needed = |ready: f64| if ready > 0.0 { 3.0 + busy(demand, ready) } else { f64::INFINITY };
        // The pods asked for in this step start up alike (one draw a step, whoever scales).
        self.hpa.pod_startup_seconds = world.startup(self.startup_median, &mut self.rng.startup);
        let ask = match self.wanted {
            Some(r) => Ask::Replicas(r as f64),
            None => Ask::Metrics { floor: 0.0 },
        };
        let bounds = (p.min_replicas as f64, p.max_replicas as f64);
        let mut stretches = Vec::with_capacity(4);
        let mut ready_seconds = 0.0;
        let state = self.scaler.advance((now, now + dt), &self.hpa, bounds, Some(ask), &cpu_of, |s| {
            let seconds = s.end - s.start;
            ready_seconds += s.ready * seconds;
            stretches.push((needed(s.ready), s.total, seconds));
        });
        // The step's load meets the pods that were ready through it, on average.
        let ready = ready_seconds / dt;
        let capacity = ready * pod_serves;
        let served = offered.min(capacity);
        let overflow = (offered - served) * dt;
        let max_backlog = capacity.max(p.pod_capacity_rps) * 30.0;
        let dropped = (overflow - max_backlog).max(0.0);
        self.backlog = overflow.min(max_backlog);
        let rho = if capacity > 0.0 { (demand / capacity).min(0.995) } else { 0.995 };
        let cpu_percent = cpu_of(ready);

        // Memory per pod: idle + load + leak since its last restart; over the limit, OOM-kill.
        // Starting pods hold their idle memory.
        let per_pod_rps = if ready > 0.0 { served / ready } else { 0.0 };
        let end = now + dt;
        let mut ram_total = p.ram_idle_mib * (self.scaler.pods.total() - self.scaler.pods.ready());
        let mut killed = Vec::new();
        for (i, since) in self.scaler.pods.ready_since().iter().enumerate() {
            let hours = ((end - since) / 3600.0).max(0.0);
            let mut mib = p.ram_idle_mib + p.ram_per_rps_mib * per_pod_rps + p.ram_leak_mib_per_hour * hours;
            mib *= 1.0 + 0.02 * self.rng.pods.normal();
            if mib > p.ram_limit && self.rng.pods.uniform() < 0.5 {
                killed.push(i);
                mib = p.ram_idle_mib;
            }
            ram_total += mib;
        }
        for &i in killed.iter().rev() {
            self.restarts += 1;
            self.scaler.pods.restart(i, end, self.hpa.pod_startup_seconds);
        }
        let n = self.scaler.pods.total().max(1.0);
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
            replicas: state.replicas as u32,
            queue,
            error_rate,
            restarts: self.restarts,
            cpu_cores: ready * p.cpu_request * cpu_percent / 100.0,
            ram_mib: ram_total,
            stretches,
            needed_cpu_percent_at_max: 3.0 + 95.0 * world.busy(demand / (p.max_replicas.max(1) as f64 * p.pod_capacity_rps)),
        }
    }
}
