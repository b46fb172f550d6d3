//! Issue 14, State Manager, as an operator meets it through real `flotilla server` and
//! `flotilla-agent` processes: associations applied at creation, on a schedule, again on
//! demand and to nodes that join later; per-node status and compliance; bad requests refused
//! with nothing stored.

use std::path::Path;
use std::time::Duration;

use flotilla_testkit::{Agent, TestServer, start_fleet, wait_until, write_root};
use serde_json::Value;

const DEBIAN: &str = "NAME=\"Debian GNU/Linux\"\nVERSION_ID=\"12\"\nID=debian\n";

fn refused(server: &TestServer, args: &[&str], says: &str) {
    let out = server.cli(args).expect("cli");
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success(), "{args:?} was accepted");
    assert!(err.contains(says), "{args:?}: expected `{says}` in: {err}");
}

fn status(server: &TestServer, assoc: &str) -> Vec<Value> {
    server.cli_json(&["associations", "status", assoc]).ok().and_then(|v| v.as_array().cloned()).unwrap_or_default()
}

/// Waits until every listed node has a settled status (not Pending) for `assoc` from a
/// command other than those in `seen`; returns the rows.
fn wait_settled(server: &TestServer, assoc: &str, nodes: &[&str], seen: &[String]) -> Vec<Value> {
    let mut rows = Vec::new();
    wait_until(Duration::from_secs(60), || {
        rows = status(server, assoc);
        Ok(nodes.iter().all(|n| {
            rows.iter().any(|r| {
                r["node_id"] == *n
                    && r["status"] != "Pending"
                    && r["command_id"].as_str().is_some_and(|c| !seen.iter().any(|s| s == c))
            })
        }))
    })
    .unwrap_or_else(|e| panic!("{assoc} did not settle on {nodes:?}: {e}; rows {rows:?}\n{}", server.log_text()));
    rows
}

fn row<'a>(rows: &'a [Value], node: &str) -> &'a Value {
    rows.iter().find(|r| r["node_id"] == node).expect("node row")
}

/// Enrolls one more agent with the activation's tags and starts it; returns it and its id.
fn join(server: &TestServer, dir: &Path, name: &str, tag: &str) -> (Agent, String) {
    let act = server.cli_json(&["activations", "create", "--limit", "1", "--tag", tag]).expect("activation");
    let agent_dir = dir.join(name);
    write_root(&agent_dir.join("root"), DEBIAN, name).expect("root");
    let (mut agent, out) =
        Agent::enroll(server, &agent_dir, act["id"].as_str().expect("id"), act["code"].as_str().expect("code"))
            .expect("enroll");
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    agent.start().expect("agent");
    (agent, String::from_utf8_lossy(&out.stdout).trim().to_owned())
}

#[test]
fn bad_associations_are_refused_and_nothing_is_stored() {
    let dir = tempfile::tempdir().expect("tempdir");
    let server = TestServer::start(&dir.path().join("server"), "1s", &[]).expect("server");
    fn create<'a>(extra: &[&'a str]) -> Vec<&'a str> {
        let mut args = vec!["associations", "create"];
        args.extend_from_slice(extra);
        args
    }
    let shell = ["--document", "Flotilla-RunShellScript", "--param", "commands=true", "--target", "all"];
    refused(&server, &create(&["--document", "No-Such-Doc", "--target", "all"]), "unknown document `No-Such-Doc`");
    refused(&server, &create(&["--document", "Flotilla-RunShellScript", "--target", "all"]), "commands");
    refused(&server, &create(&[&shell[..], &["--param", "bogus=1"]].concat()), "bogus");
    refused(&server, &create(&["--document", "Flotilla-RunShellScript", "--param", "commands=true"]), "no target");
    refused(&server, &create(&[&shell[..], &["--target", "tag:a&&b"]].concat()), "");
    refused(&server, &create(&[&shell[..], &["--schedule", "rate(5 minutes)"]].concat()), "30 minutes");
    refused(&server, &create(&[&shell[..], &["--schedule", "at(2020-01-01T00:00:00)"]].concat()), "in the past");
    refused(
        &server,
        &create(&[&shell[..], &["--schedule", "rate(1 hour)", "--apply-only-at-cron-interval"]].concat()),
        "rate(",
    );
    refused(&server, &create(&[&shell[..], &["--apply-only-at-cron-interval"]].concat()), "needs a cron --schedule");
    refused(
        &server,
        &create(&[&shell[..], &["--timezone", "Europe/Berlin"]].concat()),
        "--timezone needs a --schedule",
    );
    refused(
        &server,
        &create(&[&shell[..], &["--schedule", "cron(0 3 * * *)", "--timezone", "Mars/Base"]].concat()),
        "Mars/Base",
    );
    refused(
        &server,
        &create(&[&shell[..], &["--compliance-severity", "SEVERE"]].concat()),
        "CRITICAL, HIGH, MEDIUM, LOW, UNSPECIFIED",
    );
    refused(&server, &create(&[&shell[..], &["--max-concurrency", "0"]].concat()), "");
    refused(&server, &create(&[&shell[..], &["--name", "a b"]].concat()), "3 to 128 characters");
    assert_eq!(server.cli_json(&["associations", "ls"]).expect("ls"), serde_json::json!([]), "nothing stored");
    // A name is unique; an unknown association is named.
    server.cli_json(&create(&[&shell[..], &["--name", "keep"]].concat())).expect("first");
    refused(&server, &create(&[&shell[..], &["--name", "keep"]].concat()), "exists already");
    for verb in ["show", "rm", "apply", "status"] {
        refused(&server, &["associations", verb, "nope"], "no association `nope`");
    }
    refused(&server, &["associations", "update", "keep", "--document", "No-Such-Doc"], "unknown document");
    refused(&server, &["compliance", "ls", "--type", "Weather"], "not a compliance type");
    let listed = server.cli_json(&["associations", "ls"]).expect("ls");
    assert_eq!(listed.as_array().map(Vec::len), Some(1), "{listed}");
    assert_eq!(listed[0]["document"], "Flotilla-RunShellScript", "a refused update changed nothing: {listed}");
}

#[test]
fn an_association_applies_at_creation_on_demand_on_schedule_and_to_nodes_that_join() {
    let dir = tempfile::tempdir().expect("tempdir");
    let server = TestServer::start(&dir.path().join("server"), "1s", &[]).expect("server");
    let (_agents, ids) = start_fleet(&server, dir.path(), 1, DEBIAN).expect("fleet");
    server.cli_json(&["nodes", "tag", &ids[0], "role=web"]).expect("tag");
    // Matches one node now; nodes tagged later get it too.
    let created = server
        .cli_json(&[
            "associations",
            "create",
            "--name",
            "web-ok",
            "--document",
            "Flotilla-RunShellScript",
            "--param",
            "commands=true",
            "--target",
            "tag:role=web",
        ])
        .expect("create");
    let assoc = created["id"].as_str().expect("id").to_owned();
    let first = wait_settled(&server, &assoc, &[&ids[0]], &[]);
    assert_eq!(row(&first, &ids[0])["status"], "Success", "{first:?}");
    let c1 = row(&first, &ids[0])["command_id"].as_str().expect("command").to_owned();
    // A target that matches nothing today is allowed; a failing run is NON_COMPLIANT with the
    // association's severity.
    let failing = server
        .cli_json(&[
            "associations",
            "create",
            "--name",
            "db-fails",
            "--document",
            "Flotilla-RunShellScript",
            "--param",
            "commands=exit 3",
            "--target",
            "tag:tier=db",
            "--compliance-severity",
            "HIGH",
        ])
        .expect("create on no node");
    let failing = failing["id"].as_str().expect("id").to_owned();
    // A node joins matching both.
    let (_late, late) = join(&server, dir.path(), "late", "role=web");
    server.cli_json(&["nodes", "tag", &late, "tier=db"]).ok();
    let rows = wait_settled(&server, &assoc, &[&late], std::slice::from_ref(&c1));
    assert_eq!(row(&rows, &late)["status"], "Success", "{rows:?}");
    assert_eq!(row(&rows, &ids[0])["command_id"], c1, "the first node did not run it again: {rows:?}");
    let rows = wait_settled(&server, &failing, &[&late], &[]);
    let r = row(&rows, &late);
    assert_eq!(r["status"], "Failed", "{rows:?}");
    assert!(r["detail"].as_str().is_some_and(|d| d.contains("exit code 3")), "{r}");
    let items = server.cli_json(&["compliance", "ls", "--type", "Association", "--target", &late]).expect("compliance");
    let item = |id: &str| items.as_array().and_then(|a| a.iter().find(|i| i["id"] == id)).cloned().expect("item");
    assert_eq!(item(&assoc)["status"], "COMPLIANT", "{items}");
    assert_eq!(item(&assoc)["title"], "web-ok");
    assert_eq!(item(&failing)["status"], "NON_COMPLIANT", "{items}");
    assert_eq!(item(&failing)["severity"], "HIGH", "{items}");
    let summary = server.cli_json(&["compliance", "summary", "--type", "Association"]).expect("summary");
    assert_eq!(summary[0]["non_compliant"], 1, "{summary}");
    assert_eq!(summary[0]["compliant"], 1, "{summary}");
    assert_eq!(summary[0]["non_compliant_by_severity"]["HIGH"], 1, "{summary}");
    // On demand: every targeted node again, in a new command.
    server.cli_json(&["associations", "apply", "web-ok"]).expect("apply");
    let seen = vec![c1.clone(), row(&rows, &late)["command_id"].as_str().unwrap_or_default().to_owned()];
    let again = wait_settled(&server, &assoc, &[&ids[0], &late], std::slice::from_ref(&c1));
    let c2 = row(&again, &ids[0])["command_id"].as_str().expect("command").to_owned();
    assert_eq!(row(&again, &late)["command_id"], c2, "one command for both nodes: {again:?}");
    // On a schedule: a one-shot a few seconds ahead runs once more.
    let t = jiff::Timestamp::from_second(jiff::Timestamp::now().as_second() + 4).expect("time");
    let at = t.strftime("at(%Y-%m-%dT%H:%M:%S)").to_string();
    server.cli_json(&["associations", "update", "web-ok", "--schedule", &at]).expect("schedule");
    // The edit of the schedule runs it (as AWS does); the occurrence runs it again.
    let mut seen = seen;
    seen.push(c2.clone());
    let edited = wait_settled(&server, &assoc, &[&ids[0]], &seen);
    seen.push(row(&edited, &ids[0])["command_id"].as_str().expect("command").to_owned());
    let scheduled = wait_settled(&server, &assoc, &[&ids[0]], &seen);
    assert_eq!(row(&scheduled, &ids[0])["status"], "Success", "{scheduled:?}");
    let history = server.cli_json(&["compliance", "history", &ids[0], "--type", "Association"]).expect("history");
    assert!(history.as_array().map_or(0, Vec::len) >= 4, "every run is in the history: {history}");
    // Deleting it removes its compliance items.
    server.cli(&["associations", "rm", "web-ok"]).expect("rm");
    let items = server.cli_json(&["compliance", "ls", "--type", "Association"]).expect("compliance");
    assert!(items.as_array().is_some_and(|a| a.iter().all(|i| i["id"] != assoc.as_str())), "{items}");
}

/// The motd association of the demo, on a real agent's root: applied at creation (changed),
/// applied again (unchanged), an edit on the node corrected by the next run, a managed file the
/// association cannot keep (a directory in its place) NON_COMPLIANT until fixed, and an owner
/// the node does not have refused with the node's reason.
#[test]
fn a_desired_state_association_keeps_a_file_and_its_compliance_follows_the_node() {
    let dir = tempfile::tempdir().expect("tempdir");
    let server = TestServer::start(&dir.path().join("server"), "1s", &[]).expect("server");
    let (agents, ids) = start_fleet(&server, dir.path(), 1, DEBIAN).expect("fleet");
    let node = ids[0].as_str();
    let motd = agents[0].root.join("etc/motd");
    let resources =
        r#"resources=[{"action":"file:write","path":"/etc/motd","content":"managed by flotilla\n","mode":"0644"}]"#;
    let created = server
        .cli_json(&[
            "associations",
            "create",
            "--name",
            "motd",
            "--document",
            "Flotilla-DesiredState",
            "--param",
            resources,
            "--target",
            "all",
            "--compliance-severity",
            "MEDIUM",
        ])
        .expect("create");
    let assoc = created["id"].as_str().expect("id").to_owned();
    let mut seen: Vec<String> = Vec::new();
    let next = |seen: &mut Vec<String>, apply: bool| -> Value {
        if apply {
            server.cli_json(&["associations", "apply", "motd"]).expect("apply");
        }
        let rows = wait_settled(&server, &assoc, &[node], seen);
        let r = row(&rows, node).clone();
        seen.push(r["command_id"].as_str().expect("command").to_owned());
        r
    };
    let first = next(&mut seen, false);
    assert_eq!((first["status"].as_str(), first["changed"].as_bool()), (Some("Success"), Some(true)), "{first}");
    assert_eq!(std::fs::read_to_string(&motd).expect("motd"), "managed by flotilla\n");
    let second = next(&mut seen, true);
    assert_eq!((second["status"].as_str(), second["changed"].as_bool()), (Some("Success"), Some(false)), "{second}");
    // Edited on the node: the next run puts it back and says what it corrected.
    std::fs::write(&motd, "hello from a human\n").expect("edit");
    let third = next(&mut seen, true);
    assert_eq!(third["changed"], true, "{third}");
    assert!(third["detail"].as_str().is_some_and(|d| d.contains("corrected")), "{third}");
    assert_eq!(std::fs::read_to_string(&motd).expect("motd"), "managed by flotilla\n");
    // A directory where the file should be: the association cannot keep it.
    std::fs::remove_file(&motd).expect("rm");
    std::fs::create_dir(&motd).expect("dir in the way");
    let fourth = next(&mut seen, true);
    assert_eq!(fourth["status"], "Failed", "{fourth}");
    let compliance = |server: &TestServer| {
        let items = server.cli_json(&["compliance", "ls", "--type", "Association"]).expect("compliance");
        items.as_array().and_then(|a| a.first().cloned()).expect("one item")
    };
    let item = compliance(&server);
    assert_eq!((item["status"].as_str(), item["severity"].as_str()), (Some("NON_COMPLIANT"), Some("MEDIUM")), "{item}");
    std::fs::remove_dir(&motd).expect("rmdir");
    let fifth = next(&mut seen, true);
    assert_eq!((fifth["status"].as_str(), fifth["changed"].as_bool()), (Some("Success"), Some(true)), "{fifth}");
    assert_eq!(compliance(&server)["status"], "COMPLIANT");
    // The history shows it all, newest first; the event log has each move and correction.
    let history = server.cli_json(&["compliance", "history", node, "--type", "Association"]).expect("history");
    let statuses: Vec<&str> = history.as_array().expect("array").iter().filter_map(|h| h["status"].as_str()).collect();
    assert_eq!(statuses, ["COMPLIANT", "NON_COMPLIANT", "COMPLIANT", "COMPLIANT", "COMPLIANT"], "{history}");
    let events = server.cli_json(&["events", "ls", "--type", "Association.Compliance"]).expect("events");
    let moves: Vec<(String, Option<bool>)> = events
        .as_array()
        .expect("array")
        .iter()
        .map(|e| (e["detail"]["status"].as_str().unwrap_or("").to_owned(), e["detail"]["changed"].as_bool()))
        .collect();
    assert_eq!(
        moves,
        [
            ("COMPLIANT".to_owned(), Some(true)),
            ("COMPLIANT".to_owned(), Some(true)),
            ("NON_COMPLIANT".to_owned(), None),
            ("COMPLIANT".to_owned(), Some(true)),
        ],
        "first application, the correction, the failure and the recovery; not the unchanged run: {events}"
    );
    // An owner the node does not have: refused on the node, nothing written.
    let bad = server
        .cli_json(&[
            "associations",
            "create",
            "--name",
            "bad-owner",
            "--document",
            "Flotilla-DesiredState",
            "--param",
            r#"resources=[{"action":"file:write","path":"/etc/other","content":"x","owner":"no-such-user"}]"#,
            "--target",
            "all",
        ])
        .expect("create");
    let rows = wait_settled(&server, bad["id"].as_str().expect("id"), &[node], &[]);
    let r = row(&rows, node);
    assert_eq!(r["status"], "Failed", "{r}");
    assert!(r["detail"].as_str().is_some_and(|d| d.contains("no-such-user")), "{r}");
    assert!(!agents[0].root.join("etc/other").exists());
}

/// A node that joins while the association is still running elsewhere gets its own run and
/// the running one is not repeated; a server killed mid-run settles both after restart from
/// what it stored, and sends nothing twice.
#[test]
fn a_node_joining_mid_run_and_a_server_restart_mid_run_lose_and_repeat_nothing() {
    let dir = tempfile::tempdir().expect("tempdir");
    let mut server = TestServer::start(&dir.path().join("server"), "1s", &[]).expect("server");
    let (_agents, ids) = start_fleet(&server, dir.path(), 1, DEBIAN).expect("fleet");
    server.cli_json(&["nodes", "tag", &ids[0], "role=web"]).expect("tag");
    let created = server
        .cli_json(&[
            "associations",
            "create",
            "--name",
            "slow",
            "--document",
            "Flotilla-RunShellScript",
            "--param",
            "commands=sleep 6",
            "--target",
            "tag:role=web",
        ])
        .expect("create");
    let assoc = created["id"].as_str().expect("id").to_owned();
    let mut first = String::new();
    wait_until(Duration::from_secs(30), || {
        let rows = status(&server, &assoc);
        first = rows.first().and_then(|r| r["command_id"].as_str()).unwrap_or_default().to_owned();
        Ok(!first.is_empty())
    })
    .expect("the first node's run started");
    let (_late, late) = join(&server, dir.path(), "late", "role=web");
    let mut second = String::new();
    wait_until(Duration::from_secs(30), || {
        let rows = status(&server, &assoc);
        second = rows
            .iter()
            .find(|r| r["node_id"] == late.as_str())
            .and_then(|r| r["command_id"].as_str())
            .unwrap_or_default()
            .to_owned();
        Ok(!second.is_empty())
    })
    .expect("the late node's run started");
    assert_ne!(first, second, "the late node got its own command");
    let rows = status(&server, &assoc);
    assert_eq!(row(&rows, &ids[0])["command_id"], first.as_str(), "the running node was not sent it again");
    // Killed while both run; the agents finish and report to the restarted server.
    server.kill();
    std::thread::sleep(Duration::from_secs(2));
    server.restart().expect("restart");
    let rows = wait_settled(&server, &assoc, &[&ids[0], &late], &[]);
    assert_eq!(row(&rows, &ids[0])["command_id"], first.as_str(), "{rows:?}");
    assert_eq!(row(&rows, &late)["command_id"], second.as_str(), "{rows:?}");
    assert!(rows.iter().all(|r| r["status"] == "Success"), "{rows:?}");
    let commands = server.cli_json(&["commands", "ls"]).expect("commands");
    assert_eq!(commands.as_array().map(Vec::len), Some(2), "nothing sent twice: {commands}");
}
