//! The agent binary's own failures: clear messages, no panics, nothing written.

// Tests drive the real binaries.
#![allow(clippy::disallowed_methods)]

use std::process::Command;

fn agent() -> Command {
    Command::new(env!("CARGO_BIN_EXE_flotilla-agent"))
}

#[test]
fn run_without_enrollment_says_what_to_do() {
    let dir = tempfile::tempdir().expect("tempdir");
    let out = agent().args(["run", "--state-dir"]).arg(dir.path()).output().expect("run");
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("not enrolled") && err.contains("flotilla-agent register"), "{err}");
}

#[test]
fn corrupt_or_newer_state_is_refused() {
    let dir = tempfile::tempdir().expect("tempdir");
    std::fs::write(dir.path().join("state.json"), "{\"version\": 1, \"node_id\": 5").expect("write");
    let out = agent().args(["run", "--state-dir"]).arg(dir.path()).output().expect("run");
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("not a valid agent state file"));
    std::fs::write(
        dir.path().join("state.json"),
        r#"{"version": 2, "node_id": "n-0123456789abcdef0", "server_url": "https://x"}"#,
    )
    .expect("write");
    let out = agent().args(["run", "--state-dir"]).arg(dir.path()).output().expect("run");
    assert!(String::from_utf8_lossy(&out.stderr).contains("upgrade the agent"));
}

#[test]
fn register_refuses_plain_http_and_missing_ca() {
    let dir = tempfile::tempdir().expect("tempdir");
    let base = ["register", "--activation-id", "act-1", "--activation-code", "abc", "--state-dir"];
    let out = agent()
        .args(base)
        .arg(dir.path().join("s"))
        .args(["--server", "http://127.0.0.1:1", "--ca"])
        .arg(dir.path().join("ca.pem"))
        .output()
        .expect("run");
    assert!(String::from_utf8_lossy(&out.stderr).contains("https://"), "{}", String::from_utf8_lossy(&out.stderr));
    let out = agent()
        .args(base)
        .arg(dir.path().join("s"))
        .args(["--server", "https://127.0.0.1:1", "--ca"])
        .arg(dir.path().join("missing.pem"))
        .output()
        .expect("run");
    assert!(String::from_utf8_lossy(&out.stderr).contains("missing.pem"), "{}", String::from_utf8_lossy(&out.stderr));
    assert!(!dir.path().join("s").exists(), "nothing written on failure");
}
