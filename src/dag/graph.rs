//! The stage graph: order, cycles, and the stages above or below a given one. It knows stages
//! only by name and deps ([`Node`]), so the spec can check its graph without a loop between them.

use std::collections::{BTreeSet, HashMap, HashSet};

use indexmap::IndexMap;

/// A stage as the graph sees it: the names of the stages it needs.
pub trait Node {
    fn deps(&self) -> &[String];
}

/// Stages by name, in the file's order.
pub type Stages<S> = IndexMap<String, S>;

/// Stages in an order where every dep comes first; ties keep the file's order.
/// On a cycle, returns the stages that form it, the first repeated at the end.
pub fn topo_order<S: Node>(stages: &Stages<S>) -> Result<Vec<String>, Vec<String>> {
    let index: HashMap<&str, usize> = stages.keys().enumerate().map(|(i, k)| (k.as_str(), i)).collect();
    let mut indegree: Vec<usize> = stages.values().map(|s| s.deps().len()).collect();
    let mut dependants: Vec<Vec<usize>> = vec![Vec::new(); stages.len()];
    for (i, s) in stages.values().enumerate() {
        for d in s.deps() {
            if let Some(&j) = index.get(d.as_str()) {
                dependants[j].push(i);
            }
        }
    }
    let mut ready: BTreeSet<usize> = (0..indegree.len()).filter(|&i| indegree[i] == 0).collect();
    let mut order = Vec::with_capacity(indegree.len());
    while let Some(i) = ready.pop_first() {
        order.push(i);
        for &j in &dependants[i] {
            indegree[j] -= 1;
            if indegree[j] == 0 {
                ready.insert(j);
            }
        }
    }
    let names: Vec<&String> = stages.keys().collect();
    if order.len() == names.len() {
        return Ok(order.into_iter().map(|i| names[i].clone()).collect());
    }
    // Walk deps from a stage left in the cycle until one repeats.
    let left: HashSet<usize> = (0..names.len()).filter(|i| !order.contains(i)).collect();
    let mut path = vec![*left.iter().min().unwrap()];
    loop {
        let cur = *path.last().unwrap();
        let next = stages[cur]
            .deps()
            .iter()
            .filter_map(|d| index.get(d.as_str()).copied())
            .find(|j| left.contains(j))
            .expect("a stage left after Kahn's algorithm has a dep in the cycle");
        if let Some(pos) = path.iter().position(|&x| x == next) {
            let mut cycle: Vec<String> = path[pos..].iter().map(|&i| names[i].clone()).collect();
            cycle.reverse();
            cycle.push(cycle[0].clone());
            return Err(cycle);
        }
        path.push(next);
    }
}

/// The stage and everything that depends on it, directly or not.
pub fn downstream<S: Node>(stages: &Stages<S>, from: &str) -> HashSet<String> {
    let mut out: HashSet<String> = HashSet::from([from.to_string()]);
    let order = topo_order(stages).unwrap_or_default();
    for name in order {
        if stages[&name].deps().iter().any(|d| out.contains(d)) {
            out.insert(name);
        }
    }
    out
}

/// The stage and everything it needs, directly or not.
pub fn upstream<S: Node>(stages: &Stages<S>, of: &str) -> HashSet<String> {
    let mut out = HashSet::new();
    let mut todo = vec![of.to_string()];
    while let Some(s) = todo.pop() {
        if out.insert(s.clone()) {
            todo.extend(stages[&s].deps().iter().cloned());
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    struct Stage(Vec<String>);

    impl Node for Stage {
        fn deps(&self) -> &[String] {
            &self.0
        }
    }

    fn graph(stages: &[(&str, &[&str])]) -> Stages<Stage> {
        stages.iter().map(|(name, deps)| (name.to_string(), Stage(deps.iter().map(|d| d.to_string()).collect()))).collect()
    }

    const DIAMOND: &[(&str, &[&str])] =
        &[("ingest", &[]), ("features", &["ingest"]), ("split_a", &["features"]), ("split_b", &["features"]), ("report", &["split_b", "split_a"])];

    #[test]
    fn order_respects_deps_and_file_order() {
        assert_eq!(topo_order(&graph(DIAMOND)).unwrap(), ["ingest", "features", "split_a", "split_b", "report"]);
    }

    #[test]
    fn a_cycle_is_named_stage_by_stage() {
        let g = graph(&[("ingest", &[]), ("a", &["ingest", "c"]), ("b", &["a"]), ("c", &["b"])]);
        assert_eq!(topo_order(&g).unwrap_err(), ["b", "c", "a", "b"]);
    }

    #[test]
    fn downstream_and_upstream_closures() {
        let g = graph(DIAMOND);
        let d = downstream(&g, "split_a");
        assert!(d.contains("split_a") && d.contains("report") && !d.contains("split_b"));
        let u = upstream(&g, "split_b");
        assert_eq!(u.len(), 3);
        assert!(!u.contains("split_a"));
    }
}
