//! Which ready stage starts first. With fewer slots than ready stages, the one with the most
//! work still to come after it (its own, then its longest chain of dependents) starts first, so
//! the longest chain never waits behind short siblings and no core idles at the end of a run.
//! A stage's work is how long its last build took, or, on a first run, its op's guess
//! ([`Stage::work_hint`](super::stage::Stage::work_hint)).

use std::collections::HashMap;

use super::plan::Plan;
use crate::cache::Cache;

/// Seconds of work from the start of each stage to the end of the run along its longest chain.
pub fn remaining_work(plan: &Plan, cache: &Cache) -> HashMap<String, f64> {
    let own = |name: &str| -> f64 {
        let s = plan.get(name).expect("a planned stage");
        cache.last_built(&plan.pipeline.name, name).map(|m| m.seconds).filter(|s| s.is_finite() && *s > 0.0).unwrap_or_else(|| s.stage.work_hint())
    };
    longest_chains(plan.stages.iter().map(|s| (s.name.as_str(), s.deps.as_slice())), own)
}

/// `stages` in dependency order, each with its deps; `own` its work.
fn longest_chains<'a>(stages: impl DoubleEndedIterator<Item = (&'a str, &'a [String])>, own: impl Fn(&str) -> f64) -> HashMap<String, f64> {
    let stages: Vec<(&str, &[String])> = stages.collect();
    let mut after: HashMap<String, f64> = HashMap::new();
    // Dependents come later in dependency order: walking backwards, each stage's are known.
    for (name, _) in stages.iter().rev() {
        let longest_dependent = stages.iter().filter(|(_, deps)| deps.iter().any(|d| d == name)).map(|(d, _)| after[*d]).fold(0.0, f64::max);
        after.insert(name.to_string(), own(name) + longest_dependent);
    }
    after
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_longest_chain_of_work_goes_first() {
        let deps = |d: &[&str]| d.iter().map(|s| s.to_string()).collect::<Vec<_>>();
        let stages = [
            ("split", deps(&[])),
            ("lstm", deps(&["split"])),
            ("forest", deps(&["split"])),
            ("cv", deps(&["split"])),
            ("evaluate", deps(&["lstm", "forest", "cv"])),
        ];
        let work = |n: &str| match n {
            "lstm" => 100.0,
            "cv" => 60.0,
            "forest" => 10.0,
            _ => 1.0,
        };
        let after = longest_chains(stages.iter().map(|(n, d)| (*n, d.as_slice())), work);
        assert_eq!((after["evaluate"], after["lstm"], after["cv"], after["forest"], after["split"]), (1.0, 101.0, 61.0, 11.0, 102.0));
    }
}
