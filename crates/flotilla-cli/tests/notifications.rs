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
        &["--webhook-ca", &ca_file.to_string_lossy()],
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
    assert!(ok(&server, &["rules", "ls"]).as_array().expect("array").is_empty());

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
