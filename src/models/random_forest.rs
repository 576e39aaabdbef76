//! Random Forest regressor: smartcore fits the trees, one sub-forest per slice of the
//! trees with its own seed so every core works; prediction runs on the fitted trees
//! flattened into one node array.
//!
//! The number of sub-forests is a parameter, not the thread count, so the same seed gives
//! the same model whatever `--jobs` is.

use anyhow::{Context, Result, bail};
use serde::{Deserialize, Serialize};
use smartcore::ensemble::random_forest_regressor::{RandomForestRegressor, RandomForestRegressorParameters};
use smartcore::linalg::basic::matrix::DenseMatrix;

/// The old system's parameters by default (scikit-learn's regressor: every feature per split).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct Params {
    pub n_estimators: usize,
    pub max_depth: u16,
    pub min_samples_split: usize,
    pub min_samples_leaf: usize,
    /// Features tried per split; `None` means all of them.
    pub max_features: Option<usize>,
    pub seed: u64,
    /// Sub-forests fitted independently (in parallel), each with a seed derived from `seed`.
    pub sub_forests: usize,
}

impl Default for Params {
    fn default() -> Self {
        Params { n_estimators: 200, max_depth: 15, min_samples_split: 10, min_samples_leaf: 4, max_features: None, seed: 42, sub_forests: 8 }
    }
}

/// A node of the flattened forest. A leaf has `feature == LEAF` and its value in `value`.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct Node {
    pub feature: u32,
    /// Split threshold (`x <= value` goes to `left`), or the leaf's output.
    pub value: f64,
    pub left: u32,
    pub right: u32,
}

pub const LEAF: u32 = u32::MAX;

/// Every tree of the forest in one contiguous array; `roots[t]` is tree t's first node.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Forest {
    pub n_features: usize,
    pub nodes: Vec<Node>,
    pub roots: Vec<u32>,
}

impl Forest {
    /// Mean of the trees' outputs, summed in tree order as smartcore does.
    pub fn predict_row(&self, x: &[f64]) -> f64 {
        // Eight trees walked in lockstep: their node loads are independent, so the CPU overlaps
        // the cache misses instead of waiting for each one (the forest is megabytes). Leaves are
        // summed in tree order, so the result is bit-identical to walking them one by one.
        const LANES: usize = 8;
        let mut sum = 0.0;
        for chunk in self.roots.chunks(LANES) {
            let mut at = [0usize; LANES];
            let mut leaf = [0.0; LANES];
            let mut done = [false; LANES];
            for (k, r) in chunk.iter().enumerate() {
                at[k] = *r as usize;
            }
            let mut left = chunk.len();
            while left > 0 {
                for k in 0..chunk.len() {
                    if done[k] {
                        continue;
                    }
                    let n = &self.nodes[at[k]];
                    if n.feature == LEAF {
                        leaf[k] = n.value;
                        done[k] = true;
                        left -= 1;
                    } else {
                        at[k] = if x[n.feature as usize] <= n.value { n.left } else { n.right } as usize;
                    }
                }
            }
            for v in &leaf[..chunk.len()] {
                sum += v;
            }
        }
        sum / self.roots.len() as f64
    }

    #[inline]
    fn leaf(&self, root: u32, x: &[f64]) -> f64 {
        let mut i = root as usize;
        loop {
            let n = &self.nodes[i];
            if n.feature == LEAF {
                return n.value;
            }
            i = if x[n.feature as usize] <= n.value { n.left } else { n.right } as usize;
        }
    }

    /// Predictions for a row-major matrix: rows split across threads, trees outermost in
    /// each chunk so a tree's nodes stay in cache while every row passes through it.
    pub fn predict_batch(&self, rows: &[f64], threads: usize) -> Vec<f64> {
        let nf = self.n_features;
        let n = rows.len() / nf.max(1);
        let mut out = vec![0.0; n];
        let chunk = n.div_ceil(threads.max(1)).max(1);
        std::thread::scope(|s| {
            for (ci, o) in out.chunks_mut(chunk).enumerate() {
                let rows = &rows[ci * chunk * nf..(ci * chunk + o.len()) * nf];
                s.spawn(move || {
                    for &root in &self.roots {
                        for (r, acc) in o.iter_mut().enumerate() {
                            *acc += self.leaf(root, &rows[r * nf..(r + 1) * nf]);
                        }
                    }
                    let t = self.roots.len() as f64;
                    for acc in o.iter_mut() {
                        *acc /= t;
                    }
                });
            }
        });
        out
    }

    /// Append the trees of a fitted smartcore forest, read through its serde form (smartcore
    /// keeps its nodes private).
    fn append_smartcore(&mut self, fitted: &RandomForestRegressor<f64, f64, DenseMatrix<f64>, Vec<f64>>) -> Result<()> {
        let v = serde_json::to_value(fitted).context("reading the fitted forest")?;
        let trees = v.pointer("/forest_regressor/trees").and_then(|t| t.as_array()).context("unexpected smartcore forest layout (no trees)")?;
        for tree in trees {
            let nodes = tree.get("nodes").and_then(|n| n.as_array()).context("unexpected smartcore tree layout")?;
            let base = self.nodes.len() as u32;
            self.roots.push(base);
            for n in nodes {
                let child = |k: &str| n.get(k).and_then(|c| c.as_u64()).map(|c| base + c as u32);
                let node = match (child("true_child"), child("false_child")) {
                    (Some(l), Some(r)) => Node {
                        feature: n.get("split_feature").and_then(|f| f.as_u64()).context("split feature")? as u32,
                        value: n.get("split_value").and_then(|f| f.as_f64()).context("split value")?,
                        left: l,
                        right: r,
                    },
                    _ => Node { feature: LEAF, value: n.get("output").and_then(|f| f.as_f64()).context("leaf output")?, left: 0, right: 0 },
                };
                self.nodes.push(node);
            }
        }
        Ok(())
    }
}

/// A fitted forest with what it needs to explain itself.
pub struct Fitted {
    pub forest: Forest,
    /// Normalised to sum to 1, in feature order.
    pub importances: Vec<f64>,
    /// The sub-forests as smartcore fitted them, to check the flattened copy against.
    pub smartcore: Vec<RandomForestRegressor<f64, f64, DenseMatrix<f64>, Vec<f64>>>,
}

/// Trees of sub-forest k: an even share, the first ones taking the remainder.
fn share(total: usize, parts: usize, k: usize) -> usize {
    total / parts + usize::from(k < total % parts)
}

/// Seed of sub-forest k, spread so neighbouring run seeds give unrelated streams.
fn sub_seed(seed: u64, k: usize) -> u64 {
    seed.wrapping_mul(0x9E37_79B9_7F4A_7C15).wrapping_add(k as u64 + 1)
}

/// Fit on a row-major matrix `x` (n × n_features) and targets `y`, on `threads` threads.
pub fn fit(x: &[f64], y: &[f64], n_features: usize, params: &Params, threads: usize) -> Result<Fitted> {
    let n = y.len();
    if n == 0 || x.len() != n * n_features {
        bail!("training data is empty or misshapen ({} values for {n} rows × {n_features} features)", x.len());
    }
    let parts = params.sub_forests.clamp(1, params.n_estimators.max(1));
    let matrix = DenseMatrix::new(n, n_features, x.to_vec(), false).map_err(|e| anyhow::anyhow!("{e}"))?;
    let y = y.to_vec();
    let next = std::sync::atomic::AtomicUsize::new(0);
    let mut results: Vec<Option<Result<RandomForestRegressor<f64, f64, DenseMatrix<f64>, Vec<f64>>>>> = (0..parts).map(|_| None).collect();
    let slots = std::sync::Mutex::new(&mut results);
    std::thread::scope(|s| {
        for _ in 0..threads.clamp(1, parts) {
            s.spawn(|| {
                loop {
                    let k = next.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                    if k >= parts {
                        break;
                    }
                    let p = RandomForestRegressorParameters {
                        max_depth: Some(params.max_depth),
                        min_samples_leaf: params.min_samples_leaf,
                        min_samples_split: params.min_samples_split,
                        n_trees: share(params.n_estimators, parts, k),
                        m: Some(params.max_features.unwrap_or(n_features).clamp(1, n_features)),
                        keep_samples: false,
                        seed: sub_seed(params.seed, k),
                    };
                    let r = RandomForestRegressor::fit(&matrix, &y, p).map_err(|e| anyhow::anyhow!("fitting sub-forest {k}: {e}"));
                    slots.lock().unwrap()[k] = Some(r);
                }
            });
        }
    });
    let fitted: Vec<_> = results.into_iter().map(|r| r.expect("every sub-forest ran")).collect::<Result<_>>()?;
    let mut forest = Forest { n_features, nodes: Vec::new(), roots: Vec::new() };
    let mut importances = vec![0.0; n_features];
    for (k, f) in fitted.iter().enumerate() {
        forest.append_smartcore(f)?;
        let imp = f.compute_feature_importances().map_err(|e| anyhow::anyhow!("{e}"))?;
        let w = share(params.n_estimators, parts, k) as f64;
        for (a, b) in importances.iter_mut().zip(imp) {
            *a += w * b;
        }
    }
    let total: f64 = importances.iter().sum();
    if total > 0.0 {
        importances.iter_mut().for_each(|v| *v /= total);
    }
    Ok(Fitted { forest, importances, smartcore: fitted })
}

#[cfg(test)]
mod tests {
    use super::*;
    use smartcore::linalg::basic::arrays::Array;

    fn data(n: usize) -> (Vec<f64>, Vec<f64>) {
        let mut rng = crate::rng::Rng::new(3, 0);
        let mut x = Vec::new();
        let mut y = Vec::new();
        for _ in 0..n {
            let a = rng.uniform() * 10.0;
            let b = rng.uniform() * 10.0;
            let c = rng.uniform();
            x.extend([a, b, c]);
            y.push(if a > 5.0 { 3.0 } else { 1.0 } + b * 0.2);
        }
        (x, y)
    }

    fn small() -> Params {
        Params { n_estimators: 12, max_depth: 6, min_samples_split: 4, min_samples_leaf: 2, sub_forests: 3, ..Params::default() }
    }

    #[test]
    fn flattened_predictions_equal_smartcore() {
        let (x, y) = data(400);
        let f = fit(&x, &y, 3, &small(), 2).unwrap();
        assert_eq!(f.forest.roots.len(), 12);
        // Each sub-forest's own prediction, bit for bit, from the flattened nodes of its trees.
        let m = DenseMatrix::new(400, 3, x.clone(), false).unwrap();
        let mut start = 0;
        for sc in &f.smartcore {
            let theirs = sc.predict(&m).unwrap();
            let trees = 4;
            let sub = Forest { n_features: 3, nodes: f.forest.nodes.clone(), roots: f.forest.roots[start..start + trees].to_vec() };
            for r in 0..400 {
                assert_eq!(sub.predict_row(&x[r * 3..r * 3 + 3]), *theirs.get(r));
            }
            start += trees;
        }
        let batch = f.forest.predict_batch(&x, 3);
        for r in 0..400 {
            assert_eq!(batch[r], f.forest.predict_row(&x[r * 3..r * 3 + 3]));
        }
    }

    #[test]
    fn same_seed_same_model_whatever_the_threads() {
        let (x, y) = data(300);
        let a = fit(&x, &y, 3, &small(), 1).unwrap();
        let b = fit(&x, &y, 3, &small(), 3).unwrap();
        assert_eq!(a.forest, b.forest);
        let c = fit(&x, &y, 3, &Params { seed: 7, ..small() }, 2).unwrap();
        assert_ne!(a.forest, c.forest);
        assert!((a.importances.iter().sum::<f64>() - 1.0).abs() < 1e-9);
        assert!(a.importances[0] > a.importances[2], "the informative feature matters more: {:?}", a.importances);
    }
}
