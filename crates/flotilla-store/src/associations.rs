//! State Manager's part of the storage interface: associations, each node's last run of each,
//! and the settling of finished runs into association status and compliance in one
//! transaction (with their `Association.Compliance` events).

use std::collections::BTreeMap;

use async_trait::async_trait;
use flotilla_core::UnixMillis;
use flotilla_core::association::AssociationStatus;
use flotilla_core::compliance::ComplianceSeverity;

use crate::StoreError;

/// An association as stored.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AssociationRecord {
    pub id: String,
    pub name: String,
    pub document: String,
    /// None: the document's default version at each run.
    pub document_version: Option<i64>,
    pub parameters: BTreeMap<String, Vec<String>>,
    pub targets: Vec<String>,
    pub schedule: Option<String>,
    pub timezone: Option<String>,
    pub max_concurrency: String,
    pub max_errors: String,
    pub compliance_severity: ComplianceSeverity,
    pub apply_only_at_cron_interval: bool,
    /// Raised whenever every targeted node must run it again; 0: not asked to run yet.
    pub generation: i64,
    /// When the schedule was last set: occurrences before it are never caught up.
    pub schedule_since: UnixMillis,
    pub created_at: UnixMillis,
    pub updated_at: UnixMillis,
}

/// One node's last run of an association.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AssociationNodeRecord {
    pub association_id: String,
    pub node_id: String,
    pub generation: i64,
    pub status: AssociationStatus,
    /// Whether the last run changed anything; None when its steps did not say (scripts).
    pub changed: Option<bool>,
    pub detail: String,
    pub command_id: Option<String>,
    /// The last run never reached the node.
    pub undelivered: bool,
    pub updated_at: UnixMillis,
}

/// A finished run on one node, to be settled.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SettledRun {
    pub node_id: String,
    pub command_id: String,
    pub status: AssociationStatus,
    pub changed: Option<bool>,
    pub detail: String,
    pub undelivered: bool,
    pub time: UnixMillis,
}

#[async_trait]
pub trait AssociationStore: Send + Sync {
    /// Inserts a new association; false when its name is taken.
    async fn create_association(&self, a: &AssociationRecord) -> Result<bool, StoreError>;
    /// Replaces an association's settings (by id); false when it does not exist.
    async fn update_association(&self, a: &AssociationRecord) -> Result<bool, StoreError>;
    /// By id or by name.
    async fn get_association(&self, id_or_name: &str) -> Result<Option<AssociationRecord>, StoreError>;
    async fn list_associations(&self) -> Result<Vec<AssociationRecord>, StoreError>;
    /// Deletes it with its node rows and its compliance items; false when it did not exist.
    async fn delete_association(&self, id: &str) -> Result<bool, StoreError>;
    /// Raises the generation by one and returns the new value (None: no such association).
    async fn bump_association_generation(&self, id: &str) -> Result<Option<i64>, StoreError>;
    async fn association_nodes(&self, id: &str) -> Result<Vec<AssociationNodeRecord>, StoreError>;
    /// Every node row of every association whose run has not been settled (status Pending).
    async fn pending_association_nodes(&self) -> Result<Vec<AssociationNodeRecord>, StoreError>;
    /// Records that `command_id` now applies generation `generation` to `nodes` (Pending).
    async fn start_association_runs(
        &self,
        id: &str,
        generation: i64,
        command_id: &str,
        nodes: &[String],
        time: UnixMillis,
    ) -> Result<(), StoreError>;
    /// Settles finished runs: each node's row, its Association compliance item and history,
    /// and an `Association.Compliance` event for each, in one transaction. A run whose row now
    /// names another command (superseded) is skipped.
    async fn settle_association_runs(&self, a: &AssociationRecord, runs: &[SettledRun]) -> Result<(), StoreError>;
}
