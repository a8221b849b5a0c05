//! The data proxy with the real parts: `rempart serve`, `rempart bastion`
//! with its PostgreSQL listener, the PostgreSQL that `scripts/test` starts
//! (`REMPART_TEST_POSTGRES_URL`; the bastion logs in to it as a service
//! role that must prove its password with SCRAM-SHA-256), and the stock
//! `psql` and `pgbench` with a certificate from `rempart login --db`.
//! Every process is killed when its guard drops, also when a test fails.

mod common;

use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::{Command, Output, Stdio};
use std::time::{Duration, Instant};

use common::{
    BIN, Backend, Deployment, Guard, PgDatabase, Server, add_user, advance_clock, free_port, grant,
    logged_until, psql, stderr, stdout, wait_output,
};

/// The service role of `scripts/test`'s pg_hba.conf: SCRAM-SHA-256 only.
const SERVICE_ROLE: &str = "rempart_scram";
const SERVICE_PASSWORD: &str = "correct horse battery staple";
/// The service role's lines in `bastion.toml`.
const SERVICE_LOGIN: &str = "user = \"rempart_scram\"\npassword_file = \"payments.password\"";

/// The service role, made once for the PostgreSQL cluster (tests of this
/// file may race to make it: the loser finds it made).
fn service_role(admin_url: &str) {
    let sql = format!(
        "DO $$ BEGIN IF NOT EXISTS (SELECT FROM pg_roles WHERE rolname = '{SERVICE_ROLE}') THEN \
         CREATE ROLE {SERVICE_ROLE} LOGIN PASSWORD '{SERVICE_PASSWORD}'; END IF; END $$"
    );
    for _ in 0..3 {
        if psql(admin_url, &sql).status.success() {
            return;
        }
        std::thread::sleep(Duration::from_millis(200));
    }
    panic!("the service role could not be made");
}

struct Lab {
    _deployment: Deployment,
    server: Server,
    dir: PathBuf,
    admin: String,
    alice: String,
    sam: String,
    database: PgDatabase,
    postgres: SocketAddr,
    bastion: Guard,
}

impl Lab {
    fn start() -> Lab {
        Lab::start_with(&format!(
            "{SERVICE_LOGIN}\ndanger_upstream_plaintext = true"
        ))
    }

    /// With `upstream` as the database's roles and TLS in `bastion.toml`.
    fn start_with(upstream: &str) -> Lab {
        let deployment = Deployment::init(Backend::Sqlite);
        let listen = format!("127.0.0.1:{}", free_port());
        let server = Server::start(
            &deployment.data_dir(),
            &["--listen", &listen, "--danger-test-clock"],
        );
        let admin = deployment.admin_token.clone();
        let dir = deployment.dir.path().join("lab");
        std::fs::create_dir(&dir).expect("mkdir");
        let alice = add_user(&server, &admin, "alice", "engineer");
        let sam = add_user(&server, &admin, "sam", "security");
        let out = server.cli(&admin, &["resource", "add", "db", "payments"]);
        assert!(out.status.success(), "{}", stderr(&out));

        // The real database, owned by the service role.
        let database = PgDatabase::create();
        service_role(&database.admin_url());
        let out = psql(
            &database.admin_url(),
            &format!("ALTER DATABASE {} OWNER TO {SERVICE_ROLE}", database.name),
        );
        assert!(out.status.success(), "{}", stderr(&out));
        let password = dir.join("payments.password");
        std::fs::write(&password, format!("{SERVICE_PASSWORD}\n")).expect("write");
        let pg_address = database
            .url
            .split_once('@')
            .and_then(|(_, rest)| rest.split_once('/'))
            .map(|(address, _)| address.to_owned())
            .expect("host:port in the URL");

        // The bastion, as bastion-1, serving TLS as 127.0.0.1 and localhost.
        let machine = dir.join("machine");
        std::fs::create_dir(&machine).expect("mkdir");
        let out = server.cli(
            &admin,
            &[
                "machine",
                "add",
                "bastion-1",
                "--role",
                "bastion",
                "--server-name",
                "127.0.0.1",
                "--server-name",
                "localhost",
                "--out",
                machine.to_str().expect("utf-8"),
            ],
        );
        assert!(out.status.success(), "{}", stderr(&out));
        let config = dir.join("bastion.toml");
        std::fs::write(
            &config,
            format!(
                "listen = \"127.0.0.1:0\"\nstate_dir = \"bastion-state\"\ngrant_recheck_ms = 500\n\n\
                 [control_plane]\nserver = \"{}\"\nca_cert = \"{}\"\ncert = \"machine/bastion-1.crt\"\nkey = \"machine/bastion-1.key\"\n\n\
                 [postgres]\nlisten = \"127.0.0.1:0\"\n\n\
                 [[postgres.database]]\nname = \"payments\"\naddress = \"{pg_address}\"\nupstream_database = \"{}\"\n\
                 {upstream}\n",
                server.url,
                server.ca_cert.display(),
                database.name,
            ),
        )
        .expect("write");
        let (bastion, postgres) = start_bastion(&dir);
        let lab = Lab {
            _deployment: deployment,
            server,
            dir,
            admin,
            alice,
            sam,
            database,
            postgres,
            bastion,
        };
        lab.wait_until_ready();
        lab
    }

    /// `rempart login --db payments` for `token` into `<dir>/<name>`:
    /// the libpq connection string that uses its files.
    fn login(&self, token: &str, name: &str, user: &str) -> String {
        let files = self.dir.join(name);
        let out = self.server.cli(
            token,
            &[
                "login",
                "--db",
                "payments",
                "--db-dir",
                files.to_str().expect("utf-8"),
                "--db-bastion",
                &self.postgres.to_string(),
            ],
        );
        assert!(out.status.success(), "{}", stderr(&out));
        assert!(
            stdout(&out).contains("sslmode=verify-full"),
            "{}",
            stdout(&out)
        );
        format!(
            "host=127.0.0.1 port={} dbname=payments user={user} sslmode=verify-full sslrootcert={} sslcert={} sslkey={} connect_timeout=10",
            self.postgres.port(),
            files.join("root.crt").display(),
            files.join("client.crt").display(),
            files.join("client.key").display(),
        )
    }

    /// Access to db:payments for alice, approved by sam; the request id.
    fn grant(&self, duration: &str) -> String {
        grant(
            &self.server,
            &self.alice,
            &self.sam,
            "db:payments",
            "INC-4712 reconcile the payouts of yesterday",
            duration,
        )
    }

    /// The bastion learns the database user CA shortly after it starts.
    fn wait_until_ready(&self) {
        let conninfo = format!(
            "host=127.0.0.1 port={} dbname=payments user=nobody sslmode=require connect_timeout=5",
            self.postgres.port()
        );
        let deadline = Instant::now() + Duration::from_secs(20);
        loop {
            let out = psql_command(&conninfo, &["-c", "SELECT 1"]);
            // Once TLS is offered, a client without a certificate fails in
            // the handshake instead of being told the CA is not known.
            if !stderr(&out).contains("cannot check database certificates yet") {
                return;
            }
            assert!(
                Instant::now() < deadline,
                "the bastion never learned the CA"
            );
            std::thread::sleep(Duration::from_millis(200));
        }
    }

    fn logged_until(
        &self,
        query: &str,
        enough: impl Fn(&[serde_json::Value]) -> bool,
    ) -> Vec<serde_json::Value> {
        logged_until(&self.server, &self.admin, query, enough)
    }

    /// An interactive psql through the bastion that has sent `first` and
    /// whose database session is open; its stdin, to type more.
    fn open_session(&self, conninfo: &str, first: &[u8]) -> (Guard, std::process::ChildStdin) {
        let mut open = Guard(
            Command::new("psql")
                .arg(conninfo)
                .args(["-X"])
                .stdin(Stdio::piped())
                .stderr(Stdio::piped())
                .stdout(Stdio::null())
                .spawn()
                .expect("psql runs"),
        );
        let mut input = open.0.stdin.take().expect("stdin");
        std::io::Write::write_all(&mut input, first).expect("write");
        wait_for(
            || self.upstream_sessions("alice") == 1,
            "the session to open",
        );
        (open, input)
    }

    /// Sessions of the service role on the real database (pg_stat_activity).
    fn upstream_sessions(&self, user: &str) -> usize {
        let out = Command::new("psql")
            .args([
                &self.database.admin_url(),
                "-Atc",
                &format!(
                    "SELECT count(*) FROM pg_stat_activity WHERE application_name LIKE 'rempart {user} %'"
                ),
            ])
            .output()
            .expect("psql runs");
        stdout(&out).trim().parse().unwrap_or(usize::MAX)
    }
}

/// Starts `rempart bastion`; its SSH and PostgreSQL addresses.
fn start_bastion(dir: &std::path::Path) -> (Guard, SocketAddr) {
    let log = std::fs::File::create(dir.join("bastion.log")).expect("log");
    let mut child = Command::new(BIN)
        .args(["bastion", "--config"])
        .arg(dir.join("bastion.toml"))
        .env("RUST_LOG", "info")
        .stdout(Stdio::piped())
        .stderr(log)
        .spawn()
        .expect("the bastion starts");
    let mut reader = std::io::BufReader::new(child.stdout.take().expect("piped"));
    let guard = Guard(child);
    let mut lines = Vec::new();
    for _ in 0..2 {
        let mut line = String::new();
        std::io::BufRead::read_line(&mut reader, &mut line).expect("reads");
        lines.push(line);
    }
    let postgres = lines
        .iter()
        .find_map(|l| l.trim().strip_prefix("postgres listening on "))
        .unwrap_or_else(|| {
            let log = std::fs::read_to_string(dir.join("bastion.log")).unwrap_or_default();
            panic!("the bastion printed {lines:?}; its log:\n{log}")
        })
        .parse()
        .expect("an address");
    (guard, postgres)
}

fn psql_command(conninfo: &str, args: &[&str]) -> Output {
    Command::new("psql")
        .arg(conninfo)
        .args(["-X", "-v", "ON_ERROR_STOP=1"])
        .args(args)
        .output()
        .expect("psql runs")
}

/// The statements of the comparison, run directly and through the bastion.
const SCRIPT: &str = "\
CREATE TABLE payouts (id int PRIMARY KEY, merchant text, amount numeric(12,2), at timestamptz, tags text[], meta jsonb);
INSERT INTO payouts SELECT g, 'merchant-' || (g % 7), g * 1.25, timestamptz '2026-11-01 00:00:00+00' + g * interval '1 hour', ARRAY['a', 'b' || g], jsonb_build_object('n', g) FROM generate_series(1, 500) g;
SELECT merchant, count(*), sum(amount), min(at), max(tags[2]), max((meta->>'n')::int) FROM payouts GROUP BY merchant ORDER BY merchant;
SELECT * FROM payouts WHERE id IN (1, 250, 500) ORDER BY id;
UPDATE payouts SET amount = amount + 1 WHERE id <= 10;
SELECT 'é ü 漢字', NULL::text, 1e300::float8, interval '1 day 2 hours';
";

#[test]
fn psql_through_the_bastion_is_psql_on_the_database_and_every_statement_is_logged() {
    let lab = Lab::start();
    let conninfo = lab.login(&lab.alice, "alice-db", "alice");

    // No grant: refused, with the reason.
    let out = psql_command(&conninfo, &["-c", "SELECT 1"]);
    assert!(!out.status.success());
    assert!(
        stderr(&out).contains("no grant for db:payments"),
        "{}",
        stderr(&out)
    );

    let grant = lab.grant("1h");
    // The same script through the bastion and directly (on a copy of the
    // database's state: the direct run goes second, after a reset).
    let through = psql_command(&conninfo, &["-A", "-c", SCRIPT]);
    assert!(through.status.success(), "{}", stderr(&through));
    let reset = psql(&lab.database.url, "DROP TABLE payouts");
    assert!(reset.status.success(), "{}", stderr(&reset));
    let direct = psql_command(&lab.database.url, &["-A", "-c", SCRIPT]);
    assert!(direct.status.success(), "{}", stderr(&direct));
    assert_eq!(stdout(&through), stdout(&direct));
    assert!(
        stdout(&through).contains("merchant-3|72|"),
        "{}",
        stdout(&through)
    );

    // An error comes back as the database said it.
    let out = psql_command(&conninfo, &["-c", "SELECT * FROM no_such_table"]);
    assert!(
        stderr(&out).contains("relation \"no_such_table\" does not exist"),
        "{}",
        stderr(&out)
    );

    // COPY both ways, through psql's \copy.
    let rows = lab.dir.join("rows.csv");
    let back = lab.dir.join("back.csv");
    let csv: String = (1..=2000).map(|i| format!("{i},row {i}\n")).collect();
    std::fs::write(&rows, &csv).expect("write");
    let copy = format!(
        "CREATE TABLE imported (id int, note text);\n\\copy imported FROM '{}' WITH (FORMAT csv)\n\\copy (SELECT * FROM imported ORDER BY id) TO '{}' WITH (FORMAT csv)\n",
        rows.display(),
        back.display()
    );
    let script = lab.dir.join("copy.sql");
    std::fs::write(&script, copy).expect("write");
    let out = psql_command(&conninfo, &["-f", script.to_str().expect("utf-8")]);
    assert!(out.status.success(), "{}", stderr(&out));
    assert_eq!(std::fs::read_to_string(&back).expect("read"), csv);

    // Notices and notifications reach the client.
    let out = psql_command(
        &conninfo,
        &[
            "-c",
            "DO $$ BEGIN RAISE NOTICE 'careful: %', 42; END $$",
            "-c",
            "LISTEN payouts_done",
            "-c",
            "NOTIFY payouts_done, 'batch 7'",
        ],
    );
    assert!(out.status.success(), "{}", stderr(&out));
    assert!(
        stderr(&out).contains("NOTICE:  careful: 42"),
        "{}",
        stderr(&out)
    );
    assert!(
        stdout(&out)
            .contains("Asynchronous notification \"payouts_done\" with payload \"batch 7\""),
        "{}",
        stdout(&out)
    );

    // The well-log: every statement, with who and by which grant.
    let queries = lab.logged_until("kind:db.query actor:alice", |hits| hits.len() >= 10);
    for query in &queries {
        assert_eq!(query["grant"], grant.as_str(), "{query}");
        assert_eq!(query["target"], "db:payments", "{query}");
        assert!(
            query["session"]
                .as_str()
                .is_some_and(|s| s.starts_with("s-"))
        );
    }
    let find = |needle: &str| {
        queries
            .iter()
            .find(|q| q["sql"].as_str().is_some_and(|s| s.contains(needle)))
            .unwrap_or_else(|| panic!("no db.query for {needle:?} in {queries:#?}"))
    };
    let update = find("UPDATE payouts SET amount");
    assert_eq!(update["protocol"], "simple");
    assert!(
        update["tag"]
            .as_str()
            .is_some_and(|t| t.contains("UPDATE 10")),
        "{update}"
    );
    let failed = find("no_such_table");
    assert_eq!(failed["outcome"], "failure");
    assert!(
        failed["error"]
            .as_str()
            .is_some_and(|e| e.starts_with("42P01"))
    );
    let copy_in = find("COPY  imported FROM STDIN");
    assert_eq!(copy_in["copy"]["direction"], "in");
    assert_eq!(copy_in["copy"]["bytes"], csv.len());
    let copy_out = find("COPY  ( SELECT * FROM imported ORDER BY id ) TO STDOUT");
    assert_eq!(copy_out["copy"]["direction"], "out");
    assert_eq!(copy_out["rows"], 2000);
    assert_eq!(copy_out["copy"]["bytes"], csv.len());

    // Sessions start and end in the log, with their counts.
    let ends = lab.logged_until("kind:db.session.end actor:alice", |hits| hits.len() >= 3);
    assert!(ends.len() >= 3, "{ends:?}");
    assert!(ends.iter().all(|e| e["grant"] == grant.as_str()));
    assert!(
        ends.iter()
            .any(|e| e["statements"].as_u64().is_some_and(|n| n >= 3)
                && e["bytes_to_client"].as_u64().is_some_and(|n| n > 2000)),
        "{ends:?}"
    );
    let refused = lab.logged_until("kind:db.auth outcome:denied actor:alice", |h| !h.is_empty());
    assert!(
        refused[0]["reason"]
            .as_str()
            .is_some_and(|r| r.contains("no grant for db:payments")),
        "{refused:?}"
    );
}

#[test]
fn connections_without_tls_or_with_the_wrong_identity_are_refused() {
    let lab = Lab::start();
    let conninfo = lab.login(&lab.alice, "alice-db", "alice");
    lab.grant("1h");

    // Without TLS: a PostgreSQL error that says what to do.
    let plain = format!(
        "host=127.0.0.1 port={} dbname=payments user=alice sslmode=disable",
        lab.postgres.port()
    );
    let out = psql_command(&plain, &["-c", "SELECT 1"]);
    assert!(!out.status.success());
    assert!(
        stderr(&out).contains("accepts only TLS connections with a client certificate"),
        "{}",
        stderr(&out)
    );

    // TLS without a client certificate: the handshake fails.
    let anonymous = format!(
        "host=127.0.0.1 port={} dbname=payments user=alice sslmode=verify-full sslrootcert={}",
        lab.postgres.port(),
        lab.dir.join("alice-db").join("root.crt").display()
    );
    let out = psql_command(&anonymous, &["-c", "SELECT 1"]);
    assert!(!out.status.success(), "{}", stdout(&out));

    // Alice's certificate, but another user or database named at startup.
    let as_sam = conninfo.replace("user=alice", "user=sam");
    let out = psql_command(&as_sam, &["-c", "SELECT 1"]);
    assert!(
        stderr(&out).contains("the certificate is alice's"),
        "{}",
        stderr(&out)
    );
    let other_db = conninfo.replace("dbname=payments", "dbname=ledger");
    let out = psql_command(&other_db, &["-c", "SELECT 1"]);
    assert!(
        stderr(&out).contains("the certificate is for db:payments, not db:ledger"),
        "{}",
        stderr(&out)
    );
    // A session setting that could change who the session runs as.
    let out = Command::new("psql")
        .arg(&conninfo)
        .args(["-X", "-c", "SELECT 1"])
        .env("PGOPTIONS", "-c role=postgres")
        .output()
        .expect("psql runs");
    assert!(
        stderr(&out).contains("\"options\" is not passed"),
        "{}",
        stderr(&out)
    );
    // And the right one works.
    let out = psql_command(&conninfo, &["-Atc", "SELECT current_user"]);
    assert!(out.status.success(), "{}", stderr(&out));
    assert_eq!(stdout(&out).trim(), SERVICE_ROLE);

    let failures = lab.logged_until("kind:db.auth outcome:failure", |h| h.len() >= 4);
    let reasons: Vec<&str> = failures
        .iter()
        .filter_map(|f| f["reason"].as_str())
        .collect();
    for needle in [
        "accepts only TLS",
        "the certificate is alice's",
        "not db:ledger",
    ] {
        assert!(
            reasons.iter().any(|r| r.contains(needle)),
            "{needle}: {reasons:?}"
        );
    }

    // The control plane away: the grant cannot be checked, so no session.
    let mut lab = lab;
    lab.server.kill();
    let out = psql_command(&conninfo, &["-c", "SELECT 1"]);
    assert!(!out.status.success(), "{}", stdout(&out));
    assert!(
        stderr(&out).contains("cannot be checked now")
            && stderr(&out).contains("the bastion refuses what it cannot check"),
        "{}",
        stderr(&out)
    );
}

#[test]
fn pgbench_runs_through_the_bastion_in_all_three_modes() {
    let lab = Lab::start();
    let conninfo = lab.login(&lab.alice, "alice-db", "alice");
    lab.grant("1h");
    let pgbench = |args: &[&str]| {
        let out = Command::new("pgbench")
            .args(args)
            .arg(&conninfo)
            .output()
            .expect("pgbench runs");
        assert!(out.status.success(), "pgbench {args:?}: {}", stderr(&out));
        stdout(&out)
    };
    pgbench(&["-i", "-q", "-s", "1"]);
    for mode in ["simple", "extended", "prepared"] {
        let report = pgbench(&["-M", mode, "-c", "2", "-t", "20", "-n"]);
        assert!(
            report.contains("number of transactions actually processed: 40/40"),
            "{mode}: {report}"
        );
    }
    // 3 × 40 transactions of 7 statements, each in the well-log (under
    // the 1,000 hits a search returns at most).
    let is_update = |q: &serde_json::Value| {
        q["sql"]
            .as_str()
            .is_some_and(|s| s.starts_with("UPDATE pgbench_accounts"))
    };
    let queries = lab.logged_until("kind:db.query actor:alice", |hits| {
        hits.iter().filter(|q| is_update(q)).count() >= 120
    });
    let updates: Vec<&serde_json::Value> = queries.iter().filter(|q| is_update(q)).collect();
    assert_eq!(updates.len(), 120, "every UPDATE of every transaction");
    let extended = updates
        .iter()
        .filter(|q| q["protocol"] == "extended")
        .count();
    assert_eq!(extended, 80, "extended and prepared modes");
    assert!(
        updates
            .iter()
            .filter(|q| q["protocol"] == "extended")
            .all(|q| q["parameters"].as_array().is_some_and(|p| p.len() == 2)),
        "bound values logged"
    );
}

#[test]
fn sessions_are_cut_when_the_grant_is_revoked_or_ends_and_queries_can_be_cancelled() {
    let lab = Lab::start();
    let conninfo = lab.login(&lab.alice, "alice-db", "alice");

    // Cancel: psql sends a cancel request on SIGINT.
    lab.grant("10m");
    let sleeper = Guard(
        Command::new("psql")
            .arg(&conninfo)
            .args(["-X", "-c", "SELECT pg_sleep(30)"])
            .stderr(Stdio::piped())
            .spawn()
            .expect("psql runs"),
    );
    std::thread::sleep(Duration::from_millis(1500));
    let _ = Command::new("kill")
        .args(["-INT", &sleeper.0.id().to_string()])
        .status();
    let out = wait_output(sleeper, Duration::from_secs(10));
    assert!(
        stderr(&out).contains("canceling statement due to user request"),
        "{}",
        stderr(&out)
    );
    let cancels = lab.logged_until("kind:db.cancel outcome:success actor:alice", |h| {
        !h.is_empty()
    });
    assert_eq!(cancels[0]["target"], "db:payments");

    // Ended: the access clock moves past the grant's end while a session
    // is open; the database session goes within seconds.
    let (open, mut input) = lab.open_session(&conninfo, b"SELECT 1;\n");
    advance_clock(&lab.server, &lab.admin, "11m");
    let moved = Instant::now();
    wait_for(
        || lab.upstream_sessions("alice") == 0,
        "the session to be cut",
    );
    assert!(moved.elapsed() < Duration::from_secs(5), "cut late");
    // psql hears it on its next statement.
    let _ = std::io::Write::write_all(&mut input, b"SELECT 2;\n");
    drop(input);
    let out = wait_output(open, Duration::from_secs(10));
    assert!(
        stderr(&out).contains("rempart: your grant for db:payments ended"),
        "{}",
        stderr(&out)
    );

    // Revoked: the same, by the security team.
    let id = lab.grant("1h");
    let (open, mut input) = lab.open_session(&conninfo, b"BEGIN; SELECT 1;\n");
    let out = lab.server.cli(
        &lab.sam,
        &["access", "revoke", &id, "--reason", "incident closed"],
    );
    assert!(out.status.success(), "{}", stderr(&out));
    let revoked = Instant::now();
    wait_for(
        || lab.upstream_sessions("alice") == 0,
        "the session to be cut",
    );
    assert!(revoked.elapsed() < Duration::from_secs(5), "cut late");
    let _ = std::io::Write::write_all(&mut input, b"SELECT 2;\n");
    drop(input);
    let out = wait_output(open, Duration::from_secs(10));
    assert!(
        stderr(&out).contains("rempart: your grant for db:payments ended: revoked"),
        "{}",
        stderr(&out)
    );

    let ends = lab.logged_until("kind:db.session.end actor:alice", |hits| {
        hits.iter()
            .filter(|e| e["reason"].as_str().is_some_and(|r| r.contains("ended")))
            .count()
            >= 2
    });
    assert!(
        ends.iter().any(|e| e["reason"]
            .as_str()
            .is_some_and(|r| r.contains("ended: revoked"))),
        "{ends:?}"
    );
}

fn wait_for(done: impl Fn() -> bool, what: &str) {
    let deadline = Instant::now() + Duration::from_secs(15);
    while !done() {
        assert!(Instant::now() < deadline, "waited too long for {what}");
        std::thread::sleep(Duration::from_millis(100));
    }
}

/// A startup packet for `user` on `database`.
fn startup_packet(user: &str, database: &str) -> Vec<u8> {
    let mut body = Vec::new();
    body.extend_from_slice(&196_608i32.to_be_bytes());
    for text in ["user", user, "database", database, ""] {
        body.extend_from_slice(text.as_bytes());
        body.push(0);
    }
    let mut packet = (u32::try_from(body.len() + 4).expect("small"))
        .to_be_bytes()
        .to_vec();
    packet.extend_from_slice(&body);
    packet
}

/// `openssl s_client` speaking PostgreSQL's SSL negotiation with alice's
/// certificate, then sending `bytes` raw; what came back. With
/// `hang_up_after`, the client leaves after that many seconds (s_client
/// waits for the server to close, which a proxy waiting for the rest of a
/// message does not); without, the proxy must close within 20 s.
fn raw_tls_session(lab: &Lab, bytes: &[u8], hang_up_after: Option<u64>) -> String {
    let files = lab.dir.join("alice-db");
    let limit = hang_up_after.unwrap_or(20).to_string();
    let mut child = Command::new("timeout")
        .args([
            limit.as_str(),
            "openssl",
            "s_client",
            "-quiet",
            "-starttls",
            "postgres",
        ])
        .arg("-connect")
        .arg(lab.postgres.to_string())
        .arg("-CAfile")
        .arg(files.join("root.crt"))
        .arg("-cert")
        .arg(files.join("client.crt"))
        .arg("-key")
        .arg(files.join("client.key"))
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("openssl runs");
    let mut input = child.stdin.take().expect("stdin");
    std::io::Write::write_all(&mut input, bytes).expect("write");
    drop(input);
    let out = child.wait_with_output().expect("openssl ends");
    if hang_up_after.is_none() {
        assert_ne!(out.status.code(), Some(124), "the session hung");
    }
    String::from_utf8_lossy(&out.stdout).into_owned()
}

#[test]
fn malformed_oversized_and_stalled_clients_do_not_hurt_the_proxy() {
    use std::io::{Read, Write};
    let lab = Lab::start();
    let conninfo = lab.login(&lab.alice, "alice-db", "alice");
    lab.grant("1h");

    // Before TLS: an impossible length gets an error naming it.
    let mut stream = std::net::TcpStream::connect(lab.postgres).expect("connect");
    stream
        .set_read_timeout(Some(Duration::from_secs(10)))
        .expect("timeout");
    stream.write_all(&[0, 0, 0, 3]).expect("write");
    let mut answer = Vec::new();
    let _ = stream.read_to_end(&mut answer);
    assert!(
        String::from_utf8_lossy(&answer).contains("a startup packet of 3 bytes"),
        "{answer:?}"
    );

    // A client stalled in the middle of its startup holds only itself.
    let mut stalled = std::net::TcpStream::connect(lab.postgres).expect("connect");
    stalled.write_all(&[0, 0, 0, 100, 0, 3]).expect("write");

    // After TLS and a granted startup: a message shorter than its header
    // ends the session with a protocol error, and so does one that claims
    // more than 64 MiB; the database saw neither.
    let mut malformed = startup_packet("alice", "payments");
    malformed.extend_from_slice(b"Q\0\0\0\x03");
    let said = raw_tls_session(&lab, &malformed, None);
    assert!(
        said.contains("cannot follow the client's messages"),
        "{said:?}"
    );
    let mut oversized = startup_packet("alice", "payments");
    oversized.extend_from_slice(b"Q\x7f\xff\xff\xffSELECT");
    let said = raw_tls_session(&lab, &oversized, None);
    assert!(said.contains("more than 67108864"), "{said:?}");
    // A statement cut short: the session waits for the rest, then ends
    // when the client goes, and nothing half-sent ran.
    let mut truncated = startup_packet("alice", "payments");
    truncated.extend_from_slice(b"Q\0\0\0\x40CREATE TABLE half_sent (x int)");
    let said = raw_tls_session(&lab, &truncated, Some(3));
    assert!(said.contains("server_version"), "{said:?}");
    let out = psql(&lab.database.url, "SELECT 'half_sent'::regclass");
    assert!(!out.status.success(), "the half-sent statement ran");

    // Through all of it the proxy serves the others.
    let out = psql_command(&conninfo, &["-Atc", "SELECT 6 * 7"]);
    assert!(out.status.success(), "{}", stderr(&out));
    assert_eq!(stdout(&out).trim(), "42");
    drop(stalled);
    let failures = lab.logged_until("kind:db.session.end actor:alice", |hits| {
        hits.iter()
            .filter(|e| {
                e["reason"]
                    .as_str()
                    .is_some_and(|r| r.contains("cannot follow"))
            })
            .count()
            >= 2
    });
    assert!(
        failures
            .iter()
            .filter(|e| e["reason"]
                .as_str()
                .is_some_and(|r| r.contains("cannot follow")))
            .count()
            >= 2,
        "{failures:?}"
    );
}

/// The CA of the test PostgreSQL's certificate (`scripts/test` makes it).
fn postgres_ca() -> String {
    std::env::var("REMPART_TEST_POSTGRES_CA").unwrap_or_else(|_| {
        panic!(
            "REMPART_TEST_POSTGRES_CA is not set: run scripts/test, which starts the test \
             PostgreSQL with TLS and names its CA"
        )
    })
}

#[test]
fn the_database_is_reached_over_tls_and_its_certificate_checked() {
    let ca = postgres_ca();
    let lab = Lab::start_with(&format!(
        "{SERVICE_LOGIN}\nca_cert = \"{ca}\"\nserver_name = \"127.0.0.1\""
    ));
    let conninfo = lab.login(&lab.alice, "alice-db", "alice");
    lab.grant("1h");
    let out = psql_command(
        &conninfo,
        &[
            "-Atc",
            "SELECT ssl, version FROM pg_stat_ssl WHERE pid = pg_backend_pid()",
        ],
    );
    assert!(out.status.success(), "{}", stderr(&out));
    assert!(stdout(&out).starts_with("t|TLSv1."), "{}", stdout(&out));

    // A certificate that does not name the server it was asked for: refused.
    let lab = Lab::start_with(&format!(
        "{SERVICE_LOGIN}\nca_cert = \"{ca}\"\nserver_name = \"db.elsewhere\""
    ));
    let conninfo = lab.login(&lab.alice, "alice-db", "alice");
    lab.grant("1h");
    let out = psql_command(&conninfo, &["-c", "SELECT 1"]);
    assert!(!out.status.success());
    assert!(
        stderr(&out).contains("the database db:payments cannot be reached")
            && stderr(&out).contains("TLS"),
        "{}",
        stderr(&out)
    );
}

#[test]
fn the_write_role_needs_a_grant_for_write_too() {
    // The default role only reads; db:payments.write gives the service role.
    let lab = Lab::start_with(&format!(
        "user = \"rempart_reader\"\nwrite_user = \"{SERVICE_ROLE}\"\n\
         write_password_file = \"payments.password\"\ndanger_upstream_plaintext = true"
    ));
    let reader = psql(
        &lab.database.admin_url(),
        "DO $$ BEGIN IF NOT EXISTS (SELECT FROM pg_roles WHERE rolname = 'rempart_reader') \
         THEN CREATE ROLE rempart_reader LOGIN; END IF; END $$",
    );
    assert!(reader.status.success(), "{}", stderr(&reader));
    let setup = psql(
        &lab.database.url,
        &format!(
            "SET ROLE {SERVICE_ROLE}; CREATE TABLE refunds (id int, amount int); \
             INSERT INTO refunds VALUES (1, 100); GRANT SELECT ON refunds TO rempart_reader"
        ),
    );
    assert!(setup.status.success(), "{}", stderr(&setup));
    let out = lab
        .server
        .cli(&lab.admin, &["resource", "add", "db", "payments.write"]);
    assert!(out.status.success(), "{}", stderr(&out));
    let conninfo = lab.login(&lab.alice, "alice-db", "alice");

    // A grant for db:payments: the session reads, and cannot write.
    lab.grant("1h");
    let out = psql_command(
        &conninfo,
        &["-Atc", "SELECT current_user, sum(amount) FROM refunds"],
    );
    assert!(out.status.success(), "{}", stderr(&out));
    assert_eq!(stdout(&out).trim(), "rempart_reader|100");
    let out = psql_command(&conninfo, &["-c", "INSERT INTO refunds VALUES (2, 50)"]);
    assert!(
        stderr(&out).contains("permission denied for table refunds"),
        "{}",
        stderr(&out)
    );

    // Write asked for in a request and approved: the write role.
    let id = grant(
        &lab.server,
        &lab.alice,
        &lab.sam,
        "db:payments.write",
        "INC-4713 refund the double charge of order 88",
        "30m",
    );
    let out = psql_command(
        &conninfo,
        &[
            "-Atc",
            "INSERT INTO refunds VALUES (2, 50) RETURNING current_user",
        ],
    );
    assert!(out.status.success(), "{}", stderr(&out));
    assert!(stdout(&out).starts_with(SERVICE_ROLE), "{}", stdout(&out));

    let starts = lab.logged_until("kind:db.session.start actor:alice", |hits| {
        hits.iter().any(|e| e["mode"] == "write")
    });
    let write = starts
        .iter()
        .find(|e| e["mode"] == "write")
        .unwrap_or_else(|| panic!("no write session in {starts:?}"));
    assert_eq!(write["write_grant"], id.as_str());
    assert!(starts.iter().any(|e| e["mode"] == "read"), "{starts:?}");
}

#[test]
fn a_jdbc_client_gets_through_with_its_certificate() {
    let lab = Lab::start();
    lab.login(&lab.alice, "alice-db", "alice");
    lab.grant("1h");
    let files = lab.dir.join("alice-db");
    let url = format!(
        "jdbc:postgresql://127.0.0.1:{}/payments?user=alice&sslmode=verify-full&sslrootcert={}&sslcert={}&sslkey={}",
        lab.postgres.port(),
        files.join("root.crt").display(),
        files.join("client.crt").display(),
        files.join("client.pk8").display(),
    );
    let program = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/jdbc/Query.java");
    let out = Command::new("java")
        .args(["-cp", "/usr/share/java/postgresql.jar"])
        .arg(program)
        .arg(&url)
        .output()
        .expect("java runs (scripts/test installs a JRE and the PostgreSQL JDBC driver)");
    assert!(out.status.success(), "{}", stderr(&out));
    assert!(
        // (The driver sets its own application_name with SET, which any
        // client may: pg_stat_activity's name is a hint, the well-log the record.)
        stdout(&out).starts_with("answer=42 app="),
        "{}",
        stdout(&out)
    );
    let queries = lab.logged_until("kind:db.query actor:alice protocol:extended", |hits| {
        !hits.is_empty()
    });
    assert!(
        queries.iter().any(|q| q["sql"]
            .as_str()
            .is_some_and(|s| s.starts_with("SELECT $1 * 7"))
            // The driver binds an int in binary: logged as hex.
            && q["parameters"] == serde_json::json!([r"\x00000006"])),
        "{queries:?}"
    );
}

#[test]
fn a_session_open_when_the_bastion_is_killed_still_ends_in_the_record() {
    let mut lab = Lab::start();
    let conninfo = lab.login(&lab.alice, "alice-db", "alice");
    lab.grant("1h");
    let (open, input) = lab.open_session(&conninfo, b"SELECT 1;\n");
    let started = lab.logged_until("kind:db.session.start actor:alice", |h| !h.is_empty());
    let id = started[0]["session"].as_str().expect("session").to_owned();

    // A crash: nothing ends the session; the next start does, from its note.
    let pid = lab.bastion.0.id().to_string();
    let _ = Command::new("kill").args(["-KILL", &pid]).status();
    let _ = lab.bastion.0.wait();
    drop(input);
    drop(open);
    let (guard, postgres) = start_bastion(&lab.dir);
    lab.bastion = guard;
    lab.postgres = postgres;
    let ends = lab.logged_until("kind:db.session.end recovered:true", |h| !h.is_empty());
    assert_eq!(ends.len(), 1, "{ends:?}");
    assert_eq!(ends[0]["session"], id.as_str());
    assert_eq!(ends[0]["actor"], "alice");
    assert_eq!(ends[0]["target"], "db:payments");
    assert!(
        ends[0]["reason"]
            .as_str()
            .is_some_and(|r| r.contains("the bastion stopped during the session")),
        "{ends:?}"
    );
}
