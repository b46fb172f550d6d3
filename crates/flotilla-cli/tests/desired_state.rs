//! Desired state end to end: `Flotilla-DesiredState` run twice through the real server and a
//! real agent on its own `--root`; the first run changes the node, the second changes nothing.

// Tests drive the real binaries and read the database behind the server's back.
#![allow(clippy::disallowed_methods)]

use flotilla_testkit::{TestServer, start_fleet};
use serde_json::Value;

const DEBIAN: &str = "NAME=\"Debian GNU/Linux\"\nVERSION_ID=\"12\"\nID=debian\n";

fn run(server: &TestServer, resources: &str) -> Value {
    let param = format!("resources={resources}");
    let out = server
        .cli(&["run", "Flotilla-DesiredState", "--param", &param, "--target", "all", "--wait", "-o", "json"])
        .expect("run");
    // `--wait` exits non-zero when the command failed, and still prints it.
    serde_json::from_slice(&out.stdout).unwrap_or_else(|e| panic!("{e}: {}", String::from_utf8_lossy(&out.stderr)))
}

#[test]
fn desired_state_changes_the_node_once_and_then_reports_unchanged() {
    let dir = tempfile::tempdir().expect("tempdir");
    let server = TestServer::start(&dir.path().join("server"), "1s", &[]).expect("server");
    let (agents, ids) = start_fleet(&server, dir.path(), 1, DEBIAN).expect("fleet online");
    let root = &agents[0].root;
    std::fs::create_dir_all(root.join("etc/cron.d")).expect("etc");
    std::fs::write(root.join("etc/cron.d/legacy"), "* * * * * root true\n").expect("legacy");
    let secret = format!("motd-from-the-store-{}", std::process::id());
    server.cli_json(&["params", "put", "/motd/text", &secret, "--type", "SecureString"]).expect("put");

    let resources = r#"[{"action":"file:write","path":"/etc/motd","content":"Welcome to the fleet\n","mode":"0644"},
        {"action":"file:write","path":"/etc/issue","content":"{{ssm-secure:/motd/text}}","mode":"0600"},
        {"action":"file:absent","path":"/etc/cron.d/legacy"},
        {"action":"sysctl:ensure","name":"net.ipv4.ip_forward","value":"1"}]"#;
    let first = run(&server, resources);
    assert_eq!(first["status"], "Success", "{first}");
    let inv = &first["invocations"][0];
    assert_eq!(inv["node_id"], ids[0].as_str());
    assert_eq!(inv["changed"], true, "{inv}");
    let state = inv["state"].as_array().expect("state");
    let summary: Vec<(&str, &str, bool, &str)> = state
        .iter()
        .map(|s| {
            (
                s["step"].as_str().unwrap_or(""),
                s["action"].as_str().unwrap_or(""),
                s["changed"].as_bool().unwrap_or(false),
                s["detail"].as_str().unwrap_or(""),
            )
        })
        .collect();
    assert_eq!(
        summary[..3],
        [
            ("desiredState.0", "file:write", true, "/etc/motd: created"),
            ("desiredState.1", "file:write", true, "/etc/issue: created"),
            ("desiredState.2", "file:absent", true, "/etc/cron.d/legacy: removed"),
        ]
    );
    assert_eq!(summary[3].0, "desiredState.3");
    assert!(summary[3].2 && summary[3].3.contains("written to /etc/sysctl.d/99-flotilla.conf"), "{summary:?}");
    assert!(inv["output"]["stdout"].as_str().unwrap_or("").contains("/etc/motd: created\n"), "{inv}");
    assert_eq!(std::fs::read_to_string(root.join("etc/motd")).expect("motd"), "Welcome to the fleet\n");
    assert_eq!(std::fs::read_to_string(root.join("etc/issue")).expect("issue"), secret, "resolved at send time");
    assert!(!root.join("etc/cron.d/legacy").exists());

    // The store reference stays a reference in everything the server keeps and shows.
    let id = first["id"].as_str().expect("id");
    let stored = std::process::Command::new("sqlite3")
        .arg(server.data_dir.join("flotilla.db"))
        .arg(format!("SELECT parameters || plan FROM commands WHERE id = '{id}'"))
        .output()
        .expect("sqlite3");
    let stored = String::from_utf8_lossy(&stored.stdout);
    assert!(stored.contains("{{ssm-secure:/motd/text}}") && !stored.contains(&secret), "{stored}");
    assert!(!first.to_string().contains(&secret), "the command as shown does not hold the value");

    let second = run(&server, resources);
    assert_eq!(second["status"], "Success", "{second}");
    let inv = &second["invocations"][0];
    assert_eq!(inv["changed"], false, "a second identical run changes nothing: {inv}");
    let state = inv["state"].as_array().expect("state");
    assert_eq!(state.len(), 4);
    assert!(
        state.iter().all(|s| s["changed"] == false && s["detail"].as_str().is_some_and(|d| d.ends_with(": unchanged"))),
        "{inv}"
    );
    let shown = server.cli_json(&["commands", "show", second["id"].as_str().expect("id")]).expect("show");
    assert_eq!(shown["invocations"][0]["changed"], false, "commands show -o json carries it too");

    // Drift on the node is corrected on the next run, and reported.
    std::fs::write(root.join("etc/motd"), "edited by hand\n").expect("drift");
    let third = run(&server, resources);
    let inv = &third["invocations"][0];
    assert_eq!(inv["changed"], true, "{inv}");
    assert_eq!(inv["state"][0]["detail"], "/etc/motd: content differed, rewritten");
    assert_eq!(inv["state"][1]["changed"], false);
    assert_eq!(std::fs::read_to_string(root.join("etc/motd")).expect("motd"), "Welcome to the fleet\n");

    // A plain script reports no state: `changed` is null, not false.
    let out = server
        .cli(&["run", "Flotilla-RunShellScript", "--param", "commands=true", "--target", "all", "--wait", "-o", "json"])
        .expect("run");
    let script: Value = serde_json::from_slice(&out.stdout).expect("json");
    assert_eq!(script["invocations"][0]["changed"], Value::Null, "{script}");
    assert_eq!(script["invocations"][0]["state"], serde_json::json!([]));

    // A failing step: the owner does not exist on the node; nothing is written.
    let bad = run(&server, r#"[{"action":"file:write","path":"/etc/owned","content":"x","owner":"ghost"}]"#);
    assert_eq!(bad["status"], "Failed", "{bad}");
    let detail = bad["invocations"][0]["detail"].as_str().unwrap_or("");
    assert!(detail.contains("owner `ghost` does not exist on the node"), "{detail}");
    assert!(!root.join("etc/owned").exists());

    // A bad element is refused when the command is created, naming its index and field.
    let out = server
        .cli(&[
            "run",
            "Flotilla-DesiredState",
            "--param",
            r#"resources=[{"action":"file:absent","path":"/a"},{"action":"file:write","path":"/b","content":"","mode":"999"}]"#,
            "--target",
            "all",
        ])
        .expect("run");
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("resources[1].mode: \"999\" is not an octal mode"), "{err}");
}

/// Simulated nodes answer desired-state steps as real ones do: changed on the first run,
/// unchanged on the second, per node; the server stores and shows it for each invocation.
#[test]
fn simulated_nodes_report_changed_then_unchanged() {
    const NODES: usize = 200;
    let dir = tempfile::tempdir().expect("tempdir");
    let server = TestServer::start(&dir.path().join("server"), "30s", &[]).expect("server");
    let ca = std::fs::read(&server.ca).expect("ca");
    let runtime = tokio::runtime::Runtime::new().expect("runtime");
    let fleet = runtime.block_on(async {
        let admin = flotilla_api::Client::new(&server.url, Some(server.token.clone()), Some(&ca)).expect("client");
        let (creds, _) = flotilla_loadgen::enroll(&admin, &server.url, &ca, NODES, None).await.expect("enroll");
        flotilla_loadgen::Fleet::start(flotilla_loadgen::FleetOptions::new(&server.url, &ca), creds, 0)
    });
    flotilla_testkit::wait_until(std::time::Duration::from_secs(120), || Ok(fleet.connected() == NODES))
        .expect("every simulated node connected");
    let resources = r#"[{"action":"file:write","path":"/etc/motd","content":"hi\n"},
        {"action":"service:ensure","name":"chronyd","enabled":true}]"#;
    for (round, expected) in [(1, true), (2, false)] {
        let started = std::time::Instant::now();
        let cmd = run(&server, resources);
        eprintln!("round {round}: {NODES} simulated nodes in {:?}", started.elapsed());
        assert_eq!(cmd["status"], "Success", "{cmd}");
        let invocations = cmd["invocations"].as_array().expect("invocations");
        assert_eq!(invocations.len(), NODES);
        for inv in invocations {
            assert_eq!(inv["changed"], expected, "round {round}: {inv}");
            assert_eq!(inv["state"].as_array().map(Vec::len), Some(2), "{inv}");
        }
    }
    runtime.block_on(fleet.stop());
}
