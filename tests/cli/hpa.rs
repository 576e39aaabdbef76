//! One HPA model: the replay that judges policies and the simulator that plays a cluster run
//! the same controller and actuator (`autoscale::hpa`), so on the same load they decide alike.

use autoscale::evaluation::replay::{self, Capacity, Params, Policy, Series};
use autoscale::hpa::Hpa;
use autoscale::simulate::service::{Service, default_profiles};

/// A simulated service with no noise and room to spare (no CPU ceiling, no OOM kills), scaled by
/// `hpa`, over `steps` 30 s steps of a load that ramps, holds, and falls: (its replicas at each
/// step, the demand it met).
fn simulated(hpa: &Hpa, steps: usize) -> (Vec<f64>, Vec<f64>) {
    let mut p = default_profiles().remove(0);
    p.noise = 0.0;
    p.cpu_limit = 100.0 * p.cpu_request;
    p.ram_limit = 1e9;
    let mut s = Service::new(p, hpa.clone(), 0.0, 7, 0);
    let load = |k: usize| match k {
        0..20 => 0.1,
        20..40 => 0.1 + 0.045 * (k - 20) as f64,
        40..80 => 1.0,
        80..100 => 1.0 - 0.045 * (k - 80) as f64,
        _ => 0.1,
    };
    let (mut replicas, mut rps) = (Vec::new(), Vec::new());
    for k in 0..steps {
        let sample = s.step(k as f64 * 30.0, 30.0, load(k));
        replicas.push(sample.replicas as f64);
        rps.push(sample.rps);
    }
    (replicas, rps)
}

/// The replay's HPA on the same rows: CPU `3 + 95 × rps / (ready × capacity)` as the simulator's.
fn replayed(p: &Params, target: f64, rps: &[f64], first: f64) -> Vec<f64> {
    let profile = default_profiles().remove(0);
    let cap = Capacity { base: 3.0, slope: 95.0 / profile.pod_capacity_rps, r2: 1.0, rows: 100 };
    let series = Series { timestamps: (0..rps.len() as i64).map(|k| k * 30_000_000).collect(), rps: rps.to_vec(), recorded: vec![first; rps.len()] };
    replay::simulate(&series, &cap, &Policy::Reactive { target }, p).rows.iter().map(|r| r.replicas).collect()
}

#[test]
fn the_replay_and_the_simulator_decide_alike_on_the_same_load() {
    let profile = default_profiles().remove(0);
    let bounds = Params { min_replicas: profile.min_replicas as f64, max_replicas: profile.max_replicas as f64, ..Params::default() };
    assert_eq!(bounds.hpa(60.0), Hpa::default(), "the replay's defaults are the model's");
    // Kubernetes' defaults, and settings far from them: a slow sync, a long start-up, tight rates.
    let slow = Params {
        hpa_sync_seconds: 45.0,
        pod_startup_seconds: 150.0,
        scale_up_percent: Some(50.0),
        scale_up_pods: Some(1.0),
        scale_up_period_seconds: 60.0,
        scale_down_percent: None,
        scale_down_pods: Some(1.0),
        scale_down_period_seconds: 60.0,
        scale_down_stabilization_seconds: 120.0,
        ..bounds.clone()
    };
    for p in [bounds, slow] {
        let hpa = p.hpa(60.0);
        let (sim, rps) = simulated(&hpa, 140);
        let rep = replayed(&p, 60.0, &rps, profile.min_replicas as f64);
        assert_eq!(sim, rep, "with {hpa:?}");
        // The load moved the replicas both ways, so the decisions compared mean something.
        let peak = sim.iter().copied().fold(0.0, f64::max);
        assert!(peak >= sim[0] + 3.0 && *sim.last().unwrap() < peak, "{sim:?}");
    }
}
