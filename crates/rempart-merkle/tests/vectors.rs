//! The transparency-dev/merkle proof vectors (../shared/testdata/merkle): the
//! verifiers accept exactly the cases marked `wantErr: false`, and the proofs
//! this crate generates for the RFC 6962 reference tree are those of the
//! vectors.

use std::path::{Path, PathBuf};

use rempart_merkle::{
    Hash, MemoryTree, consistency_proof, inclusion_proof, leaf_hash, verify_consistency_bytes,
    verify_inclusion_bytes,
};
use serde::Deserialize;

fn testdata() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../../../shared/testdata/merkle")
}

fn cases(kind: &str) -> Vec<(PathBuf, String)> {
    let mut out = Vec::new();
    let mut dirs = vec![testdata().join(kind)];
    while let Some(dir) = dirs.pop() {
        let entries = std::fs::read_dir(&dir)
            .unwrap_or_else(|e| panic!("{}: {e} (is ../shared/testdata there?)", dir.display()));
        for entry in entries {
            let path = entry.expect("a directory entry").path();
            if path.is_dir() {
                dirs.push(path);
            } else if path.extension().is_some_and(|e| e == "json") {
                let text = std::fs::read_to_string(&path).expect("a readable vector");
                out.push((path, text));
            }
        }
    }
    out.sort();
    out
}

fn bytes(text: &str) -> Vec<u8> {
    use base64::Engine;
    base64::engine::general_purpose::STANDARD
        .decode(text)
        .expect("the vectors are valid base64")
}

fn all_bytes(texts: &Option<Vec<String>>) -> Vec<Vec<u8>> {
    texts.iter().flatten().map(|t| bytes(t)).collect()
}

/// For the generator's comparisons: the hashes of a happy path.
fn hash(text: &str) -> Option<Hash> {
    Hash::from_base64(text).ok()
}

fn hashes(texts: &Option<Vec<String>>) -> Option<Vec<Hash>> {
    texts.iter().flatten().map(|t| hash(t)).collect()
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct Inclusion {
    leaf_idx: u64,
    tree_size: u64,
    root: String,
    leaf_hash: String,
    proof: Option<Vec<String>>,
    desc: String,
    want_err: bool,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct Consistency {
    size1: u64,
    size2: u64,
    root1: String,
    root2: String,
    proof: Option<Vec<String>>,
    desc: String,
    want_err: bool,
}

#[test]
fn inclusion_vectors() {
    let cases = cases("inclusion");
    assert!(
        cases.len() >= 90,
        "only {} inclusion cases found",
        cases.len()
    );
    for (path, text) in cases {
        let case: Inclusion = serde_json::from_str(&text).unwrap();
        let accepted = verify_inclusion_bytes(
            case.leaf_idx,
            case.tree_size,
            &bytes(&case.leaf_hash),
            &all_bytes(&case.proof),
            &bytes(&case.root),
        )
        .is_ok();
        assert_eq!(
            accepted,
            !case.want_err,
            "{}: {}",
            path.display(),
            case.desc
        );
    }
}

#[test]
fn consistency_vectors() {
    let cases = cases("consistency");
    assert!(
        cases.len() >= 90,
        "only {} consistency cases found",
        cases.len()
    );
    for (path, text) in cases {
        let case: Consistency = serde_json::from_str(&text).unwrap();
        let accepted = verify_consistency_bytes(
            case.size1,
            case.size2,
            &all_bytes(&case.proof),
            &bytes(&case.root1),
            &bytes(&case.root2),
        )
        .is_ok();
        assert_eq!(
            accepted,
            !case.want_err,
            "{}: {}",
            path.display(),
            case.desc
        );
    }
}

/// The RFC 6962 reference leaves, from which the happy-path vectors were made.
fn reference_tree() -> MemoryTree {
    let leaves: [&[u8]; 8] = [
        b"",
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
    MemoryTree::from_leaves(leaves.iter().map(|l| leaf_hash(l)).collect())
}

#[test]
fn generated_proofs_equal_the_happy_path_vectors() {
    let tree = reference_tree();
    let mut checked = 0;
    for (path, text) in cases("inclusion") {
        let case: Inclusion = serde_json::from_str(&text).unwrap();
        if case.want_err || case.tree_size > 8 || !path.ends_with("happy-path.json") {
            continue;
        }
        assert_eq!(
            tree.root(case.tree_size).unwrap(),
            hash(&case.root).unwrap()
        );
        let proof = inclusion_proof(&tree, case.leaf_idx, case.tree_size).unwrap();
        assert_eq!(Some(proof), hashes(&case.proof), "{}", path.display());
        checked += 1;
    }
    for (path, text) in cases("consistency") {
        let case: Consistency = serde_json::from_str(&text).unwrap();
        if case.want_err || case.size2 > 8 || !path.ends_with("happy-path.json") {
            continue;
        }
        let proof = consistency_proof(&tree, case.size1, case.size2).unwrap();
        assert_eq!(Some(proof), hashes(&case.proof), "{}", path.display());
        checked += 1;
    }
    assert!(checked >= 8, "only {checked} happy paths checked");
}
