//! Notifications' part of the storage interface: topics, subscriptions, rules, the durable
//! deliveries of events to subscriptions, and the dispatcher's cursor into the event log.
//!
//! Invariants: [`NotificationStore::route`] writes a page's deliveries and moves the cursor in
//! one transaction, so no routed event is lost or routed twice after a restart; a delivery row
//! per (subscription, event) is unique; deleting a topic deletes its subscriptions and their
//! deliveries.

use std::collections::BTreeMap;

use async_trait::async_trait;
use flotilla_core::UnixMillis;
use flotilla_core::notification::{DeliveryStatus, SubscriptionKind};

use crate::StoreError;

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TopicRecord {
    pub name: String,
    pub created_at: UnixMillis,
    pub subscriptions: u64,
}

/// A subscription as stored. `secret` is the key service's sealed form (base64), never clear.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SubscriptionRecord {
    pub id: String,
    pub topic: String,
    pub kind: SubscriptionKind,
    pub endpoint: String,
    pub secret: Option<String>,
    pub ca_pem: Option<String>,
    pub timeout_ms: i64,
    pub parameters: BTreeMap<String, Vec<String>>,
    pub targets: Vec<String>,
    pub created_at: UnixMillis,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RuleRecord {
    pub id: String,
    pub name: String,
    /// The pattern's JSON text.
    pub pattern: String,
    /// `topic:NAME`, `assessment:TEMPLATE` or `run:DOC`.
    pub target: String,
    pub parameters: BTreeMap<String, Vec<String>>,
    pub targets: Vec<String>,
    pub enabled: bool,
    /// Why the last match could not be acted on; None when fine.
    pub problem: Option<String>,
    pub created_at: UnixMillis,
    pub updated_at: UnixMillis,
}

/// A delivery to create.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NewDelivery {
    pub subscription_id: String,
    pub event_seq: i64,
    pub event_id: String,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DeliveryRecord {
    pub subscription_id: String,
    pub event_seq: i64,
    pub event_id: String,
    pub status: DeliveryStatus,
    pub attempts: i64,
    pub next_attempt_at: UnixMillis,
    pub last_error: Option<String>,
    pub updated_at: UnixMillis,
}

#[async_trait]
pub trait NotificationStore: Send + Sync {
    /// False when a topic of that name exists.
    async fn create_topic(&self, name: &str, now: UnixMillis) -> Result<bool, StoreError>;
    async fn list_topics(&self) -> Result<Vec<TopicRecord>, StoreError>;
    async fn topic_exists(&self, name: &str) -> Result<bool, StoreError>;
    /// Deletes the topic, its subscriptions and their deliveries; false when there was none.
    async fn delete_topic(&self, name: &str) -> Result<bool, StoreError>;

    /// False when its topic does not exist.
    async fn create_subscription(&self, s: &SubscriptionRecord) -> Result<bool, StoreError>;
    /// All subscriptions, or a topic's, oldest first.
    async fn list_subscriptions(&self, topic: Option<&str>) -> Result<Vec<SubscriptionRecord>, StoreError>;
    async fn get_subscription(&self, id: &str) -> Result<Option<SubscriptionRecord>, StoreError>;
    async fn delete_subscription(&self, id: &str) -> Result<bool, StoreError>;

    /// False when a rule of that name exists.
    async fn create_rule(&self, r: &RuleRecord) -> Result<bool, StoreError>;
    async fn list_rules(&self) -> Result<Vec<RuleRecord>, StoreError>;
    async fn get_rule(&self, id_or_name: &str) -> Result<Option<RuleRecord>, StoreError>;
    async fn delete_rule(&self, id: &str) -> Result<bool, StoreError>;
    async fn set_rule_enabled(&self, id: &str, enabled: bool, now: UnixMillis) -> Result<bool, StoreError>;
    /// Records (or clears, with None) why a rule could not act.
    async fn set_rule_problem(&self, id: &str, problem: Option<&str>) -> Result<(), StoreError>;

    /// Where the reader `name` stands in the event log (0 when it never routed).
    async fn notification_cursor(&self, name: &str) -> Result<Option<i64>, StoreError>;
    /// In one transaction: creates the deliveries (a row that exists is kept as it is), all
    /// Pending and due at `now`, and moves the cursor `name` to `seq`.
    async fn route(&self, name: &str, seq: i64, deliveries: &[NewDelivery], now: UnixMillis) -> Result<(), StoreError>;
    /// A subscription's open deliveries due at `now`, oldest event first, at most `limit`.
    async fn due_deliveries(
        &self,
        subscription_id: &str,
        now: UnixMillis,
        limit: u32,
    ) -> Result<Vec<DeliveryRecord>, StoreError>;
    /// The earliest next attempt of any open delivery.
    async fn next_delivery_due(&self) -> Result<Option<UnixMillis>, StoreError>;
    /// Records the outcome of one attempt.
    async fn record_attempt(&self, d: &DeliveryRecord) -> Result<(), StoreError>;
    /// A subscription's deliveries, newest event first, at most `limit`.
    async fn list_deliveries(&self, subscription_id: &str, limit: u32) -> Result<Vec<DeliveryRecord>, StoreError>;
    /// Counts of a subscription's deliveries by status.
    async fn delivery_counts(&self, subscription_id: &str) -> Result<BTreeMap<DeliveryStatus, u64>, StoreError>;
    /// Makes a subscription's dead letters Pending again, due at `now`, attempts reset; how many.
    async fn redrive(&self, subscription_id: &str, now: UnixMillis) -> Result<u64, StoreError>;
    /// Deletes Delivered rows last changed before `cutoff` (never an open or dead-lettered
    /// one); how many.
    async fn delete_delivered_before(&self, cutoff: UnixMillis) -> Result<u64, StoreError>;

    /// Whether the shipped data `name` was created once already (see `seeds`).
    async fn seed_applied(&self, name: &str) -> Result<bool, StoreError>;
    /// Records that `name` was created: it is never created again.
    async fn mark_seed(&self, name: &str, now: UnixMillis) -> Result<(), StoreError>;
}
