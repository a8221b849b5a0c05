//! The statement observer on real traffic: a relay in this test passes a
//! libpq session through to the PostgreSQL that `scripts/test` starts
//! (`REMPART_TEST_POSTGRES_URL`), shows both streams to an `Observer`, and
//! the statements it reports are checked against what `psql` and `pgbench`
//! (simple, extended and prepared modes) sent. No TLS and no
//! authentication of its own: those belong to the proxy, not the observer.

use std::process::Command;
use std::sync::{Arc, Mutex};

use rempart_pgproxy::statements::{Copy, Observer, Protocol, Statement};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};

fn database() -> Option<(String, String, String)> {
    let url = std::env::var("REMPART_TEST_POSTGRES_URL").ok()?;
    // postgres://USER@HOST:PORT/DB
    let rest = url.strip_prefix("postgres://")?;
    let (user, rest) = rest.split_once('@')?;
    let (address, db) = rest.split_once('/')?;
    Some((user.to_owned(), address.to_owned(), db.to_owned()))
}

/// Relays connections to `upstream`, observing each; every statement lands
/// in `seen`.
async fn relay(listener: TcpListener, upstream: String, seen: Arc<Mutex<Vec<Statement>>>) {
    loop {
        let Ok((mut client, _)) = listener.accept().await else {
            return;
        };
        let upstream = upstream.clone();
        let seen = seen.clone();
        tokio::spawn(async move {
            let mut server = TcpStream::connect(&upstream).await.expect("upstream");
            // The startup packet (no type byte) goes through untouched.
            let mut length = [0u8; 4];
            client.read_exact(&mut length).await.expect("startup");
            let mut body = vec![0u8; u32::from_be_bytes(length) as usize - 4];
            client.read_exact(&mut body).await.expect("startup");
            server.write_all(&length).await.expect("write");
            server.write_all(&body).await.expect("write");
            let observer = Arc::new(Mutex::new(Observer::default()));
            let (mut client_read, mut client_write) = client.into_split();
            let (mut server_read, mut server_write) = server.into_split();
            let upward = {
                let observer = observer.clone();
                async move {
                    let mut buf = vec![0u8; 64 * 1024];
                    while let Ok(n) = client_read.read(&mut buf).await {
                        if n == 0 {
                            break;
                        }
                        observer
                            .lock()
                            .expect("lock")
                            .from_client(&buf[..n])
                            .expect("the client's stream reads");
                        if server_write.write_all(&buf[..n]).await.is_err() {
                            break;
                        }
                    }
                    let _ = server_write.shutdown().await;
                }
            };
            let downward = async move {
                let mut buf = vec![0u8; 64 * 1024];
                while let Ok(n) = server_read.read(&mut buf).await {
                    if n == 0 {
                        break;
                    }
                    let done = observer
                        .lock()
                        .expect("lock")
                        .from_server(&buf[..n])
                        .expect("the server's stream reads");
                    seen.lock().expect("lock").extend(done);
                    if client_write.write_all(&buf[..n]).await.is_err() {
                        break;
                    }
                }
            };
            tokio::join!(upward, downward);
        });
    }
}

fn run(program: &str, args: &[&str], port: u16, user: &str, db: &str) -> String {
    let out = Command::new(program)
        .args(args)
        .env("PGHOST", "127.0.0.1")
        .env("PGPORT", port.to_string())
        .env("PGUSER", user)
        .env("PGDATABASE", db)
        .env("PGSSLMODE", "disable")
        .output()
        .unwrap_or_else(|e| panic!("{program} runs: {e}"));
    assert!(
        out.status.success(),
        "{program} {args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn psql_and_pgbench_statements_are_seen_as_sent() {
    let Some((user, address, db)) = database() else {
        eprintln!("skipped: REMPART_TEST_POSTGRES_URL is not set (scripts/test sets it)");
        return;
    };
    let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
    let port = listener.local_addr().expect("addr").port();
    let seen = Arc::new(Mutex::new(Vec::new()));
    tokio::spawn(relay(listener, address, seen.clone()));
    let take = |seen: &Arc<Mutex<Vec<Statement>>>| std::mem::take(&mut *seen.lock().expect("lock"));

    // psql: simple queries, an error, COPY both ways.
    let (u, d) = (user.clone(), db.clone());
    let table = format!("rempart_observer_{}", std::process::id());
    let script = format!(
        "DROP TABLE IF EXISTS {table}; CREATE TABLE {table} (n int, s text);\n\
         INSERT INTO {table} VALUES (1, 'a'), (2, 'b');\n\
         SELECT n, s FROM {table} ORDER BY n;\n\
         \\copy {table} FROM stdin\n3\tc\n4\td\n\\.\n\
         \\copy {table} TO stdout\n\
         DROP TABLE {table};\n"
    );
    let file = std::env::temp_dir().join(format!("{table}.sql"));
    std::fs::write(&file, script).expect("write");
    let path = file.to_str().expect("utf-8").to_owned();
    let output = tokio::task::spawn_blocking(move || {
        run(
            "psql",
            &["-X", "-q", "-v", "ON_ERROR_STOP=1", "-f", &path],
            port,
            &u,
            &d,
        )
    })
    .await
    .expect("psql");
    let _ = std::fs::remove_file(&file);
    assert!(output.contains("4\td"), "{output}");
    tokio::time::sleep(std::time::Duration::from_millis(200)).await;
    let statements = take(&seen);
    let sql: Vec<&str> = statements.iter().map(|s| s.sql.as_str()).collect();
    let insert = statements
        .iter()
        .find(|s| s.sql.starts_with("INSERT"))
        .unwrap_or_else(|| panic!("{sql:?}"));
    assert_eq!(insert.tags, ["INSERT 0 2"]);
    assert_eq!(insert.protocol, Protocol::Simple);
    let select = statements
        .iter()
        .find(|s| s.sql.starts_with("SELECT n, s"))
        .unwrap_or_else(|| panic!("{sql:?}"));
    assert_eq!(select.rows, 2);
    assert!(
        // psql sends the rows and its end-of-data line: 8 bytes and more.
        statements
            .iter()
            .any(|s| matches!(s.copy, Some(Copy::In(n)) if n >= 8) && s.tags == ["COPY 2"]),
        "{statements:?}"
    );
    assert!(
        statements
            .iter()
            .any(|s| matches!(s.copy, Some(Copy::Out(n)) if n == 16)),
        "{statements:?}"
    );

    // An error is reported with its SQLSTATE.
    let (u, d) = (user.clone(), db.clone());
    let failed = tokio::task::spawn_blocking(move || {
        Command::new("psql")
            .args(["-X", "-q", "-c", "SELECT 1/0"])
            .env("PGHOST", "127.0.0.1")
            .env("PGPORT", port.to_string())
            .env("PGUSER", u)
            .env("PGDATABASE", d)
            .env("PGSSLMODE", "disable")
            .output()
            .expect("psql runs")
    })
    .await
    .expect("psql");
    assert!(!failed.status.success());
    tokio::time::sleep(std::time::Duration::from_millis(200)).await;
    let statements = take(&seen);
    assert!(
        statements
            .iter()
            .any(|s| s.error.as_deref() == Some("22012: division by zero")),
        "{statements:?}"
    );

    // pgbench in its three modes: every transaction's statements are seen.
    let (u, d) = (user.clone(), db.clone());
    tokio::task::spawn_blocking(move || run("pgbench", &["-i", "-q", "-s", "1"], port, &u, &d))
        .await
        .expect("pgbench -i");
    let _ = take(&seen);
    for mode in ["simple", "extended", "prepared"] {
        let (u, d) = (user.clone(), db.clone());
        tokio::task::spawn_blocking(move || {
            run(
                "pgbench",
                &["-n", "-S", "-t", "50", "-M", mode],
                port,
                &u,
                &d,
            )
        })
        .await
        .expect("pgbench");
        tokio::time::sleep(std::time::Duration::from_millis(200)).await;
        let statements = take(&seen);
        let selects: Vec<&Statement> = statements
            .iter()
            .filter(|s| s.sql.contains("SELECT abalance FROM pgbench_accounts"))
            .collect();
        assert_eq!(selects.len(), 50, "{mode}: {statements:?}");
        assert!(
            selects.iter().all(|s| s.rows == 1 && s.error.is_none()),
            "{mode}"
        );
        if mode != "simple" {
            assert!(
                selects
                    .iter()
                    .all(|s| s.protocol == Protocol::Extended && s.parameters.len() == 1),
                "{mode}: {selects:?}"
            );
        }
    }
}

/// The proxy's own startup on the real database: a session ready for
/// queries, with the server's parameters and cancel key; an unknown role
/// refused with the server's reason.
#[tokio::test]
async fn the_service_role_connects_and_an_unknown_one_is_refused() {
    use rempart_pgproxy::upstream::{ServiceRole, UpstreamError, start};
    let Some((user, address, db)) = database() else {
        eprintln!("skipped: REMPART_TEST_POSTGRES_URL is not set (scripts/test sets it)");
        return;
    };
    let role = ServiceRole {
        user: user.clone(),
        database: db.clone(),
        password: None,
        application_name: "rempart test".into(),
        settings: vec![("DateStyle".into(), "ISO, DMY".into())],
    };
    let stream = TcpStream::connect(&address).await.expect("connect");
    let mut ready = start(stream, &role).await.expect("ready");
    assert!(
        ready.parameters.iter().any(|(k, _)| k == "server_version"),
        "{:?}",
        ready.parameters
    );
    assert!(ready.cancel_key.is_some());
    // The client's session settings reach the database.
    assert!(
        ready
            .parameters
            .iter()
            .any(|(k, v)| k == "DateStyle" && v == "ISO, DMY"),
        "{:?}",
        ready.parameters
    );
    // The session answers a query (simple protocol, read raw).
    let sql = b"SELECT 41 + 1\0";
    let mut query = vec![b'Q'];
    query.extend_from_slice(&((sql.len() + 4) as u32).to_be_bytes());
    query.extend_from_slice(sql);
    ready.stream.write_all(&query).await.expect("send");
    let mut answer = Vec::new();
    let mut buf = [0u8; 4096];
    while !answer.ends_with(b"Z\0\0\0\x05I") {
        let n = ready.stream.read(&mut buf).await.expect("read");
        assert!(n > 0, "closed early");
        answer.extend_from_slice(&buf[..n]);
    }
    assert!(answer.windows(2).any(|w| w == b"42"), "{answer:?}");

    let stranger = ServiceRole {
        user: "rempart_no_such_role".into(),
        ..role
    };
    let stream = TcpStream::connect(&address).await.expect("connect");
    match start(stream, &stranger).await {
        Err(UpstreamError::Refused(why)) => assert!(why.starts_with("28000"), "{why}"),
        other => panic!("{other:?}"),
    }
}
