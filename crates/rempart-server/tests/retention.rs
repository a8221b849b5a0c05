//! Retention erases payloads older than the period, keeps their leaves, and
//! removes them from search; newer entries are untouched.

use std::sync::Arc;
use std::time::Duration;

use rempart_server::state::AppState;
use rempart_welllog::{Options, Source, Stamp, WellLog, canonical_entry};
use time::OffsetDateTime;

fn entry(msg: &str, received: OffsetDateTime) -> Vec<u8> {
    let stamp = Stamp {
        received,
        sender: "test".into(),
        source: Source::Api,
    };
    canonical_entry(
        serde_json::json!({"kind": "test.event", "msg": msg}),
        &stamp,
    )
    .expect("entry")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn old_payloads_are_erased_and_forgotten_leaves_kept() {
    let dir = tempfile::tempdir().expect("tempdir");
    let now = OffsetDateTime::now_utc();
    let welllog = WellLog::open(Options {
        dir: dir.path().join("welllog"),
        origin: "rempart.test/welllog".into(),
        checkpoint_every: Duration::from_millis(100),
        queue: 16,
        copy: false,
    })
    .await
    .expect("log");
    let old = now - time::Duration::days(40);
    let batch = vec![
        entry("old alpha", old),
        entry("old beta", old + time::Duration::hours(1)),
        entry("recent gamma", now - time::Duration::days(2)),
        entry("fresh delta", now),
    ];
    welllog.append(batch).await.expect("append");
    let root = welllog.sign_checkpoint().await.expect("checkpoint").root;

    let index = rempart_search::Index::open(&dir.path().join("index.db"))
        .await
        .expect("index");
    let entries: Vec<(u64, Option<Vec<u8>>)> = (0..4)
        .map(|seq| (seq, welllog.read(seq).expect("read").payload))
        .collect();
    index.add(&entries).await.expect("index");

    let state = AppState::new(rempart_server::state::Shared {
        store: rempart_store::Store::open(&format!("sqlite://{}", dir.path().join("db").display()))
            .await
            .expect("store"),
        config: Arc::new(rempart_config::Config::defaults(now)),
        ca: Arc::new(rempart_tls::CertificateAuthority::generate().expect("ca")),
        metrics: Arc::new(rempart_server::metrics::Metrics::new()),
        welllog: welllog.clone(),
        writer: rempart_server::logwriter::LogWriter::Local {
            log: welllog.clone(),
            index: index.clone(),
        },
        index: index.clone(),
        ingest_budget: Arc::new(rempart_server::budget::IngestBudget::new(1 << 20)),
        clock: Arc::new(rempart_server::clock::Clock::new(false)),
        notifier: rempart_server::notify::Notifier::none(),
        access_cache: Arc::new(rempart_server::grants::AccessCache::new(false)),
        ssh: rempart_server::ssh_ca::SshAuthorities::load_or_create(dir.path()).expect("ssh CAs"),
        // Not in `dir`: its `db` is the SQLite file.
        db_users: Arc::new(rempart_tls::CertificateAuthority::generate().expect("db CA")),
        access_rules: Arc::new(
            rempart_server::state::access_rules(&rempart_config::Config::defaults(now).access)
                .expect("rules"),
        ),
    });
    // A 30-day period: the two 40-day-old payloads go.
    let cutoff = now - time::Duration::days(30);
    assert_eq!(
        rempart_server::retention::apply(&state, cutoff)
            .await
            .expect("apply"),
        2
    );
    assert_eq!(welllog.read(0).expect("read").payload, None);
    assert_eq!(welllog.read(1).expect("read").payload, None);
    assert!(welllog.read(2).expect("read").payload.is_some());
    assert_eq!(
        welllog.root(4).expect("root"),
        root,
        "the tree is unchanged"
    );
    let search = |text: &str| {
        let query = rempart_search::Query::parse(text, now).expect("query");
        let index = index.clone();
        async move { index.search(&query, 10).await.expect("search") }
    };
    assert!(search("alpha").await.is_empty());
    assert_eq!(search("gamma").await, vec![2]);
    // Running again finds nothing more, and starts where it stopped.
    assert_eq!(
        rempart_server::retention::apply(&state, cutoff)
            .await
            .expect("apply"),
        0
    );
}
