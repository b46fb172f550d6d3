//! Typed state end to end: a status the server does not know, planted in its PostgreSQL
//! database behind its back (as a newer version or a hand edit would leave it), reaches the
//! operator as a clear error naming the row — HTTP 500 `unknown_stored_value` and a one-line
//! CLI error — never as a default such as Pending, and the server keeps serving.

// Tests drive the real binaries.
#![allow(clippy::disallowed_methods)]

use flotilla_testkit::TestServer;
use flotilla_testkit::postgres::TempDatabase;
use serde_json::Value;

#[tokio::test(flavor = "multi_thread")]
async fn an_unknown_status_in_the_database_is_a_clear_error_naming_the_row() {
    let db = TempDatabase::for_test().await;
    let dir = tempfile::tempdir().expect("tempdir");
    let server = tokio::task::spawn_blocking({
        let data = dir.path().join("server");
        let url = db.url().to_owned();
        move || TestServer::start(&data, "1s", &[("FLOTILLA_DATABASE_URL", &url)]).expect("server on postgres")
    })
    .await
    .expect("join");

    // A finished command (so the engine leaves it alone) whose one invocation holds a status
    // this version does not know.
    db.execute(
        "INSERT INTO commands (id, document, document_version, parameters, targets, plan, max_concurrency, \
         max_errors, delivery_timeout_ms, comment, status, created_at, ended_at) VALUES \
         ('c-planted', 'Flotilla-RunShellScript', 1, '{}', '[\"all\"]', '[]', '50', '0', 600000, '', 'Success', 1, 2)",
    )
    .await
    .expect("plant command");
    db.execute("INSERT INTO invocations (command_id, node_id, status) VALUES ('c-planted', 'n-planted', 'Bogus')")
        .await
        .expect("plant invocation");

    // The REST API: 500 with the row named, not a guess.
    let ca = reqwest::Certificate::from_pem(&std::fs::read(&server.ca).expect("ca")).expect("pem");
    let http = reqwest::Client::builder().tls_certs_only([ca]).build().expect("client");
    let reply = http
        .get(format!("{}/api/v1/commands/c-planted", server.url))
        .bearer_auth(&server.token)
        .send()
        .await
        .expect("GET command");
    assert_eq!(reply.status().as_u16(), 500);
    let body: Value = reply.json().await.expect("error body");
    assert_eq!(body["error"]["code"], "unknown_stored_value", "{body}");
    let message = body["error"]["message"].as_str().unwrap_or_default();
    for part in ["invocations row `c-planted/n-planted`", "status `Bogus`", "newer version", "by hand"] {
        assert!(message.contains(part), "{message:?} lacks {part:?}");
    }

    // The CLI: a failing exit and one line that says the same.
    let (show, list, nodes) = tokio::task::spawn_blocking(move || {
        let show = server.cli(&["commands", "show", "c-planted", "-o", "json"]).expect("show");
        let list = server.cli(&["commands", "ls", "-o", "json"]).expect("ls");
        let nodes = server.cli(&["nodes", "ls", "-o", "json"]).expect("nodes");
        (show, list, nodes)
    })
    .await
    .expect("join");
    for (what, out) in [("show", &show), ("ls", &list)] {
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert!(!out.status.success(), "commands {what} succeeded: {}", String::from_utf8_lossy(&out.stdout));
        assert!(stderr.contains("c-planted") && stderr.contains("Bogus"), "commands {what}: {stderr}");
        assert!(!String::from_utf8_lossy(&out.stdout).contains("Pending"), "commands {what} guessed Pending");
    }
    // The rest of the server keeps serving.
    assert!(nodes.status.success(), "{}", String::from_utf8_lossy(&nodes.stderr));

    db.drop_database().await.expect("drop test database");
}
