//! RFC 6962 (RFC 9162 §2.1) Merkle tree hashing: leaf and node hashes, an
//! incremental root over a compact range, inclusion and consistency proofs
//! and their verification.
//!
//! A ledger record's hash `SHA-256(0x00 || line)` is its leaf hash; each run
//! is one tree whose leaves are the run's lines in order.

use sha2::{Digest, Sha256};

/// A SHA-256 digest.
pub type Hash = [u8; 32];

/// `SHA-256(0x00 || data)`: the hash of a leaf (and of a ledger line).
pub fn leaf_hash(data: &[u8]) -> Hash {
    let mut h = Sha256::new();
    h.update([0u8]);
    h.update(data);
    h.finalize().into()
}

/// `SHA-256(0x01 || left || right)`: the hash of an interior node.
pub fn node_hash(left: &Hash, right: &Hash) -> Hash {
    let mut h = Sha256::new();
    h.update([1u8]);
    h.update(left);
    h.update(right);
    h.finalize().into()
}

/// The root of the empty tree, `SHA-256("")`.
pub fn empty_root() -> Hash {
    Sha256::digest([]).into()
}

/// The roots of the perfect subtrees covering leaves `[0, size)`, largest
/// first: enough to extend the tree and to compute its root in
/// O(log size) memory.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct CompactRange {
    size: u64,
    nodes: Vec<Hash>,
}

impl CompactRange {
    /// The empty range.
    pub fn new() -> CompactRange {
        CompactRange::default()
    }

    /// Number of leaves appended.
    pub fn size(&self) -> u64 {
        self.size
    }

    /// Append the leaf with hash `leaf`.
    pub fn push(&mut self, leaf: Hash) {
        let mut h = leaf;
        let mut s = self.size;
        // Merge with every complete subtree of equal height to our left.
        while s & 1 == 1 {
            // `size` has a set bit for each stored node, so pop succeeds.
            let left = self.nodes.pop().unwrap_or_default();
            h = node_hash(&left, &h);
            s >>= 1;
        }
        self.nodes.push(h);
        self.size += 1;
    }

    /// The RFC 6962 root of the leaves appended so far.
    pub fn root(&self) -> Hash {
        let mut it = self.nodes.iter().rev();
        let Some(first) = it.next() else {
            return empty_root();
        };
        let mut r = *first;
        for left in it {
            r = node_hash(left, &r);
        }
        r
    }
}

/// The root of a tree given all its leaf hashes.
pub fn root(leaves: &[Hash]) -> Hash {
    let mut cr = CompactRange::new();
    for l in leaves {
        cr.push(*l);
    }
    cr.root()
}

/// Largest power of two strictly less than `n` (n ≥ 2).
fn split(n: usize) -> usize {
    let mut k = 1;
    while k << 1 < n {
        k <<= 1;
    }
    k
}

/// The RFC 6962 audit path `PATH(index, D[0:size])`, ordered from the leaf
/// up. `leaves` must hold at least `size` leaf hashes.
pub fn inclusion_proof(leaves: &[Hash], index: u64, size: u64) -> Result<Vec<Hash>, String> {
    if size == 0 || index >= size || size as usize > leaves.len() {
        return Err(format!(
            "no inclusion proof for leaf {index} in a tree of size {size}"
        ));
    }
    let mut out = Vec::new();
    path(index as usize, &leaves[..size as usize], &mut out);
    Ok(out)
}

fn path(m: usize, d: &[Hash], out: &mut Vec<Hash>) {
    if d.len() <= 1 {
        return;
    }
    let k = split(d.len());
    if m < k {
        path(m, &d[..k], out);
        out.push(root(&d[k..]));
    } else {
        path(m - k, &d[k..], out);
        out.push(root(&d[..k]));
    }
}

/// Check that `leaf` is at `index` in the tree of `size` leaves with root
/// `root`, given its audit path (RFC 9162 §2.1.3.2).
pub fn verify_inclusion(
    index: u64,
    size: u64,
    leaf: &Hash,
    proof: &[Hash],
    root: &Hash,
) -> Result<(), String> {
    if index >= size {
        return Err(format!("index {index} is not below tree size {size}"));
    }
    let (mut f, mut s) = (index, size - 1);
    let mut r = *leaf;
    for p in proof {
        if s == 0 {
            return Err("the proof has more hashes than the tree has levels".into());
        }
        if f & 1 == 1 || f == s {
            r = node_hash(p, &r);
            if f & 1 == 0 {
                while f & 1 == 0 && f != 0 {
                    f >>= 1;
                    s >>= 1;
                }
            }
        } else {
            r = node_hash(&r, p);
        }
        f >>= 1;
        s >>= 1;
    }
    if s != 0 {
        return Err("the proof has fewer hashes than the tree has levels".into());
    }
    if &r != root {
        return Err("the proof leads to a different root".into());
    }
    Ok(())
}

/// The RFC 6962 §2.1.2 consistency proof `PROOF(m, D[0:n])`: the hashes
/// that show the tree of the first `m` leaves is a prefix of the tree of
/// the first `n`. Empty when `m` is 0 or `m == n`. `leaves` must hold at
/// least `n` leaf hashes.
pub fn consistency_proof(leaves: &[Hash], m: u64, n: u64) -> Result<Vec<Hash>, String> {
    if m > n || n as usize > leaves.len() {
        return Err(format!(
            "no consistency proof from a tree of size {m} to a tree of size {n} ({} leaves known)",
            leaves.len()
        ));
    }
    let mut out = Vec::new();
    if m > 0 {
        subproof(m as usize, &leaves[..n as usize], true, &mut out);
    }
    Ok(out)
}

/// `SUBPROOF(m, D[0:n], b)` of RFC 6962 §2.1.2 (for `0 < m <= n`).
fn subproof(m: usize, d: &[Hash], complete: bool, out: &mut Vec<Hash>) {
    if m == d.len() {
        if !complete {
            out.push(root(d));
        }
        return;
    }
    let k = split(d.len());
    if m <= k {
        subproof(m, &d[..k], complete, out);
        out.push(root(&d[k..]));
    } else {
        subproof(m - k, &d[k..], false, out);
        out.push(root(&d[..k]));
    }
}

/// Check that the tree of size `m` with root `first` is a prefix of the
/// tree of size `n` with root `second`, given the consistency proof
/// between them (RFC 9162 §2.1.4.2).
pub fn verify_consistency(
    m: u64,
    n: u64,
    first: &Hash,
    second: &Hash,
    proof: &[Hash],
) -> Result<(), String> {
    if m > n {
        return Err(format!(
            "the first tree ({m} leaves) is larger than the second ({n} leaves)"
        ));
    }
    if m == 0 {
        if !proof.is_empty() {
            return Err("a proof from the empty tree has no hashes".into());
        }
        if first != &empty_root() {
            return Err("the root of the empty tree is not the empty hash".into());
        }
        return Ok(());
    }
    if m == n {
        if !proof.is_empty() {
            return Err("a proof between trees of the same size has no hashes".into());
        }
        if first != second {
            return Err("the two trees have the same size but different roots".into());
        }
        return Ok(());
    }
    // Here 0 < m < n.
    let mut path = proof;
    let start = if m.is_power_of_two() {
        // The first tree is a complete subtree: its root starts the walk.
        *first
    } else {
        let Some((head, rest)) = proof.split_first() else {
            return Err("the proof is empty".into());
        };
        path = rest;
        *head
    };
    let (mut f, mut s) = (m - 1, n - 1);
    while f & 1 == 1 {
        f >>= 1;
        s >>= 1;
    }
    let (mut fr, mut sr) = (start, start);
    for c in path {
        if s == 0 {
            return Err("the proof has more hashes than the trees have levels".into());
        }
        if f & 1 == 1 || f == s {
            fr = node_hash(c, &fr);
            sr = node_hash(c, &sr);
            while f & 1 == 0 && f != 0 {
                f >>= 1;
                s >>= 1;
            }
        } else {
            sr = node_hash(&sr, c);
        }
        f >>= 1;
        s >>= 1;
    }
    if s != 0 {
        return Err("the proof has fewer hashes than the trees have levels".into());
    }
    if &fr != first {
        return Err(format!(
            "the proof does not lead to the root of the first {m} leaves"
        ));
    }
    if &sr != second {
        return Err(format!(
            "the proof does not lead to the root of the first {n} leaves"
        ));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn hx(s: &str) -> Hash {
        let mut h = [0u8; 32];
        hex::decode_to_slice(s, &mut h).expect("hex");
        h
    }

    /// The leaves of the RFC 6962 test data (certificate-transparency,
    /// transparency-dev/merkle).
    fn ct_leaves() -> Vec<Hash> {
        let data: [&[u8]; 8] = [
            &[],
            &[0x00],
            &[0x10],
            &[0x20, 0x21],
            &[0x30, 0x31],
            &[0x40, 0x41, 0x42, 0x43],
            &[0x50, 0x51, 0x52, 0x53, 0x54, 0x55, 0x56, 0x57],
            &[
                0x60, 0x61, 0x62, 0x63, 0x64, 0x65, 0x66, 0x67, 0x68, 0x69, 0x6a, 0x6b, 0x6c, 0x6d,
                0x6e, 0x6f,
            ],
        ];
        data.iter().map(|d| leaf_hash(d)).collect()
    }

    #[test]
    fn consistency_proofs_match_published_vectors() {
        let leaves = ct_leaves();
        let cases: [(u64, u64, &[&str]); 4] = [
            (1, 1, &[]),
            (
                1,
                8,
                &[
                    "96a296d224f285c67bee93c30f8a309157f0daa35dc5b87e410b78630a09cfc7",
                    "5f083f0a1a33ca076a95279832580db3e0ef4584bdff1f54c8a360f50de3031e",
                    "6b47aaf29ee3c2af9af889bc1fb9254dabd31177f16232dd6aab035ca39bf6e4",
                ],
            ),
            (
                6,
                8,
                &[
                    "0ebc5d3437fbe2db158b9f126a1d118e308181031d0a949f8dededebc558ef6a",
                    "ca854ea128ed050b41b35ffc1b87b8eb2bde461e9e3b5596ece6b9d5975a0ae0",
                    "d37ee418976dd95753c1c73862b9398fa2a2cf9b4ff0fdfe8b30cd95209614b7",
                ],
            ),
            (
                2,
                5,
                &[
                    "5f083f0a1a33ca076a95279832580db3e0ef4584bdff1f54c8a360f50de3031e",
                    "bc1a0643b12e4d2d7c77918f44e0f4f79a838b6cf9ec5b5c283e1f4d88599e6b",
                ],
            ),
        ];
        for (m, n, want) in cases {
            let want: Vec<Hash> = want.iter().map(|h| hx(h)).collect();
            let got = consistency_proof(&leaves, m, n).expect("in range");
            assert_eq!(got, want, "proof from {m} to {n}");
            let (r1, r2) = (root(&leaves[..m as usize]), root(&leaves[..n as usize]));
            verify_consistency(m, n, &r1, &r2, &got).expect("verifies");
        }
        assert_eq!(
            root(&leaves),
            hx("5dc9da79a70659a9ad559cb701ded9a2ab9d823aad2f4960cfe370eff4604328")
        );
    }

    #[test]
    fn consistency_edge_cases() {
        let leaves = ct_leaves();
        let r = |k: usize| root(&leaves[..k]);
        // From the empty tree, every tree is consistent; to itself too.
        assert!(consistency_proof(&leaves, 0, 5).expect("ok").is_empty());
        verify_consistency(0, 5, &empty_root(), &r(5), &[]).expect("empty prefix");
        assert!(verify_consistency(0, 5, &r(1), &r(5), &[]).is_err());
        verify_consistency(4, 4, &r(4), &r(4), &[]).expect("same tree");
        assert!(verify_consistency(4, 4, &r(4), &r(3), &[]).is_err());
        assert!(verify_consistency(4, 4, &r(4), &r(4), &[r(1)]).is_err());
        // m > n, or more leaves than known.
        assert!(consistency_proof(&leaves, 6, 5).is_err());
        assert!(consistency_proof(&leaves, 2, 9).is_err());
        assert!(verify_consistency(6, 5, &r(5), &r(5), &[]).is_err());
        // A proof for other sizes does not verify.
        let p = consistency_proof(&leaves, 3, 7).expect("ok");
        verify_consistency(3, 7, &r(3), &r(7), &p).expect("ok");
        assert!(verify_consistency(3, 8, &r(3), &r(8), &p).is_err());
        assert!(verify_consistency(2, 7, &r(2), &r(7), &p).is_err());
        assert!(verify_consistency(3, 7, &r(3), &r(7), &p[1..]).is_err());
        let mut longer = p.clone();
        longer.push(r(1));
        assert!(verify_consistency(3, 7, &r(3), &r(7), &longer).is_err());
        assert!(verify_consistency(3, 7, &r(3), &r(7), &[]).is_err());
    }

    fn leaves_of(seed: u8, n: usize) -> Vec<Hash> {
        (0..n)
            .map(|i| leaf_hash(&[seed, (i >> 8) as u8, i as u8]))
            .collect()
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(256))]

        /// Any m ≤ n verifies; a wrong first or second root, any altered
        /// hash, or a tree whose first m leaves differ (a cut followed by
        /// other records) fails.
        #[test]
        fn consistency_holds_exactly_for_prefixes(
            n in 1usize..300,
            m_frac in 0.0f64..=1.0,
            flip in any::<prop::sample::Index>(),
            changed in any::<prop::sample::Index>(),
        ) {
            let leaves = leaves_of(1, n);
            let m = ((n as f64) * m_frac) as usize;
            let (r1, r2) = (root(&leaves[..m]), root(&leaves));
            let p = consistency_proof(&leaves, m as u64, n as u64).expect("in range");
            prop_assert!(verify_consistency(m as u64, n as u64, &r1, &r2, &p).is_ok());
            if m == 0 {
                return Ok(());
            }
            // A wrong root on either side.
            let mut bad = r1;
            bad[0] ^= 1;
            prop_assert!(verify_consistency(m as u64, n as u64, &bad, &r2, &p).is_err());
            let mut bad = r2;
            bad[31] ^= 0x80;
            prop_assert!(verify_consistency(m as u64, n as u64, &r1, &bad, &p).is_err());
            // An altered proof hash.
            if !p.is_empty() {
                let mut q = p.clone();
                q[flip.index(p.len())][5] ^= 4;
                prop_assert!(verify_consistency(m as u64, n as u64, &r1, &r2, &q).is_err());
            }
            // The first m leaves signed, then one of them replaced in the
            // bigger tree: no proof from the bigger tree verifies.
            let mut other = leaves.clone();
            other[changed.index(m)] = leaf_hash(b"replaced");
            let q = consistency_proof(&other, m as u64, n as u64).expect("in range");
            prop_assert!(verify_consistency(m as u64, n as u64, &r1, &root(&other), &q).is_err());
        }
    }
}
