//! The store's behaviour, checked on real databases: every test below runs
//! once on a fresh SQLite file and once on a fresh PostgreSQL database.
//!
//! PostgreSQL tests need `REMPART_TEST_POSTGRES_URL`, an admin URL such as
//! `postgres://postgres@127.0.0.1:54329/postgres`, on which each test creates
//! and then drops a database `rempart_test_<random hex>`. `scripts/test` sets
//! it up.

use std::future::Future;

use rempart_core::{ApiToken, MachineName, MachineRole, Role, Roles, TokenHash, UserName};
use rempart_store::{
    Backend, Machine, NewMachine, NewUser, Notice, SharedEntry, Store, StoreError, User,
};
use sqlx::{AnyConnection, Connection, Executor, PgConnection, Row};

const POSTGRES_URL_VAR: &str = "REMPART_TEST_POSTGRES_URL";

/// What each test gets: a store opened on a fresh database, and that
/// database's URL for raw SQL and for opening it again.
struct Db {
    store: Store,
    url: String,
}

/// Declares each listed test as two tests, `sqlite::name` and
/// `postgres::name`. A `store` test is an `async fn(Db)`; a `fresh` test is an
/// `async fn(String)` given the URL of a database nothing has opened yet.
macro_rules! on_both_backends {
    (store: [$($test:ident),* $(,)?], fresh: [$($fresh:ident),* $(,)?] $(,)?) => {
        on_both_backends!(@backend sqlite, Sqlite, [$($test),*], [$($fresh),*]);
        on_both_backends!(@backend postgres, Postgres, [$($test),*], [$($fresh),*]);
    };
    (@backend $module:ident, $backend:ident, [$($test:ident),*], [$($fresh:ident),*]) => {
        mod $module {
            $(
                #[tokio::test]
                async fn $test() {
                    crate::run(rempart_store::Backend::$backend, crate::$test).await
                }
            )*
            $(
                #[tokio::test]
                async fn $fresh() {
                    crate::with_database(rempart_store::Backend::$backend, crate::$fresh).await
                }
            )*
        }
    };
}

on_both_backends!(
    store: [
        ping_and_backend,
        users_create_get_list,
        duplicate_user_conflicts,
        disabling_a_user_stops_its_token_at_once,
        replace_token_revokes_older_tokens,
        expired_token_is_not_found,
        unknown_token_is_none,
        machines_create_list_revoke_lookup,
        machine_conflicts_on_name_and_fingerprint,
        migrations_are_idempotent,
        newer_schema_is_refused,
        corrupt_rows_are_errors_not_panics,
        the_last_admin_stays_enabled,
        concurrent_token_replacements_leave_one_token,
        shared_welllog_sequences_batches_in_order,
        shared_welllog_erasure_keeps_the_leaf,
        shared_welllog_damage_is_corrupt,
        resources_are_registered_once,
        requests_keep_their_rows_in_order,
        concurrent_reviews_cross_the_threshold_once,
        training_is_recorded_all_or_nothing,
        sessions_and_recordings_are_kept_as_sent,
    ],
    fresh: [
        two_stores_opened_together_share_the_database,
        the_sole_writer_sees_its_own_changes_at_once,
    ],
);

// ---------------------------------------------------------------------------
// Harness

/// Runs `test` on a store opened on a fresh database of `backend`.
async fn run<F, Fut>(backend: Backend, test: F)
where
    F: FnOnce(Db) -> Fut + Send + 'static,
    Fut: Future<Output = ()> + Send + 'static,
{
    with_database(backend, move |url| async move {
        let store = Store::open(&url).await.expect("open the store");
        assert_eq!(store.backend(), backend);
        test(Db { store, url }).await;
    })
    .await
}

/// Runs `test` with the URL of a fresh, empty database of `backend`, and
/// removes the database afterwards, also when the test fails.
async fn with_database<F, Fut>(backend: Backend, test: F)
where
    F: FnOnce(String) -> Fut + Send + 'static,
    Fut: Future<Output = ()> + Send + 'static,
{
    match backend {
        Backend::Sqlite => {
            let dir = tempfile::tempdir().expect("a temporary directory");
            // The file does not exist yet: opening must create it.
            let url = format!("sqlite://{}", dir.path().join("rempart.db").display());
            let outcome = tokio::spawn(test(url)).await;
            drop(dir);
            if let Err(e) = outcome {
                std::panic::resume_unwind(e.into_panic());
            }
        }
        Backend::Postgres => {
            let admin_url = std::env::var(POSTGRES_URL_VAR).unwrap_or_else(|_| {
                panic!(
                    "{POSTGRES_URL_VAR} is not set: run scripts/test, or set it to a PostgreSQL \
                     admin URL such as postgres://postgres@127.0.0.1:54329/postgres"
                )
            });
            let name = format!("rempart_test_{:016x}", rand::random::<u64>());
            let mut admin = PgConnection::connect(&admin_url)
                .await
                .unwrap_or_else(|e| panic!("connect to {POSTGRES_URL_VAR}: {e}"));
            admin
                .execute(format!("CREATE DATABASE {name}").as_str())
                .await
                .expect("create the test database");
            // Run the test in its own task so that a failure still reaches
            // the DROP below.
            let outcome = tokio::spawn(test(with_database_name(&admin_url, &name))).await;
            // FORCE: ends the connections a failed test left open.
            let dropped = admin
                .execute(format!("DROP DATABASE IF EXISTS {name} WITH (FORCE)").as_str())
                .await;
            let _ = admin.close().await;
            if let Err(e) = outcome {
                std::panic::resume_unwind(e.into_panic());
            }
            dropped.expect("drop the test database");
        }
    }
}

/// The admin URL with its database replaced by `name`.
fn with_database_name(admin_url: &str, name: &str) -> String {
    let (base, query) = match admin_url.split_once('?') {
        Some((base, query)) => (base, format!("?{query}")),
        None => (admin_url, String::new()),
    };
    let authority_start = base.find("://").map_or(0, |i| i + 3);
    let server = match base[authority_start..].find('/') {
        Some(slash) => &base[..authority_start + slash],
        None => base,
    };
    format!("{server}/{name}{query}")
}

/// Runs SQL on the database behind the store's back, as an operator (or a
/// bug) could.
async fn raw_sql(url: &str, sql: &str) {
    let mut conn = AnyConnection::connect(url).await.expect("raw connection");
    // Through `Executor`: `RawSql::execute`'s future is not provably `Send`.
    conn.execute(sqlx::raw_sql(sql)).await.expect("raw SQL");
    conn.close().await.expect("close the raw connection");
}

/// Fails unless `result` is a [`StoreError::Corrupt`].
fn is_corrupt(result: Result<(), StoreError>, what: &str) {
    match result {
        Err(StoreError::Corrupt { detail }) => assert!(!detail.is_empty()),
        Err(other) => panic!("{what}: expected corrupt, got the error {other}"),
        Ok(()) => panic!("{what}: expected corrupt, got a value"),
    }
}

fn user_name(name: &str) -> UserName {
    name.parse().expect("a valid user name")
}

fn machine_name(name: &str) -> MachineName {
    name.parse().expect("a valid machine name")
}

fn roles(roles: &[Role]) -> Roles {
    Roles::new(roles.iter().copied()).expect("at least one role")
}

fn new_user(name: &str, with: &[Role]) -> NewUser {
    NewUser {
        name: user_name(name),
        roles: roles(with),
        email: None,
        created_at_ms: 1_000,
    }
}

fn new_machine(name: &str, fingerprint_byte: u8) -> NewMachine {
    NewMachine {
        name: machine_name(name),
        role: MachineRole::Bastion,
        cert_sha256: format!("{fingerprint_byte:02x}").repeat(32),
        cert_serial: "1f2e3d".to_owned(),
        not_after_ms: 9_000_000,
        created_at_ms: 2_000,
        created_by: "alice".to_owned(),
    }
}

fn token() -> TokenHash {
    ApiToken::generate().hash()
}

// ---------------------------------------------------------------------------
// Tests, each written once for both backends

async fn ping_and_backend(db: Db) {
    db.store.ping().await.expect("ping");
    let clone = db.store.clone();
    db.store.close().await;
    // Clones share the pool, so closing one closes all.
    assert!(matches!(clone.ping().await, Err(StoreError::Backend(_))));
}

async fn users_create_get_list(db: Db) {
    let store = &db.store;
    let alice = NewUser {
        email: Some("alice@example.org".to_owned()),
        ..new_user("alice", &[Role::Admin, Role::Security])
    };
    let created = store.create_user(&alice).await.expect("create alice");
    let expected = User {
        name: user_name("alice"),
        roles: roles(&[Role::Security, Role::Admin]),
        email: Some("alice@example.org".to_owned()),
        created_at_ms: 1_000,
        disabled_at_ms: None,
    };
    assert_eq!(created, expected);
    assert_eq!(
        store.get_user(&user_name("alice")).await.expect("get"),
        Some(expected)
    );
    assert_eq!(
        store.get_user(&user_name("nobody")).await.expect("get"),
        None
    );

    // Byte order on both backends: '-' sorts before letters.
    for name in ["bob", "ab", "a-c"] {
        store
            .create_user(&new_user(name, &[Role::Engineer]))
            .await
            .expect("create");
    }
    let names: Vec<String> = store
        .list_users()
        .await
        .expect("list")
        .into_iter()
        .map(|u| u.name.to_string())
        .collect();
    assert_eq!(names, ["a-c", "ab", "alice", "bob"]);
}

async fn duplicate_user_conflicts(db: Db) {
    let store = &db.store;
    store
        .create_user(&new_user("bob", &[Role::Engineer]))
        .await
        .expect("create bob");
    let again = store.create_user(&new_user("bob", &[Role::Admin])).await;
    match again {
        Err(StoreError::Conflict { what }) => assert_eq!(what, "user \"bob\" already exists"),
        other => panic!("expected a conflict, got {other:?}"),
    }
    let bob = store
        .get_user(&user_name("bob"))
        .await
        .expect("get")
        .expect("bob exists");
    assert_eq!(
        bob.roles,
        roles(&[Role::Engineer]),
        "the first bob is untouched"
    );
    assert_eq!(store.list_users().await.expect("list").len(), 1);
}

async fn disabling_a_user_stops_its_token_at_once(db: Db) {
    let store = &db.store;
    let bob = user_name("bob");
    store
        .create_user(&new_user("bob", &[Role::Engineer]))
        .await
        .expect("create");
    let hash = token();
    store
        .replace_token(&bob, &hash, 10_000, None)
        .await
        .expect("token");
    assert_eq!(
        store.user_for_token(&hash, 10_001).await.expect("lookup"),
        Some((bob.clone(), roles(&[Role::Engineer])))
    );

    let disabled = store.disable_user(&bob, 20_000).await.expect("disable");
    assert_eq!(disabled.disabled_at_ms, Some(20_000));
    assert_eq!(
        store.user_for_token(&hash, 20_001).await.expect("lookup"),
        None
    );

    // Idempotent: the first time is kept.
    let again = store
        .disable_user(&bob, 30_000)
        .await
        .expect("disable again");
    assert_eq!(again.disabled_at_ms, Some(20_000));
    assert_eq!(store.get_user(&bob).await.expect("get"), Some(again));

    match store.disable_user(&user_name("nobody"), 1).await {
        Err(StoreError::NotFound { what }) => assert_eq!(what, "user \"nobody\""),
        other => panic!("expected not found, got {other:?}"),
    }
}

async fn replace_token_revokes_older_tokens(db: Db) {
    let store = &db.store;
    let (alice, bob) = (user_name("alice"), user_name("bob"));
    store
        .create_user(&new_user("alice", &[Role::Admin]))
        .await
        .expect("create");
    store
        .create_user(&new_user("bob", &[Role::Engineer]))
        .await
        .expect("create");
    let (first, second, bobs) = (token(), token(), token());
    store
        .replace_token(&alice, &first, 1_000, None)
        .await
        .expect("first");
    store
        .replace_token(&bob, &bobs, 1_000, None)
        .await
        .expect("bob's");
    store
        .replace_token(&alice, &second, 2_000, Some(100_000))
        .await
        .expect("second");

    assert_eq!(
        store.user_for_token(&first, 3_000).await.expect("lookup"),
        None
    );
    let found = store.user_for_token(&second, 3_000).await.expect("lookup");
    assert_eq!(found.map(|(name, _)| name), Some(alice));
    // Only alice's tokens were revoked.
    let found = store.user_for_token(&bobs, 3_000).await.expect("lookup");
    assert_eq!(found.map(|(name, _)| name), Some(bob));

    let orphan = token();
    match store
        .replace_token(&user_name("nobody"), &orphan, 1_000, None)
        .await
    {
        Err(StoreError::NotFound { what }) => assert_eq!(what, "user \"nobody\""),
        other => panic!("expected not found, got {other:?}"),
    }
    assert_eq!(
        store.user_for_token(&orphan, 1_001).await.expect("lookup"),
        None
    );
}

async fn expired_token_is_not_found(db: Db) {
    let store = &db.store;
    let carol = user_name("carol");
    store
        .create_user(&new_user("carol", &[Role::Security]))
        .await
        .expect("create");
    let hash = token();
    store
        .replace_token(&carol, &hash, 1_000, Some(5_000))
        .await
        .expect("token");
    assert!(
        store
            .user_for_token(&hash, 4_999)
            .await
            .expect("lookup")
            .is_some()
    );
    // Expired from `expires_at_ms` on.
    assert_eq!(
        store.user_for_token(&hash, 5_000).await.expect("lookup"),
        None
    );
    assert_eq!(
        store.user_for_token(&hash, 9_000).await.expect("lookup"),
        None
    );
}

async fn unknown_token_is_none(db: Db) {
    let store = &db.store;
    assert_eq!(
        store.user_for_token(&token(), 1_000).await.expect("lookup"),
        None
    );
    store
        .create_user(&new_user("dave", &[Role::Engineer]))
        .await
        .expect("create");
    store
        .replace_token(&user_name("dave"), &token(), 1_000, None)
        .await
        .expect("token");
    assert_eq!(
        store.user_for_token(&token(), 1_000).await.expect("lookup"),
        None
    );
}

async fn machines_create_list_revoke_lookup(db: Db) {
    let store = &db.store;
    let agent = NewMachine {
        role: MachineRole::Agent,
        ..new_machine("web-1", 0xab)
    };
    let created = store.create_machine(&agent).await.expect("create web-1");
    let expected = Machine {
        name: machine_name("web-1"),
        role: MachineRole::Agent,
        cert_sha256: "ab".repeat(32),
        cert_serial: "1f2e3d".to_owned(),
        not_after_ms: 9_000_000,
        created_at_ms: 2_000,
        created_by: "alice".to_owned(),
        revoked_at_ms: None,
    };
    assert_eq!(created, expected);
    store
        .create_machine(&new_machine("bastion-1", 0x01))
        .await
        .expect("create bastion-1");

    let listed = store.list_machines().await.expect("list");
    let names: Vec<&str> = listed.iter().map(|m| m.name.as_str()).collect();
    assert_eq!(names, ["bastion-1", "web-1"]);
    assert_eq!(listed[1], expected);

    let found = store
        .machine_for_cert(&"ab".repeat(32), 1_500)
        .await
        .expect("lookup");
    assert_eq!(found.as_ref(), Some(&expected));
    // Fingerprints compare as lowercase hex.
    let found = store
        .machine_for_cert(&"AB".repeat(32), 1_500)
        .await
        .expect("lookup");
    assert_eq!(found.as_ref(), Some(&expected));
    assert_eq!(
        store
            .machine_for_cert(&"cd".repeat(32), 1_500)
            .await
            .expect("lookup"),
        None
    );

    let revoked = store
        .revoke_machine(&machine_name("web-1"), 50_000)
        .await
        .expect("revoke");
    assert_eq!(revoked.revoked_at_ms, Some(50_000));
    assert_eq!(
        store
            .machine_for_cert(&"ab".repeat(32), 1_500)
            .await
            .expect("lookup"),
        None
    );
    let again = store
        .revoke_machine(&machine_name("web-1"), 60_000)
        .await
        .expect("revoke again");
    assert_eq!(again.revoked_at_ms, Some(50_000));
    // History stays: the revoked machine is still listed; the other one
    // still authenticates.
    let listed = store.list_machines().await.expect("list");
    assert_eq!(listed.len(), 2);
    assert_eq!(listed[1], again);
    assert!(
        store
            .machine_for_cert(&"01".repeat(32), 1_500)
            .await
            .expect("lookup")
            .is_some()
    );

    match store.revoke_machine(&machine_name("ghost"), 1).await {
        Err(StoreError::NotFound { what }) => assert_eq!(what, "machine \"ghost\""),
        other => panic!("expected not found, got {other:?}"),
    }
    // An expired certificate no longer authenticates, even unrevoked
    // (TLS session resumption would not check its dates again).
    store
        .create_machine(&new_machine("short-lived", 0x33))
        .await
        .expect("create");
    let fingerprint = "33".repeat(32);
    assert!(
        store
            .machine_for_cert(&fingerprint, 8_999_999)
            .await
            .expect("lookup")
            .is_some()
    );
    assert_eq!(
        store
            .machine_for_cert(&fingerprint, 9_000_000)
            .await
            .expect("lookup"),
        None
    );
}

async fn machine_conflicts_on_name_and_fingerprint(db: Db) {
    let store = &db.store;
    store
        .create_machine(&new_machine("bastion-1", 0x01))
        .await
        .expect("create");

    match store.create_machine(&new_machine("bastion-1", 0x02)).await {
        Err(StoreError::Conflict { what }) => {
            assert_eq!(what, "machine \"bastion-1\" already exists")
        }
        other => panic!("expected a name conflict, got {other:?}"),
    }
    match store.create_machine(&new_machine("bastion-2", 0x01)).await {
        Err(StoreError::Conflict { what }) => assert!(what.contains("certificate"), "{what}"),
        other => panic!("expected a fingerprint conflict, got {other:?}"),
    }
    // A revoked machine's name is never reused.
    store
        .revoke_machine(&machine_name("bastion-1"), 3_000)
        .await
        .expect("revoke");
    assert!(matches!(
        store.create_machine(&new_machine("bastion-1", 0x03)).await,
        Err(StoreError::Conflict { .. })
    ));
    assert_eq!(store.list_machines().await.expect("list").len(), 1);
}

async fn migrations_are_idempotent(db: Db) {
    db.store
        .create_user(&new_user("alice", &[Role::Admin]))
        .await
        .expect("create");
    let again = Store::open(&db.url).await.expect("open a second time");
    let third = Store::open(&db.url).await.expect("open a third time");
    assert!(
        again
            .get_user(&user_name("alice"))
            .await
            .expect("get")
            .is_some()
    );
    third.ping().await.expect("ping");

    let mut conn = AnyConnection::connect(&db.url)
        .await
        .expect("raw connection");
    // Through `Executor`: `Query::fetch_all`'s future is not provably `Send`.
    let versions: Vec<(i64, String)> = conn
        .fetch_all("SELECT version, name FROM schema_migrations ORDER BY version")
        .await
        .expect("read schema_migrations")
        .iter()
        .map(|row| (row.get(0), row.get(1)))
        .collect();
    assert_eq!(
        versions,
        [
            (1, "identities".to_owned()),
            (2, "welllog_shared".to_owned()),
            (3, "access".to_owned()),
            (4, "ssh_sessions".to_owned())
        ]
    );
    conn.close().await.expect("close");
}

async fn newer_schema_is_refused(db: Db) {
    db.store.close().await;
    raw_sql(
        &db.url,
        "INSERT INTO schema_migrations (version, name, applied_at_ms) VALUES (9999, 'future', 0)",
    )
    .await;
    match Store::open(&db.url).await {
        Err(StoreError::Migration { version, detail }) => {
            assert_eq!(version, 9999);
            assert_eq!(
                detail,
                "database schema version 9999 is newer than this rempart knows (4)"
            );
        }
        other => panic!("expected a migration error, got {other:?}"),
    }
}

async fn corrupt_rows_are_errors_not_panics(db: Db) {
    let store = &db.store;
    let hash = token();
    raw_sql(
        &db.url,
        &format!(
            "INSERT INTO users (name, roles, created_at_ms) VALUES ('merlin', 'wizard', 1);
             INSERT INTO api_tokens (token_hash, user_name, created_at_ms)
                 VALUES ('{}', 'merlin', 1);
             INSERT INTO machines (name, role, cert_sha256, cert_serial, not_after_ms,
                                   created_at_ms, created_by)
                 VALUES ('Not A Name', 'bastion', 'ee', '01', 1, 1, 'x')",
            hash.to_hex()
        ),
    )
    .await;

    is_corrupt(
        store.get_user(&user_name("merlin")).await.map(|_| ()),
        "get_user",
    );
    is_corrupt(store.list_users().await.map(|_| ()), "list_users");
    is_corrupt(
        store.user_for_token(&hash, 2).await.map(|_| ()),
        "user_for_token",
    );
    is_corrupt(store.list_machines().await.map(|_| ()), "list_machines");
    is_corrupt(
        store.machine_for_cert("ee", 0).await.map(|_| ()),
        "machine_for_cert",
    );
    // The rest of the store still works.
    store
        .create_user(&new_user("alice", &[Role::Admin]))
        .await
        .expect("create");
    assert!(
        store
            .get_user(&user_name("alice"))
            .await
            .expect("get")
            .is_some()
    );
}

/// The last enabled admin cannot be disabled, even by two admins disabling
/// each other at the same moment.
async fn the_last_admin_stays_enabled(db: Db) {
    let store = &db.store;
    for round in 0..5 {
        let (ada, grace) = (format!("ada{round}"), format!("grace{round}"));
        for name in [&ada, &grace] {
            store
                .create_user(&new_user(name, &[Role::Admin]))
                .await
                .expect("create");
        }
        if round > 0 {
            // Only ada and grace are enabled admins when they race.
            let keeper = user_name(&format!("keeper{}", round - 1));
            store
                .disable_user(&keeper, 5_000)
                .await
                .expect("previous keeper");
        }
        let (ada_name, grace_name) = (user_name(&ada), user_name(&grace));
        let (a, b) = tokio::join!(
            store.disable_user(&ada_name, 5_000),
            store.disable_user(&grace_name, 5_000),
        );
        let enabled_admins = store
            .list_users()
            .await
            .expect("list")
            .into_iter()
            .filter(|u| u.disabled_at_ms.is_none() && u.roles.contains(Role::Admin))
            .count();
        assert_eq!(enabled_admins, 1, "round {round}: {a:?} {b:?}");
        match (a, b) {
            (Ok(_), Err(StoreError::Conflict { what }))
            | (Err(StoreError::Conflict { what }), Ok(_)) => {
                assert!(what.contains("last enabled admin"), "{what}")
            }
            other => panic!("round {round}: exactly one may succeed: {other:?}"),
        }
        // Hand over to a keeper, the last admin until the next round.
        let survivor = if enabled_admin(store, &ada).await {
            ada
        } else {
            grace
        };
        store
            .create_user(&new_user(&format!("keeper{round}"), &[Role::Admin]))
            .await
            .expect("keeper");
        store
            .disable_user(&user_name(&survivor), 5_000)
            .await
            .expect("survivor");
        store
            .disable_user(&user_name(&format!("keeper{round}")), 5_000)
            .await
            .expect_err("the last admin");
    }
}

async fn enabled_admin(store: &Store, name: &str) -> bool {
    store
        .get_user(&user_name(name))
        .await
        .expect("get")
        .is_some_and(|u| u.disabled_at_ms.is_none())
}

/// Two token replacements at once leave exactly one active token.
async fn concurrent_token_replacements_leave_one_token(db: Db) {
    let store = &db.store;
    store
        .create_user(&new_user("tess", &[Role::Engineer]))
        .await
        .expect("create");
    for round in 0..10 {
        let (first, second) = (token(), token());
        let now = 10_000 + round;
        let tess = user_name("tess");
        let (a, b) = tokio::join!(
            store.replace_token(&tess, &first, now, None),
            store.replace_token(&tess, &second, now, None),
        );
        a.expect("first");
        b.expect("second");
        let mut active = 0;
        for hash in [first, second] {
            if store
                .user_for_token(&hash, now + 1)
                .await
                .expect("lookup")
                .is_some()
            {
                active += 1;
            }
        }
        assert_eq!(active, 1, "round {round}");
    }
}

async fn two_stores_opened_together_share_the_database(url: String) {
    // Both run their migrations at once on an empty database: on PostgreSQL
    // the advisory lock serialises them, on SQLite the write lock does.
    let (a, b) = tokio::join!(Store::open(&url), Store::open(&url));
    let (a, b) = (a.expect("first store"), b.expect("second store"));

    a.create_user(&new_user("alice", &[Role::Engineer]))
        .await
        .expect("create via a");
    assert!(
        b.get_user(&user_name("alice"))
            .await
            .expect("get via b")
            .is_some()
    );
    let hash = token();
    b.replace_token(&user_name("alice"), &hash, 1_000, None)
        .await
        .expect("token via b");
    assert!(
        a.user_for_token(&hash, 1_001)
            .await
            .expect("lookup via a")
            .is_some()
    );
    b.create_machine(&new_machine("agent-1", 0x07))
        .await
        .expect("machine via b");
    assert_eq!(a.list_machines().await.expect("list via a").len(), 1);
    a.disable_user(&user_name("alice"), 2_000)
        .await
        .expect("disable via a");
    assert_eq!(
        b.user_for_token(&hash, 2_001).await.expect("lookup via b"),
        None
    );
}

/// The control plane opens its store as sole writer: on SQLite it then caches
/// identity lookups, and every change it makes is seen by the next lookup.
async fn the_sole_writer_sees_its_own_changes_at_once(url: String) {
    let store = Store::open_exclusive(&url)
        .await
        .expect("open as sole writer");
    let sqlite = store.backend() == Backend::Sqlite;
    assert_eq!(store.caches_identities(), sqlite);
    match Store::open_exclusive(&url).await {
        Err(StoreError::Locked { detail }) if sqlite => {
            assert!(detail.contains("another rempart process"), "{detail}")
        }
        Ok(_) if !sqlite => {} // PostgreSQL: several nodes write.
        other => panic!("second sole writer: {:?}", other.map(|s| s.backend())),
    }

    store
        .create_user(&new_user("alice", &[Role::Engineer]))
        .await
        .expect("create");
    let first = token();
    store
        .replace_token(&user_name("alice"), &first, 1_000, Some(5_000))
        .await
        .expect("token");
    for now in [1_001, 1_002] {
        // The second lookup comes from the cache on SQLite.
        assert!(
            store
                .user_for_token(&first, now)
                .await
                .expect("lookup")
                .is_some()
        );
    }
    // A cached token still expires on time.
    assert_eq!(
        store.user_for_token(&first, 5_000).await.expect("lookup"),
        None
    );

    let second = token();
    store
        .replace_token(&user_name("alice"), &second, 1_003, None)
        .await
        .expect("replace");
    assert_eq!(
        store.user_for_token(&first, 1_004).await.expect("lookup"),
        None
    );
    assert!(
        store
            .user_for_token(&second, 1_004)
            .await
            .expect("lookup")
            .is_some()
    );
    store
        .disable_user(&user_name("alice"), 1_005)
        .await
        .expect("disable");
    assert_eq!(
        store.user_for_token(&second, 1_006).await.expect("lookup"),
        None
    );

    let machine = new_machine("agent-1", 0x42);
    store.create_machine(&machine).await.expect("machine");
    for _ in 0..2 {
        let found = store
            .machine_for_cert(&machine.cert_sha256, 1_500)
            .await
            .expect("lookup");
        assert_eq!(found.map(|m| m.name), Some(machine_name("agent-1")));
    }
    store
        .revoke_machine(&machine_name("agent-1"), 2_000)
        .await
        .expect("revoke");
    assert_eq!(
        store
            .machine_for_cert(&machine.cert_sha256, 1_500)
            .await
            .expect("lookup"),
        None
    );

    // Closing releases the lock: another process may serve it next.
    store.close().await;
    drop(store);
    if sqlite {
        Store::open_exclusive(&url)
            .await
            .expect("the lock was released");
    }
}

/// SQLite runs in WAL mode (kept in the file), so readers never wait for the
/// writer.
#[tokio::test]
async fn sqlite_database_is_in_wal_mode() {
    run(Backend::Sqlite, sqlite_wal).await
}

async fn sqlite_wal(db: Db) {
    let mut conn = AnyConnection::connect(&db.url)
        .await
        .expect("raw connection");
    let mode: String = conn
        .fetch_one("PRAGMA journal_mode")
        .await
        .expect("read the journal mode")
        .get(0);
    assert_eq!(mode, "wal");
    conn.close().await.expect("close");
}

#[test]
fn admin_url_rewrites() {
    assert_eq!(
        with_database_name("postgres://postgres@127.0.0.1:54329/postgres", "t"),
        "postgres://postgres@127.0.0.1:54329/t"
    );
    assert_eq!(
        with_database_name("postgresql://u:p@h/postgres?sslmode=disable", "t"),
        "postgresql://u:p@h/t?sslmode=disable"
    );
    assert_eq!(
        with_database_name("postgres://h:5432", "t"),
        "postgres://h:5432/t"
    );
}

// ---------------------------------------------------------------------------
// The shared well-log (several nodes on PostgreSQL)

/// A batch of `count` entries whose payloads name `tag`.
fn batch(tag: &str, count: usize) -> Vec<([u8; 32], Vec<u8>)> {
    (0..count)
        .map(|i| {
            let payload = format!("{{\"kind\":\"test\",\"msg\":\"{tag}-{i}\"}}").into_bytes();
            let mut leaf = [0u8; 32];
            leaf[..payload.len().min(32)].copy_from_slice(&payload[..payload.len().min(32)]);
            leaf[31] = i as u8;
            (leaf, payload)
        })
        .collect()
}

fn payload_text(entry: &SharedEntry) -> String {
    String::from_utf8(entry.payload.clone().expect("a payload")).expect("utf-8")
}

async fn shared_welllog_sequences_batches_in_order(db: Db) {
    let store = &db.store;
    assert_eq!(store.welllog_size().await.expect("size"), 0);
    let a1 = store
        .welllog_submit("node-a", &batch("a1", 3), 1)
        .await
        .expect("submit a1");
    let b1 = store
        .welllog_submit("node-b", &batch("b1", 2), 2)
        .await
        .expect("submit b1");
    // Submitted is not sequenced.
    assert_eq!(store.welllog_size().await.expect("size"), 0);
    assert!(
        store
            .welllog_sequenced("node-a", a1)
            .await
            .expect("sequenced")
            .is_empty()
    );
    assert!(matches!(
        store.welllog_submit("node-a", &[], 3).await,
        Err(StoreError::Invalid { .. })
    ));

    let mut sequencer = store.welllog_sequencer().await.expect("sequencer");
    assert!(matches!(
        sequencer.sequence(10, 1000).await,
        Err(StoreError::Invalid { .. })
    ));
    assert!(sequencer.try_lead().await.expect("lead"));
    assert_eq!(
        sequencer.sequence(10, 1000).await.expect("sequence"),
        Some(0..5)
    );
    assert_eq!(sequencer.sequence(10, 1000).await.expect("nothing"), None);
    assert_eq!(store.welllog_size().await.expect("size"), 5);
    assert_eq!(
        store.welllog_sequenced("node-a", a1).await.expect("a"),
        vec![(a1, 0)]
    );
    assert_eq!(
        store.welllog_sequenced("node-b", b1).await.expect("b"),
        vec![(b1, 3)]
    );

    // A bound on entries stops between batches, never inside one.
    store
        .welllog_submit("node-a", &batch("a2", 4), 4)
        .await
        .expect("a2");
    store
        .welllog_submit("node-b", &batch("b2", 1), 5)
        .await
        .expect("b2");
    assert_eq!(
        sequencer.sequence(10, 2).await.expect("bounded"),
        Some(5..9)
    );
    assert_eq!(sequencer.sequence(10, 2).await.expect("rest"), Some(9..10));

    let all = store.welllog_read(0, 100).await.expect("read all");
    let texts: Vec<String> = all.iter().map(payload_text).collect();
    let expected: Vec<String> = [
        "a1-0", "a1-1", "a1-2", "b1-0", "b1-1", "a2-0", "a2-1", "a2-2", "a2-3", "b2-0",
    ]
    .iter()
    .map(|m| format!("{{\"kind\":\"test\",\"msg\":\"{m}\"}}"))
    .collect();
    assert_eq!(texts, expected);
    assert_eq!(
        all.iter().map(|e| e.seq).collect::<Vec<_>>(),
        (0..10).collect::<Vec<_>>()
    );
    assert_eq!(all[4].leaf, batch("b1", 2)[1].0);
    assert_eq!(
        store.welllog_leaf(4).await.expect("leaf"),
        Some(batch("b1", 2)[1].0)
    );
    assert_eq!(store.welllog_leaf(10).await.expect("no leaf"), None);
    // Reads are in whole batches: from 3 asking for 1 gives b1 whole.
    let part = store.welllog_read(3, 1).await.expect("read part");
    assert_eq!(part.iter().map(|e| e.seq).collect::<Vec<_>>(), vec![3, 4]);
    assert!(
        store
            .welllog_read(10, 5)
            .await
            .expect("at the end")
            .is_empty()
    );
    // From inside a batch (a copy cut short by a crash): the rest of it.
    let rest = store.welllog_read(1, 1).await.expect("read from inside");
    assert_eq!(rest.iter().map(|e| e.seq).collect::<Vec<_>>(), vec![1, 2]);

    // Settings: the first value recorded wins.
    assert_eq!(
        store
            .welllog_claim_setting("verifier_key", "key-a")
            .await
            .expect("claim"),
        "key-a"
    );
    assert_eq!(
        store
            .welllog_claim_setting("verifier_key", "key-b")
            .await
            .expect("claim again"),
        "key-a"
    );
}

async fn shared_welllog_erasure_keeps_the_leaf(db: Db) {
    let store = &db.store;
    store
        .welllog_submit("n", &batch("x", 3), 1)
        .await
        .expect("submit");
    let mut sequencer = store.welllog_sequencer().await.expect("sequencer");
    assert!(sequencer.try_lead().await.expect("lead"));
    sequencer.sequence(10, 100).await.expect("sequence");

    assert_eq!(store.welllog_erase(&[1], 10).await.expect("erase"), 1);
    assert_eq!(store.welllog_erase(&[1], 11).await.expect("again"), 0);
    match store.welllog_erase(&[2, 3], 12).await {
        Err(StoreError::NotFound { what }) => assert_eq!(what, "well-log entry 3"),
        other => panic!("expected not found, got {other:?}"),
    }
    // All or nothing: entry 2 of the refused order keeps its payload.
    let entries = store.welllog_read(0, 3).await.expect("read");
    assert!(entries[0].payload.is_some());
    assert_eq!(entries[1].payload, None);
    assert_eq!(entries[1].leaf, batch("x", 3)[1].0);
    assert!(entries[2].payload.is_some());
    assert_eq!(
        store.welllog_erasures(0, 10).await.expect("erasures"),
        vec![(1, 1)]
    );
    assert!(
        store
            .welllog_erasures(1, 10)
            .await
            .expect("after the first")
            .is_empty()
    );
    assert_eq!(
        store
            .welllog_erased_among(&[0, 1, 2])
            .await
            .expect("erased among"),
        vec![1]
    );
}

async fn shared_welllog_damage_is_corrupt(db: Db) {
    let store = &db.store;
    store
        .welllog_submit("n", &batch("x", 3), 1)
        .await
        .expect("submit");
    store
        .welllog_submit("n", &batch("y", 2), 1)
        .await
        .expect("submit");
    let mut sequencer = store.welllog_sequencer().await.expect("sequencer");
    assert!(sequencer.try_lead().await.expect("lead"));
    sequencer.sequence(10, 100).await.expect("sequence");
    // A batch moved so that the log has a hole.
    raw_sql(
        &db.url,
        "UPDATE welllog_batches SET first_seq = 7 WHERE first_seq = 3",
    )
    .await;
    match store.welllog_read(3, 10).await {
        Err(StoreError::Corrupt { detail }) => {
            assert!(detail.contains("no batch starting at entry 3"), "{detail}")
        }
        other => panic!("expected corrupt, got {other:?}"),
    }
    raw_sql(
        &db.url,
        "UPDATE welllog_batches SET first_seq = 3 WHERE first_seq = 7",
    )
    .await;
    // A row removed behind the store's back is a missing entry, named.
    raw_sql(
        &db.url,
        "DELETE FROM welllog_entries WHERE batch_id = (SELECT MIN(id) FROM welllog_batches) AND position = 1",
    )
    .await;
    match store.welllog_read(0, 10).await {
        Err(StoreError::Corrupt { detail }) => assert!(detail.contains("entry 1"), "{detail}"),
        other => panic!("expected corrupt, got {other:?}"),
    }
    // A leaf of the wrong length.
    raw_sql(
        &db.url,
        "UPDATE welllog_batches SET first_seq = 3 WHERE first_seq = 7",
    )
    .await;
    let bad_leaf = match store.backend() {
        Backend::Sqlite => "UPDATE welllog_entries SET leaf = X'00' WHERE position = 0",
        Backend::Postgres => "UPDATE welllog_entries SET leaf = '\\x00' WHERE position = 0",
    };
    // The CHECK constraint refuses it at the door on both backends.
    let mut conn = AnyConnection::connect(&db.url).await.expect("connect");
    assert!(conn.execute(bad_leaf).await.is_err());
    conn.close().await.expect("close");
}

/// On PostgreSQL exactly one session holds the sequencer's lock; when it
/// ends, another takes over and carries on from where the log ends.
#[tokio::test]
async fn postgres_one_sequencer_at_a_time() {
    run(Backend::Postgres, |db| async move {
        let second = Store::open(&db.url).await.expect("a second node");
        let mut first_sequencer = db.store.welllog_sequencer().await.expect("sequencer 1");
        let mut second_sequencer = second.welllog_sequencer().await.expect("sequencer 2");
        let mut notices = second
            .welllog_notifications()
            .await
            .expect("listen")
            .expect("postgres notifies");
        assert!(first_sequencer.try_lead().await.expect("lead 1"));
        assert!(!second_sequencer.try_lead().await.expect("lead 2"));
        assert!(matches!(
            second_sequencer.sequence(10, 10).await,
            Err(StoreError::Invalid { .. })
        ));

        second
            .welllog_submit("b", &batch("b", 2), 1)
            .await
            .expect("submit");
        assert_eq!(
            notices.next().await.expect("notice"),
            Some(Notice::Submitted)
        );
        assert_eq!(
            first_sequencer.sequence(10, 10).await.expect("sequence"),
            Some(0..2)
        );
        assert_eq!(
            notices.next().await.expect("notice"),
            Some(Notice::Sequenced)
        );

        // The sequencer's session ends (its process died): the lock is free.
        drop(first_sequencer);
        let mut took_over = false;
        for _ in 0..50 {
            if second_sequencer.try_lead().await.expect("lead 2") {
                took_over = true;
                break;
            }
            tokio::time::sleep(std::time::Duration::from_millis(100)).await;
        }
        assert!(took_over, "the lock was not released");
        db.store
            .welllog_submit("a", &batch("a", 1), 2)
            .await
            .expect("submit");
        assert_eq!(
            second_sequencer.sequence(10, 10).await.expect("sequence"),
            Some(2..3)
        );
        db.store.welllog_erase(&[0], 3).await.expect("erase");
        // Skip the two notices of the submission and the sequencing.
        let mut seen = Vec::new();
        for _ in 0..3 {
            seen.push(notices.next().await.expect("notice"));
        }
        assert_eq!(
            seen,
            vec![
                Some(Notice::Submitted),
                Some(Notice::Sequenced),
                Some(Notice::Erased)
            ]
        );
        second.close().await;
    })
    .await
}

/// Nodes submitting while the sequencer works get contiguous, distinct
/// ranges; and the database itself refuses a range given twice (`first_seq`
/// is unique), whoever tries.
#[tokio::test]
async fn postgres_concurrent_submitters_get_distinct_ranges() {
    run(Backend::Postgres, |db| async move {
        let mut sequencer = db.store.welllog_sequencer().await.expect("sequencer");
        assert!(sequencer.try_lead().await.expect("lead"));
        let mut submitters = Vec::new();
        for node in 0..4 {
            let store = db.store.clone();
            submitters.push(tokio::spawn(async move {
                for round in 0..20 {
                    store
                        .welllog_submit(
                            &format!("n{node}"),
                            &batch(&format!("{node}-{round}"), 1 + round % 3),
                            1,
                        )
                        .await
                        .expect("submit");
                }
            }));
        }
        let mut sequenced = 0;
        // Sequence while they submit (bounded: 200 rounds of 5 ms at most).
        for _ in 0..200 {
            if submitters.iter().all(|s| s.is_finished()) {
                break;
            }
            if let Some(range) = sequencer.sequence(7, 1000).await.expect("sequence") {
                assert_eq!(range.start, sequenced, "contiguous");
                sequenced = range.end;
            } else {
                tokio::time::sleep(std::time::Duration::from_millis(5)).await;
            }
        }
        for submitter in submitters {
            submitter.await.expect("submitter");
        }
        while let Some(range) = sequencer.sequence(100, 10_000).await.expect("rest") {
            assert_eq!(range.start, sequenced);
            sequenced = range.end;
        }
        // 4 nodes x (rounds 0..20 of 1, 2 or 3 entries).
        let per_node: u64 = (0..20).map(|r| 1 + r % 3).sum();
        assert_eq!(sequenced, 4 * per_node);
        let all = db.store.welllog_read(0, sequenced).await.expect("read");
        assert_eq!(all.len() as u64, sequenced);
        let mut texts: Vec<String> = all.iter().map(payload_text).collect();
        texts.sort();
        texts.dedup();
        assert_eq!(texts.len() as u64, sequenced, "no entry twice");
        // A second claim on an existing range is refused by the database.
        let mut conn = AnyConnection::connect(&db.url).await.expect("connect");
        let twice = conn
            .execute(
                "UPDATE welllog_batches SET first_seq = 0 \
                 WHERE id = (SELECT MAX(id) FROM welllog_batches)",
            )
            .await;
        assert!(twice.is_err(), "a range was given twice");
        conn.close().await.expect("close");
    })
    .await
}

// ---------------------------------------------------------------------------
// Access requests and training

fn resource(reference: &str, labels: &[(&str, &str)]) -> rempart_store::Resource {
    rempart_store::Resource {
        resource: reference.parse().expect("a resource"),
        labels: labels
            .iter()
            .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
            .collect(),
        created_at_ms: 1,
        created_by: "admin".into(),
    }
}

fn access_request(requester: &str, resources: &[&str], needed: u32) -> rempart_access::Request {
    rempart_access::Request {
        id: String::new(),
        requester: requester.into(),
        resources: resources
            .iter()
            .map(|r| r.parse().expect("a resource"))
            .collect(),
        reason: "INC-7 the replica is stuck".into(),
        created_at_ms: 1_000,
        start_ms: None,
        duration_ms: 3_600_000,
        approvals_needed: needed,
        pending_until_ms: 1_000 + 86_400_000,
    }
}

fn approve(reviewer: &str, at: i64) -> rempart_store::Transition {
    rempart_store::Transition::Review(rempart_access::Review {
        reviewer: reviewer.into(),
        decision: rempart_access::Decision::Approve,
        comment: "ok".into(),
        at_ms: at,
    })
}

async fn with_users(store: &Store, names: &[&str]) {
    for name in names {
        store
            .create_user(&new_user(name, &[Role::Engineer]))
            .await
            .expect("user");
    }
}

async fn resources_are_registered_once(db: Db) {
    let store = &db.store;
    let db1 = resource("host:db-1", &[("env", "prod"), ("data", "pii")]);
    store.add_resource(&db1).await.expect("add");
    store
        .add_resource(&resource("db:payments", &[("env", "prod")]))
        .await
        .expect("add");
    match store.add_resource(&db1).await {
        Err(StoreError::Conflict { what }) => assert!(what.contains("host:db-1"), "{what}"),
        other => panic!("expected a conflict, got {other:?}"),
    }
    let listed = store.list_resources().await.expect("list");
    assert_eq!(
        listed
            .iter()
            .map(|r| r.resource.to_string())
            .collect::<Vec<_>>(),
        vec!["db:payments", "host:db-1"]
    );
    assert_eq!(listed[1], db1);
    let got = store
        .get_resources(&["host:db-1".parse().expect("ref")])
        .await
        .expect("get");
    assert_eq!(got, vec![db1]);
    match store
        .get_resources(&[
            "host:db-1".parse().expect("ref"),
            "host:nope".parse().expect("ref"),
        ])
        .await
    {
        Err(StoreError::NotFound { what }) => assert_eq!(what, "resource host:nope"),
        other => panic!("expected not found, got {other:?}"),
    }
}

async fn requests_keep_their_rows_in_order(db: Db) {
    let store = &db.store;
    with_users(store, &["alice", "sam"]).await;
    store
        .add_resource(&resource("host:db-1", &[]))
        .await
        .expect("resource");
    let id = store
        .create_request(&access_request("alice", &["host:db-1"], 1))
        .await
        .expect("create");
    // A refusal writes nothing.
    let refused = store
        .transition(&id, |_| Err::<rempart_store::Transition, _>("not allowed"))
        .await
        .expect("runs");
    assert_eq!(refused, Err("not allowed"));
    let after = store
        .transition(&id, |rows| {
            assert!(rows.reviews.is_empty());
            Ok::<_, ()>(approve("sam", 2_000))
        })
        .await
        .expect("runs")
        .expect("allowed");
    let (after, added) = after;
    assert_eq!(after.reviews.len(), 1);
    assert_eq!(added, approve("sam", 2_000), "the row added comes back");
    let stored = store.get_request(&id).await.expect("get").expect("exists");
    assert_eq!(stored, after);
    assert_eq!(stored.request.id, id);
    assert_eq!(stored.request.resources[0].to_string(), "host:db-1");
    // One reviewer, one row: the database refuses a second one.
    match store
        .transition(&id, |_| Ok::<_, ()>(approve("sam", 3_000)))
        .await
    {
        Err(StoreError::Conflict { what }) => assert!(what.contains("already reviewed"), "{what}"),
        other => panic!("expected a conflict, got {other:?}"),
    }
    let revoked = store
        .transition(&id, |_| {
            Ok::<_, ()>(rempart_store::Transition::Action(rempart_access::Action {
                kind: rempart_access::ActionKind::Revoke,
                actor: "sam".into(),
                reason: "done early".into(),
                at_ms: 4_000,
            }))
        })
        .await
        .expect("runs")
        .expect("allowed");
    assert_eq!(revoked.0.actions.len(), 1);
    assert!(store.get_request("999").await.expect("get").is_none());
    assert!(
        store
            .get_request("not-a-number")
            .await
            .expect("get")
            .is_none()
    );
    assert!(matches!(
        store
            .transition("999", |_| Ok::<_, ()>(approve("sam", 1)))
            .await,
        Err(StoreError::NotFound { .. })
    ));
    // Listing, newest first; and the requests that matter for a check.
    let second = store
        .create_request(&access_request("alice", &["host:db-1"], 1))
        .await
        .expect("create");
    let mine = store
        .list_requests(Some("alice"), None, 10)
        .await
        .expect("list");
    assert_eq!(
        mine.iter()
            .map(|r| r.request.id.clone())
            .collect::<Vec<_>>(),
        vec![second.clone(), id.clone()]
    );
    assert!(
        store
            .list_requests(Some("sam"), None, 10)
            .await
            .expect("list")
            .is_empty()
    );
    let older = store
        .list_requests(Some("alice"), Some(&second), 10)
        .await
        .expect("page");
    assert_eq!(older.len(), 1, "one request older than the second");
    let relevant = store.requests_of("alice", 0).await.expect("of");
    assert_eq!(relevant.len(), 2);
    let long_after = 1_000 + 86_400_000 + 3_600_000 + 1;
    assert!(
        store
            .requests_of("alice", long_after)
            .await
            .expect("of")
            .is_empty()
    );
}

async fn concurrent_reviews_cross_the_threshold_once(db: Db) {
    use rempart_access::{State, status};
    let store = &db.store;
    with_users(store, &["alice", "sam", "kim", "lee"]).await;
    store
        .add_resource(&resource("host:db-1", &[]))
        .await
        .expect("resource");
    let id = store
        .create_request(&access_request("alice", &["host:db-1"], 2))
        .await
        .expect("create");
    store
        .transition(&id, |_| Ok::<_, ()>(approve("ghost", 1_500)))
        .await
        .expect_err("ghost is not a user: the foreign key refuses");
    store
        .transition(&id, |_| Ok::<_, ()>(approve("sam", 2_000)))
        .await
        .expect("runs")
        .expect("allowed");
    // Two more approvals at the same instant, from two connections: each
    // decides on the rows the other committed, so exactly one sees the
    // request go from pending to approved.
    let crossed = |reviewer: &'static str| {
        let store = store.clone();
        let id = id.clone();
        async move {
            let mut was_pending = false;
            let after = store
                .transition(&id, |rows| {
                    let before = status(&rows.request, &rows.reviews, &rows.actions, 3_000);
                    was_pending = before.state == State::Pending;
                    if was_pending {
                        Ok(approve(reviewer, 3_000))
                    } else {
                        Err("already decided")
                    }
                })
                .await
                .expect("runs");
            after.map(|(rows, _)| {
                was_pending
                    && status(&rows.request, &rows.reviews, &rows.actions, 3_000).state
                        == State::Approved
            })
        }
    };
    let (kim, lee) = tokio::join!(crossed("kim"), crossed("lee"));
    let outcomes = [kim, lee];
    assert_eq!(
        outcomes.iter().filter(|o| **o == Ok(true)).count(),
        1,
        "{outcomes:?}"
    );
    assert_eq!(
        outcomes
            .iter()
            .filter(|o| **o == Err("already decided"))
            .count(),
        1,
        "{outcomes:?}"
    );
    let rows = store.get_request(&id).await.expect("get").expect("exists");
    let final_status = status(&rows.request, &rows.reviews, &rows.actions, 3_000);
    assert_eq!(final_status.state, State::Approved);
    assert_eq!(final_status.approvals, 2);
}

async fn training_is_recorded_all_or_nothing(db: Db) {
    let store = &db.store;
    with_users(store, &["alice"]).await;
    let module = rempart_store::TrainingModule {
        name: "security-basics".into(),
        valid_for_ms: 365 * 86_400_000,
        created_at_ms: 1,
        created_by: "admin".into(),
    };
    store.add_training_module(&module).await.expect("module");
    assert!(matches!(
        store.add_training_module(&module).await,
        Err(StoreError::Conflict { .. })
    ));
    assert_eq!(
        store.training_modules().await.expect("modules"),
        vec![module]
    );
    let record = |user: &str, module: &str| rempart_store::TrainingRecord {
        user: user.into(),
        module: module.into(),
        completed_at_ms: 10,
        recorded_at_ms: 11,
        recorded_by: "admin".into(),
    };
    match store
        .record_training(&[
            record("alice", "security-basics"),
            record("bob", "security-basics"),
        ])
        .await
    {
        Err(StoreError::NotFound { what }) => assert_eq!(what, "user \"bob\""),
        other => panic!("expected not found, got {other:?}"),
    }
    assert!(
        store
            .training_records(None)
            .await
            .expect("records")
            .is_empty()
    );
    assert!(matches!(
        store.record_training(&[record("alice", "phishing")]).await,
        Err(StoreError::NotFound { .. })
    ));
    store
        .record_training(&[record("alice", "security-basics")])
        .await
        .expect("record");
    assert_eq!(
        store
            .training_records(Some("alice"))
            .await
            .expect("records"),
        vec![record("alice", "security-basics")]
    );
}

/// A recording is stored once (the same again is a retry, other content a
/// conflict), binary-safe; a session's summary likewise.
async fn sessions_and_recordings_are_kept_as_sent(db: Db) {
    use rempart_store::{RecordingInfo, SshSession, Stored};
    let content: Vec<u8> = (0..=255u8).cycle().take(70_000).collect();
    let info = RecordingInfo {
        session: "s-0123456789abcdef".into(),
        name: "s-0123456789abcdef-0".into(),
        sha256: "aa".repeat(32),
        size: 70_000,
    };
    let store = &db.store;
    assert_eq!(
        store
            .add_recording(&info, &content, "machine:bastion-1", 1)
            .await
            .expect("stored"),
        Stored::New
    );
    assert_eq!(
        store
            .add_recording(&info, &content, "machine:bastion-1", 2)
            .await
            .expect("again"),
        Stored::Again
    );
    let other = RecordingInfo {
        sha256: "bb".repeat(32),
        ..info.clone()
    };
    assert!(matches!(
        store
            .add_recording(&other, b"other", "machine:bastion-1", 3)
            .await,
        Err(StoreError::Conflict { .. })
    ));
    assert_eq!(
        store
            .recording_content(&info.session, &info.name)
            .await
            .expect("read"),
        Some(content)
    );
    assert_eq!(
        store.recordings_of(&info.session).await.expect("list"),
        std::slice::from_ref(&info)
    );
    let session = SshSession {
        id: info.session.clone(),
        user: "alice".into(),
        target: "db-1".into(),
        grant: "1".into(),
        bastion: "machine:bastion-1".into(),
        client: "127.0.0.1:5000".into(),
        started_at_ms: 10,
        ended_at_ms: 20,
        reason: "the user closed the connection".into(),
        bytes_from_user: 3,
        bytes_to_user: 4,
        received_at_ms: 30,
    };
    assert_eq!(
        store.add_ssh_session(&session).await.expect("stored"),
        Stored::New
    );
    let retry = SshSession {
        received_at_ms: 40,
        ..session.clone()
    };
    assert_eq!(
        store.add_ssh_session(&retry).await.expect("again"),
        Stored::Again
    );
    let changed = SshSession {
        reason: "something else".into(),
        ..session.clone()
    };
    assert!(matches!(
        store.add_ssh_session(&changed).await,
        Err(StoreError::Conflict { .. })
    ));
    assert_eq!(
        store.list_ssh_sessions(10).await.expect("list"),
        std::slice::from_ref(&session)
    );
    assert_eq!(
        store.ssh_session(&session.id).await.expect("get"),
        Some(session)
    );
    assert_eq!(store.ssh_session("s-none").await.expect("get"), None);
}
