//! RFC 6962 / RFC 9162 Merkle tree hashing, the compact frontier kept at the
//! chain head, and inclusion and consistency proofs.
//!
//! Proof *generation* here is pure: it returns the leaf ranges whose subtree
//! hashes make up a proof; the storage layer resolves each range to a hash
//! (from stored nodes and leaf hashes). Proof *verification* follows the
//! algorithms of RFC 9162 §2.1.3.2 and §2.1.4.2 literally.

use std::ops::Range;

use sha2::{Digest, Sha256};

use super::types::Hash;

/// Root of the empty tree: SHA-256 of the empty string.
pub const EMPTY_ROOT: Hash = [
    0xe3, 0xb0, 0xc4, 0x42, 0x98, 0xfc, 0x1c, 0x14, 0x9a, 0xfb, 0xf4, 0xc8, 0x99, 0x6f, 0xb9, 0x24, 0x27, 0xae, 0x41,
    0xe4, 0x64, 0x9b, 0x93, 0x4c, 0xa4, 0x95, 0x99, 0x1b, 0x78, 0x52, 0xb8, 0x55,
];

/// Height of the subtrees whose hashes are stored (`merkle_nodes`): every
/// complete subtree of at least 2^8 = 256 leaves. Smaller ones are recomputed
/// from leaf hashes, which costs at most 255 hashes per proof step.
pub const STORED_MIN_LEVEL: u32 = 8;

/// `SHA-256(0x00 || data)`.
pub fn hash_leaf(data: &[u8]) -> Hash {
    let mut h = Sha256::new();
    h.update([0x00]);
    h.update(data);
    h.finalize().into()
}

/// `SHA-256(0x01 || left || right)`.
pub fn hash_children(left: &Hash, right: &Hash) -> Hash {
    let mut h = Sha256::new();
    h.update([0x01]);
    h.update(left);
    h.update(right);
    h.finalize().into()
}

/// The complete subtrees on the right edge of a tree: one per set bit of its
/// size, largest first. Enough to append leaves and to compute the root.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Frontier {
    size: u64,
    // INVARIANT: hashes.len() == size.count_ones(); hashes[i] is the subtree
    // for the i-th set bit of `size`, from the most significant.
    hashes: Vec<Hash>,
}

/// Why a stored frontier could not be decoded.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
#[error("stored Merkle frontier does not match tree size {size} ({len} bytes)")]
pub struct FrontierDecodeError {
    size: u64,
    len: usize,
}

impl Frontier {
    /// The empty tree.
    pub fn new() -> Self {
        Self::default()
    }

    /// Number of leaves.
    pub fn size(&self) -> u64 {
        self.size
    }

    /// Appends a leaf. `on_node(level, index, hash)` is called for every
    /// complete subtree of level >= 1 that this leaf completes.
    pub fn push(&mut self, leaf: Hash, mut on_node: impl FnMut(u32, u64, &Hash)) {
        let index = self.size;
        let mut h = leaf;
        let mut level = 0u32;
        while (index >> level) & 1 == 1 {
            // INVARIANT: bit `level` of `size` is set, so a subtree of that level is on the edge.
            let Some(left) = self.hashes.pop() else { break };
            h = hash_children(&left, &h);
            level += 1;
            on_node(level, index >> level, &h);
        }
        self.hashes.push(h);
        self.size += 1;
    }

    /// The tree's root hash.
    pub fn root(&self) -> Hash {
        fold_right(&self.hashes)
    }

    /// Stored form: the concatenated subtree hashes.
    pub fn encode(&self) -> Vec<u8> {
        self.hashes.concat()
    }

    /// Rebuilds a frontier from its stored form and its size.
    pub fn decode(size: u64, bytes: &[u8]) -> Result<Self, FrontierDecodeError> {
        let want = size.count_ones() as usize * 32;
        if bytes.len() != want {
            return Err(FrontierDecodeError { size, len: bytes.len() });
        }
        let hashes = bytes
            .chunks_exact(32)
            .map(|c| {
                let mut h = [0u8; 32];
                h.copy_from_slice(c);
                h
            })
            .collect();
        Ok(Frontier { size, hashes })
    }

    /// Builds the frontier of a tree of `size` leaves from its perfect
    /// subtree hashes, given largest first (as `perfect_subtrees(0..size)`).
    pub fn from_subtrees(size: u64, hashes: Vec<Hash>) -> Result<Self, FrontierDecodeError> {
        if hashes.len() != size.count_ones() as usize {
            return Err(FrontierDecodeError { size, len: hashes.len() * 32 });
        }
        Ok(Frontier { size, hashes })
    }
}

/// Hash of a list of perfect subtrees (largest first) as RFC 6962 combines
/// them: from the right, `H(a, H(b, H(c, d)))`.
pub fn fold_right(hashes: &[Hash]) -> Hash {
    let Some((last, rest)) = hashes.split_last() else {
        return EMPTY_ROOT;
    };
    rest.iter().rev().fold(*last, |acc, h| hash_children(h, &acc))
}

/// A complete, aligned subtree: leaves `index << level .. (index + 1) << level`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Subtree {
    /// Height (0 = a single leaf).
    pub level: u32,
    /// Position among the subtrees of that height.
    pub index: u64,
}

impl Subtree {
    /// The leaves it covers.
    pub fn leaves(&self) -> Range<u64> {
        (self.index << self.level)..((self.index + 1) << self.level)
    }
}

/// Splits a proof range (as produced below) into its maximal aligned perfect
/// subtrees, largest first. `fold_right` of their hashes is the range's hash.
pub fn perfect_subtrees(range: Range<u64>) -> Vec<Subtree> {
    let mut out = Vec::new();
    let mut start = range.start;
    while start < range.end {
        let remaining = range.end - start;
        // Largest power of two that fits and keeps `start` aligned.
        let mut level = 63 - remaining.leading_zeros();
        if start != 0 {
            level = level.min(start.trailing_zeros());
        }
        out.push(Subtree { level, index: start >> level });
        start += 1u64 << level;
    }
    out
}

fn largest_pow2_below(n: u64) -> u64 {
    // INVARIANT: n >= 2.
    1u64 << (63 - (n - 1).leading_zeros())
}

/// Leaf ranges whose hashes form the inclusion proof of leaf `index` in a tree
/// of `size` leaves, in proof order (RFC 9162 §2.1.3.1, bottom-up).
pub fn inclusion_ranges(index: u64, size: u64) -> Vec<Range<u64>> {
    fn path(m: u64, lo: u64, hi: u64, out: &mut Vec<Range<u64>>) {
        let n = hi - lo;
        if n <= 1 {
            return;
        }
        let k = largest_pow2_below(n);
        if m - lo < k {
            path(m, lo, lo + k, out);
            out.push(lo + k..hi);
        } else {
            path(m, lo + k, hi, out);
            out.push(lo..lo + k);
        }
    }
    let mut out = Vec::new();
    if index < size {
        path(index, 0, size, &mut out);
    }
    out
}

/// Leaf ranges whose hashes form the consistency proof from a tree of `old`
/// leaves to one of `new` leaves (RFC 9162 §2.1.4.1).
pub fn consistency_ranges(old: u64, new: u64) -> Vec<Range<u64>> {
    fn subproof(m: u64, lo: u64, hi: u64, complete: bool, out: &mut Vec<Range<u64>>) {
        let n = hi - lo;
        if m == n {
            if !complete {
                out.push(lo..hi);
            }
            return;
        }
        let k = largest_pow2_below(n);
        if m <= k {
            subproof(m, lo, lo + k, complete, out);
            out.push(lo + k..hi);
        } else {
            subproof(m - k, lo + k, hi, false, out);
            out.push(lo..lo + k);
        }
    }
    let mut out = Vec::new();
    if 0 < old && old < new {
        subproof(old, 0, new, true, &mut out);
    }
    out
}

/// Why a proof did not verify.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum ProofError {
    /// Index or sizes out of range.
    #[error("index or tree size out of range")]
    OutOfRange,
    /// The proof has the wrong number of hashes.
    #[error("proof has the wrong length")]
    WrongLength,
    /// The recomputed root differs from the expected one.
    #[error("recomputed root does not match")]
    RootMismatch,
}

/// Verifies an inclusion proof (RFC 9162 §2.1.3.2).
pub fn verify_inclusion(index: u64, size: u64, leaf: &Hash, proof: &[Hash], root: &Hash) -> Result<(), ProofError> {
    if index >= size {
        return Err(ProofError::OutOfRange);
    }
    let (mut fnode, mut snode) = (index, size - 1);
    let mut r = *leaf;
    for p in proof {
        if snode == 0 {
            return Err(ProofError::WrongLength);
        }
        if fnode & 1 == 1 || fnode == snode {
            r = hash_children(p, &r);
            if fnode & 1 == 0 {
                while fnode & 1 == 0 && fnode != 0 {
                    fnode >>= 1;
                    snode >>= 1;
                }
            }
        } else {
            r = hash_children(&r, p);
        }
        fnode >>= 1;
        snode >>= 1;
    }
    if snode != 0 {
        return Err(ProofError::WrongLength);
    }
    if &r != root {
        return Err(ProofError::RootMismatch);
    }
    Ok(())
}

/// Verifies a consistency proof between two tree heads (RFC 9162 §2.1.4.2).
pub fn verify_consistency(
    old: u64,
    new: u64,
    old_root: &Hash,
    new_root: &Hash,
    proof: &[Hash],
) -> Result<(), ProofError> {
    if old > new {
        return Err(ProofError::OutOfRange);
    }
    if old == new {
        return if proof.is_empty() && old_root == new_root {
            Ok(())
        } else if !proof.is_empty() {
            Err(ProofError::WrongLength)
        } else {
            Err(ProofError::RootMismatch)
        };
    }
    if old == 0 {
        // Every tree extends the empty tree; the proof must be empty.
        return if proof.is_empty() { Ok(()) } else { Err(ProofError::WrongLength) };
    }
    if proof.is_empty() {
        return Err(ProofError::WrongLength);
    }
    let mut path: Vec<Hash> = Vec::with_capacity(proof.len() + 1);
    if old.is_power_of_two() {
        path.push(*old_root);
    }
    path.extend_from_slice(proof);
    let (mut fnode, mut snode) = (old - 1, new - 1);
    while fnode & 1 == 1 {
        fnode >>= 1;
        snode >>= 1;
    }
    let mut fr = path[0];
    let mut sr = path[0];
    for c in &path[1..] {
        if snode == 0 {
            return Err(ProofError::WrongLength);
        }
        if fnode & 1 == 1 || fnode == snode {
            fr = hash_children(c, &fr);
            sr = hash_children(c, &sr);
            if fnode & 1 == 0 {
                while fnode & 1 == 0 && fnode != 0 {
                    fnode >>= 1;
                    snode >>= 1;
                }
            }
        } else {
            sr = hash_children(&sr, c);
        }
        fnode >>= 1;
        snode >>= 1;
    }
    if snode != 0 {
        return Err(ProofError::WrongLength);
    }
    if &fr != old_root || &sr != new_root {
        return Err(ProofError::RootMismatch);
    }
    Ok(())
}

/// Hash of the leaves `range` of an in-memory list of leaf hashes, the way
/// RFC 6962 defines it (MTH). Used by tests and by small proofs.
pub fn range_hash(leaves: &[Hash], range: Range<u64>) -> Hash {
    let subtrees = perfect_subtrees(range);
    let hashes: Vec<Hash> = subtrees
        .iter()
        .map(|s| {
            let r = s.leaves();
            subtree_hash(&leaves[r.start as usize..r.end as usize])
        })
        .collect();
    fold_right(&hashes)
}

/// Hash of a perfect subtree given all its leaf hashes (len a power of two).
pub fn subtree_hash(leaves: &[Hash]) -> Hash {
    let mut level: Vec<Hash> = leaves.to_vec();
    while level.len() > 1 {
        level = level.chunks(2).map(|p| if p.len() == 2 { hash_children(&p[0], &p[1]) } else { p[0] }).collect();
    }
    level.first().copied().unwrap_or(EMPTY_ROOT)
}
