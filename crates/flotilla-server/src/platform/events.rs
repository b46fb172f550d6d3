//! The event log: the server's view of the store's durable, sequenced events (written by the
//! store in the transaction of each state change), for operators (`GET /api/v1/events`, its
//! long poll) and for subscribers inside the server (the assessment driver today; rules and
//! notifications next).
//!
//! Invariants: a subscriber reads from the log, never from a side channel, so it sees every
//! committed event at least once and resumes from any sequence number (after a restart too);
//! in-process commits wake waiters at once (the store's `watch_appended`), and a slow poll
//! covers events committed by another replica on the same database. Knows no capability.

use std::sync::Arc;
use std::time::Duration;

use flotilla_core::{Cursor, EventType};
use flotilla_store::{EventRecord, Store, StoreError};
use tokio::sync::watch;

/// How often a waiter re-reads the log when nothing in this process woke it: the bound on how
/// late an event committed by another replica is seen.
const REPLICA_POLL: Duration = Duration::from_secs(2);

/// Page size of subscriptions.
const PAGE: u32 = 500;

#[derive(Clone)]
pub struct EventLog {
    store: Arc<dyn Store>,
    appended: watch::Receiver<i64>,
}

impl EventLog {
    pub fn new(store: Arc<dyn Store>) -> Self {
        let appended = store.watch_appended();
        EventLog { store, appended }
    }

    pub async fn list(&self, after: Cursor, types: &[EventType], limit: u32) -> Result<Vec<EventRecord>, StoreError> {
        self.store.list_events(after.0, types, limit).await
    }

    pub async fn last(&self) -> Result<Cursor, StoreError> {
        Ok(Cursor(self.store.last_event_seq().await?))
    }

    /// Events after `after`, waiting up to `wait` for the first one (a long poll). Empty when
    /// none came in time.
    pub async fn wait_for(
        &self,
        after: Cursor,
        types: &[EventType],
        limit: u32,
        wait: Duration,
    ) -> Result<Vec<EventRecord>, StoreError> {
        let deadline = tokio::time::Instant::now() + wait;
        let mut woken = self.appended.clone();
        loop {
            // Marked seen BEFORE reading: a commit between the read and the wait still wakes.
            woken.borrow_and_update();
            let events = self.list(after, types, limit).await?;
            let now = tokio::time::Instant::now();
            if !events.is_empty() || now >= deadline {
                return Ok(events);
            }
            let nap = (deadline - now).min(REPLICA_POLL);
            // A closed channel (the store gone) falls back to polling.
            let _ = tokio::time::timeout(nap, woken.changed()).await;
        }
    }

    /// Follows the log from `after` (at least once: a subscriber that stops before acting on
    /// an event resumes from the last sequence it stored and sees it again).
    pub fn subscribe(&self, after: Cursor, types: Vec<EventType>) -> Subscription {
        Subscription { log: self.clone(), cursor: after, types }
    }
}

/// A reader of the log with its own position.
pub struct Subscription {
    log: EventLog,
    cursor: Cursor,
    types: Vec<EventType>,
}

impl Subscription {
    /// The next events, waiting as long as it takes for at least one.
    pub async fn next(&mut self) -> Result<Vec<EventRecord>, StoreError> {
        loop {
            let events = self.log.wait_for(self.cursor, &self.types, PAGE, REPLICA_POLL * 15).await?;
            if let Some(last) = events.last() {
                self.cursor = self.cursor.advance(last.seq);
                return Ok(events);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use flotilla_store::NewEvent;

    fn one(kind: EventType, resource: &str) -> NewEvent {
        NewEvent::new(kind, 1, vec![resource.into()], serde_json::json!({}))
    }

    #[tokio::test]
    async fn a_subscriber_is_woken_by_a_commit_and_resumes_by_sequence() {
        let dir = tempfile::tempdir().expect("tempdir");
        let store: Arc<dyn Store> =
            Arc::new(flotilla_store::SqlStore::open_sqlite(&dir.path().join("db")).await.expect("open"));
        let log = EventLog::new(store.clone());
        store.publish(&[one(EventType::NodeOnline, "n-1")]).await.expect("publish");
        let mut sub = log.subscribe(Cursor::START, vec![EventType::CommandStatusChanged]);
        let waiter = tokio::spawn(async move { sub.next().await.map(|e| (e, sub)) });
        store.publish(&[one(EventType::CommandStatusChanged, "c-1")]).await.expect("publish");
        let (events, mut sub) = waiter.await.expect("join").expect("next");
        assert_eq!(events.iter().map(|e| (e.seq, e.kind)).collect::<Vec<_>>(), [(2, EventType::CommandStatusChanged)]);
        // It goes on from where it stopped: the next read holds only what came after.
        store.publish(&[one(EventType::CommandStatusChanged, "c-2")]).await.expect("publish");
        let later = sub.next().await.expect("next");
        assert_eq!(later.iter().map(|e| e.seq).collect::<Vec<_>>(), [3]);

        // A long poll with nothing new ends empty; one from an old position returns at once.
        let none = log.wait_for(Cursor(3), &[], 10, Duration::from_millis(50)).await.expect("wait");
        assert!(none.is_empty());
        let again = log.wait_for(Cursor(2), &[], 10, Duration::from_secs(30)).await.expect("wait");
        assert_eq!(again.len(), 1);
    }
}
