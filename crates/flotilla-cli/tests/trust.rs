//! Run Command's server-side trust guarantees, end to end against real processes: node status
//! and invocations after a server SIGKILL, output that cannot be stored, the output cap.

// Tests drive the real binaries.
#![allow(clippy::disallowed_methods)]

use std::time::{Duration, Instant};

use flotilla_testkit::{Agent, TestServer, start_fleet, wait_until};
use serde_json::Value;

const DEBIAN: &str = "NAME=\"Debian GNU/Linux\"\nVERSION_ID=\"12\"\nID=debian\n";

struct Fleet {
    dir: tempfile::TempDir,
    server: TestServer,
    agents: Vec<Agent>,
    ids: Vec<String>,
}

fn fleet(n: usize, env: &[(&str, &str)]) -> Fleet {
    let dir = tempfile::tempdir().expect("tempdir");
    let server = TestServer::start(&dir.path().join("server"), "1s", env).expect("server");
    let (agents, ids) = start_fleet(&server, dir.path(), n, DEBIAN).expect("fleet online");
    Fleet { dir, server, agents, ids }
}

fn run(server: &TestServer, args: &[&str]) -> Value {
    let mut full = vec!["run"];
    full.extend_from_slice(args);
    full.extend(["-o", "json"]);
    let out = server.cli(&full).expect("run");
    assert!(out.status.success() || args.contains(&"--wait"), "{}", String::from_utf8_lossy(&out.stderr));
    serde_json::from_slice(&out.stdout).unwrap_or(Value::Null)
}

fn status_of(server: &TestServer, node: &str) -> String {
    server.cli_json(&["nodes", "show", node]).expect("show")["status"].as_str().unwrap_or("").to_owned()
}

/// The server is SIGKILLed while a node runs a script, and that node's agent never comes
/// back. The liveness window is long (30 heartbeats): only this process's own streams may
/// keep a node Online, so the node is ConnectionLost one heartbeat after the restart, and its
/// invocation ends Terminated once its execution timeout and the grace have passed, which
/// ends the command.
#[test]
fn after_a_server_restart_absent_agents_are_lost_and_their_invocations_end() {
    let mut f = fleet(2, &[("FLOTILLA_MISSED_HEARTBEATS", "30"), ("FLOTILLA_LOST_AGENT_GRACE", "2s")]);
    let cmd = run(
        &f.server,
        &["Flotilla-RunShellScript", "--param", "commands=sleep 30", "--timeout", "5", "--target", &f.ids[0]],
    );
    let id = cmd["id"].as_str().expect("id").to_owned();
    wait_until(Duration::from_secs(10), || {
        Ok(f.server.cli_json(&["commands", "show", &id])?["counts"]["InProgress"] == 1)
    })
    .expect("running");
    f.server.kill();
    f.agents[0].stop();
    let restarted = Instant::now();
    f.server.restart().expect("restart");
    // Heartbeat (1 s) plus the liveness tick (1 s), with room for a slow machine; the old
    // rule kept it Online for the whole 30 s window.
    wait_until(Duration::from_secs(8), || Ok(status_of(&f.server, &f.ids[0]) == "ConnectionLost"))
        .expect("the absent node is ConnectionLost within heartbeat + grace");
    wait_until(Duration::from_secs(10), || Ok(status_of(&f.server, &f.ids[1]) == "Online")).expect("online");
    println!("reconnect time after restart: {:?} (node Online again, measured from the restart)", restarted.elapsed());
    std::thread::sleep(Duration::from_secs(2));
    assert_eq!(status_of(&f.server, &f.ids[1]), "Online", "a connected node stays Online");
    // Execution timeout 5 s + grace 2 s + the engine's tick.
    wait_until(Duration::from_secs(15), || {
        Ok(f.server.cli_json(&["commands", "show", &id])?["invocations"][0]["status"] == "Terminated")
    })
    .expect("the invocation ends");
    let shown = f.server.cli_json(&["commands", "show", &id]).expect("show");
    assert_eq!(shown["status"], "Failed", "{shown}");
    assert!(shown["invocations"][0]["detail"].as_str().is_some_and(|d| d.contains("lost_agent_grace")), "{shown}");
}

/// Output the server cannot store ends the invocation Failed with the reason instead of
/// leaving it InProgress: first an artifact store that refuses the write, then a spool that
/// cannot be written.
#[test]
fn output_that_cannot_be_stored_fails_the_invocation_with_the_reason() {
    let f = fleet(1, &[]);
    let data = f.dir.path().join("server");
    // `commands` as a file: every output artifact write fails.
    std::fs::write(data.join("artifacts/commands"), b"not a directory").expect("block artifacts");
    // Binary output (a NUL) is never kept in the row alone, so it needs the artifact store.
    let cmd = run(&f.server, &["Flotilla-RunShellScript", "--param", "commands=printf 'a\\000b'", "--target", "all"]);
    let id = cmd["id"].as_str().expect("id").to_owned();
    wait_until(Duration::from_secs(30), || {
        Ok(f.server.cli_json(&["commands", "show", &id])?["invocations"][0]["status"] == "Failed")
    })
    .expect("the invocation fails rather than hanging");
    let shown = f.server.cli_json(&["commands", "show", &id]).expect("show");
    let detail = shown["invocations"][0]["detail"].as_str().unwrap_or("");
    assert!(detail.contains("could not store") && detail.contains("stdout"), "{shown}");
    std::fs::remove_file(data.join("artifacts/commands")).expect("unblock");

    // The spool directory replaced by a file: the chunk cannot be spooled.
    std::fs::remove_dir_all(data.join("spool")).expect("rm spool");
    std::fs::write(data.join("spool"), b"not a directory").expect("block spool");
    // More than the spool holds in memory for one stream, so it needs a spool file.
    let cmd =
        run(&f.server, &["Flotilla-RunShellScript", "--param", "commands=head -c 200000 /dev/zero", "--target", "all"]);
    let id = cmd["id"].as_str().expect("id").to_owned();
    wait_until(Duration::from_secs(30), || {
        Ok(f.server.cli_json(&["commands", "show", &id])?["invocations"][0]["status"] == "Failed")
    })
    .expect("the invocation fails rather than hanging");
    let shown = f.server.cli_json(&["commands", "show", &id]).expect("show");
    let detail = shown["invocations"][0]["detail"].as_str().unwrap_or("");
    assert!(detail.contains("could not keep") && detail.contains("spool"), "{shown}");
}

/// The server keeps at most `max_output_bytes` per stream whatever the agent sends, and the
/// invocation says that and how much was cut.
#[test]
fn output_past_max_output_bytes_is_dropped_and_recorded() {
    let f = fleet(1, &[("FLOTILLA_MAX_OUTPUT_BYTES", "1048576")]);
    let cmd = run(
        &f.server,
        &["Flotilla-RunShellScript", "--param", "commands=head -c 3000000 /dev/zero", "--target", "all", "--wait"],
    );
    let inv = &cmd["invocations"][0];
    assert_eq!(inv["status"], "Success", "{cmd}");
    assert_eq!(inv["output"]["stdout_bytes"], 1_048_576, "{cmd}");
    assert_eq!(inv["output"]["truncated"], true);
    let detail = inv["detail"].as_str().unwrap_or("");
    assert!(detail.contains("output cut at max_output_bytes") && detail.contains("1951424 bytes of stdout"), "{cmd}");
    let id = cmd["id"].as_str().expect("id");
    let out = f.server.cli(&["commands", "output", id, "--node", &f.ids[0], "--full"]).expect("output");
    assert_eq!(out.stdout.len(), 1_048_576);
}

/// The server's peak resident memory (VmHWM), in KiB.
fn peak_rss_kib(server: &TestServer) -> u64 {
    let pid = server.pid().expect("running");
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).expect("/proc status");
    let line = status.lines().find(|l| l.starts_with("VmHWM:")).expect("VmHWM");
    line.split_whitespace().nth(1).and_then(|v| v.parse().ok()).expect("a number")
}

/// A real agent streams 1 GiB of output (the server's cap raised above it): every byte
/// reaches the artifact store, in order, and the server never holds it in memory.
#[test]
fn a_gibibyte_of_output_streams_through_in_bounded_memory() {
    const GIB: u64 = 1 << 30;
    // 31 characters and a newline: byte i of the output is LINE[i % 32].
    const LINE: &[u8; 32] = b"0123456789abcdef0123456789abcde\n";
    let f = fleet(1, &[("FLOTILLA_MAX_OUTPUT_BYTES", "2147483648")]);
    let before = peak_rss_kib(&f.server);
    let cmd = run(
        &f.server,
        &[
            "Flotilla-RunShellScript",
            "--param",
            &format!("commands=yes 0123456789abcdef0123456789abcde | head -c {GIB}"),
            "--timeout",
            "1800",
            "--target",
            "all",
        ],
    );
    let id = cmd["id"].as_str().expect("id").to_owned();
    wait_until(Duration::from_secs(1500), || {
        let status = f.server.cli_json(&["commands", "show", &id])?["status"].clone();
        Ok(status != "InProgress" && status != "Pending")
    })
    .expect("the command ends");
    let peak = peak_rss_kib(&f.server);
    println!(
        "server peak RSS (VmHWM) while 1 GiB of output streamed: {} MiB (before: {} MiB)",
        peak / 1024,
        before / 1024
    );
    let shown = f.server.cli_json(&["commands", "show", &id]).expect("show");
    let inv = &shown["invocations"][0];
    assert_eq!(inv["status"], "Success", "{shown}");
    assert_eq!(inv["output"]["stdout_bytes"], GIB, "{shown}");
    assert!(peak < 512 * 1024, "the server's memory grew with the output: peak {} MiB", peak / 1024);

    // Read the artifact back with the server's own key service, segment by segment.
    let data = f.dir.path().join("server");
    let ring = flotilla_server::keys::LocalKeyring::open(&data.join("master.key")).expect("keyring");
    let keys = flotilla_server::keys::KeyService::new(std::sync::Arc::new(ring));
    let store = flotilla_server::artifact::ArtifactStore::local(&data.join("artifacts"), keys).expect("artifacts");
    let runtime = tokio::runtime::Builder::new_current_thread().enable_all().build().expect("runtime");
    let mut at = 0u64;
    let mut mismatch = None;
    let total = runtime
        .block_on(store.read_with(&format!("commands/{id}/{}/stdout", f.ids[0]), |bytes| {
            for (i, b) in bytes.iter().enumerate() {
                if mismatch.is_none() && *b != LINE[((at + i as u64) % 32) as usize] {
                    mismatch = Some(at + i as u64);
                }
            }
            at += bytes.len() as u64;
        }))
        .expect("the artifact authenticates");
    assert_eq!(total, GIB);
    assert_eq!(mismatch, None, "every byte arrived in order");
}

mod wire {
    //! A bare agent over the real protocol (mutual TLS with an enrolled identity), for messages
    //! the real agent never sends.
    use std::time::Duration;

    use flotilla_proto::v1::agent_channel_client::AgentChannelClient;
    use flotilla_proto::v1::{AgentMessage, Hello, ServerMessage, agent_message, server_message};
    use tokio::sync::mpsc;
    use tonic::transport::{Certificate, ClientTlsConfig, Endpoint, Identity};

    pub struct Wire {
        pub node_id: String,
        tx: mpsc::Sender<AgentMessage>,
        rx: tonic::Streaming<ServerMessage>,
    }

    impl Wire {
        pub async fn connect(url: &str, token: &str, ca: &[u8]) -> Wire {
            let admin = flotilla_api::Client::new(url, Some(token.to_owned()), Some(ca)).expect("client");
            let (creds, _) = flotilla_loadgen::enroll(&admin, url, ca, 1, None).await.expect("enroll");
            let cred = creds.into_iter().next().expect("one identity");
            let tls = ClientTlsConfig::new()
                .ca_certificate(Certificate::from_pem(ca))
                .identity(Identity::from_pem(&cred.cert_pem, &cred.key_pem));
            let channel = Endpoint::from_shared(url.to_owned())
                .expect("url")
                .tls_config(tls)
                .expect("tls")
                .connect()
                .await
                .expect("connect");
            let (tx, out) = mpsc::channel(64);
            let hello =
                Hello { info: Some(flotilla_proto::v1::NodeInfo { hostname: "wire".into(), ..Default::default() }) };
            tx.send(AgentMessage { seq: 1, body: Some(agent_message::Body::Hello(hello)) }).await.expect("hello");
            let mut client = AgentChannelClient::new(channel);
            let rx = client.open(tokio_stream::wrappers::ReceiverStream::new(out)).await.expect("open").into_inner();
            Wire { node_id: cred.node_id, tx, rx }
        }

        /// A sender for messages from another task (one that may block on a full stream).
        pub fn sender(&self) -> mpsc::Sender<AgentMessage> {
            self.tx.clone()
        }

        pub async fn send(&self, body: agent_message::Body) {
            self.tx.send(AgentMessage { seq: 2, body: Some(body) }).await.expect("send");
        }

        /// The next message matching `pick`, skipping others (heartbeat acks, welcome).
        pub async fn expect<T>(&mut self, mut pick: impl FnMut(server_message::Body) -> Option<T>) -> T {
            let wait = async {
                loop {
                    let message = self.rx.message().await.expect("stream").expect("open stream");
                    if let Some(found) = message.body.and_then(&mut pick) {
                        return found;
                    }
                }
            };
            tokio::time::timeout(Duration::from_secs(30), wait).await.expect("the expected message within 30 s")
        }
    }
}

/// Output for an invocation that does not exist, that belongs to another node, or that has
/// ended is refused and never written; a replayed result for an invocation that has ended is
/// acknowledged and changes nothing, even while its command still runs.
#[test]
fn the_server_refuses_output_it_did_not_ask_for_and_ignores_replays() {
    use flotilla_proto::v1::{InvocationAccepted, InvocationOutcome, InvocationResult, OutputChunk, OutputStream};
    use flotilla_proto::v1::{agent_message::Body, server_message};

    let f = fleet(1, &[]);
    let runtime = tokio::runtime::Builder::new_multi_thread().worker_threads(2).enable_all().build().expect("runtime");
    let _ = rustls::crypto::aws_lc_rs::default_provider().install_default();
    let ca = std::fs::read(&f.server.ca).expect("ca");
    let mut wire = runtime.block_on(wire::Wire::connect(&f.server.url, &f.server.token, &ca));
    let b = wire.node_id.clone();
    wait_until(Duration::from_secs(20), || Ok(status_of(&f.server, &b) == "Online")).expect("wire node online");

    // One command on both: the real node sleeps, the wire node answers at once.
    let cmd = run(&f.server, &["Flotilla-RunShellScript", "--param", "commands=sleep 20", "--target", "all"]);
    let id = cmd["id"].as_str().expect("id").to_owned();
    let mine = format!("{id}.{b}");
    let theirs = format!("{id}.{}", f.ids[0]);
    let chunk = |invocation: &str, data: &[u8]| {
        Body::Output(OutputChunk {
            invocation_id: invocation.to_owned(),
            stream: OutputStream::Stdout as i32,
            offset: 0,
            data: data.to_vec(),
        })
    };
    runtime.block_on(async {
        let run = wire
            .expect(|m| match m {
                server_message::Body::Run(run) => Some(run),
                _ => None,
            })
            .await;
        assert_eq!(run.invocation_id, mine);
        assert_eq!(run.max_output_bytes, 256 << 20, "the server's cap travels with the invocation");
        wire.send(Body::Accepted(InvocationAccepted { invocation_id: mine.clone(), started_at_unix_ms: 1 })).await;
        wire.send(chunk(&mine, b"wire output\n")).await;
        wire.send(Body::Result(InvocationResult {
            invocation_id: mine.clone(),
            outcome: InvocationOutcome::Success as i32,
            stdout_bytes: 12,
            ..Default::default()
        }))
        .await;
        let acked = wire
            .expect(|m| match m {
                server_message::Body::ResultAck(ack) => Some(ack.invocation_id),
                _ => None,
            })
            .await;
        assert_eq!(acked, mine);
    });
    let show = || f.server.cli_json(&["commands", "show", &id]).expect("show");
    let wire_invocation = |c: &Value| {
        c["invocations"].as_array().and_then(|a| a.iter().find(|i| i["node_id"] == b.as_str())).cloned().expect("inv")
    };
    let before = wire_invocation(&show());
    assert_eq!(
        (before["status"].as_str(), before["output"]["stdout"].as_str()),
        (Some("Success"), Some("wire output\n"))
    );
    assert_eq!(show()["status"], "InProgress", "the real node still runs");

    // Refused: an id that does not exist, another node's invocation, our own settled one.
    runtime.block_on(async {
        wire.send(chunk(&format!("c-0000000000000000.{b}"), b"made up")).await;
        wire.send(chunk(&theirs, b"not yours")).await;
        wire.send(chunk(&mine, b"after the end")).await;
        // A replay of the settled invocation claiming another outcome.
        wire.send(Body::Result(InvocationResult {
            invocation_id: mine.clone(),
            outcome: InvocationOutcome::Failed as i32,
            exit_code: 7,
            replayed: true,
            ..Default::default()
        }))
        .await;
        let acked = wire
            .expect(|m| match m {
                server_message::Body::ResultAck(ack) => Some(ack.invocation_id),
                _ => None,
            })
            .await;
        assert_eq!(acked, mine, "the replay is acknowledged");
    });
    let after = wire_invocation(&show());
    assert_eq!(after, before, "the replay changed nothing");
    let spool = f.dir.path().join("server/spool");
    let spooled: Vec<String> = std::fs::read_dir(&spool)
        .expect("spool")
        .filter_map(|e| e.ok().map(|e| e.file_name().to_string_lossy().into_owned()))
        .collect();
    assert!(spooled.iter().all(|name| name.starts_with(&theirs)), "refused chunks were written: {spooled:?}");
    let log = f.server.log_text();
    assert!(log.contains("does not exist or is not running"), "a WARN says why: {log}");
    assert!(log.contains("does not belong to this node"), "{log}");
    let out = f.server.cli(&["commands", "output", &id, "--node", &b, "--full"]).expect("output");
    assert_eq!(out.stdout, b"wire output\n", "the stored output is untouched");
    f.server.cli(&["commands", "cancel", &id]).expect("cancel");
}

/// Heartbeats are read while an inventory report is ingested: with the inventory table locked
/// in PostgreSQL for three liveness windows, the node's report waits, and the node stays
/// Online on the same stream the whole time.
#[test]
fn a_slow_inventory_ingest_does_not_make_the_node_lost() {
    let rt = tokio::runtime::Builder::new_current_thread().enable_all().build().expect("runtime");
    let db = rt.block_on(flotilla_testkit::postgres::TempDatabase::for_test());
    let f = fleet(1, &[("FLOTILLA_DATABASE_URL", db.url()), ("FLOTILLA_MISSED_HEARTBEATS", "2")]);
    wait_until(Duration::from_secs(30), || {
        Ok(f.server.cli(&["inventory", "show", &f.ids[0], "--type", "InstanceInformation"])?.status.success())
    })
    .expect("first inventory stored");
    let psql = |sql: &str| {
        std::process::Command::new("psql").args(["-X", "-q", "-tA", db.url(), "-c", sql]).output().expect("psql")
    };
    // Hold the table for 6 s: three liveness windows (2 heartbeats of 1 s).
    let mut lock = std::process::Command::new("psql")
        .args(["-X", "-q", db.url(), "-c"])
        .arg("BEGIN; LOCK TABLE inventory_types IN ACCESS EXCLUSIVE MODE; SELECT pg_sleep(6); COMMIT;")
        .stdout(std::process::Stdio::null())
        .spawn()
        .expect("psql");
    wait_until(Duration::from_secs(10), || {
        let out = psql(
            "SELECT count(*) FROM pg_locks WHERE mode = 'AccessExclusiveLock' AND relation = 'inventory_types'::regclass",
        );
        Ok(String::from_utf8_lossy(&out.stdout).trim() == "1")
    })
    .expect("table locked");
    let collect = f.server.cli(&["run", "Flotilla-CollectInventory", "--target", "all", "-o", "json"]).expect("run");
    assert!(collect.status.success(), "{}", String::from_utf8_lossy(&collect.stderr));
    let mut seen = Vec::new();
    while lock.try_wait().expect("psql").is_none() {
        seen.push(status_of(&f.server, &f.ids[0]));
        std::thread::sleep(Duration::from_millis(200));
    }
    assert!(seen.iter().all(|s| s == "Online"), "the node was lost while its report waited: {seen:?}");
    std::thread::sleep(Duration::from_secs(3));
    assert_eq!(status_of(&f.server, &f.ids[0]), "Online");
    assert_eq!(f.agents[0].log_text().matches("connected to the server").count(), 1, "{}", f.agents[0].log_text());
    drop(f);
    rt.block_on(db.drop_database()).expect("drop");
}

/// A connected node whose outbound queue is full gets its invocation once the queue drains,
/// not when it next reconnects: the wire node stops reading and floods heartbeats until the
/// server's queue for it is full, a command is sent (Delayed), then it reads again.
#[test]
fn a_connected_node_with_a_full_queue_gets_its_invocation_when_it_drains() {
    use flotilla_proto::v1::{AgentMessage, Heartbeat, agent_message::Body, server_message};

    let dir = tempfile::tempdir().expect("tempdir");
    // A long heartbeat: the stream must not be closed for silence while its reader is stuck.
    let server = TestServer::start(&dir.path().join("server"), "20s", &[]).expect("server");
    let runtime = tokio::runtime::Builder::new_multi_thread().worker_threads(2).enable_all().build().expect("runtime");
    let _ = rustls::crypto::aws_lc_rs::default_provider().install_default();
    let ca = std::fs::read(&server.ca).expect("ca");
    let mut wire = runtime.block_on(wire::Wire::connect(&server.url, &server.token, &ca));
    let node = wire.node_id.clone();
    wait_until(Duration::from_secs(20), || Ok(status_of(&server, &node) == "Online")).expect("online");
    // Every heartbeat is answered on the node's queue; unread, the answers fill the HTTP/2
    // window and then the server's bounded queue.
    let flood = wire.sender();
    runtime.spawn(async move {
        for seq in 0..400_000u64 {
            let beat = AgentMessage { seq, body: Some(Body::Heartbeat(Heartbeat { sent_at_unix_ms: 1 })) };
            if flood.send(beat).await.is_err() {
                return;
            }
        }
    });
    std::thread::sleep(Duration::from_secs(6));
    let cmd = run(&server, &["Flotilla-RunShellScript", "--param", "commands=true", "--target", &node]);
    let id = cmd["id"].as_str().expect("id").to_owned();
    wait_until(Duration::from_secs(10), || Ok(server.cli_json(&["commands", "show", &id])?["counts"]["Delayed"] == 1))
        .expect("not delivered while the queue is full");
    let run = runtime.block_on(wire.expect(|m| match m {
        server_message::Body::Run(run) => Some(run),
        _ => None,
    }));
    assert_eq!(run.invocation_id, format!("{id}.{node}"), "delivered on the same stream once it drained");
    wait_until(Duration::from_secs(10), || {
        Ok(server.cli_json(&["commands", "show", &id])?["counts"]["InProgress"] == 1)
    })
    .expect("recorded as delivered");
}
