//! The API description a real server serves: valid OpenAPI (checked by the real
//! `openapi-spec-validator`), and true of the server (every documented operation is routed,
//! every other method on a documented path is refused with 405).

// Tests drive the real binaries and the validator.
#![allow(clippy::disallowed_methods)]

use std::path::PathBuf;
use std::process::Command;

use flotilla_testkit::TestServer;
use serde_json::Value;

const METHODS: [&str; 5] = ["GET", "POST", "PUT", "DELETE", "PATCH"];

/// The validator from `FLOTILLA_OPENAPI_VALIDATOR`, else the venv `scripts/test.sh` creates.
/// Missing, the test fails: it must never pass without validating.
fn validator() -> PathBuf {
    if let Some(path) = std::env::var_os("FLOTILLA_OPENAPI_VALIDATOR").filter(|p| !p.is_empty()) {
        return PathBuf::from(path);
    }
    let workspace = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../..");
    let venv = workspace.join("target/ci-venv/bin/openapi-spec-validator");
    assert!(
        venv.exists(),
        "no OpenAPI validator at {}: run scripts/test.sh to install openapi-spec-validator",
        venv.display()
    );
    venv
}

async fn start() -> (tempfile::TempDir, TestServer, reqwest::Client) {
    let dir = tempfile::tempdir().expect("tempdir");
    let server = tokio::task::spawn_blocking({
        let data = dir.path().join("server");
        move || TestServer::start(&data, "1s", &[]).expect("server")
    })
    .await
    .expect("join");
    let ca = reqwest::Certificate::from_pem(&std::fs::read(&server.ca).expect("ca")).expect("pem");
    let http = reqwest::Client::builder().tls_certs_only([ca]).build().expect("client");
    (dir, server, http)
}

async fn served_document(server: &TestServer, http: &reqwest::Client) -> Value {
    let reply = http.get(format!("{}/api/v1/openapi.json", server.url)).send().await.expect("GET openapi.json");
    assert_eq!(reply.status().as_u16(), 200);
    reply.json().await.expect("openapi.json is JSON")
}

#[tokio::test(flavor = "multi_thread")]
async fn served_document_passes_openapi_spec_validator() {
    let validator = validator();
    let (dir, server, http) = start().await;
    let doc = served_document(&server, &http).await;
    let file = dir.path().join("openapi.json");
    std::fs::write(&file, serde_json::to_vec_pretty(&doc).expect("serialise")).expect("write");
    let out = Command::new(&validator).arg(&file).output().unwrap_or_else(|e| {
        panic!("cannot run {}: {e}; run scripts/test.sh to install openapi-spec-validator", validator.display())
    });
    assert!(
        out.status.success(),
        "openapi-spec-validator refused the document:\n{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn documented_operations_are_exactly_the_served_ones() {
    let (_dir, server, http) = start().await;
    let doc = served_document(&server, &http).await;
    let paths = doc["paths"].as_object().expect("paths");
    assert!(paths.contains_key("/api/v1/nodes"), "the document lists no paths: {doc}");
    let auth = format!("Bearer {}", server.token);
    for (template, item) in paths {
        // Any value fits a path parameter for routing; handlers then refuse it (400/404).
        let concrete: String =
            template.split('/').map(|seg| if seg.starts_with('{') { "x" } else { seg }).collect::<Vec<_>>().join("/");
        for method in METHODS {
            let documented = item.get(method.to_ascii_lowercase()).is_some();
            let reply = http
                .request(method.parse().expect("method"), format!("{}{concrete}", server.url))
                .header("authorization", &auth)
                .send()
                .await
                .expect("request");
            let status = reply.status().as_u16();
            let body = reply.text().await.unwrap_or_default();
            if documented {
                assert_ne!(status, 405, "{method} {template} is documented but not routed");
                assert!(!body.contains("no such endpoint"), "{method} {template} is documented but not routed");
                let op = &item[method.to_ascii_lowercase()];
                // Session streams (`/api/v1/sessions/...`) answer 101 Switching Protocols.
                let success =
                    op["responses"].as_object().map(|r| r.keys().any(|code| code.starts_with('2') || code == "101"));
                assert_eq!(success, Some(true), "{method} {template} documents no success response: {op}");
            } else {
                assert_eq!(status, 405, "{method} {template} is served ({status}: {body}) but not documented");
            }
        }
    }
    // Every schema a document refers to is in it (the validator checks references too, but
    // this names the culprit).
    let text = doc.to_string();
    for part in text.split("\"#/components/schemas/").skip(1) {
        let name = part.split('"').next().unwrap_or_default();
        assert!(doc["components"]["schemas"][name].is_object(), "schema {name} is referenced but not defined");
    }
    drop(server);
}
