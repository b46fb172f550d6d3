//! The TLS port under idle and slow clients: 2,000 idle TLS connections and a slowloris client
//! against a real server while real agents keep working, a new agent still enrolls and
//! connects, and the timeouts close the idle ones.

// Tests drive the real binaries.
#![allow(clippy::disallowed_methods)]

use std::net::{Ipv4Addr, SocketAddr};
use std::sync::Arc;
use std::time::{Duration, Instant};

use flotilla_testkit::{Agent, TestServer, wait_until, write_root};
use serde_json::Value;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpSocket;
use tokio_rustls::TlsConnector;

const DEBIAN: &str = "NAME=\"Debian GNU/Linux\"\nVERSION_ID=\"12\"\nID=debian\n";
const IDLE: usize = 2_000;
/// Idle clients come from 127.0.0.2 .. 127.0.0.21, this many from each (= the per-address cap).
const PER_ADDRESS: usize = 100;
const HEADER_READ_TIMEOUT: &str = "30s";

fn raise_open_file_limit() {
    use nix::sys::resource::{Resource, getrlimit, setrlimit};
    let (_, hard) = getrlimit(Resource::RLIMIT_NOFILE).expect("getrlimit");
    setrlimit(Resource::RLIMIT_NOFILE, hard, hard).expect("setrlimit");
    assert!(hard >= 5_000, "the open-file hard limit {hard} is too low for this test");
}

fn connector(server: &TestServer) -> TlsConnector {
    use rustls::pki_types::CertificateDer;
    use rustls::pki_types::pem::PemObject;
    let mut roots = rustls::RootCertStore::empty();
    for cert in CertificateDer::pem_file_iter(&server.ca).expect("ca.pem") {
        roots.add(cert.expect("ca cert")).expect("trust ca");
    }
    let provider = Arc::new(rustls::crypto::aws_lc_rs::default_provider());
    let config = rustls::ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .expect("versions")
        .with_root_certificates(roots)
        .with_no_client_auth();
    TlsConnector::from(Arc::new(config))
}

type Tls = tokio_rustls::client::TlsStream<tokio::net::TcpStream>;

async fn open(connector: &TlsConnector, from: Ipv4Addr, port: u16) -> std::io::Result<Tls> {
    let socket = TcpSocket::new_v4()?;
    socket.bind(SocketAddr::from((from, 0)))?;
    let tcp = socket.connect(SocketAddr::from(([127, 0, 0, 1], port))).await?;
    let name = rustls::pki_types::ServerName::try_from("localhost").expect("name");
    connector.connect(name, tcp).await
}

/// Waits until the server closes `tls` (EOF or error); at most `bound`.
async fn closed_by_server(mut tls: Tls, bound: Duration) -> Option<Instant> {
    let mut buf = [0u8; 256];
    let deadline = tokio::time::sleep(bound);
    tokio::pin!(deadline);
    loop {
        tokio::select! {
            _ = &mut deadline => return None,
            read = tls.read(&mut buf) => match read {
                Ok(0) | Err(_) => return Some(Instant::now()),
                Ok(_) => {}
            },
        }
    }
}

fn metric(text: &str, name: &str) -> f64 {
    text.lines().filter(|l| l.starts_with(name)).filter_map(|l| l.rsplit(' ').next()?.parse::<f64>().ok()).sum()
}

async fn blocking<T: Send + 'static>(f: impl FnOnce() -> T + Send + 'static) -> T {
    tokio::task::spawn_blocking(f).await.expect("join")
}

fn enroll(server: &TestServer, dir: &std::path::Path, name: &str) -> (Agent, String) {
    let act = server.cli_json(&["activations", "create"]).expect("activation");
    let agent_dir = dir.join(name);
    write_root(&agent_dir.join("root"), DEBIAN, name).expect("root");
    let (mut agent, out) =
        Agent::enroll(server, &agent_dir, act["id"].as_str().expect("id"), act["code"].as_str().expect("code"))
            .expect("register");
    assert!(out.status.success(), "register {name}: {}", String::from_utf8_lossy(&out.stderr));
    let node = String::from_utf8_lossy(&out.stdout).trim().to_owned();
    agent.start().expect("start agent");
    (agent, node)
}

fn wait_online(server: &TestServer, node: &str) {
    wait_until(Duration::from_secs(60), || Ok(server.cli_json(&["nodes", "show", node])?["status"] == "Online"))
        .unwrap_or_else(|e| panic!("{node} online: {e}"));
}

fn run_on(server: &TestServer, node: &str) {
    let out = server
        .cli(&["run", "Flotilla-RunShellScript", "--param", "commands=echo still here", "--target", node, "--wait"])
        .expect("run");
    assert!(out.status.success(), "command on {node}: {}", String::from_utf8_lossy(&out.stderr));
    let cmd: Value =
        serde_json::from_slice(&server.cli(&["commands", "ls", "-o", "json"]).expect("ls").stdout).expect("json");
    assert_eq!(cmd[0]["status"], "Success", "{cmd}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn idle_and_slowloris_clients_do_not_keep_agents_out() {
    raise_open_file_limit();
    let dir = Arc::new(tempfile::tempdir().expect("tempdir"));
    let server = Arc::new(
        blocking({
            let data = dir.path().join("server");
            move || {
                TestServer::start(
                    &data,
                    "1s",
                    &[
                        ("FLOTILLA_HTTP_HEADER_READ_TIMEOUT", HEADER_READ_TIMEOUT),
                        ("FLOTILLA_CONNECTION_IDLE_TIMEOUT", HEADER_READ_TIMEOUT),
                        ("FLOTILLA_MAX_ANONYMOUS_CONNECTIONS", &IDLE.to_string()),
                        ("FLOTILLA_MAX_ANONYMOUS_PER_ADDRESS", &PER_ADDRESS.to_string()),
                    ],
                )
                .expect("server")
            }
        })
        .await,
    );
    let (agents, nodes): (Vec<Agent>, Vec<String>) = blocking({
        let (server, dir) = (server.clone(), dir.clone());
        move || {
            let pairs: Vec<_> = (0..2).map(|i| enroll(&server, dir.path(), &format!("node-{i}"))).collect();
            for (_, node) in &pairs {
                wait_online(&server, node);
            }
            pairs.into_iter().unzip()
        }
    })
    .await;

    // 2,000 TLS connections that complete the handshake and then say nothing.
    let connector = connector(&server);
    let started = Instant::now();
    let gate = Arc::new(tokio::sync::Semaphore::new(32));
    let mut idle = Vec::new();
    for i in 0..IDLE {
        let from = Ipv4Addr::new(127, 0, 0, 2 + u8::try_from(i / PER_ADDRESS).expect("address"));
        let (connector, gate, port) = (connector.clone(), gate.clone(), server.port);
        idle.push(tokio::spawn(async move {
            let permit = gate.acquire_owned().await.expect("gate");
            let tls = open(&connector, from, port).await.expect("idle connection");
            drop(permit);
            let opened = Instant::now();
            (opened, closed_by_server(tls, Duration::from_secs(180)).await)
        }));
    }
    let metrics_text = || {
        let server = server.clone();
        blocking(move || {
            let out = std::process::Command::new("curl")
                .args(["-sS", "--cacert"])
                .arg(&server.ca)
                .arg(format!("{}/metrics", server.url))
                .output()
                .expect("curl is installed on this machine kind");
            String::from_utf8_lossy(&out.stdout).into_owned()
        })
    };
    let all_open = Instant::now();
    let mut held = 0.0;
    while all_open.elapsed() < Duration::from_secs(60) {
        held = metric(&metrics_text().await, "flotilla_listener_connections{kind=\"anonymous\"}");
        if held >= (IDLE - 1) as f64 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    let open_time = started.elapsed();
    assert!(held >= (IDLE - 1) as f64, "the server held {held} idle connections, not {IDLE}");

    // A slowloris client: one header byte every 2 s, never a complete request.
    let slow = {
        let connector = connector.clone();
        let port = server.port;
        tokio::spawn(async move {
            let mut tls = open(&connector, Ipv4Addr::LOCALHOST, port).await.expect("slowloris connection");
            let opened = Instant::now();
            for byte in b"GET /api/v1/version HTTP/1.1\r\nHost: localhost\r\nX-Padding: ".iter().cycle() {
                if tls.write_all(&[*byte]).await.is_err() || tls.flush().await.is_err() {
                    return Some(opened.elapsed());
                }
                let mut buf = [0u8; 64];
                if let Ok(Ok(0) | Err(_)) = tokio::time::timeout(Duration::from_secs(2), tls.read(&mut buf)).await {
                    return Some(opened.elapsed());
                }
                if opened.elapsed() > Duration::from_secs(180) {
                    return None;
                }
            }
            None
        })
    };

    // Meanwhile the fleet works: commands complete, a new agent enrolls and connects.
    let agents = blocking({
        let (server, dir) = (server.clone(), dir.clone());
        let nodes = nodes.clone();
        move || {
            for node in &nodes {
                run_on(&server, node);
            }
            let (new_agent, new_node) = enroll(&server, dir.path(), "node-new");
            wait_online(&server, &new_node);
            run_on(&server, &new_node);
            let mut agents = agents;
            agents.push(new_agent);
            (agents, new_node)
        }
    })
    .await;
    let worked_while_held = started.elapsed();

    // The timeouts close every idle connection and the slowloris.
    let mut held_for = Vec::new();
    for task in idle {
        let (opened, closed) = task.await.expect("idle task");
        let closed = closed.expect("the server closed an idle connection within 180 s");
        held_for.push(closed.duration_since(opened));
    }
    let slow_held = slow.await.expect("slowloris task").expect("the server closed the slowloris within 180 s");
    held_for.sort();
    let text = metrics_text().await;
    eprintln!(
        "edge: {held} idle TLS connections held (opened in {open_time:.1?}); work done while held after \
         {worked_while_held:.1?}; idle connections closed after {:.1?} (min) .. {:.1?} (max); slowloris closed \
         after {slow_held:.1?}; timed out by header-read: {}, shed for room: {}",
        held_for[0],
        held_for[held_for.len() - 1],
        metric(&text, "flotilla_listener_connections_timed_out_total{reason=\"header_read\"}"),
        metric(&text, "flotilla_listener_connections_shed_total"),
    );
    assert!(metric(&text, "flotilla_listener_connections_timed_out_total{reason=\"header_read\"}") >= 1.0, "{text}");
    assert!(metric(&text, "flotilla_listener_connections_shed_total{reason=\"anonymous\"}") >= 1.0, "{text}");
    assert_eq!(metric(&text, "flotilla_listener_connections{kind=\"agent\"}"), 3.0, "{text}");

    // The agents' streams were never counted as idle: they still work afterwards.
    let (agents, new_node) = agents;
    blocking({
        let server = server.clone();
        let mut all = nodes.clone();
        all.push(new_node);
        move || {
            for node in &all {
                wait_online(&server, node);
                run_on(&server, node);
            }
        }
    })
    .await;
    let log = server.log_text();
    let warnings = log.lines().filter(|l| l.contains("max_anonymous_connections reached")).count();
    assert!(warnings >= 1, "a WARN when the anonymous budget is full:\n{log}");
    let limit = 1 + usize::try_from(started.elapsed().as_secs() / 10).expect("secs");
    assert!(warnings <= limit, "{warnings} limit WARN lines: they are rate-limited (at most {limit})");
    drop(agents);
}
