//! Run Command end to end: documents, rate control, states, output, cancel, restart.

// Tests drive the real binaries.
#![allow(clippy::disallowed_methods)]

use std::time::Duration;

use flotilla_testkit::{Agent, TestServer, start_fleet, wait_until, write_root};
use serde_json::Value;

const DEBIAN: &str = "NAME=\"Debian GNU/Linux\"\nVERSION_ID=\"12\"\nID=debian\n";

struct Fleet {
    _dir: tempfile::TempDir,
    server: TestServer,
    agents: Vec<Agent>,
    ids: Vec<String>,
}

fn fleet(n: usize) -> Fleet {
    let dir = tempfile::tempdir().expect("tempdir");
    let server = TestServer::start(&dir.path().join("server"), "1s", &[]).expect("server");
    let (agents, ids) = start_fleet(&server, dir.path(), n, DEBIAN).expect("fleet online");
    Fleet { _dir: dir, server, agents, ids }
}

fn run(server: &TestServer, args: &[&str]) -> (bool, Value, String) {
    let mut full = vec!["run"];
    full.extend_from_slice(args);
    full.extend(["-o", "json"]);
    let out = server.cli(&full).expect("run");
    let json = serde_json::from_slice(&out.stdout).unwrap_or(Value::Null);
    (out.status.success(), json, String::from_utf8_lossy(&out.stderr).into_owned())
}

fn statuses(command: &Value) -> Vec<String> {
    let mut s: Vec<String> = command["invocations"]
        .as_array()
        .into_iter()
        .flatten()
        .map(|i| i["status"].as_str().unwrap_or("").to_owned())
        .collect();
    s.sort();
    s
}

#[test]
fn run_shell_script_everywhere_and_read_output() {
    let f = fleet(3);
    let (ok, cmd, err) = run(
        &f.server,
        &[
            "Flotilla-RunShellScript",
            "--param",
            "commands=echo hello from node",
            "--param",
            "commands=echo second line",
            "--target",
            "all",
            "--wait",
        ],
    );
    assert!(ok, "{err} {cmd}");
    assert_eq!(cmd["status"], "Success");
    assert_eq!(statuses(&cmd), ["Success", "Success", "Success"]);
    for inv in cmd["invocations"].as_array().expect("invocations") {
        assert_eq!(inv["output"]["stdout"], "hello from node\nsecond line\n");
        assert_eq!(inv["exit_code"], 0);
    }
    let id = cmd["id"].as_str().expect("id");
    let out = f.server.cli(&["commands", "output", id, "--node", &f.ids[0], "--full"]).expect("output");
    assert_eq!(out.stdout, b"hello from node\nsecond line\n");
    let metrics = std::process::Command::new("curl")
        .args(["-sS", "--cacert"])
        .arg(&f.server.ca)
        .arg(format!("{}/metrics", f.server.url))
        .output()
        .expect("curl is installed on this machine kind");
    let text = String::from_utf8_lossy(&metrics.stdout);
    assert!(text.contains("flotilla_command_invocation_transitions_total{status=\"Success\"} 3"), "{text}");
    assert!(text.contains("flotilla_command_transitions_total{status=\"Success\"} 1"), "{text}");
    // Every stored state change is in the event log, in order. (A status the engine held for
    // less than one flush is not stored, so it is no event: an invocation may go from Pending
    // straight to Success, and its event says so in `previous_status`.)
    let events = f.server.cli_json(&["events", "ls"]).expect("events");
    let mine: Vec<(String, String)> = events
        .as_array()
        .expect("array")
        .iter()
        .filter(|e| {
            e["detail"]["command_id"] == id
                && (e["detail"]["node_id"] == f.ids[0].as_str() || e["type"] == "Command.StatusChanged")
        })
        .map(|e| (e["type"].as_str().unwrap_or("").to_owned(), e["detail"]["status"].as_str().unwrap_or("").to_owned()))
        .collect();
    let has = |kind: &str, status: &str| mine.iter().position(|(k, s)| k == kind && s == status);
    let (created, done, finished) = (
        has("Command.StatusChanged", "Pending"),
        has("Invocation.StatusChanged", "Success"),
        has("Command.StatusChanged", "Success"),
    );
    assert!(created.is_some() && done.is_some() && finished.is_some(), "{mine:?}");
    assert!(created < done && done < finished, "{mine:?}");
    let seqs: Vec<i64> = events.as_array().expect("array").iter().filter_map(|e| e["seq"].as_i64()).collect();
    assert!(seqs.windows(2).all(|w| w[0] < w[1]), "sequence numbers increase: {seqs:?}");
    let listed = f.server.cli_json(&["commands", "ls"]).expect("ls");
    assert_eq!((listed[0]["id"].as_str(), listed[0]["counts"]["Success"].as_u64()), (Some(id), Some(3)), "{listed}");
    assert!(listed[0].get("invocations").is_none(), "listings carry counts, not invocations");

    // A failing script: Failed, exit code kept, run --wait exits non-zero.
    let (ok, cmd, _) = run(
        &f.server,
        &["Flotilla-RunShellScript", "--param", "commands=echo oops >&2; exit 3", "--target", &f.ids[1], "--wait"],
    );
    assert!(!ok);
    assert_eq!(cmd["status"], "Failed");
    let inv = &cmd["invocations"][0];
    assert_eq!((inv["status"].as_str(), inv["exit_code"].as_i64()), (Some("Failed"), Some(3)));
    assert_eq!(inv["output"]["stderr"], "oops\n");
}

#[test]
fn large_and_binary_output_round_trip() {
    let f = fleet(1);
    // The script's own copy, in a place no other test run shares.
    let scratch = tempfile::tempdir().expect("tempdir");
    let file = scratch.path().join("rand.bin");
    let script = format!("commands=head -c 10485760 /dev/urandom > {0}; cat {0}; sha256sum {0} >&2", file.display());
    let (ok, cmd, err) = run(&f.server, &["Flotilla-RunShellScript", "--param", &script, "--target", "all", "--wait"]);
    assert!(ok, "{err}");
    let inv = &cmd["invocations"][0];
    assert_eq!(inv["output"]["truncated"], true);
    assert_eq!(inv["output"]["stdout_bytes"], 10 * 1024 * 1024);
    assert!(inv["output"]["stdout"].as_str().expect("inline").chars().count() <= 24_000);
    let id = cmd["id"].as_str().expect("id");
    let out = f.server.cli(&["commands", "output", id, "--node", &f.ids[0], "--full"]).expect("output");
    assert_eq!(out.stdout.len(), 10 * 1024 * 1024);
    let expected = std::fs::read(&file).expect("the node's file");
    assert!(out.stdout == expected, "the full output is byte for byte what the script wrote");
    assert!(f._dir.path().join(format!("server/artifacts/commands/{id}/{}/stdout", f.ids[0])).exists());

    // Small output: UTF-8 is kept whole in the invocation row (no artifact); bytes that are not
    // UTF-8, or hold a NUL, still get an artifact so the full output stays exact.
    for (script, bytes, artifact) in
        [("printf 'h\\303\\251llo\\n'", "héllo\n".as_bytes(), false), ("printf 'a\\000b\\377'", &b"a\0b\xff"[..], true)]
    {
        let (ok, cmd, err) = run(
            &f.server,
            &["Flotilla-RunShellScript", "--param", &format!("commands={script}"), "--target", "all", "--wait"],
        );
        assert!(ok, "{err}");
        let id = cmd["id"].as_str().expect("id");
        let out = f.server.cli(&["commands", "output", id, "--node", &f.ids[0], "--full"]).expect("output");
        assert_eq!(out.stdout, bytes, "{script}: {cmd}");
        let stored = f._dir.path().join(format!("server/artifacts/commands/{id}/{}/stdout", f.ids[0]));
        assert_eq!(stored.exists(), artifact, "{script}: an artifact only when the inline copy is not exact");
    }
}

#[test]
fn rate_control_limits_parallelism_and_stops_on_errors() {
    let f = fleet(4);
    let dir = tempfile::tempdir().expect("tempdir");
    let log = dir.path().join("log");
    // Each node appends start/end times; max concurrency 1 means no overlap.
    let script = format!("echo start $(date +%s%N) >> {0}; sleep 0.3; echo end $(date +%s%N) >> {0}", log.display());
    let (ok, cmd, err) = run(
        &f.server,
        &[
            "Flotilla-RunShellScript",
            "--param",
            &format!("commands={script}"),
            "--target",
            "all",
            "--max-concurrency",
            "1",
            "--wait",
        ],
    );
    assert!(ok, "{err}");
    assert_eq!(statuses(&cmd).len(), 4);
    let text = std::fs::read_to_string(&log).expect("log");
    let mut running = 0i32;
    let mut events: Vec<(u128, i32)> = text
        .lines()
        .filter_map(|l| l.split_once(' '))
        .map(|(kind, t)| (t.parse().unwrap_or(0), if kind == "start" { 1 } else { -1 }))
        .collect();
    events.sort();
    for (_, delta) in events {
        running += delta;
        assert!(running <= 1, "more than one invocation ran at once:\n{text}");
    }

    // Max errors 1 with concurrency 1: the second failure stops it, the rest end Cancelled.
    let (ok, cmd, _) = run(
        &f.server,
        &[
            "Flotilla-RunShellScript",
            "--param",
            "commands=exit 1",
            "--target",
            "all",
            "--max-concurrency",
            "1",
            "--max-errors",
            "1",
            "--wait",
        ],
    );
    assert!(!ok);
    assert_eq!(cmd["status"], "Failed");
    assert_eq!(statuses(&cmd), ["Cancelled", "Cancelled", "Failed", "Failed"]);
}

#[test]
fn timeouts_cancel_and_bad_requests() {
    let f = fleet(2);
    // Execution timeout: TimedOut.
    let (ok, cmd, _) = run(
        &f.server,
        &["Flotilla-RunShellScript", "--param", "commands=sleep 60", "--timeout", "5", "--target", &f.ids[0], "--wait"],
    );
    assert!(!ok);
    assert_eq!(cmd["invocations"][0]["status"], "TimedOut");

    // Cancel a running command; cancelling it again is refused.
    let (ok, cmd, err) =
        run(&f.server, &["Flotilla-RunShellScript", "--param", "commands=sleep 60", "--target", "all"]);
    assert!(ok, "{err}");
    let id = cmd["id"].as_str().expect("id").to_owned();
    wait_until(Duration::from_secs(10), || {
        Ok(f.server.cli_json(&["commands", "show", &id])?["counts"]["InProgress"] == 2)
    })
    .expect("running");
    let cancelled = f.server.cli_json(&["commands", "cancel", &id]).expect("cancel");
    assert_eq!(statuses(&cancelled), ["Cancelled", "Cancelled"]);
    wait_until(Duration::from_secs(10), || Ok(f.server.cli_json(&["commands", "show", &id])?["status"] == "Cancelled"))
        .expect("cancelled");
    let again = f.server.cli(&["commands", "cancel", &id]).expect("cancel again");
    assert!(!again.status.success());
    assert!(String::from_utf8_lossy(&again.stderr).contains("already finished"));

    // Bad requests create nothing.
    for (args, text) in [
        (vec!["No-Such-Doc", "--target", "all"], "unknown document"),
        (vec!["Flotilla-RunShellScript", "--target", "all"], "commands"),
        (vec!["Flotilla-RunShellScript", "--param", "commands=true", "--param", "bogus=1", "--target", "all"], "bogus"),
        (vec!["Flotilla-RunShellScript", "--param", "commands=true", "--target", "tag:env=nowhere"], "match no node"),
        (
            vec!["Flotilla-RunShellScript", "--param", "commands=true", "--target", "all", "--max-concurrency", "0"],
            "concurrency",
        ),
        (
            vec!["Flotilla-RunShellScript", "--param", "commands=true", "--target", "all", "--max-concurrency", "101%"],
            "101%",
        ),
        (vec!["Flotilla-RunShellScript", "--param", "commands=true", "--target", "all", "--max-errors", "-1"], "-1"),
        (
            vec!["Flotilla-RunShellScript", "--param", "commands=true", "--target", "all", "--max-concurrency", "ten"],
            "ten",
        ),
    ] {
        let before = f.server.cli_json(&["commands", "ls"]).expect("ls").as_array().map(Vec::len);
        let (ok, _, err) = run(&f.server, &args);
        assert!(!ok, "{args:?} accepted");
        assert!(err.contains(text), "{args:?}: {err}");
        assert_eq!(
            f.server.cli_json(&["commands", "ls"]).expect("ls").as_array().map(Vec::len),
            before,
            "{args:?} stored a command"
        );
    }
}

#[test]
fn delayed_delivery_and_results_across_disconnects() {
    let mut f = fleet(2);
    // A node that is down gets its invocation when it comes back (Delayed, then Success).
    f.agents[1].stop();
    wait_until(Duration::from_secs(10), || {
        Ok(f.server.cli_json(&["nodes", "show", &f.ids[1]])?["status"] == "ConnectionLost")
    })
    .expect("lost");
    let (ok, cmd, err) =
        run(&f.server, &["Flotilla-RunShellScript", "--param", "commands=echo late", "--target", "all"]);
    assert!(ok, "{err}");
    let id = cmd["id"].as_str().expect("id").to_owned();
    let show = |f: &Fleet| f.server.cli_json(&["commands", "show", &id]).expect("show");
    wait_until(Duration::from_secs(10), || Ok(show(&f)["counts"]["Delayed"] == 1)).expect("delayed");
    f.agents[1].start().expect("restart agent");
    wait_until(Duration::from_secs(20), || Ok(show(&f)["status"] == "Success")).expect("delivered on reconnect");

    // The server restarts in the middle of a rate-controlled command (one node at a time): the
    // running result still arrives, spooled by the agent, and the node not yet started follows.
    let (ok, cmd, err) = run(
        &f.server,
        &[
            "Flotilla-RunShellScript",
            "--param",
            "commands=sleep 2; echo survived",
            "--target",
            "all",
            "--max-concurrency",
            "1",
        ],
    );
    assert!(ok, "{err}");
    let id = cmd["id"].as_str().expect("id").to_owned();
    wait_until(Duration::from_secs(10), || {
        let c = f.server.cli_json(&["commands", "show", &id])?;
        Ok(c["counts"]["InProgress"] == 1 && c["counts"]["Pending"] == 1)
    })
    .expect("one running, one waiting");
    f.server.restart().expect("restart");
    wait_until(Duration::from_secs(30), || Ok(f.server.cli_json(&["commands", "show", &id])?["status"] == "Success"))
        .expect("resumed");
    let cmd = f.server.cli_json(&["commands", "show", &id]).expect("show");
    for inv in cmd["invocations"].as_array().expect("invocations") {
        assert_eq!(inv["output"]["stdout"], "survived\n");
    }

    // An agent killed mid-run: once it is back its invocation ends Terminated, and the script
    // it left behind is killed rather than left running unsupervised.
    let marker = f._dir.path().join("orphan-finished");
    let script = format!("commands=sleep 4; touch {}", marker.display());
    let (ok, cmd, err) = run(&f.server, &["Flotilla-RunShellScript", "--param", &script, "--target", &f.ids[0]]);
    assert!(ok, "{err}");
    let id = cmd["id"].as_str().expect("id").to_owned();
    wait_until(Duration::from_secs(10), || {
        Ok(f.server.cli_json(&["commands", "show", &id])?["counts"]["InProgress"] == 1)
    })
    .expect("running");
    f.agents[0].stop();
    f.agents[0].start().expect("restart agent");
    wait_until(Duration::from_secs(20), || {
        Ok(f.server.cli_json(&["commands", "show", &id])?["invocations"][0]["status"] == "Terminated")
    })
    .expect("terminated");
    std::thread::sleep(Duration::from_secs(5));
    assert!(!marker.exists(), "the orphaned script kept running: {}", f.agents[0].log_text());
}

#[test]
fn an_unreachable_node_ends_undeliverable_without_counting_as_an_error() {
    let mut f = fleet(2);
    f.agents[1].stop();
    wait_until(Duration::from_secs(10), || {
        Ok(f.server.cli_json(&["nodes", "show", &f.ids[1]])?["status"] == "ConnectionLost")
    })
    .expect("lost");
    let (ok, cmd, _) = run(
        &f.server,
        &[
            "Flotilla-RunShellScript",
            "--param",
            "commands=true",
            "--target",
            "all",
            "--delivery-timeout",
            "5",
            "--wait",
        ],
    );
    assert!(!ok, "--wait exits non-zero when an invocation did not succeed");
    assert_eq!(statuses(&cmd), ["Success", "Undeliverable"]);
    assert_eq!(cmd["status"], "Success", "Undeliverable is not an error (max errors 0 was not exceeded)");
}

#[test]
fn finished_commands_and_their_outputs_expire() {
    let dir = tempfile::tempdir().expect("tempdir");
    let server =
        TestServer::start(&dir.path().join("server"), "1s", &[("FLOTILLA_COMMAND_RETENTION", "3s")]).expect("server");
    let act = server.cli_json(&["activations", "create"]).expect("activation");
    let agent_dir = dir.path().join("node");
    write_root(&agent_dir.join("root"), DEBIAN, "node").expect("root");
    let (mut agent, _) =
        Agent::enroll(&server, &agent_dir, act["id"].as_str().expect("id"), act["code"].as_str().expect("code"))
            .expect("register");
    agent.start().expect("start");
    wait_until(Duration::from_secs(20), || Ok(server.cli_json(&["nodes", "ls"])?[0]["status"] == "Online"))
        .expect("online");
    let (ok, cmd, err) = run(
        &server,
        // Over the inline limit, so the full output is an artifact.
        &["Flotilla-RunShellScript", "--param", "commands=head -c 30000 /dev/zero", "--target", "all", "--wait"],
    );
    assert!(ok, "{err}");
    let id = cmd["id"].as_str().expect("id").to_owned();
    let artifacts = dir.path().join("server/artifacts/commands").join(&id);
    assert!(artifacts.exists(), "the full output is in the artifact store");
    wait_until(Duration::from_secs(15), || Ok(!server.cli(&["commands", "show", &id])?.status.success()))
        .expect("expired");
    assert!(!artifacts.exists(), "its artifacts are deleted with it");
    assert!(server.cli_json(&["commands", "ls"]).expect("ls").as_array().expect("array").is_empty());
}
