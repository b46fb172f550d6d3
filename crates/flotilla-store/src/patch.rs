//! Patch Manager's part of the storage interface: baselines, each OS family's default, patch
//! groups, and each node's last patch operation (a summary and one state per package). A
//! node's result replaces its previous states, sets its `Patch` compliance item and appends
//! `Patch.Compliance`, all in one transaction.

use async_trait::async_trait;
use flotilla_core::UnixMillis;
use flotilla_core::compliance::{ComplianceSeverity, ComplianceStatus};
use flotilla_core::patch::PatchState;

use crate::{ComplianceItem, NewEvent, StoreError};

/// A stored baseline: its spec is the API's JSON form, already validated.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BaselineRecord {
    pub id: String,
    pub name: String,
    /// The OS family (`debian`, `ubuntu`, `rhel`, `alpine`).
    pub os: String,
    pub spec: String,
    pub predefined: bool,
    pub created_at: UnixMillis,
    pub updated_at: UnixMillis,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PatchGroupRecord {
    pub name: String,
    pub baseline_id: String,
}

/// A node's last patch operation.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PatchSummaryRecord {
    pub node_id: String,
    pub baseline_id: String,
    pub baseline_name: String,
    /// Empty when the node has no `Patch Group` tag.
    pub patch_group: String,
    pub operation: String,
    pub reboot_option: String,
    pub status: ComplianceStatus,
    pub severity: ComplianceSeverity,
    /// JSON object: state name → count.
    pub counts: String,
    pub invocation_id: String,
    pub started_at: UnixMillis,
    pub ended_at: UnixMillis,
}

/// One package's patch state on a node.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PatchStateRecord {
    pub name: String,
    pub arch: String,
    pub state: PatchState,
    pub installed_version: String,
    pub available_version: Option<String>,
    pub severity: ComplianceSeverity,
    pub classification: Option<String>,
    pub cves: Vec<String>,
    pub repository: Option<String>,
}

/// Everything one operation's report writes.
#[derive(Debug, Clone)]
pub struct PatchResult {
    pub summary: PatchSummaryRecord,
    pub states: Vec<PatchStateRecord>,
    pub compliance: ComplianceItem,
    pub event: NewEvent,
}

#[async_trait]
pub trait PatchStore: Send + Sync {
    /// False when a baseline of that name exists.
    async fn create_baseline(&self, baseline: &BaselineRecord) -> Result<bool, StoreError>;
    /// Replaces a baseline's name and spec (its OS stays); false when it does not exist.
    async fn update_baseline(&self, baseline: &BaselineRecord) -> Result<bool, StoreError>;
    /// False when it does not exist.
    async fn delete_baseline(&self, id: &str) -> Result<bool, StoreError>;
    /// By id or by name.
    async fn get_baseline(&self, id_or_name: &str) -> Result<Option<BaselineRecord>, StoreError>;
    async fn list_baselines(&self) -> Result<Vec<BaselineRecord>, StoreError>;
    async fn set_default_baseline(&self, os: &str, baseline_id: &str) -> Result<(), StoreError>;
    /// (OS family, baseline id), by family.
    async fn default_baselines(&self) -> Result<Vec<(String, String)>, StoreError>;
    async fn set_patch_group(&self, group: &PatchGroupRecord) -> Result<(), StoreError>;
    async fn list_patch_groups(&self) -> Result<Vec<PatchGroupRecord>, StoreError>;
    /// Stores one operation's result (see the module comment).
    async fn record_patch_result(&self, result: &PatchResult) -> Result<(), StoreError>;
    /// A node's package states, by name.
    async fn patch_states(&self, node_id: &str) -> Result<Vec<PatchStateRecord>, StoreError>;
    /// Every node's last operation, by node.
    async fn patch_summaries(&self) -> Result<Vec<PatchSummaryRecord>, StoreError>;
}
