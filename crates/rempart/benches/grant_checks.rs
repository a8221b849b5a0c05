//! Grant checks per second over HTTPS keep-alive with 10,000 active grants
//! (issue 4), beside nginx answering the same route with mTLS and a static
//! body, in the same run on the same machine.
//!
//! `cargo bench -p rempart --bench grant_checks` (release build of the
//! binary first). Environment: USERS (1000) x RESOURCES (10) active grants,
//! CONNECTIONS (32), SECONDS (10). Every load loop is bounded in time.

use std::io::{BufRead, BufReader};
use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::time::{Duration, Instant};

use rempart_api::{CreateMachine, CreateRequest, CreateResource, CreateUser};
use rempart_client::{Client, ClientOptions};
use rempart_core::{MachineRole, Role, Roles, Secret};

fn env(name: &str, default: usize) -> usize {
    std::env::var(name)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

struct Killed(Child);

impl Drop for Killed {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// Starts `rempart serve` on a free port; its address.
fn serve(bin: &str, dir: &std::path::Path) -> (Killed, String) {
    let mut child = Command::new(bin)
        .args([
            "serve",
            "--listen",
            "127.0.0.1:0",
            "--log-format",
            "json",
            "--data-dir",
        ])
        .arg(dir)
        .env("RUST_LOG", "info")
        .stderr(Stdio::piped())
        .stdout(Stdio::null())
        .spawn()
        .expect("rempart serve");
    let stderr = child.stderr.take().expect("stderr");
    let mut lines = BufReader::new(stderr).lines();
    let address = loop {
        let line = lines.next().expect("serve ended").expect("a line");
        let Ok(event) = serde_json::from_str::<serde_json::Value>(&line) else {
            continue;
        };
        if event["message"] == "listening" {
            break event["address"].as_str().expect("address").to_owned();
        }
    };
    // Keep reading its log so it never blocks on a full pipe.
    std::thread::spawn(move || for _ in lines {});
    (Killed(child), format!("https://{address}"))
}

/// `connections` keep-alive clients asking `paths` in turn for `seconds`;
/// (requests per second, p50, p99).
async fn load(
    base: &str,
    ca_pem: &str,
    identity: (&str, &str),
    paths: Arc<Vec<String>>,
    connections: usize,
    seconds: u64,
) -> (f64, Duration, Duration) {
    let mut tasks = Vec::new();
    let started = Instant::now();
    let deadline = started + Duration::from_secs(seconds);
    for c in 0..connections {
        let tls = rempart_tls::client_config(
            ca_pem,
            Some(rempart_tls::ClientIdentity {
                cert_pem: identity.0,
                key_pem: identity.1,
            }),
        )
        .expect("tls");
        let http = reqwest::Client::builder()
            .use_preconfigured_tls(tls)
            .http1_only()
            .pool_max_idle_per_host(1)
            .build()
            .expect("client");
        let (base, paths) = (base.to_owned(), paths.clone());
        tasks.push(tokio::spawn(async move {
            let mut latencies = Vec::with_capacity(200_000);
            let mut i = c;
            while Instant::now() < deadline {
                let path = &paths[i % paths.len()];
                i += connections;
                let began = Instant::now();
                let response = http
                    .get(format!("{base}{path}"))
                    .send()
                    .await
                    .expect("send");
                assert!(response.status().is_success(), "{}", response.status());
                let body = response.bytes().await.expect("body");
                assert!(body.starts_with(b"{\"allow\":true"), "{body:?}");
                latencies.push(began.elapsed());
            }
            latencies
        }));
    }
    let mut all = Vec::new();
    for task in tasks {
        all.extend(task.await.expect("task"));
    }
    let elapsed = started.elapsed().as_secs_f64();
    all.sort();
    let at = |p: f64| all[((all.len() - 1) as f64 * p) as usize];
    (all.len() as f64 / elapsed, at(0.5), at(0.99))
}

fn main() {
    let users = env("USERS", 1000);
    let resources = env("RESOURCES", 10);
    let connections = env("CONNECTIONS", 32);
    let seconds = env("SECONDS", 10) as u64;
    let bin = env!("CARGO_BIN_EXE_rempart");
    let dir = tempfile::tempdir_in("/var/tmp").expect("tempdir");
    let data = dir.path().join("data");
    let init = Command::new(bin)
        .args(["init", "--data-dir"])
        .arg(&data)
        .output()
        .expect("init");
    assert!(
        init.status.success(),
        "{}",
        String::from_utf8_lossy(&init.stderr)
    );
    let admin_token = String::from_utf8(init.stdout)
        .expect("utf-8")
        .trim()
        .to_owned();
    let (_server, base) = serve(bin, &data);
    let ca_pem = std::fs::read_to_string(data.join("ca.crt")).expect("ca");
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .expect("runtime");
    runtime.block_on(async {
        let client = |token: Option<String>, identity: Option<(String, Secret<String>)>| {
            Client::new(ClientOptions {
                server: base.clone(),
                ca_pem: ca_pem.clone(),
                token: token.map(Secret::new),
                identity,
            })
            .expect("client")
        };
        let admin = client(Some(admin_token.clone()), None);
        let setup = Instant::now();
        let reviewer = admin
            .create_user(&CreateUser {
                name: "reviewer".parse().expect("name"),
                roles: Roles::new([Role::Security]).expect("roles"),
                email: None,
            })
            .await
            .expect("reviewer");
        let reviewer = client(Some(reviewer.token.token.clone()), None);
        for r in 0..resources {
            admin
                .create_resource(&CreateResource {
                    kind: "host".into(),
                    name: format!("h{r}"),
                    labels: Default::default(),
                })
                .await
                .expect("resource");
        }
        // Users ask and are approved with 16 in flight.
        let semaphore = Arc::new(tokio::sync::Semaphore::new(16));
        let mut jobs = Vec::new();
        for u in 0..users {
            let (admin, reviewer, semaphore) = (admin.clone(), reviewer.clone(), semaphore.clone());
            let (base, ca_pem) = (base.clone(), ca_pem.clone());
            jobs.push(tokio::spawn(async move {
                let _slot = semaphore.acquire().await.expect("slot");
                let created = admin
                    .create_user(&CreateUser {
                        name: format!("u{u}").parse().expect("name"),
                        roles: Roles::new([Role::Engineer]).expect("roles"),
                        email: None,
                    })
                    .await
                    .expect("user");
                let user = Client::new(ClientOptions {
                    server: base,
                    ca_pem,
                    token: Some(Secret::new(created.token.token.clone())),
                    identity: None,
                })
                .expect("client");
                for r in 0..resources {
                    let request = user
                        .create_request(&CreateRequest {
                            resources: vec![format!("host:h{r}")],
                            reason: "BENCH-1 a benchmark of grant checks".into(),
                            duration: "8h".into(),
                            start: None,
                        })
                        .await
                        .expect("request");
                    reviewer
                        .decide_request(&request.id, "approve", Some("bench"))
                        .await
                        .expect("approve");
                }
            }));
        }
        for job in jobs {
            job.await.expect("job");
        }
        let key = rempart_tls::MachineKey::generate().expect("key");
        let issued = admin
            .create_machine(&CreateMachine {
                name: "bastion-1".parse().expect("name"),
                role: MachineRole::Bastion,
                csr_pem: key.csr_pem("bastion-1").expect("csr"),
                server_names: Vec::new(),
            })
            .await
            .expect("machine");
        let key_pem = key.key_pem();
        println!(
            "setup: {} active grants ({users} users x {resources} resources) in {:.1} s",
            users * resources,
            setup.elapsed().as_secs_f64()
        );
        let paths: Arc<Vec<String>> = Arc::new(
            (0..users * resources)
                .map(|i| {
                    format!(
                        "/v1/grants/check?user=u{}&resource=host:h{}",
                        i % users,
                        (i / users) % resources
                    )
                })
                .collect(),
        );
        let identity = (issued.cert_pem.as_str(), key_pem.expose().as_str());
        let (rate, p50, p99) =
            load(&base, &ca_pem, identity, paths.clone(), connections, seconds).await;
        println!(
            "rempart grant checks: {rate:.0}/s, p50 {p50:?}, p99 {p99:?} ({connections} keep-alive connections, {seconds} s)"
        );
        match nginx_peer(&data, dir.path()) {
            Some((_nginx, peer)) => {
                let (peer_rate, peer_p50, peer_p99) =
                    load(&peer, &ca_pem, identity, paths, connections, seconds).await;
                println!(
                    "peer nginx (mTLS, static body): {peer_rate:.0}/s, p50 {peer_p50:?}, p99 {peer_p99:?}"
                );
                println!("ratio rempart / nginx: {:.2}", rate / peer_rate);
            }
            None => println!("peer nginx: not installed, not measured"),
        }
    });
}

/// nginx with the same certificate, checking client certificates against the
/// same CA, answering the route with a static allow.
fn nginx_peer(data: &std::path::Path, work: &std::path::Path) -> Option<(Killed, String)> {
    let nginx = ["/usr/sbin/nginx", "/usr/bin/nginx"]
        .into_iter()
        .find(|p| std::path::Path::new(p).exists())?;
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .ok()?
        .local_addr()
        .ok()?
        .port();
    let prefix = work.join("nginx");
    std::fs::create_dir_all(prefix.join("logs")).ok()?;
    let conf = prefix.join("nginx.conf");
    std::fs::write(
        &conf,
        format!(
            r#"worker_processes 2;
error_log {logs}/error.log;
pid {logs}/nginx.pid;
events {{ worker_connections 1024; }}
http {{
    access_log off;
    server {{
        listen 127.0.0.1:{port} ssl;
        ssl_certificate {cert};
        ssl_certificate_key {key};
        ssl_client_certificate {ca};
        ssl_verify_client on;
        ssl_protocols TLSv1.3;
        keepalive_requests 1000000;
        location /v1/grants/check {{
            default_type application/json;
            return 200 '{{"allow":true,"user":"u0","resource":"host:h0","grant":"1","ends_at":"2026-11-26T10:00:00Z","reason":null}}';
        }}
    }}
}}
"#,
            logs = prefix.join("logs").display(),
            cert = data.join("server.crt").display(),
            key = data.join("server.key").display(),
            ca = data.join("ca.crt").display(),
        ),
    )
    .ok()?;
    let child = Command::new(nginx)
        .arg("-p")
        .arg(&prefix)
        .arg("-c")
        .arg(&conf)
        .args(["-g", "daemon off;"])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .ok()?;
    let killed = Killed(child);
    for _ in 0..50 {
        if std::net::TcpStream::connect(("127.0.0.1", port)).is_ok() {
            return Some((killed, format!("https://localhost:{port}")));
        }
        std::thread::sleep(Duration::from_millis(100));
    }
    None
}
