//! SQL for [`AssociationStore`].

use async_trait::async_trait;
use flotilla_core::EventType;
use flotilla_core::association::AssociationStatus;
use flotilla_core::compliance::ComplianceType;
use sqlx::AssertSqlSafe;
use sqlx::any::AnyRow;

use super::{SqlStore, events, from_json, get, parse, q, to_json};
use crate::{
    AssociationNodeRecord, AssociationRecord, AssociationStore, ComplianceItem, NewEvent, SettledRun, StoreError,
};

const COLUMNS: &str = "id, name, document, document_version, parameters, targets, schedule, timezone, max_concurrency, \
                       max_errors, compliance_severity, apply_only_at_cron_interval, generation, schedule_since, \
                       created_at, updated_at";
const NODE_COLUMNS: &str =
    "association_id, node_id, generation, status, changed, detail, command_id, undelivered, updated_at";

fn from_row(row: &AnyRow) -> Result<AssociationRecord, StoreError> {
    let id: String = get(row, "id")?;
    let parameters: String = get(row, "parameters")?;
    let targets: String = get(row, "targets")?;
    Ok(AssociationRecord {
        name: get(row, "name")?,
        document: get(row, "document")?,
        document_version: get(row, "document_version")?,
        parameters: from_json(&parameters, "association parameters", &id)?,
        targets: from_json(&targets, "association targets", &id)?,
        schedule: get(row, "schedule")?,
        timezone: get(row, "timezone")?,
        max_concurrency: get(row, "max_concurrency")?,
        max_errors: get(row, "max_errors")?,
        compliance_severity: parse(row, "associations", &id, "compliance_severity")?,
        apply_only_at_cron_interval: get::<i64>(row, "apply_only_at_cron_interval")? != 0,
        generation: get(row, "generation")?,
        schedule_since: get(row, "schedule_since")?,
        created_at: get(row, "created_at")?,
        updated_at: get(row, "updated_at")?,
        id,
    })
}

fn node_from_row(row: &AnyRow) -> Result<AssociationNodeRecord, StoreError> {
    let association_id: String = get(row, "association_id")?;
    let node_id: String = get(row, "node_id")?;
    let key = format!("{association_id}/{node_id}");
    Ok(AssociationNodeRecord {
        generation: get(row, "generation")?,
        status: parse(row, "association_nodes", &key, "status")?,
        changed: get::<Option<i64>>(row, "changed")?.map(|c| c != 0),
        detail: get(row, "detail")?,
        command_id: get(row, "command_id")?,
        undelivered: get::<i64>(row, "undelivered")? != 0,
        updated_at: get(row, "updated_at")?,
        association_id,
        node_id,
    })
}

/// Binds every column of `a`, in [`COLUMNS`] order.
fn bind<'q>(
    query: sqlx::query::Query<'q, sqlx::Any, sqlx::any::AnyArguments>,
    a: &'q AssociationRecord,
) -> sqlx::query::Query<'q, sqlx::Any, sqlx::any::AnyArguments> {
    query
        .bind(&a.id)
        .bind(&a.name)
        .bind(&a.document)
        .bind(a.document_version)
        .bind(to_json(&a.parameters))
        .bind(to_json(&a.targets))
        .bind(a.schedule.clone())
        .bind(a.timezone.clone())
        .bind(&a.max_concurrency)
        .bind(&a.max_errors)
        .bind(a.compliance_severity.as_str())
        .bind(i64::from(a.apply_only_at_cron_interval))
        .bind(a.generation)
        .bind(a.schedule_since)
        .bind(a.created_at)
        .bind(a.updated_at)
}

fn is_unique_violation(e: &sqlx::Error) -> bool {
    matches!(e, sqlx::Error::Database(d) if d.is_unique_violation())
}

#[async_trait]
impl AssociationStore for SqlStore {
    async fn create_association(&self, a: &AssociationRecord) -> Result<bool, StoreError> {
        let mut tx = self.begin_write().await.map_err(q("begin creating an association"))?;
        let inserted = bind(
            sqlx::query(AssertSqlSafe(format!(
                "INSERT INTO associations ({COLUMNS}) VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13, $14, $15, $16)"
            ))),
            a,
        )
        .execute(&mut *tx)
        .await;
        match inserted {
            Ok(_) => {}
            Err(e) if is_unique_violation(&e) => return Ok(false),
            Err(e) => return Err(StoreError::Query { op: "insert an association", source: e }),
        }
        tx.commit().await.map_err(q("commit a new association"))?;
        Ok(true)
    }

    async fn update_association(&self, a: &AssociationRecord) -> Result<bool, StoreError> {
        let mut tx = self.begin_write().await.map_err(q("begin updating an association"))?;
        let done = bind(
            sqlx::query(
                "UPDATE associations SET name = $2, document = $3, document_version = $4, parameters = $5, targets = $6, \
                 schedule = $7, timezone = $8, max_concurrency = $9, max_errors = $10, compliance_severity = $11, \
                 apply_only_at_cron_interval = $12, generation = $13, schedule_since = $14, created_at = $15, \
                 updated_at = $16 WHERE id = $1",
            ),
            a,
        )
        .execute(&mut *tx)
        .await
        .map_err(q("update an association"))?;
        // The item's title is the association's name.
        sqlx::query("UPDATE compliance_items SET title = $2 WHERE kind = 'Association' AND item_id = $1")
            .bind(&a.id)
            .bind(&a.name)
            .execute(&mut *tx)
            .await
            .map_err(q("retitle an association's compliance"))?;
        tx.commit().await.map_err(q("commit an association update"))?;
        Ok(done.rows_affected() > 0)
    }

    async fn get_association(&self, id_or_name: &str) -> Result<Option<AssociationRecord>, StoreError> {
        let row = sqlx::query(AssertSqlSafe(format!(
            "SELECT {COLUMNS} FROM associations WHERE id = $1 OR name = $1 ORDER BY CASE WHEN id = $1 THEN 0 ELSE 1 END LIMIT 1"
        )))
        .bind(id_or_name)
        .fetch_optional(&self.pool)
        .await
        .map_err(q("read an association"))?;
        row.as_ref().map(from_row).transpose()
    }

    async fn list_associations(&self) -> Result<Vec<AssociationRecord>, StoreError> {
        let rows = sqlx::query(AssertSqlSafe(format!("SELECT {COLUMNS} FROM associations ORDER BY name")))
            .fetch_all(&self.pool)
            .await
            .map_err(q("list associations"))?;
        rows.iter().map(from_row).collect()
    }

    async fn delete_association(&self, id: &str) -> Result<bool, StoreError> {
        let mut tx = self.begin_write().await.map_err(q("begin deleting an association"))?;
        for statement in [
            "DELETE FROM association_nodes WHERE association_id = $1",
            "DELETE FROM compliance_items WHERE kind = 'Association' AND item_id = $1",
        ] {
            sqlx::query(statement).bind(id).execute(&mut *tx).await.map_err(q("delete an association's rows"))?;
        }
        let done = sqlx::query("DELETE FROM associations WHERE id = $1")
            .bind(id)
            .execute(&mut *tx)
            .await
            .map_err(q("delete an association"))?;
        tx.commit().await.map_err(q("commit an association's deletion"))?;
        Ok(done.rows_affected() > 0)
    }

    async fn bump_association_generation(&self, id: &str) -> Result<Option<i64>, StoreError> {
        let mut tx = self.begin_write().await.map_err(q("begin raising an association's generation"))?;
        let row = sqlx::query("UPDATE associations SET generation = generation + 1 WHERE id = $1 RETURNING generation")
            .bind(id)
            .fetch_optional(&mut *tx)
            .await
            .map_err(q("raise an association's generation"))?;
        tx.commit().await.map_err(q("commit an association's generation"))?;
        row.map(|r| get::<i64>(&r, "generation")).transpose()
    }

    async fn association_nodes(&self, id: &str) -> Result<Vec<AssociationNodeRecord>, StoreError> {
        let rows = sqlx::query(AssertSqlSafe(format!(
            "SELECT {NODE_COLUMNS} FROM association_nodes WHERE association_id = $1 ORDER BY node_id"
        )))
        .bind(id)
        .fetch_all(&self.pool)
        .await
        .map_err(q("list an association's nodes"))?;
        rows.iter().map(node_from_row).collect()
    }

    async fn pending_association_nodes(&self) -> Result<Vec<AssociationNodeRecord>, StoreError> {
        let rows = sqlx::query(AssertSqlSafe(format!(
            "SELECT {NODE_COLUMNS} FROM association_nodes WHERE status = $1 ORDER BY association_id, node_id"
        )))
        .bind(AssociationStatus::Pending.as_str())
        .fetch_all(&self.pool)
        .await
        .map_err(q("list pending association runs"))?;
        rows.iter().map(node_from_row).collect()
    }

    async fn start_association_runs(
        &self,
        id: &str,
        generation: i64,
        command_id: &str,
        nodes: &[String],
        time: flotilla_core::UnixMillis,
    ) -> Result<(), StoreError> {
        let mut tx = self.begin_write().await.map_err(q("begin starting association runs"))?;
        for node in nodes {
            sqlx::query(AssertSqlSafe(format!(
                "INSERT INTO association_nodes ({NODE_COLUMNS}) VALUES ($1, $2, $3, $4, NULL, '', $5, 0, $6) \
                 ON CONFLICT (association_id, node_id) DO UPDATE SET generation = excluded.generation, \
                 status = excluded.status, command_id = excluded.command_id, updated_at = excluded.updated_at"
            )))
            .bind(id)
            .bind(node)
            .bind(generation)
            .bind(AssociationStatus::Pending.as_str())
            .bind(command_id)
            .bind(time)
            .execute(&mut *tx)
            .await
            .map_err(q("start an association run"))?;
        }
        tx.commit().await.map_err(q("commit association runs"))
    }

    async fn settle_association_runs(&self, a: &AssociationRecord, runs: &[SettledRun]) -> Result<(), StoreError> {
        let mut tx = self.begin_write().await.map_err(q("begin settling association runs"))?;
        let mut items = Vec::with_capacity(runs.len());
        let mut news: Vec<NewEvent> = Vec::new();
        for run in runs {
            let done = sqlx::query(
                "UPDATE association_nodes SET status = $4, changed = $5, detail = $6, undelivered = $7, updated_at = $8 \
                 WHERE association_id = $1 AND node_id = $2 AND command_id = $3 AND status = 'Pending'",
            )
            .bind(&a.id)
            .bind(&run.node_id)
            .bind(&run.command_id)
            .bind(run.status.as_str())
            .bind(run.changed.map(i64::from))
            .bind(&run.detail)
            .bind(i64::from(run.undelivered))
            .bind(run.time)
            .execute(&mut *tx)
            .await
            .map_err(q("settle an association run"))?;
            let Some(status) = run.status.compliance() else { continue };
            if done.rows_affected() == 0 {
                continue; // superseded by a newer run, or settled already
            }
            let previous: Option<String> = sqlx::query(
                "SELECT status FROM compliance_items WHERE node_id = $1 AND kind = 'Association' AND item_id = $2",
            )
            .bind(&run.node_id)
            .bind(&a.id)
            .fetch_optional(&mut *tx)
            .await
            .map_err(q("read an association's compliance"))?
            .map(|r| get::<String>(&r, "status"))
            .transpose()?;
            let severity = a.compliance_severity;
            items.push(ComplianceItem {
                node_id: run.node_id.clone(),
                kind: ComplianceType::Association,
                item_id: a.id.clone(),
                title: a.name.clone(),
                status,
                severity,
                detail: run.detail.clone(),
                execution_id: run.command_id.clone(),
                time: run.time,
            });
            // An event when the node's compliance moved, or when the run had to correct drift.
            if previous.as_deref() != Some(status.as_str()) || run.changed == Some(true) {
                news.push(NewEvent::new(
                    EventType::AssociationCompliance,
                    run.time,
                    vec![a.id.clone(), run.node_id.clone()],
                    serde_json::json!({
                        "association_id": a.id,
                        "association_name": a.name,
                        "node_id": run.node_id,
                        "status": status.as_str(),
                        "previous_status": previous,
                        "severity": severity.as_str(),
                        "changed": run.changed,
                        "detail": run.detail,
                        "command_id": run.command_id,
                    }),
                ));
            }
        }
        super::compliance::put_items(&mut tx, &items).await?;
        events::append(&mut tx, &news).await?;
        tx.commit().await.map_err(q("commit settled association runs"))
    }
}
