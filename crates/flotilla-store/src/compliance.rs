//! Compliance's part of the storage interface: each node's current item per (type, id) and the
//! history of results behind them, written by State Manager (with its runs), assessments and
//! Patch Manager.

use async_trait::async_trait;
use flotilla_core::UnixMillis;
use flotilla_core::compliance::{ComplianceSeverity, ComplianceStatus, ComplianceType};

use crate::StoreError;

/// One compliance item of a node (also one history entry: the item as a result set it).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ComplianceItem {
    pub node_id: String,
    pub kind: ComplianceType,
    /// The association id, `cve` for an assessment, a patch baseline ...
    pub item_id: String,
    /// For people: the association's name, the assessment's rules.
    pub title: String,
    pub status: ComplianceStatus,
    pub severity: ComplianceSeverity,
    pub detail: String,
    /// The command or assessment run that produced it.
    pub execution_id: String,
    pub time: UnixMillis,
}

#[async_trait]
pub trait ComplianceStore: Send + Sync {
    /// Replaces each item's current value and appends it to the history.
    async fn put_compliance(&self, items: &[ComplianceItem]) -> Result<(), StoreError>;
    /// Current items, of one type or all, ordered by node, type and id.
    async fn list_compliance(&self, kind: Option<ComplianceType>) -> Result<Vec<ComplianceItem>, StoreError>;
    /// A node's results, newest first (at most `limit`), of one type or all.
    async fn compliance_history(
        &self,
        node_id: &str,
        kind: Option<ComplianceType>,
        limit: u32,
    ) -> Result<Vec<ComplianceItem>, StoreError>;
}
