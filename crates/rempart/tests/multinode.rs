//! Two control-plane processes on one PostgreSQL see each other's writes.

mod common;

use common::{Backend, Deployment, Server, assert_refused, json, stdout};

#[test]
fn two_nodes_share_one_postgres() {
    let deployment = Deployment::init(Backend::Postgres);
    // A second node is a copy of the first node's data directory (same CA,
    // same rempart.toml) on another port.
    let second_dir = deployment.dir.path().join("second");
    let copied = std::process::Command::new("cp")
        .arg("-a")
        .arg(deployment.data_dir())
        .arg(&second_dir)
        .status()
        .expect("cp");
    assert!(copied.success());
    let a = Server::start(&deployment.data_dir(), &[]);
    let b = Server::start(&second_dir, &[]);
    let admin = deployment.admin_token.as_str();

    let out = a.cli(admin, &["user", "add", "carol", "--role", "engineer"]);
    assert!(out.status.success());
    let carol = stdout(&out).trim().to_owned();
    let listed = json(&stdout(&b.cli(admin, &["user", "list", "--json"])));
    assert!(
        listed["users"]
            .as_array()
            .expect("users")
            .iter()
            .any(|u| u["name"] == "carol")
    );
    assert_eq!(stdout(&b.cli(&carol, &["whoami"])).trim(), "carol");

    // Disabled on B: refused on A on the very next request.
    assert!(b.cli(admin, &["user", "disable", "carol"]).status.success());
    assert_refused(&a.cli(&carol, &["whoami"]), "401");

    // A machine issued by A is recognised, then revoked, by B.
    let out_dir = deployment.dir.path().join("m");
    std::fs::create_dir(&out_dir).expect("mkdir");
    assert!(
        a.cli(
            admin,
            &[
                "machine",
                "add",
                "agent-1",
                "--role",
                "agent",
                "--out",
                out_dir.to_str().expect("utf-8")
            ]
        )
        .status
        .success()
    );
    let as_machine = |server: &Server| {
        server
            .cli_command(&["whoami"])
            .env("REMPART_CLIENT_CERT", out_dir.join("agent-1.crt"))
            .env("REMPART_CLIENT_KEY", out_dir.join("agent-1.key"))
            .output()
            .expect("runs")
    };
    assert_eq!(stdout(&as_machine(&b)).trim(), "machine:agent-1");
    assert!(
        b.cli(admin, &["machine", "revoke", "agent-1"])
            .status
            .success()
    );
    assert_refused(&as_machine(&a), "revoked");

    // A second `init` against the same database refuses: it belongs to A.
    let out = std::process::Command::new(common::BIN)
        .arg("init")
        .arg("--data-dir")
        .arg(deployment.dir.path().join("third"))
        .arg("--store")
        .arg(&deployment.pg.as_ref().expect("postgres").url)
        .output()
        .expect("runs");
    assert_refused(&out, "already has users");
    assert!(
        !deployment.dir.path().join("third").exists(),
        "a failed init leaves nothing"
    );
}
