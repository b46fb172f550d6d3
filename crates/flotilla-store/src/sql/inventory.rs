//! SQL for [`InventoryStore`].

use async_trait::async_trait;
use flotilla_core::{NodeId, UnixMillis};
use sqlx::Row;

use super::{SqlStore, from_json, get, q, to_json};
use crate::{InventoryChange, InventorySetting, InventoryStore, StoreError, StoredInventoryType};

/// Rows per INSERT (5 binds a row).
const ROWS_PER_INSERT: usize = super::MAX_BINDS / 5;

#[async_trait]
impl InventoryStore for SqlStore {
    async fn inventory_types(&self, node: &NodeId) -> Result<Vec<StoredInventoryType>, StoreError> {
        let rows = sqlx::query(
            "SELECT type_name, content_hash, item_count, collected_at, updated_at FROM inventory_types \
             WHERE node_id = $1 ORDER BY type_name",
        )
        .bind(node.as_str())
        .fetch_all(&self.pool)
        .await
        .map_err(q("read a node's inventory types"))?;
        rows.iter()
            .map(|row| {
                Ok(StoredInventoryType {
                    type_name: get(row, "type_name")?,
                    content_hash: get(row, "content_hash")?,
                    item_count: get(row, "item_count")?,
                    collected_at: get(row, "collected_at")?,
                    updated_at: get(row, "updated_at")?,
                })
            })
            .collect()
    }

    async fn apply_inventory(
        &self,
        node: &NodeId,
        changes: &[InventoryChange],
        collected_at: UnixMillis,
        now: UnixMillis,
    ) -> Result<(), StoreError> {
        let mut tx = self.begin_write().await.map_err(q("begin an inventory update"))?;
        for change in changes {
            let type_name = match change {
                InventoryChange::Replace { type_name, .. } | InventoryChange::Delete { type_name } => type_name,
            };
            sqlx::query("DELETE FROM inventory_items WHERE type_name = $1 AND node_id = $2")
                .bind(type_name)
                .bind(node.as_str())
                .execute(&mut *tx)
                .await
                .map_err(q("replace inventory items"))?;
            sqlx::query("DELETE FROM inventory_types WHERE node_id = $1 AND type_name = $2")
                .bind(node.as_str())
                .bind(type_name)
                .execute(&mut *tx)
                .await
                .map_err(q("replace an inventory type"))?;
            let InventoryChange::Replace { content_hash, items, .. } = change else { continue };
            sqlx::query(
                "INSERT INTO inventory_types (node_id, type_name, content_hash, item_count, collected_at, updated_at) \
                 VALUES ($1, $2, $3, $4, $5, $6)",
            )
            .bind(node.as_str())
            .bind(type_name)
            .bind(content_hash)
            .bind(i64::try_from(items.len()).unwrap_or(i64::MAX))
            .bind(collected_at)
            .bind(now)
            .execute(&mut *tx)
            .await
            .map_err(q("store an inventory type"))?;
            for (chunk_index, chunk) in items.chunks(ROWS_PER_INSERT).enumerate() {
                let mut sql =
                    String::from("INSERT INTO inventory_items (type_name, node_id, seq, item_key, item) VALUES ");
                for i in 0..chunk.len() {
                    let b = i * 5;
                    if i > 0 {
                        sql.push(',');
                    }
                    sql.push_str(&format!("(${}, ${}, ${}, ${}, ${})", b + 1, b + 2, b + 3, b + 4, b + 5));
                }
                let mut query = sqlx::query(sqlx::AssertSqlSafe(sql));
                for (i, (key, item)) in chunk.iter().enumerate() {
                    let seq = i64::try_from(chunk_index * ROWS_PER_INSERT + i).unwrap_or(i64::MAX);
                    query = query.bind(type_name).bind(node.as_str()).bind(seq).bind(key.clone()).bind(item);
                }
                query.execute(&mut *tx).await.map_err(q("store inventory items"))?;
            }
        }
        if !changes.is_empty() {
            let types: Vec<&str> = changes
                .iter()
                .map(|c| match c {
                    InventoryChange::Replace { type_name, .. } | InventoryChange::Delete { type_name } => {
                        type_name.as_str()
                    }
                })
                .collect();
            let detail = serde_json::json!({ "node_id": node.as_str(), "types": types });
            let event = super::events::node_event(flotilla_core::EventType::InventoryChanged, node.as_str(), detail);
            super::events::append(&mut tx, &[event]).await?;
        }
        tx.commit().await.map_err(q("commit an inventory update"))?;
        Ok(())
    }

    async fn inventory_items(&self, node: &NodeId, type_name: &str) -> Result<Vec<String>, StoreError> {
        let rows = sqlx::query("SELECT item FROM inventory_items WHERE type_name = $1 AND node_id = $2 ORDER BY seq")
            .bind(type_name)
            .bind(node.as_str())
            .fetch_all(&self.pool)
            .await
            .map_err(q("read inventory items"))?;
        rows.iter().map(|row| get(row, "item")).collect()
    }

    async fn inventory_scan(
        &self,
        type_name: &str,
        key: Option<&str>,
        after: Option<&str>,
        max_nodes: i64,
    ) -> Result<Vec<(String, String)>, StoreError> {
        let keyed = if key.is_some() { " AND item_key = $4" } else { "" };
        let on_key = if key.is_some() { " AND i.item_key = $4" } else { "" };
        // The page's nodes first, then each node's items by index equality. A node-id range or
        // `node_id IN (page)` lets SQLite walk the primary key instead (every item of the type,
        // 1,000 per node for Application) and filter on the key afterwards: 0.56 s against
        // 12 ms for 2,000 nodes. CROSS JOIN is how SQLite is told which loop is the outer one.
        let sql = format!(
            "SELECT i.node_id, i.item FROM (SELECT DISTINCT node_id FROM inventory_items \
             WHERE type_name = $1{keyed} AND node_id > $2 ORDER BY node_id LIMIT $3) AS page \
             CROSS JOIN inventory_items AS i WHERE i.type_name = $1{on_key} AND i.node_id = page.node_id \
             ORDER BY i.node_id, i.seq"
        );
        let mut query = sqlx::query(sqlx::AssertSqlSafe(sql)).bind(type_name).bind(after.unwrap_or("")).bind(max_nodes);
        if let Some(key) = key {
            query = query.bind(key);
        }
        let rows = query.fetch_all(&self.pool).await.map_err(q("query inventory"))?;
        rows.iter().map(|row| Ok((get(row, "node_id")?, get(row, "item")?))).collect()
    }

    async fn put_inventory_setting(&self, s: &InventorySetting) -> Result<(), StoreError> {
        sqlx::query(
            "INSERT INTO inventory_settings (group_name, interval_seconds, files, updated_at) VALUES ($1, $2, $3, $4) \
             ON CONFLICT (group_name) DO UPDATE SET interval_seconds = excluded.interval_seconds, \
             files = excluded.files, updated_at = excluded.updated_at",
        )
        .bind(&s.group_name)
        .bind(s.interval_seconds)
        .bind(to_json(&s.files))
        .bind(s.updated_at)
        .execute(&self.pool)
        .await
        .map_err(q("save inventory settings"))?;
        Ok(())
    }

    async fn list_inventory_settings(&self) -> Result<Vec<InventorySetting>, StoreError> {
        let rows = sqlx::query(
            "SELECT group_name, interval_seconds, files, updated_at FROM inventory_settings ORDER BY group_name",
        )
        .fetch_all(&self.pool)
        .await
        .map_err(q("list inventory settings"))?;
        rows.iter()
            .map(|row| {
                let group_name: String = get(row, "group_name")?;
                let files: String = get(row, "files")?;
                Ok(InventorySetting {
                    files: from_json(&files, "inventory setting files", &group_name)?,
                    interval_seconds: row.try_get("interval_seconds").ok().flatten(),
                    updated_at: get(row, "updated_at")?,
                    group_name,
                })
            })
            .collect()
    }

    async fn delete_inventory_setting(&self, group_name: &str) -> Result<bool, StoreError> {
        let done = sqlx::query("DELETE FROM inventory_settings WHERE group_name = $1")
            .bind(group_name)
            .execute(&self.pool)
            .await
            .map_err(q("delete inventory settings"))?;
        Ok(done.rows_affected() > 0)
    }
}
