//! The foundation, end to end, as an operator drives it: a real server, real agent processes
//! on their own sandbox roots, and the `flotilla` CLI.

// Tests drive the real binaries.
#![allow(clippy::disallowed_methods)]

use std::time::Duration;

use flotilla_testkit::{Agent, TestServer, wait_until, write_root};
use serde_json::Value;

const DEBIAN: &str = "NAME=\"Debian GNU/Linux\"\nVERSION_ID=\"12\"\nID=debian\n";
const UBUNTU: &str = "NAME=\"Ubuntu\"\nVERSION_ID=\"22.04\"\nID=ubuntu\n";
const ROCKY: &str = "NAME=\"Rocky Linux\"\nVERSION_ID=\"9.3\"\nID=\"rocky\"\n";

fn create_activation(server: &TestServer, args: &[&str]) -> (String, String) {
    let mut full = vec!["activations", "create"];
    full.extend_from_slice(args);
    let a = server.cli_json(&full).expect("create activation");
    (a["id"].as_str().expect("id").to_owned(), a["code"].as_str().expect("code").to_owned())
}

fn nodes(server: &TestServer, targets: &[&str]) -> Vec<Value> {
    let mut args = vec!["nodes", "ls"];
    for t in targets {
        args.extend(["--target", t]);
    }
    server.cli_json(&args).expect("nodes ls").as_array().expect("array").clone()
}

fn hostnames(server: &TestServer, targets: &[&str]) -> Vec<String> {
    let mut names: Vec<String> =
        nodes(server, targets).iter().map(|n| n["hostname"].as_str().unwrap_or("").to_owned()).collect();
    names.sort();
    names
}

fn status_of(server: &TestServer, id: &str) -> String {
    server.cli_json(&["nodes", "show", id]).expect("show")["status"].as_str().expect("status").to_owned()
}

fn enroll(server: &TestServer, dir: &std::path::Path, name: &str, os: &str, act: &(String, String)) -> (Agent, String) {
    let agent_dir = dir.join(name);
    write_root(&agent_dir.join("root"), os, name).expect("root");
    let (mut agent, out) = Agent::enroll(server, &agent_dir, &act.0, &act.1).expect("run register");
    assert!(out.status.success(), "register {name}: {}", String::from_utf8_lossy(&out.stderr));
    let node_id = String::from_utf8_lossy(&out.stdout).trim().to_owned();
    agent.start().expect("start agent");
    (agent, node_id)
}

#[test]
fn fleet_lifecycle() {
    let dir = tempfile::tempdir().expect("tempdir");
    let mut server = TestServer::start(&dir.path().join("server"), "1s", &[]).expect("server");
    let act = create_activation(&server, &["--limit", "3", "--tag", "team=core"]);

    let (mut a1, id1) = enroll(&server, dir.path(), "web-1", DEBIAN, &act);
    let (mut a2, id2) = enroll(&server, dir.path(), "web-2", UBUNTU, &act);
    let (mut a3, id3) = enroll(&server, dir.path(), "db-1", ROCKY, &act);
    let ids = [id1.clone(), id2.clone(), id3.clone()];
    for id in &ids {
        assert!(id.starts_with("n-") && id.len() == 19, "node id shape: {id}");
    }
    let all_online = |server: &TestServer| {
        wait_until(Duration::from_secs(20), || {
            Ok(nodes(server, &[]).iter().filter(|n| n["status"] == "Online").count() == 3)
        })
    };
    all_online(&server).unwrap_or_else(|e| panic!("{e}: {}", a1.log_text()));

    // What each agent reported from its own root.
    let n1 = server.cli_json(&["nodes", "show", &id1]).expect("show");
    assert_eq!(n1["hostname"], "web-1");
    assert_eq!(n1["platform"]["name"], "Debian GNU/Linux");
    assert_eq!(n1["platform"]["version"], "12");
    assert_eq!(n1["platform"]["id"], "debian");
    assert_eq!(n1["tags"]["team"], "core", "activation default tags");
    assert!(n1["last_seen"].is_string());
    assert!(!n1["kernel"].as_str().unwrap_or_default().is_empty());
    let n3 = server.cli_json(&["nodes", "show", &id3]).expect("show");
    assert_eq!((n3["platform"]["id"].as_str(), n3["platform"]["version"].as_str()), (Some("rocky"), Some("9.3")));

    // Tags and targets.
    let out = server.cli(&["nodes", "tag", &id1, "env=prod", "role=web"]).expect("tag");
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    server.cli(&["nodes", "tag", &id2, "env=staging", "role=web"]).expect("tag");
    server.cli(&["nodes", "tag", &id3, "env=prod", "role=db"]).expect("tag");
    assert_eq!(hostnames(&server, &["tag:env=prod"]), ["db-1", "web-1"]);
    assert_eq!(
        hostnames(&server, &["tag:env=prod", "tag:role=web"]),
        ["db-1", "web-1", "web-2"],
        "targets are a union"
    );
    assert_eq!(hostnames(&server, &["tag:env=staging,prod"]), ["db-1", "web-1", "web-2"], "comma list of values");
    assert_eq!(hostnames(&server, &["tag:role"]), ["db-1", "web-1", "web-2"]);
    assert_eq!(hostnames(&server, &[&id2]), ["web-2"]);
    assert_eq!(hostnames(&server, &["all"]), ["db-1", "web-1", "web-2"]);
    let out = server.cli(&["groups", "put", "webs", "--target", "tag:role=web"]).expect("group");
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    assert_eq!(hostnames(&server, &["group:webs"]), ["web-1", "web-2"]);
    let untagged = server.cli_json(&["nodes", "untag", &id2, "role"]).expect("untag");
    assert!(untagged["tags"].get("role").is_none());
    assert_eq!(hostnames(&server, &["group:webs"]), ["web-1"]);

    // A server restart: every agent comes back without operator action.
    // (SIGKILL: the old process cannot mark anything, so each agent must really reconnect.)
    server.restart().expect("restart");
    for agent in [&a1, &a2, &a3] {
        wait_until(Duration::from_secs(20), || Ok(agent.log_text().matches("connected to the server").count() >= 2))
            .unwrap_or_else(|e| panic!("agent did not reconnect: {e}: {}", agent.log_text()));
    }
    all_online(&server).unwrap_or_else(|e| panic!("after restart: {e}: {}", a2.log_text()));

    // A silent agent (frozen, its TCP connection still open): ConnectionLost after a few missed
    // heartbeats; thawed, it notices and reconnects by itself.
    a1.signal("STOP").expect("freeze");
    wait_until(Duration::from_secs(15), || Ok(status_of(&server, &id1) == "ConnectionLost"))
        .expect("silent agent is lost");
    a1.signal("CONT").expect("thaw");
    wait_until(Duration::from_secs(20), || Ok(status_of(&server, &id1) == "Online")).expect("thawed agent is back");

    // A stopped agent: ConnectionLost as soon as its connection closes.
    a3.stop();
    wait_until(Duration::from_secs(10), || Ok(status_of(&server, &id3) == "ConnectionLost"))
        .expect("stopped agent is ConnectionLost");
    assert_eq!(status_of(&server, &id1), "Online");

    // Deregistration: the credential is revoked, the agent is refused and says so.
    let out = server.cli_json(&["nodes", "deregister", &id2]).expect("deregister");
    assert_eq!(out["status"], "Deregistered");
    assert_eq!(a2.wait_exit(Duration::from_secs(15)), Some(3), "a revoked agent exits: {}", a2.log_text());
    assert!(a2.log_text().contains("deregistered"), "the agent log says why: {}", a2.log_text());
    // Restarted, it is refused again at once, and the node stays Deregistered.
    a2.start().expect("restart revoked agent");
    assert_eq!(a2.wait_exit(Duration::from_secs(15)), Some(3));
    assert_eq!(status_of(&server, &id2), "Deregistered");
    assert!(!hostnames(&server, &["all"]).contains(&"web-2".to_owned()), "deregistered nodes are never targeted");

    a1.stop();
}

#[test]
fn fleet_on_postgres() {
    let rt = tokio::runtime::Builder::new_current_thread().enable_all().build().expect("runtime");
    let db = rt.block_on(flotilla_testkit::postgres::TempDatabase::for_test());
    let dir = tempfile::tempdir().expect("tempdir");
    let mut server = TestServer::start(&dir.path().join("server"), "1s", &[("FLOTILLA_DATABASE_URL", db.url())])
        .expect("server on postgres");
    let version = server.cli_json(&["nodes", "ls"]).expect("ls");
    assert_eq!(version, serde_json::json!([]));
    let act = create_activation(&server, &["--limit", "1"]);
    let (mut agent, id) = enroll(&server, dir.path(), "pg-node", DEBIAN, &act);
    wait_until(Duration::from_secs(20), || Ok(status_of(&server, &id) == "Online")).expect("online on postgres");
    server.restart().expect("restart");
    // Backoff doubles while the server is down; on a loaded machine the restart can take
    // several rounds (capped at about a minute each).
    wait_until(Duration::from_secs(150), || Ok(agent.log_text().matches("connected to the server").count() >= 2))
        .expect("reconnected");
    wait_until(Duration::from_secs(20), || Ok(status_of(&server, &id) == "Online")).expect("online again on postgres");
    agent.stop();
    server.kill();
    rt.block_on(db.drop_database()).expect("drop");
}

/// Issue 12, item 8: `&` intersects, `!` negates, several `--target` flags stay a union, groups
/// take the same syntax, and what matches nothing or cannot be a tag is refused.
#[test]
fn targets_intersect_and_negate() {
    let dir = tempfile::tempdir().expect("tempdir");
    let server = TestServer::start(&dir.path().join("server"), "1s", &[]).expect("server");
    let act = create_activation(&server, &["--limit", "4"]);
    let mut agents = Vec::new();
    for (name, tags) in [
        ("web-prod", ["env=prod", "role=web"]),
        ("web-canary", ["env=prod", "role=web"]),
        ("db-prod", ["env=prod", "role=db"]),
        ("web-staging", ["env=staging", "role=web"]),
    ] {
        let (agent, id) = enroll(&server, dir.path(), name, DEBIAN, &act);
        let mut args = vec!["nodes", "tag", &id];
        args.extend(tags);
        let out = server.cli(&args).expect("tag");
        assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
        if name == "web-canary" {
            server.cli(&["nodes", "tag", &id, "canary=yes"]).expect("tag");
        }
        agents.push((agent, id));
    }
    wait_until(Duration::from_secs(20), || {
        Ok(nodes(&server, &[]).iter().filter(|n| n["status"] == "Online").count() == 4)
    })
    .expect("all online");

    assert_eq!(hostnames(&server, &["tag:env=prod&tag:role=web"]), ["web-canary", "web-prod"], "intersection");
    assert_eq!(hostnames(&server, &["tag:env=prod&!tag:canary"]), ["db-prod", "web-prod"], "negation");
    assert_eq!(hostnames(&server, &["!tag:env=prod"]), ["web-staging"], "a lone negation: every node except");
    assert_eq!(
        hostnames(&server, &["tag:env=prod&tag:role=db", "tag:env=staging&tag:role=web"]),
        ["db-prod", "web-staging"],
        "a union of intersections"
    );
    assert_eq!(hostnames(&server, &["tag:role=web&!tag:canary&!tag:env=staging"]), ["web-prod"]);
    let canary_id = agents[1].1.clone();
    assert_eq!(hostnames(&server, &[&format!("tag:role=web&!{canary_id}")]), ["web-prod", "web-staging"]);

    // README's example: web AND prod.
    let out = server.cli(&["groups", "put", "web-prod", "--target", "tag:role=web&tag:env=prod"]).expect("group");
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    assert_eq!(hostnames(&server, &["group:web-prod"]), ["web-canary", "web-prod"], "group with an intersection");
    assert_eq!(hostnames(&server, &["group:web-prod&!tag:canary"]), ["web-prod"], "a group inside an intersection");
    let out = server.cli(&["groups", "put", "not-web-prod", "--target", "!group:web-prod"]).expect("group");
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    assert_eq!(hostnames(&server, &["group:not-web-prod"]), ["db-prod", "web-staging"]);

    // A command on an intersection reaches exactly those nodes.
    let command = server
        .cli_json(&[
            "run",
            "Flotilla-RunShellScript",
            "--param",
            "commands=hostname",
            "--target",
            "tag:env=prod&!tag:canary",
            "--wait",
        ])
        .expect("run");
    let mut reached: Vec<String> = command["invocations"]
        .as_array()
        .expect("invocations")
        .iter()
        .map(|i| i["node_id"].as_str().unwrap_or_default().to_owned())
        .collect();
    reached.sort();
    let mut want = vec![agents[0].1.clone(), agents[2].1.clone()];
    want.sort();
    assert_eq!(reached, want);

    // Refusals: an empty intersection, a tag value holding `&` or `!`, an empty term. Nothing
    // is created by any of them.
    let commands_before = server.cli_json(&["commands", "ls"]).expect("ls").as_array().map(Vec::len);
    let refused = |args: &[&str], want: &str| {
        let out = server.cli(args).expect("cli");
        let err = String::from_utf8_lossy(&out.stderr).into_owned();
        assert!(!out.status.success(), "{args:?} was accepted");
        assert!(err.contains(want), "{args:?}: want `{want}` in: {err}");
        assert_eq!(err.trim_end().lines().count(), 1, "one line: {err}");
    };
    let run = |target: &'static str| -> Vec<&'static str> {
        vec!["run", "Flotilla-RunShellScript", "--param", "commands=true", "--target", target]
    };
    refused(&run("tag:env=staging&tag:role=db"), "match no node");
    refused(&["assess", "run", "--target", "tag:env=staging&tag:role=db"], "match no node");
    refused(&run("tag:team=R&D"), "tag keys and values cannot contain `&`");
    refused(&["nodes", "ls", "--target", "tag:team=R&D"], "tag keys and values cannot contain `&`");
    refused(&["nodes", "ls", "--target", "tag:env=pr!od"], "cannot contain `&` or `!`");
    refused(&["nodes", "ls", "--target", "tag:env=prod&&tag:role=web"], "a term is empty");
    refused(&["groups", "put", "bad", "--target", "tag:team=R&D"], "tag keys and values cannot contain `&`");
    refused(&["groups", "put", "bad", "--target", "tag:env=prod&!group:missing"], "unknown group");
    refused(&["assess", "templates", "put", "bad", "--target", "tag:team=R&D"], "cannot contain `&`");
    assert_eq!(server.cli_json(&["commands", "ls"]).expect("ls").as_array().map(Vec::len), commands_before);
    let groups: Vec<String> = server
        .cli_json(&["groups", "ls"])
        .expect("groups")
        .as_array()
        .expect("array")
        .iter()
        .map(|g| g["name"].as_str().unwrap_or_default().to_owned())
        .collect();
    assert_eq!(groups, ["not-web-prod", "web-prod"], "refused groups are not stored");
}
