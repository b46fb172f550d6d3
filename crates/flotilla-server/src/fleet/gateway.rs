//! The agent gateway: the gRPC `AgentChannel` service. Each agent stream is owned by one
//! task that reads the agent's messages, answers heartbeats and closes the stream when told
//! to (deregistration, a newer connection, silence, shutdown).
//!
//! Invariants: a stream is accepted only with a client certificate from our CA whose node
//! exists, is not deregistered, and whose fingerprint is the one issued at enrollment; the
//! first message must be Hello; the outbound queue is bounded. The read loop never waits on
//! an inventory ingest: reports go to the stream's own ingest task (in order, a few queued),
//! so heartbeats keep being read and a slow database cannot make a node ConnectionLost.

use std::str::FromStr;
use std::sync::Arc;
use std::time::Duration;

use flotilla_core::{NodeId, NodeInfo, NodeStatus, Platform};
use flotilla_proto::v1::agent_channel_server::AgentChannel;
use flotilla_proto::v1::{
    AgentMessage, HeartbeatAck, ServerMessage, SessionFrame, Welcome, agent_message, server_message, session_frame,
};
use tokio::sync::mpsc;
use tokio_stream::wrappers::ReceiverStream;
use tonic::{Request, Response, Status, Streaming};

use crate::app::AppState;
use crate::platform::listener::PeerCertificate;
use crate::platform::now_ms;
use crate::platform::secret::sha256_hex;
use crate::runcommand::engine::Event;

/// Inventory reports a stream may have waiting behind the one being ingested.
const INGEST_QUEUE: usize = 4;

/// How long an agent has to say Hello after opening its stream.
const HELLO_TIMEOUT: Duration = Duration::from_secs(15);

pub struct Gateway {
    pub state: Arc<AppState>,
}

impl Gateway {
    /// Who is on the other end: the node named by a valid, current client certificate.
    async fn authenticate(&self, peer: Option<&PeerCertificate>) -> Result<NodeId, Status> {
        let cert = peer.ok_or_else(|| {
            Status::unauthenticated("no client certificate: enroll this node with `flotilla-agent register` first")
        })?;
        let id = crate::platform::pki::node_id_of(&cert.0)
            .and_then(|cn| NodeId::from_str(&cn).ok())
            .ok_or_else(|| Status::unauthenticated("the client certificate does not name a node"))?;
        let node = self
            .state
            .store
            .get_node(&id)
            .await
            .map_err(|e| {
                tracing::error!(node_id = %id, "cannot read node during authentication: {e}");
                Status::unavailable("the server cannot reach its database; retry later")
            })?
            .ok_or_else(|| Status::permission_denied(format!("node {id} is not known to this server: enroll again")))?;
        if node.status == NodeStatus::Deregistered {
            return Err(flotilla_proto::refusal::deregistered(format!(
                "node {id} was deregistered and its credential revoked: enroll again with a new activation"
            )));
        }
        if node.cert_fingerprint != sha256_hex(&cert.0) {
            return Err(Status::permission_denied(format!(
                "node {id} presented a certificate that is no longer valid"
            )));
        }
        Ok(id)
    }
}

fn info_from(hello: flotilla_proto::v1::Hello) -> NodeInfo {
    let info = hello.info.unwrap_or_default();
    let clip = |s: String, n: usize| s.chars().take(n).collect::<String>();
    NodeInfo {
        hostname: clip(info.hostname, 255),
        platform: Platform {
            name: clip(info.os_name, 128),
            version: clip(info.os_version, 64),
            id: clip(info.os_id, 64),
        },
        kernel: clip(info.kernel, 128),
        arch: clip(info.arch, 32),
        agent_version: clip(info.agent_version, 64),
        addresses: info.addresses.into_iter().take(64).map(|a| clip(a, 64)).collect(),
    }
}

#[tonic::async_trait]
impl AgentChannel for Gateway {
    type OpenStream = ReceiverStream<Result<ServerMessage, Status>>;
    type SessionStream = ReceiverStream<Result<SessionFrame, Status>>;

    /// A session stream the agent opened because the server asked (`SessionOpen`): handed to
    /// the waiting session (`platform::streams`) if it comes from the node that was asked.
    async fn session(
        &self,
        request: Request<Streaming<SessionFrame>>,
    ) -> Result<Response<Self::SessionStream>, Status> {
        let id = self.authenticate(request.extensions().get::<PeerCertificate>()).await?;
        let mut inbound = request.into_inner();
        let stream_id = match tokio::time::timeout(HELLO_TIMEOUT, inbound.message()).await {
            Ok(Ok(Some(SessionFrame { body: Some(session_frame::Body::Hello(hello)) }))) => hello.stream_id,
            Ok(Err(status)) => return Err(status),
            _ => return Err(Status::invalid_argument("the first frame of a session stream must be SessionHello")),
        };
        let (tx, rx) = mpsc::channel(crate::platform::streams::OUTBOUND_QUEUE);
        let stream = crate::platform::streams::AgentStream { inbound, outbound: tx };
        if let Err(refused) = self.state.registry.streams.deliver(&stream_id, &id, stream) {
            tracing::info!(node_id = %id, stream = %stream_id, "session stream refused: {refused:?}");
            return Err(Status::not_found(format!("no session waits for stream {stream_id} from node {id}")));
        }
        Ok(Response::new(ReceiverStream::new(rx)))
    }

    async fn open(&self, request: Request<Streaming<AgentMessage>>) -> Result<Response<Self::OpenStream>, Status> {
        let id = match self.authenticate(request.extensions().get::<PeerCertificate>()).await {
            Ok(id) => id,
            Err(status) => {
                tracing::info!("agent stream refused: {}", status.message());
                return Err(status);
            }
        };
        let mut inbound = request.into_inner();
        let hello = match tokio::time::timeout(HELLO_TIMEOUT, inbound.message()).await {
            Ok(Ok(Some(AgentMessage { body: Some(agent_message::Body::Hello(hello)), .. }))) => hello,
            Ok(Err(status)) => return Err(status),
            _ => return Err(Status::invalid_argument("the first message on the agent channel must be Hello")),
        };
        let state = self.state.clone();
        state.metrics.channel("in");
        let info = info_from(hello);
        let now = now_ms();
        match state.store.node_connected(&id, &info, now).await {
            Ok(true) => {}
            Ok(false) => return Err(flotilla_proto::refusal::deregistered(format!("node {id} was deregistered"))),
            Err(e) => {
                tracing::error!(node_id = %id, "cannot record connection: {e}");
                return Err(Status::unavailable("the server cannot reach its database; retry later"));
            }
        }
        let (tx, rx) = mpsc::channel::<Result<ServerMessage, Status>>(256);
        let (generation, mut kicked) = state.registry.connect(&id, now, tx.clone());
        state.metrics.connected_agents.set(i64::try_from(state.registry.connected()).unwrap_or(i64::MAX));
        tracing::info!(node_id = %id, hostname = %info.hostname, "agent connected");
        let heartbeat_ms = u32::try_from(state.config.heartbeat_interval.as_millis()).unwrap_or(u32::MAX);
        let (inventory_hashes, inventory_config) = crate::inventory::welcome(&state, &id).await;
        let welcome = ServerMessage {
            seq: 0,
            body: Some(server_message::Body::Welcome(Welcome {
                node_id: id.to_string(),
                heartbeat_interval_ms: heartbeat_ms,
                inventory_hashes,
                inventory: Some(inventory_config),
            })),
        };
        // The queue is empty and its receiver alive: this send cannot fail.
        let _ = tx.send(Ok(welcome)).await;
        state.metrics.channel("out");
        state.run.engine.notify(Event::Connected(id.clone())).await;

        // Reports of this stream, ingested one at a time in arrival order.
        let (reports, mut report_rx) = mpsc::channel::<(u64, flotilla_proto::v1::InventoryReport)>(INGEST_QUEUE);
        {
            let (state, id, tx) = (state.clone(), id.clone(), tx.clone());
            tokio::spawn(async move {
                while let Some((seq, report)) = report_rx.recv().await {
                    let ack = crate::inventory::ingest(&state, &id, report).await;
                    let ack = ServerMessage { seq, body: Some(server_message::Body::InventoryAck(ack)) };
                    if tx.send(Ok(ack)).await.is_err() {
                        break;
                    }
                    state.metrics.channel("out");
                }
            });
        }

        tokio::spawn(async move {
            loop {
                tokio::select! {
                    status = &mut kicked => {
                        if let Ok(status) = status {
                            let _ = tx.send(Err(status)).await;
                        }
                        break;
                    }
                    message = inbound.message() => match message {
                        Ok(Some(message)) => {
                            state.metrics.channel("in");
                            state.registry.touch(&id, generation, now_ms());
                            match message.body {
                                Some(agent_message::Body::Heartbeat(_)) => {
                                    let ack = ServerMessage {
                                        seq: message.seq,
                                        body: Some(server_message::Body::HeartbeatAck(HeartbeatAck {
                                            received_at_unix_ms: u64::try_from(now_ms()).unwrap_or(0),
                                        })),
                                    };
                                    if tx.send(Ok(ack)).await.is_err() {
                                        break;
                                    }
                                    state.metrics.channel("out");
                                }
                                Some(agent_message::Body::Output(chunk)) => {
                                    if let Err(e) = state.run.output.append(&id, &chunk).await {
                                        tracing::warn!(node_id = %id, invocation = %chunk.invocation_id, "output chunk dropped: {e}");
                                    }
                                }
                                Some(agent_message::Body::Result(result)) => {
                                    state.run.engine.notify(Event::Result(id.clone(), result)).await;
                                }
                                Some(agent_message::Body::Accepted(accepted)) => {
                                    state.run.engine.notify(Event::Accepted(id.clone(), accepted)).await;
                                }
                                Some(agent_message::Body::Inventory(report)) => {
                                    // Waits only when the agent has sent INGEST_QUEUE reports
                                    // ahead of the one being ingested (back-pressure on a flood).
                                    if reports.send((message.seq, report)).await.is_err() {
                                        break;
                                    }
                                }
                                Some(agent_message::Body::Patch(request)) => {
                                    // Scanning waits on the snapshot: answer it beside the stream.
                                    let (state, id, tx) = (state.clone(), id.clone(), tx.clone());
                                    tokio::spawn(async move {
                                        let response = crate::patch::answer(&state, &id, request).await;
                                        let reply = ServerMessage { seq: message.seq, body: Some(server_message::Body::Patch(response)) };
                                        if tx.send(Ok(reply)).await.is_ok() {
                                            state.metrics.channel("out");
                                        }
                                    });
                                }
                                Some(agent_message::Body::Hello(_)) | None => {}
                            }
                        }
                        Ok(None) => break,
                        Err(status) => {
                            tracing::debug!(node_id = %id, "agent stream ended: {status}");
                            break;
                        }
                    }
                }
            }
            if state.registry.disconnect(&id, generation) {
                state.run.engine.notify(Event::Disconnected(id.clone())).await;
                if let Err(e) = state.store.nodes_lost(std::slice::from_ref(&id)).await {
                    tracing::warn!(node_id = %id, "cannot mark node ConnectionLost: {e}");
                }
                tracing::info!(node_id = %id, "agent disconnected: ConnectionLost");
            }
            state.metrics.connected_agents.set(i64::try_from(state.registry.connected()).unwrap_or(i64::MAX));
        });
        Ok(Response::new(ReceiverStream::new(rx)))
    }
}
