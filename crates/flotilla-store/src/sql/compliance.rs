//! SQL for [`ComplianceStore`], and [`put_items`], the write State Manager's settlement makes
//! inside its own transaction.

use async_trait::async_trait;
use flotilla_core::compliance::ComplianceType;
use sqlx::AssertSqlSafe;
use sqlx::any::AnyRow;

use super::{SqlStore, get, parse, q};
use crate::{ComplianceItem, ComplianceStore, StoreError};

const COLUMNS: &str = "node_id, kind, item_id, title, status, severity, detail, execution_id, recorded_at";

fn from_row(row: &AnyRow, table: &'static str) -> Result<ComplianceItem, StoreError> {
    let node_id: String = get(row, "node_id")?;
    let item_id: String = get(row, "item_id")?;
    let key = format!("{node_id}/{item_id}");
    Ok(ComplianceItem {
        kind: parse(row, table, &key, "kind")?,
        status: parse(row, table, &key, "status")?,
        severity: parse(row, table, &key, "severity")?,
        title: get(row, "title")?,
        detail: get(row, "detail")?,
        execution_id: get(row, "execution_id")?,
        time: get(row, "recorded_at")?,
        node_id,
        item_id,
    })
}

/// Upserts each item and appends it to the history, in the caller's transaction. A result
/// recorded twice (the same execution settled again) keeps its first history entry.
pub(crate) async fn put_items(conn: &mut sqlx::AnyConnection, items: &[ComplianceItem]) -> Result<(), StoreError> {
    for item in items {
        sqlx::query(AssertSqlSafe(format!(
            "INSERT INTO compliance_items ({COLUMNS}) VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9) \
             ON CONFLICT (node_id, kind, item_id) DO UPDATE SET title = excluded.title, status = excluded.status, \
             severity = excluded.severity, detail = excluded.detail, execution_id = excluded.execution_id, \
             recorded_at = excluded.recorded_at"
        )))
        .bind(&item.node_id)
        .bind(item.kind.as_str())
        .bind(&item.item_id)
        .bind(&item.title)
        .bind(item.status.as_str())
        .bind(item.severity.as_str())
        .bind(&item.detail)
        .bind(&item.execution_id)
        .bind(item.time)
        .execute(&mut *conn)
        .await
        .map_err(q("save a compliance item"))?;
        sqlx::query(
            "INSERT INTO compliance_history (node_id, kind, item_id, execution_id, status, severity, detail, recorded_at) \
             VALUES ($1, $2, $3, $4, $5, $6, $7, $8) ON CONFLICT (node_id, kind, item_id, execution_id) DO NOTHING",
        )
        .bind(&item.node_id)
        .bind(item.kind.as_str())
        .bind(&item.item_id)
        .bind(&item.execution_id)
        .bind(item.status.as_str())
        .bind(item.severity.as_str())
        .bind(&item.detail)
        .bind(item.time)
        .execute(&mut *conn)
        .await
        .map_err(q("record compliance history"))?;
    }
    Ok(())
}

#[async_trait]
impl ComplianceStore for SqlStore {
    async fn put_compliance(&self, items: &[ComplianceItem]) -> Result<(), StoreError> {
        let mut tx = self.begin_write().await.map_err(q("begin saving compliance"))?;
        put_items(&mut tx, items).await?;
        tx.commit().await.map_err(q("commit compliance"))
    }

    async fn list_compliance(&self, kind: Option<ComplianceType>) -> Result<Vec<ComplianceItem>, StoreError> {
        let rows = sqlx::query(AssertSqlSafe(format!(
            "SELECT {COLUMNS} FROM compliance_items WHERE ($1 = '' OR kind = $1) ORDER BY node_id, kind, item_id"
        )))
        .bind(kind.map_or("", ComplianceType::as_str))
        .fetch_all(&self.pool)
        .await
        .map_err(q("list compliance items"))?;
        rows.iter().map(|r| from_row(r, "compliance_items")).collect()
    }

    async fn compliance_history(
        &self,
        node_id: &str,
        kind: Option<ComplianceType>,
        limit: u32,
    ) -> Result<Vec<ComplianceItem>, StoreError> {
        // The history has no title: it is the current item's (an item's title is its name).
        let rows = sqlx::query(
            "SELECT h.node_id, h.kind, h.item_id, COALESCE(c.title, h.item_id) AS title, h.status, h.severity, \
             h.detail, h.execution_id, h.recorded_at FROM compliance_history h LEFT JOIN compliance_items c \
             ON c.node_id = h.node_id AND c.kind = h.kind AND c.item_id = h.item_id \
             WHERE h.node_id = $1 AND ($2 = '' OR h.kind = $2) ORDER BY h.recorded_at DESC, h.execution_id DESC LIMIT $3",
        )
        .bind(node_id)
        .bind(kind.map_or("", ComplianceType::as_str))
        .bind(i64::from(limit))
        .fetch_all(&self.pool)
        .await
        .map_err(q("read compliance history"))?;
        rows.iter().map(|r| from_row(r, "compliance_history")).collect()
    }
}
