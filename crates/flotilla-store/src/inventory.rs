//! Inventory storage: per node and type, the content hash and the items (JSON text each),
//! replaced atomically; fleet-wide reads by type, optionally narrowed by the type's key field.
//! Identical items are stored once however many nodes report them (see `sql/inventory.rs`).

use async_trait::async_trait;
use flotilla_core::{NodeId, UnixMillis};

use crate::StoreError;

/// One type of one node as stored.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StoredInventoryType {
    pub type_name: String,
    pub content_hash: String,
    pub item_count: i64,
    pub collected_at: UnixMillis,
    pub updated_at: UnixMillis,
}

/// A change to a node's inventory, applied with the others of its report in one transaction.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum InventoryChange {
    /// The type's items become exactly these: (key field value, item JSON).
    Replace {
        type_name: String,
        content_hash: String,
        items: Vec<(Option<String>, String)>,
    },
    Delete {
        type_name: String,
    },
}

/// Collection settings for the nodes of a target group.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct InventorySetting {
    pub group_name: String,
    pub interval_seconds: Option<i64>,
    pub files: Vec<String>,
    pub updated_at: UnixMillis,
}

#[async_trait]
pub trait InventoryStore {
    /// The types a node has, with their hashes.
    async fn inventory_types(&self, node: &NodeId) -> Result<Vec<StoredInventoryType>, StoreError>;
    async fn apply_inventory(
        &self,
        node: &NodeId,
        changes: &[InventoryChange],
        collected_at: UnixMillis,
        now: UnixMillis,
    ) -> Result<(), StoreError>;
    /// One type's items of one node, in stored order.
    async fn inventory_items(&self, node: &NodeId, type_name: &str) -> Result<Vec<String>, StoreError>;
    /// Items of `type_name` for the first `max_nodes` nodes after `after` (by id) that have
    /// any (with `key`: any whose key field equals it), as (node id, item JSON) in node order.
    async fn inventory_scan(
        &self,
        type_name: &str,
        key: Option<&str>,
        after: Option<&str>,
        max_nodes: i64,
    ) -> Result<Vec<(String, String)>, StoreError>;

    /// Deletes the stored items no node's inventory refers to any more (replaced versions,
    /// removed nodes' packages); returns how many. Run by the retention sweep.
    async fn delete_unreferenced_inventory_entries(&self) -> Result<u64, StoreError>;

    async fn put_inventory_setting(&self, setting: &InventorySetting) -> Result<(), StoreError>;
    async fn list_inventory_settings(&self) -> Result<Vec<InventorySetting>, StoreError>;
    async fn delete_inventory_setting(&self, group_name: &str) -> Result<bool, StoreError>;
}
