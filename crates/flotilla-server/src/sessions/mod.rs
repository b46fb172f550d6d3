//! Sessions: an interactive shell on a node's PTY and port forwarding to HOST:PORT as the node
//! sees it, both through the agent's own outbound connection (a `Session` rpc stream per shell
//! and per forwarded TCP connection, opened by the agent when asked with `SessionOpen`), and
//! recorded: a row per session and per forwarded connection, `Session.Started` /
//! `Session.Ended` events, and a shell's transcript (asciicast v2, input and output with
//! timing) streamed into the artifact store in numbered parts while the session runs.
//!
//! Invariants: a session needs its node enrolled and connected here; every session ends
//! exactly once in the store, with a reason (shell exit, client or agent gone, terminated,
//! idle timeout, maximum duration, server restart); a session still open when a server
//! stopped is ended at the next start. The operator's side reaches the server over the API's
//! TLS with the bearer token (HTTP/1.1 Upgrade, see `http.rs`); flow control is TCP's on that
//! side and HTTP/2's per stream on the agent's, and no side reads more than it can pass on, so
//! a slow reader holds back only its own stream.

pub mod bridge;
pub mod http;
pub mod transcript;

use std::collections::HashMap;
use std::str::FromStr;
use std::sync::atomic::{AtomicI64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use flotilla_core::session::{SessionKind, check_host, check_user, expiry};
use flotilla_core::{NodeId, NodeStatus};
use flotilla_proto::v1::{
    ServerMessage, SessionFrame, SessionOpen, ShellOpen, TcpOpen, server_message, session_frame, session_open,
};
use flotilla_store::{SessionConnectionRecord, SessionRecord};
use tokio_util::sync::CancellationToken;

use crate::app::AppState;
use crate::platform::streams::AgentStream;
use crate::platform::{ServiceError, now_ms};

/// How long the agent has to open a stream and say whether the session started.
const OPEN_TIMEOUT: Duration = Duration::from_secs(15);
/// The node tag that names the run-as user of that node's shells.
pub const RUN_AS_TAG: &str = "session-run-as";

/// The sessions open in this process.
#[derive(Default)]
pub struct SessionState {
    live: Mutex<HashMap<String, Arc<Live>>>,
}

impl SessionState {
    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<String, Arc<Live>>> {
        self.live.lock().unwrap_or_else(|p| p.into_inner())
    }

    pub fn get(&self, id: &str) -> Option<Arc<Live>> {
        self.lock().get(id).cloned()
    }

    fn insert(&self, live: Arc<Live>) {
        self.lock().insert(live.id.clone(), live);
    }

    fn remove(&self, id: &str) {
        self.lock().remove(id);
    }
}

/// An open session: its counters and the token that ends it.
pub struct Live {
    pub id: String,
    pub node_id: NodeId,
    pub kind: SessionKind,
    pub target: String,
    pub started_at: i64,
    /// Cancelled to end the session (its reason set first).
    pub end: CancellationToken,
    reason: Mutex<Option<String>>,
    pub bytes_in: AtomicI64,
    pub bytes_out: AtomicI64,
    active: AtomicI64,
    next_connection: AtomicI64,
}

impl Live {
    fn new(id: String, node_id: NodeId, kind: SessionKind, target: String) -> Arc<Live> {
        let now = now_ms();
        Arc::new(Live {
            id,
            node_id,
            kind,
            target,
            started_at: now,
            end: CancellationToken::new(),
            reason: Mutex::new(None),
            bytes_in: AtomicI64::new(0),
            bytes_out: AtomicI64::new(0),
            active: AtomicI64::new(now),
            next_connection: AtomicI64::new(1),
        })
    }

    /// Ends the session for `reason`, unless something ended it first.
    pub fn end_with(&self, reason: &str) {
        let mut r = self.reason.lock().unwrap_or_else(|p| p.into_inner());
        if r.is_none() {
            *r = Some(reason.to_owned());
        }
        drop(r);
        self.end.cancel();
    }

    /// Why it ended; `fallback` when nothing said.
    pub fn reason_or(&self, fallback: &str) -> String {
        self.reason.lock().unwrap_or_else(|p| p.into_inner()).clone().unwrap_or_else(|| fallback.to_owned())
    }

    pub fn count_in(&self, n: usize) {
        self.bytes_in.fetch_add(i64::try_from(n).unwrap_or(i64::MAX), Ordering::Relaxed);
        self.active.store(now_ms(), Ordering::Relaxed);
    }

    pub fn count_out(&self, n: usize) {
        self.bytes_out.fetch_add(i64::try_from(n).unwrap_or(i64::MAX), Ordering::Relaxed);
        self.active.store(now_ms(), Ordering::Relaxed);
    }

    fn totals(&self) -> (i64, i64) {
        (self.bytes_in.load(Ordering::Relaxed), self.bytes_out.load(Ordering::Relaxed))
    }
}

fn hex_id(prefix: &str) -> String {
    let raw: [u8; 10] = crate::platform::secret::random_bytes();
    format!("{prefix}{}", raw.iter().map(|b| format!("{b:02x}")).collect::<String>())
}

/// The node, if a session may be opened on it now.
async fn online_node(state: &AppState, node: &str) -> Result<flotilla_core::Node, ServiceError> {
    let node = crate::fleet::get_node(state, node).await?;
    let id = node.id.to_string();
    if node.status == NodeStatus::Deregistered {
        return Err(ServiceError::Clash {
            what: "node",
            id: id.clone(),
            message: format!("node {id} is deregistered: sessions need an enrolled node"),
        });
    }
    if !state.registry.is_connected(&node.id) {
        return Err(ServiceError::Clash {
            what: "node",
            id: id.clone(),
            message: format!(
                "node {id} is not connected (status {}): a session needs its agent online; check it with `flotilla nodes show {id}`",
                node.status.as_str()
            ),
        });
    }
    Ok(node)
}

/// Asks the node's agent for a session stream and waits until the agent says it started.
async fn open_stream(
    state: &AppState,
    node: &NodeId,
    session_id: &str,
    target: session_open::Target,
) -> Result<AgentStream, ServiceError> {
    let stream_id = hex_id("st-");
    let pending = state.registry.streams.expect(&stream_id, node);
    let message = ServerMessage {
        seq: 0,
        body: Some(server_message::Body::SessionOpen(SessionOpen {
            stream_id: stream_id.clone(),
            session_id: session_id.to_owned(),
            target: Some(target),
        })),
    };
    let clash = |message: String| ServiceError::Clash { what: "node", id: node.to_string(), message };
    if !state.registry.send(node, message) {
        return Err(clash(format!("node {node} is not connected, or its queue is full: try again")));
    }
    let mut stream = pending.wait(OPEN_TIMEOUT).await.ok_or_else(|| {
        clash(format!(
            "node {node}'s agent did not open the session within {}s: it may be older than this server (sessions need a newer flotilla-agent)",
            OPEN_TIMEOUT.as_secs()
        ))
    })?;
    match tokio::time::timeout(OPEN_TIMEOUT, stream.inbound.message()).await {
        Ok(Ok(Some(SessionFrame { body: Some(session_frame::Body::Opened(_)) }))) => Ok(stream),
        Ok(Ok(Some(SessionFrame { body: Some(session_frame::Body::Closed(closed)) }))) => {
            Err(clash(format!("node {node} refused the session: {}", closed.reason)))
        }
        _ => Err(clash(format!("node {node}'s agent closed the session stream before the session started"))),
    }
}

/// What `session start` asks for.
pub struct ShellRequest {
    pub node: String,
    pub user: Option<String>,
    pub rows: u16,
    pub cols: u16,
    pub term: String,
    pub opened_by: String,
}

/// An opened session, ready to be bridged to the client.
pub struct Opened {
    pub record: SessionRecord,
    pub live: Arc<Live>,
    pub stream: Option<AgentStream>,
}

/// Starts a shell on the node (the agent checks the user and starts the PTY), records it and
/// starts its watchdog.
pub async fn open_shell(state: &Arc<AppState>, req: ShellRequest) -> Result<Opened, ServiceError> {
    let node = online_node(state, &req.node).await?;
    let user = req
        .user
        .clone()
        .or_else(|| node.tags.get(RUN_AS_TAG).cloned())
        .unwrap_or_else(|| state.config.session_run_as.clone());
    check_user(&user).map_err(ServiceError::Invalid)?;
    if !req.term.chars().all(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.' | '+')) || req.term.len() > 64
    {
        return Err(ServiceError::Invalid(format!("`{}` is not a terminal type", req.term)));
    }
    let id = hex_id("ses-");
    let target = session_open::Target::Shell(ShellOpen {
        user: user.clone(),
        rows: u32::from(req.rows.max(1)),
        cols: u32::from(req.cols.max(1)),
        term: req.term.clone(),
    });
    let stream = open_stream(state, &node.id, &id, target).await?;
    let record = SessionRecord {
        id: id.clone(),
        node_id: node.id.to_string(),
        kind: SessionKind::Shell,
        run_as: user,
        target: String::new(),
        opened_by: req.opened_by,
        started_at: now_ms(),
        ended_at: None,
        bytes_in: 0,
        bytes_out: 0,
        reason: None,
        transcript: Some(transcript::prefix(&id)),
    };
    start(state, record, Some(stream)).await
}

/// Starts a port-forward session to `host:port` from the node (connections come later).
pub async fn open_forward(
    state: &Arc<AppState>,
    node: &str,
    host: &str,
    port: u16,
    opened_by: String,
) -> Result<Opened, ServiceError> {
    check_host(host).map_err(ServiceError::Invalid)?;
    if port == 0 {
        return Err(ServiceError::Invalid("port 0 cannot be connected to".into()));
    }
    let node = online_node(state, node).await?;
    let id = hex_id("ses-");
    let record = SessionRecord {
        id,
        node_id: node.id.to_string(),
        kind: SessionKind::PortForward,
        run_as: String::new(),
        target: target_text(host, port),
        opened_by,
        started_at: now_ms(),
        ended_at: None,
        bytes_in: 0,
        bytes_out: 0,
        reason: None,
        transcript: None,
    };
    start(state, record, None).await
}

fn target_text(host: &str, port: u16) -> String {
    if host.contains(':') { format!("[{host}]:{port}") } else { format!("{host}:{port}") }
}

async fn start(
    state: &Arc<AppState>,
    record: SessionRecord,
    stream: Option<AgentStream>,
) -> Result<Opened, ServiceError> {
    let node_id = NodeId::from_str(&record.node_id).map_err(|e| ServiceError::Internal(e.to_string()))?;
    let live = Live::new(record.id.clone(), node_id, record.kind, record.target.clone());
    let mut record = record;
    record.started_at = live.started_at;
    state.store.create_session(&record).await?;
    state.sessions.insert(live.clone());
    tracing::info!(session = %record.id, node_id = %record.node_id, kind = %record.kind, user = %record.run_as, "session started");
    let (s, l) = (state.clone(), live.clone());
    tokio::spawn(async move { watchdog(s, l).await });
    Ok(Opened { record, live, stream })
}

/// Ends the session when it has been idle, or open, too long; every few seconds records its
/// byte counts so far.
async fn watchdog(state: Arc<AppState>, live: Arc<Live>) {
    let idle = i64::try_from(state.config.session_idle_timeout.as_millis()).unwrap_or(i64::MAX);
    let max = i64::try_from(state.config.session_max_duration.as_millis()).unwrap_or(i64::MAX);
    let mut last_counts = (0, 0);
    loop {
        let wait = match expiry(now_ms(), live.started_at, live.active.load(Ordering::Relaxed), idle, max) {
            Ok(why) => {
                tracing::info!(session = %live.id, "session ended: {}", why.reason());
                live.end_with(why.reason());
                return;
            }
            Err(wait) => wait.clamp(50, 5_000),
        };
        tokio::select! {
            () = live.end.cancelled() => return,
            () = tokio::time::sleep(Duration::from_millis(u64::try_from(wait).unwrap_or(5_000))) => {}
        }
        let counts = live.totals();
        if counts != last_counts {
            last_counts = counts;
            if let Err(e) = state.store.session_bytes(&live.id, counts.0, counts.1).await {
                tracing::warn!(session = %live.id, "cannot record the session's byte counts: {e}");
            }
        }
    }
}

/// Records the end of a session (once) and forgets it.
pub(crate) async fn finish(state: &AppState, live: &Live, fallback: &str) -> String {
    live.end_with(fallback);
    let reason = live.reason_or(fallback);
    let (bytes_in, bytes_out) = live.totals();
    if let Err(e) = state.store.end_session(&live.id, now_ms(), bytes_in, bytes_out, &reason).await {
        tracing::error!(session = %live.id, "cannot record the end of the session: {e}");
    }
    state.sessions.remove(&live.id);
    tracing::info!(session = %live.id, node_id = %live.node_id, %reason, bytes_in, bytes_out, "session ended");
    reason
}

/// One more TCP connection of a port-forward session: asks the agent to connect. A failure is
/// recorded as the connection's row and returned.
pub async fn connect(state: &Arc<AppState>, id: &str) -> Result<(Arc<Live>, i64, AgentStream), ServiceError> {
    let live = state.sessions.get(id).ok_or_else(|| {
        ServiceError::missing(
            "open session",
            id,
            "it ended, or was opened through another server; list them with `flotilla session ls`",
        )
    })?;
    if live.kind != SessionKind::PortForward {
        return Err(ServiceError::Invalid(format!("session {id} is a shell, not a port forward")));
    }
    let seq = live.next_connection.fetch_add(1, Ordering::Relaxed);
    let (host, port) = split_target(&live.target);
    let opened_at = now_ms();
    match open_stream(state, &live.node_id, id, session_open::Target::Tcp(TcpOpen { host, port })).await {
        Ok(stream) => Ok((live, seq, stream)),
        Err(e) => {
            record_connection(state, &live, seq, opened_at, 0, 0, &e.to_string()).await;
            Err(e)
        }
    }
}

fn split_target(target: &str) -> (String, u32) {
    let (host, port) = target.rsplit_once(':').unwrap_or((target, "0"));
    let host = host.strip_prefix('[').and_then(|h| h.strip_suffix(']')).unwrap_or(host);
    (host.to_owned(), port.parse().unwrap_or(0))
}

pub(crate) async fn record_connection(
    state: &AppState,
    live: &Live,
    seq: i64,
    opened_at: i64,
    bytes_in: i64,
    bytes_out: i64,
    reason: &str,
) {
    let record = SessionConnectionRecord {
        session_id: live.id.clone(),
        seq,
        target: live.target.clone(),
        opened_at,
        closed_at: now_ms(),
        bytes_in,
        bytes_out,
        reason: reason.to_owned(),
    };
    if let Err(e) = state.store.record_connection(&record).await {
        tracing::warn!(session = %live.id, "cannot record forwarded connection {seq}: {e}");
    }
}

pub async fn list(state: &AppState, node: Option<&str>) -> Result<Vec<SessionRecord>, ServiceError> {
    Ok(state.store.list_sessions(node).await?)
}

pub async fn get(state: &AppState, id: &str) -> Result<(SessionRecord, Vec<SessionConnectionRecord>), ServiceError> {
    let record = state
        .store
        .get_session(id)
        .await?
        .ok_or_else(|| ServiceError::missing("session", id, "list them with `flotilla session ls`"))?;
    let connections = state.store.list_connections(id).await?;
    Ok((record, connections))
}

/// Ends an open session: its shell's process group is killed on the node, its connections
/// closed. Returns the session as recorded once it ended.
pub async fn terminate(state: &AppState, id: &str) -> Result<SessionRecord, ServiceError> {
    let (record, _) = get(state, id).await?;
    if record.ended_at.is_some() {
        return Err(ServiceError::Clash {
            what: "session",
            id: id.to_owned(),
            message: format!("session {id} already ended ({})", record.reason.unwrap_or_default()),
        });
    }
    let Some(live) = state.sessions.get(id) else {
        return Err(ServiceError::Clash {
            what: "session",
            id: id.to_owned(),
            message: format!("session {id} is not served by this server: terminate it on the server that opened it"),
        });
    };
    live.end_with("terminated");
    // The bridge records the end; wait for it (bounded) so the caller sees the ended row.
    for _ in 0..100 {
        if let Some(r) = state.store.get_session(id).await?
            && r.ended_at.is_some()
        {
            return Ok(r);
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    Ok(get(state, id).await?.0)
}

/// At start: sessions left open by a server that stopped are over.
pub async fn recover(state: &AppState) -> Result<(), ServiceError> {
    let ended = state.store.end_open_sessions(now_ms(), "the server stopped while the session was open").await?;
    if !ended.is_empty() {
        tracing::warn!(count = ended.len(), "ended sessions left open by the previous server process");
    }
    Ok(())
}
