//! Bad input gets a clear error and changes nothing stored (issue: foundation).

// Tests drive the real binaries.
#![allow(clippy::disallowed_methods)]

use std::io::{Read, Write};
use std::net::TcpStream;
use std::time::Duration;

use flotilla_testkit::{Agent, TestServer, bin_path, wait_until, write_root};
use serde_json::{Value, json};

const DEBIAN: &str = "NAME=\"Debian GNU/Linux\"\nVERSION_ID=\"12\"\nID=debian\n";

fn stderr(out: &std::process::Output) -> String {
    String::from_utf8_lossy(&out.stderr).into_owned()
}

fn activation(server: &TestServer, args: &[&str]) -> Value {
    let mut full = vec!["activations", "create"];
    full.extend_from_slice(args);
    server.cli_json(&full).expect("create activation")
}

fn node_count(server: &TestServer) -> usize {
    server.cli_json(&["nodes", "ls"]).expect("ls").as_array().map(Vec::len).unwrap_or(0)
}

fn registrations(server: &TestServer, id: &str) -> u64 {
    let list = server.cli_json(&["activations", "ls"]).expect("ls");
    list.as_array()
        .expect("array")
        .iter()
        .find(|a| a["id"] == id)
        .map(|a| a["registrations"].as_u64().unwrap_or(0))
        .expect("present")
}

fn try_register(server: &TestServer, dir: &std::path::Path, id: &str, code: &str) -> std::process::Output {
    write_root(&dir.join("root"), DEBIAN, "n").expect("root");
    Agent::enroll(server, dir, id, code).expect("run register").1
}

#[test]
fn enrollment_refusals_change_nothing() {
    let dir = tempfile::tempdir().expect("tempdir");
    let server = TestServer::start(&dir.path().join("server"), "1s", &[]).expect("server");
    let act = activation(&server, &["--limit", "1"]);
    let (id, code) = (act["id"].as_str().expect("id"), act["code"].as_str().expect("code"));

    let out = try_register(&server, &dir.path().join("a"), id, "wrong-code");
    assert!(!out.status.success());
    assert!(stderr(&out).contains("wrong activation code"), "{}", stderr(&out));

    let out = try_register(&server, &dir.path().join("b"), "act-doesnotexist", code);
    assert!(!out.status.success());
    assert!(stderr(&out).contains("unknown activation id"), "{}", stderr(&out));
    assert_eq!((node_count(&server), registrations(&server, id)), (0, 0), "refusals store nothing");

    let out = try_register(&server, &dir.path().join("c"), id, code);
    assert!(out.status.success(), "{}", stderr(&out));
    let out = try_register(&server, &dir.path().join("d"), id, code);
    assert!(!out.status.success());
    assert!(stderr(&out).contains("registration limit"), "{}", stderr(&out));
    assert_eq!((node_count(&server), registrations(&server, id)), (1, 1));

    // Registering again into a state dir that holds an identity is refused without --force.
    let out = try_register(&server, &dir.path().join("c"), id, code);
    assert!(stderr(&out).contains("already enrolled"), "{}", stderr(&out));

    let short = activation(&server, &["--limit", "5", "--expires", "1s"]);
    std::thread::sleep(Duration::from_millis(1500));
    let out = try_register(
        &server,
        &dir.path().join("e"),
        short["id"].as_str().expect("id"),
        short["code"].as_str().expect("code"),
    );
    assert!(!out.status.success());
    assert!(stderr(&out).contains("expired"), "{}", stderr(&out));
    assert_eq!(node_count(&server), 1);

    // Activation parameters out of range.
    for args in [&["--limit", "0"][..], &["--expires", "90d"][..], &["--tag", "=x"][..], &["--tag", "noequals"][..]] {
        let mut full = vec!["activations", "create"];
        full.extend_from_slice(args);
        let out = server.cli(&full).expect("cli");
        assert!(!out.status.success(), "{args:?} accepted");
        assert!(stderr(&out).starts_with("error: "), "{args:?}: {}", stderr(&out));
        assert_eq!(stderr(&out).lines().count(), 1, "one-line error: {}", stderr(&out));
    }
}

#[test]
fn foreign_certificates_and_garbage_are_refused() {
    let dir = tempfile::tempdir().expect("tempdir");
    let server = TestServer::start(&dir.path().join("server"), "1s", &[]).expect("server");
    let other = TestServer::start(&dir.path().join("other"), "1s", &[]).expect("second server");

    // An agent enrolled with another server (another CA) pointed at ours: the TLS layer refuses
    // its certificate and nothing is recorded.
    let act = activation(&other, &["--limit", "1"]);
    let agent_dir = dir.path().join("foreign");
    write_root(&agent_dir.join("root"), DEBIAN, "foreign").expect("root");
    let (mut agent, out) =
        Agent::enroll(&other, &agent_dir, act["id"].as_str().expect("id"), act["code"].as_str().expect("code"))
            .expect("register");
    assert!(out.status.success(), "{}", stderr(&out));
    let state_path = agent.state_dir.join("state.json");
    let mut state: Value = serde_json::from_slice(&std::fs::read(&state_path).expect("state")).expect("json");
    state["server_url"] = json!(server.url);
    std::fs::write(&state_path, serde_json::to_vec(&state).expect("json")).expect("write");
    std::fs::copy(&server.ca, agent.state_dir.join("ca.pem")).expect("trust our server");
    agent.start().expect("start");
    wait_until(Duration::from_secs(15), || Ok(agent.log_text().contains("retrying"))).expect("agent retries");
    assert_eq!(node_count(&server), 0);
    agent.stop();

    // Garbage bytes and plain HTTP on the TLS port: the connection is dropped, the server lives.
    for payload in [&b"\x00\xffgarbage\r\n\r\n"[..], &b"GET /api/v1/nodes HTTP/1.1\r\nHost: x\r\n\r\n"[..]] {
        let mut tcp = TcpStream::connect(("127.0.0.1", server.port)).expect("connect");
        tcp.set_read_timeout(Some(Duration::from_secs(15))).expect("timeout");
        tcp.write_all(payload).expect("write");
        let mut reply = Vec::new();
        let _ = tcp.read_to_end(&mut reply);
        assert!(!String::from_utf8_lossy(&reply).contains("HTTP/1.1 200"), "no plaintext service");
    }
    assert_eq!(node_count(&server), 0, "the server still answers");
}

#[tokio::test(flavor = "multi_thread")]
async fn api_rejects_bad_requests() {
    let dir = tempfile::tempdir().expect("tempdir");
    let server = tokio::task::spawn_blocking({
        let data = dir.path().join("server");
        move || TestServer::start(&data, "1s", &[]).expect("server")
    })
    .await
    .expect("join");
    let ca = reqwest::Certificate::from_pem(&std::fs::read(&server.ca).expect("ca")).expect("pem");
    let http = reqwest::Client::builder().tls_certs_only([ca]).build().expect("client");
    let url = |path: &str| format!("{}{path}", server.url);
    let auth = format!("Bearer {}", server.token);

    let check = |status: u16, body: Value, want_status: u16, want_text: &str| {
        assert_eq!(status, want_status, "{body}");
        let message = body["error"]["message"].as_str().unwrap_or_default().to_owned();
        assert!(message.contains(want_text), "expected `{want_text}` in {body}");
    };
    let send = |req: reqwest::RequestBuilder| async move {
        let resp = req.send().await.expect("send");
        let status = resp.status().as_u16();
        (status, resp.json::<Value>().await.unwrap_or(Value::Null))
    };

    // No token, a wrong token.
    let (s, b) = send(http.get(url("/api/v1/nodes"))).await;
    check(s, b, 401, "missing API token");
    let (s, b) = send(http.get(url("/api/v1/nodes")).header("authorization", "Bearer nope")).await;
    check(s, b, 401, "not valid");

    // Malformed JSON, unknown fields, wrong types.
    let post = |body: &'static str| {
        http.post(url("/api/v1/activations"))
            .header("authorization", &auth)
            .header("content-type", "application/json")
            .body(body)
    };
    let (s, b) = send(post("{not json")).await;
    check(s, b, 400, "invalid request body");
    let (s, b) = send(post(r#"{"registration_limit": 2, "colour": "red"}"#)).await;
    check(s, b, 400, "unknown field `colour`");
    let (s, b) = send(post(r#"{"registration_limit": "ten"}"#)).await;
    check(s, b, 400, "invalid type");
    let (s, b) = send(post(r#"{"tags": {"": "x"}}"#)).await;
    check(s, b, 400, "empty key");
    let listed: Value = http
        .get(url("/api/v1/activations"))
        .header("authorization", &auth)
        .send()
        .await
        .expect("ls")
        .json()
        .await
        .expect("json");
    assert_eq!(listed, json!([]), "no bad request stored anything");

    // Invalid target, unknown node, bad node id, a tag with an empty key.
    let (s, b) = send(http.get(url("/api/v1/nodes?target=tag:")).header("authorization", &auth)).await;
    check(s, b, 400, "invalid target");
    let (s, b) = send(http.get(url("/api/v1/nodes/n-0123456789abcdef0")).header("authorization", &auth)).await;
    check(s, b, 404, "no node");
    let (s, b) = send(http.get(url("/api/v1/nodes/i-123")).header("authorization", &auth)).await;
    check(s, b, 400, "not a node id");
    let (s, b) = send(
        http.post(url("/api/v1/nodes/n-0123456789abcdef0/tags"))
            .header("authorization", &auth)
            .json(&json!({"tags": {"": "x"}})),
    )
    .await;
    check(s, b, 400, "empty key");

    // The OpenAPI description, health, readiness, metrics.
    let spec: Value = http.get(url("/api/v1/openapi.json")).send().await.expect("spec").json().await.expect("json");
    assert!(spec["paths"]["/api/v1/nodes"].is_object(), "{spec}");
    assert_eq!(http.get(url("/healthz")).send().await.expect("healthz").status().as_u16(), 200);
    assert_eq!(http.get(url("/readyz")).send().await.expect("readyz").status().as_u16(), 200);
    let metrics = http.get(url("/metrics")).send().await.expect("metrics").text().await.expect("text");
    assert!(
        metrics.contains("flotilla_agent_connected") && metrics.contains("flotilla_api_requests_total"),
        "{metrics}"
    );
    drop(server);
}

#[test]
fn cli_errors_are_one_clear_line() {
    let dir = tempfile::tempdir().expect("tempdir");
    let server = TestServer::start(&dir.path().join("server"), "1s", &[]).expect("server");
    for (args, text) in [
        (&["nodes", "ls", "--target", "everything"][..], "invalid target"),
        (&["nodes", "tag", "n-0123456789abcdef0", "=prod"][..], "empty key"),
        (&["nodes", "show", "n-0123456789abcdef0"][..], "no node"),
        (&["groups", "put", "g", "--target", "group:missing"][..], "unknown group"),
    ] {
        let out = server.cli(args).expect("cli");
        assert!(!out.status.success(), "{args:?}");
        assert!(stderr(&out).contains(text), "{args:?}: {}", stderr(&out));
        assert_eq!(stderr(&out).trim_end().lines().count(), 1, "{}", stderr(&out));
    }
    let out = std::process::Command::new(bin_path("flotilla"))
        .args(["nodes", "ls"])
        .env("FLOTILLA_URL", &server.url)
        .env("FLOTILLA_TOKEN", "wrong")
        .env("FLOTILLA_CA", &server.ca)
        .env("FLOTILLA_CONFIG_DIR", dir.path())
        .output()
        .expect("cli");
    assert!(!out.status.success());
    assert!(stderr(&out).contains("401") && stderr(&out).contains("not valid"), "{}", stderr(&out));

    // `flotilla login` saves a profile that later commands use without any variable.
    let bare = |args: &[&str]| {
        std::process::Command::new(bin_path("flotilla"))
            .args(args)
            .env_remove("FLOTILLA_URL")
            .env_remove("FLOTILLA_TOKEN")
            .env_remove("FLOTILLA_CA")
            .env("FLOTILLA_CONFIG_DIR", dir.path())
            .output()
            .expect("cli")
    };
    let out = bare(&["nodes", "ls"]);
    assert!(stderr(&out).contains("flotilla login"), "{}", stderr(&out));
    let ca = server.ca.to_string_lossy().into_owned();
    let out = bare(&["login", "--url", &server.url, "--token", "wrong", "--ca", &ca]);
    assert!(!out.status.success(), "a wrong token is not saved");
    let out = bare(&["login", "--url", &server.url, "--token", &server.token, "--ca", &ca]);
    assert!(out.status.success(), "{}", stderr(&out));
    let profile = dir.path().join("profile.json");
    let mode = std::os::unix::fs::PermissionsExt::mode(&std::fs::metadata(&profile).expect("profile").permissions());
    assert_eq!(mode & 0o777, 0o600);
    let out = bare(&["nodes", "ls", "-o", "yaml"]);
    assert!(out.status.success(), "{}", stderr(&out));
    assert_eq!(String::from_utf8_lossy(&out.stdout).trim(), "[]");
}

#[test]
fn data_dir_problems_stop_the_server_with_a_clear_error() {
    let dir = tempfile::tempdir().expect("tempdir");
    let data = dir.path().join("server");
    let server = TestServer::start(&data, "1s", &[]).expect("server");
    let run = |data_dir: &std::path::Path| {
        std::process::Command::new(bin_path("flotilla"))
            .args(["server", "--listen", "127.0.0.1:0", "--data-dir"])
            .arg(data_dir)
            .output()
            .expect("run server")
    };
    // First start wrote the admin token and the CA; everything in the data dir is owner-only
    // (ca.pem too: it is public, but it lives in the private data dir).
    for file in ["admin.token", "master.key", "ca.key", "ca.pem"] {
        let mode =
            std::os::unix::fs::PermissionsExt::mode(&std::fs::metadata(data.join(file)).expect(file).permissions());
        assert_eq!(mode & 0o077, 0, "{file} mode {mode:o}");
    }
    // A second server on the same SQLite data dir.
    let out = run(&data);
    assert!(!out.status.success());
    assert!(stderr(&out).contains("already using the data dir"), "{}", stderr(&out));
    drop(server);

    // A data dir that cannot be created or written (root ignores permissions, so use a path
    // under a regular file).
    let file = dir.path().join("plain-file");
    std::fs::write(&file, "x").expect("write");
    let out = run(&file.join("data"));
    assert!(!out.status.success());
    assert!(stderr(&out).contains("cannot create the data dir"), "{}", stderr(&out));

    // A malformed master key: refuse to start rather than serve with a wrong key.
    std::fs::write(data.join("master.key"), "not-a-key").expect("write");
    let out = run(&data);
    assert!(!out.status.success());
    assert!(stderr(&out).contains("master key"), "{}", stderr(&out));

    // Unknown config keys are refused.
    let cfg = dir.path().join("server.toml");
    std::fs::write(&cfg, "listen = \"127.0.0.1:0\"\nheartbeat_intervall = \"1s\"\n").expect("write");
    let out =
        std::process::Command::new(bin_path("flotilla")).args(["server", "--config"]).arg(&cfg).output().expect("run");
    assert!(!out.status.success());
    assert!(stderr(&out).contains("heartbeat_intervall"), "{}", stderr(&out));
}

/// Issue 12, item 11: a closed output pipe ends the CLI quietly (status 141, nothing on
/// stderr), for tables and JSON alike, instead of a panic.
#[test]
fn closed_output_pipe_ends_the_cli_quietly() {
    let dir = tempfile::tempdir().expect("tempdir");
    let server = TestServer::start(&dir.path().join("server"), "1s", &[]).expect("server");
    for args in [
        &["nodes", "ls"][..],
        &["nodes", "ls", "-o", "json"],
        &["activations", "ls"],
        &["version-cmp", "--ecosystem", "deb", "1", "2"],
    ] {
        let mut child = std::process::Command::new(bin_path("flotilla"))
            .args(args)
            .env("FLOTILLA_URL", &server.url)
            .env("FLOTILLA_TOKEN", &server.token)
            .env("FLOTILLA_CA", &server.ca)
            .env("FLOTILLA_CONFIG_DIR", dir.path().join("profile"))
            .stdin(std::process::Stdio::null())
            .stdout(std::process::Stdio::piped())
            .stderr(std::process::Stdio::piped())
            .spawn()
            .expect("spawn");
        // The reader goes away before the CLI has written anything (it still has to start its
        // runtime and ask the server): like `| head -0`, without the race.
        drop(child.stdout.take());
        let out = child.wait_with_output().expect("wait");
        let err = String::from_utf8_lossy(&out.stderr);
        assert!(!err.contains("panicked"), "{args:?}: {err}");
        assert!(err.is_empty(), "{args:?} is quiet: {err}");
        assert!(matches!(out.status.code(), Some(0 | 141)), "{args:?}: {}", out.status);
    }
}

/// Issue 12, item 13: an http:// server URL is refused before anything is sent, wherever it
/// comes from, unless --insecure-http is given.
#[test]
fn plain_http_urls_are_refused_unless_insecure_http() {
    let dir = tempfile::tempdir().expect("tempdir");
    let listener = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
    listener.set_nonblocking(true).expect("nonblocking");
    let url = format!("http://{}", listener.local_addr().expect("addr"));
    let config_dir = dir.path().join("profile");
    let cli = |args: &[&str], env_url: Option<&str>| {
        let mut cmd = std::process::Command::new(bin_path("flotilla"));
        cmd.args(args).env("FLOTILLA_TOKEN", "secret-token").env("FLOTILLA_CONFIG_DIR", &config_dir);
        cmd.env_remove("FLOTILLA_URL").env_remove("FLOTILLA_CA").env_remove("FLOTILLA_INSECURE_HTTP");
        if let Some(u) = env_url {
            cmd.env("FLOTILLA_URL", u);
        }
        cmd.stdin(std::process::Stdio::null()).output().expect("run the cli")
    };
    let nothing_connected = |listener: &std::net::TcpListener| {
        assert!(
            matches!(listener.accept(), Err(e) if e.kind() == std::io::ErrorKind::WouldBlock),
            "a refused URL must not be contacted"
        );
    };

    let refused = |out: &std::process::Output, origin: &str| {
        assert_eq!(out.status.code(), Some(1));
        let err = stderr(out);
        assert!(err.contains("in clear") && err.contains("--insecure-http") && err.contains(origin), "{err}");
        assert_eq!(err.trim_end().lines().count(), 1, "{err}");
    };
    refused(&cli(&["nodes", "ls"], Some(&url)), "FLOTILLA_URL");
    refused(&cli(&["nodes", "ls", "--url", &url], None), "--url");
    refused(&cli(&["login", "--url", &url, "--token", "t"], None), "login --url");
    std::fs::create_dir_all(&config_dir).expect("dir");
    std::fs::write(
        config_dir.join("profile.json"),
        serde_json::to_string(&json!({"url": url, "token": "secret-token", "ca_pem": null})).expect("json"),
    )
    .expect("profile");
    refused(&cli(&["nodes", "ls"], None), "login profile");
    nothing_connected(&listener);

    // With the flag the CLI does connect, and the token does travel in clear: what the
    // refusal protects against.
    listener.set_nonblocking(false).expect("blocking");
    let url2 = url.clone();
    let config2 = config_dir.clone();
    let child = std::thread::spawn(move || {
        std::process::Command::new(bin_path("flotilla"))
            .args(["nodes", "ls", "--insecure-http"])
            .env("FLOTILLA_URL", &url2)
            .env("FLOTILLA_TOKEN", "secret-token")
            .env("FLOTILLA_CONFIG_DIR", &config2)
            .env_remove("FLOTILLA_CA")
            .output()
            .expect("run the cli")
    });
    let (mut conn, _) = listener.accept().expect("the CLI connects with --insecure-http");
    conn.set_read_timeout(Some(Duration::from_secs(10))).expect("timeout");
    let mut request = Vec::new();
    let mut buf = [0u8; 4096];
    while !request.windows(4).any(|w| w == b"\r\n\r\n") {
        match conn.read(&mut buf) {
            Ok(0) | Err(_) => break,
            Ok(n) => request.extend_from_slice(&buf[..n]),
        }
    }
    let _ = conn.write_all(b"HTTP/1.1 200 OK\r\ncontent-type: application/json\r\ncontent-length: 2\r\n\r\n[]");
    drop(conn);
    let out = child.join().expect("join");
    assert!(String::from_utf8_lossy(&request).contains("secret-token"), "sent in clear");
    assert!(out.status.success(), "{}", stderr(&out));
}

/// Issue 12, item 13: strings an agent controls reach the terminal with their control
/// characters escaped; JSON keeps them exactly.
#[test]
fn agent_strings_are_escaped_in_tables() {
    let dir = tempfile::tempdir().expect("tempdir");
    let server = TestServer::start(&dir.path().join("server"), "1s", &[]).expect("server");
    let act = activation(&server, &["--limit", "1"]);
    let (id, code) = (act["id"].as_str().expect("id"), act["code"].as_str().expect("code"));
    let hostname = "web\u{1b}[2J\u{1b}]0;pwned\u{7}-01";
    let os_name = "Debian\u{1b}[31m GNU/Linux\u{9b}1m";
    let agent_dir = dir.path().join("evil");
    write_root(&agent_dir.join("root"), &format!("NAME=\"{os_name}\"\nVERSION_ID=\"12\"\nID=debian\n"), hostname)
        .expect("root");
    let (mut agent, out) = Agent::enroll(&server, &agent_dir, id, code).expect("register");
    assert!(out.status.success(), "{}", stderr(&out));
    let node = String::from_utf8_lossy(&out.stdout).trim().to_owned();
    agent.start().expect("start");
    wait_until(Duration::from_secs(20), || Ok(server.cli_json(&["nodes", "show", &node])?["status"] == "Online"))
        .unwrap_or_else(|e| panic!("{e}: {}", agent.log_text()));

    // JSON: exact.
    let shown = server.cli_json(&["nodes", "show", &node]).expect("show");
    assert_eq!(shown["hostname"], hostname);
    assert_eq!(shown["platform"]["name"], os_name);

    // Tables: escaped, never raw.
    let is_raw = |c: char| c.is_control() && c != '\n';
    for args in [
        vec!["nodes", "ls"],
        vec!["nodes", "show", &node],
        vec!["inventory", "show", &node, "--type", "InstanceInformation"],
        vec!["inventory", "query", "--type", "InstanceInformation"],
    ] {
        let out = server.cli(&args).expect("cli");
        assert!(out.status.success(), "{args:?}: {}", stderr(&out));
        let text = String::from_utf8_lossy(&out.stdout).into_owned();
        assert!(!text.chars().any(is_raw), "{args:?} printed a control character: {text:?}");
        if args[0] == "nodes" {
            assert!(text.contains("web\\x1b[2J\\x1b]0;pwned\\x07-01"), "{args:?}: {text}");
            assert!(text.contains("Debian\\x1b[31m GNU/Linux\\x9b1m"), "{args:?}: {text}");
        }
    }
    agent.stop();
}
