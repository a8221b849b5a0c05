//! Inclusion and consistency proofs (RFC 9162 §2.1.3 and §2.1.4).
//!
//! Generation follows the RFC's recursive definitions (PATH and SUBPROOF).
//! Verification uses the decomposition of transparency-dev/merkle: a proof is
//! an "inner" part (siblings below the point where the path meets the right
//! border of the tree) and a "border" part; its exact expected length is
//! computed first, so a proof with a component too many or too few is refused
//! before any hashing.

use crate::hash::{Hash, empty_root, node_hash};

/// Why a proof could not be made or does not hold.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ProofError {
    #[error("index {index} is outside a tree of size {size}")]
    IndexOutOfRange { index: u64, size: u64 },
    #[error("the tree has {stored} entries; size {requested} does not exist yet")]
    TreeTooSmall { requested: u64, stored: u64 },
    #[error("size1 {size1} is larger than size2 {size2}")]
    SizeOrder { size1: u64, size2: u64 },
    #[error("the proof has {got} hashes; it must have {expected}")]
    WrongLength { expected: usize, got: usize },
    #[error("the computed root does not match the expected root")]
    RootMismatch,
    #[error("a consistency proof from the empty tree proves nothing")]
    EmptyOldTree,
    #[error("reading the tree: {0}")]
    Source(String),
}

/// Where proofs get the hashes of ranges of leaves.
pub trait SubtreeSource {
    /// How many leaves are stored.
    fn size(&self) -> u64;
    /// The Merkle tree hash of leaves `begin..end` (`begin < end <= size`).
    fn subtree(&self, begin: u64, end: u64) -> Result<Hash, ProofError>;
}

/// Leaf hashes held in memory; subtree hashes are computed on demand. For
/// tests and small trees.
#[derive(Debug, Clone, Default)]
pub struct MemoryTree {
    leaves: Vec<Hash>,
}

impl MemoryTree {
    pub fn from_leaves(leaves: Vec<Hash>) -> Self {
        MemoryTree { leaves }
    }

    pub fn push(&mut self, leaf: Hash) {
        self.leaves.push(leaf);
    }

    /// The root of the first `size` leaves.
    pub fn root(&self, size: u64) -> Result<Hash, ProofError> {
        if size == 0 {
            return Ok(empty_root());
        }
        self.subtree(0, size)
    }
}

impl SubtreeSource for MemoryTree {
    fn size(&self) -> u64 {
        self.leaves.len() as u64
    }

    fn subtree(&self, begin: u64, end: u64) -> Result<Hash, ProofError> {
        if begin >= end || end > self.size() {
            return Err(ProofError::Source(format!("no subtree {begin}..{end}")));
        }
        if end - begin == 1 {
            return Ok(self.leaves[begin as usize]);
        }
        let k = split_point(end - begin);
        Ok(node_hash(
            &self.subtree(begin, begin + k)?,
            &self.subtree(begin + k, end)?,
        ))
    }
}

/// The largest power of two smaller than `n` (for `n >= 2`): where RFC 9162
/// splits a tree of `n` leaves.
pub(crate) fn split_point(n: u64) -> u64 {
    debug_assert!(n >= 2);
    1 << (63 - (n - 1).leading_zeros())
}

/// The inclusion proof of leaf `index` in the tree of the first `size` leaves.
pub fn inclusion_proof(
    source: &impl SubtreeSource,
    index: u64,
    size: u64,
) -> Result<Vec<Hash>, ProofError> {
    if size > source.size() {
        return Err(ProofError::TreeTooSmall {
            requested: size,
            stored: source.size(),
        });
    }
    if index >= size {
        return Err(ProofError::IndexOutOfRange { index, size });
    }
    let mut proof = Vec::new();
    path(source, index, 0, size, &mut proof)?;
    Ok(proof)
}

/// RFC 9162 PATH(m, D[begin:end]), appending to `out`.
fn path(
    source: &impl SubtreeSource,
    m: u64,
    begin: u64,
    end: u64,
    out: &mut Vec<Hash>,
) -> Result<(), ProofError> {
    let n = end - begin;
    if n == 1 {
        return Ok(());
    }
    let k = split_point(n);
    if m < k {
        path(source, m, begin, begin + k, out)?;
        out.push(source.subtree(begin + k, end)?);
    } else {
        path(source, m - k, begin + k, end, out)?;
        out.push(source.subtree(begin, begin + k)?);
    }
    Ok(())
}

/// The proof that the tree of `size1` leaves is a prefix of the tree of
/// `size2` leaves. Empty when the sizes are equal; an error from the empty
/// tree, which proves nothing (the transparency-dev vectors refuse it too).
pub fn consistency_proof(
    source: &impl SubtreeSource,
    size1: u64,
    size2: u64,
) -> Result<Vec<Hash>, ProofError> {
    if size1 > size2 {
        return Err(ProofError::SizeOrder { size1, size2 });
    }
    if size2 > source.size() {
        return Err(ProofError::TreeTooSmall {
            requested: size2,
            stored: source.size(),
        });
    }
    if size1 == 0 {
        return Err(ProofError::EmptyOldTree);
    }
    let mut proof = Vec::new();
    if size1 < size2 {
        subproof(source, size1, 0, size2, true, &mut proof)?;
    }
    Ok(proof)
}

/// RFC 9162 SUBPROOF(m, D[begin:end], b), appending to `out`.
fn subproof(
    source: &impl SubtreeSource,
    m: u64,
    begin: u64,
    end: u64,
    whole: bool,
    out: &mut Vec<Hash>,
) -> Result<(), ProofError> {
    let n = end - begin;
    if m == n {
        if !whole {
            out.push(source.subtree(begin, end)?);
        }
        return Ok(());
    }
    let k = split_point(n);
    if m <= k {
        subproof(source, m, begin, begin + k, whole, out)?;
        out.push(source.subtree(begin + k, end)?);
    } else {
        subproof(source, m - k, begin + k, end, false, out)?;
        out.push(source.subtree(begin, begin + k)?);
    }
    Ok(())
}

/// Checks that `leaf` is at `index` in the tree of `size` leaves with `root`.
pub fn verify_inclusion(
    index: u64,
    size: u64,
    leaf: &Hash,
    proof: &[Hash],
    root: &Hash,
) -> Result<(), ProofError> {
    if index >= size {
        return Err(ProofError::IndexOutOfRange { index, size });
    }
    let (inner, border) = decompose(index, size);
    check_length(proof, inner + border)?;
    let computed = chain_border_right(chain_inner(*leaf, &proof[..inner], index), &proof[inner..]);
    matches(&computed, root)
}

/// Checks that the tree of `size1` leaves with `root1` is a prefix of the tree
/// of `size2` leaves with `root2`.
pub fn verify_consistency(
    size1: u64,
    size2: u64,
    proof: &[Hash],
    root1: &Hash,
    root2: &Hash,
) -> Result<(), ProofError> {
    if size2 < size1 {
        return Err(ProofError::SizeOrder { size1, size2 });
    }
    if size1 == 0 {
        // Every tree extends the empty tree: such a "proof" proves nothing,
        // and accepting it would let a client skip the check it asked for.
        return Err(ProofError::EmptyOldTree);
    }
    if size1 == size2 {
        check_length(proof, 0)?;
        return matches(root1, root2);
    }
    if proof.is_empty() {
        return Err(ProofError::WrongLength {
            expected: 1,
            got: 0,
        });
    }
    let (inner, border) = decompose(size1 - 1, size2);
    let shift = size1.trailing_zeros() as usize;
    let inner = inner - shift; // shift < inner because size1 < size2.
    // The proof starts with the hash of the subtree of 2^shift leaves ending at
    // size1, unless that subtree is the whole old tree, whose root is known.
    let (seed, rest) = if size1 == 1 << shift {
        (*root1, proof)
    } else {
        (proof[0], &proof[1..])
    };
    check_length(rest, inner + border).map_err(|_| ProofError::WrongLength {
        expected: inner + border + usize::from(size1 != 1 << shift),
        got: proof.len(),
    })?;
    let mask = (size1 - 1) >> shift;
    let old = chain_border_right(
        chain_inner_right(seed, &rest[..inner], mask),
        &rest[inner..],
    );
    matches(&old, root1)?;
    let new = chain_border_right(chain_inner(seed, &rest[..inner], mask), &rest[inner..]);
    matches(&new, root2)
}

/// [`verify_inclusion`] on bytes as they arrive (decoded from base64): any
/// part that is not a 32-byte hash fails the proof.
pub fn verify_inclusion_bytes(
    index: u64,
    size: u64,
    leaf: &[u8],
    proof: &[Vec<u8>],
    root: &[u8],
) -> Result<(), ProofError> {
    let leaf = Hash::from_slice(leaf).map_err(|_| ProofError::RootMismatch)?;
    let root = Hash::from_slice(root).map_err(|_| ProofError::RootMismatch)?;
    verify_inclusion(index, size, &leaf, &as_hashes(proof)?, &root)
}

/// [`verify_consistency`] on bytes as they arrive. When the sizes are equal
/// the claim is only that the roots are the same bytes.
pub fn verify_consistency_bytes(
    size1: u64,
    size2: u64,
    proof: &[Vec<u8>],
    root1: &[u8],
    root2: &[u8],
) -> Result<(), ProofError> {
    if size1 == 0 {
        return Err(ProofError::EmptyOldTree);
    }
    if size1 == size2 {
        check_length(proof, 0)?;
        return if root1 == root2 {
            Ok(())
        } else {
            Err(ProofError::RootMismatch)
        };
    }
    let root1 = Hash::from_slice(root1).map_err(|_| ProofError::RootMismatch)?;
    let root2 = Hash::from_slice(root2).map_err(|_| ProofError::RootMismatch)?;
    verify_consistency(size1, size2, &as_hashes(proof)?, &root1, &root2)
}

fn as_hashes(proof: &[Vec<u8>]) -> Result<Vec<Hash>, ProofError> {
    proof
        .iter()
        .map(|h| Hash::from_slice(h).map_err(|_| ProofError::RootMismatch))
        .collect()
}

fn check_length<T>(proof: &[T], expected: usize) -> Result<(), ProofError> {
    if proof.len() == expected {
        Ok(())
    } else {
        Err(ProofError::WrongLength {
            expected,
            got: proof.len(),
        })
    }
}

fn matches(computed: &Hash, expected: &Hash) -> Result<(), ProofError> {
    if computed == expected {
        Ok(())
    } else {
        Err(ProofError::RootMismatch)
    }
}

/// How many proof hashes lie below the right border (`inner`) and along it
/// (`border`) for leaf `index` in a tree of `size` leaves.
fn decompose(index: u64, size: u64) -> (usize, usize) {
    let inner = (64 - (index ^ (size - 1)).leading_zeros()) as usize;
    let border = index.checked_shr(inner as u32).unwrap_or(0).count_ones() as usize;
    (inner, border)
}

fn chain_inner(mut seed: Hash, proof: &[Hash], index: u64) -> Hash {
    for (i, sibling) in proof.iter().enumerate() {
        seed = if (index >> i) & 1 == 0 {
            node_hash(&seed, sibling)
        } else {
            node_hash(sibling, &seed)
        };
    }
    seed
}

fn chain_inner_right(mut seed: Hash, proof: &[Hash], index: u64) -> Hash {
    for (i, sibling) in proof.iter().enumerate() {
        if (index >> i) & 1 == 1 {
            seed = node_hash(sibling, &seed);
        }
    }
    seed
}

fn chain_border_right(mut seed: Hash, proof: &[Hash]) -> Hash {
    for sibling in proof {
        seed = node_hash(sibling, &seed);
    }
    seed
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::leaf_hash;

    fn tree(n: u64) -> MemoryTree {
        MemoryTree::from_leaves((0..n).map(|i| leaf_hash(&i.to_be_bytes())).collect())
    }

    #[test]
    fn every_generated_proof_verifies_and_no_wrong_one_does() {
        let t = tree(40);
        for size in 1..=40 {
            let root = t.root(size).unwrap();
            for index in 0..size {
                let leaf = leaf_hash(&index.to_be_bytes());
                let proof = inclusion_proof(&t, index, size).unwrap();
                verify_inclusion(index, size, &leaf, &proof, &root).unwrap();
                // Another leaf, another index, or a shortened proof fails.
                let other = leaf_hash(&(index + 1000).to_be_bytes());
                assert!(verify_inclusion(index, size, &other, &proof, &root).is_err());
                if size > 1 {
                    assert!(
                        verify_inclusion((index + 1) % size, size, &leaf, &proof, &root).is_err()
                    );
                    assert!(verify_inclusion(index, size, &leaf, &proof[1..], &root).is_err());
                }
            }
            assert_eq!(
                consistency_proof(&t, 0, size),
                Err(ProofError::EmptyOldTree)
            );
            for size1 in 1..=size {
                let proof = consistency_proof(&t, size1, size).unwrap();
                let root1 = t.root(size1).unwrap();
                verify_consistency(size1, size, &proof, &root1, &root).unwrap();
                if size1 > 0 && size1 < size {
                    let wrong = leaf_hash(b"wrong");
                    assert!(verify_consistency(size1, size, &proof, &wrong, &root).is_err());
                    assert!(verify_consistency(size1, size, &proof, &root1, &wrong).is_err());
                }
            }
        }
    }

    #[test]
    fn proofs_need_the_tree_to_exist() {
        let t = tree(4);
        assert_eq!(
            inclusion_proof(&t, 0, 5),
            Err(ProofError::TreeTooSmall {
                requested: 5,
                stored: 4
            })
        );
        assert_eq!(
            inclusion_proof(&t, 4, 4),
            Err(ProofError::IndexOutOfRange { index: 4, size: 4 })
        );
        assert_eq!(
            consistency_proof(&t, 3, 2),
            Err(ProofError::SizeOrder { size1: 3, size2: 2 })
        );
    }
}
