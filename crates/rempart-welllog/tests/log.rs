//! The well-log on real files: appends, proofs against signed checkpoints,
//! recovery after a torn write, and offline verification catching each kind
//! of tampering.

// Test helpers unwrap like the tests they serve.
#![allow(clippy::unwrap_used)]

use std::path::Path;
use std::time::Duration;

use rempart_merkle::checkpoint::NoteVerifier;
use rempart_merkle::{leaf_hash, verify_consistency, verify_inclusion};
use rempart_welllog::verify::{Report, verify};
use rempart_welllog::{LogError, Options, WellLog};

fn options(dir: &Path) -> Options {
    Options {
        dir: dir.to_owned(),
        origin: "rempart.test/welllog".to_owned(),
        checkpoint_every: Duration::from_millis(50),
        queue: 64,
        copy: false,
    }
}

fn entry(i: u64) -> Vec<u8> {
    format!(r#"{{"kind":"test.entry","msg":"entry number {i}","n":{i}}}"#).into_bytes()
}

async fn filled(dir: &Path, count: u64) -> WellLog {
    let log = WellLog::open(options(dir)).await.expect("open");
    let batch: Vec<Vec<u8>> = (log.size()..log.size() + count).map(entry).collect();
    log.append(batch).await.expect("append");
    log
}

fn verifier(dir: &Path) -> NoteVerifier {
    let text = std::fs::read_to_string(dir.join("verifier.key")).expect("verifier key");
    NoteVerifier::from_text(&text).expect("a verifier key")
}

fn check(dir: &Path, external: Option<&str>) -> Report {
    verify(dir, &verifier(dir), external, |_| {}).expect("verify runs")
}

#[tokio::test]
async fn appends_are_numbered_in_order_and_proven() {
    let dir = tempfile::tempdir().unwrap();
    let log = WellLog::open(options(dir.path())).await.unwrap();
    // Concurrent appends: each gets a contiguous range, none overlap.
    let (a, b, c) = tokio::join!(
        log.append((0..10).map(entry).collect()),
        log.append((0..5).map(entry).collect()),
        log.append((0..7).map(entry).collect()),
    );
    let mut ranges = [a.unwrap(), b.unwrap(), c.unwrap()];
    ranges.sort_by_key(|r| r.start);
    assert_eq!(ranges[0].start, 0);
    assert_eq!(ranges[1].start, ranges[0].end);
    assert_eq!(ranges[2].start, ranges[1].end);
    assert_eq!(log.size(), 22);

    let old = log.checkpoint();
    let checkpoint = log.sign_checkpoint().await.unwrap();
    assert_eq!(checkpoint.size, 22);
    let parsed = log.verifier().verify_checkpoint(&checkpoint.note).unwrap();
    assert_eq!((parsed.size, parsed.root), (22, checkpoint.root));
    for seq in [0, 7, 21] {
        let record = log.read(seq).unwrap();
        let payload = record.payload.unwrap();
        assert_eq!(record.leaf, leaf_hash(&payload));
        let proof = log.inclusion_proof(seq, 22).unwrap();
        verify_inclusion(seq, 22, &leaf_hash(&payload), &proof, &checkpoint.root).unwrap();
    }
    if old.size > 0 {
        let proof = log.consistency_proof(old.size, 22).unwrap();
        verify_consistency(old.size, 22, &proof, &old.root, &checkpoint.root).unwrap();
    }
    assert!(matches!(log.read(22), Err(LogError::NotFound(22))));
    assert!(log.inclusion_proof(0, 23).is_err());
}

#[tokio::test]
async fn checkpoints_follow_appends_within_the_period() {
    let dir = tempfile::tempdir().unwrap();
    let log = filled(dir.path(), 3).await;
    let deadline = std::time::Instant::now() + Duration::from_secs(5);
    while log.checkpoint().size < 3 {
        assert!(
            std::time::Instant::now() < deadline,
            "no checkpoint after 5 s"
        );
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}

#[tokio::test]
async fn a_reopened_log_continues_where_it_stopped() {
    let dir = tempfile::tempdir().unwrap();
    let log = filled(dir.path(), 1000).await;
    let checkpoint = log.sign_checkpoint().await.unwrap();
    drop(log);
    let log = filled(dir.path(), 10).await;
    assert_eq!(log.size(), 1010);
    assert_eq!(log.root(1000).unwrap(), checkpoint.root);
    assert_eq!(log.read(1005).unwrap().payload.unwrap(), entry(1005));
    let report = check(dir.path(), None);
    assert_eq!(report.problem, None);
    assert_eq!(report.entries, 1010);
}

#[tokio::test]
async fn a_torn_record_at_the_end_is_set_aside() {
    let dir = tempfile::tempdir().unwrap();
    let log = filled(dir.path(), 10).await;
    log.sign_checkpoint().await.unwrap();
    drop(log);
    let segment = dir.path().join("segments/00000000000000000000.seg");
    let mut bytes = std::fs::read(&segment).unwrap();
    let whole = bytes.len();
    // Half of an eleventh record, as a crash in the middle of a write leaves.
    let mut record = Vec::new();
    rempart_welllog::segment::encode_record(&mut record, 10, &entry(10));
    bytes.extend_from_slice(&record[..record.len() / 2]);
    std::fs::write(&segment, &bytes).unwrap();

    let log = filled(dir.path(), 1).await;
    assert_eq!(log.size(), 11);
    assert!(
        dir.path()
            .join("segments/00000000000000000000.torn-10")
            .exists()
    );
    assert_eq!(
        std::fs::metadata(&segment).unwrap().len() as usize,
        whole + record.len()
    );
    assert_eq!(check(dir.path(), None).problem, None);
}

#[tokio::test]
async fn a_log_behind_its_signed_checkpoint_refuses_to_open() {
    let dir = tempfile::tempdir().unwrap();
    let log = filled(dir.path(), 10).await;
    log.sign_checkpoint().await.unwrap();
    drop(log);
    // Cut the last record off: the checkpoint covers 10 entries.
    let segment = dir.path().join("segments/00000000000000000000.seg");
    let len = std::fs::metadata(&segment).unwrap().len();
    let last = (rempart_welllog::segment::RECORD_OVERHEAD + entry(9).len()) as u64;
    std::fs::OpenOptions::new()
        .write(true)
        .open(&segment)
        .unwrap()
        .set_len(len - last)
        .unwrap();
    match WellLog::open(options(dir.path())).await {
        Err(LogError::RolledBack {
            size: 9,
            checkpoint: 10,
        }) => {}
        other => panic!("expected a refusal, got {other:?}"),
    }
}

/// The byte range of record `seq` in the (single) segment of a log of
/// `entry(i)` records.
fn record_span(seq: u64) -> std::ops::Range<usize> {
    let start = rempart_welllog::segment::HEADER_LEN
        + (0..seq)
            .map(|i| rempart_welllog::segment::RECORD_OVERHEAD + entry(i).len())
            .sum::<usize>();
    start..start + rempart_welllog::segment::RECORD_OVERHEAD + entry(seq).len()
}

async fn tampered(edit: impl FnOnce(&mut Vec<u8>)) -> Report {
    let dir = tempfile::tempdir().unwrap();
    let log = filled(dir.path(), 12).await;
    log.sign_checkpoint().await.unwrap();
    drop(log);
    let segment = dir.path().join("segments/00000000000000000000.seg");
    let mut bytes = std::fs::read(&segment).unwrap();
    edit(&mut bytes);
    std::fs::write(&segment, &bytes).unwrap();
    check(dir.path(), None)
}

#[tokio::test]
async fn verify_finds_the_first_bad_entry() {
    let clean = tampered(|_| {}).await;
    assert_eq!(clean.problem, None);
    assert_eq!(clean.entries, 12);

    // A changed byte in entry 5's payload.
    let flipped = tampered(|bytes| {
        let span = record_span(5);
        bytes[span.end - 3] ^= 0x20;
    })
    .await;
    assert_eq!(
        flipped.problem.as_ref().map(|p| p.0),
        Some(5),
        "{flipped:?}"
    );

    // Entry 5 removed.
    let removed = tampered(|bytes| {
        bytes.drain(record_span(5));
    })
    .await;
    assert_eq!(
        removed.problem.as_ref().map(|p| p.0),
        Some(5),
        "{removed:?}"
    );

    // Entries 5 and 6 swapped.
    let swapped = tampered(|bytes| {
        let (five, six) = (record_span(5), record_span(6));
        let mut reordered = bytes[six.clone()].to_vec();
        reordered.extend_from_slice(&bytes[five.clone()]);
        bytes.splice(five.start..six.end, reordered);
    })
    .await;
    assert_eq!(
        swapped.problem.as_ref().map(|p| p.0),
        Some(5),
        "{swapped:?}"
    );

    // A forged entry 5, with a correct leaf hash for its new content: only
    // the signed checkpoints catch it.
    let forged = tampered(|bytes| {
        let span = record_span(5);
        let mut record = Vec::new();
        let mut fake = entry(5);
        let at = fake.len() - 3;
        fake[at] = b'9';
        rempart_welllog::segment::encode_record(&mut record, 5, &fake);
        bytes.splice(span, record);
    })
    .await;
    let (seq, detail) = forged.problem.clone().expect("a problem");
    assert!(seq >= 5, "{forged:?}");
    assert!(detail.contains("checkpoint"), "{detail}");

    // Truncated after entry 7, when a checkpoint covers 12.
    let truncated = tampered(|bytes| bytes.truncate(record_span(8).start)).await;
    assert_eq!(
        truncated.problem.as_ref().map(|p| p.0),
        Some(8),
        "{truncated:?}"
    );
}

#[tokio::test]
async fn a_kept_checkpoint_catches_a_rolled_back_copy() {
    let dir = tempfile::tempdir().unwrap();
    let log = filled(dir.path(), 10).await;
    log.sign_checkpoint().await.unwrap();
    // An administrator keeps a copy of the directory at 10 entries...
    let copy = tempfile::tempdir().unwrap();
    let status = std::process::Command::new("cp")
        .arg("-a")
        .arg(format!("{}/.", dir.path().display()))
        .arg(copy.path())
        .status()
        .unwrap();
    assert!(status.success());
    // ...while the log grows and an auditor keeps a checkpoint at 15.
    let more: Vec<Vec<u8>> = (10..15).map(entry).collect();
    log.append(more).await.unwrap();
    let kept = log.sign_checkpoint().await.unwrap();
    drop(log);
    // The real log proves it grew since; the copy is caught.
    assert_eq!(check(dir.path(), Some(&kept.note)).problem, None);
    let rolled_back = check(copy.path(), Some(&kept.note));
    let (seq, detail) = rolled_back.problem.expect("caught");
    assert_eq!(seq, 10);
    assert!(detail.contains("removed"), "{detail}");
    // A checkpoint signed by another key is refused.
    let other = rempart_merkle::checkpoint::NoteSigner::generate("rempart.test/welllog").unwrap();
    let forged = other
        .sign(&format!(
            "rempart.test/welllog\n15\n{}\n",
            kept.root.to_base64()
        ))
        .unwrap();
    assert!(check(dir.path(), Some(&forged)).problem.is_some());
}

#[tokio::test]
async fn erasing_a_payload_keeps_the_tree_and_its_proofs() {
    let dir = tempfile::tempdir().unwrap();
    let log = filled(dir.path(), 20).await;
    let before = log.sign_checkpoint().await.unwrap();
    let leaf = log.read(5).unwrap().leaf;

    assert_eq!(log.erase(vec![5, 7]).await.unwrap(), 2);
    assert_eq!(log.erase(vec![5]).await.unwrap(), 0, "already erased");
    assert!(matches!(
        log.erase(vec![99]).await,
        Err(LogError::NotFound(99))
    ));
    let record = log.read(5).unwrap();
    assert_eq!((record.leaf, record.payload), (leaf, None));
    assert_eq!(log.read(6).unwrap().payload.unwrap(), entry(6));

    // Same tree, same root, the old checkpoint's proofs still hold.
    assert_eq!(log.root(20).unwrap(), before.root);
    let proof = log.inclusion_proof(5, 20).unwrap();
    verify_inclusion(5, 20, &leaf, &proof, &before.root).unwrap();
    // Appends go on after an erasure.
    log.append(vec![entry(20)]).await.unwrap();
    drop(log);

    // The erased bytes are gone from the file, and the log verifies.
    let segment = std::fs::read(dir.path().join("segments/00000000000000000000.seg")).unwrap();
    let needle = b"entry number 5\"";
    assert!(!segment.windows(needle.len()).any(|w| w == needle));
    let report = check(dir.path(), None);
    assert_eq!(
        (report.problem, report.erased, report.entries),
        (None, 2, 21)
    );
    let log = WellLog::open(options(dir.path())).await.unwrap();
    assert_eq!(log.read(7).unwrap().payload, None);
}

/// A node's copy of the shared log: records copied one batch after another
/// (payloads, and erased ones as their leaf alone) make the same tree as the
/// original, verify offline, and a copy that does not follow on is refused
/// without touching the files.
#[tokio::test]
async fn a_copy_replicates_records_to_the_same_tree() {
    let original_dir = tempfile::tempdir().unwrap();
    let original = filled(original_dir.path(), 40).await;
    original.erase(vec![3, 17]).await.unwrap();
    let copy_dir = tempfile::tempdir().unwrap();
    let copy = WellLog::open(Options {
        copy: true,
        ..options(copy_dir.path())
    })
    .await
    .unwrap();
    assert!(copy.is_copy());
    assert!(matches!(
        copy.append(vec![entry(0)]).await,
        Err(LogError::WrongMode(_))
    ));
    assert!(matches!(
        original.replicate(vec![]).await,
        Err(LogError::WrongMode(_))
    ));

    let records = original.read_range(0, 40).unwrap();
    assert_eq!(copy.replicate(records[..25].to_vec()).await.unwrap(), 25);
    // Not the next entry: refused, nothing written.
    let refused = copy.replicate(records[26..30].to_vec()).await;
    assert!(
        matches!(refused, Err(LogError::Corrupt { seq: 25, .. })),
        "{refused:?}"
    );
    // A payload that does not match its leaf: refused.
    let mut forged = records[25].clone();
    forged.payload = Some(b"{\"kind\":\"forged\"}".to_vec());
    assert!(matches!(
        copy.replicate(vec![forged]).await,
        Err(LogError::Corrupt { seq: 25, .. })
    ));
    assert_eq!(copy.size(), 25);
    assert_eq!(copy.replicate(records[25..].to_vec()).await.unwrap(), 40);

    assert_eq!(copy.root(40).unwrap(), original.root(40).unwrap());
    assert_eq!(copy.read(3).unwrap().payload, None);
    assert_eq!(copy.read(4).unwrap().payload, Some(entry(4)));
    let signed = copy.sign_checkpoint().await.unwrap();
    assert_eq!(signed.size, 40);
    assert_eq!(signed.root, original.root(40).unwrap());
    let consistency = copy.consistency_proof(25, 40).unwrap();
    verify_consistency(
        25,
        40,
        &consistency,
        &original.root(25).unwrap(),
        &signed.root,
    )
    .unwrap();
    // The copy survives a restart and verifies from its files alone.
    drop(copy);
    let reopened = WellLog::open(Options {
        copy: true,
        ..options(copy_dir.path())
    })
    .await
    .unwrap();
    assert_eq!(reopened.size(), 40);
    let report = check(copy_dir.path(), None);
    assert_eq!(report.problem, None);
    assert_eq!((report.entries, report.erased), (40, 2));
}
