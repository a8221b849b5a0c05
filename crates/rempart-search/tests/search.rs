//! Search over the 2,000 real sshd lines of loghub, against a brute-force
//! filter of the same entries: every query returns exactly the entries that
//! match, newest first.

use rempart_search::{Index, Query};
use serde_json::Value;
use time::OffsetDateTime;
use time::macros::datetime;

const RECEIVED: OffsetDateTime = datetime!(2026-12-31 00:00:00 UTC);

fn entries() -> Vec<(u64, Vec<u8>)> {
    let path = std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../../../shared/testdata/loghub/OpenSSH_2k.log");
    let log = std::fs::read_to_string(path).expect("loghub");
    let stamp = rempart_welllog::Stamp {
        received: RECEIVED,
        sender: "syslog-tcp:127.0.0.1".into(),
        source: rempart_welllog::Source::Syslog,
    };
    log.lines()
        .enumerate()
        .map(|(i, line)| {
            let message = rempart_syslog::parse(line.as_bytes(), RECEIVED).expect("parses");
            let event = rempart_syslog::to_event(&message, RECEIVED);
            (
                i as u64,
                rempart_welllog::canonical_entry(event, &stamp).expect("an entry"),
            )
        })
        .collect()
}

async fn index(entries: &[(u64, Vec<u8>)]) -> (tempfile::TempDir, Index) {
    let dir = tempfile::tempdir().expect("tempdir");
    let index = Index::open(&dir.path().join("index.db"))
        .await
        .expect("open");
    for chunk in entries.chunks(300) {
        let chunk: Vec<(u64, Option<Vec<u8>>)> =
            chunk.iter().map(|(s, p)| (*s, Some(p.clone()))).collect();
        index.add(&chunk).await.expect("add");
    }
    (dir, index)
}

/// The expected answer: filter every entry, newest first.
fn brute_force(
    entries: &[(u64, Vec<u8>)],
    keep: impl Fn(&Value) -> bool,
    by_time: bool,
) -> Vec<u64> {
    let mut hits: Vec<(String, u64)> = entries
        .iter()
        .map(|(seq, bytes)| (*seq, serde_json::from_slice::<Value>(bytes).expect("json")))
        .filter(|(_, value)| keep(value))
        .map(|(seq, value)| {
            (
                if by_time {
                    value["ts"].as_str().unwrap_or("").to_owned()
                } else {
                    String::new()
                },
                seq,
            )
        })
        .collect();
    hits.sort_by(|a, b| b.cmp(a));
    hits.into_iter().map(|(_, seq)| seq).collect()
}

#[tokio::test]
async fn queries_match_a_brute_force_filter() {
    let entries = entries();
    let (_dir, index) = index(&entries).await;
    assert_eq!(index.indexed().await.unwrap(), 2000);
    let now = RECEIVED;
    let search = |text: &'static str| {
        let index = index.clone();
        async move {
            index
                .search(&Query::parse(text, now).unwrap(), 5000)
                .await
                .unwrap()
        }
    };

    let accepted = search("kind:ssh.auth outcome:success").await;
    assert_eq!(
        accepted,
        brute_force(
            &entries,
            |e| e["kind"] == "ssh.auth" && e["outcome"] == "success",
            true
        )
    );
    assert_eq!(accepted.len(), 1);

    let webmaster = search("actor:webmaster kind:ssh.*").await;
    let expected = brute_force(
        &entries,
        |e| e["actor"] == "webmaster" && e["kind"].as_str().is_some_and(|k| k.starts_with("ssh.")),
        true,
    );
    assert_eq!(webmaster, expected);
    assert!(!webmaster.is_empty());

    let by_ip = search("src_ip:173.234.31.186").await;
    assert_eq!(
        by_ip,
        brute_force(&entries, |e| e["src_ip"] == "173.234.31.186", false)
    );
    assert!(!by_ip.is_empty());

    let text = search("\"POSSIBLE BREAK-IN ATTEMPT\"").await;
    assert_eq!(
        text,
        brute_force(
            &entries,
            |e| e["msg"]
                .as_str()
                .is_some_and(|m| m.contains("POSSIBLE BREAK-IN ATTEMPT")),
            false
        )
    );
    assert!(text.len() > 50);

    let window = search("host:LabSZ since:2026-12-10T07:00:00Z until:2026-12-10T08:00:00Z").await;
    let expected = brute_force(
        &entries,
        |e| {
            e["ts"]
                .as_str()
                .is_some_and(|t| ("2026-12-10T07:00:00Z".."2026-12-10T08:00:00Z").contains(&t))
        },
        true,
    );
    assert_eq!(window, expected);
    assert!(!window.is_empty());

    let both = search("actor:root \"Failed password\"").await;
    assert_eq!(
        both,
        brute_force(
            &entries,
            |e| e["actor"] == "root"
                && e["msg"]
                    .as_str()
                    .is_some_and(|m| m.contains("Failed password")),
            false
        )
    );

    assert!(search("kind:nothing.here").await.is_empty());

    // The live matcher (for `log tail QUERY`) agrees with the index.
    for text in [
        "kind:ssh.auth outcome:success",
        "actor:webmaster kind:ssh.*",
        "src_ip:173.234.31.186",
        "\"POSSIBLE BREAK-IN ATTEMPT\"",
        "actor:root \"Failed password\"",
    ] {
        let query = Query::parse(text, now).unwrap();
        let mut matched: Vec<u64> = entries
            .iter()
            .filter(|(_, bytes)| query.matches(&serde_json::from_slice(bytes).unwrap()))
            .map(|(seq, _)| *seq)
            .collect();
        let mut indexed = search(text).await;
        matched.sort_unstable();
        indexed.sort_unstable();
        assert_eq!(matched, indexed, "{text}");
    }
    // Words that are FTS5 syntax are searched as words.
    assert!(search("AND OR NOT NEAR").await.is_empty());
}

#[tokio::test]
async fn a_forgotten_entry_is_found_by_nothing() {
    let entries = entries();
    let (_dir, index) = index(&entries[..100]).await;
    let query = Query::parse("\"POSSIBLE BREAK-IN\"", RECEIVED).unwrap();
    let before = index.search(&query, 100).await.unwrap();
    let victim = before[0];
    index.forget(victim).await.unwrap();
    let after = index.search(&query, 100).await.unwrap();
    assert_eq!(after, before[1..].to_vec());
    let host = Query::parse("host:LabSZ", RECEIVED).unwrap();
    assert!(!index.search(&host, 1000).await.unwrap().contains(&victim));
}

#[tokio::test]
async fn entries_are_indexed_in_order_once() {
    let entries = entries();
    let (_dir, index) = index(&entries[..10]).await;
    let late: Vec<(u64, Option<Vec<u8>>)> = vec![(11, Some(entries[11].1.clone()))];
    assert!(index.add(&late).await.is_err(), "a gap is refused");
    let again: Vec<(u64, Option<Vec<u8>>)> = vec![(5, Some(entries[5].1.clone()))];
    assert!(index.add(&again).await.is_err(), "a repeat is refused");
    // An erased entry (no payload) is counted, with nothing to find.
    index.add(&[(10, None)]).await.unwrap();
    assert_eq!(index.indexed().await.unwrap(), 11);
}

/// A statement's SQL and a command line are searched as text; an index of
/// the format before that is rebuilt when opened.
#[tokio::test]
async fn sql_and_commands_are_searched_as_text_and_old_indexes_rebuilt() {
    let stamp = rempart_welllog::Stamp {
        received: RECEIVED,
        sender: "machine:bastion-1".into(),
        source: rempart_welllog::Source::Api,
    };
    let event = |fields: Value| rempart_welllog::canonical_entry(fields, &stamp).expect("an entry");
    let entries = vec![
        (
            0,
            event(
                serde_json::json!({"kind": "db.query", "ts": "2026-12-30T10:00:00Z", "actor": "alice",
                "sql": "DELETE FROM cards WHERE id = $1", "tag": "DELETE 1"}),
            ),
        ),
        (
            1,
            event(
                serde_json::json!({"kind": "ssh.exec", "ts": "2026-12-30T10:01:00Z", "actor": "bob",
                "command": "pg_dump payments > /tmp/cards.sql"}),
            ),
        ),
        (
            2,
            event(
                serde_json::json!({"kind": "db.query", "ts": "2026-12-30T10:02:00Z", "actor": "alice",
                "sql": "SELECT 1"}),
            ),
        ),
    ];
    let (dir, index) = index(&entries).await;
    let search = |text: &str| {
        let query = Query::parse(text, RECEIVED).expect("parses");
        let hits = brute_force(&entries, |v| query.matches(v), false);
        (query, hits)
    };
    for (text, expected) in [
        ("cards", vec![1u64, 0]),
        ("kind:db.query \"delete from cards\"", vec![0]),
        ("pg_dump", vec![1]),
    ] {
        let (query, brute) = search(text);
        assert_eq!(brute, expected, "{text}: the filter");
        assert_eq!(
            index.search(&query, 10).await.expect("search"),
            expected,
            "{text}"
        );
    }

    // The same index, as an older version left it: rebuilt on opening.
    let path = dir.path().join("index.db");
    index.set_mark("format", 1).await.expect("mark");
    drop(index);
    let reopened = Index::open_or_rebuild(&path).await.expect("rebuilt");
    assert_eq!(reopened.indexed().await.expect("indexed"), 0);
    assert_eq!(reopened.mark("format").await.expect("mark"), 2);
}
