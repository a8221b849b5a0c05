//! New-connection rate through a host whose allow rule names a group of
//! 10,000 members, against the same rule naming a group of 10, and against
//! no ruleset at all (issue 5). Real kernel, real `nft`: a server and a
//! client namespace joined by a veth pair; the server's ruleset is the one
//! `rempart_policy::compile` writes for it.
//!
//! Every round builds fresh namespaces, so no conntrack entry, TIME_WAIT
//! socket or port choice carries from one round to the next; the variants
//! take turns round by round so that drift on this shared machine touches
//! them alike. The server closes first (its side keeps the TIME_WAIT), and
//! the client's port range is widened, so the client never runs out of
//! ports within a round.
//!
//! `cargo bench -p rempart-policy --bench connection_rate` as root, with
//! `ip` and `nft` (ROUNDS, SECONDS, THREADS to change the run). Without
//! them it says so and measures nothing.

use std::fmt::Write as _;
use std::io::{BufRead, BufReader, Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{Duration, Instant};

const SERVER: &str = "10.77.0.1";
const PORT: u16 = 9000;
/// A round stops at this many connections even before its time is up.
const MAX_CONNECTIONS_PER_ROUND: u64 = 60_000;

fn env(name: &str, default: u64) -> u64 {
    std::env::var(name)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

/// The policy: the server, the client, and `members - 1` other hosts that
/// share the client's label (unless `client_is_member` is false: then the
/// client is left out, for the control round); one rule from that group to
/// the server.
/// A second group and rule come first, so the packet passes a rule that
/// does not match before the one that does.
fn policy(members: usize, client_is_member: bool) -> String {
    let client_role = if client_is_member {
        "client"
    } else {
        "outsider"
    };
    let mut text = format!(
        "[[zone]]\nname = \"dc\"\nnetworks = [\"10.0.0.0/8\"]\n\n\
         [[host]]\nname = \"server\"\naddresses = [\"10.77.0.1\"]\nzone = \"dc\"\n\n\
         [[host]]\nname = \"client\"\naddresses = [\"10.77.0.2\"]\nlabels = {{ role = \"{client_role}\" }}\nzone = \"dc\"\n\n\
         [[host]]\nname = \"admin\"\naddresses = [\"10.78.0.1\"]\nlabels = {{ role = \"admin\" }}\nzone = \"dc\"\n\n",
    );
    for i in 1..members {
        let _ = write!(
            text,
            "[[host]]\nname = \"c{i}\"\naddresses = [\"10.100.{}.{}\"]\nlabels = {{ role = \"client\" }}\nzone = \"dc\"\n\n",
            i >> 8,
            i & 255
        );
    }
    text.push_str(
        "[[group]]\nname = \"admins\"\nselect = { role = \"admin\" }\n\n\
         [[group]]\nname = \"clients\"\nselect = { role = \"client\" }\n\n\
         [[service]]\nname = \"ssh\"\nports = [\"tcp/22\"]\n\n\
         [[service]]\nname = \"app\"\nports = [\"tcp/9000\"]\n\n\
         [[rule]]\nfrom = \"group:admins\"\nto = \"host:server\"\nservice = \"ssh\"\n\n\
         [[rule]]\nfrom = \"group:clients\"\nto = \"host:server\"\nservice = \"app\"\n",
    );
    text
}

fn run(program: &str, args: &[&str], stdin: Option<&str>) -> Result<(), String> {
    let mut child = Command::new(program)
        .args(args)
        .stdin(Stdio::piped())
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .map_err(|e| format!("{program}: {e}"))?;
    if let Some(text) = stdin {
        child
            .stdin
            .take()
            .expect("piped")
            .write_all(text.as_bytes())
            .map_err(|e| format!("{program}: {e}"))?;
    }
    drop(child.stdin.take());
    let out = child
        .wait_with_output()
        .map_err(|e| format!("{program}: {e}"))?;
    if out.status.success() {
        Ok(())
    } else {
        Err(format!(
            "{program} {}: {}",
            args.join(" "),
            String::from_utf8_lossy(&out.stderr).trim()
        ))
    }
}

struct Measured {
    done: u64,
    failed: u64,
    per_second: f64,
}

/// A server and a client namespace on a veth pair; removed when dropped,
/// also when a round fails.
struct Pair {
    server: String,
    client: String,
    listener: Option<Child>,
}

impl Pair {
    fn new(tag: &str) -> Result<Self, String> {
        let id = std::process::id();
        let pair = Pair {
            server: format!("rpb-s{tag}-{id}"),
            client: format!("rpb-c{tag}-{id}"),
            listener: None,
        };
        run("ip", &["netns", "add", &pair.server], None)?;
        run("ip", &["netns", "add", &pair.client], None)?;
        let (s, c) = (pair.server.as_str(), pair.client.as_str());
        for args in [
            vec![
                "-n", s, "link", "add", "veth0", "type", "veth", "peer", "veth1", "netns", c,
            ],
            vec!["-n", s, "addr", "add", "10.77.0.1/16", "dev", "veth0"],
            vec!["-n", c, "addr", "add", "10.77.0.2/16", "dev", "veth1"],
            vec!["-n", s, "link", "set", "veth0", "up"],
            vec!["-n", c, "link", "set", "veth1", "up"],
            vec!["-n", s, "link", "set", "lo", "up"],
            vec!["-n", c, "link", "set", "lo", "up"],
        ] {
            run("ip", &args, None)?;
        }
        run(
            "ip",
            &[
                "netns",
                "exec",
                c,
                "sysctl",
                "-qw",
                "net.ipv4.ip_local_port_range=1024 65535",
            ],
            None,
        )?;
        Ok(pair)
    }

    fn apply(&self, script: &str) -> Result<(), String> {
        run(
            "ip",
            &["netns", "exec", &self.server, "nft", "-f", "-"],
            Some(script),
        )
    }

    /// Starts this binary as the server inside the server namespace and
    /// waits until it listens.
    fn listen(&mut self, exe: &str) -> Result<(), String> {
        let mut child = Command::new("ip")
            .args(["netns", "exec", &self.server, exe])
            .env("REMPART_CONNRATE_ROLE", "server")
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .spawn()
            .map_err(|e| format!("server: {e}"))?;
        let mut line = String::new();
        BufReader::new(child.stdout.take().expect("piped"))
            .read_line(&mut line)
            .map_err(|e| format!("server: {e}"))?;
        self.listener = Some(child);
        if line.trim() == "listening" {
            Ok(())
        } else {
            Err(format!("server did not start: {line:?}"))
        }
    }

    /// Runs this binary as the client inside the client namespace; returns
    /// the connections made, those that failed, and the rate per second.
    fn measure(&self, exe: &str, seconds: u64, threads: u64) -> Result<Measured, String> {
        let out = Command::new("ip")
            .args(["netns", "exec", &self.client, exe])
            .env("REMPART_CONNRATE_ROLE", "client")
            .env("SECONDS", seconds.to_string())
            .env("THREADS", threads.to_string())
            .stderr(Stdio::inherit())
            .output()
            .map_err(|e| format!("client: {e}"))?;
        let text = String::from_utf8_lossy(&out.stdout);
        let mut fields = text.split_whitespace();
        let (Some(done), Some(failed), Some(micros)) =
            (fields.next(), fields.next(), fields.next())
        else {
            return Err(format!("client printed {text:?}"));
        };
        let parse = |v: &str| v.parse::<u64>().map_err(|e| format!("client: {v}: {e}"));
        let (done, failed, micros) = (parse(done)?, parse(failed)?, parse(micros)?);
        Ok(Measured {
            done,
            failed,
            per_second: done as f64 / (micros as f64 / 1e6),
        })
    }
}

impl Drop for Pair {
    fn drop(&mut self) {
        if let Some(mut child) = self.listener.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
        for name in [&self.server, &self.client] {
            let _ = run("ip", &["netns", "del", name], None);
        }
    }
}

/// Accepts and closes at once, on two threads, until killed.
fn serve() {
    let listener = TcpListener::bind((SERVER, PORT)).expect("binds the server address");
    println!("listening");
    let _ = std::io::stdout().flush();
    let workers: Vec<_> = (0..2)
        .map(|_| {
            let listener = listener.try_clone().expect("clones the listener");
            std::thread::spawn(move || {
                for stream in listener.incoming() {
                    drop(stream);
                }
            })
        })
        .collect();
    for worker in workers {
        let _ = worker.join();
    }
}

/// Connects, waits for the server's close, closes; on `THREADS` threads
/// for `SECONDS` or [`MAX_CONNECTIONS_PER_ROUND`]. Prints "done failed µs".
fn connect_loop() {
    let seconds = env("SECONDS", 2);
    let threads = env("THREADS", 4);
    let target: SocketAddr = format!("{SERVER}:{PORT}").parse().expect("an address");
    let done = AtomicU64::new(0);
    let failed = AtomicU64::new(0);
    let stop = AtomicBool::new(false);
    let deadline = Duration::from_secs(seconds);
    let started = Instant::now();
    std::thread::scope(|scope| {
        for _ in 0..threads {
            scope.spawn(|| {
                let mut byte = [0u8; 1];
                while !stop.load(Ordering::Relaxed) {
                    match TcpStream::connect_timeout(&target, Duration::from_secs(1)) {
                        Ok(mut stream) => {
                            let _ = stream.set_read_timeout(Some(Duration::from_secs(1)));
                            let _ = stream.read(&mut byte);
                            if done.fetch_add(1, Ordering::Relaxed) + 1 >= MAX_CONNECTIONS_PER_ROUND
                            {
                                stop.store(true, Ordering::Relaxed);
                            }
                        }
                        Err(_) => {
                            failed.fetch_add(1, Ordering::Relaxed);
                        }
                    }
                    if started.elapsed() >= deadline {
                        stop.store(true, Ordering::Relaxed);
                    }
                }
            });
        }
    });
    println!(
        "{} {} {}",
        done.load(Ordering::Relaxed),
        failed.load(Ordering::Relaxed),
        started.elapsed().as_micros()
    );
}

fn median(values: &mut [f64]) -> f64 {
    values.sort_by(f64::total_cmp);
    let n = values.len();
    if n % 2 == 1 {
        values[n / 2]
    } else {
        (values[n / 2 - 1] + values[n / 2]) / 2.0
    }
}

fn main() {
    match std::env::var("REMPART_CONNRATE_ROLE").as_deref() {
        Ok("server") => return serve(),
        Ok("client") => return connect_loop(),
        _ => {}
    }
    let rounds = env("ROUNDS", 5);
    let seconds = env("SECONDS", 2);
    let threads = env("THREADS", 4);
    let exe = std::env::current_exe().expect("the bench's path");
    let exe = exe.to_str().expect("a UTF-8 path").to_owned();
    let today = time::macros::date!(2026 - 11 - 26);

    let compiled = |members: usize, client_is_member: bool| {
        let text = policy(members, client_is_member);
        let policy = rempart_policy::parse(&[("bench.toml", &text)]).expect("resolves");
        rempart_policy::compile(&policy, "server", today)
            .expect("compiles")
            .script
    };
    let variants: [(&str, Option<String>); 3] = [
        ("10-member group", Some(compiled(10, true))),
        ("10,000-member group", Some(compiled(10_000, true))),
        ("no ruleset", None),
    ];
    if let Err(why) = Pair::new("probe") {
        eprintln!("connection_rate: skipped, it needs root, ip and nft to build namespaces: {why}");
        return;
    }
    // The control: the same ruleset without the client in the group must
    // refuse it, or the rounds below would measure a rule that matches
    // nothing.
    let control = (|| {
        let mut pair = Pair::new("control")?;
        pair.apply(&compiled(10_000, false))?;
        pair.listen(&exe)?;
        pair.measure(&exe, 1, 1)
    })();
    match control {
        Ok(m) if m.done == 0 && m.failed > 0 => {
            println!(
                "control: a client outside the group is refused ({} attempts)",
                m.failed
            )
        }
        Ok(m) => panic!(
            "control: a client outside the group connected {} times",
            m.done
        ),
        Err(why) => panic!("control: {why}"),
    }
    println!(
        "new connections/s, {rounds} rounds of {seconds} s, {threads} client threads, fresh namespaces each round"
    );
    let mut rates: Vec<Vec<f64>> = vec![Vec::new(); variants.len()];
    for round in 0..rounds {
        for (index, (name, script)) in variants.iter().enumerate() {
            let outcome = (|| {
                let mut pair = Pair::new(&format!("{round}{index}"))?;
                if let Some(script) = script {
                    pair.apply(script)?;
                }
                pair.listen(&exe)?;
                pair.measure(&exe, seconds, threads)
            })();
            match outcome {
                Ok(m) if m.failed > 0 => panic!(
                    "round {round}, {name}: {} of {} connections failed: an allowed flow was refused",
                    m.failed,
                    m.done + m.failed
                ),
                Ok(Measured {
                    per_second: rate, ..
                }) => {
                    println!("round {round}: {name}: {rate:.0}/s");
                    rates[index].push(rate);
                }
                Err(why) => panic!("round {round}, {name}: {why}"),
            }
        }
    }
    let medians: Vec<f64> = rates.iter_mut().map(|r| median(r)).collect();
    for ((name, _), (median, rates)) in variants.iter().zip(medians.iter().zip(&rates)) {
        let (low, high) = rates
            .iter()
            .fold((f64::MAX, f64::MIN), |(l, h), &r| (l.min(r), h.max(r)));
        println!("{name}: median {median:.0}/s (range {low:.0} to {high:.0})");
    }
    println!(
        "10,000 members / 10 members: {:.3}; 10 members / no ruleset: {:.3}",
        medians[1] / medians[0],
        medians[0] / medians[2]
    );
}
