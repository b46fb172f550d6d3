//! Who is connected to this server process, and the liveness worker that turns silence
//! into ConnectionLost.
//!
//! Invariants: at most one live stream per node (a newer connection replaces the older one);
//! a stream's end marks the node ConnectionLost only if it is still the node's current
//! stream (generation check), so a quick reconnect is never undone by the old stream's
//! cleanup; no lock is held across an await.
//!
//! A node is Online only while a live server process holds its stream: `last_seen` times
//! written by an earlier process do not count once this process has given every agent one
//! heartbeat interval to reconnect (the start-up grace in [`liveness_cutoff`]). Each stream
//! queues a given `RunInvocation` at most once ([`Registry::send_run`]).

use std::collections::{HashMap, HashSet};
use std::sync::Mutex;
use std::time::Duration;

use flotilla_core::{NodeId, UnixMillis, node::is_silent};
use flotilla_proto::v1::ServerMessage;
use flotilla_store::{Store, StoreError};
use tokio::sync::{mpsc, oneshot};

use super::Platform;
use super::now_ms;
use super::worker::WorkerContext;

struct Conn {
    generation: u64,
    last_seen: UnixMillis,
    /// The stream's outbound queue (bounded).
    tx: mpsc::Sender<Result<ServerMessage, tonic::Status>>,
    /// Closes the stream with the given status.
    kick: Option<oneshot::Sender<tonic::Status>>,
    /// Invocation ids whose `RunInvocation` is queued on (or was sent over) this stream and
    /// not yet acknowledged: a re-send on the same stream is a duplicate the agent would only
    /// have to discard.
    runs: HashSet<String>,
}

/// What became of a message for a node.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Sent {
    /// Queued on the node's stream (or, for a run, already queued on it).
    Queued,
    /// The node has no stream here.
    NotConnected,
    /// The node is connected but its outbound queue is full; retry later.
    QueueFull,
}

#[derive(Default)]
struct Inner {
    conns: HashMap<NodeId, Conn>,
    next_generation: u64,
}

/// The connected agents of this process.
#[derive(Default)]
pub struct Registry {
    inner: Mutex<Inner>,
    /// Session streams agents open on request (`SessionOpen`), waited for by id.
    pub streams: super::streams::SessionStreams,
}

impl Registry {
    fn lock(&self) -> std::sync::MutexGuard<'_, Inner> {
        // A panic while holding this lock cannot leave the map inconsistent (single inserts
        // and removes), so a poisoned lock is safe to keep using.
        self.inner.lock().unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    /// Registers a new stream for `id`, replacing (and closing) any older one. Returns the
    /// stream's generation and the receiver that tells it to close.
    pub fn connect(
        &self,
        id: &NodeId,
        now: UnixMillis,
        tx: mpsc::Sender<Result<ServerMessage, tonic::Status>>,
    ) -> (u64, oneshot::Receiver<tonic::Status>) {
        let (kick, rx) = oneshot::channel();
        let mut inner = self.lock();
        inner.next_generation += 1;
        let generation = inner.next_generation;
        let old = inner
            .conns
            .insert(id.clone(), Conn { generation, last_seen: now, tx, kick: Some(kick), runs: HashSet::new() });
        if let Some(Conn { kick: Some(kick), .. }) = old {
            let _ = kick.send(tonic::Status::aborted("replaced by a newer connection from the same node"));
        }
        (generation, rx)
    }

    /// Queues a message for the node's stream; false when it is not connected here or its
    /// queue is full (the caller treats that as not delivered).
    pub fn send(&self, id: &NodeId, message: ServerMessage) -> bool {
        match self.lock().conns.get(id) {
            Some(conn) => conn.tx.try_send(Ok(message)).is_ok(),
            None => false,
        }
    }

    /// Queues `message`, the `RunInvocation` of `invocation_id`, unless this stream already
    /// carries it.
    pub fn send_run(&self, id: &NodeId, invocation_id: &str, message: ServerMessage) -> Sent {
        let mut inner = self.lock();
        let Some(conn) = inner.conns.get_mut(id) else { return Sent::NotConnected };
        if conn.runs.contains(invocation_id) {
            return Sent::Queued;
        }
        match conn.tx.try_send(Ok(message)) {
            Ok(()) => {
                conn.runs.insert(invocation_id.to_owned());
                Sent::Queued
            }
            Err(mpsc::error::TrySendError::Full(_)) => Sent::QueueFull,
            Err(mpsc::error::TrySendError::Closed(_)) => Sent::NotConnected,
        }
    }

    /// The invocation is settled (acknowledged or cancelled): a later `RunInvocation` for it
    /// on this stream is no longer a duplicate.
    pub fn forget_run(&self, id: &NodeId, invocation_id: &str) {
        if let Some(conn) = self.lock().conns.get_mut(id) {
            conn.runs.remove(invocation_id);
        }
    }

    /// Whether the node has a stream here.
    pub fn is_connected(&self, id: &NodeId) -> bool {
        self.lock().conns.contains_key(id)
    }

    pub fn touch(&self, id: &NodeId, generation: u64, now: UnixMillis) {
        if let Some(conn) = self.lock().conns.get_mut(id)
            && conn.generation == generation
        {
            conn.last_seen = conn.last_seen.max(now);
        }
    }

    /// Forgets the stream; true when it was still the node's current one.
    pub fn disconnect(&self, id: &NodeId, generation: u64) -> bool {
        let mut inner = self.lock();
        match inner.conns.get(id) {
            Some(conn) if conn.generation == generation => {
                inner.conns.remove(id);
                true
            }
            _ => false,
        }
    }

    /// Closes the node's stream, if connected here, with `status`.
    pub fn kick(&self, id: &NodeId, status: tonic::Status) {
        if let Some(conn) = self.lock().conns.get_mut(id)
            && let Some(kick) = conn.kick.take()
        {
            let _ = kick.send(status);
        }
    }

    /// Ids of the nodes connected here.
    pub fn connected_ids(&self) -> Vec<NodeId> {
        self.lock().conns.keys().cloned().collect()
    }

    pub fn connected(&self) -> usize {
        self.lock().conns.len()
    }

    /// Writes every connected node's last-seen time to the store in one batch.
    pub async fn flush(&self, store: &dyn Store) -> Result<(), StoreError> {
        let seen: Vec<(NodeId, UnixMillis)> =
            self.lock().conns.iter().map(|(id, c)| (id.clone(), c.last_seen)).collect();
        if seen.is_empty() { Ok(()) } else { store.touch_nodes(&seen).await }
    }

    /// Closes every stream (server shutdown).
    pub fn close_all(&self) {
        for conn in self.lock().conns.values_mut() {
            if let Some(kick) = conn.kick.take() {
                let _ = kick.send(tonic::Status::unavailable("the server is shutting down; reconnect shortly"));
            }
        }
    }

    fn silent(&self, now: UnixMillis, heartbeat_ms: i64, missed: u32) -> Vec<NodeId> {
        self.lock()
            .conns
            .iter()
            .filter(|(_, c)| is_silent(c.last_seen, now, heartbeat_ms, missed))
            .map(|(id, _)| id.clone())
            .collect()
    }
}

/// The last-seen time below which an Online node is ConnectionLost: silence past the liveness
/// window (`missed` heartbeats), and, once this process has run for one heartbeat interval
/// (every live agent has reconnected by then), any time before this process started, since
/// only a process that holds the node's stream may keep it Online.
pub fn liveness_cutoff(now: UnixMillis, started_at: UnixMillis, heartbeat_ms: i64, missed: u32) -> UnixMillis {
    let window = now.saturating_sub(heartbeat_ms.saturating_mul(i64::from(missed)));
    if now >= started_at.saturating_add(heartbeat_ms) { window.max(started_at) } else { window }
}

/// Every heartbeat interval (at most 5 s): flush last-seen times, close silent streams, and
/// mark nodes that are Online in the store but not held by a live stream (silent, or left
/// Online by a process that died) ConnectionLost.
pub async fn liveness_worker(state: std::sync::Arc<Platform>, ctx: WorkerContext) {
    let started_at = now_ms();
    let interval = state.config.heartbeat_interval;
    let heartbeat_ms = i64::try_from(interval.as_millis()).unwrap_or(i64::MAX);
    let missed = state.config.missed_heartbeats;
    let mut ticker = tokio::time::interval(interval.min(Duration::from_secs(5)));
    ticker.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        ctx.idle();
        tokio::select! {
            _ = ctx.cancelled() => {
                state.registry.close_all();
                return;
            }
            _ = ticker.tick() => {}
        }
        ctx.running();
        let now = now_ms();
        for id in state.registry.silent(now, heartbeat_ms, missed) {
            tracing::info!(node_id = %id, "node missed {missed} heartbeats; closing its stream");
            state.registry.kick(&id, tonic::Status::deadline_exceeded("no heartbeat received in time"));
        }
        if let Err(e) = state.registry.flush(state.store.as_ref()).await {
            tracing::warn!("cannot record last-seen times: {e}");
            continue;
        }
        let cutoff = liveness_cutoff(now, started_at, heartbeat_ms, missed);
        match state.store.expire_silent_nodes(cutoff).await {
            Ok(lost) => {
                for id in lost {
                    tracing::info!(node_id = %id, "node silent past its heartbeat deadline: ConnectionLost");
                }
            }
            Err(e) => tracing::warn!("cannot expire silent nodes: {e}"),
        }
        state.metrics.connected_agents.set(i64::try_from(state.registry.connected()).unwrap_or(i64::MAX));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn newer_connection_wins() {
        let reg = Registry::default();
        let id = NodeId::from_random([1; 9]);
        let (tx, _out) = mpsc::channel(1);
        let (g1, mut rx1) = reg.connect(&id, 0, tx.clone());
        let (g2, _rx2) = reg.connect(&id, 10, tx);
        assert!(rx1.try_recv().is_ok(), "the old stream is told to close");
        assert!(!reg.disconnect(&id, g1), "the old stream's end does not disconnect the node");
        assert_eq!(reg.connected(), 1);
        reg.touch(&id, g1, 10_000);
        assert_eq!(reg.silent(3_500, 1_000, 3), vec![id.clone()], "a stale generation cannot refresh liveness");
        reg.touch(&id, g2, 3_000);
        assert!(reg.silent(3_500, 1_000, 3).is_empty());
        assert!(reg.disconnect(&id, g2));
        assert_eq!(reg.connected(), 0);
    }

    #[test]
    fn a_run_is_queued_once_per_stream() {
        let reg = Registry::default();
        let id = NodeId::from_random([2; 9]);
        let run = || ServerMessage { seq: 0, body: None };
        assert_eq!(reg.send_run(&id, "c-1.n", run()), Sent::NotConnected);
        let (tx, mut out) = mpsc::channel(2);
        reg.connect(&id, 0, tx.clone());
        assert_eq!(reg.send_run(&id, "c-1.n", run()), Sent::Queued);
        assert_eq!(reg.send_run(&id, "c-1.n", run()), Sent::Queued, "a duplicate is not queued again");
        assert_eq!(reg.send_run(&id, "c-2.n", run()), Sent::Queued);
        assert_eq!(reg.send_run(&id, "c-3.n", run()), Sent::QueueFull, "a full queue is not 'not connected'");
        assert!(out.try_recv().is_ok() && out.try_recv().is_ok());
        assert!(out.try_recv().is_err(), "exactly one message per invocation");
        reg.forget_run(&id, "c-1.n");
        assert_eq!(reg.send_run(&id, "c-1.n", run()), Sent::Queued);
        assert!(out.try_recv().is_ok(), "after its acknowledgement an id may be sent again");
        // A new stream starts with nothing queued: a reconnect re-sends.
        reg.connect(&id, 0, tx);
        assert_eq!(reg.send_run(&id, "c-2.n", run()), Sent::Queued);
        assert!(out.try_recv().is_ok());
    }

    #[test]
    fn timestamps_of_an_earlier_process_stop_counting_after_one_heartbeat() {
        let (hb, missed, start) = (1_000, 3, 100_000);
        // Within the start-up grace only silence counts: agents are still reconnecting.
        assert_eq!(liveness_cutoff(start + 500, start, hb, missed), start + 500 - 3_000);
        // After it, a last-seen time from before this process started is not Online.
        assert_eq!(liveness_cutoff(start + 1_000, start, hb, missed), start);
        assert_eq!(liveness_cutoff(start + 2_000, start, hb, missed), start);
        // Long after, plain silence past the window decides again.
        assert_eq!(liveness_cutoff(start + 10_000, start, hb, missed), start + 7_000);
    }
}
