//! The durable event log's part of the storage interface: its records and [`EventStore`].
//!
//! Events are written by the store itself, inside the transaction of the state change they
//! describe (a transactional outbox, `sql::events::append`), so an event exists exactly when
//! its change committed. This trait is the read side, retention, and [`EventStore::publish`]
//! for events that record no stored change of their own.
//!
//! Invariants: `seq` increases, is never reused (not after deletion, retention or a restart)
//! and a reader paging by `seq > after` never skips an event that commits later; the type is
//! parsed once here, and an unknown stored type is an error naming the row.

use async_trait::async_trait;
use flotilla_core::{EventType, UnixMillis};

use crate::StoreError;

/// An event to append.
#[derive(Debug, Clone, PartialEq)]
pub struct NewEvent {
    pub kind: EventType,
    pub time: UnixMillis,
    /// The ids the event is about: command id, node id, run id, parameter name ...
    pub resources: Vec<String>,
    /// A JSON object; never a secret (a parameter's name and version, never its value).
    pub detail: serde_json::Value,
}

impl NewEvent {
    pub fn new(kind: EventType, time: UnixMillis, resources: Vec<String>, detail: serde_json::Value) -> Self {
        NewEvent { kind, time, resources, detail }
    }
}

/// An event as stored.
#[derive(Debug, Clone, PartialEq)]
pub struct EventRecord {
    pub seq: i64,
    /// Stable and unique (`ev-SEQ`): what a webhook delivery names as `Flotilla-Event-Id`.
    pub id: String,
    pub time: UnixMillis,
    pub kind: EventType,
    /// The capability that emitted it (`EventType::source`).
    pub source: String,
    pub resources: Vec<String>,
    pub detail: serde_json::Value,
}

/// The event log.
#[async_trait]
pub trait EventStore: Send + Sync {
    /// Events with `seq > after`, oldest first, at most `limit`; only the given types when
    /// `types` is not empty.
    async fn list_events(&self, after: i64, types: &[EventType], limit: u32) -> Result<Vec<EventRecord>, StoreError>;
    /// The highest sequence number handed out so far (0 for an empty log); every event at or
    /// below it has committed. Stays put when old events are deleted.
    async fn last_event_seq(&self) -> Result<i64, StoreError>;
    /// Deletes events older than `cutoff` (retention); returns how many.
    async fn delete_events_before(&self, cutoff: UnixMillis) -> Result<u64, StoreError>;
    /// Appends events in a transaction of their own; returns their sequence numbers. For
    /// events that are not the record of a stored change (a state change is recorded by the
    /// store method that makes it).
    async fn publish(&self, events: &[NewEvent]) -> Result<Vec<i64>, StoreError>;
    /// Told the highest sequence number this store handle has committed, after each commit
    /// that appended events (never before: a woken reader finds them). Other processes'
    /// events are not seen here; readers poll slowly for those.
    fn watch_appended(&self) -> tokio::sync::watch::Receiver<i64>;
}
