//! Private files are private: a real server started with umask 000 does real work (a command
//! with output, an inventory report, a SecureString parameter) and leaves nothing in its data
//! dir readable by group or others; what an older version left wider is tightened at start.

// Tests drive the real binaries.
#![allow(clippy::disallowed_methods)]

use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::time::Duration;

use flotilla_testkit::{Agent, TestServer, wait_until, write_root};
use nix::sys::stat::{Mode, umask};

const DEBIAN: &str = "NAME=\"Debian GNU/Linux\"\nVERSION_ID=\"12\"\nID=debian\n";

/// Every entry under `root` (symlinks as themselves), with its permission bits.
fn modes(root: &Path) -> Vec<(PathBuf, u32, bool)> {
    let mut out = Vec::new();
    let mut pending = vec![root.to_path_buf()];
    while let Some(path) = pending.pop() {
        let meta = std::fs::symlink_metadata(&path).expect("stat");
        out.push((path.clone(), meta.permissions().mode() & 0o7777, meta.is_dir()));
        if meta.is_dir() {
            for entry in std::fs::read_dir(&path).expect("list") {
                pending.push(entry.expect("entry").path());
            }
        }
    }
    out
}

/// Files 0600 or narrower, directories 0700 or narrower; the testkit's CLI profile (written
/// by the CLI process, not the server) is left out.
fn assert_private(data: &Path) {
    let all = modes(data);
    let wide: Vec<String> = all
        .iter()
        .filter(|(path, _, _)| !path.starts_with(data.join("cli-profile")))
        .filter(|(_, mode, _)| mode & 0o077 != 0)
        .map(|(path, mode, dir)| format!("{} {:o}{}", path.display(), mode, if *dir { " (dir)" } else { "" }))
        .collect();
    assert!(wide.is_empty(), "readable by group or others:\n{}", wide.join("\n"));
    let names: Vec<String> = all.iter().map(|(p, _, _)| p.display().to_string()).collect();
    for expected in ["flotilla.db", "flotilla.db-wal", "master.key", "admin.token", "ca.key", "artifacts", "spool"] {
        assert!(names.iter().any(|n| n.ends_with(expected)), "{expected} was checked: {names:?}");
    }
    let data_mode = all[0].1;
    assert_eq!(data_mode, 0o700, "the data dir itself");
}

#[test]
fn server_started_with_umask_000_keeps_its_files_private() {
    // The server inherits this process's umask (each test runs in its own process).
    umask(Mode::empty());
    let dir = tempfile::tempdir().expect("tempdir");
    let data = dir.path().join("server");
    let mut server = TestServer::start(&data, "1s", &[]).expect("server");
    let act = server.cli_json(&["activations", "create"]).expect("activation");
    let agent_dir = dir.path().join("node");
    write_root(&agent_dir.join("root"), DEBIAN, "node-1").expect("root");
    let (mut agent, out) =
        Agent::enroll(&server, &agent_dir, act["id"].as_str().expect("id"), act["code"].as_str().expect("code"))
            .expect("register");
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let node = String::from_utf8_lossy(&out.stdout).trim().to_owned();
    agent.start().expect("agent");
    wait_until(Duration::from_secs(20), || Ok(server.cli_json(&["nodes", "show", &node])?["status"] == "Online"))
        .expect("online");

    let out = server
        .cli(&["run", "Flotilla-RunShellScript", "--param", "commands=seq 1 20000", "--target", &node, "--wait"])
        .expect("run");
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let out = server.cli(&["params", "put", "/db/password", "s3cret", "--type", "SecureString"]).expect("put");
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    wait_until(Duration::from_secs(20), || {
        let types = server.cli_json(&["inventory", "show", &node])?;
        Ok(types.as_array().is_some_and(|t| !t.is_empty()))
    })
    .expect("inventory arrived");
    assert_private(&data);

    // What an older version (or a careless restore) left wide is tightened at the next start.
    server.kill();
    for (path, mode) in [
        (data.clone(), 0o755),
        (data.join("flotilla.db"), 0o644),
        (data.join("master.key"), 0o666),
        (data.join("artifacts"), 0o777),
    ] {
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(mode)).expect("chmod");
    }
    server.restart().expect("restart");
    assert_private(&data);
    let log = server.log_text();
    assert!(log.contains("WARN") && log.contains("readable by group or others"), "{log}");
    drop(agent);
}
