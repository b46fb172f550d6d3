//! Sessions' part of the storage interface: one record per shell or port-forward session and
//! one per forwarded TCP connection. Starting and ending a session append `Session.Started`
//! and `Session.Ended` to the event log in the same transaction.

use async_trait::async_trait;
use flotilla_core::UnixMillis;
use flotilla_core::session::SessionKind;

use crate::StoreError;

/// A session, open (`ended_at` empty) or ended.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SessionRecord {
    pub id: String,
    pub node_id: String,
    pub kind: SessionKind,
    /// The node-side user the shell runs as; empty for a port forward.
    pub run_as: String,
    /// A port forward's `HOST:PORT` on the node's side; empty for a shell.
    pub target: String,
    /// The API token's name that opened it.
    pub opened_by: String,
    pub started_at: UnixMillis,
    pub ended_at: Option<UnixMillis>,
    /// From the operator to the node.
    pub bytes_in: i64,
    /// From the node to the operator.
    pub bytes_out: i64,
    pub reason: Option<String>,
    /// Artifact prefix of the transcript's numbered parts (shells).
    pub transcript: Option<String>,
}

/// One TCP connection of a port forward, recorded when it closed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SessionConnectionRecord {
    pub session_id: String,
    /// 1, 2, ... in the order the connections were opened.
    pub seq: i64,
    pub target: String,
    pub opened_at: UnixMillis,
    pub closed_at: UnixMillis,
    pub bytes_in: i64,
    pub bytes_out: i64,
    /// How it ended: `closed`, `connection refused`, `cannot resolve ...`, ...
    pub reason: String,
}

#[async_trait]
pub trait SessionStore: Send + Sync {
    /// Stores a new session and its `Session.Started` event.
    async fn create_session(&self, session: &SessionRecord) -> Result<(), StoreError>;
    /// Records the byte counts of an open session so far.
    async fn session_bytes(&self, id: &str, bytes_in: i64, bytes_out: i64) -> Result<(), StoreError>;
    /// Ends an open session (with its `Session.Ended` event); false when it had already ended.
    async fn end_session(
        &self,
        id: &str,
        ended_at: UnixMillis,
        bytes_in: i64,
        bytes_out: i64,
        reason: &str,
    ) -> Result<bool, StoreError>;
    /// Ends every open session (a server that stopped without ending them); returns their ids.
    async fn end_open_sessions(&self, ended_at: UnixMillis, reason: &str) -> Result<Vec<String>, StoreError>;
    async fn get_session(&self, id: &str) -> Result<Option<SessionRecord>, StoreError>;
    /// Newest first, of one node or all.
    async fn list_sessions(&self, node_id: Option<&str>) -> Result<Vec<SessionRecord>, StoreError>;
    async fn record_connection(&self, connection: &SessionConnectionRecord) -> Result<(), StoreError>;
    /// A port forward's connections, in order.
    async fn list_connections(&self, session_id: &str) -> Result<Vec<SessionConnectionRecord>, StoreError>;
}
