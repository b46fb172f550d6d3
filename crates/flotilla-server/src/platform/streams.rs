//! Where a session stream opened by an agent (the `Session` rpc) meets the request that asked
//! for it: the requester registers a fresh stream id for a node and waits; the gateway hands
//! over the agent's stream named by that id, only if it came from that node.
//!
//! Invariants: a stream id is used once; a stream from another node than the one asked is
//! refused (and the waiter keeps waiting); a waiter that gave up leaves nothing behind; no
//! lock is held across an await.

use std::collections::HashMap;
use std::sync::Mutex;

use flotilla_core::NodeId;
use flotilla_proto::v1::SessionFrame;
use tokio::sync::{mpsc, oneshot};

/// Frames a session stream may have queued towards the agent (each at most a read's worth).
pub const OUTBOUND_QUEUE: usize = 4;

/// An agent's session stream: what it sends, and where to put what goes to it.
pub struct AgentStream {
    pub inbound: tonic::Streaming<SessionFrame>,
    pub outbound: mpsc::Sender<Result<SessionFrame, tonic::Status>>,
}

struct Waiting {
    node: NodeId,
    tx: oneshot::Sender<AgentStream>,
}

/// Stream ids being waited for.
#[derive(Default)]
pub struct SessionStreams {
    waiting: Mutex<HashMap<String, Waiting>>,
}

/// Why a stream was not handed over.
#[derive(Debug, PartialEq, Eq)]
pub enum Refused {
    /// Nobody waits for this id (never asked, already used, or given up).
    Unknown,
    /// The id was asked of another node.
    WrongNode,
}

/// The waiting side's handle; dropping it withdraws the id.
pub struct Pending<'a> {
    streams: &'a SessionStreams,
    id: String,
    rx: Option<oneshot::Receiver<AgentStream>>,
}

impl Pending<'_> {
    /// The agent's stream, or `None` once `timeout` passed.
    pub async fn wait(mut self, timeout: std::time::Duration) -> Option<AgentStream> {
        let rx = self.rx.take()?;
        tokio::time::timeout(timeout, rx).await.ok().and_then(Result::ok)
    }
}

impl Drop for Pending<'_> {
    fn drop(&mut self) {
        self.streams.lock().remove(&self.id);
    }
}

impl SessionStreams {
    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<String, Waiting>> {
        self.waiting.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Waits for `node`'s stream named `id` (a fresh random id chosen by the caller).
    pub fn expect(&self, id: &str, node: &NodeId) -> Pending<'_> {
        let (tx, rx) = oneshot::channel();
        self.lock().insert(id.to_owned(), Waiting { node: node.clone(), tx });
        Pending { streams: self, id: id.to_owned(), rx: Some(rx) }
    }

    /// Hands `stream` from `node` to whoever waits for `id`.
    pub fn deliver(&self, id: &str, node: &NodeId, stream: AgentStream) -> Result<(), Refused> {
        let mut waiting = self.lock();
        match waiting.get(id) {
            None => return Err(Refused::Unknown),
            Some(w) if &w.node != node => return Err(Refused::WrongNode),
            Some(_) => {}
        }
        let w = waiting.remove(id).ok_or(Refused::Unknown)?;
        drop(waiting);
        w.tx.send(stream).map_err(|_| Refused::Unknown)
    }
}
