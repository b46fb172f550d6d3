//! Inventory on the REST surface: a node's inventory, fleet queries, collection settings.

use serde::{Deserialize, Serialize};

use crate::client::{Client, ClientError, enc};

/// One inventory type of one node (`GET /api/v1/nodes/{id}/inventory`).
#[derive(Debug, Clone, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct InventoryTypeView {
    #[serde(rename = "type")]
    pub type_name: String,
    pub content_hash: String,
    pub item_count: i64,
    pub collected_at: String,
    /// The items, each an object with the type's fields.
    #[cfg_attr(feature = "openapi", schema(value_type = Vec<Object>))]
    pub items: Vec<serde_json::Value>,
}

/// Body of `POST /api/v1/inventory/query`.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(deny_unknown_fields)]
pub struct InventoryQuery {
    #[serde(rename = "type")]
    pub type_name: String,
    /// `FIELD OP VALUE`, all of which an item must match; OP is one of = != < <= > >= ~.
    #[serde(default)]
    pub filters: Vec<String>,
    /// Nodes per page (default 100, at most 1000).
    #[serde(default)]
    pub limit: Option<u32>,
    /// The `next` of the previous page.
    #[serde(default)]
    pub after: Option<String>,
}

/// A node and its items that match a query.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct InventoryRow {
    pub node_id: String,
    pub hostname: String,
    #[cfg_attr(feature = "openapi", schema(value_type = Vec<Object>))]
    pub items: Vec<serde_json::Value>,
}

/// One page of a fleet query.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct InventoryPage {
    pub rows: Vec<InventoryRow>,
    /// Pass as `after` for the next page; absent on the last page.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub next: Option<String>,
}

/// Collection settings for the nodes of a group (`PUT /api/v1/inventory/settings/{group}`).
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(deny_unknown_fields)]
pub struct InventorySettings {
    /// Filled in replies; ignored in requests (the path names the group).
    #[serde(default)]
    pub group: String,
    /// Seconds between collections (default 1800 when no group sets it; at least 10).
    #[serde(default)]
    pub interval_seconds: Option<u32>,
    /// Absolute paths and globs whose files become `File` items.
    #[serde(default)]
    pub files: Vec<String>,
}

impl Client {
    /// Every type (or one) of a node's inventory.
    pub async fn node_inventory(
        &self,
        node: &str,
        type_name: Option<&str>,
    ) -> Result<Vec<InventoryTypeView>, ClientError> {
        let mut path = format!("/api/v1/nodes/{}/inventory", enc(node));
        if let Some(t) = type_name {
            path.push_str(&format!("?type={}", enc(t)));
        }
        self.get(&path).await
    }

    pub async fn query_inventory(&self, query: &InventoryQuery) -> Result<InventoryPage, ClientError> {
        self.call(reqwest::Method::POST, "/api/v1/inventory/query", Some(query)).await
    }

    pub async fn list_inventory_settings(&self) -> Result<Vec<InventorySettings>, ClientError> {
        self.get("/api/v1/inventory/settings").await
    }

    pub async fn put_inventory_settings(
        &self,
        group: &str,
        settings: &InventorySettings,
    ) -> Result<InventorySettings, ClientError> {
        self.call(reqwest::Method::PUT, &format!("/api/v1/inventory/settings/{}", enc(group)), Some(settings)).await
    }

    pub async fn delete_inventory_settings(&self, group: &str) -> Result<(), ClientError> {
        self.call::<(), ()>(reqwest::Method::DELETE, &format!("/api/v1/inventory/settings/{}", enc(group)), None).await
    }
}
