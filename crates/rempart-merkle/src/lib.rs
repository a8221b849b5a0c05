//! The well-log's cryptography: RFC 9162 Merkle trees, their proofs, and
//! signed checkpoints in the C2SP signed-note format.
//!
//! - [`Hash`], [`leaf_hash`] and [`node_hash`]: SHA-256 with the RFC 9162
//!   domain-separation prefixes (0x00 for leaves, 0x01 for interior nodes).
//! - [`inclusion_proof`] and [`consistency_proof`] build proofs from any
//!   [`SubtreeSource`] (an in-memory [`MemoryTree`], or the well-log's files);
//!   [`verify_inclusion`] and [`verify_consistency`] check them.
//! - [`checkpoint`]: the checkpoint body (origin, size, root) and its Ed25519
//!   signature as a C2SP signed note, which third-party verifiers accept.
//!
//! ```
//! use rempart_merkle::{MemoryTree, inclusion_proof, leaf_hash, verify_inclusion};
//!
//! let tree = MemoryTree::from_leaves((0..5u8).map(|i| leaf_hash(&[i])).collect());
//! let proof = inclusion_proof(&tree, 3, 5).unwrap();
//! verify_inclusion(3, 5, &leaf_hash(&[3]), &proof, &tree.root(5).unwrap()).unwrap();
//! ```
//!
//! Architecture invariant: pure functions over hashes and bytes; no I/O. The
//! verifiers are security-critical (a forged proof accepted is a rewritten
//! history unnoticed): they are tested against the transparency-dev vectors.
#![forbid(unsafe_code)]

pub mod checkpoint;
mod hash;
mod proof;

pub use hash::{Hash, HashError, empty_root, leaf_hash, node_hash};
pub use proof::{
    MemoryTree, ProofError, SubtreeSource, consistency_proof, inclusion_proof, verify_consistency,
    verify_consistency_bytes, verify_inclusion, verify_inclusion_bytes,
};
