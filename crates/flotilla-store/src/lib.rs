//! Flotilla's storage: one [`Store`] interface, two real back ends (SQLite for the embedded
//! default, PostgreSQL for scale), versioned migrations embedded for each.
//!
//! Architecture invariant: the server sees only the [`Store`] trait; SQL lives here and nowhere
//! else. Both back ends run the same contract suite (`tests/contract.rs`). Queries are runtime
//! (`sqlx::query`), written once in the `$N` placeholder form both engines accept, so the
//! back ends differ only in their connection set-up and migrations.

mod assessments;
mod error;
mod inventory;
mod parameter;
mod records;
mod schedules;
mod sql;
mod vulndb;

pub use assessments::{AssessmentNodeRecord, AssessmentRunRecord, AssessmentStore, AssessmentTemplate, FindingRecord};
pub use error::StoreError;
pub use inventory::{InventoryChange, InventorySetting, InventoryStore, StoredInventoryType};
pub use parameter::{MasterKeyRecord, ParameterLabel, ParameterPut, ParameterRecord, ParameterStore};
pub use records::{CommandRecord, DocumentHead, DocumentVersion, InvocationRecord};
pub use schedules::{OccurrenceOutcome, OccurrenceRecord, ScheduleStore, UnknownOutcome};
pub use sql::SqlStore;
pub use vulndb::{AdvisoryKeyHit, AdvisoryRecord, AdvisoryStats, ImportOutcome, StoredAdvisory};

use async_trait::async_trait;
use flotilla_core::{Activation, Node, NodeId, NodeInfo, Tags, UnixMillis};

/// A saved target query, used as `group:NAME`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TargetGroup {
    pub name: String,
    /// Target expressions, each as the user wrote it.
    pub targets: Vec<String>,
    pub created_at: UnixMillis,
}

/// What happened when an agent tried to enroll under an activation.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Enrollment {
    Enrolled,
    /// Another agent took the last registration between check and insert.
    LimitReached,
}

/// The storage interface of the control plane.
#[async_trait]
pub trait Store: InventoryStore + AssessmentStore + ParameterStore + ScheduleStore + Send + Sync + 'static {
    /// Which engine this is (`sqlite` or `postgres`), for logs and readiness.
    fn backend(&self) -> &'static str;
    /// Cheap round trip, for readiness.
    async fn ping(&self) -> Result<(), StoreError>;

    async fn create_activation(&self, activation: &Activation) -> Result<(), StoreError>;
    async fn get_activation(&self, id: &str) -> Result<Option<Activation>, StoreError>;
    async fn list_activations(&self) -> Result<Vec<Activation>, StoreError>;
    /// Returns false when there was no such activation.
    async fn delete_activation(&self, id: &str) -> Result<bool, StoreError>;

    /// Atomically takes one registration from the activation (if still under its limit) and
    /// inserts the node. Nothing changes when the limit is reached.
    async fn enroll_node(&self, activation_id: &str, node: &Node) -> Result<Enrollment, StoreError>;
    async fn get_node(&self, id: &NodeId) -> Result<Option<Node>, StoreError>;
    async fn list_nodes(&self) -> Result<Vec<Node>, StoreError>;
    /// Records what the agent reported at connect and marks it Online. Returns false when the
    /// node does not exist or is deregistered (then nothing changes).
    async fn node_connected(&self, id: &NodeId, info: &NodeInfo, now: UnixMillis) -> Result<bool, StoreError>;
    /// Marks nodes ConnectionLost, unless deregistered meanwhile.
    async fn nodes_lost(&self, ids: &[NodeId]) -> Result<(), StoreError>;
    /// Marks every Online node not heard from since `before` ConnectionLost; returns their ids.
    /// This is how a node whose replica died, or whose server restarted, leaves Online.
    async fn expire_silent_nodes(&self, before: UnixMillis) -> Result<Vec<NodeId>, StoreError>;
    /// Batched last-seen update for connected nodes.
    async fn touch_nodes(&self, seen: &[(NodeId, UnixMillis)]) -> Result<(), StoreError>;
    /// Replaces a node's tags. Returns false when the node does not exist.
    async fn set_tags(&self, id: &NodeId, tags: &Tags) -> Result<bool, StoreError>;
    /// Marks the node Deregistered; its credential is refused from then on. Returns false when
    /// the node does not exist.
    async fn deregister_node(&self, id: &NodeId) -> Result<bool, StoreError>;

    async fn put_api_token(&self, name: &str, token_hash: &str, now: UnixMillis) -> Result<(), StoreError>;
    /// The token's name when the hash is known.
    async fn find_api_token(&self, token_hash: &str) -> Result<Option<String>, StoreError>;

    /// Creates or replaces a group.
    async fn put_group(&self, group: &TargetGroup) -> Result<(), StoreError>;
    async fn list_groups(&self) -> Result<Vec<TargetGroup>, StoreError>;
    async fn delete_group(&self, name: &str) -> Result<bool, StoreError>;

    /// Stores `doc` (its `version` is ignored) as the next version of its document; version 1
    /// creates it and is its default. Returns the new version.
    async fn put_document(&self, doc: &DocumentVersion) -> Result<i64, StoreError>;
    /// A version of a document; its default version when `version` is None.
    async fn get_document(&self, name: &str, version: Option<i64>) -> Result<Option<DocumentVersion>, StoreError>;
    async fn list_documents(&self) -> Result<Vec<DocumentHead>, StoreError>;
    async fn get_document_head(&self, name: &str) -> Result<Option<DocumentHead>, StoreError>;
    /// Returns false when that version does not exist.
    async fn set_default_document_version(&self, name: &str, version: i64) -> Result<bool, StoreError>;

    /// Inserts the command and one Pending invocation per node, atomically.
    async fn create_command(&self, command: &CommandRecord, nodes: &[String]) -> Result<(), StoreError>;
    async fn get_command(&self, id: &str) -> Result<Option<CommandRecord>, StoreError>;
    /// Newest first.
    async fn list_commands(&self, limit: u32) -> Result<Vec<CommandRecord>, StoreError>;
    /// Ids of commands that are not finished (to resume after a restart).
    async fn unfinished_commands(&self) -> Result<Vec<String>, StoreError>;
    async fn update_command(&self, command: &CommandRecord) -> Result<(), StoreError>;
    async fn list_invocations(&self, command_id: &str) -> Result<Vec<InvocationRecord>, StoreError>;
    /// Invocations per status for each of `command_ids` (one query, for listings).
    async fn invocation_counts(&self, command_ids: &[String]) -> Result<Vec<(String, String, u32)>, StoreError>;
    /// Deletes every command that ended before `cutoff`, with its invocations, in bulk;
    /// returns the deleted ids (their artifacts are the caller's to delete).
    async fn delete_commands_ended_before(&self, cutoff: UnixMillis) -> Result<Vec<String>, StoreError>;
    /// Writes many invocation states in one transaction (results arrive in storms).
    async fn update_invocations(&self, invocations: &[InvocationRecord]) -> Result<(), StoreError>;

    // ---- Advisory database (vulnerability assessment; SQL in `vulndb.rs`) ----

    /// Imports records in one transaction: a new id is inserted; a known id with a newer
    /// `modified` replaces the record and all its index rows; otherwise nothing changes.
    /// Returns one outcome per record, in order.
    async fn import_advisories(
        &self,
        records: &[AdvisoryRecord],
        now: UnixMillis,
    ) -> Result<Vec<ImportOutcome>, StoreError>;
    /// Ids and `modified_micros` of the advisories indexed under any `(ecosystem, package)`
    /// of `keys`, each once, sorted by id.
    async fn advisory_ids_for(&self, keys: &[(String, String)]) -> Result<Vec<(String, i64)>, StoreError>;
    /// The same lookup, saying which key each advisory was found under (a hit per key).
    async fn advisory_ids_by_key(&self, keys: &[(String, String)]) -> Result<Vec<AdvisoryKeyHit>, StoreError>;
    /// The stored records with these ids, sorted by id; unknown ids are skipped.
    async fn get_advisories(&self, ids: &[String]) -> Result<Vec<StoredAdvisory>, StoreError>;
    async fn advisory_stats(&self) -> Result<AdvisoryStats, StoreError>;
}
