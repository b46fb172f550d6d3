//! A scripted stand-in for the server's agent channel, so tests can drive the REAL
//! `flotilla-agent` with exact message sequences the real server would only produce by
//! accident (two identical Runs at once, a Run re-sent after its ResultAck, refusals).
//!
//! It owns a private CA (rcgen), a server certificate for 127.0.0.1 and a tonic
//! `AgentChannel` server requiring client certificates from that CA (mutual TLS, as the real
//! listener). `write_agent_state` lays out an agent state dir the way `flotilla-agent register`
//! does (`state.json` version 1, `agent.key`, `agent.pem` with CN = node id, `ca.pem`), so
//! `flotilla-agent run --state-dir D --root R` connects here.
//!
//! Invariants: every message an agent sends is recorded in arrival order, across sessions;
//! the server sends nothing on its own except Welcome after Hello; refusals are scripted per
//! connection attempt, in order.

use std::collections::VecDeque;
use std::path::Path;
use std::sync::{Arc, Condvar, Mutex, MutexGuard};
use std::time::{Duration, Instant};

use anyhow::{Context, bail};
use flotilla_proto::v1::agent_channel_server::{AgentChannel, AgentChannelServer};
use flotilla_proto::v1::{AgentMessage, InventoryConfig, ServerMessage, Welcome, agent_message, server_message};
use rcgen::{
    BasicConstraints, CertificateParams, DistinguishedName, DnType, ExtendedKeyUsagePurpose, IsCa, Issuer, KeyPair,
    KeyUsagePurpose, SanType,
};
use tokio::sync::mpsc;
use tokio_stream::wrappers::{ReceiverStream, TcpListenerStream};
use tonic::transport::{Certificate, Identity, Server, ServerTlsConfig};
use tonic::{Request, Response, Status, Streaming};

/// What the fake server has seen, shared between its tasks and the test thread.
#[derive(Default)]
struct Record {
    /// Every agent message, in arrival order, across sessions.
    received: Vec<AgentMessage>,
    /// `Open` calls, refused or not.
    attempts: usize,
    /// Streams that got a Welcome.
    sessions: usize,
    /// Refusals for the next connection attempts, in order.
    refusals: VecDeque<Status>,
    /// Where `send` goes: the newest welcomed stream.
    current: Option<mpsc::Sender<Result<ServerMessage, Status>>>,
    /// The inventory settings sent in Welcome.
    inventory: Option<InventoryConfig>,
}

#[derive(Default)]
struct Shared {
    record: Mutex<Record>,
    changed: Condvar,
}

impl Shared {
    fn lock(&self) -> MutexGuard<'_, Record> {
        self.record.lock().unwrap_or_else(|p| p.into_inner())
    }
}

struct Channel {
    shared: Arc<Shared>,
    heartbeat_ms: u32,
}

#[tonic::async_trait]
impl AgentChannel for Channel {
    type OpenStream = ReceiverStream<Result<ServerMessage, Status>>;
    type SessionStream = ReceiverStream<Result<flotilla_proto::v1::SessionFrame, Status>>;

    /// The fake server scripts no sessions.
    async fn session(
        &self,
        _request: Request<Streaming<flotilla_proto::v1::SessionFrame>>,
    ) -> Result<Response<Self::SessionStream>, Status> {
        Err(Status::unimplemented("the fake server opens no sessions"))
    }

    async fn open(&self, request: Request<Streaming<AgentMessage>>) -> Result<Response<Self::OpenStream>, Status> {
        let refusal = {
            let mut record = self.shared.lock();
            record.attempts += 1;
            record.refusals.pop_front()
        };
        self.shared.changed.notify_all();
        if let Some(status) = refusal {
            return Err(status);
        }
        let node_id = request
            .peer_certs()
            .and_then(|certs| certs.first().map(|c| c.as_ref().to_vec()))
            .and_then(|der| common_name(&der))
            .unwrap_or_default();
        let mut inbound = request.into_inner();
        let (tx, rx) = mpsc::channel(1024);
        let shared = self.shared.clone();
        let heartbeat_ms = self.heartbeat_ms;
        tokio::spawn(async move {
            while let Ok(Some(message)) = inbound.message().await {
                let hello = matches!(message.body, Some(agent_message::Body::Hello(_)));
                shared.lock().received.push(message);
                if hello {
                    let inventory = shared.lock().inventory.clone();
                    let welcome = Welcome {
                        node_id: node_id.clone(),
                        heartbeat_interval_ms: heartbeat_ms,
                        inventory,
                        ..Default::default()
                    };
                    let message = ServerMessage { seq: 0, body: Some(server_message::Body::Welcome(welcome)) };
                    if tx.send(Ok(message)).await.is_err() {
                        break;
                    }
                    let mut record = shared.lock();
                    record.sessions += 1;
                    record.current = Some(tx.clone());
                }
                shared.changed.notify_all();
            }
            shared.changed.notify_all();
        });
        Ok(Response::new(ReceiverStream::new(rx)))
    }
}

fn common_name(der: &[u8]) -> Option<String> {
    let (_, cert) = x509_parser::parse_x509_certificate(der).ok()?;
    let cn = cert.subject().iter_common_name().next()?;
    cn.as_str().ok().map(str::to_owned)
}

/// A running fake agent-channel server on 127.0.0.1, stopped on drop.
pub struct FakeServer {
    /// `https://127.0.0.1:PORT`, what the agent's `state.json` names.
    pub url: String,
    ca_pem: String,
    issuer: Issuer<'static, KeyPair>,
    shared: Arc<Shared>,
    runtime: Option<tokio::runtime::Runtime>,
}

fn ca() -> anyhow::Result<(String, Issuer<'static, KeyPair>)> {
    let key = KeyPair::generate().context("CA key")?;
    let mut params = CertificateParams::default();
    let mut dn = DistinguishedName::new();
    dn.push(DnType::CommonName, "Flotilla fake server CA");
    params.distinguished_name = dn;
    params.is_ca = IsCa::Ca(BasicConstraints::Constrained(0));
    params.key_usages = vec![KeyUsagePurpose::KeyCertSign, KeyUsagePurpose::DigitalSignature];
    let cert = params.self_signed(&key).context("self-sign the CA")?;
    let pem = cert.pem();
    let issuer = Issuer::from_ca_cert_pem(&pem, key).context("CA issuer")?;
    Ok((pem, issuer))
}

impl FakeServer {
    /// Starts the server; agents are told to heartbeat every `heartbeat` in Welcome.
    pub fn start(heartbeat: Duration) -> anyhow::Result<FakeServer> {
        let (ca_pem, issuer) = ca()?;
        let key = KeyPair::generate().context("server key")?;
        let mut params = CertificateParams::new(Vec::<String>::new()).context("server certificate")?;
        params.subject_alt_names.push(SanType::IpAddress(std::net::Ipv4Addr::LOCALHOST.into()));
        params.extended_key_usages = vec![ExtendedKeyUsagePurpose::ServerAuth];
        let cert = params.signed_by(&key, &issuer).context("sign the server certificate")?;
        let tls = ServerTlsConfig::new()
            .identity(Identity::from_pem(cert.pem(), key.serialize_pem()))
            .client_ca_root(Certificate::from_pem(&ca_pem));

        let runtime = tokio::runtime::Builder::new_multi_thread().worker_threads(1).enable_all().build()?;
        let listener = runtime.block_on(tokio::net::TcpListener::bind("127.0.0.1:0"))?;
        let url = format!("https://127.0.0.1:{}", listener.local_addr()?.port());
        let shared = Arc::new(Shared::default());
        let heartbeat_ms = u32::try_from(heartbeat.as_millis()).unwrap_or(u32::MAX);
        let service = AgentChannelServer::new(Channel { shared: shared.clone(), heartbeat_ms });
        let server = Server::builder().tls_config(tls).context("server TLS")?;
        runtime.spawn(async move {
            if let Err(e) = server.serve_with_incoming(service, TcpListenerStream::new(listener)).await {
                eprintln!("fake server stopped: {e}");
            }
        });
        Ok(FakeServer { url, ca_pem, issuer, shared, runtime: Some(runtime) })
    }

    /// Writes an enrolled agent's state dir for `node_id`, as `flotilla-agent register` would.
    pub fn write_agent_state(&self, state_dir: &Path, node_id: &str) -> anyhow::Result<()> {
        let key = KeyPair::generate().context("agent key")?;
        let mut params = CertificateParams::new(Vec::<String>::new()).context("agent certificate")?;
        let mut dn = DistinguishedName::new();
        dn.push(DnType::CommonName, node_id);
        params.distinguished_name = dn;
        params.extended_key_usages = vec![ExtendedKeyUsagePurpose::ClientAuth];
        params.key_usages = vec![KeyUsagePurpose::DigitalSignature];
        let cert = params.signed_by(&key, &self.issuer).context("sign the agent certificate")?;
        std::fs::create_dir_all(state_dir)?;
        let state = serde_json::json!({ "version": 1, "node_id": node_id, "server_url": self.url });
        std::fs::write(state_dir.join("agent.key"), key.serialize_pem())?;
        std::fs::write(state_dir.join("agent.pem"), cert.pem())?;
        std::fs::write(state_dir.join("ca.pem"), &self.ca_pem)?;
        std::fs::write(state_dir.join("state.json"), serde_json::to_vec_pretty(&state)?)?;
        Ok(())
    }

    /// Inventory settings for the Welcome of the next sessions (e.g. watched files).
    pub fn welcome_inventory(&self, config: InventoryConfig) {
        self.shared.lock().inventory = Some(config);
    }

    /// Refuses the next connection attempt with `status` (queued: call again for more).
    pub fn refuse_next(&self, status: Status) {
        self.shared.lock().refusals.push_back(status);
    }

    /// Sends a message on the newest welcomed stream.
    pub fn send(&self, body: server_message::Body) -> anyhow::Result<()> {
        let sender = self.shared.lock().current.clone().context("no agent is connected")?;
        let message = ServerMessage { seq: 0, body: Some(body) };
        sender.try_send(Ok(message)).map_err(|e| anyhow::anyhow!("cannot send to the agent: {e}"))
    }

    /// Every message agents have sent so far.
    pub fn received(&self) -> Vec<AgentMessage> {
        self.shared.lock().received.clone()
    }

    /// Connection attempts so far, refused or not.
    pub fn attempts(&self) -> usize {
        self.shared.lock().attempts
    }

    /// Streams welcomed so far.
    pub fn sessions(&self) -> usize {
        self.shared.lock().sessions
    }

    /// Waits at most `timeout` until `check` over the received messages returns Some.
    pub fn wait_for<T>(
        &self,
        timeout: Duration,
        mut check: impl FnMut(&[AgentMessage]) -> Option<T>,
    ) -> anyhow::Result<T> {
        let deadline = Instant::now() + timeout;
        let mut record = self.shared.lock();
        loop {
            if let Some(found) = check(&record.received) {
                return Ok(found);
            }
            let left = deadline.saturating_duration_since(Instant::now());
            if left.is_zero() {
                bail!("the agent did not send what was expected within {timeout:?}");
            }
            record = self.shared.changed.wait_timeout(record, left).unwrap_or_else(|p| p.into_inner()).0;
        }
    }

    /// Waits at most `timeout` until `sessions()` reaches `count`.
    pub fn wait_sessions(&self, count: usize, timeout: Duration) -> anyhow::Result<()> {
        let deadline = Instant::now() + timeout;
        let mut record = self.shared.lock();
        while record.sessions < count {
            let left = deadline.saturating_duration_since(Instant::now());
            if left.is_zero() {
                bail!("{} agent sessions after {timeout:?}, expected {count}", record.sessions);
            }
            record = self.shared.changed.wait_timeout(record, left).unwrap_or_else(|p| p.into_inner()).0;
        }
        Ok(())
    }
}

impl Drop for FakeServer {
    fn drop(&mut self) {
        if let Some(runtime) = self.runtime.take() {
            runtime.shutdown_background();
        }
    }
}
