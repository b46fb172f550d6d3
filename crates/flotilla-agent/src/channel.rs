//! The agent's one outbound stream: connect with the node's certificate, say Hello, send
//! heartbeats at the interval the server asks for, and reconnect with jittered exponential
//! backoff when anything breaks.
//!
//! Invariants: the main loop waits on a closed set of events (a server message, a heartbeat
//! tick, a stop signal); deregistration (a PermissionDenied marked `flotilla-refusal:
//! deregistered`, or from older servers saying the node "was deregistered": the only refusal
//! the server makes final) ends the agent with a clear log
//! line instead of hammering the server; every other failure, including other refusals (a
//! certificate the server does not match, a node it does not know — a restored database, a
//! replaced server), is retried with its reason logged, first within about a second, never
//! more than about a minute apart, jittered so a fleet does not return in step.

use std::path::Path;
use std::time::Duration;

use flotilla_core::backoff::Backoff;
use flotilla_proto::v1::agent_channel_client::AgentChannelClient;
use flotilla_proto::v1::{AgentMessage, Heartbeat, Hello, agent_message, server_message};
use tokio::sync::mpsc;
use tokio_stream::wrappers::ReceiverStream;
use tonic::transport::{Certificate, ClientTlsConfig, Endpoint, Identity as TlsIdentity};

use std::sync::{Arc, Mutex};

use crate::AgentError;
use crate::inventory::Inventory;
use crate::invocation::{Outbox, Runner};
use crate::patching::Patching;
use crate::state::Identity;

/// Heartbeat interval until the server says otherwise.
const DEFAULT_HEARTBEAT: Duration = Duration::from_secs(30);

enum Ended {
    /// The stream closed or failed; try again.
    Retry(String),
    /// The server refused this node's credential, maybe for now only; try again later.
    Refused(String),
    /// The server refused this node's credential for good.
    Revoked(String),
}

/// Connects and serves until stopped by SIGINT/SIGTERM or refused for good.
pub async fn run(state_dir: &Path, root: &Path, sessions: crate::session::Settings) -> Result<(), AgentError> {
    let sessions = crate::session::Sessions::new(root, sessions);
    let identity = Identity::load(state_dir)?;
    let endpoint = endpoint(&identity)?;
    tracing::info!(node_id = %identity.state.node_id, server = %identity.state.server_url, "agent starting");
    let outbox: Outbox = Arc::new(Mutex::new(None));
    let inventory = Arc::new(Inventory::new(root, outbox.clone()));
    let patching = Arc::new(Patching::new(root, state_dir, outbox.clone()));
    let runner = Runner::new(state_dir, outbox.clone(), inventory.clone(), patching)?;
    runner.prune_tombstones();
    let scheduled = inventory.clone();
    tokio::spawn(async move { scheduled.schedule().await });
    runner.reap().await;
    let mut backoff = Backoff::new(Duration::from_secs(1), Duration::from_secs(60));
    let stop = stop_signal();
    tokio::pin!(stop);
    loop {
        let mut welcomed = false;
        let ended = tokio::select! {
            ended = session(&endpoint, root, &runner, &inventory, &outbox, &sessions, &mut welcomed) => ended,
            () = &mut stop => {
                tracing::info!("stop signal received; agent exiting");
                return Ok(());
            }
        };
        match ended {
            Ended::Revoked(message) => {
                return Err(AgentError::Revoked(format!("the server refused this node's credential: {message}")));
            }
            Ended::Refused(reason) => {
                let delay = backoff.next_delay(rand::random::<f64>());
                tracing::error!(
                    "the server refused this node ({reason}); retrying in {:.1}s: if it persists, check the node on the server or enroll it again",
                    delay.as_secs_f64()
                );
                tokio::select! {
                    () = tokio::time::sleep(delay) => {}
                    () = &mut stop => {
                        tracing::info!("stop signal received; agent exiting");
                        return Ok(());
                    }
                }
            }
            Ended::Retry(reason) => {
                if welcomed {
                    backoff.reset();
                }
                let delay = backoff.next_delay(rand::random::<f64>());
                tracing::warn!("connection to the server lost ({reason}); retrying in {:.1}s", delay.as_secs_f64());
                tokio::select! {
                    () = tokio::time::sleep(delay) => {}
                    () = &mut stop => {
                        tracing::info!("stop signal received; agent exiting");
                        return Ok(());
                    }
                }
            }
        }
    }
}

async fn stop_signal() {
    let mut term = match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
        Ok(term) => term,
        Err(e) => {
            tracing::warn!("cannot listen for SIGTERM: {e}");
            let _ = tokio::signal::ctrl_c().await;
            return;
        }
    };
    tokio::select! {
        _ = tokio::signal::ctrl_c() => {}
        _ = term.recv() => {}
    }
}

fn endpoint(identity: &Identity) -> Result<Endpoint, AgentError> {
    let url = identity.state.server_url.clone();
    let bad = |detail: String| AgentError::BadUrl { url: url.clone(), detail };
    let tls = ClientTlsConfig::new()
        .ca_certificate(Certificate::from_pem(&identity.ca_pem))
        .identity(TlsIdentity::from_pem(&identity.cert_pem, &identity.key_pem));
    Ok(Endpoint::from_shared(url.clone())
        .map_err(|e| bad(e.to_string()))?
        .tls_config(tls)
        .map_err(|e| bad(e.to_string()))?
        .connect_timeout(Duration::from_secs(10))
        .http2_keep_alive_interval(Duration::from_secs(60))
        .keep_alive_timeout(Duration::from_secs(20)))
}

fn classify(status: tonic::Status) -> Ended {
    match status.code() {
        // Only deregistration is final (`flotilla_proto::refusal`).
        tonic::Code::PermissionDenied if flotilla_proto::refusal::is_deregistered(&status) => {
            Ended::Revoked(status.message().to_owned())
        }
        tonic::Code::PermissionDenied => Ended::Refused(status.message().to_owned()),
        _ => Ended::Retry(format!("{:?}: {}", status.code(), status.message())),
    }
}

/// One connection, from dial to its end.
async fn session(
    endpoint: &Endpoint,
    root: &Path,
    runner: &Arc<Runner>,
    inventory: &Arc<Inventory>,
    outbox: &Outbox,
    sessions: &Arc<crate::session::Sessions>,
    welcomed: &mut bool,
) -> Ended {
    let ended = stream(endpoint, root, runner, inventory, outbox, sessions, welcomed).await;
    // Between sessions invocations keep running and spool; nothing is sent.
    *outbox.lock().unwrap_or_else(|p| p.into_inner()) = None;
    ended
}

async fn stream(
    endpoint: &Endpoint,
    root: &Path,
    runner: &Arc<Runner>,
    inventory: &Arc<Inventory>,
    outbox: &Outbox,
    sessions: &Arc<crate::session::Sessions>,
    welcomed: &mut bool,
) -> Ended {
    let channel = match endpoint.connect().await {
        Ok(channel) => channel,
        Err(e) => {
            let mut text = e.to_string();
            let mut source = std::error::Error::source(&e);
            while let Some(s) = source {
                text.push_str(": ");
                text.push_str(&s.to_string());
                source = s.source();
            }
            return Ended::Retry(format!("cannot connect: {text}"));
        }
    };
    // Session streams ride this same connection (clones share it).
    let session_channel = channel.clone();
    let mut client = AgentChannelClient::new(channel);
    let (tx, rx) = mpsc::channel::<AgentMessage>(64);
    let mut seq: u64 = 1;
    let hello =
        AgentMessage { seq, body: Some(agent_message::Body::Hello(Hello { info: Some(crate::node::collect(root)) })) };
    if tx.send(hello).await.is_err() {
        return Ended::Retry("the outbound queue closed".into());
    }
    let mut inbound = match client.open(ReceiverStream::new(rx)).await {
        Ok(response) => response.into_inner(),
        Err(status) => return classify(status),
    };
    let mut heartbeat = tokio::time::interval(DEFAULT_HEARTBEAT);
    heartbeat.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    heartbeat.reset();
    loop {
        tokio::select! {
            message = inbound.message() => match message {
                Ok(Some(message)) => match message.body {
                    Some(server_message::Body::Welcome(welcome)) => {
                        *welcomed = true;
                        let every = Duration::from_millis(u64::from(welcome.heartbeat_interval_ms.max(100)));
                        heartbeat = tokio::time::interval(every);
                        heartbeat.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
                        heartbeat.reset();
                        tracing::info!(node_id = %welcome.node_id, heartbeat = ?every, "connected to the server");
                        *outbox.lock().unwrap_or_else(|p| p.into_inner()) = Some(tx.clone());
                        let runner = runner.clone();
                        tokio::spawn(async move { runner.resend_all().await });
                        inventory.welcome(welcome.inventory_hashes, welcome.inventory);
                        let inventory = inventory.clone();
                        tokio::spawn(async move {
                            match inventory.collect_and_upload().await {
                                Ok(summary) => tracing::info!("{}", summary.lines().next().unwrap_or("")),
                                Err(e) => tracing::warn!("inventory at connect: {e}"),
                            }
                        });
                    }
                    Some(server_message::Body::Run(run)) => {
                        tracing::info!(invocation = %run.invocation_id, steps = run.steps.len(), "invocation received");
                        let runner = runner.clone();
                        tokio::spawn(async move { runner.start(run).await });
                    }
                    Some(server_message::Body::Cancel(cancel)) => runner.cancel(&cancel.invocation_id),
                    Some(server_message::Body::ResultAck(ack)) => runner.acknowledged(&ack.invocation_id).await,
                    Some(server_message::Body::InventoryAck(ack)) => inventory.acknowledged(ack),
                    Some(server_message::Body::InventoryConfig(config)) => inventory.configure(config),
                    Some(server_message::Body::Patch(response)) => runner.patching().answered(response),
                    Some(server_message::Body::SessionOpen(open)) => {
                        tracing::info!(session = %open.session_id, "session requested");
                        sessions.open(session_channel.clone(), open);
                    }
                    Some(server_message::Body::HeartbeatAck(_)) | None => {}
                },
                Ok(None) => return Ended::Retry("the server closed the stream".into()),
                Err(status) => return classify(status),
            },
            _ = heartbeat.tick() => {
                seq += 1;
                let now = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map(|d| d.as_millis()).unwrap_or(0);
                let beat = AgentMessage {
                    seq,
                    body: Some(agent_message::Body::Heartbeat(Heartbeat { sent_at_unix_ms: u64::try_from(now).unwrap_or(0) })),
                };
                if tx.send(beat).await.is_err() {
                    return Ended::Retry("the outbound stream closed".into());
                }
            }
        }
    }
}
