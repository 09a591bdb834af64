//! RFC 6962 (RFC 9162 §2.1) Merkle tree hashing: leaf and node hashes, an
//! incremental root over a compact range, inclusion proofs and their
//! verification.
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
