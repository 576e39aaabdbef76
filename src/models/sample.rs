//! Training on more rows than fit or pay: a seeded sample, stratified by service, so every
//! service keeps its share of the training rows and the same seed picks the same rows.

use std::collections::BTreeMap;

/// A sample of at most `max` items, `services[i]` being item i's service: positions into
/// `services`, ascending. Each service keeps its share (largest remainders round the quotas to
/// exactly `max`); within a service the rows come from a seeded shuffle. Everything when there
/// are no more than `max`.
pub fn stratified(services: &[&str], max: usize, seed: u64) -> Vec<usize> {
    let n = services.len();
    if n <= max {
        return (0..n).collect();
    }
    let mut groups: BTreeMap<&str, Vec<usize>> = BTreeMap::new();
    for (i, s) in services.iter().enumerate() {
        groups.entry(s).or_default().push(i);
    }
    // Hamilton apportionment: floor of each share, then one more to the largest remainders.
    let share = |len: usize| len as f64 * max as f64 / n as f64;
    let mut quotas: Vec<usize> = groups.values().map(|g| share(g.len()).floor() as usize).collect();
    let mut by_remainder: Vec<usize> = (0..groups.len()).collect();
    let remainders: Vec<f64> = groups.values().map(|g| share(g.len()).fract()).collect();
    by_remainder.sort_by(|&a, &b| remainders[b].total_cmp(&remainders[a]).then(a.cmp(&b)));
    for &g in by_remainder.iter().take(max - quotas.iter().sum::<usize>()) {
        quotas[g] += 1;
    }
    let mut rng = crate::rng::Rng::new(seed, 5);
    let mut picked = Vec::with_capacity(max);
    for (group, quota) in groups.into_values().zip(quotas) {
        let mut group = group;
        rng.shuffle(&mut group);
        picked.extend_from_slice(&group[..quota]);
    }
    picked.sort_unstable();
    picked
}

/// What a trainer says about its sample: `"trained on a sample of 2,000 of 9,000 training rows
/// (max_train_rows)"`, or nothing when it used them all.
pub fn note(used: usize, available: usize, what: &str) -> Option<String> {
    (used < available).then(|| format!("trained on a sample of {used} of {available} training {what} (max_train_rows)"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_service_keeps_its_share_and_the_seed_decides_which_rows() {
        // 600 rows of a, 300 of b, 100 of c, interleaved.
        let services: Vec<&str> = (0..1000)
            .map(|i| {
                if i % 10 < 6 {
                    "a"
                } else if i % 10 < 9 {
                    "b"
                } else {
                    "c"
                }
            })
            .collect();
        let s = stratified(&services, 100, 42);
        assert_eq!(s.len(), 100);
        let count = |name: &str| s.iter().filter(|&&i| services[i] == name).count();
        assert_eq!((count("a"), count("b"), count("c")), (60, 30, 10));
        assert!(s.windows(2).all(|w| w[0] < w[1]), "ascending, no repeats");
        assert_eq!(stratified(&services, 100, 42), s, "same seed, same rows");
        assert_ne!(stratified(&services, 100, 43), s);
        // Quotas that do not divide evenly still add up to the maximum.
        assert_eq!(stratified(&services, 7, 1).len(), 7);
        assert_eq!(stratified(&services, 5000, 1), (0..1000).collect::<Vec<_>>(), "fewer rows than the cap: all of them");
    }

    #[test]
    fn the_note_speaks_only_when_sampled() {
        assert_eq!(note(10, 10, "rows"), None);
        assert_eq!(note(10, 40, "windows").unwrap(), "trained on a sample of 10 of 40 training windows (max_train_rows)");
    }
}
