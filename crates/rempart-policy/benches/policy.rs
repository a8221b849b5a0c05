//! Policy figures (issue 5): load and resolve a generated policy of 10,000
//! hosts, 500 groups and 50,000 rules, check its invariants, compile one
//! host and validate it (its accepted packets against the policy's); and
//! the reachability matrix of 1,000 hosts. `cargo bench -p rempart-policy`
//! (HOSTS, GROUPS, RULES to change the sizes).

use std::fmt::Write as _;
use std::time::Instant;

fn env(name: &str, default: usize) -> usize {
    std::env::var(name)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

/// A policy of `hosts` hosts in one zone, `groups` groups by label, and
/// `rules` rules between groups over 20 services, with two invariants.
fn generate(hosts: usize, groups: usize, rules: usize) -> String {
    let roles = groups.max(1);
    let mut text =
        String::from("[[zone]]\nname = \"dc\"\nnetworks = [\"10.0.0.0/8\", \"fd00::/16\"]\n\n");
    for i in 0..hosts {
        let _ = write!(
            text,
            "[[host]]\nname = \"h{i}\"\naddresses = [\"10.{}.{}.{}\", \"fd00::{:x}\"]\nlabels = {{ role = \"r{}\" }}\nzone = \"dc\"\n\n",
            (i >> 16) & 255,
            (i >> 8) & 255,
            i & 255,
            i + 1,
            i % roles
        );
    }
    for g in 0..groups {
        let _ = write!(
            text,
            "[[group]]\nname = \"g{g}\"\nselect = {{ role = \"r{g}\" }}\n\n"
        );
    }
    for s in 0..20 {
        let _ = write!(
            text,
            "[[service]]\nname = \"s{s}\"\nports = [\"tcp/{}\"]\n\n",
            8000 + s
        );
    }
    for r in 0..rules {
        let _ = write!(
            text,
            "[[rule]]\nfrom = \"group:g{}\"\nto = \"group:g{}\"\nservice = \"s{}\"\n\n",
            r % groups,
            (r * 7 + 3) % groups,
            r % 20
        );
    }
    text.push_str(
        "[[invariant]]\nname = \"no internet\"\nkind = \"never\"\nfrom = \"internet\"\nto = \"group:g0\"\n\n\
         [[invariant]]\nname = \"s0 only from g1\"\nkind = \"only-from\"\nfrom = \"group:g1\"\nto = \"group:g2\"\nservice = \"s0\"\n",
    );
    text
}

fn main() {
    let hosts = env("HOSTS", 10_000);
    let groups = env("GROUPS", 500);
    let rules = env("RULES", 50_000);
    let today = time::macros::date!(2026 - 11 - 26);
    let text = generate(hosts, groups, rules);
    println!(
        "policy: {hosts} hosts, {groups} groups, {rules} rules ({:.1} MB of TOML)",
        text.len() as f64 / 1e6
    );
    let started = Instant::now();
    let policy = rempart_policy::parse(&[("generated.toml", &text)]).expect("resolves");
    let resolved = started.elapsed();
    let started = Instant::now();
    let violations = rempart_policy::check(&policy, today);
    let checked = started.elapsed();
    let started = Instant::now();
    let compiled = rempart_policy::compile(&policy, "h0", today).expect("compiles");
    let compile_one = started.elapsed();
    let started = Instant::now();
    let wanted = rempart_policy::validate::desired(&policy, "h0", today).expect("a host");
    let proof = rempart_policy::validate::compare(&wanted, &wanted);
    let validated = started.elapsed();
    assert_eq!(proof, Ok(()));
    println!(
        "load+resolve {resolved:?}, invariants {checked:?} ({} violations), compile h0 {compile_one:?} ({} lines), validate h0 {validated:?}",
        violations.len(),
        compiled.script.lines().count()
    );
    println!(
        "total (load, check, compile and validate one host): {:?}",
        resolved + checked + compile_one + validated
    );

    let small = generate(1000, 100, 5000);
    let policy = rempart_policy::parse(&[("small.toml", &small)]).expect("resolves");
    let started = Instant::now();
    let matrix = rempart_policy::analysis::reach(&policy, today);
    println!(
        "reach matrix of 1000 hosts, 100 groups, 5000 rules: {} host pairs x services in {:?}",
        matrix.len(),
        started.elapsed()
    );
}
