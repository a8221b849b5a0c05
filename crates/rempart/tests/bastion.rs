//! The bastion with the real parts: `rempart serve`, `rempart bastion`, a
//! stock OpenSSH `sshd` started by the test on loopback (it trusts the
//! host-access CA and nothing else), and the stock `ssh` and `sftp`
//! clients with a certificate from `rempart login`. Every process is
//! killed when its guard drops, also when a test fails. Needs root (sshd
//! logs in as root, the `ssh-login` of the test's hosts).

mod common;

use std::io::Write;
use std::net::{SocketAddr, TcpListener};
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};
use std::time::{Duration, Instant};

use common::{
    BIN, Backend, Deployment, Guard, Server, add_user, advance_clock, free_port, grant, json,
    logged_until, stderr, stdout, wait_output,
};

fn run(program: &str, args: &[&str]) -> Output {
    let out = Command::new(program)
        .args(args)
        .output()
        .unwrap_or_else(|e| panic!("{program} runs: {e}"));
    assert!(out.status.success(), "{program} {args:?}: {}", stderr(&out));
    out
}

/// Starts `rempart bastion` on `<dir>/bastion.toml`; its address.
fn start_bastion(dir: &Path) -> (Guard, SocketAddr) {
    let log = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(dir.join("bastion.log"))
        .expect("log");
    let mut child = Command::new(BIN)
        .args(["bastion", "--config"])
        .arg(dir.join("bastion.toml"))
        .env("RUST_LOG", "info")
        .stdout(Stdio::piped())
        .stderr(log)
        .spawn()
        .expect("the bastion starts");
    let mut line = String::new();
    std::io::BufRead::read_line(
        &mut std::io::BufReader::new(child.stdout.take().expect("piped")),
        &mut line,
    )
    .expect("reads");
    let guard = Guard(child);
    let address: SocketAddr = line
        .trim()
        .strip_prefix("listening on ")
        .unwrap_or_else(|| panic!("the bastion printed {line:?}"))
        .parse()
        .expect("an address");
    (guard, address)
}

/// The control plane, a stock sshd (the target, as hosts db-1, db-2 and
/// db-3), and the bastion in front of it.
struct Lab {
    deployment: Deployment,
    server: Server,
    dir: PathBuf,
    admin: String,
    alice: String,
    sam: String,
    bob: String,
    sshd_port: u16,
    bastion: SocketAddr,
    _sshd: Guard,
    bastion_process: Guard,
}

impl Lab {
    fn start() -> Lab {
        let deployment = Deployment::init(Backend::Sqlite);
        // A fixed port, so that a test can stop the control plane and
        // start it again where the bastion expects it.
        let listen = format!("127.0.0.1:{}", free_port());
        let server = Server::start(
            &deployment.data_dir(),
            &["--listen", &listen, "--danger-test-clock"],
        );
        let admin = deployment.admin_token.clone();
        let dir = deployment.dir.path().join("lab");
        std::fs::create_dir(&dir).expect("mkdir");
        let alice = add_user(&server, &admin, "alice", "engineer");
        let bob = add_user(&server, &admin, "bob", "engineer");
        let sam = add_user(&server, &admin, "sam", "security");
        for (host, labels) in [
            ("db-1", vec!["ssh-login=root"]),
            ("db-2", vec!["ssh-login=root", "ssh-forward=1-65535"]),
            ("db-3", vec!["ssh-login=root"]),
            ("db-4", vec!["ssh-login=root"]),
        ] {
            let mut args = vec!["resource", "add", "host", host];
            for label in &labels {
                args.extend(["--label", label]);
            }
            let out = server.cli(&admin, &args);
            assert!(out.status.success(), "{}", stderr(&out));
        }

        // The target: a stock sshd trusting only the host-access CA.
        let host_access_ca = deployment.data_dir().join("ssh").join("host_access_ca");
        let ca_pub = dir.join("host_access_ca.pub");
        let out = run(
            "ssh-keygen",
            &["-y", "-f", host_access_ca.to_str().expect("utf-8")],
        );
        std::fs::write(&ca_pub, out.stdout).expect("write");
        let host_key = dir.join("sshd_host_key");
        run(
            "ssh-keygen",
            &[
                "-q",
                "-t",
                "ed25519",
                "-N",
                "",
                "-f",
                host_key.to_str().expect("utf-8"),
            ],
        );
        // db-4 is recognised by its host certificate instead of its key.
        let host_ca = dir.join("host_ca");
        run(
            "ssh-keygen",
            &[
                "-q",
                "-t",
                "ed25519",
                "-N",
                "",
                "-f",
                host_ca.to_str().expect("utf-8"),
            ],
        );
        run(
            "ssh-keygen",
            &[
                "-q",
                "-s",
                host_ca.to_str().expect("utf-8"),
                "-h",
                "-I",
                "target",
                "-n",
                "db-4",
                "-V",
                "-5m:+1h",
                &format!("{}.pub", host_key.display()),
            ],
        );
        let sshd_port = free_port();
        let sshd_config = dir.join("sshd_config");
        std::fs::write(
            &sshd_config,
            format!(
                "Port {sshd_port}\nListenAddress 127.0.0.1\nHostKey {}\nHostCertificate {}-cert.pub\nTrustedUserCAKeys {}\n\
                 PermitRootLogin prohibit-password\nAuthorizedKeysFile none\nPasswordAuthentication no\n\
                 KbdInteractiveAuthentication no\nUsePAM no\nPidFile {}\nSubsystem sftp internal-sftp\n\
                 AllowTcpForwarding yes\nLogLevel VERBOSE\n",
                host_key.display(),
                host_key.display(),
                ca_pub.display(),
                dir.join("sshd.pid").display()
            ),
        )
        .expect("write");
        std::fs::create_dir_all("/run/sshd").expect("sshd's privilege separation directory");
        let sshd = Guard(
            Command::new("/usr/sbin/sshd")
                .args(["-D", "-e", "-f"])
                .arg(&sshd_config)
                .stderr(std::fs::File::create(dir.join("sshd.log")).expect("log"))
                .spawn()
                .expect("sshd starts"),
        );

        // The bastion, as bastion-1.
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
                "--out",
                machine.to_str().expect("utf-8"),
            ],
        );
        assert!(out.status.success(), "{}", stderr(&out));
        let host_pub = std::fs::read_to_string(dir.join("sshd_host_key.pub")).expect("read");
        let host_pub = host_pub.trim();
        // db-3's inventory entry holds another key: the bastion must refuse it.
        let stranger = dir.join("stranger_key");
        run(
            "ssh-keygen",
            &[
                "-q",
                "-t",
                "ed25519",
                "-N",
                "",
                "-f",
                stranger.to_str().expect("utf-8"),
            ],
        );
        let stranger_pub = std::fs::read_to_string(dir.join("stranger_key.pub")).expect("read");
        let host_ca_pub = std::fs::read_to_string(dir.join("host_ca.pub")).expect("read");
        let config = dir.join("bastion.toml");
        std::fs::write(
            &config,
            format!(
                "listen = \"127.0.0.1:0\"\nstate_dir = \"bastion-state\"\ngrant_recheck_ms = 500\n\n\
                 [control_plane]\nserver = \"{}\"\nca_cert = \"{}\"\ncert = \"machine/bastion-1.crt\"\nkey = \"machine/bastion-1.key\"\n\n\
                 [[target]]\nname = \"db-1\"\naddress = \"127.0.0.1:{sshd_port}\"\nhost_key = \"{host_pub}\"\n\n\
                 [[target]]\nname = \"db-2\"\naddress = \"127.0.0.1:{sshd_port}\"\nhost_key = \"{host_pub}\"\n\n\
                 [[target]]\nname = \"db-3\"\naddress = \"127.0.0.1:{sshd_port}\"\nhost_key = \"{}\"\n\n\
                 [[target]]\nname = \"db-4\"\naddress = \"127.0.0.1:{sshd_port}\"\nhost_ca = \"{}\"\n",
                server.url,
                server.ca_cert.display(),
                stranger_pub.trim(),
                host_ca_pub.trim()
            ),
        )
        .expect("write");
        let (bastion_guard, bastion) = start_bastion(&dir);
        let lab = Lab {
            deployment,
            server,
            dir,
            admin,
            alice,
            sam,
            bob,
            sshd_port,
            bastion,
            _sshd: sshd,
            bastion_process: bastion_guard,
        };
        lab.wait_for_sshd();
        lab
    }

    /// Starts the control plane again on its port (after `server.kill()`).
    fn restart_control_plane(&mut self) {
        let listen = self.server.addr.to_string();
        self.server = Server::start(
            &self.deployment.data_dir(),
            &["--listen", &listen, "--danger-test-clock"],
        );
    }

    /// Stops the bastion with `signal` (TERM: it ends its sessions; KILL: a
    /// crash), waits for it, and starts it again.
    fn restart_bastion(&mut self, signal: &str) {
        let pid = self.bastion_process.0.id().to_string();
        let _ = Command::new("kill")
            .args([&format!("-{signal}"), &pid])
            .status();
        let deadline = Instant::now() + Duration::from_secs(40);
        while self.bastion_process.0.try_wait().expect("wait").is_none() {
            assert!(Instant::now() < deadline, "the bastion did not stop");
            std::thread::sleep(Duration::from_millis(50));
        }
        let (guard, address) = start_bastion(&self.dir);
        self.bastion_process = guard;
        self.bastion = address;
    }

    /// The stored session whose id the well-log gave for a marker typed in it.
    fn stored_session(&self, reason_part: &str) -> serde_json::Value {
        let deadline = Instant::now() + Duration::from_secs(30);
        loop {
            let out = self.server.cli(&self.sam, &["session", "list", "--json"]);
            if out.status.success() {
                let list = json(&stdout(&out));
                if let Some(found) = list["sessions"].as_array().and_then(|all| {
                    all.iter()
                        .find(|s| {
                            s["reason"]
                                .as_str()
                                .is_some_and(|r| r.contains(reason_part))
                        })
                        .cloned()
                }) {
                    return found;
                }
            }
            assert!(
                Instant::now() < deadline,
                "no stored session ended by {reason_part:?}"
            );
            std::thread::sleep(Duration::from_millis(200));
        }
    }

    fn wait_for_sshd(&self) {
        let deadline = Instant::now() + Duration::from_secs(10);
        while std::net::TcpStream::connect(("127.0.0.1", self.sshd_port)).is_err() {
            assert!(Instant::now() < deadline, "sshd did not start");
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    /// `rempart login` for `token` into `<dir>/<name>_key`; returns the key path.
    fn login(&self, token: &str, name: &str) -> PathBuf {
        let key = self.dir.join(format!("{name}_key"));
        let out = self
            .server
            .cli(token, &["login", "-i", key.to_str().expect("utf-8")]);
        assert!(out.status.success(), "{}", stderr(&out));
        key
    }

    /// Access to `host` for alice, approved by sam; returns the request id.
    fn grant(&self, host: &str, duration: &str) -> String {
        grant(
            &self.server,
            &self.alice,
            &self.sam,
            host,
            "INC-4711 the payments replica is stuck",
            duration,
        )
    }

    /// The stock ssh through the bastion, offering only the certificate:
    /// `options`, then the destination, then the remote `command`.
    fn ssh(&self, key: &Path, login: &str, options: &[&str], command: &[&str]) -> Command {
        let mut cmd = Command::new("ssh");
        cmd.args(ssh_options(key))
            .arg("-p")
            .arg(self.bastion.port().to_string())
            .args(options)
            .arg(format!("{login}@127.0.0.1"))
            .args(command);
        cmd
    }

    /// Well-log entries matching `query`, once there are some.
    fn logged(&self, query: &str) -> Vec<serde_json::Value> {
        self.logged_until(query, |hits| !hits.is_empty())
    }

    /// `rempart session export ID`, once the session's recording events are
    /// searchable (the search index follows the log by a fraction of a
    /// second; the summary may be stored before).
    fn export(&self, id: &str) -> Output {
        let deadline = Instant::now() + Duration::from_secs(15);
        loop {
            let out = self.server.cli(&self.sam, &["session", "export", id]);
            if out.status.success()
                || !stderr(&out).contains("not in the well-log yet")
                || Instant::now() > deadline
            {
                return out;
            }
            std::thread::sleep(Duration::from_millis(200));
        }
    }

    /// Well-log entries matching `query`, once `enough` says so (bounded).
    fn logged_until(
        &self,
        query: &str,
        enough: impl Fn(&[serde_json::Value]) -> bool,
    ) -> Vec<serde_json::Value> {
        logged_until(&self.server, &self.admin, query, enough)
    }
}

fn ssh_options(key: &Path) -> Vec<String> {
    [
        "-i",
        key.to_str().expect("utf-8"),
        "-o",
        "IdentitiesOnly=yes",
        "-o",
        "PubkeyAcceptedAlgorithms=ssh-ed25519-cert-v01@openssh.com",
        "-o",
        "StrictHostKeyChecking=no",
        "-o",
        "UserKnownHostsFile=/dev/null",
        "-o",
        "BatchMode=yes",
        "-o",
        "LogLevel=ERROR",
    ]
    .iter()
    .map(|s| (*s).to_owned())
    .collect()
}

/// A certificate for the host-access CA, made with ssh-keygen from the data
/// directory's key: the "direct" connection the bastion is compared with.
fn direct_key(lab: &Lab) -> PathBuf {
    let key = lab.dir.join("direct_key");
    run(
        "ssh-keygen",
        &[
            "-q",
            "-t",
            "ed25519",
            "-N",
            "",
            "-f",
            key.to_str().expect("utf-8"),
        ],
    );
    let ca = lab.deployment.data_dir().join("ssh").join("host_access_ca");
    run(
        "ssh-keygen",
        &[
            "-q",
            "-s",
            ca.to_str().expect("utf-8"),
            "-I",
            "direct",
            "-n",
            "root",
            "-V",
            "-5m:+1h",
            &format!("{}.pub", key.display()),
        ],
    );
    key
}

#[test]
fn exec_shell_recording_sftp_and_forwarding_through_the_bastion() {
    let mut lab = Lab::start();
    let key = lab.login(&lab.alice, "alice");
    let cert = run(
        "ssh-keygen",
        &["-L", "-f", &format!("{}-cert.pub", key.display())],
    );
    let cert = stdout(&cert);
    assert!(
        cert.contains("Principals: \n                alice\n"),
        "{cert}"
    );
    assert!(cert.contains("Key ID: \"rempart user alice\""), "{cert}");
    let too_long = lab.server.cli(
        &lab.alice,
        &[
            "login",
            "-i",
            key.to_str().expect("utf-8"),
            "--valid-for",
            "9h",
        ],
    );
    assert_eq!(too_long.status.code(), Some(1));
    assert!(
        stderr(&too_long).contains("longer than"),
        "{}",
        stderr(&too_long)
    );
    lab.grant("host:db-1", "1h");

    // Exec: the same bytes and exit status as a direct connection.
    let command = "printf 'one\\ntwo\\n'; echo $((6*7)); echo to-stderr >&2; exit 3";
    let through = lab
        .ssh(&key, "alice+db-1", &[], &[command])
        .output()
        .expect("ssh runs");
    let direct = Command::new("ssh")
        .args(ssh_options(&direct_key(&lab)))
        .args(["-p", &lab.sshd_port.to_string(), "root@127.0.0.1", command])
        .output()
        .expect("ssh runs");
    assert_eq!(direct.status.code(), Some(3), "{}", stderr(&direct));
    assert_eq!(
        through.status.code(),
        direct.status.code(),
        "{}",
        stderr(&through)
    );
    assert_eq!(stdout(&through), "one\ntwo\n42\n");
    assert_eq!(through.stdout, direct.stdout);
    assert_eq!(through.stderr, direct.stderr);
    // Both ways at once: 32 MiB in and straight back out (`cat`) to a user
    // slow to read, the data intact and nothing stalled for good.
    let payload: Vec<u8> = (0..32u32 << 20)
        .map(|i| (i.wrapping_mul(2_654_435_761) >> 11) as u8)
        .collect();
    let mut echo = lab
        .ssh(&key, "alice+db-1", &[], &["cat"])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("ssh runs");
    let mut input = echo.stdin.take().expect("piped");
    let sent = payload.clone();
    let writer = std::thread::spawn(move || {
        let _ = input.write_all(&sent);
    });
    let started = Instant::now();
    // The user reads nothing for a while: both directions fill up.
    std::thread::sleep(Duration::from_secs(3));
    let mut returned = Vec::new();
    std::io::Read::read_to_end(&mut echo.stdout.take().expect("piped"), &mut returned)
        .expect("read");
    writer.join().expect("writer");
    assert!(echo.wait().expect("ends").success());
    assert!(
        returned == payload,
        "{} of {} bytes came back",
        returned.len(),
        payload.len()
    );
    assert!(started.elapsed() < Duration::from_secs(60));

    // A 100 KB command: run, and logged cut short with the hash of the whole.
    let long_command = format!("true {}", "x".repeat(100_000));
    let out = lab
        .ssh(&key, "alice+db-1", &[], &[&long_command])
        .output()
        .expect("ssh runs");
    assert!(out.status.success(), "{}", stderr(&out));
    let long_sha = {
        use sha2::Digest;
        sha2::Sha256::digest(long_command.as_bytes())
            .iter()
            .map(|b| format!("{b:02x}"))
            .collect::<String>()
    };
    let cut = lab.logged("kind:ssh.exec actor:alice truncated:true");
    assert!(
        cut.iter().any(|e| e["command_sha256"] == long_sha.as_str()),
        "{cut:?}"
    );

    // `rempart ssh` runs the same ssh, with the bastion's key known.
    let known = lab.dir.join("known_hosts");
    let bastion_key = std::fs::read_to_string(lab.dir.join("bastion-state").join("host_key.pub"))
        .expect("the bastion's host key");
    std::fs::write(
        &known,
        format!("[127.0.0.1]:{} {bastion_key}", lab.bastion.port()),
    )
    .expect("write");
    let known_option = format!("UserKnownHostsFile={}", known.display());
    let wrapped = lab
        .server
        .cli_command(&[
            "ssh",
            "db-1",
            "--bastion",
            &lab.bastion.to_string(),
            "-i",
            key.to_str().expect("utf-8"),
            "-o",
            &known_option,
            "-o",
            "StrictHostKeyChecking=yes",
            "--",
            "echo",
            "wrapped",
        ])
        .output()
        .expect("runs");
    assert!(wrapped.status.success(), "{}", stderr(&wrapped));
    assert_eq!(stdout(&wrapped), "wrapped\n");
    let exec = lab.logged("kind:ssh.exec actor:alice");
    assert!(
        exec.iter()
            .any(|e| e["command"] == command && e["target"] == "host:db-1"),
        "{exec:?}"
    );

    // An interactive session through a PTY: recorded, stored, replayed.
    let mut shell = lab
        .ssh(&key, "alice+db-1", &["-tt"], &[])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("ssh runs");
    shell
        .stdin
        .take()
        .expect("piped")
        .write_all(b"stty cols 100 rows 30\necho marker-$((6*7))-done\nexit\n")
        .expect("types");
    let typed = shell.wait_with_output().expect("ends");
    assert!(
        stdout(&typed).contains("marker-42-done"),
        "{}",
        stdout(&typed)
    );
    let has_recording =
        |e: &serde_json::Value| e["recordings"].as_array().is_some_and(|r| !r.is_empty());
    let ends = lab.logged_until("kind:ssh.session.end actor:alice", |hits| {
        hits.iter().any(has_recording)
    });
    let recorded: Vec<&serde_json::Value> = ends.iter().filter(|e| has_recording(e)).collect();
    assert_eq!(recorded.len(), 1, "{ends:?}");
    let session = recorded[0]["session"].as_str().expect("id").to_owned();
    let logged_sha = recorded[0]["recordings"][0]["sha256"]
        .as_str()
        .expect("sha256")
        .to_owned();
    let deadline = Instant::now() + Duration::from_secs(15);
    let exported = loop {
        let out = lab.server.cli(&lab.sam, &["session", "export", &session]);
        if out.status.success() {
            break out.stdout;
        }
        assert!(Instant::now() < deadline, "not stored: {}", stderr(&out));
        std::thread::sleep(Duration::from_millis(200));
    };
    let text = String::from_utf8(exported.clone()).expect("utf-8");
    let header = json(text.lines().next().expect("a header"));
    assert_eq!(header["version"], 2);
    assert!(text.contains("marker-42-done"), "{text}");
    assert!(
        text.contains(r#""i","stty cols"#),
        "input is recorded: {text}"
    );
    let sha = {
        use sha2::Digest;
        sha2::Sha256::digest(&exported)
            .iter()
            .map(|b| format!("{b:02x}"))
            .collect::<String>()
    };
    assert_eq!(sha, logged_sha, "the well-log holds the recording's hash");
    let played = lab
        .server
        .cli(&lab.sam, &["session", "play", &session, "--speed", "100"]);
    assert!(played.status.success(), "{}", stderr(&played));
    assert!(stdout(&played).contains("marker-42-done"));
    let listed = lab.server.cli(&lab.sam, &["session", "list", "--json"]);
    let listed = json(&stdout(&listed));
    assert!(
        listed["sessions"]
            .as_array()
            .expect("sessions")
            .iter()
            .any(|s| s["id"] == session.as_str() && s["user"] == "alice"),
        "{listed}"
    );
    // A recording changed in the store (behind the stopped control plane's
    // back) no longer matches the well-log.
    lab.server.kill();
    let db = lab.deployment.data_dir().join("rempart.db");
    let tampered = Command::new("python3")
        .arg("-c")
        .arg(
            "import sqlite3, sys\n\
             db = sqlite3.connect(sys.argv[1], timeout=10)\n\
             db.execute(\"UPDATE ssh_recordings SET content = CAST(replace(CAST(content AS TEXT), 'marker-42-done', 'marker-00-done') AS BLOB) WHERE session_id = ?\", (sys.argv[2],))\n\
             db.commit()\n",
        )
        .arg(&db)
        .arg(&session)
        .output()
        .expect("python3 runs");
    assert!(tampered.status.success(), "{}", stderr(&tampered));
    lab.restart_control_plane();
    let refused = lab.server.cli(&lab.sam, &["session", "export", &session]);
    assert_eq!(refused.status.code(), Some(1));
    assert!(
        stderr(&refused).contains("does not match the well-log"),
        "{}",
        stderr(&refused)
    );

    // Engineers do not read recordings.
    let refused = lab.server.cli(&lab.alice, &["session", "list"]);
    assert_eq!(refused.status.code(), Some(1));

    // SFTP: an upload is logged with its path and size.
    let upload_dir = tempfile::tempdir().expect("tempdir");
    let local = upload_dir.path().join("local.bin");
    std::fs::write(&local, vec![0x5a; 70_000]).expect("write");
    let remote = upload_dir.path().join("uploaded.bin");
    let batch = upload_dir.path().join("batch");
    std::fs::write(
        &batch,
        format!("put {} {}\n", local.display(), remote.display()),
    )
    .expect("write");
    let sftp = Command::new("sftp")
        .args(ssh_options(&key))
        .args(["-P", &lab.bastion.port().to_string(), "-b"])
        .arg(&batch)
        .arg("alice+db-1@127.0.0.1")
        .output()
        .expect("sftp runs");
    assert!(sftp.status.success(), "{}", stderr(&sftp));
    assert_eq!(std::fs::read(&remote).expect("uploaded").len(), 70_000);
    let path = remote.to_str().expect("utf-8");
    let writes = lab.logged("kind:sftp.write actor:alice");
    assert!(
        writes
            .iter()
            .any(|e| e["path"] == path && e["bytes"] == 70_000),
        "{writes:?}"
    );
    let opens = lab.logged("kind:sftp.open actor:alice");
    assert!(opens.iter().any(|e| e["path"] == path), "{opens:?}");

    // Port forwarding: refused on db-1 (no ssh-forward label) and logged;
    // allowed on db-2, whose label allows it, and logged too.
    let echo = TcpListener::bind("127.0.0.1:0").expect("bind");
    let echo_port = echo.local_addr().expect("addr").port();
    std::thread::spawn(move || {
        for stream in echo.incoming().take(4).flatten() {
            let mut reader = stream.try_clone().expect("clone");
            let mut writer = stream;
            let _ = std::io::copy(&mut reader, &mut writer);
        }
    });
    let try_forward = |login: &str| -> Option<String> {
        let local = free_port();
        let mut tunnel = Guard(
            lab.ssh(
                &key,
                login,
                &[
                    "-N",
                    "-o",
                    "ExitOnForwardFailure=yes",
                    "-L",
                    &format!("{local}:127.0.0.1:{echo_port}"),
                ],
                &[],
            )
            .spawn()
            .expect("ssh runs"),
        );
        let deadline = Instant::now() + Duration::from_secs(10);
        let mut stream = loop {
            if let Ok(s) = std::net::TcpStream::connect(("127.0.0.1", local)) {
                break s;
            }
            assert!(Instant::now() < deadline, "the tunnel did not open");
            assert!(tunnel.0.try_wait().expect("wait").is_none(), "ssh exited");
            std::thread::sleep(Duration::from_millis(50));
        };
        stream
            .set_read_timeout(Some(Duration::from_secs(5)))
            .expect("timeout");
        let _ = stream.write_all(b"ping\n");
        let mut answer = [0u8; 5];
        let got = std::io::Read::read_exact(&mut stream, &mut answer).ok();
        got.map(|()| String::from_utf8_lossy(&answer).into_owned())
    };
    assert_eq!(
        try_forward("alice+db-1"),
        None,
        "forwarding without permission"
    );
    let denied = lab.logged("kind:ssh.forward outcome:denied actor:alice");
    let destination = format!("127.0.0.1:{echo_port}");
    assert!(
        denied
            .iter()
            .any(|e| e["destination"] == destination.as_str() && e["target"] == "host:db-1"),
        "{denied:?}"
    );
    lab.grant("host:db-2", "1h");
    assert_eq!(try_forward("alice+db-2").as_deref(), Some("ping\n"));
    let allowed = lab.logged("kind:ssh.forward outcome:success actor:alice");
    assert!(
        allowed
            .iter()
            .any(|e| e["destination"] == destination.as_str()),
        "{allowed:?}"
    );
}

#[test]
fn no_grant_wrong_or_expired_certificates_and_unknown_host_keys_are_refused() {
    let lab = Lab::start();
    let bob_key = lab.login(&lab.bob, "bob");

    // No grant: let in to hear why, and nothing reaches the target.
    let out = lab
        .ssh(&bob_key, "bob+db-1", &[], &["echo should-not-run"])
        .output()
        .expect("ssh runs");
    assert_eq!(out.status.code(), Some(1), "{}", stderr(&out));
    assert!(!stdout(&out).contains("should-not-run"));
    assert!(
        stderr(&out).contains("rempart: no grant for bob on host:db-1: no approved request"),
        "{}",
        stderr(&out)
    );
    let denied = lab.logged("kind:ssh.auth outcome:denied actor:bob");
    assert!(
        denied.iter().any(|e| e["reason"]
            .as_str()
            .is_some_and(|r| r.contains("no approved request"))),
        "{denied:?}"
    );

    // A certificate from another CA, and one of the right CA but expired.
    let forged = lab.dir.join("forged_key");
    let rogue_ca = lab.dir.join("rogue_ca");
    for key in [&forged, &rogue_ca] {
        run(
            "ssh-keygen",
            &[
                "-q",
                "-t",
                "ed25519",
                "-N",
                "",
                "-f",
                key.to_str().expect("utf-8"),
            ],
        );
    }
    run(
        "ssh-keygen",
        &[
            "-q",
            "-s",
            rogue_ca.to_str().expect("utf-8"),
            "-I",
            "forged",
            "-n",
            "alice",
            "-V",
            "-5m:+1h",
            &format!("{}.pub", forged.display()),
        ],
    );
    let expired = lab.dir.join("expired_key");
    run(
        "ssh-keygen",
        &[
            "-q",
            "-t",
            "ed25519",
            "-N",
            "",
            "-f",
            expired.to_str().expect("utf-8"),
        ],
    );
    let user_ca = lab.deployment.data_dir().join("ssh").join("user_ca");
    run(
        "ssh-keygen",
        &[
            "-q",
            "-s",
            user_ca.to_str().expect("utf-8"),
            "-I",
            "old",
            "-n",
            "alice",
            "-V",
            "20200101:20200102",
            &format!("{}.pub", expired.display()),
        ],
    );
    lab.grant("host:db-1", "1h");
    for key in [&forged, &expired] {
        let out = lab
            .ssh(key, "alice+db-1", &[], &["echo should-not-run"])
            .output()
            .expect("ssh runs");
        assert_eq!(out.status.code(), Some(255), "{}", stderr(&out));
        assert!(
            stderr(&out).contains("Permission denied"),
            "{}",
            stderr(&out)
        );
    }
    let failures = lab.logged_until("kind:ssh.auth outcome:failure actor:alice", |hits| {
        hits.len() >= 2
    });
    assert!(
        failures.iter().any(|e| e["reason"]
            .as_str()
            .is_some_and(|r| r.contains("not from this deployment's user CA"))),
        "{failures:?}"
    );
    assert!(
        failures
            .iter()
            .any(|e| e["reason"].as_str().is_some_and(|r| r.contains("expired"))),
        "{failures:?}"
    );

    // A certificate for alice does not open bob's sessions.
    let alice_key = lab.login(&lab.alice, "alice");
    let out = lab
        .ssh(&alice_key, "bob+db-1", &[], &["true"])
        .output()
        .expect("ssh runs");
    assert_eq!(out.status.code(), Some(255));

    // db-3's sshd presents a key the inventory does not hold: refused.
    lab.grant("host:db-3", "1h");
    let out = lab
        .ssh(&alice_key, "alice+db-3", &[], &["echo should-not-run"])
        .output()
        .expect("ssh runs");
    assert_eq!(out.status.code(), Some(1), "{}", stderr(&out));
    assert!(
        stderr(&out).contains("not the one in the inventory"),
        "{}",
        stderr(&out)
    );

    // db-4 presents a host certificate from the host CA the inventory names.
    lab.grant("host:db-4", "1h");
    let out = lab
        .ssh(&alice_key, "alice+db-4", &[], &["echo via-host-ca"])
        .output()
        .expect("ssh runs");
    assert_eq!(stdout(&out), "via-host-ca\n", "{}", stderr(&out));

    // Agent forwarding stays off, even when the client asks for it.
    let agent_socket = lab.dir.join("agent.sock");
    let _agent = Guard(
        Command::new("ssh-agent")
            .arg("-D")
            .arg("-a")
            .arg(&agent_socket)
            .stdout(Stdio::null())
            .spawn()
            .expect("ssh-agent starts"),
    );
    let deadline = Instant::now() + Duration::from_secs(5);
    while !agent_socket.exists() {
        assert!(Instant::now() < deadline, "ssh-agent did not start");
        std::thread::sleep(Duration::from_millis(20));
    }
    let out = lab
        .ssh(
            &alice_key,
            "alice+db-1",
            &["-A"],
            &["echo agent=${SSH_AUTH_SOCK:-none}"],
        )
        .env("SSH_AUTH_SOCK", &agent_socket)
        .output()
        .expect("ssh runs");
    assert_eq!(stdout(&out), "agent=none\n", "{}", stderr(&out));
    let refused = lab.logged("kind:ssh.forward outcome:denied direction:agent actor:alice");
    assert!(!refused.is_empty());

    // Garbage on the SSH port: each connection is closed, the bastion stays.
    let mut huge = b"SSH-2.0-OpenSSH_9.2\r\n".to_vec();
    huge.extend_from_slice(&0xffff_fff0u32.to_be_bytes());
    huge.extend_from_slice(&[0u8; 64]);
    let mut noise = b"SSH-2.0-OpenSSH_9.2\r\n".to_vec();
    noise.extend((0..65_536u32).map(|i| (i.wrapping_mul(2_654_435_761) >> 13) as u8));
    for attempt in [b"GET / HTTP/1.1\r\nHost: x\r\n\r\n".to_vec(), huge, noise] {
        let mut stream = std::net::TcpStream::connect(lab.bastion).expect("connect");
        stream
            .set_read_timeout(Some(Duration::from_secs(10)))
            .expect("timeout");
        let _ = stream.write_all(&attempt);
        let mut sink = Vec::new();
        // Closed (an RST too, when our bytes were left unread), not timed out.
        let closed = std::io::Read::read_to_end(&mut stream, &mut sink);
        assert!(
            closed.is_ok()
                || closed
                    .as_ref()
                    .is_err_and(|e| e.kind() == std::io::ErrorKind::ConnectionReset),
            "the bastion did not close: {closed:?}"
        );
    }
    let out = lab
        .ssh(&alice_key, "alice+db-1", &[], &["echo still-here"])
        .output()
        .expect("ssh runs");
    assert_eq!(stdout(&out), "still-here\n", "{}", stderr(&out));
}

#[test]
fn a_session_outlives_the_control_plane_and_is_shipped_when_it_is_back() {
    let mut lab = Lab::start();
    let key = lab.login(&lab.alice, "alice");
    lab.grant("host:db-1", "1h");
    let mut shell = Guard(
        lab.ssh(&key, "alice+db-1", &["-tt"], &[])
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()
            .expect("ssh runs"),
    );
    let mut input = shell.0.stdin.take().expect("piped");
    input.write_all(b"echo before-outage\n").expect("types");
    std::thread::sleep(Duration::from_millis(1500));
    lab.server.kill();
    std::thread::sleep(Duration::from_millis(1500));
    input
        .write_all(b"echo during-outage-$((2*21))\nexit\n")
        .expect("types");
    drop(input);
    let deadline = Instant::now() + Duration::from_secs(20);
    while shell.0.try_wait().expect("wait").is_none() {
        assert!(Instant::now() < deadline, "the session did not end");
        std::thread::sleep(Duration::from_millis(50));
    }
    let mut seen = String::new();
    std::io::Read::read_to_string(&mut shell.0.stdout.take().expect("piped"), &mut seen)
        .expect("read");
    assert!(seen.contains("during-outage-42"), "{seen}");
    // The summary waits on the bastion's disk, with the recording.
    let outbox = lab.dir.join("bastion-state").join("outbox");
    let deadline = Instant::now() + Duration::from_secs(10);
    while std::fs::read_dir(&outbox).map_or(0, |d| d.count()) == 0 {
        assert!(Instant::now() < deadline, "nothing waits in the outbox");
        std::thread::sleep(Duration::from_millis(100));
    }

    // Meanwhile a new connection is refused: the grant cannot be checked.
    let out = lab
        .ssh(&key, "alice+db-1", &[], &["echo should-not-run"])
        .output()
        .expect("ssh runs");
    assert_eq!(out.status.code(), Some(1), "{}", stderr(&out));
    assert!(
        stderr(&out).contains("the grant cannot be checked, so the bastion refuses (fail closed)"),
        "{}",
        stderr(&out)
    );

    lab.restart_control_plane();
    let deadline = Instant::now() + Duration::from_secs(30);
    let session = loop {
        let out = lab.server.cli(&lab.sam, &["session", "list", "--json"]);
        if out.status.success() {
            let list = json(&stdout(&out));
            if let Some(s) = list["sessions"].as_array().and_then(|s| s.first()) {
                break s.clone();
            }
        }
        assert!(Instant::now() < deadline, "the session was not shipped");
        std::thread::sleep(Duration::from_millis(200));
    };
    let id = session["id"].as_str().expect("id");
    let exported = lab.export(id);
    assert!(exported.status.success(), "{}", stderr(&exported));
    assert!(stdout(&exported).contains("during-outage-42"));
    let ends = lab.logged("kind:ssh.session.end actor:alice");
    assert_eq!(ends.len(), 1, "{ends:?}");
    assert_eq!(
        ends[0]["recordings"][0]["sha256"],
        session["recordings"][0]["sha256"]
    );
    assert!(
        std::fs::read_dir(&outbox).map_or(0, |d| d.count()) == 0,
        "the outbox is emptied once stored"
    );
}

#[test]
fn sessions_are_cut_when_the_grant_is_revoked_or_ends() {
    let lab = Lab::start();
    let key = lab.login(&lab.alice, "alice");

    // Revoked: the session ends within seconds, and the user is told.
    let id = lab.grant("host:db-1", "1h");
    let started = Instant::now();
    let session = Guard(
        lab.ssh(&key, "alice+db-1", &[], &["sleep 60"])
            .stderr(Stdio::piped())
            .spawn()
            .expect("ssh runs"),
    );
    std::thread::sleep(Duration::from_millis(1500));
    let revoked_at = Instant::now();
    let out = lab.server.cli(
        &lab.sam,
        &["access", "revoke", &id, "--reason", "incident closed"],
    );
    assert!(out.status.success(), "{}", stderr(&out));
    let out = wait_output(session, Duration::from_secs(20));
    assert!(revoked_at.elapsed() < Duration::from_secs(5), "cut late");
    assert!(started.elapsed() < Duration::from_secs(30));
    assert_ne!(out.status.code(), Some(0));
    assert!(
        stderr(&out).contains("rempart: your grant ended"),
        "{}",
        stderr(&out)
    );
    assert!(stderr(&out).contains("revoked"), "{}", stderr(&out));

    // Ended: the access clock moves past the grant's end.
    lab.grant("host:db-1", "10m");
    let session = Guard(
        lab.ssh(&key, "alice+db-1", &[], &["sleep 60"])
            .stderr(Stdio::piped())
            .spawn()
            .expect("ssh runs"),
    );
    std::thread::sleep(Duration::from_millis(1500));
    advance_clock(&lab.server, &lab.admin, "11m");
    let moved_at = Instant::now();
    let out = wait_output(session, Duration::from_secs(20));
    assert!(moved_at.elapsed() < Duration::from_secs(5), "cut late");
    assert!(
        stderr(&out).contains("rempart: your grant ended"),
        "{}",
        stderr(&out)
    );
    let cut = |e: &serde_json::Value| {
        e["reason"]
            .as_str()
            .is_some_and(|r| r.contains("your grant ended"))
    };
    let ends = lab.logged_until("kind:ssh.session.end actor:alice", |hits| {
        hits.iter().filter(|e| cut(e)).count() >= 2
    });
    assert!(
        ends.iter()
            .filter(|e| e["reason"]
                .as_str()
                .is_some_and(|r| r.contains("your grant ended")))
            .count()
            >= 2,
        "{ends:?}"
    );
}

#[test]
fn sessions_survive_the_bastion_stopping_or_crashing_in_the_record() {
    let mut lab = Lab::start();
    let key = lab.login(&lab.alice, "alice");
    lab.grant("host:db-1", "1h");
    let shell = |lab: &Lab, typed: &[u8]| {
        let mut child = lab
            .ssh(&key, "alice+db-1", &["-tt"], &[])
            .stdin(Stdio::piped())
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .expect("ssh runs");
        let mut input = child.stdin.take().expect("piped");
        input.write_all(typed).expect("types");
        std::thread::sleep(Duration::from_millis(1500));
        (Guard(child), input)
    };

    // SIGTERM: the open session is cut with a reason and stored as usual.
    let (session, _input) = shell(&lab, b"echo alpha-$((1+1))\n");
    lab.restart_bastion("TERM");
    let out = wait_output(session, Duration::from_secs(10));
    assert!(
        stderr(&out).contains("rempart: the bastion is stopping"),
        "{}",
        stderr(&out)
    );
    let stopped = lab.stored_session("the bastion is stopping");
    let id = stopped["id"].as_str().expect("id");
    let exported = lab.export(id);
    assert!(
        stdout(&exported).contains("alpha-2"),
        "{}",
        stderr(&exported)
    );

    // SIGKILL: nothing ends the session; the next start does, from its note.
    let (session, _input) = shell(&lab, b"echo beta-$((2+2))\n");
    lab.restart_bastion("KILL");
    drop(session);
    let crashed = lab.stored_session("stopped during the session");
    let id = crashed["id"].as_str().expect("id");
    let exported = lab.export(id);
    assert!(
        stdout(&exported).contains("beta-4"),
        "{}",
        stderr(&exported)
    );
    let ends = lab.logged_until("kind:ssh.session.end recovered:true", |hits| {
        !hits.is_empty()
    });
    assert!(ends.iter().any(|e| e["session"] == id), "{ends:?}");
}
