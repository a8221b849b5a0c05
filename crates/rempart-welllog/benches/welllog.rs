//! Well-log figures, each beside a baseline measured in the same run on the
//! same disk (`cargo bench -p rempart-welllog`; ENTRIES=N to change the size):
//!
//! - durable appends of ~300-byte entries by concurrent producers, against
//!   the same bytes written and fdatasync'd in the same batches to a plain
//!   file (the cost of durability alone);
//! - from acknowledgement to being covered by a signed checkpoint (p50, p99);
//! - offline verification, against SHA-256 over the same segment files.

use std::io::Write;
use std::time::{Duration, Instant};

use rempart_welllog::{Options, WellLog};
use sha2::{Digest, Sha256};

const PRODUCERS: u64 = 4;
const BATCH: u64 = 1000;

fn entry(n: u64) -> Vec<u8> {
    let mut entry = format!(
        r#"{{"actor":"alice","host":"web-{}","kind":"ssh.session.start","outcome":"success","received":"2026-11-25T10:00:00Z","sender":"machine:bastion-1","source":"api","target":"host:db-{}","ts":"2026-11-25T10:00:00Z","n":{n},"msg":""#,
        n % 50,
        n % 7
    );
    while entry.len() < 296 {
        entry.push('x');
    }
    entry.push_str("\"}");
    entry.into_bytes()
}

fn percentile(sorted: &[Duration], p: f64) -> Duration {
    if sorted.is_empty() {
        return Duration::ZERO;
    }
    sorted[((sorted.len() - 1) as f64 * p).round() as usize]
}

fn main() {
    let total: u64 = std::env::var("ENTRIES")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(1_000_000);
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .expect("runtime");
    let dir =
        tempfile::tempdir_in(std::env::var("BENCH_DIR").unwrap_or_else(|_| "/var/tmp".into()))
            .expect("tempdir");
    let per_producer = total / PRODUCERS / BATCH;

    // Baseline: the same bytes, the same batches, written and fdatasync'd.
    let started = Instant::now();
    {
        let mut file = std::fs::File::create(dir.path().join("baseline")).expect("file");
        for batch in 0..(per_producer * PRODUCERS) {
            let mut bytes = Vec::new();
            for n in batch * BATCH..(batch + 1) * BATCH {
                bytes.extend_from_slice(&entry(n));
            }
            file.write_all(&bytes).expect("write");
            file.sync_data().expect("sync");
        }
    }
    let baseline = started.elapsed();
    let entries = per_producer * PRODUCERS * BATCH;

    let log_dir = dir.path().join("welllog");
    let (append_time, latencies) = runtime.block_on(async {
        let log = WellLog::open(Options {
            dir: log_dir.clone(),
            origin: "bench.rempart/welllog".into(),
            checkpoint_every: Duration::from_millis(500),
            queue: 1024,
            copy: false,
        })
        .await
        .expect("open");
        let started = Instant::now();
        let mut producers = Vec::new();
        for producer in 0..PRODUCERS {
            let log = log.clone();
            producers.push(tokio::spawn(async move {
                let mut samples = Vec::new();
                for batch in 0..per_producer {
                    let first = (producer * per_producer + batch) * BATCH;
                    let payloads = (first..first + BATCH).map(entry).collect();
                    let range = log.append(payloads).await.expect("append");
                    if batch % 10 == 0 {
                        samples.push((Instant::now(), range.end));
                    }
                }
                samples
            }));
        }
        // Watch checkpoints: when one covers a sample, its latency is known.
        let watcher = {
            let log = log.clone();
            tokio::spawn(async move {
                let mut seen = Vec::new();
                let deadline = Instant::now() + Duration::from_secs(600);
                let mut last = 0;
                while Instant::now() < deadline {
                    let size = log.checkpoint().size;
                    if size != last {
                        seen.push((Instant::now(), size));
                        last = size;
                    }
                    if size >= entries {
                        break;
                    }
                    tokio::time::sleep(Duration::from_millis(2)).await;
                }
                seen
            })
        };
        let mut samples = Vec::new();
        for producer in producers {
            samples.extend(producer.await.expect("producer"));
        }
        let append_time = started.elapsed();
        let checkpoints = watcher.await.expect("watcher");
        let mut latencies: Vec<Duration> = samples
            .iter()
            .filter_map(|(acked, end)| {
                checkpoints
                    .iter()
                    .find(|(_, size)| size >= end)
                    .map(|(at, _)| at.saturating_duration_since(*acked))
            })
            .collect();
        latencies.sort();
        (append_time, latencies)
    });

    // Verification, and its baseline: SHA-256 over the same files.
    let verifier = rempart_merkle::checkpoint::NoteVerifier::from_text(
        &std::fs::read_to_string(log_dir.join("verifier.key")).expect("key"),
    )
    .expect("verifier");
    let started = Instant::now();
    let report =
        rempart_welllog::verify::verify(&log_dir, &verifier, None, |_| {}).expect("verify");
    let verify_time = started.elapsed();
    assert!(report.problem.is_none(), "{:?}", report.problem);
    let started = Instant::now();
    let mut hasher = Sha256::new();
    for segment in std::fs::read_dir(log_dir.join("segments")).expect("segments") {
        hasher.update(std::fs::read(segment.expect("entry").path()).expect("read"));
    }
    let _ = hasher.finalize();
    let hash_time = started.elapsed();

    let rate = |n: u64, d: Duration| n as f64 / d.as_secs_f64();
    println!(
        "entries: {entries} of {} bytes, {PRODUCERS} producers, batches of {BATCH}",
        entry(0).len()
    );
    println!(
        "append (durable):   {:>10.0} entries/s   baseline write+fdatasync: {:>10.0} entries/s   ratio {:.2}",
        rate(entries, append_time),
        rate(entries, baseline),
        baseline.as_secs_f64() / append_time.as_secs_f64()
    );
    println!(
        "ack -> checkpoint:  p50 {:?}  p99 {:?}  ({} samples, checkpoint every 500 ms)",
        percentile(&latencies, 0.5),
        percentile(&latencies, 0.99),
        latencies.len()
    );
    println!(
        "verify (offline):   {:>10.0} entries/s   baseline SHA-256 of the segments: {:>10.0} entries/s   ratio {:.2}",
        rate(report.entries, verify_time),
        rate(report.entries, hash_time),
        hash_time.as_secs_f64() / verify_time.as_secs_f64()
    );
}
