//! `forest.bin`: a Random Forest's node array as postcard (a documented, stable serde format),
//! behind an 8-byte magic naming the layout.
//!
//! A forest file is data from disk or a shared store, so nothing in it is trusted: after
//! decoding, every root and child must point inside the array and *forward* (a tree's children
//! come after their parent, as smartcore builds them), so prediction can neither index out of
//! bounds nor walk in a circle. Files written before postcard (`RFOREST1`, fixed-width
//! little-endian arrays) are still read, so a registry's older versions keep serving.

use anyhow::{Context, Result, bail};

use super::random_forest::{Forest, LEAF, Node};

const MAGIC: &[u8; 8] = b"RFOREST2";
const MAGIC_V1: &[u8; 8] = b"RFOREST1";

pub fn to_bytes(f: &Forest) -> Result<Vec<u8>> {
    let mut b = MAGIC.to_vec();
    postcard::to_io(f, &mut b).context("encoding the forest")?;
    Ok(b)
}

pub fn from_bytes(b: &[u8]) -> Result<Forest> {
    let Some((magic, body)) = b.split_first_chunk::<8>() else { bail!("forest file is truncated") };
    let forest = match magic {
        m if m == MAGIC => postcard::from_bytes(body).map_err(|e| match e {
            postcard::Error::DeserializeUnexpectedEnd => anyhow::anyhow!("forest file is truncated"),
            e => anyhow::anyhow!("forest file is corrupt ({e})"),
        })?,
        m if m == MAGIC_V1 => from_v1(body)?,
        _ => bail!("not a forest file (bad magic)"),
    };
    check(&forest)?;
    Ok(forest)
}

/// Every index in range and every edge pointing forward; at least one tree.
fn check(f: &Forest) -> Result<()> {
    let n = f.nodes.len();
    if f.roots.is_empty() {
        bail!("forest file is corrupt (no trees)");
    }
    if f.roots.iter().any(|&r| r as usize >= n) {
        bail!("forest file is corrupt (a tree starts outside the forest)");
    }
    for (i, node) in f.nodes.iter().enumerate() {
        if node.feature == LEAF {
            continue;
        }
        let forward = |c: u32| (c as usize) > i && (c as usize) < n;
        if node.feature as usize >= f.n_features || !forward(node.left) || !forward(node.right) {
            bail!("forest file is corrupt (node {i} points outside the forest)");
        }
    }
    Ok(())
}

/// The first layout: three u64 counts, the roots, then 20-byte nodes, all little-endian.
fn from_v1(b: &[u8]) -> Result<Forest> {
    let mut rest = b;
    let mut take = |n: usize| -> Result<&[u8]> {
        if rest.len() < n {
            bail!("forest file is truncated");
        }
        let (head, tail) = rest.split_at(n);
        rest = tail;
        Ok(head)
    };
    let mut counts = [0usize; 3];
    for c in &mut counts {
        *c = usize::try_from(u64::from_le_bytes(take(8)?.try_into()?)).context("forest file is corrupt")?;
    }
    let [n_features, n_roots, n_nodes] = counts;
    let (mut roots, mut nodes) = (Vec::new(), Vec::new());
    for _ in 0..n_roots {
        roots.push(u32::from_le_bytes(take(4)?.try_into()?));
    }
    for _ in 0..n_nodes {
        let node = take(20)?;
        let word = |at: usize| u32::from_le_bytes(node[at..at + 4].try_into().expect("4 bytes"));
        nodes.push(Node { feature: word(0), value: f64::from_le_bytes(node[4..12].try_into()?), left: word(12), right: word(16) });
    }
    Ok(Forest { n_features, nodes, roots })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn forest() -> Forest {
        let split = |feature, value, left, right| Node { feature, value, left, right };
        let leaf = |value| Node { feature: LEAF, value, left: 0, right: 0 };
        // Two trees: a stump on feature 1, then a single leaf.
        Forest { n_features: 2, nodes: vec![split(1, 0.5, 1, 2), leaf(3.0), leaf(5.0), leaf(4.0)], roots: vec![0, 3] }
    }

    fn v1_bytes(f: &Forest) -> Vec<u8> {
        let mut b = MAGIC_V1.to_vec();
        for v in [f.n_features as u64, f.roots.len() as u64, f.nodes.len() as u64] {
            b.extend_from_slice(&v.to_le_bytes());
        }
        for r in &f.roots {
            b.extend_from_slice(&r.to_le_bytes());
        }
        for n in &f.nodes {
            for part in [&n.feature.to_le_bytes()[..], &n.value.to_le_bytes(), &n.left.to_le_bytes(), &n.right.to_le_bytes()] {
                b.extend_from_slice(part);
            }
        }
        b
    }

    #[test]
    fn round_trips_and_reads_the_first_layout() {
        let f = forest();
        assert_eq!(from_bytes(&to_bytes(&f).unwrap()).unwrap(), f);
        assert_eq!(from_bytes(&v1_bytes(&f)).unwrap(), f);
        assert_eq!(f.predict_row(&[0.0, 0.9]), 4.5);
    }

    #[test]
    fn damaged_files_are_refused_with_a_reason() {
        let f = forest();
        let good = to_bytes(&f).unwrap();
        let err = |b: &[u8]| from_bytes(b).unwrap_err().to_string();
        assert_eq!(err(&good[..good.len() - 3]), "forest file is truncated");
        assert_eq!(err(&good[..5]), "forest file is truncated");
        assert_eq!(err(b"PK\x03\x04 not a forest"), "not a forest file (bad magic)");
        let v1 = v1_bytes(&f);
        assert_eq!(err(&v1[..v1.len() - 1]), "forest file is truncated");

        let mut cyclic = f.clone();
        cyclic.nodes[0].right = 0;
        assert_eq!(err(&to_bytes(&cyclic).unwrap()), "forest file is corrupt (node 0 points outside the forest)");
        let mut outside = f.clone();
        outside.nodes[0].left = 9;
        assert!(err(&v1_bytes(&outside)).contains("node 0 points outside"));
        let mut feature = f.clone();
        feature.nodes[0].feature = 2;
        assert!(err(&to_bytes(&feature).unwrap()).contains("node 0"));
        let mut root = f.clone();
        root.roots[1] = 4;
        assert_eq!(err(&to_bytes(&root).unwrap()), "forest file is corrupt (a tree starts outside the forest)");
        let empty = Forest { n_features: 2, nodes: vec![], roots: vec![] };
        assert_eq!(err(&to_bytes(&empty).unwrap()), "forest file is corrupt (no trees)");
        // A count far beyond the file's size fails on the missing bytes, not on an allocation.
        let mut huge = MAGIC_V1.to_vec();
        huge.extend_from_slice(&[2, 0, 0, 0, 0, 0, 0, 0, 1, 0, 0, 0, 0, 0, 0, 0, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0x0f]);
        huge.extend_from_slice(&[0; 4]);
        assert_eq!(err(&huge), "forest file is truncated");
        let mut huge = MAGIC.to_vec();
        huge.extend_from_slice(&[2, 0xff, 0xff, 0xff, 0xff, 0x0f]);
        assert_eq!(err(&huge), "forest file is truncated");
    }
}
