//! A cluster world: what the simulated cluster is like beyond its load. How long pods take to
//! serve, how a pod slows past a knee, how noisy demand is, whether flash crowds come, how
//! teams sized maxReplicas, how many replicas run at the start. A policy tuned in one world is
//! judged in the others (`simulate --world`, `benches/closed_loop.py --worlds`).
//!
//! The named worlds were chosen from public facts before any policy ran in them
//! (docs/worlds.md gives each value's source); a world is never changed after a result was
//! seen: a new one is added instead.

use serde::{Deserialize, Serialize};

use crate::rng::Rng;

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct World {
    /// Seconds from asking for a pod to its serving: the median when `startup_spread` > 0.
    pub pod_startup_seconds: f64,
    /// The pods asked for in one 30 s step take `pod_startup_seconds × e^(spread × N(0, 1))`
    /// (image pulls, node scale-ups): 0, all alike.
    pub startup_spread: f64,
    /// Share of a pod's nominal capacity past which each further request costs
    /// `knee_slowdown` times the CPU (contention: locks, GC, cache misses), so the pod saturates
    /// early and queueing starts there. 1: no knee (CPU is linear in load up to capacity).
    pub knee: f64,
    pub knee_slowdown: f64,
    /// Demand noise, times the profiles' own (AR(1) in log, sd ≈ 0.17 at 1).
    pub noise: f64,
    /// The chance that a day brings a flash crowd: from a time between 08:00 and 20:00 every
    /// service's load is multiplied by a factor in `flash_crowd_factor`, reached within
    /// 2 minutes, held for the first half of `flash_crowd_minutes` and fading over the second.
    pub flash_crowd_chance: f64,
    pub flash_crowd_factor: [f64; 2],
    pub flash_crowd_minutes: [f64; 2],
    /// Each service's maxReplicas times this (rounded, above its minReplicas): under 1, the
    /// busy hours press against the cap; over 1, room to spare.
    pub max_replicas_factor: f64,
    /// Replicas at the start, between each service's min (0) and max (1).
    pub initial_replicas: f64,
    /// A release that changes what a request costs: from `release_hour` of the first judged day
    /// (after any warm-up days) every request takes `release_cpu_factor` times the CPU, so a pod
    /// serves that many times fewer. 1: no release. What a model trained before it cannot know.
    pub release_cpu_factor: f64,
    pub release_hour: f64,
}

impl Default for World {
    fn default() -> World {
        World {
            pod_startup_seconds: 60.0,
            startup_spread: 0.0,
            knee: 1.0,
            knee_slowdown: 1.0,
            noise: 1.0,
            flash_crowd_chance: 0.0,
            flash_crowd_factor: [2.0, 5.0],
            flash_crowd_minutes: [20.0, 60.0],
            max_replicas_factor: 1.0,
            initial_replicas: 0.0,
            release_cpu_factor: 1.0,
            release_hour: 12.0,
        }
    }
}

/// The named worlds, in the order the benchmark's table shows them.
pub const NAMES: [&str; 15] = [
    "default",
    "fast-start",
    "jvm",
    "jvm-knee",
    "new-node",
    "startup-tail",
    "knee",
    "quiet",
    "noisy",
    "flash-crowds",
    "tight-max",
    "generous-max",
    "warm-start",
    "hostile",
    "heavier-release",
];

/// A world by name (one of [`NAMES`]), with a line on what it is.
pub fn named(name: &str) -> Option<(World, &'static str)> {
    let d = World::default();
    let knee = World { knee: 0.6, knee_slowdown: 2.0, ..d.clone() };
    Some(match name {
        "default" => (d, "pods serve 60 s after they are asked for; CPU linear in load; the profiles' noise; no flash crowds"),
        "fast-start" => (World { pod_startup_seconds: 30.0, ..d }, "a small Go service on warm nodes: pods serve in 30 s"),
        "jvm" => (World { pod_startup_seconds: 120.0, startup_spread: 0.3, ..d }, "a JVM service: 120 s to serve, spread ×e^(0.3 N)"),
        "jvm-knee" => (
            World { pod_startup_seconds: 180.0, startup_spread: 0.3, ..knee.clone() },
            "a JVM service that slows past 60 % of its capacity: 180 s to serve, CPU per request ×2 past the knee",
        ),
        "new-node" => {
            (World { pod_startup_seconds: 300.0, startup_spread: 0.5, ..d }, "new pods wait for a new node (cluster autoscaler): 300 s, spread ×e^(0.5 N)")
        }
        "startup-tail" => (World { startup_spread: 1.0, ..d }, "60 s median start-up with a long tail (cold image pulls): ×e^(1.0 N)"),
        "knee" => (knee, "pods slow past 60 % of their capacity (CPU per request ×2 beyond), so queueing starts early"),
        "quiet" => (World { noise: 0.5, ..d }, "half the profiles' demand noise"),
        "noisy" => (World { noise: 2.0, ..d }, "twice the profiles' demand noise"),
        "flash-crowds" => (World { flash_crowd_chance: 1.0, ..d }, "a flash crowd every day: 2-5× the load within 2 minutes, for 20-60 minutes"),
        "tight-max" => (World { max_replicas_factor: 0.75, ..d }, "maxReplicas three quarters of the profiles': busy hours press against the cap"),
        "generous-max" => (World { max_replicas_factor: 2.0, ..d }, "maxReplicas twice the profiles'"),
        "warm-start" => (World { initial_replicas: 1.0, ..d }, "every service starts at its maxReplicas (a fresh deploy that set replicas high)"),
        "hostile" => (
            World { pod_startup_seconds: 120.0, startup_spread: 0.5, noise: 2.0, flash_crowd_chance: 0.5, max_replicas_factor: 0.75, ..knee },
            "all at once: 120 s spread start-ups, the knee, twice the noise, a flash crowd every other day, tight maxReplicas",
        ),
        "heavier-release" => (
            World { release_cpu_factor: 2.0, ..d },
            "at noon of the judged day a release doubles the CPU per request (debug logging, a new serialiser): pods serve half",
        ),
        _ => return None,
    })
}

impl World {
    /// What a setting cannot be, named by field.
    pub fn check(&self) -> Result<(), String> {
        let within = |field: &str, v: f64, lo: f64, hi: f64| {
            if v.is_finite() && (lo..=hi).contains(&v) { Ok(()) } else { Err(format!("`{field}` must be within {lo}..{hi}, not {v}")) }
        };
        within("pod_startup_seconds", self.pod_startup_seconds, 0.0, 3600.0)?;
        within("startup_spread", self.startup_spread, 0.0, 3.0)?;
        within("knee", self.knee, 0.05, 1.0)?;
        within("knee_slowdown", self.knee_slowdown, 1.0, 20.0)?;
        within("noise", self.noise, 0.0, 10.0)?;
        within("flash_crowd_chance", self.flash_crowd_chance, 0.0, 1.0)?;
        within("max_replicas_factor", self.max_replicas_factor, 0.1, 20.0)?;
        within("initial_replicas", self.initial_replicas, 0.0, 1.0)?;
        within("release_cpu_factor", self.release_cpu_factor, 0.1, 10.0)?;
        within("release_hour", self.release_hour, 0.0, 24.0)?;
        for (field, [lo, hi], bounds) in
            [("flash_crowd_factor", self.flash_crowd_factor, (1.0, 100.0)), ("flash_crowd_minutes", self.flash_crowd_minutes, (1.0, 600.0))]
        {
            within(field, lo, bounds.0, bounds.1)?;
            within(field, hi, lo, bounds.1)?;
        }
        Ok(())
    }

    /// The share of a pod's CPU request that `u` (its load over its nominal capacity) keeps
    /// busy: `u` up to the knee, steeper past it. Unbounded: above 1 the pod cannot keep up.
    pub fn busy(&self, u: f64) -> f64 {
        if u <= self.knee { u } else { self.knee + self.knee_slowdown * (u - self.knee) }
    }

    /// The load, over nominal capacity, that keeps `busy` of a pod's CPU request busy: the
    /// inverse of [`World::busy`].
    pub fn load_at(&self, busy: f64) -> f64 {
        if busy <= self.knee { busy } else { self.knee + (busy - self.knee) / self.knee_slowdown }
    }

    /// The load, over nominal capacity, at which a pod's CPU request is all busy: what it serves.
    pub fn saturation(&self) -> f64 {
        if self.knee >= 1.0 { 1.0 } else { self.knee + (1.0 - self.knee) / self.knee_slowdown }
    }

    /// What a pod serves at `now`, over what it served before a release at `release_at`.
    pub fn capacity_factor(&self, now: f64, release_at: f64) -> f64 {
        if now >= release_at { 1.0 / self.release_cpu_factor } else { 1.0 }
    }

    /// A service's maxReplicas in this world.
    pub fn max_replicas(&self, min: u32, max: u32) -> u32 {
        ((max as f64 * self.max_replicas_factor).round() as u32).max(min + 1)
    }

    /// Replicas at the start, for a service of these bounds.
    pub fn initial(&self, min: u32, max: u32) -> u32 {
        min + (self.initial_replicas * (max - min) as f64).round() as u32
    }

    /// The start-up of the pods asked for now, spread around `median`, from `rng` (drawn every
    /// step, so every scaler meets the same start-ups at the same times).
    pub fn startup(&self, median: f64, rng: &mut Rng) -> f64 {
        let z = rng.normal();
        if self.startup_spread > 0.0 { median * (self.startup_spread * z).exp() } else { median }
    }

    /// Each day's flash crowd, or none, drawn from `rng` (four draws a day whatever the chance).
    pub fn flash_crowd(&self, rng: &mut Rng, day_start: f64) -> Option<FlashCrowd> {
        let (happens, at, factor, minutes) = (rng.uniform(), rng.uniform(), rng.uniform(), rng.uniform());
        let lerp = |[lo, hi]: [f64; 2], x: f64| lo + (hi - lo) * x;
        (happens < self.flash_crowd_chance).then(|| FlashCrowd {
            start: day_start + 3600.0 * (8.0 + 12.0 * at),
            factor: lerp(self.flash_crowd_factor, factor),
            seconds: 60.0 * lerp(self.flash_crowd_minutes, minutes),
        })
    }
}

/// A sudden crowd: every service's load times `factor` from `start` for `seconds`.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct FlashCrowd {
    pub start: f64,
    pub factor: f64,
    pub seconds: f64,
}

impl FlashCrowd {
    /// What the load is multiplied by at `t`: up within 2 minutes, held for the first half,
    /// fading over the second.
    pub fn multiplier(&self, t: f64) -> f64 {
        let since = t - self.start;
        if since < 0.0 || since >= self.seconds {
            return 1.0;
        }
        let rise = (since / 120.0).min(1.0);
        let fade = if since < self.seconds / 2.0 { 1.0 } else { 2.0 * (1.0 - since / self.seconds) };
        1.0 + (self.factor - 1.0) * rise.min(fade)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_named_world_is_valid_and_distinct() {
        let worlds: Vec<World> = NAMES.iter().map(|n| named(n).unwrap_or_else(|| panic!("{n} has no world")).0).collect();
        for (n, w) in NAMES.iter().zip(&worlds) {
            assert_eq!(w.check(), Ok(()), "{n}");
        }
        for i in 0..worlds.len() {
            for j in i + 1..worlds.len() {
                assert_ne!(worlds[i], worlds[j], "{} and {} are the same world", NAMES[i], NAMES[j]);
            }
        }
        assert_eq!(named("default").unwrap().0, World::default());
        assert!(named("mars").is_none());
    }

    #[test]
    fn past_the_knee_a_pod_costs_more_cpu_and_saturates_early() {
        let w = named("knee").unwrap().0;
        assert_eq!((w.busy(0.5), w.busy(0.6)), (0.5, 0.6));
        assert!((w.busy(0.7) - 0.8).abs() < 1e-12);
        assert!((w.saturation() - 0.8).abs() < 1e-12 && (w.busy(w.saturation()) - 1.0).abs() < 1e-12);
        for u in [0.3, 0.6, 0.7, 0.95] {
            assert!((w.load_at(w.busy(u)) - u).abs() < 1e-12, "{u}");
        }
        let linear = World::default();
        assert_eq!((linear.busy(0.9), linear.saturation()), (0.9, 1.0));
    }

    #[test]
    fn a_release_halves_what_a_pod_serves_from_its_time_on() {
        let w = named("heavier-release").unwrap().0;
        assert_eq!((w.capacity_factor(99.0, 100.0), w.capacity_factor(100.0, 100.0)), (1.0, 0.5));
        assert_eq!(World::default().capacity_factor(100.0, 0.0), 1.0, "no release: the same pods");
        assert!(World { release_cpu_factor: 0.0, ..w }.check().unwrap_err().contains("release_cpu_factor"));
    }

    #[test]
    fn max_and_initial_replicas_follow_the_factors() {
        let tight = World { max_replicas_factor: 0.75, initial_replicas: 1.0, ..World::default() };
        assert_eq!((tight.max_replicas(3, 10), tight.max_replicas(1, 2), tight.initial(3, 8)), (8, 2, 8));
        assert_eq!(World::default().initial(3, 8), 3);
        assert_eq!(World { initial_replicas: 0.5, ..World::default() }.initial(2, 6), 4);
    }

    #[test]
    fn a_flash_crowd_rises_holds_and_fades() {
        let c = FlashCrowd { start: 1000.0, factor: 3.0, seconds: 1200.0 };
        assert_eq!((c.multiplier(999.0), c.multiplier(1000.0), c.multiplier(2200.0)), (1.0, 1.0, 1.0));
        assert!((c.multiplier(1060.0) - 2.0).abs() < 1e-12, "half way up after a minute");
        assert_eq!((c.multiplier(1120.0), c.multiplier(1600.0)), (3.0, 3.0));
        assert!((c.multiplier(1900.0) - 2.0).abs() < 1e-12, "half way down at three quarters");
        // Drawn the same way whatever the chance, so a world with none keeps later days' draws.
        let w = named("flash-crowds").unwrap().0;
        let days = |w: &World| {
            let mut rng = Rng::new(7, 99);
            (0..20).map(|d| w.flash_crowd(&mut rng, d as f64 * 86_400.0)).collect::<Vec<_>>()
        };
        let every = days(&w);
        assert!(every.iter().all(|c| c.is_some_and(|c| (2.0..=5.0).contains(&c.factor) && (1200.0..=3600.0).contains(&c.seconds))));
        let some = days(&World { flash_crowd_chance: 0.5, ..w.clone() });
        assert!(some.iter().any(Option::is_none) && some.iter().any(Option::is_some));
        for (a, b) in every.iter().zip(&some) {
            if let Some(b) = b {
                assert_eq!(Some(*b), *a, "a day's crowd does not depend on the chance");
            }
        }
    }

    #[test]
    fn start_ups_spread_around_their_median() {
        let w = named("startup-tail").unwrap().0;
        let mut rng = Rng::new(1, 2);
        let mut s: Vec<f64> = (0..2001).map(|_| w.startup(w.pod_startup_seconds, &mut rng)).collect();
        s.sort_by(f64::total_cmp);
        assert!((s[1000] / 60.0 - 1.0).abs() < 0.1, "median {}", s[1000]);
        assert!(s[1900] > 2.0 * 60.0 && s[100] < 60.0 / 2.0, "a long tail both ways: {} {}", s[100], s[1900]);
        let mut rng = Rng::new(1, 2);
        assert_eq!(World::default().startup(60.0, &mut rng), 60.0);
    }
}
