//! The miniature data centre: the six hosts of examples/datacenter plus an
//! "internet" host, each a network namespace on one bridge (IPv4 and IPv6),
//! each host's compiled ruleset applied with the real `nft`. Then real TCP
//! connections and UDP exchanges: every flow `policy reach` allows gets
//! through, every other flow of a broad sample does not, and from a
//! compromised api-1 exactly the `policy blast` set answers. Namespaces and processes are removed
//! afterwards, also when the test fails.

mod common;

use std::collections::BTreeSet;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use common::{BIN, random_hex, stderr, stdout};

/// One attempt: from, to, protocol, port, over IPv6.
type Case = (&'static str, &'static str, &'static str, u16, bool);

/// The UDP port the sample tries (the example's dns service).
const UDP_PORT: u16 = 53;

/// Ports the sample tries (every service of the example).
const PORTS: [u16; 4] = [22, 443, 5432, 8080];

struct Host {
    name: &'static str,
    v4: &'static str,
    v6: &'static str,
}

const HOSTS: [Host; 7] = [
    Host {
        name: "edge",
        v4: "10.10.0.10",
        v6: "fd10::10",
    },
    Host {
        name: "api-1",
        v4: "10.10.1.11",
        v6: "fd10::1:11",
    },
    Host {
        name: "api-2",
        v4: "10.10.1.12",
        v6: "fd10::1:12",
    },
    Host {
        name: "db",
        v4: "10.10.2.20",
        v6: "fd10::2:20",
    },
    Host {
        name: "bastion",
        v4: "10.10.9.9",
        v6: "fd10::9:9",
    },
    Host {
        name: "office-pc",
        v4: "10.20.0.50",
        v6: "fd20::50",
    },
    // Outside every zone: the internet.
    Host {
        name: "internet",
        v4: "10.99.0.1",
        v6: "fd99::1",
    },
];

/// The namespaces and listeners of one test run; removed when dropped.
struct DataCentre {
    prefix: String,
    listeners: Vec<Child>,
}

fn ip(args: &[&str]) {
    let out = Command::new("ip").args(args).output().expect("ip runs");
    assert!(
        out.status.success(),
        "ip {}: {}",
        args.join(" "),
        stderr(&out)
    );
}

impl DataCentre {
    fn ns(&self, host: &str) -> String {
        format!("{}-{host}", self.prefix)
    }

    fn exec(&self, host: &str, args: &[&str]) -> std::process::Output {
        Command::new("ip")
            .args(["netns", "exec", &self.ns(host)])
            .args(args)
            .output()
            .expect("runs")
    }

    fn build() -> DataCentre {
        let dc = DataCentre {
            prefix: format!("rdc{}", random_hex(3)),
            listeners: Vec::new(),
        };
        let bridge = dc.ns("br");
        ip(&["netns", "add", &bridge]);
        ip(&["-n", &bridge, "link", "add", "br0", "type", "bridge"]);
        ip(&["-n", &bridge, "link", "set", "br0", "up"]);
        for (i, host) in HOSTS.iter().enumerate() {
            let ns = dc.ns(host.name);
            ip(&["netns", "add", &ns]);
            let outside = format!("v{i}");
            ip(&[
                "-n", &bridge, "link", "add", &outside, "type", "veth", "peer", "name", "eth0",
                "netns", &ns,
            ]);
            ip(&[
                "-n", &bridge, "link", "set", &outside, "master", "br0", "up",
            ]);
            ip(&["-n", &ns, "link", "set", "lo", "up"]);
            ip(&["-n", &ns, "link", "set", "eth0", "up"]);
            // One link for everything: the zones are on-link.
            ip(&[
                "-n",
                &ns,
                "addr",
                "add",
                &format!("{}/8", host.v4),
                "dev",
                "eth0",
            ]);
            ip(&[
                "-n",
                &ns,
                "-6",
                "addr",
                "add",
                &format!("{}/8", host.v6),
                "dev",
                "eth0",
                "nodad",
            ]);
        }
        dc
    }

    fn apply_policy(&self, policy: &str) {
        for host in HOSTS.iter().filter(|h| h.name != "internet") {
            let out = self.exec(
                host.name,
                &[BIN, "policy", "apply", policy, "--host", host.name],
            );
            assert!(out.status.success(), "{}: {}", host.name, stderr(&out));
        }
    }

    /// A TCP listener on every sampled port of every host, IPv4 and IPv6.
    fn listen(&mut self) {
        for host in &HOSTS {
            for port in PORTS {
                let child = Command::new("ip")
                    .args(["netns", "exec", &self.ns(host.name), "socat", "-u"])
                    .arg(format!("TCP6-LISTEN:{port},ipv6only=0,fork,reuseaddr"))
                    .arg("OPEN:/dev/null")
                    .stdout(Stdio::null())
                    .stderr(Stdio::null())
                    .spawn()
                    .expect("socat starts");
                self.listeners.push(child);
            }
            // UDP: answers each datagram, so that a sender knows it got through.
            let child = Command::new("ip")
                .args(["netns", "exec", &self.ns(host.name), "socat"])
                .arg(format!("UDP6-RECVFROM:{UDP_PORT},ipv6only=0,fork"))
                .arg("SYSTEM:echo pong")
                .stdout(Stdio::null())
                .stderr(Stdio::null())
                .spawn()
                .expect("socat starts");
            self.listeners.push(child);
        }
        // Listening before the first attempt, TCP and UDP, on every host
        // (bounded wait).
        let deadline = Instant::now() + Duration::from_secs(10);
        let ready = |dc: &Self, host: &str| {
            let tcp = stdout(&dc.exec(host, &["ss", "-ltn"]));
            let udp = stdout(&dc.exec(host, &["ss", "-lun"]));
            PORTS.iter().all(|p| tcp.contains(&format!(":{p} ")))
                && udp.contains(&format!(":{UDP_PORT} "))
        };
        for host in &HOSTS {
            while !ready(self, host.name) {
                assert!(
                    Instant::now() < deadline,
                    "the listeners of {} did not start",
                    host.name
                );
                std::thread::sleep(Duration::from_millis(50));
            }
        }
    }

    /// Whether a datagram from `from` to `to`:`port` is answered. UDP is
    /// best effort and the answer comes from a forked process, so a loaded
    /// machine gets three tries of 2 s; a flow the rules drop never answers
    /// however often it is tried.
    fn exchanges(&self, from: &str, to: &str, port: u16, v6: bool) -> bool {
        (0..3).any(|_| self.exchange_once(from, to, port, v6))
    }

    fn exchange_once(&self, from: &str, to: &str, port: u16, v6: bool) -> bool {
        use std::io::Write;
        let target = HOSTS.iter().find(|h| h.name == to).expect("a host");
        let address = if v6 {
            format!("UDP6:[{}]:{port}", target.v6)
        } else {
            format!("UDP4:{}:{port}", target.v4)
        };
        let mut child = Command::new("ip")
            .args(["netns", "exec", &self.ns(from), "socat", "-T2", "STDIO"])
            .arg(&address)
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()
            .expect("socat runs");
        let _ = child.stdin.take().expect("stdin").write_all(b"ping\n");
        let out = child.wait_with_output().expect("socat ends");
        stdout(&out).contains("pong")
    }

    /// Whether `from` opens a TCP connection to `to`:`port` (0.5 s at most).
    fn connects(&self, from: &str, to: &str, port: u16, v6: bool) -> bool {
        let target = HOSTS.iter().find(|h| h.name == to).expect("a host");
        let address = if v6 {
            format!("TCP6:[{}]:{port},connect-timeout=0.5", target.v6)
        } else {
            format!("TCP4:{}:{port},connect-timeout=0.5", target.v4)
        };
        self.exec(from, &["socat", "-u", "OPEN:/dev/null", &address])
            .status
            .success()
    }
}

impl Drop for DataCentre {
    fn drop(&mut self) {
        for child in &mut self.listeners {
            let _ = child.kill();
            let _ = child.wait();
        }
        for name in HOSTS.iter().map(|h| h.name).chain(["br"]) {
            let _ = Command::new("ip")
                .args(["netns", "del", &self.ns(name)])
                .status();
        }
    }
}

/// (from, to, protocol, port) that `policy reach` allows, on TCP and UDP.
fn allowed(policy: &str) -> BTreeSet<(String, String, String, u16)> {
    let out = Command::new(BIN)
        .args(["policy", "reach", policy, "--json"])
        .output()
        .expect("runs");
    assert!(out.status.success(), "{}", stderr(&out));
    let rows: serde_json::Value = serde_json::from_str(&stdout(&out)).expect("json");
    let mut flows = BTreeSet::new();
    for row in rows.as_array().expect("rows") {
        let party = |key: &str| {
            let text = row[key].as_str().expect("party");
            text.strip_prefix("host:").unwrap_or(text).to_owned()
        };
        for port in row["ports"].as_array().expect("ports") {
            let Some((protocol, number)) = port.as_str().and_then(|p| p.split_once('/')) else {
                continue;
            };
            if protocol == "tcp" || protocol == "udp" {
                flows.insert((
                    party("from"),
                    party("to"),
                    protocol.to_owned(),
                    number.parse().expect("a port"),
                ));
            }
        }
    }
    flows
}

#[test]
fn the_data_centre_connects_exactly_as_the_policy_says() {
    let policy = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../../examples/datacenter");
    let policy = policy.to_str().expect("utf-8");
    let mut dc = DataCentre::build();
    dc.apply_policy(policy);
    dc.listen();
    let allowed = allowed(policy);
    let flow = |from: &str, to: &str, protocol: &str, port: u16| {
        (from.to_owned(), to.to_owned(), protocol.to_owned(), port)
    };
    assert!(
        allowed.contains(&flow("internet", "edge", "tcp", 443)),
        "{allowed:?}"
    );
    assert!(
        allowed.contains(&flow("edge", "internet", "udp", 53)),
        "{allowed:?}"
    );

    // Every pair of parties on every sampled port, both families, in
    // parallel (each attempt is bounded by its 0.5 s timeout).
    let mut cases = Vec::new();
    for from in &HOSTS {
        for to in HOSTS.iter().filter(|h| h.name != from.name) {
            for v6 in [false, true] {
                for port in PORTS {
                    cases.push((from.name, to.name, "tcp", port, v6));
                }
                cases.push((from.name, to.name, "udp", UDP_PORT, v6));
            }
        }
    }
    let outcomes: Vec<(Case, bool)> = std::thread::scope(|scope| {
        cases
            .chunks(cases.len().div_ceil(16))
            .map(|chunk| {
                let dc = &dc;
                scope.spawn(move || {
                    chunk
                        .iter()
                        .map(|&(from, to, protocol, port, v6)| {
                            let through = if protocol == "tcp" {
                                dc.connects(from, to, port, v6)
                            } else {
                                dc.exchanges(from, to, port, v6)
                            };
                            ((from, to, protocol, port, v6), through)
                        })
                        .collect::<Vec<_>>()
                })
            })
            .collect::<Vec<_>>()
            .into_iter()
            .flat_map(|t| t.join().expect("a prober"))
            .collect()
    });
    let mut wrong = Vec::new();
    for ((from, to, protocol, port, v6), connected) in &outcomes {
        let key = (
            (*from).to_owned(),
            (*to).to_owned(),
            (*protocol).to_owned(),
            *port,
        );
        let expected = allowed.contains(&key);
        if *connected != expected {
            wrong.push(format!(
                "{from} -> {to} {protocol}/{port} {}: got through {connected}, policy says {expected}",
                if *v6 { "IPv6" } else { "IPv4" }
            ));
        }
    }
    assert!(
        wrong.is_empty(),
        "{} flows disagree:\n{}",
        wrong.len(),
        wrong.join("\n")
    );
    assert!(
        outcomes.iter().filter(|(_, c)| *c).count() >= 10,
        "too few flows connected"
    );

    // From a compromised api-1, exactly the blast set answers.
    let out = Command::new(BIN)
        .args(["policy", "blast", policy, "--host", "api-1", "--json"])
        .output()
        .expect("runs");
    let blast: serde_json::Value = serde_json::from_str(&stdout(&out)).expect("json");
    let blast: BTreeSet<String> = blast
        .as_array()
        .expect("list")
        .iter()
        .map(|r| {
            r["reached"]
                .as_str()
                .expect("reached")
                .trim_start_matches("host:")
                .to_owned()
        })
        .collect();
    let answered: BTreeSet<String> = outcomes
        .iter()
        .filter(|((from, _, _, _, _), connected)| *from == "api-1" && *connected)
        .map(|((_, to, _, _, _), _)| (*to).to_owned())
        .collect();
    assert_eq!(answered, blast);
}
