//! The agent's trust guarantees, tested on the real `flotilla-agent` binary against the
//! testkit's scripted fake server: at most once (identical Runs at once, a Run re-sent after
//! its acknowledgement and after a restart), bounded output, private files under any umask,
//! no process surviving its invocation (even after `setsid`), watched files that never lead
//! outside the root, and refusals that are retried.

// Tests drive the real binaries.
#![allow(clippy::disallowed_methods)]

use std::os::unix::fs::PermissionsExt;
use std::path::Path;
use std::time::Duration;

use flotilla_proto::v1::{
    AgentMessage, InventoryConfig, InvocationOutcome, InvocationResult, OutputStream, ResultAck, RunInvocation,
    ShellStep, agent_message, server_message,
};
use flotilla_testkit::{Agent, FakeServer};

const WAIT: Duration = Duration::from_secs(30);

fn setup(dir: &Path) -> (FakeServer, Agent) {
    let server = FakeServer::start(Duration::from_secs(5)).expect("fake server");
    let agent = Agent::in_dir(dir);
    flotilla_testkit::write_root(&agent.root, "ID=debian\nVERSION_ID=12\n", "trust-node").expect("root");
    server.write_agent_state(&agent.state_dir, "n-0123456789abcdef0").expect("state dir");
    (server, agent)
}

fn run(id: &str, script: &str, timeout_seconds: u32, max_output_bytes: u64) -> server_message::Body {
    server_message::Body::Run(RunInvocation {
        invocation_id: id.into(),
        command_id: id.split('.').next().unwrap_or(id).into(),
        steps: vec![ShellStep { name: "s".into(), script: script.into(), timeout_seconds, ..Default::default() }],
        max_output_bytes,
    })
}

fn results(messages: &[AgentMessage], id: &str) -> Vec<InvocationResult> {
    messages
        .iter()
        .filter_map(|m| match &m.body {
            Some(agent_message::Body::Result(r)) if r.invocation_id == id => Some(r.clone()),
            _ => None,
        })
        .collect()
}

fn accepted(messages: &[AgentMessage], id: &str) -> usize {
    messages
        .iter()
        .filter(|m| matches!(&m.body, Some(agent_message::Body::Accepted(a)) if a.invocation_id == id))
        .count()
}

fn output(messages: &[AgentMessage], id: &str, stream: OutputStream) -> Vec<u8> {
    let mut out = Vec::new();
    for m in messages {
        if let Some(agent_message::Body::Output(c)) = &m.body
            && c.invocation_id == id
            && c.stream == stream as i32
        {
            out.extend_from_slice(&c.data);
        }
    }
    out
}

fn wait_result(server: &FakeServer, id: &str, n: usize) -> InvocationResult {
    server
        .wait_for(WAIT, |m| results(m, id).get(n - 1).cloned())
        .unwrap_or_else(|e| panic!("result {n} of {id}: {e}; received {:?}", server.received()))
}

fn lines(path: &Path) -> usize {
    std::fs::read_to_string(path).unwrap_or_default().lines().count()
}

fn mode(path: &Path) -> u32 {
    std::fs::metadata(path).unwrap_or_else(|e| panic!("{}: {e}", path.display())).permissions().mode() & 0o777
}

/// Waits until the agent has dropped the spool of `id` (it acted on the ResultAck).
fn wait_spool_gone(agent: &Agent, id: &str) {
    let spool = agent.state_dir.join("invocations").join(id);
    flotilla_testkit::wait_until(WAIT, || Ok(!spool.exists())).expect("the agent acted on the acknowledgement");
}

#[test]
fn identical_runs_arriving_together_run_the_script_once() {
    let dir = tempfile::tempdir().expect("tempdir");
    let (server, mut agent) = setup(dir.path());
    agent.start().expect("agent");
    server.wait_sessions(1, WAIT).expect("connected");
    let ids: Vec<String> = (0..5).map(|i| format!("cmd-{i}.n-0123456789abcdef0")).collect();
    for id in &ids {
        let file = dir.path().join(format!("{id}.log"));
        let script = format!("echo ran >> {}; sleep 1", file.display());
        // Sent back to back, before the agent has read the first.
        server.send(run(id, &script, 30, 0)).expect("send");
        server.send(run(id, &script, 30, 0)).expect("send again");
    }
    for id in &ids {
        let result = wait_result(&server, id, 1);
        assert_eq!(result.outcome, InvocationOutcome::Success as i32, "{result:?}");
        assert_eq!(lines(&dir.path().join(format!("{id}.log"))), 1, "{id} ran more than once");
        assert_eq!(accepted(&server.received(), id), 1, "{id} accepted twice");
    }
}

#[test]
fn a_run_resent_after_its_ack_or_after_a_restart_is_answered_from_the_tombstone() {
    let dir = tempfile::tempdir().expect("tempdir");
    let (server, mut agent) = setup(dir.path());
    agent.start().expect("agent");
    server.wait_sessions(1, WAIT).expect("connected");
    let id = "cmd-a.n-0123456789abcdef0";
    let file = dir.path().join("ran.log");
    let script = format!("echo ran >> {}; echo out; exit 3", file.display());
    server.send(run(id, &script, 30, 0)).expect("send");
    let first = wait_result(&server, id, 1);
    assert_eq!((first.outcome, first.exit_code, first.replayed), (InvocationOutcome::Failed as i32, 3, false));
    assert_eq!(first.stdout_bytes, 4);
    server.send(server_message::Body::ResultAck(ResultAck { invocation_id: id.into() })).expect("ack");
    wait_spool_gone(&agent, id);

    // Re-sent after the acknowledgement: answered from the tombstone, not run.
    let outputs_before = output(&server.received(), id, OutputStream::Stdout).len();
    server.send(run(id, &script, 30, 0)).expect("re-send");
    let replayed = wait_result(&server, id, 2);
    assert!(replayed.replayed, "{replayed:?}");
    assert_eq!(
        (replayed.outcome, replayed.exit_code, replayed.stdout_bytes, replayed.stderr_bytes),
        (first.outcome, first.exit_code, first.stdout_bytes, first.stderr_bytes),
        "the recorded outcome"
    );
    assert_eq!(output(&server.received(), id, OutputStream::Stdout).len(), outputs_before, "no output re-sent");
    assert_eq!(accepted(&server.received(), id), 1);
    assert_eq!(lines(&file), 1, "ran again after its acknowledgement");

    // The agent is killed and started again: the tombstone is on disk.
    agent.stop();
    agent.start().expect("agent again");
    server.wait_sessions(2, WAIT).expect("reconnected");
    server.send(run(id, &script, 30, 0)).expect("re-send after restart");
    let after_restart = wait_result(&server, id, 3);
    assert!(after_restart.replayed, "{after_restart:?}");
    assert_eq!((after_restart.outcome, after_restart.exit_code), (first.outcome, first.exit_code));
    assert_eq!(lines(&file), 1, "ran again after an agent restart");
    assert_eq!(accepted(&server.received(), id), 1);

    // A damaged tombstone still proves the id ran.
    std::fs::write(agent.state_dir.join("executed").join(format!("{id}.json")), "{damaged").expect("damage");
    server.send(run(id, &script, 30, 0)).expect("re-send over a damaged tombstone");
    let damaged = wait_result(&server, id, 4);
    assert!(damaged.replayed && damaged.outcome == InvocationOutcome::Terminated as i32, "{damaged:?}");
    assert_eq!(lines(&file), 1, "ran again over a damaged tombstone");
}

#[test]
fn output_past_max_output_bytes_is_dropped_counted_and_does_not_block_the_script() {
    let dir = tempfile::tempdir().expect("tempdir");
    let (server, mut agent) = setup(dir.path());
    agent.start().expect("agent");
    server.wait_sessions(1, WAIT).expect("connected");
    let id = "cmd-big.n-0123456789abcdef0";
    let done = dir.path().join("done");
    // 1 MiB on stdout is far more than a pipe holds: the script ends only if the agent drains.
    let script = format!("head -c 1048576 /dev/zero; printf 'tiny' >&2; touch {}", done.display());
    server.send(run(id, &script, 60, 1000)).expect("send");
    let result = wait_result(&server, id, 1);
    assert_eq!(result.outcome, InvocationOutcome::Success as i32, "{result:?}");
    assert!(done.exists(), "the script ran to its end");
    let received = server.received();
    assert_eq!(output(&received, id, OutputStream::Stdout).len(), 1000, "stdout sent up to the cap");
    assert_eq!(output(&received, id, OutputStream::Stderr), b"tiny".to_vec(), "stderr under the cap, whole");
    assert_eq!((result.stdout_bytes, result.stdout_dropped_bytes), (1000, 1_048_576 - 1000));
    assert_eq!((result.stderr_bytes, result.stderr_dropped_bytes), (4, 0));
    // The spool holds only what was sent (a re-send after reconnect sends the same).
    assert_eq!(
        std::fs::metadata(agent.state_dir.join("invocations").join(id).join("stdout")).expect("spool").len(),
        1000
    );
}

#[test]
fn state_dir_and_spool_are_private_under_umask_000() {
    let dir = tempfile::tempdir().expect("tempdir");
    let (server, mut agent) = setup(dir.path());
    std::fs::set_permissions(&agent.state_dir, std::fs::Permissions::from_mode(0o755)).expect("chmod");
    agent.start_with_umask(0o000).expect("agent");
    server.wait_sessions(1, WAIT).expect("connected");
    let id = "cmd-p.n-0123456789abcdef0";
    server.send(run(id, "echo out; echo err >&2", 30, 0)).expect("send");
    wait_result(&server, id, 1);
    let spool = agent.state_dir.join("invocations").join(id);
    assert_eq!(mode(&agent.state_dir), 0o700, "the state dir");
    for d in [agent.state_dir.join("invocations"), spool.clone(), agent.state_dir.join("executed")] {
        assert_eq!(mode(&d), 0o700, "{}", d.display());
    }
    for f in ["stdout", "stderr", "result.json"] {
        assert_eq!(mode(&spool.join(f)), 0o600, "{f}");
    }
    server.send(server_message::Body::ResultAck(ResultAck { invocation_id: id.into() })).expect("ack");
    wait_spool_gone(&agent, id);
    assert_eq!(mode(&agent.state_dir.join("executed").join(format!("{id}.json"))), 0o600, "the tombstone");
}

/// Processes (other than this test) whose environment marks them as `id`'s.
fn marked(id: &str) -> Vec<i32> {
    let marker = format!("FLOTILLA_INVOCATION_ID={id}");
    let mut found = Vec::new();
    for entry in std::fs::read_dir("/proc").expect("/proc").flatten() {
        let Some(pid) = entry.file_name().to_str().and_then(|n| n.parse::<i32>().ok()) else { continue };
        let environ = std::fs::read(entry.path().join("environ")).unwrap_or_default();
        if environ.split(|b| *b == 0).any(|v| v == marker.as_bytes()) {
            found.push(pid);
        }
    }
    found
}

#[test]
fn a_script_that_calls_setsid_is_still_killed_on_timeout() {
    let dir = tempfile::tempdir().expect("tempdir");
    let (server, mut agent) = setup(dir.path());
    agent.start().expect("agent");
    server.wait_sessions(1, WAIT).expect("connected");
    let id = "cmd-setsid.n-0123456789abcdef0";
    server
        .send(run(id, "setsid sleep 1000 & setsid sh -c 'sleep 1000 & sleep 1000' & sleep 1000", 1, 0))
        .expect("send");
    let result = wait_result(&server, id, 1);
    let survivors = marked(id);
    for pid in &survivors {
        // Do not leave them behind on failure.
        let _ = std::process::Command::new("kill").args(["-9", &pid.to_string()]).status();
    }
    assert_eq!(result.outcome, InvocationOutcome::TimedOut as i32, "{result:?}");
    assert_eq!(survivors, Vec::<i32>::new(), "processes of the timed-out invocation still run");
}

#[test]
fn a_refused_agent_keeps_retrying_and_says_why() {
    let dir = tempfile::tempdir().expect("tempdir");
    let (server, mut agent) = setup(dir.path());
    for _ in 0..2 {
        server.refuse_next(tonic::Status::permission_denied(
            "node n-0123456789abcdef0 presented a certificate that is no longer valid",
        ));
    }
    agent.start().expect("agent");
    server.wait_sessions(1, WAIT).unwrap_or_else(|e| panic!("{e}; agent log:\n{}", agent.log_text()));
    assert_eq!(server.attempts(), 3, "two refusals, then connected");
    let log = agent.log_text();
    assert!(log.contains("no longer valid") && log.contains("retrying"), "the log says why: {log}");
}

#[test]
fn a_deregistered_agent_still_stops() {
    let dir = tempfile::tempdir().expect("tempdir");
    let (server, mut agent) = setup(dir.path());
    server.refuse_next(tonic::Status::permission_denied(
        "node n-0123456789abcdef0 was deregistered and its credential revoked: enroll again with a new activation",
    ));
    agent.start().expect("agent");
    assert_eq!(agent.wait_exit(WAIT), Some(3), "{}", agent.log_text());
    assert!(agent.log_text().contains("deregistered"));
    assert_eq!(server.sessions(), 0);
}

#[test]
fn watched_files_and_their_links_never_lead_outside_the_root() {
    let host = tempfile::tempdir().expect("tempdir");
    std::fs::write(host.path().join("shadow"), "host secret").expect("write");
    let dir = tempfile::tempdir().expect("tempdir");
    let (server, mut agent) = setup(dir.path());
    let etc = agent.root.join("etc");
    std::fs::write(etc.join("inside.conf"), "inside").expect("write");
    std::os::unix::fs::symlink(host.path().join("shadow"), etc.join("abs.conf")).expect("absolute link");
    let up = format!("../../../../../../..{}", host.path().join("shadow").display());
    std::os::unix::fs::symlink(up, etc.join("up.conf")).expect("link above the root");
    std::os::unix::fs::symlink(host.path(), etc.join("hostdir")).expect("link to a host directory");
    let escape = format!("/../../../../../..{}", host.path().join("shadow").display());
    server.welcome_inventory(InventoryConfig {
        interval_seconds: 0,
        files: vec!["/etc/*.conf".into(), "/etc/hostdir/*".into(), escape.clone()],
    });
    agent.start().expect("agent");
    let items: Vec<serde_json::Value> = server
        .wait_for(WAIT, |messages| {
            messages.iter().find_map(|m| match &m.body {
                Some(agent_message::Body::Inventory(report)) => report
                    .types
                    .iter()
                    .find(|t| t.name == "File")
                    .and_then(|t| serde_json::from_slice(&t.items_json).ok()),
                _ => None,
            })
        })
        .expect("a File inventory");
    let by_path = |p: &str| items.iter().find(|i| i["path"] == p).unwrap_or_else(|| panic!("{p} in {items:?}")).clone();
    assert!(by_path("/etc/inside.conf")["sha256"].is_string(), "files inside are read: {items:?}");
    for item in &items {
        if item["path"] != "/etc/inside.conf" {
            assert!(item["sha256"].is_null() && item["size"].is_null(), "read outside the root: {item}");
        }
    }
    assert!(by_path("/etc/abs.conf")["error"].as_str().is_some_and(|e| e.contains("dangling")), "{items:?}");
    assert!(by_path("/etc/up.conf")["error"].as_str().is_some_and(|e| e.contains("outside the agent's root")));
    assert!(by_path(&escape)["error"].as_str().is_some_and(|e| e.contains("outside the agent's root")));
    assert!(!items.iter().any(|i| i["path"].as_str().is_some_and(|p| p.starts_with("/etc/hostdir/"))), "{items:?}");
}

#[test]
fn desired_state_steps_report_their_state_and_a_replay_carries_it() {
    let dir = tempfile::tempdir().expect("tempdir");
    let (server, mut agent) = setup(dir.path());
    agent.start().expect("agent");
    server.wait_sessions(1, WAIT).expect("connected");
    let step = |name: &str, action: &str, inputs: &[(&str, &str)]| ShellStep {
        name: name.into(),
        agent_action: action.into(),
        agent_inputs: inputs.iter().map(|(k, v)| ((*k).to_owned(), (*v).to_owned())).collect(),
        timeout_seconds: 60,
        ..Default::default()
    };
    let desired = |id: &str| {
        server_message::Body::Run(RunInvocation {
            invocation_id: id.into(),
            command_id: id.split('.').next().unwrap_or(id).into(),
            steps: vec![
                step("d.0", "file:write", &[("path", "/etc/motd"), ("content", "hi\n"), ("mode", "0644")]),
                step("d.1", "sysctl:ensure", &[("name", "vm.swappiness"), ("value", "10")]),
            ],
            max_output_bytes: 0,
        })
    };
    let summary = |r: &InvocationResult| -> Vec<(String, String, bool, String)> {
        r.state.iter().map(|s| (s.step.clone(), s.action.clone(), s.changed, s.detail.clone())).collect()
    };

    let first_id = "cmd-d1.n-0123456789abcdef0";
    server.send(desired(first_id)).expect("send");
    let first = wait_result(&server, first_id, 1);
    assert_eq!(first.outcome, InvocationOutcome::Success as i32, "{first:?}");
    let state = summary(&first);
    assert_eq!(state[0], ("d.0".into(), "file:write".into(), true, "/etc/motd: created".into()));
    assert_eq!((state[1].0.as_str(), state[1].2), ("d.1", true));
    assert_eq!(std::fs::read_to_string(agent.root.join("etc/motd")).expect("written under --root"), "hi\n");
    let stdout = String::from_utf8_lossy(&output(&server.received(), first_id, OutputStream::Stdout)).into_owned();
    assert!(stdout.starts_with("/etc/motd: created\nsysctl vm.swappiness: "), "{stdout}");

    // Acknowledged, then re-sent: the tombstone answers with the same state.
    server.send(server_message::Body::ResultAck(ResultAck { invocation_id: first_id.into() })).expect("ack");
    wait_spool_gone(&agent, first_id);
    server.send(desired(first_id)).expect("re-send");
    let replayed = wait_result(&server, first_id, 2);
    assert!(replayed.replayed);
    assert_eq!(summary(&replayed), state, "the replay carries the recorded state");

    // A new invocation with the same inputs changes nothing.
    let second_id = "cmd-d2.n-0123456789abcdef0";
    server.send(desired(second_id)).expect("send");
    let second = wait_result(&server, second_id, 1);
    assert!(second.state.iter().all(|s| !s.changed), "{second:?}");
    assert_eq!(second.state.len(), 2);
    // The agent is restarted before the ack: the spooled result is re-sent with its state.
    agent.stop();
    agent.start().expect("agent again");
    server.wait_sessions(2, WAIT).expect("reconnected");
    let resent = wait_result(&server, second_id, 2);
    assert_eq!(summary(&resent), summary(&second), "spooled with the result");

    // A failing step: the state of the steps before it is kept, the invocation fails.
    let third_id = "cmd-d3.n-0123456789abcdef0";
    server
        .send(server_message::Body::Run(RunInvocation {
            invocation_id: third_id.into(),
            command_id: "cmd-d3".into(),
            steps: vec![
                step("ok", "file:absent", &[("path", "/etc/nothing")]),
                step("bad", "file:write", &[("path", "/etc/x"), ("content", "x"), ("owner", "ghost")]),
            ],
            max_output_bytes: 0,
        }))
        .expect("send");
    let third = wait_result(&server, third_id, 1);
    assert_eq!(third.outcome, InvocationOutcome::Failed as i32);
    assert!(third.detail.contains("step bad: owner `ghost` does not exist on the node"), "{}", third.detail);
    assert_eq!(summary(&third), [("ok".into(), "file:absent".into(), false, "/etc/nothing: unchanged".into())]);
}
