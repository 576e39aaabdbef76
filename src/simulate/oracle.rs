//! The forecast that knew the future exactly: the limit of what any forecast can bring in a
//! world (`simulate --scaler oracle`). It reads each service's demand ahead (the demand has a
//! random stream of its own, so it is the same whoever scales) and asks, at every step, for the
//! ready pods the peak of the coming start-up needs at the judged utilisation; its answers go
//! through the same HPA (rates, scale-down hold, start-ups) as a server's. With start-ups that
//! spread, it plans for their median, and meets late pods as any policy does.

use super::World;
use super::service::Profile;

pub struct Oracle {
    /// Per service, per step of the whole simulation: the ready pods its demand needs.
    needs: Vec<Vec<f64>>,
    /// Steps from asking for a pod to its serving, and one more: a decision acts a step later.
    lead: usize,
}

impl Oracle {
    /// From each service's demand at every step (`demands[i][step]`), for ready pods kept at
    /// `aim` % CPU of their request; a release at step `release_step` changes what a pod serves
    /// (the world's factor), and the oracle knows that too.
    pub fn new(profiles: &[Profile], demands: &[Vec<f64>], world: &World, aim: f64, step_seconds: f64, release_step: usize) -> Oracle {
        let per_pod = world.load_at(((aim - 3.0) / 95.0).max(0.01));
        let needs = profiles
            .iter()
            .zip(demands)
            .map(|(p, d)| {
                d.iter()
                    .enumerate()
                    .map(|(k, rps)| (rps / (p.pod_capacity_rps * world.capacity_factor(k as f64, release_step as f64) * per_pod)).ceil())
                    .collect()
            })
            .collect();
        Oracle { needs, lead: (world.pod_startup_seconds / step_seconds).ceil() as usize + 1 }
    }

    /// Replicas for service `i` decided at `step`: the most its demand needs from the next step
    /// until pods asked for now serve, within `bounds`.
    pub fn wanted(&self, i: usize, step: usize, (lo, hi): (u32, u32)) -> u32 {
        let needs = &self.needs[i];
        let end = (step + 1 + self.lead).min(needs.len());
        let peak = needs.get(step + 1..end).into_iter().flatten().copied().fold(0.0, f64::max);
        (peak as u32).clamp(lo, hi)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn it_asks_ahead_for_the_peak_of_the_coming_start_up() {
        let p = super::super::service::default_profiles().remove(0);
        // 60 rps a pod at 100 %; at 70 %: (70 - 3) / 95 of it, 42.3 rps.
        let demand = vec![vec![40.0, 40.0, 40.0, 40.0, 200.0, 40.0, 40.0, 40.0, 40.0]];
        let o = Oracle::new(std::slice::from_ref(&p), &demand, &World::default(), 70.0, 30.0, usize::MAX);
        assert_eq!(o.lead, 3);
        let wanted: Vec<u32> = (0..9).map(|k| o.wanted(0, k, (1, 10))).collect();
        // 200 rps needs 5 pods; asked for from three steps before it, dropped once it passed.
        assert_eq!(wanted, [1, 5, 5, 5, 1, 1, 1, 1, 1]);
        assert_eq!(o.wanted(0, 1, (1, 4)), 4, "within the bounds");
        // Past a knee a pod serves less at the same CPU, so more pods are needed.
        let knee = World { knee: 0.3, knee_slowdown: 2.0, ..World::default() };
        assert!(Oracle::new(std::slice::from_ref(&p), &demand, &knee, 70.0, 30.0, usize::MAX).wanted(0, 1, (1, 10)) > 5);
        // After a release that doubles the CPU per request, the same load needs twice the pods.
        let heavier = World { release_cpu_factor: 2.0, ..World::default() };
        assert_eq!(Oracle::new(std::slice::from_ref(&p), &demand, &heavier, 70.0, 30.0, 2).wanted(0, 1, (1, 10)), 10);
    }
}
