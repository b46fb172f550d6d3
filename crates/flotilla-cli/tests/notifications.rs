//! Notifications end to end, through the CLI as an operator uses them, against real webhook
//! receivers (HTTP and HTTPS servers started here) that verify every signature with the
//! subscription's secret: signed deliveries whose body is the event as `events ls -o json`
//! prints it; retries, a dead letter and a redrive; a timeout, a 301, a closed connection and an
//! untrusted certificate each dead-lettered with the reason; bad input refused; a rule whose
//! topic was deleted reporting it; no event lost across a server kill; and a burst of 10,000
//! events all delivered while a stuck receiver holds only its own slots.

// Tests drive the real binaries.
#![allow(clippy::disallowed_methods)]

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::net::SocketAddr;
use std::path::Path;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use aws_lc_rs::hmac;
use axum::body::Bytes;
use axum::http::{HeaderMap, StatusCode, Uri};
use axum::response::{IntoResponse, Response};
use flotilla_testkit::{TestServer, wait_until};
use rcgen::{BasicConstraints, CertificateParams, ExtendedKeyUsagePurpose, IsCa, Issuer, KeyPair, SanType};
use serde_json::Value;

const SECRET: &str = "a-webhook-secret-of-32-bytes-ok!";

/// How a receiver path answers.
#[derive(Debug, Clone, Copy, PartialEq)]
enum Mode {
    Ok,
    Fail,
    /// Fails this many more times, then answers 200.
    FailTimes(u32),
    Redirect,
    Hang,
}

#[derive(Debug, Clone)]
struct Hit {
    path: String,
    event_id: String,
    signature_ok: bool,
    body: Value,
}

#[derive(Default)]
struct Shared {
    modes: Mutex<HashMap<String, Mode>>,
    hits: Mutex<Vec<Hit>>,
}

/// A webhook receiver: answers each path by its mode and records every request it got, with
/// whether its `Flotilla-Signature` verified under [`SECRET`].
struct Receiver {
    addr: SocketAddr,
    shared: Arc<Shared>,
    _runtime: tokio::runtime::Runtime,
}

fn verify(headers: &HeaderMap, body: &[u8]) -> bool {
    let Some(sig) = headers.get("flotilla-signature").and_then(|v| v.to_str().ok()) else { return false };
    let mut t = None;
    let mut v1 = None;
    for part in sig.split(',') {
        match part.split_once('=') {
            Some(("t", x)) => t = Some(x.to_owned()),
            Some(("v1", x)) => v1 = Some(x.to_owned()),
            _ => {}
        }
    }
    let (Some(t), Some(v1)) = (t, v1) else { return false };
    if t.parse::<i64>().is_err() || v1.len() != 64 || v1.chars().any(|c| !matches!(c, '0'..='9' | 'a'..='f')) {
        return false;
    }
    let key = hmac::Key::new(hmac::HMAC_SHA256, SECRET.as_bytes());
    let mut message = format!("{t}.").into_bytes();
    message.extend_from_slice(body);
    let Ok(mac) = (0..32).map(|i| u8::from_str_radix(&v1[i * 2..i * 2 + 2], 16)).collect::<Result<Vec<u8>, _>>() else {
        return false;
    };
    hmac::verify(&key, &message, &mac).is_ok()
}

async fn handle(shared: Arc<Shared>, uri: Uri, headers: HeaderMap, body: Bytes) -> Response {
    let path = uri.path().to_owned();
    let hit = Hit {
        path: path.clone(),
        event_id: headers.get("flotilla-event-id").and_then(|v| v.to_str().ok()).unwrap_or("").to_owned(),
        signature_ok: verify(&headers, &body),
        body: serde_json::from_slice(&body).unwrap_or(Value::Null),
    };
    shared.hits.lock().expect("hits").push(hit);
    let mode = {
        let mut modes = shared.modes.lock().expect("modes");
        let mode = modes.get(&path).copied().unwrap_or(Mode::Ok);
        if let Mode::FailTimes(n) = mode {
            modes.insert(path.clone(), if n <= 1 { Mode::Ok } else { Mode::FailTimes(n - 1) });
            return StatusCode::INTERNAL_SERVER_ERROR.into_response();
        }
        mode
    };
    match mode {
        Mode::Ok | Mode::FailTimes(_) => StatusCode::OK.into_response(),
        Mode::Fail => StatusCode::INTERNAL_SERVER_ERROR.into_response(),
        Mode::Redirect => (StatusCode::MOVED_PERMANENTLY, [("location", "/moved-here")]).into_response(),
        Mode::Hang => {
            tokio::time::sleep(Duration::from_secs(120)).await;
            StatusCode::OK.into_response()
        }
    }
}

impl Receiver {
    /// A receiver over plain HTTP, or HTTPS with this certificate and key.
    fn start(tls: Option<(String, String)>) -> Receiver {
        let runtime = tokio::runtime::Builder::new_multi_thread().worker_threads(2).enable_all().build().expect("rt");
        let listener = runtime.block_on(tokio::net::TcpListener::bind("127.0.0.1:0")).expect("bind");
        let addr = listener.local_addr().expect("addr");
        let shared = Arc::new(Shared::default());
        let s = shared.clone();
        let app = axum::Router::new().fallback(move |uri: Uri, headers: HeaderMap, body: Bytes| {
            let s = s.clone();
            async move { handle(s, uri, headers, body).await }
        });
        let acceptor = tls.map(|(cert, key)| {
            let _ = rustls::crypto::aws_lc_rs::default_provider().install_default();
            let certs = rustls_pki_certs(&cert);
            let key = rustls::pki_types::PrivateKeyDer::try_from(
                rustls::pki_types::pem::PemObject::from_pem_slice(key.as_bytes())
                    .map(|k: rustls::pki_types::PrivatePkcs8KeyDer<'static>| k.secret_pkcs8_der().to_vec())
                    .expect("key pem"),
            )
            .expect("key");
            let config =
                rustls::ServerConfig::builder().with_no_client_auth().with_single_cert(certs, key).expect("tls");
            tokio_rustls::TlsAcceptor::from(Arc::new(config))
        });
        runtime.spawn(async move {
            loop {
                let Ok((stream, _)) = listener.accept().await else { continue };
                let app = app.clone();
                let acceptor = acceptor.clone();
                tokio::spawn(async move {
                    let service = hyper_util::service::TowerToHyperService::new(app);
                    let builder = hyper_util::server::conn::auto::Builder::new(hyper_util::rt::TokioExecutor::new());
                    match acceptor {
                        Some(a) => {
                            if let Ok(tls) = a.accept(stream).await {
                                let _ = builder.serve_connection(hyper_util::rt::TokioIo::new(tls), service).await;
                            }
                        }
                        None => {
                            let _ = builder.serve_connection(hyper_util::rt::TokioIo::new(stream), service).await;
                        }
                    }
                });
            }
        });
        Receiver { addr, shared, _runtime: runtime }
    }

    fn url(&self, scheme: &str, path: &str) -> String {
        format!("{scheme}://127.0.0.1:{}{path}", self.addr.port())
    }

    fn set(&self, path: &str, mode: Mode) {
        self.shared.modes.lock().expect("modes").insert(path.to_owned(), mode);
    }

    fn hits(&self, path: &str) -> Vec<Hit> {
        self.shared.hits.lock().expect("hits").iter().filter(|h| h.path == path).cloned().collect()
    }
}

fn rustls_pki_certs(pem: &str) -> Vec<rustls::pki_types::CertificateDer<'static>> {
    use rustls::pki_types::pem::PemObject;
    rustls::pki_types::CertificateDer::pem_slice_iter(pem.as_bytes()).collect::<Result<Vec<_>, _>>().expect("certs")
}

/// A CA and a server certificate for 127.0.0.1 signed by it: (CA PEM, cert PEM, key PEM).
fn ca_and_cert() -> (String, String, String) {
    let ca_key = KeyPair::generate().expect("ca key");
    let mut params = CertificateParams::default();
    params.is_ca = IsCa::Ca(BasicConstraints::Constrained(0));
    let ca = params.self_signed(&ca_key).expect("ca");
    let ca_pem = ca.pem();
    let issuer = Issuer::from_ca_cert_pem(&ca_pem, ca_key).expect("issuer");
    let key = KeyPair::generate().expect("key");
    let mut params = CertificateParams::new(Vec::<String>::new()).expect("params");
    params.subject_alt_names.push(SanType::IpAddress(std::net::Ipv4Addr::LOCALHOST.into()));
    params.extended_key_usages = vec![ExtendedKeyUsagePurpose::ServerAuth];
    let cert = params.signed_by(&key, &issuer).expect("cert");
    (ca_pem, cert.pem(), key.serialize_pem())
}

/// A receiver that accepts connections and closes them without answering.
fn closing_listener() -> (SocketAddr, std::thread::JoinHandle<()>) {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
    let addr = listener.local_addr().expect("addr");
    let handle = std::thread::spawn(move || {
        for stream in listener.incoming().flatten() {
            use std::io::Read;
            let mut s = stream;
            let mut buf = [0u8; 512];
            let _ = s.read(&mut buf);
            drop(s);
        }
    });
    (addr, handle)
}

fn ok(server: &TestServer, args: &[&str]) -> Value {
    let mut full: Vec<&str> = args.to_vec();
    full.extend(["-o", "json"]);
    let out = server.cli(&full).expect("cli");
    assert!(out.status.success(), "{args:?}: {}", String::from_utf8_lossy(&out.stderr));
    if out.stdout.is_empty() { Value::Null } else { serde_json::from_slice(&out.stdout).expect("json") }
}

fn fails(server: &TestServer, args: &[&str]) -> String {
    let out = server.cli(args).expect("cli");
    assert!(!out.status.success(), "{args:?} should fail");
    let err = String::from_utf8_lossy(&out.stderr).into_owned();
    assert_eq!(err.trim().lines().count(), 1, "one line: {err}");
    err
}

fn start_server(dir: &Path, extra: &[(&str, &str)]) -> TestServer {
    let mut env = vec![
        ("FLOTILLA_DELIVERY_ATTEMPTS", "3"),
        ("FLOTILLA_DELIVERY_BACKOFF", "100ms"),
        ("FLOTILLA_DELIVERY_BACKOFF_CAP", "400ms"),
    ];
    env.extend_from_slice(extra);
    TestServer::start(&dir.join("server"), "1s", &env).expect("server")
}

fn subscribe(server: &TestServer, dir: &Path, topic: &str, url: &str, extra: &[&str]) -> String {
    let secret = dir.join("hook.secret");
    std::fs::write(&secret, format!("{SECRET}\n")).expect("secret");
    let secret = secret.to_string_lossy().into_owned();
    let mut args = vec!["subscriptions", "add", topic, "--webhook", url, "--secret-file", secret.as_str()];
    args.extend_from_slice(extra);
    let sub = ok(server, &args);
    assert!(sub.get("secret").is_none(), "a given secret is never sent back: {sub}");
    sub["id"].as_str().expect("id").to_owned()
}

fn deliveries(server: &TestServer, sub: &str) -> Vec<Value> {
    ok(server, &["subscriptions", "deliveries", sub]).as_array().cloned().expect("array")
}

/// Waits until every delivery of `sub` is settled (Delivered or DeadLettered), `n` of them.
fn settled(server: &TestServer, sub: &str, n: usize) -> Vec<Value> {
    let mut last = Vec::new();
    let done = wait_until(Duration::from_secs(60), || {
        last = deliveries(server, sub);
        Ok(last.len() == n && last.iter().all(|d| d["status"] == "Delivered" || d["status"] == "DeadLettered"))
    });
    assert!(done.is_ok(), "deliveries of {sub} did not settle: {last:#?}\n{}", server.log_text());
    last
}

fn put_param(server: &TestServer, name: &str, value: &str) {
    ok(server, &["params", "put", name, value, "--overwrite"]);
}

#[test]
fn signed_webhooks_retries_dead_letters_and_redrive() {
    let dir = tempfile::tempdir().expect("tempdir");
    let server = start_server(dir.path(), &[]);
    let rx = Receiver::start(None);
    ok(&server, &["topics", "create", "params"]);
    let good = subscribe(&server, dir.path(), "params", &rx.url("http", "/good"), &[]);
    let flaky = subscribe(&server, dir.path(), "params", &rx.url("http", "/flaky"), &[]);
    let down = subscribe(&server, dir.path(), "params", &rx.url("http", "/down"), &[]);
    rx.set("/flaky", Mode::FailTimes(2));
    rx.set("/down", Mode::Fail);
    let rule = ok(
        &server,
        &[
            "rules",
            "create",
            "params-changed",
            "--pattern",
            r#"{"type": ["Parameter.Changed"]}"#,
            "--to",
            "topic:params",
        ],
    );
    assert_eq!(
        (rule["name"].as_str(), rule["target"].as_str(), rule["enabled"].as_bool()),
        (Some("params-changed"), Some("topic:params"), Some(true))
    );
    assert_eq!(rule["pattern"], serde_json::json!({"type": ["Parameter.Changed"]}));

    put_param(&server, "/app/colour", "blue");
    let good_rows = settled(&server, &good, 1);
    assert_eq!((good_rows[0]["status"].as_str(), good_rows[0]["attempts"].as_i64()), (Some("Delivered"), Some(1)));

    // The body is the event exactly as `events ls -o json` prints it, and it is signed.
    let hits = rx.hits("/good");
    assert_eq!(hits.len(), 1, "{hits:?}");
    assert!(hits[0].signature_ok, "the receiver verified the signature with the secret");
    let listed = ok(&server, &["events", "ls", "--type", "Parameter.Changed"]);
    let event = listed.as_array().and_then(|a| a.last()).cloned().expect("the event");
    assert_eq!(hits[0].body, event);
    assert_eq!(hits[0].event_id, event["id"].as_str().expect("id"));

    // 500 twice, then 200: delivered on the third attempt.
    let flaky_rows = settled(&server, &flaky, 1);
    assert_eq!((flaky_rows[0]["status"].as_str(), flaky_rows[0]["attempts"].as_i64()), (Some("Delivered"), Some(3)));
    assert!(rx.hits("/flaky").iter().all(|h| h.signature_ok && h.event_id == hits[0].event_id));

    // Always 500: dead-lettered after the configured 3 attempts, with the last error.
    let down_rows = settled(&server, &down, 1);
    assert_eq!((down_rows[0]["status"].as_str(), down_rows[0]["attempts"].as_i64()), (Some("DeadLettered"), Some(3)));
    assert!(down_rows[0]["last_error"].as_str().is_some_and(|e| e.contains("500")), "{down_rows:?}");
    assert_eq!(rx.hits("/down").len(), 3);

    // Fixed, then redriven: delivered.
    rx.set("/down", Mode::Ok);
    let redriven = ok(&server, &["subscriptions", "redrive", &down]);
    assert_eq!(redriven["redriven"], 1);
    let wait = wait_until(Duration::from_secs(30), || {
        Ok(deliveries(&server, &down).first().is_some_and(|d| d["status"] == "Delivered"))
    });
    assert!(wait.is_ok(), "{:?}", deliveries(&server, &down));
    assert!(rx.hits("/down").last().is_some_and(|h| h.signature_ok));

    // Listing shows each subscription with its counts, never a secret.
    let subs = ok(&server, &["subscriptions", "ls", "params"]);
    let subs = subs.as_array().expect("array");
    assert_eq!(subs.len(), 3);
    for s in subs {
        assert_eq!(s["kind"], "webhook");
        assert!(s.get("secret").is_none(), "{s}");
        assert_eq!(s["counts"]["Delivered"], 1, "{s}");
    }
    assert!(!server.log_text().contains(SECRET), "the secret never reaches the log");

    // A disabled rule routes nothing; enabled again, it routes what comes next.
    ok(&server, &["rules", "disable", "params-changed"]);
    put_param(&server, "/app/colour", "green");
    ok(&server, &["rules", "enable", "params-changed"]);
    put_param(&server, "/app/colour", "red");
    let rows = settled(&server, &good, 2);
    let colours: Vec<String> = rx.hits("/good").iter().map(|h| h.body["detail"]["version"].to_string()).collect();
    assert_eq!(rows.len(), 2, "{colours:?}");

    // A generated secret is shown once, in the reply to create.
    let generated = ok(&server, &["subscriptions", "add", "params", "--webhook", &rx.url("http", "/gen")]);
    assert!(generated["secret"].as_str().is_some_and(|s| s.len() >= 16), "{generated}");
    let listed = ok(&server, &["subscriptions", "ls"]);
    assert!(listed.as_array().expect("array").iter().all(|s| s.get("secret").is_none()));
    ok(&server, &["subscriptions", "rm", generated["id"].as_str().expect("id")]);
}

#[test]
fn failing_receivers_are_dead_lettered_with_the_reason() {
    let dir = tempfile::tempdir().expect("tempdir");
    let server = start_server(dir.path(), &[]);
    let rx = Receiver::start(None);
    rx.set("/slow", Mode::Hang);
    rx.set("/moved", Mode::Redirect);
    let (ca, cert, key) = ca_and_cert();
    let (other_ca, _, _) = ca_and_cert();
    let tls = Receiver::start(Some((cert, key)));
    let ca_file = dir.path().join("ca.pem");
    let other_ca_file = dir.path().join("other-ca.pem");
    std::fs::write(&ca_file, &ca).expect("ca");
    std::fs::write(&other_ca_file, &other_ca).expect("ca");
    let (closing, _closer) = closing_listener();

    ok(&server, &["topics", "create", "t"]);
    let slow = subscribe(&server, dir.path(), "t", &rx.url("http", "/slow"), &["--timeout", "1"]);
    let moved = subscribe(&server, dir.path(), "t", &rx.url("http", "/moved"), &[]);
    let closed = subscribe(&server, dir.path(), "t", &format!("http://{closing}/x"), &[]);
    let untrusted = subscribe(
        &server,
        dir.path(),
        "t",
        &tls.url("https", "/untrusted"),
        &["--webhook-ca", &other_ca_file.to_string_lossy()],
    );
    let system_roots = subscribe(&server, dir.path(), "t", &tls.url("https", "/system"), &[]);
    let trusted = subscribe(
        &server,
        dir.path(),
        "t",
        &tls.url("https", "/trusted"),
        // The name CLI.md documents (`--webhook-ca` is the same flag).
        &["--ca", &ca_file.to_string_lossy()],
    );
    ok(
        &server,
        &[
            "rules",
            "create",
            "all-params",
            "--pattern",
            r#"{"source": [{"prefix": "flotilla.param"}]}"#,
            "--to",
            "topic:t",
        ],
    );
    put_param(&server, "/x", "1");

    let reason = |sub: &str| -> String {
        let rows = settled(&server, sub, 1);
        assert_eq!(rows[0]["status"], "DeadLettered", "{sub}: {rows:?}");
        assert_eq!(rows[0]["attempts"], 3, "{sub}: {rows:?}");
        rows[0]["last_error"].as_str().unwrap_or("").to_owned()
    };
    let e = reason(&slow);
    assert!(e.contains("timed out"), "{e}");
    let e = reason(&moved);
    assert!(e.contains("301") && e.contains("redirects are not followed"), "{e}");
    assert!(rx.hits("/moved-here").is_empty(), "the redirect was not followed");
    let e = reason(&closed);
    assert!(!e.is_empty(), "{e}");
    for sub in [&untrusted, &system_roots] {
        let e = reason(sub);
        assert!(e.to_lowercase().contains("certificate"), "{e}");
    }
    assert!(
        tls.hits("/untrusted").is_empty() && tls.hits("/system").is_empty(),
        "no request over an untrusted connection"
    );
    let rows = settled(&server, &trusted, 1);
    assert_eq!(rows[0]["status"], "Delivered", "{rows:?}");
    assert!(tls.hits("/trusted").iter().all(|h| h.signature_ok));
}

#[test]
fn bad_input_is_refused_and_deleted_targets_are_reported() {
    let dir = tempfile::tempdir().expect("tempdir");
    let server = start_server(dir.path(), &[]);
    let rx = Receiver::start(None);
    ok(&server, &["topics", "create", "alerts"]);
    let err = fails(&server, &["topics", "create", "alerts"]);
    assert!(err.contains("exists"), "{err}");
    let err = fails(&server, &["topics", "create", "bad name"]);
    assert!(err.contains("not valid"), "{err}");

    // A secret under 16 bytes is refused; so are a bad URL, a CA file without certificates,
    // and a subscription to a topic that does not exist.
    let short = dir.path().join("short.secret");
    std::fs::write(&short, "0123456789abcde\n").expect("write");
    let url = rx.url("http", "/a");
    let err = fails(
        &server,
        &["subscriptions", "add", "alerts", "--webhook", &url, "--secret-file", &short.to_string_lossy()],
    );
    assert!(err.contains("15 bytes") && err.contains("at least 16"), "{err}");
    let err = fails(&server, &["subscriptions", "add", "alerts", "--webhook", "ftp://x/y"]);
    assert!(err.contains("https://"), "{err}");
    let bad_ca = dir.path().join("bad-ca.pem");
    std::fs::write(&bad_ca, "not a certificate").expect("write");
    let err = fails(
        &server,
        &["subscriptions", "add", "alerts", "--webhook", &url, "--webhook-ca", &bad_ca.to_string_lossy()],
    );
    assert!(err.contains("--ca") || err.contains("CA"), "{err}");
    let err = fails(&server, &["subscriptions", "add", "nope", "--webhook", &url]);
    assert!(err.contains("no topic `nope`"), "{err}");
    assert!(ok(&server, &["subscriptions", "ls"]).as_array().expect("array").is_empty(), "refusals stored nothing");

    // Invalid patterns: where and what.
    for (pattern, want) in [
        ("not json", "not JSON"),
        (r#"{"typ": ["Node.Online"]}"#, "`typ`"),
        (r#"{"type": ["Node.Onlin"]}"#, "at `type[0]`: unknown event type `Node.Onlin`"),
        (r#"{"detail": {"status": [{"numeric": [">", 5, "<", 1]}]}}"#, "at `detail.status[0]`: the range is empty"),
        (r#"{"detail": {"status": [{"prefx": "S"}]}}"#, "unknown matcher `prefx`"),
        (r#"{"type": "Node.Online"}"#, "at `type`"),
    ] {
        let err = fails(&server, &["rules", "create", "r", "--pattern", pattern, "--to", "topic:alerts"]);
        assert!(err.contains(want), "{pattern}: {err}");
    }
    let err =
        fails(&server, &["rules", "create", "r", "--pattern", r#"{"type": ["Node.Online"]}"#, "--to", "topic:missing"]);
    assert!(err.contains("no topic `missing`"), "{err}");
    let err = fails(&server, &["rules", "create", "r", "--pattern", r#"{"type": ["Node.Online"]}"#, "--to", "queue:x"]);
    assert!(err.contains("topic:NAME"), "{err}");
    let err = fails(
        &server,
        &["rules", "create", "r", "--pattern", r#"{"type": ["Node.Online"]}"#, "--to", "assessment:nightly"],
    );
    assert!(err.contains("no assessment template `nightly`"), "{err}");
    let names: Vec<String> = ok(&server, &["rules", "ls"])
        .as_array()
        .expect("array")
        .iter()
        .filter_map(|r| r["name"].as_str().map(str::to_owned))
        .collect();
    assert_eq!(names, ["default-assessments", "default-findings"], "refusals stored nothing (two rules are shipped)");

    // A rule whose topic is deleted reports it when it next matches; the dispatcher goes on and
    // other rules still deliver.
    ok(&server, &["topics", "create", "doomed"]);
    ok(
        &server,
        &["rules", "create", "to-doomed", "--pattern", r#"{"type": ["Parameter.Changed"]}"#, "--to", "topic:doomed"],
    );
    ok(
        &server,
        &["rules", "create", "to-alerts", "--pattern", r#"{"type": ["Parameter.Changed"]}"#, "--to", "topic:alerts"],
    );
    let sub = subscribe(&server, dir.path(), "alerts", &url, &[]);
    ok(&server, &["topics", "rm", "doomed"]);
    put_param(&server, "/y", "1");
    let wait = wait_until(Duration::from_secs(30), || {
        Ok(ok(&server, &["rules", "show", "to-doomed"])["problem"]
            .as_str()
            .is_some_and(|p| p.contains("topic `doomed` does not exist")))
    });
    assert!(wait.is_ok(), "{}", ok(&server, &["rules", "show", "to-doomed"]));
    let rows = settled(&server, &sub, 1);
    assert_eq!(rows[0]["status"], "Delivered");
    let status = ok(&server, &["server", "status"]);
    let workers = status["workers"].as_array().expect("workers");
    for name in ["notifications-router", "notifications-sender"] {
        let w = workers.iter().find(|w| w["name"] == name).expect(name);
        assert_ne!(w["state"], "backing_off", "{w}");
    }
    let err = fails(&server, &["rules", "show", "nope"]);
    assert!(err.contains("no rule `nope`"), "{err}");
    ok(&server, &["rules", "rm", "to-doomed"]);
    let err = fails(&server, &["subscriptions", "deliveries", "sub-missing"]);
    assert!(err.contains("no subscription"), "{err}");
}

#[test]
fn no_event_is_lost_across_a_server_kill() {
    let dir = tempfile::tempdir().expect("tempdir");
    let mut server =
        start_server(dir.path(), &[("FLOTILLA_DELIVERY_ATTEMPTS", "100"), ("FLOTILLA_DELIVERY_BACKOFF_CAP", "300ms")]);
    let rx = Receiver::start(None);
    rx.set("/hook", Mode::Fail);
    ok(&server, &["topics", "create", "t"]);
    let sub = subscribe(&server, dir.path(), "t", &rx.url("http", "/hook"), &[]);
    ok(&server, &["rules", "create", "p", "--pattern", r#"{"type": ["Parameter.Changed"]}"#, "--to", "topic:t"]);
    for i in 0..20 {
        put_param(&server, &format!("/before/{i}"), "v");
    }
    // Some deliveries are open when the server dies without a chance to clean up.
    let wait = wait_until(Duration::from_secs(30), || Ok(!rx.hits("/hook").is_empty()));
    assert!(wait.is_ok());
    server.kill();
    server.restart().expect("restart");
    for i in 0..20 {
        put_param(&server, &format!("/after/{i}"), "v");
    }
    rx.set("/hook", Mode::Ok);
    let expected: BTreeSet<String> = ok(&server, &["events", "ls", "--type", "Parameter.Changed"])
        .as_array()
        .expect("array")
        .iter()
        .map(|e| e["id"].as_str().expect("id").to_owned())
        .collect();
    assert_eq!(expected.len(), 40);
    let delivered = || -> BTreeSet<String> {
        // The receiver de-duplicates by Flotilla-Event-Id: a delivery may come twice.
        rx.hits("/hook").into_iter().filter(|h| h.signature_ok).map(|h| h.event_id).collect()
    };
    let wait = wait_until(Duration::from_secs(90), || Ok(delivered() == expected));
    assert!(wait.is_ok(), "missing: {:?}", expected.difference(&delivered()).collect::<Vec<_>>());
    let rows = settled(&server, &sub, 40);
    assert!(rows.iter().all(|d| d["status"] == "Delivered"), "{rows:?}");
}

#[test]
fn a_burst_of_10000_events_is_delivered_and_a_stuck_receiver_delays_no_one() {
    let rt = tokio::runtime::Builder::new_current_thread().enable_all().build().expect("rt");
    let db = rt.block_on(flotilla_testkit::postgres::TempDatabase::for_test());
    let dir = tempfile::tempdir().expect("tempdir");
    let data = dir.path().to_path_buf();
    let server = start_server(
        &data,
        &[
            ("FLOTILLA_DATABASE_URL", db.url()),
            ("FLOTILLA_DELIVERY_ATTEMPTS", "2"),
            ("FLOTILLA_DELIVERY_BACKOFF_CAP", "200ms"),
        ],
    );
    let rx = Receiver::start(None);
    rx.set("/stuck", Mode::Hang);
    ok(&server, &["topics", "create", "burst"]);
    let fast = subscribe(&server, &data, "burst", &rx.url("http", "/fast"), &[]);
    let stuck = subscribe(&server, &data, "burst", &rx.url("http", "/stuck"), &["--timeout", "300"]);
    ok(
        &server,
        &[
            "rules",
            "create",
            "burst",
            "--pattern",
            r#"{"type": ["Inventory.Changed"], "detail": {"burst": [true]}}"#,
            "--to",
            "topic:burst",
        ],
    );

    // Another replica on the same database publishes 10,000 events at once.
    rt.block_on(async {
        use flotilla_store::EventStore;
        let store = flotilla_store::SqlStore::open_postgres(db.url()).await.expect("open");
        let events: Vec<flotilla_store::NewEvent> = (0..10_000)
            .map(|i| {
                flotilla_store::NewEvent::new(
                    flotilla_core::EventType::InventoryChanged,
                    1,
                    vec![format!("n-{i}")],
                    serde_json::json!({"burst": true, "i": i}),
                )
            })
            .collect();
        for chunk in events.chunks(1000) {
            store.publish(chunk).await.expect("publish");
        }
        store.close().await;
    });

    let pid = server.pid().expect("pid");
    let rss_kib = || -> u64 {
        std::fs::read_to_string(format!("/proc/{pid}/status"))
            .ok()
            .and_then(|s| {
                s.lines().find(|l| l.starts_with("VmRSS:")).and_then(|l| l.split_whitespace().nth(1)?.parse().ok())
            })
            .unwrap_or(0)
    };
    let mut peak = 0;
    let distinct = |rx: &Receiver| rx.hits("/fast").into_iter().map(|h| h.event_id).collect::<BTreeSet<_>>().len();
    let wait = wait_until(Duration::from_secs(600), || {
        peak = peak.max(rss_kib());
        Ok(distinct(&rx) == 10_000)
    });
    assert!(wait.is_ok(), "fast receiver got {} of 10000\n{}", distinct(&rx), server.log_text());
    // Memory stays bounded: no page of events or deliveries is held beyond its slots.
    assert!(peak < 512 * 1024, "server RSS peaked at {peak} KiB");
    let wait = wait_until(Duration::from_secs(60), || {
        let subs = ok(&server, &["subscriptions", "ls", "burst"]);
        Ok(subs
            .as_array()
            .is_some_and(|a| a.iter().any(|s| s["id"] == fast.as_str() && s["counts"]["Delivered"] == 10_000)))
    });
    assert!(wait.is_ok(), "{}", ok(&server, &["subscriptions", "ls", "burst"]));
    let subs = ok(&server, &["subscriptions", "ls", "burst"]);
    let counts: BTreeMap<String, Value> = subs
        .as_array()
        .expect("array")
        .iter()
        .map(|s| (s["id"].as_str().unwrap_or("").to_owned(), s["counts"].clone()))
        .collect();
    // The stuck receiver holds its own 4 slots and nothing else: the rest of its deliveries wait.
    let stuck_hits = rx.hits("/stuck").len();
    assert!(stuck_hits <= 4, "{stuck_hits}");
    let stuck_open = counts[&stuck]["Pending"].as_u64().unwrap_or(0);
    assert!(stuck_open >= 10_000 - 4, "{counts:?}");
    drop(server);
    drop(rx);
    rt.block_on(db.drop_database()).expect("drop");
}

#[test]
fn rules_and_subscriptions_run_documents_on_nodes() {
    let dir = tempfile::tempdir().expect("tempdir");
    let server = start_server(dir.path(), &[]);
    let debian = "NAME=\"Debian GNU/Linux\"\nVERSION_ID=\"12\"\nID=debian\n";
    let (_agents, ids) = flotilla_testkit::start_fleet(&server, dir.path(), 1, debian).expect("fleet online");
    // A rule that runs a document on given targets, and a topic whose subscription runs one.
    ok(
        &server,
        &[
            "rules",
            "create",
            "echo-on-change",
            "--pattern",
            r#"{"type": ["Parameter.Changed"], "detail": {"name": [{"prefix": "/run/"}]}}"#,
            "--to",
            "run:Flotilla-RunShellScript",
            "--param",
            "commands=echo from-rule",
            "--target",
            "all",
        ],
    );
    ok(&server, &["topics", "create", "ops"]);
    let sub = ok(
        &server,
        &[
            "subscriptions",
            "add",
            "ops",
            "--run-document",
            "Flotilla-RunShellScript",
            "--param",
            "commands=echo from-subscription",
            "--target",
            &ids[0],
        ],
    );
    assert_eq!(sub["kind"], "run-document");
    let sub = sub["id"].as_str().expect("id").to_owned();
    ok(
        &server,
        &[
            "rules",
            "create",
            "to-ops",
            "--pattern",
            r#"{"type": ["Parameter.Changed"], "detail": {"name": ["/run/x"]}}"#,
            "--to",
            "topic:ops",
        ],
    );
    let err = fails(&server, &["subscriptions", "add", "ops", "--run-document", "No-Such-Document", "--target", "all"]);
    assert!(err.contains("No-Such-Document"), "{err}");

    put_param(&server, "/run/x", "1");
    put_param(&server, "/other", "1");
    let mut commands = Vec::new();
    let wait = wait_until(Duration::from_secs(60), || {
        commands = ok(&server, &["commands", "ls"]).as_array().cloned().unwrap_or_default();
        Ok(commands.len() == 2 && commands.iter().all(|c| c["status"] == "Success"))
    });
    assert!(wait.is_ok(), "{commands:#?}\n{}", server.log_text());
    let mut outputs = BTreeSet::new();
    for c in &commands {
        let out =
            server.cli(&["commands", "output", c["id"].as_str().expect("id"), "--node", &ids[0]]).expect("output");
        outputs.insert(String::from_utf8_lossy(&out.stdout).trim().to_owned());
    }
    assert_eq!(
        outputs,
        BTreeSet::from(["from-rule".to_owned(), "from-subscription".to_owned()]),
        "only /run/ changes matched"
    );
    let rows = settled(&server, &sub, 1);
    assert_eq!(rows[0]["status"], "Delivered");
}

// ---- email, Run Command notifications, the shipped pipeline ----

/// The Python that has `aiosmtpd` (Debian's `python3-aiosmtpd` lives under /usr/bin).
fn smtp_python() -> String {
    for python in ["python3", "/usr/bin/python3"] {
        let found =
            std::process::Command::new(python).args(["-c", "import aiosmtpd"]).status().is_ok_and(|s| s.success());
        if found {
            return python.to_owned();
        }
    }
    panic!("no python3 with aiosmtpd: install python3-aiosmtpd (scripts/test.sh does)");
}

/// A handler for `python3 -m aiosmtpd`: refuses the recipients listed in its second argument
/// with 550, writes every message it accepts to its first argument's directory.
const SMTP_HANDLER: &str = r#"
import os

class Sink:
    def __init__(self, outdir, refuse=""):
        self.outdir = outdir
        self.refuse = [a for a in refuse.split(",") if a]
        self.count = 0

    @classmethod
    def from_cli(cls, parser, *args):
        return cls(*args)

    async def handle_RCPT(self, server, session, envelope, address, rcpt_options):
        if address in self.refuse:
            return "550 5.1.1 <%s>: mailbox unavailable" % address
        envelope.rcpt_tos.append(address)
        return "250 OK"

    async def handle_DATA(self, server, session, envelope):
        self.count += 1
        path = os.path.join(self.outdir, "%06d.eml" % self.count)
        with open(path + ".tmp", "wb") as f:
            f.write(("X-Envelope-To: %s\r\n" % ",".join(envelope.rcpt_tos)).encode())
            f.write(envelope.original_content)
        os.rename(path + ".tmp", path)
        return "250 Message accepted"
"#;

/// A real SMTP server (aiosmtpd) on a fixed port, killed on drop.
struct SmtpSink {
    port: u16,
    dir: std::path::PathBuf,
    refuse: String,
    child: Option<std::process::Child>,
}

impl SmtpSink {
    fn start(dir: &Path, refuse: &str) -> SmtpSink {
        let port = std::net::TcpListener::bind("127.0.0.1:0").and_then(|l| l.local_addr()).expect("free port").port();
        let mut sink = SmtpSink { port, dir: dir.to_owned(), refuse: refuse.to_owned(), child: None };
        std::fs::create_dir_all(sink.dir.join("mail")).expect("mail dir");
        std::fs::write(sink.dir.join("smtp_sink.py"), SMTP_HANDLER).expect("handler");
        sink.run();
        sink
    }

    fn run(&mut self) {
        let child = std::process::Command::new(smtp_python())
            .args(["-m", "aiosmtpd", "-n", "-l", &format!("127.0.0.1:{}", self.port), "-c", "smtp_sink.Sink"])
            .arg(self.dir.join("mail"))
            .arg(&self.refuse)
            .env("PYTHONPATH", &self.dir)
            .stdout(std::process::Stdio::null())
            .stderr(std::fs::File::create(self.dir.join("smtp.log")).expect("log"))
            .spawn()
            .expect("aiosmtpd");
        self.child = Some(child);
        let port = self.port;
        wait_until(Duration::from_secs(20), || Ok(std::net::TcpStream::connect(("127.0.0.1", port)).is_ok()))
            .expect("aiosmtpd listening");
    }

    fn stop(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }

    /// The messages received so far, oldest first.
    fn messages(&self) -> Vec<String> {
        let mut names: Vec<_> = std::fs::read_dir(self.dir.join("mail"))
            .expect("mail dir")
            .flatten()
            .map(|e| e.path())
            .filter(|p| p.extension().is_some_and(|x| x == "eml"))
            .collect();
        names.sort();
        names.iter().map(|p| std::fs::read_to_string(p).expect("message")).collect()
    }
}

impl Drop for SmtpSink {
    fn drop(&mut self) {
        self.stop();
    }
}

/// A header's value, unfolded (a long Subject is folded over lines).
fn header(message: &str, name: &str) -> Option<String> {
    let head = message.split("\r\n\r\n").next().unwrap_or("");
    let unfolded = head.replace("\r\n ", " ").replace("\r\n\t", " ");
    let prefix = format!("{name}: ");
    unfolded.split("\r\n").find_map(|l| l.strip_prefix(prefix.as_str()).map(str::to_owned))
}

/// A message's body, quoted-printable decoded when it is so encoded, with LF line ends.
fn body(message: &str) -> String {
    let raw = message.split_once("\r\n\r\n").map(|(_, b)| b).unwrap_or("");
    let raw = raw.replace("\r\n", "\n");
    if header(message, "Content-Transfer-Encoding").as_deref() != Some("quoted-printable") {
        return raw;
    }
    let joined = raw.replace("=\n", "");
    let bytes = joined.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        if bytes[i] == b'='
            && i + 2 < bytes.len()
            && let Ok(b) = u8::from_str_radix(&joined[i + 1..i + 3], 16)
        {
            out.push(b);
            i += 3;
            continue;
        }
        out.push(bytes[i]);
        i += 1;
    }
    String::from_utf8(out).expect("utf-8 body")
}

/// A fleet of `agents` simulated nodes (the load generator's) runs one assessment against the
/// server's imported OSV sample; returns the scenario's report.
fn assess_simulated(server: &TestServer, agents: usize) -> Value {
    let _ = rustls::crypto::aws_lc_rs::default_provider().install_default();
    flotilla_loadgen::raise_nofile_limit();
    let runtime = tokio::runtime::Builder::new_multi_thread().worker_threads(2).enable_all().build().expect("rt");
    let mut target = flotilla_loadgen::scenario::Target {
        url: server.url.clone(),
        token: server.token.clone(),
        ca_pem: std::fs::read(&server.ca).expect("ca"),
        pid: server.pid(),
        process: None,
        db: "sqlite".into(),
    };
    let settings = flotilla_loadgen::scenario::Settings {
        agents,
        // Every node different, against the real OSV sample: each has findings to report.
        fleet: flotilla_loadgen::packages::FleetShape {
            images: 0,
            ..flotilla_loadgen::packages::FleetShape::realistic(50)
        },
        advisories: 0,
        delay: Duration::ZERO,
        fail_rate: 0.0,
        output_bytes: vec![16],
        source_addresses: 4,
        cache_dir: None,
        idle: Duration::from_secs(1),
        concurrency: vec!["100%".into()],
        timeout: Duration::from_secs(600),
    };
    let report = runtime.block_on(flotilla_loadgen::scenario::assess(&mut target, &settings)).expect("assessment");
    assert_eq!(report["assessment_status"], "Completed", "{report}");
    assert_eq!(report["assessed_nodes"], agents, "{report}");
    report
}

const SEVERITIES: [&str; 4] = ["High", "Medium", "Low", "Informational"];

fn severity_rank(s: &str) -> usize {
    SEVERITIES.iter().position(|x| *x == s).unwrap_or_else(|| panic!("unknown severity {s}"))
}

#[test]
fn email_lists_the_worst_findings_first_and_smtp_refusals_are_dead_lettered() {
    let dir = tempfile::tempdir().expect("tempdir");
    let mut smtp = SmtpSink::start(&dir.path().join("smtp"), "refused@example.com");
    let port = smtp.port.to_string();
    let server = start_server(
        dir.path(),
        &[
            ("FLOTILLA_SMTP_HOST", "127.0.0.1"),
            ("FLOTILLA_SMTP_PORT", &port),
            ("FLOTILLA_SMTP_TLS", "none"),
            ("FLOTILLA_SMTP_FROM", "Flotilla <flotilla@example.com>"),
        ],
    );
    // Bad addresses are refused and store nothing.
    for bad in ["ops", "ops@", "two words@example.com"] {
        let err = fails(&server, &["subscriptions", "add", "assessments", "--email", bad]);
        assert!(err.contains("is not valid") && err.contains("USER@DOMAIN"), "{bad}: {err}");
    }
    // The shipped rule routes Assessment.Completed to the shipped topic `assessments`.
    let ops = ok(&server, &["subscriptions", "add", "assessments", "--email", "ops@example.com"]);
    assert_eq!((ops["kind"].as_str(), ops["endpoint"].as_str()), (Some("email"), Some("ops@example.com")));
    let ops = ops["id"].as_str().expect("id").to_owned();
    let refused = ok(&server, &["subscriptions", "add", "assessments", "--email", "refused@example.com"]);
    let refused = refused["id"].as_str().expect("id").to_owned();

    let report = assess_simulated(&server, 3);
    let run = report["assessment_id"].as_str().expect("run id").to_owned();
    let rows = settled(&server, &ops, 1);
    assert_eq!(rows[0]["status"], "Delivered", "{rows:?}");
    let mails = smtp.messages();
    assert_eq!(mails.len(), 1, "only the accepted recipient got it: {mails:?}");
    assert_eq!(header(&mails[0], "X-Envelope-To").as_deref(), Some("ops@example.com"));
    assert_eq!(header(&mails[0], "From").as_deref(), Some("Flotilla <flotilla@example.com>"), "{}", mails[0]);
    let subject = header(&mails[0], "Subject").expect("subject");
    let mail = &body(&mails[0]);
    assert!(subject.starts_with(&format!("[Flotilla] Assessment {run} Completed: ")), "{subject}");
    assert!(subject.ends_with(" on 3 nodes"), "{subject}");
    // The counts by severity match the run, then the findings, worst first.
    let counts = &report["finding_counts"];
    for s in SEVERITIES {
        let n = counts[s].as_u64().unwrap_or(0);
        assert!(mail.contains(&format!("\n  {s:<14}{n}\n")), "{s} {n}: {mail}");
    }
    let listed: Vec<&str> = mail
        .lines()
        .skip_while(|l| !l.starts_with("Worst first"))
        .skip(1)
        .take_while(|l| l.starts_with("  "))
        .filter_map(|l| l.split_whitespace().next())
        .filter(|w| SEVERITIES.contains(w))
        .collect();
    let total: u64 = SEVERITIES.iter().map(|s| counts[*s].as_u64().unwrap_or(0)).sum();
    assert_eq!(listed.len() as u64, total.min(50), "{mail}");
    assert!(listed.windows(2).all(|w| severity_rank(w[0]) <= severity_rank(w[1])), "worst first: {listed:?}");
    assert!(mail.contains(&format!("flotilla findings ls --run {run}")), "{mail}");
    assert!(mail.contains("\"type\": \"Assessment.Completed\""), "the event JSON ends the body: {mail}");

    // The 550 is retried, then dead-lettered with the server's words.
    let rows = settled(&server, &refused, 1);
    assert_eq!((rows[0]["status"].as_str(), rows[0]["attempts"].as_i64()), (Some("DeadLettered"), Some(3)), "{rows:?}");
    let e = rows[0]["last_error"].as_str().unwrap_or("");
    assert!(e.contains("550") && e.contains("mailbox unavailable"), "{e}");

    // The SMTP server down: retried, dead-lettered with the connection error; back up, redriven.
    smtp.stop();
    ok(&server, &["topics", "create", "params"]);
    ok(&server, &["rules", "create", "p", "--pattern", r#"{"type": ["Parameter.Changed"]}"#, "--to", "topic:params"]);
    let params = ok(&server, &["subscriptions", "add", "params", "--email", "ops@example.com"]);
    let params = params["id"].as_str().expect("id").to_owned();
    put_param(&server, "/app/mail", "x");
    let rows = settled(&server, &params, 1);
    assert_eq!((rows[0]["status"].as_str(), rows[0]["attempts"].as_i64()), (Some("DeadLettered"), Some(3)), "{rows:?}");
    let e = rows[0]["last_error"].as_str().unwrap_or("").to_lowercase();
    assert!(e.contains("connection refused") || e.contains("connect"), "{e}");
    smtp.run();
    ok(&server, &["subscriptions", "redrive", &params]);
    let wait = wait_until(Duration::from_secs(30), || {
        Ok(deliveries(&server, &params).first().is_some_and(|d| d["status"] == "Delivered"))
    });
    assert!(wait.is_ok(), "{:?}", deliveries(&server, &params));
    let mails = smtp.messages();
    let last = mails.last().expect("a second message");
    assert!(
        header(last, "Subject").is_some_and(|s| s.starts_with("[Flotilla] Parameter.Changed: /app/mail")),
        "{last}"
    );
    assert!(body(last).contains("  name: /app/mail\n"), "{last}");
}

#[test]
fn email_needs_an_smtp_server_configured() {
    let dir = tempfile::tempdir().expect("tempdir");
    let server = start_server(dir.path(), &[]);
    let err = fails(&server, &["subscriptions", "add", "assessments", "--email", "ops@example.com"]);
    assert!(err.contains("smtp_host") && err.contains("FLOTILLA_SMTP_HOST"), "{err}");
    let out = std::process::Command::new(flotilla_testkit::bin_path("flotilla"))
        .args(["server", "--data-dir"])
        .arg(dir.path().join("other"))
        .env("FLOTILLA_SMTP_HOST", "127.0.0.1")
        .env("FLOTILLA_SMTP_TLS", "sometimes")
        .output()
        .expect("server");
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("FLOTILLA_SMTP_TLS") && err.contains("none, starttls, tls"), "{err}");
    assert!(err.contains("smtp_from"), "{err}");
}

#[test]
fn run_notify_sends_only_the_status_changes_asked_for() {
    let dir = tempfile::tempdir().expect("tempdir");
    let server = start_server(dir.path(), &[]);
    let debian = "NAME=\"Debian GNU/Linux\"\nVERSION_ID=\"12\"\nID=debian\n";
    let (_agents, ids) = flotilla_testkit::start_fleet(&server, dir.path(), 1, debian).expect("fleet online");
    let rx = Receiver::start(None);
    ok(&server, &["topics", "create", "runs"]);
    let sub = subscribe(&server, dir.path(), "runs", &rx.url("http", "/runs"), &[]);

    let run = |script: &str, extra: &[&str]| -> Result<Value, String> {
        let mut args = vec!["run", "Flotilla-RunShellScript", "--param", script, "--target", "all", "--wait"];
        args.extend_from_slice(extra);
        args.extend(["-o", "json"]);
        let out = server.cli(&args).expect("cli");
        let text = String::from_utf8_lossy(&out.stdout).into_owned();
        if out.stdout.is_empty() {
            Err(String::from_utf8_lossy(&out.stderr).into_owned())
        } else {
            Ok(serde_json::from_str(&text).expect("json"))
        }
    };
    // Refused before anything runs: an unknown topic, an unknown --notify-on value.
    let err = run("commands=true", &["--notify", "nope"]).expect_err("unknown topic");
    assert!(err.contains("no topic `nope`") && err.contains("no command was created"), "{err}");
    let err = run("commands=true", &["--notify", "runs", "--notify-on", "Success,Done"]).expect_err("bad value");
    assert!(err.contains("`Done`") && err.contains("All, InProgress, Success, TimedOut, Cancelled or Failed"), "{err}");
    assert!(ok(&server, &["commands", "ls"]).as_array().expect("array").is_empty(), "no command was created");

    let good = run("commands=true", &["--notify", "runs", "--notify-on", "Success,Failed"]).expect("runs");
    assert_eq!(good["status"], "Success");
    assert_eq!(good["notification"], serde_json::json!({"topic": "runs", "events": ["Success", "Failed"]}));
    let bad = run("commands=exit 3", &["--notify", "runs", "--notify-on", "Failed"]).expect("runs");
    assert_eq!(bad["status"], "Failed");
    let quiet = run("commands=true", &[]).expect("runs");
    let everything = run("commands=true", &["--notify", "runs"]).expect("runs");
    assert_eq!(everything["notification"]["events"], serde_json::json!(["All"]));

    // A last event routed to the same topic: once its delivery exists, everything before it
    // was routed (the router keeps the log's order).
    ok(&server, &["rules", "create", "fence", "--pattern", r#"{"type": ["Parameter.Changed"]}"#, "--to", "topic:runs"]);
    put_param(&server, "/fence", "1");
    let wait = wait_until(Duration::from_secs(60), || {
        Ok(rx.hits("/runs").iter().any(|h| h.body["type"] == "Parameter.Changed"))
    });
    assert!(wait.is_ok(), "{}", server.log_text());
    let rows = deliveries(&server, &sub);
    let mut got: BTreeMap<String, Vec<(String, String)>> = BTreeMap::new();
    let wait = wait_until(Duration::from_secs(60), || {
        Ok(deliveries(&server, &sub).iter().all(|d| d["status"] == "Delivered"))
    });
    assert!(wait.is_ok(), "{rows:?}");
    for h in rx.hits("/runs") {
        assert!(h.signature_ok);
        if let Some(c) = h.body["detail"]["command_id"].as_str() {
            got.entry(c.to_owned()).or_default().push((
                h.body["type"].as_str().unwrap_or("").to_owned(),
                h.body["detail"]["status"].as_str().unwrap_or("").to_owned(),
            ));
        }
    }
    let sorted = |id: &Value| -> Vec<(String, String)> {
        let mut v = got.get(id.as_str().expect("id")).cloned().unwrap_or_default();
        v.sort();
        v
    };
    let pair = |t: &str, s: &str| (t.to_owned(), s.to_owned());
    assert_eq!(
        sorted(&good["id"]),
        vec![pair("Command.StatusChanged", "Success"), pair("Invocation.StatusChanged", "Success")],
        "{got:?}"
    );
    assert_eq!(
        sorted(&bad["id"]),
        vec![pair("Command.StatusChanged", "Failed"), pair("Invocation.StatusChanged", "Failed")],
        "{got:?}"
    );
    assert!(sorted(&quiet["id"]).is_empty(), "no --notify, nothing sent: {got:?}");
    // All: exactly the command's status changes in the event log, each once.
    let logged =
        ok(&server, &["events", "ls", "--type", "Command.StatusChanged", "--type", "Invocation.StatusChanged"]);
    let mut want: Vec<(String, String)> = logged
        .as_array()
        .expect("array")
        .iter()
        .filter(|e| e["detail"]["command_id"] == everything["id"])
        .map(|e| (e["type"].as_str().unwrap_or("").to_owned(), e["detail"]["status"].as_str().unwrap_or("").to_owned()))
        .collect();
    want.sort();
    assert!(want.contains(&pair("Command.StatusChanged", "Pending")), "{want:?}");
    assert_eq!(sorted(&everything["id"]), want);
    assert_eq!(ids.len(), 1);
}

#[test]
fn the_shipped_pipeline_reports_each_of_1000_nodes_once() {
    let dir = tempfile::tempdir().expect("tempdir");
    let server = start_server(dir.path(), &[("FLOTILLA_DELIVERY_CONCURRENCY", "16")]);
    // Shipped as data: two topics, two rules, and the `daily` template without a schedule.
    let topics: Vec<String> = ok(&server, &["topics", "ls"])
        .as_array()
        .expect("array")
        .iter()
        .filter_map(|t| t["name"].as_str().map(str::to_owned))
        .collect();
    assert_eq!(topics, ["assessments", "findings"]);
    let rules = ok(&server, &["rules", "ls"]);
    let rule = |name: &str| rules.as_array().and_then(|a| a.iter().find(|r| r["name"] == name)).cloned().expect(name);
    assert_eq!(rule("default-assessments")["pattern"], serde_json::json!({"type": ["Assessment.Completed"]}));
    assert_eq!(rule("default-assessments")["target"], "topic:assessments");
    assert_eq!(rule("default-findings")["pattern"], serde_json::json!({"type": ["Finding.Reported"]}));
    assert_eq!(rule("default-findings")["target"], "topic:findings");
    let daily = |server: &TestServer| -> Value {
        let list = ok(server, &["assess", "templates", "ls"]);
        list.as_array().and_then(|a| a.iter().find(|t| t["name"] == "daily")).cloned().unwrap_or(Value::Null)
    };
    assert!(daily(&server)["schedule"].is_null(), "disabled until advisories are imported: {}", daily(&server));

    let rx = Receiver::start(None);
    let sub = subscribe(&server, dir.path(), "findings", &rx.url("http", "/findings"), &[]);
    const NODES: usize = 1000;
    let report = assess_simulated(&server, NODES);
    let run = report["assessment_id"].as_str().expect("run").to_owned();
    // Importing advisories gave `daily` its schedule.
    assert_eq!(daily(&server)["schedule"], "cron(0 3 * * *)", "{}", daily(&server));

    let mut rows = Vec::new();
    let wait = wait_until(Duration::from_secs(600), || {
        rows = ok(&server, &["subscriptions", "ls", "findings"]).as_array().cloned().unwrap_or_default();
        Ok(rows.first().is_some_and(|s| s["counts"]["Delivered"] == NODES))
    });
    assert!(wait.is_ok(), "{rows:?}");
    let hits = rx.hits("/findings");
    let mut nodes = BTreeSet::new();
    let mut ids = BTreeSet::new();
    for h in &hits {
        assert!(h.signature_ok);
        assert_eq!(h.body["type"], "Finding.Reported");
        assert_eq!(h.body["detail"]["run_id"], run.as_str());
        ids.insert(h.event_id.clone());
        nodes.insert(h.body["detail"]["node_id"].as_str().expect("node").to_owned());
        let listed: Vec<&str> = h.body["detail"]["findings"]
            .as_array()
            .expect("findings")
            .iter()
            .filter_map(|f| f["severity"].as_str())
            .collect();
        assert!(listed.windows(2).all(|w| severity_rank(w[0]) <= severity_rank(w[1])), "most severe first: {listed:?}");
        let counted: u64 = h.body["detail"]["finding_counts"]
            .as_object()
            .map(|m| m.values().filter_map(Value::as_u64).sum())
            .unwrap_or(0);
        assert_eq!(listed.len() as u64, counted);
    }
    assert_eq!(ids.len(), NODES, "one event per node");
    assert_eq!(nodes.len(), NODES, "every node reported");
    // At least once: a repeat would carry an event id already seen.
    assert!(hits.len() >= NODES);
    let deliveries = ok(&server, &["subscriptions", "deliveries", &sub]);
    assert_eq!(deliveries.as_array().map(Vec::len), Some(NODES));
}

#[test]
fn shipped_objects_keep_operator_edits_and_rules_start_assessments() {
    let dir = tempfile::tempdir().expect("tempdir");
    let mut server = start_server(dir.path(), &[]);
    let debian = "NAME=\"Debian GNU/Linux\"\nVERSION_ID=\"12\"\nID=debian\n";
    let (_agents, _ids) = flotilla_testkit::start_fleet(&server, dir.path(), 1, debian).expect("fleet online");
    // The operator deletes a shipped rule and topic and edits `daily`; a restart keeps that.
    ok(&server, &["rules", "rm", "default-findings"]);
    ok(&server, &["topics", "rm", "findings"]);
    ok(&server, &["assess", "templates", "put", "daily", "--target", "tag:env=prod", "--rules", "cve"]);
    server.restart().expect("restart");
    let names = |args: &[&str]| -> Vec<String> {
        ok(&server, args)
            .as_array()
            .expect("array")
            .iter()
            .filter_map(|t| t["name"].as_str().map(str::to_owned))
            .collect()
    };
    assert_eq!(names(&["topics", "ls"]), ["assessments"]);
    assert_eq!(names(&["rules", "ls"]), ["default-assessments"]);
    let templates = ok(&server, &["assess", "templates", "ls"]);
    let daily = templates.as_array().and_then(|a| a.iter().find(|t| t["name"] == "daily")).cloned().expect("daily");
    assert_eq!(daily["targets"], serde_json::json!(["tag:env=prod"]), "{daily}");

    // A rule whose target is an assessment template starts a run of it on a match.
    ok(&server, &["assess", "templates", "put", "on-change", "--target", "all", "--rules", "security-best-practices"]);
    ok(
        &server,
        &[
            "rules",
            "create",
            "assess-on-change",
            "--pattern",
            r#"{"type": ["Parameter.Changed"]}"#,
            "--to",
            "assessment:on-change",
        ],
    );
    put_param(&server, "/assess/now", "1");
    let mut runs = Value::Null;
    let wait = wait_until(Duration::from_secs(60), || {
        runs = ok(&server, &["assess", "ls"]);
        Ok(runs.as_array().is_some_and(|r| r.len() == 1 && r[0]["status"] == "Completed"))
    });
    assert!(wait.is_ok(), "{runs}\n{}", server.log_text());
    assert_eq!(runs[0]["rules"], serde_json::json!(["security-best-practices"]), "{runs}");
    // Its template deleted, the rule says so on its next match and starts nothing.
    ok(&server, &["assess", "templates", "rm", "on-change"]);
    put_param(&server, "/assess/now", "2");
    let wait = wait_until(Duration::from_secs(30), || {
        Ok(ok(&server, &["rules", "show", "assess-on-change"])["problem"]
            .as_str()
            .is_some_and(|p| p.contains("on-change") && p.contains("not started")))
    });
    assert!(wait.is_ok(), "{}", ok(&server, &["rules", "show", "assess-on-change"]));
    assert_eq!(ok(&server, &["assess", "ls"]).as_array().map(Vec::len), Some(1));
}
