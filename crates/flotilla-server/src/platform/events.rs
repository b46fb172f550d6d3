//! The internal event bus: every command and invocation status change, and every Parameter
//! Store change (name and version only), is published here, for
//! subscribers in the server (notifications and event rules come later) and, through a bounded
//! window of recent events, for operators (`GET /api/v1/events`).
//!
//! Invariants: publishing never blocks or fails (a slow subscriber lags and is told so by the
//! broadcast channel); sequence numbers increase by one per event within a process.

use std::collections::VecDeque;
use std::sync::Mutex;

use flotilla_api as api;
use tokio::sync::broadcast;

use super::now_ms;

/// Events kept for `GET /api/v1/events`.
const RECENT: usize = 10_000;

pub struct EventBus {
    tx: broadcast::Sender<api::Event>,
    recent: Mutex<(u64, VecDeque<api::Event>)>,
}

impl EventBus {
    pub fn new() -> Self {
        let (tx, _) = broadcast::channel(4096);
        EventBus { tx, recent: Mutex::new((0, VecDeque::new())) }
    }

    pub fn publish(&self, kind: &str, command_id: Option<&str>, node_id: Option<&str>, status: &str) {
        let event = api::Event {
            seq: 0,
            time: api::rfc3339(now_ms()),
            kind: kind.to_owned(),
            command_id: command_id.map(str::to_owned),
            node_id: node_id.map(str::to_owned),
            status: status.to_owned(),
            parameter: None,
            version: None,
        };
        self.push(event);
    }

    /// A Parameter Store change (`Create`, `Update`, `Label`, `Delete`): the name and version,
    /// never the value.
    pub fn publish_parameter(&self, operation: &str, name: &str, version: Option<i64>) {
        let event = api::Event {
            seq: 0,
            time: api::rfc3339(now_ms()),
            kind: "parameter.change".to_owned(),
            command_id: None,
            node_id: None,
            status: operation.to_owned(),
            parameter: Some(name.to_owned()),
            version,
        };
        self.push(event);
    }

    fn push(&self, mut event: api::Event) {
        let mut guard = self.recent.lock().unwrap_or_else(|p| p.into_inner());
        guard.0 += 1;
        event.seq = guard.0;
        if guard.1.len() == RECENT {
            guard.1.pop_front();
        }
        guard.1.push_back(event.clone());
        drop(guard);
        // No subscriber is not an error.
        let _ = self.tx.send(event);
    }

    /// Live events from now on.
    #[allow(dead_code)] // the notification and event-rule workers subscribe here (next issues)
    pub fn subscribe(&self) -> broadcast::Receiver<api::Event> {
        self.tx.subscribe()
    }

    /// Recent events with a sequence number above `since`, oldest first.
    pub fn since(&self, since: u64) -> Vec<api::Event> {
        let guard = self.recent.lock().unwrap_or_else(|p| p.into_inner());
        guard.1.iter().filter(|e| e.seq > since).cloned().collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn publish_subscribe_and_window() {
        let bus = EventBus::new();
        let mut rx = bus.subscribe();
        bus.publish("command.status", Some("c-1"), None, "InProgress");
        bus.publish("invocation.status", Some("c-1"), Some("n-1"), "Success");
        assert_eq!(rx.recv().await.expect("event").status, "InProgress");
        assert_eq!(bus.since(0).len(), 2);
        let later = bus.since(1);
        assert_eq!((later.len(), later[0].seq, later[0].node_id.as_deref()), (1, 2, Some("n-1")));
    }
}
