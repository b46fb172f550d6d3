//! `flotilla demo`, as a newcomer runs it: a server and a sample fleet of real agents on
//! different distributions, reachable with the printed settings, all stopped by Ctrl-C.

// Tests drive the real binaries.
#![allow(clippy::disallowed_methods)]

use std::io::{BufRead, BufReader};
use std::process::{Command, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};

use flotilla_testkit::bin_path;
use serde_json::Value;

struct KillOnDrop(std::process::Child);

impl Drop for KillOnDrop {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

#[test]
fn demo_runs_a_varied_fleet_and_stops_everything() {
    let dir = tempfile::tempdir().expect("tempdir");
    let data = dir.path().join("demo");
    let port = std::net::TcpListener::bind("127.0.0.1:0").expect("port").local_addr().expect("addr").port();
    // No rpmbuild (nor any other tool) on the demo's PATH: the sample fleet must not need one.
    // The agents find `rpm` on their own fixed PATH, as on a real node.
    let empty_path = dir.path().join("empty-path");
    std::fs::create_dir_all(&empty_path).expect("mkdir");
    let demo = Command::new(bin_path("flotilla"))
        .args(["demo", "--nodes", "4", "--listen", &format!("127.0.0.1:{port}"), "--data-dir"])
        .arg(&data)
        .env("PATH", &empty_path)
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .expect("start demo");
    // Killed on every exit from this test, a failed assertion included.
    let mut demo = KillOnDrop(demo);
    let stdout = demo.0.stdout.take().expect("stdout");
    let (tx, rx) = mpsc::channel();
    std::thread::spawn(move || {
        for line in BufReader::new(stdout).lines().map_while(Result::ok) {
            let _ = tx.send(line);
        }
    });
    let mut printed = Vec::new();
    while !printed.iter().any(|l: &String| l.contains("Press Ctrl-C")) {
        match rx.recv_timeout(Duration::from_secs(60)) {
            Ok(line) => printed.push(line),
            Err(_) => {
                let _ = demo.0.kill();
                panic!("the demo did not come up: {printed:?}");
            }
        }
    }
    let text = printed.join("\n");
    assert!(text.contains(&format!("export FLOTILLA_URL=https://127.0.0.1:{port}")), "{text}");
    assert!(text.contains("First command") && text.contains(": Success"), "the demo ran a first command: {text}");
    assert!(text.contains("association `motd`") && text.contains("Success"), "the demo's association ran: {text}");
    assert!(
        text.contains("Maintenance window `nightly`") && text.contains("T03:00:00+00:00"),
        "the demo's window: {text}"
    );
    assert!(text.contains("load average"), "each node's last line of output (uptime) is shown: {text}");
    // The sample fleet's package databases, assessed against the shipped OSV sample: the Ubuntu
    // node's openssh (1:8.9p1-3ubuntu0.6 or older) and the Alpine node's musl are vulnerable.
    assert!(text.contains("UBUNTU-CVE-2024-6387") && text.contains("ALPINE-CVE-2025-26519"), "findings shown: {text}");

    let server_dir = data.join("server");
    let token = std::fs::read_to_string(server_dir.join("admin.token")).expect("token");
    let out = Command::new(bin_path("flotilla"))
        .args(["nodes", "ls", "-o", "json"])
        .env("FLOTILLA_URL", format!("https://127.0.0.1:{port}"))
        .env("FLOTILLA_TOKEN", token.trim())
        .env("FLOTILLA_CA", server_dir.join("ca.pem"))
        .env("FLOTILLA_CONFIG_DIR", dir.path())
        .output()
        .expect("nodes ls");
    let nodes: Value = serde_json::from_slice(&out.stdout).expect("json");
    let nodes = nodes.as_array().expect("array");
    assert_eq!(nodes.len(), 4);
    let mut distros: Vec<&str> = nodes.iter().map(|n| n["platform"]["id"].as_str().unwrap_or("")).collect();
    distros.sort();
    assert_eq!(distros, ["alpine", "debian", "rocky", "ubuntu"]);
    for n in nodes {
        assert_eq!(n["status"], "Online", "{n}");
        assert!(n["tags"]["env"].is_string() && n["tags"]["role"].is_string(), "{n}");
    }
    // Every distribution has its packages, the Rocky node's read from its rpm database by the
    // real `rpm` (which scripts/test.sh installs; the demo itself needs no rpmbuild).
    for n in nodes {
        let id = n["id"].as_str().expect("id");
        let out = Command::new(bin_path("flotilla"))
            .args(["inventory", "show", id, "--type", "Application", "-o", "json"])
            .env("FLOTILLA_URL", format!("https://127.0.0.1:{port}"))
            .env("FLOTILLA_TOKEN", token.trim())
            .env("FLOTILLA_CA", server_dir.join("ca.pem"))
            .env("FLOTILLA_CONFIG_DIR", dir.path())
            .output()
            .expect("inventory show");
        let types: Value = serde_json::from_slice(&out.stdout).expect("json");
        let count = types[0]["item_count"].as_i64().unwrap_or(0);
        assert!(count >= 100, "{} has {count} packages: {}", n["platform"]["id"], String::from_utf8_lossy(&out.stderr));
    }

    // Ctrl-C stops the demo and every agent it started.
    let status = Command::new("kill").args(["-INT", &demo.0.id().to_string()]).status().expect("kill");
    assert!(status.success());
    let mut exited = None;
    for _ in 0..150 {
        if let Some(status) = demo.0.try_wait().expect("wait") {
            exited = Some(status);
            break;
        }
        std::thread::sleep(Duration::from_millis(100));
    }
    let exited = exited.unwrap_or_else(|| {
        let _ = demo.0.kill();
        panic!("the demo did not stop on Ctrl-C")
    });
    assert!(exited.success(), "{exited}");
    let fleet = data.join("fleet");
    let leftover = Command::new("pgrep").arg("-f").arg(fleet.to_string_lossy().as_ref()).output().expect("pgrep");
    assert!(leftover.stdout.is_empty(), "agents left running: {}", String::from_utf8_lossy(&leftover.stdout));
}

/// Where in its life the demo gets Ctrl-C.
#[derive(Debug, Clone, Copy)]
enum Moment {
    /// Its data dir exists: the server is starting.
    ServerStarting,
    /// The first agent runs: the others are registering.
    AgentsRegistering,
    /// The first command's result is shown: the OSV sample is being imported and assessed.
    SampleImporting,
    /// Start-up is over.
    Running,
}

/// Issue 12, item 11: Ctrl-C at any moment stops the demo within 5 s and leaves no process
/// whose command line names its data dir (server, registering or running agents).
#[test]
fn demo_stops_on_ctrl_c_at_any_moment() {
    for moment in [Moment::ServerStarting, Moment::AgentsRegistering, Moment::SampleImporting, Moment::Running] {
        let dir = tempfile::tempdir().expect("tempdir");
        let data = dir.path().join("demo");
        let port = std::net::TcpListener::bind("127.0.0.1:0").expect("port").local_addr().expect("addr").port();
        let demo = Command::new(bin_path("flotilla"))
            .args(["demo", "--nodes", "4", "--listen", &format!("127.0.0.1:{port}"), "--data-dir"])
            .arg(&data)
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()
            .expect("start demo");
        let mut demo = KillOnDrop(demo);
        let stdout = demo.0.stdout.take().expect("stdout");
        let (tx, rx) = mpsc::channel();
        std::thread::spawn(move || {
            for line in BufReader::new(stdout).lines().map_while(Result::ok) {
                let _ = tx.send(line);
            }
        });
        let first_agent_log = || {
            std::fs::read_dir(data.join("fleet"))
                .map(|d| d.filter_map(Result::ok).any(|e| e.path().join("agent.log").exists()))
                .unwrap_or(false)
        };
        let mut printed: Vec<String> = Vec::new();
        let reached = |printed: &[String]| match moment {
            Moment::ServerStarting => data.exists(),
            Moment::AgentsRegistering => first_agent_log(),
            Moment::SampleImporting => printed.iter().any(|l| l.starts_with("First command")),
            Moment::Running => printed.iter().any(|l| l.contains("Press Ctrl-C")),
        };
        let deadline = Instant::now() + Duration::from_secs(90);
        while !reached(&printed) {
            assert!(Instant::now() < deadline, "{moment:?} was not reached: {printed:?}");
            if let Ok(line) = rx.recv_timeout(Duration::from_millis(5)) {
                printed.push(line);
            }
        }
        let status = Command::new("kill").args(["-INT", &demo.0.id().to_string()]).status().expect("kill");
        assert!(status.success());
        let stop_by = Instant::now() + Duration::from_secs(5);
        let exited = loop {
            if let Some(status) = demo.0.try_wait().expect("wait") {
                break status;
            }
            assert!(Instant::now() < stop_by, "the demo did not stop within 5 s of Ctrl-C at {moment:?}");
            std::thread::sleep(Duration::from_millis(50));
        };
        assert!(exited.success(), "{moment:?}: {exited}");
        let leftover = Command::new("pgrep").arg("-af").arg(data.to_string_lossy().as_ref()).output().expect("pgrep");
        assert!(
            leftover.stdout.is_empty(),
            "processes left after Ctrl-C at {moment:?}: {}",
            String::from_utf8_lossy(&leftover.stdout)
        );
    }
}
