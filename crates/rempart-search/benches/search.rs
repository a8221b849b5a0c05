//! Search figures over ENTRIES entries (default 10 million), each query
//! beside GNU grep scanning the same entries as a JSON-lines file in the same
//! run (`cargo bench -p rempart-search`):
//!
//! - host + actor + time window (one hour) — p50, p95 over 100 queries;
//! - a free-text term — p50, p95 over 100 queries;
//! - the index build rate.

use std::io::Write;
use std::time::{Duration, Instant};

use rempart_search::{Index, Query};
use time::OffsetDateTime;
use time::format_description::well_known::Rfc3339;

const WORDS: [&str; 16] = [
    "accepted", "session", "opened", "closed", "timeout", "refused", "rotated", "backup", "deploy",
    "restart", "kernel", "segfault", "upload", "download", "quota", "cron",
];

fn entry(n: u64, start: OffsetDateTime) -> String {
    // A few hundred hosts and thousands of actors, one entry a second.
    let ts = (start + time::Duration::seconds(n as i64))
        .format(&Rfc3339)
        .expect("time");
    let word = |k: u64| WORDS[((n * 7 + k * 13) % 16) as usize];
    let rare = if n.is_multiple_of(100_000) {
        " needle"
    } else {
        ""
    };
    format!(
        r#"{{"actor":"user{}","host":"web-{}","kind":"ssh.{}","msg":"{} {} {} item {n}{rare} {}","outcome":"{}","received":"{ts}","sender":"syslog-tcp:10.0.0.1","source":"syslog","ts":"{ts}"}}"#,
        n % 5000,
        n % 300,
        if n.is_multiple_of(3) { "auth" } else { "exec" },
        word(1),
        word(2),
        word(3),
        "x".repeat(80),
        if n.is_multiple_of(10) {
            "failure"
        } else {
            "success"
        }
    )
}

fn percentile(mut times: Vec<Duration>, p: f64) -> Duration {
    times.sort();
    times[((times.len() - 1) as f64 * p).round() as usize]
}

fn main() {
    let total: u64 = std::env::var("ENTRIES")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(10_000_000);
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .expect("runtime");
    let dir =
        tempfile::tempdir_in(std::env::var("BENCH_DIR").unwrap_or_else(|_| "/var/tmp".into()))
            .expect("tempdir");
    let start = time::macros::datetime!(2026-01-01 00:00:00 UTC);
    let lines_path = dir.path().join("entries.jsonl");
    runtime.block_on(async {
        let index = Index::open(&dir.path().join("index.db"))
            .await
            .expect("open");
        let mut lines = std::io::BufWriter::new(std::fs::File::create(&lines_path).expect("file"));
        let started = Instant::now();
        let mut chunk = Vec::with_capacity(5000);
        for n in 0..total {
            let line = entry(n, start);
            writeln!(lines, "{line}").expect("write");
            chunk.push((n, Some(line.into_bytes())));
            if chunk.len() == 5000 {
                index.add(&chunk).await.expect("add");
                chunk.clear();
            }
        }
        index.add(&chunk).await.expect("add");
        lines.flush().expect("flush");
        let build = started.elapsed();
        println!(
            "entries: {total}; index build: {:.0} entries/s ({:.0} s)",
            total as f64 / build.as_secs_f64(),
            build.as_secs_f64()
        );

        let now = start + time::Duration::seconds(total as i64);
        let mut structured = Vec::new();
        for i in 0..100u64 {
            let n = (i * 7919 * 1_000 + 12_345) % total;
            let from = start + time::Duration::seconds(n as i64);
            let text = format!(
                "host:web-{} actor:user{} since:{} until:{}",
                n % 300,
                n % 5000,
                from.format(&Rfc3339).expect("time"),
                (from + time::Duration::hours(1))
                    .format(&Rfc3339)
                    .expect("time")
            );
            let query = Query::parse(&text, now).expect("query");
            let began = Instant::now();
            let hits = index.search(&query, 50).await.expect("search");
            structured.push(began.elapsed());
            assert!(!hits.is_empty(), "{text}");
        }
        let mut text = Vec::new();
        let mut rare = Vec::new();
        for i in 0..100 {
            let word = if i % 2 == 0 {
                "needle".to_owned()
            } else {
                format!("{} {}", WORDS[i % 16], WORDS[(i + 5) % 16])
            };
            let query = Query::parse(&word, now).expect("query");
            let began = Instant::now();
            index.search(&query, 50).await.expect("search");
            let took = began.elapsed();
            text.push(took);
            if i % 2 == 0 {
                rare.push(took);
            }
        }
        // The peer: GNU grep over the same entries, for the rare term.
        let began = Instant::now();
        // Its output is read: with standard output on /dev/null, GNU grep
        // stops at the first match.
        let out = std::process::Command::new("grep")
            .args(["-c", "needle"])
            .arg(&lines_path)
            .output()
            .expect("grep");
        assert!(out.status.success());
        let count: u64 = String::from_utf8_lossy(&out.stdout)
            .trim()
            .parse()
            .expect("a count");
        assert_eq!(count, total.div_ceil(100_000));
        let grep = began.elapsed();
        println!(
            "host + actor + 1 h window: p50 {:?}  p95 {:?}",
            percentile(structured.clone(), 0.5),
            percentile(structured, 0.95)
        );
        println!(
            "free text (rare and common terms): p50 {:?}  p95 {:?}",
            percentile(text.clone(), 0.5),
            percentile(text, 0.95)
        );
        println!(
            "  of which the rare term alone: p50 {:?}  p95 {:?}",
            percentile(rare.clone(), 0.5),
            percentile(rare, 0.95)
        );
        println!("peer: grep -c needle over the same {total} entries as JSON lines: {grep:?}");
    });
}
