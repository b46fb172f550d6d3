//! `flotilla server status` and `GET /api/v1/server/status` as an operator meets them: a real
//! server process lists its named workers; an in-process server whose added worker panics
//! shows it failed with the message and a restart count, and keeps serving.

// Tests drive the real binaries.
#![allow(clippy::disallowed_methods)]

use std::process::{Command, Stdio};
use std::time::Duration;

use flotilla_api::{Client, ServerStatus, WorkerState};
use flotilla_server::{Server, ServerConfig};
use flotilla_testkit::{TestServer, bin_path, wait_until};
use serde_json::Value;

/// Workers every server runs from its start (others may join them).
const WORKERS: [&str; 5] = ["engine", "listener", "liveness", "retention", "scheduler"];

#[test]
fn server_status_lists_the_named_workers() {
    let dir = tempfile::tempdir().expect("tempdir");
    let server = TestServer::start(&dir.path().join("server"), "1s", &[]).expect("server");
    let status = server.cli_json(&["server", "status"]).expect("server status");
    let workers = status["workers"].as_array().expect("workers array");
    let names: Vec<&str> = workers.iter().filter_map(|w| w["name"].as_str()).collect();
    for name in WORKERS {
        assert!(names.contains(&name), "{name} missing: {status:#}");
    }
    assert!(names.is_sorted(), "listed by name: {names:?}");
    for w in workers {
        let state = w["state"].as_str().expect("state");
        assert!(["running", "idle"].contains(&state), "{w:#}");
        assert_eq!(w["last_error"], Value::Null, "{w:#}");
        assert_eq!(w["restarts"], 0, "{w:#}");
        assert!(w.get("last_run").is_some(), "last_run is always present, null before the first: {w:#}");
    }
    assert_eq!(status["store"]["backend"], "sqlite");
    assert_eq!(status["store"]["reachable"], true);
    assert!(status["store"]["latency_ms"].as_f64().is_some(), "{status:#}");
    assert_eq!(status["agents"]["connected"], 0);
    assert_eq!(status["agents"]["enrolled"], 0);

    // The periodic workers report their runs: the liveness worker ticks within its interval.
    wait_until(Duration::from_secs(30), || {
        let status = server.cli_json(&["server", "status"])?;
        let liveness = status["workers"].as_array().and_then(|w| w.iter().find(|w| w["name"] == "liveness")).cloned();
        Ok(liveness.is_some_and(|w| w["runs"].as_u64() >= Some(1) && w["last_run"]["started_at"].is_string()))
    })
    .expect("the liveness worker records a run");

    let table = server.cli(&["server", "status"]).expect("table");
    assert!(table.status.success(), "{}", String::from_utf8_lossy(&table.stderr));
    let text = String::from_utf8_lossy(&table.stdout);
    assert!(text.starts_with("WORKER"), "{text}");
    for name in WORKERS {
        assert!(text.lines().any(|l| l.starts_with(name)), "{name} missing from\n{text}");
    }
    assert!(text.contains("agents: 0 connected here, 0 enrolled, 0 online"), "{text}");
    assert!(text.contains("store:  sqlite, reachable"), "{text}");

    // Running the server is unchanged, and its flags do not mix with `status`.
    let mixed = server.cli(&["server", "--data-dir", "/nonexistent", "status"]).expect("cli");
    assert_eq!(mixed.status.code(), Some(2), "{}", String::from_utf8_lossy(&mixed.stderr));
}

#[test]
fn server_status_needs_the_token() {
    let dir = tempfile::tempdir().expect("tempdir");
    let server = TestServer::start(&dir.path().join("server"), "1s", &[]).expect("server");
    let out = Command::new(bin_path("flotilla"))
        .args(["server", "status"])
        .env("FLOTILLA_URL", &server.url)
        .env("FLOTILLA_TOKEN", "not-the-token")
        .env("FLOTILLA_CA", &server.ca)
        .env("FLOTILLA_CONFIG_DIR", dir.path().join("profile"))
        .stdin(Stdio::null())
        .output()
        .expect("cli");
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("401") || err.to_lowercase().contains("token"), "{err}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_panicking_worker_is_shown_failed_and_the_server_keeps_serving() {
    let _ = rustls::crypto::aws_lc_rs::default_provider().install_default();
    let dir = tempfile::tempdir().expect("tempdir");
    let config = ServerConfig {
        data_dir: dir.path().join("server"),
        listen: "127.0.0.1:0".parse().expect("addr"),
        ..ServerConfig::default()
    };
    let server = Server::start(config).await.expect("start");
    server
        .workers()
        .spawn("doomed", |_ctx| async {
            panic!("doomed worker: the disk is on fire");
        })
        .expect("spawn");

    let token = std::fs::read_to_string(server.data_dir.join("admin.token")).expect("admin.token");
    let ca_path = server.data_dir.join("ca.pem");
    let ca = std::fs::read(&ca_path).expect("ca.pem");
    let client = Client::new(&server.url, Some(token.trim().to_owned()), Some(&ca)).expect("client");

    let mut status: Option<ServerStatus> = None;
    for _ in 0..300 {
        let now = client.server_status().await.expect("server status answers");
        let doomed = now.workers.iter().find(|w| w.name == "doomed").expect("doomed is listed").clone();
        if doomed.restarts >= 1 && doomed.state == WorkerState::BackingOff {
            status = Some(now);
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let status = status.expect("the doomed worker was restarted and is backing off");
    let doomed = status.workers.iter().find(|w| w.name == "doomed").expect("doomed");
    assert_eq!(doomed.last_error.as_deref(), Some("panicked: doomed worker: the disk is on fire"));
    assert!(doomed.failures >= 2 && doomed.restarts >= 1, "{doomed:?}");
    assert!(doomed.restart_at.is_some(), "{doomed:?}");
    for w in status.workers.iter().filter(|w| w.name != "doomed") {
        assert!(matches!(w.state, WorkerState::Running | WorkerState::Idle), "{w:?}");
    }

    // The rest of the server answers: /healthz, an API call, the CLI.
    let pem = reqwest::Certificate::from_pem(&ca).expect("ca");
    let http = reqwest::Client::builder().tls_backend_rustls().add_root_certificate(pem).build().expect("http");
    let health = http.get(format!("{}/healthz", server.url)).send().await.expect("healthz");
    assert_eq!(health.status(), 200);
    assert!(client.list_nodes(&[]).await.expect("nodes ls").is_empty());
    let url = server.url.clone();
    let profile = dir.path().join("profile");
    let table = tokio::task::spawn_blocking(move || {
        Command::new(bin_path("flotilla"))
            .args(["server", "status"])
            .env("FLOTILLA_URL", url)
            .env("FLOTILLA_TOKEN", token.trim())
            .env("FLOTILLA_CA", ca_path)
            .env("FLOTILLA_CONFIG_DIR", profile)
            .stdin(Stdio::null())
            .output()
    })
    .await
    .expect("join")
    .expect("cli");
    assert!(table.status.success(), "{}", String::from_utf8_lossy(&table.stderr));
    let text = String::from_utf8_lossy(&table.stdout);
    let line = text.lines().find(|l| l.starts_with("doomed")).unwrap_or_else(|| panic!("no doomed line in\n{text}"));
    assert!(line.contains("backing_off until") || line.contains("running"), "{line}");
    assert!(line.contains("panicked: doomed worker: the disk is on fire"), "{line}");

    server.stop().await;
}
