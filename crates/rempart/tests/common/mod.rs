//! The harness of the end-to-end tests: a real `rempart serve` process on a
//! loopback port, on SQLite or on a fresh PostgreSQL database, driven through
//! the real CLI, `curl` and `openssl s_client`.
//!
//! Every process and database a test creates is removed when its guard drops,
//! also when the test fails.

#![allow(dead_code)] // Each test binary uses a different part of the harness.

use std::io::{BufRead, BufReader, Read, Write};
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

pub const BIN: &str = env!("CARGO_BIN_EXE_rempart");

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Backend {
    Sqlite,
    Postgres,
}

/// Declares each listed test function twice: once per storage backend.
#[macro_export]
macro_rules! on_both_backends {
    ($($name:ident),* $(,)?) => {
        mod sqlite {
            $( #[test] fn $name() { super::$name(super::common::Backend::Sqlite) } )*
        }
        mod postgres {
            $( #[test] fn $name() { super::$name(super::common::Backend::Postgres) } )*
        }
    };
}

/// A PostgreSQL database made for one test and dropped after it.
pub struct PgDatabase {
    admin_url: String,
    pub name: String,
    pub url: String,
}

pub fn postgres_admin_url() -> String {
    std::env::var("REMPART_TEST_POSTGRES_URL").unwrap_or_else(|_| {
        panic!(
            "REMPART_TEST_POSTGRES_URL is not set: run scripts/test, which starts a PostgreSQL \
             for the tests, or point it at one (postgres://user@127.0.0.1:port/postgres)"
        )
    })
}

pub fn psql(url: &str, sql: &str) -> Output {
    Command::new("psql")
        .args([url, "-v", "ON_ERROR_STOP=1", "-q", "-c", sql])
        .output()
        .expect("psql runs")
}

impl PgDatabase {
    /// The URL of the cluster's administrative database.
    pub fn admin_url(&self) -> String {
        self.admin_url.clone()
    }

    pub fn create() -> PgDatabase {
        let admin_url = postgres_admin_url();
        let name = format!("rempart_e2e_{}", random_hex(6));
        let out = psql(&admin_url, &format!("CREATE DATABASE {name}"));
        assert!(
            out.status.success(),
            "CREATE DATABASE: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        // Replace the database part of the admin URL.
        let base = admin_url
            .rsplit_once('/')
            .map(|(base, _)| base.to_owned())
            .expect("the URL has a database path");
        let url = format!("{base}/{name}");
        PgDatabase {
            admin_url,
            name,
            url,
        }
    }
}

impl Drop for PgDatabase {
    fn drop(&mut self) {
        let _ = psql(
            &self.admin_url,
            &format!("DROP DATABASE IF EXISTS {} WITH (FORCE)", self.name),
        );
    }
}

pub fn random_hex(bytes: usize) -> String {
    let mut buf = vec![0u8; bytes];
    std::fs::File::open("/dev/urandom")
        .and_then(|mut f| f.read_exact(&mut buf))
        .expect("read /dev/urandom");
    buf.iter().map(|b| format!("{b:02x}")).collect()
}

/// An initialised data directory (and its database, for PostgreSQL).
pub struct Deployment {
    pub backend: Backend,
    pub dir: tempfile::TempDir,
    pub pg: Option<PgDatabase>,
    pub admin_token: String,
}

impl Deployment {
    pub fn init(backend: Backend) -> Deployment {
        let dir = tempfile::tempdir().expect("tempdir");
        let data = dir.path().join("data");
        let pg = (backend == Backend::Postgres).then(PgDatabase::create);
        let mut cmd = Command::new(BIN);
        cmd.arg("init")
            .arg("--data-dir")
            .arg(&data)
            .env_remove("REMPART_STORE");
        if let Some(pg) = &pg {
            cmd.arg("--store").arg(&pg.url);
        }
        let out = cmd.output().expect("rempart init runs");
        assert!(
            out.status.success(),
            "init failed: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        let admin_token = String::from_utf8(out.stdout)
            .expect("utf-8")
            .trim()
            .to_owned();
        Deployment {
            backend,
            dir,
            pg,
            admin_token,
        }
    }

    pub fn data_dir(&self) -> PathBuf {
        self.dir.path().join("data")
    }

    pub fn ca_cert(&self) -> PathBuf {
        self.data_dir().join("ca.crt")
    }

    pub fn serve(&self) -> Server {
        Server::start(&self.data_dir(), &[])
    }
}

/// A running `rempart serve`, killed when dropped.
pub struct Server {
    child: Child,
    pub addr: SocketAddr,
    pub url: String,
    pub ca_cert: PathBuf,
    log: Arc<Mutex<Vec<String>>>,
    /// The address of every "... listening" line: "listening" (the API),
    /// "syslog tcp listening", ...
    pub listening: std::collections::HashMap<String, SocketAddr>,
}

impl Server {
    /// Starts `rempart serve --data-dir DIR --listen 127.0.0.1:0` and waits
    /// for its "listening" log line (JSON) to learn the port.
    pub fn start(data_dir: &Path, extra: &[&str]) -> Server {
        // A test that restarts a server on its port gives `--listen` itself.
        let listen: &[&str] = if extra.contains(&"--listen") {
            &[]
        } else {
            &["--listen", "127.0.0.1:0"]
        };
        let mut child = Command::new(BIN)
            .arg("serve")
            .arg("--data-dir")
            .arg(data_dir)
            .args(listen)
            .args(["--log-format", "json"])
            .args(extra)
            .env("RUST_LOG", "info")
            .env_remove("REMPART_STORE")
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .expect("rempart serve starts");
        let stderr = child.stderr.take().expect("piped stderr");
        let log = Arc::new(Mutex::new(Vec::new()));
        let (tx, rx) = std::sync::mpsc::channel();
        {
            let log = log.clone();
            std::thread::spawn(move || {
                for line in BufReader::new(stderr).lines().map_while(Result::ok) {
                    if let Ok(event) = serde_json::from_str::<serde_json::Value>(&line)
                        && event["message"]
                            .as_str()
                            .is_some_and(|m| m.ends_with("listening"))
                    {
                        let message = event["message"].as_str().unwrap_or_default().to_owned();
                        let address = event["address"].as_str().unwrap_or_default().to_owned();
                        let _ = tx.send((message, address));
                    }
                    log.lock().expect("log lock").push(line);
                }
            });
        }
        // The API's line comes last: the syslog listeners start before it.
        let mut listening = std::collections::HashMap::new();
        let addr: SocketAddr = loop {
            match rx.recv_timeout(Duration::from_secs(30)) {
                Ok((message, address)) => {
                    let address: SocketAddr = address.parse().expect("a socket address");
                    listening.insert(message.clone(), address);
                    if message == "listening" {
                        break address;
                    }
                }
                Err(_) => {
                    let _ = child.kill();
                    let _ = child.wait();
                    panic!(
                        "rempart serve did not start: {:?}",
                        log.lock().expect("log lock")
                    );
                }
            }
        };
        Server {
            child,
            addr,
            url: format!("https://127.0.0.1:{}", addr.port()),
            ca_cert: data_dir.join("ca.crt"),
            log,
            listening,
        }
    }

    pub fn log(&self) -> Vec<String> {
        self.log.lock().expect("log lock").clone()
    }

    /// Runs the CLI against this server with `token`.
    pub fn cli(&self, token: &str, args: &[&str]) -> Output {
        self.cli_command(args)
            .env("REMPART_TOKEN", token)
            .output()
            .expect("rempart runs")
    }

    /// The CLI with the server and CA set, and no credential.
    pub fn cli_command(&self, args: &[&str]) -> Command {
        let mut cmd = Command::new(BIN);
        cmd.args(args)
            .env("REMPART_SERVER", &self.url)
            .env("REMPART_CA_CERT", &self.ca_cert)
            .env_remove("REMPART_TOKEN")
            .env_remove("REMPART_TOKEN_FILE")
            .env_remove("REMPART_CLIENT_CERT")
            .env_remove("REMPART_CLIENT_KEY")
            .env_remove("RUST_LOG");
        cmd
    }

    /// `curl` with the CA pinned: returns (status, body).
    pub fn curl(&self, args: &[&str]) -> (u16, String) {
        let out = Command::new("curl")
            .args(["-sS", "--max-time", "20", "--cacert"])
            .arg(&self.ca_cert)
            .args(["-o", "-", "-w", "\n%{http_code}"])
            .args(args)
            .output()
            .expect("curl runs");
        let text = String::from_utf8_lossy(&out.stdout).into_owned();
        let (body, status) = text.rsplit_once('\n').expect("curl printed a status");
        (status.trim().parse().unwrap_or(0), body.to_owned())
    }

    pub fn get(&self, path: &str, token: Option<&str>) -> (u16, String) {
        let url = format!("{}{path}", self.url);
        match token {
            Some(token) => self.curl(&["-H", &format!("Authorization: Bearer {token}"), &url]),
            None => self.curl(&[&url]),
        }
    }

    /// Sends SIGTERM and waits for the process to end, at most `limit`.
    pub fn terminate(&mut self, limit: Duration) -> Option<std::process::ExitStatus> {
        let pid = self.child.id().to_string();
        let _ = Command::new("kill").args(["-TERM", &pid]).status();
        let started = Instant::now();
        while started.elapsed() < limit {
            if let Ok(Some(status)) = self.child.try_wait() {
                return Some(status);
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        None
    }
}

impl Server {
    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// SIGKILL, as a crash would: no shutdown code runs.
    pub fn kill(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

pub fn stdout(out: &Output) -> String {
    String::from_utf8_lossy(&out.stdout).into_owned()
}

pub fn stderr(out: &Output) -> String {
    String::from_utf8_lossy(&out.stderr).into_owned()
}

/// Asserts the CLI failed the way the project promises: exit 1 and one line.
pub fn assert_refused(out: &Output, needle: &str) {
    let err = stderr(out);
    assert_eq!(out.status.code(), Some(1), "stderr: {err}");
    assert_eq!(
        err.trim_end().lines().count(),
        1,
        "one line expected: {err:?}"
    );
    assert!(err.starts_with("error: "), "{err}");
    assert!(err.contains(needle), "{needle:?} not in {err:?}");
}

pub fn json(text: &str) -> serde_json::Value {
    serde_json::from_str(text).unwrap_or_else(|e| panic!("not JSON ({e}): {text}"))
}

/// Writes raw bytes to the port and returns what comes back within a second.
pub fn raw_exchange(addr: SocketAddr, request: &[u8]) -> Vec<u8> {
    let mut stream = std::net::TcpStream::connect(addr).expect("connect");
    stream
        .set_read_timeout(Some(Duration::from_secs(3)))
        .expect("timeout");
    stream.write_all(request).expect("write");
    let mut answer = Vec::new();
    let _ = stream.read_to_end(&mut answer);
    answer
}

/// A child process killed when dropped.
pub struct Guard(pub Child);

impl Drop for Guard {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

pub fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .expect("a free port")
}

/// `rempart user add NAME --role ROLE`: the new user's token.
pub fn add_user(server: &Server, admin: &str, name: &str, role: &str) -> String {
    let out = server.cli(admin, &["user", "add", name, "--role", role]);
    assert!(out.status.success(), "{}", stderr(&out));
    stdout(&out).trim().to_owned()
}

/// Waits (bounded) for a process to end; its status and standard error.
pub fn wait_output(mut guard: Guard, limit: Duration) -> Output {
    let deadline = Instant::now() + limit;
    while guard.0.try_wait().expect("wait").is_none() {
        assert!(Instant::now() < deadline, "the process did not end in time");
        std::thread::sleep(Duration::from_millis(50));
    }
    let mut stderr_text = Vec::new();
    if let Some(mut e) = guard.0.stderr.take() {
        let _ = e.read_to_end(&mut stderr_text);
    }
    let status = guard.0.wait().expect("status");
    Output {
        status,
        stdout: Vec::new(),
        stderr: stderr_text,
    }
}

/// Well-log entries matching `query` (newest first, 1,000 at most), once
/// `enough` says so and the index has caught up (bounded: 20 s).
pub fn logged_until(
    server: &Server,
    admin: &str,
    query: &str,
    enough: impl Fn(&[serde_json::Value]) -> bool,
) -> Vec<serde_json::Value> {
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        let out = server.cli(
            admin,
            &["log", "search", query, "--json", "--limit", "1000"],
        );
        assert!(out.status.success(), "{}", stderr(&out));
        let result = json(&stdout(&out));
        let hits: Vec<serde_json::Value> = result["hits"]
            .as_array()
            .expect("hits")
            .iter()
            .map(|h| h["entry"].clone())
            .collect();
        if (enough(&hits) && result["indexed"] == result["size"]) || Instant::now() > deadline {
            return hits;
        }
        std::thread::sleep(Duration::from_millis(200));
    }
}

/// Moves the access clock of a server started with `--danger-test-clock`.
pub fn advance_clock(server: &Server, admin: &str, by: &str) {
    let (status, body) = server.curl(&[
        "-X",
        "POST",
        "-H",
        &format!("Authorization: Bearer {admin}"),
        "-H",
        "Content-Type: application/json",
        "--data",
        &format!(r#"{{"advance":"{by}"}}"#),
        &format!("{}/v1/danger/clock", server.url),
    ]);
    assert_eq!(status, 204, "{body}");
}

/// `requester` asks for `resource` with `reason` for `duration`, and
/// `approver` approves: the request's id.
pub fn grant(
    server: &Server,
    requester: &str,
    approver: &str,
    resource: &str,
    reason: &str,
    duration: &str,
) -> String {
    let out = server.cli(
        requester,
        &[
            "access",
            "request",
            "--resource",
            resource,
            "--reason",
            reason,
            "--for",
            duration,
        ],
    );
    assert!(out.status.success(), "{}", stderr(&out));
    let id = stdout(&out).trim().to_owned();
    let out = server.cli(approver, &["access", "approve", &id, "--comment", "ok"]);
    assert!(out.status.success(), "{}", stderr(&out));
    id
}
