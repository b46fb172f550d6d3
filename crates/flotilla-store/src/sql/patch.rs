//! SQL for [`PatchStore`].

use async_trait::async_trait;
use sqlx::AssertSqlSafe;
use sqlx::any::AnyRow;

use super::{MAX_BINDS, SqlStore, compliance, events, get, parse, q};
use crate::{
    BaselineRecord, PatchGroupRecord, PatchResult, PatchStateRecord, PatchStore, PatchSummaryRecord, StoreError,
};

const BASELINE_COLUMNS: &str = "id, name, os, spec, predefined, created_at, updated_at";
const SUMMARY_COLUMNS: &str = "node_id, baseline_id, baseline_name, patch_group, operation, reboot_option, status, \
                               severity, counts, invocation_id, started_at, ended_at";
const STATE_COLUMNS: &str =
    "node_id, name, arch, state, installed_version, available_version, severity, classification, cves, repository";
const STATE_BINDS: usize = 10;

fn baseline_from_row(row: &AnyRow) -> Result<BaselineRecord, StoreError> {
    Ok(BaselineRecord {
        id: get(row, "id")?,
        name: get(row, "name")?,
        os: get(row, "os")?,
        spec: get(row, "spec")?,
        predefined: get::<i64>(row, "predefined")? != 0,
        created_at: get(row, "created_at")?,
        updated_at: get(row, "updated_at")?,
    })
}

fn summary_from_row(row: &AnyRow) -> Result<PatchSummaryRecord, StoreError> {
    let node_id: String = get(row, "node_id")?;
    Ok(PatchSummaryRecord {
        baseline_id: get(row, "baseline_id")?,
        baseline_name: get(row, "baseline_name")?,
        patch_group: get(row, "patch_group")?,
        operation: get(row, "operation")?,
        reboot_option: get(row, "reboot_option")?,
        status: parse(row, "patch_summaries", &node_id, "status")?,
        severity: parse(row, "patch_summaries", &node_id, "severity")?,
        counts: get(row, "counts")?,
        invocation_id: get(row, "invocation_id")?,
        started_at: get(row, "started_at")?,
        ended_at: get(row, "ended_at")?,
        node_id,
    })
}

fn state_from_row(row: &AnyRow) -> Result<PatchStateRecord, StoreError> {
    let name: String = get(row, "name")?;
    let cves: String = get(row, "cves")?;
    Ok(PatchStateRecord {
        arch: get(row, "arch")?,
        state: parse(row, "patch_states", &name, "state")?,
        installed_version: get(row, "installed_version")?,
        available_version: get(row, "available_version")?,
        severity: parse(row, "patch_states", &name, "severity")?,
        classification: get(row, "classification")?,
        cves: cves.split(',').filter(|c| !c.is_empty()).map(str::to_owned).collect(),
        repository: get(row, "repository")?,
        name,
    })
}

#[async_trait]
impl PatchStore for SqlStore {
    async fn create_baseline(&self, b: &BaselineRecord) -> Result<bool, StoreError> {
        let done = sqlx::query(AssertSqlSafe(format!(
            "INSERT INTO patch_baselines ({BASELINE_COLUMNS}) VALUES ($1, $2, $3, $4, $5, $6, $7) ON CONFLICT DO NOTHING"
        )))
        .bind(&b.id)
        .bind(&b.name)
        .bind(&b.os)
        .bind(&b.spec)
        .bind(i64::from(b.predefined))
        .bind(b.created_at)
        .bind(b.updated_at)
        .execute(&self.pool)
        .await
        .map_err(q("create a patch baseline"))?;
        Ok(done.rows_affected() == 1)
    }

    async fn update_baseline(&self, b: &BaselineRecord) -> Result<bool, StoreError> {
        let done = sqlx::query("UPDATE patch_baselines SET name = $1, spec = $2, updated_at = $3 WHERE id = $4")
            .bind(&b.name)
            .bind(&b.spec)
            .bind(b.updated_at)
            .bind(&b.id)
            .execute(&self.pool)
            .await
            .map_err(q("update a patch baseline"))?;
        Ok(done.rows_affected() == 1)
    }

    async fn delete_baseline(&self, id: &str) -> Result<bool, StoreError> {
        let mut tx = self.begin_write().await.map_err(q("begin removing a patch baseline"))?;
        sqlx::query("DELETE FROM patch_groups WHERE baseline_id = $1")
            .bind(id)
            .execute(&mut *tx)
            .await
            .map_err(q("remove a baseline's patch groups"))?;
        let done = sqlx::query("DELETE FROM patch_baselines WHERE id = $1")
            .bind(id)
            .execute(&mut *tx)
            .await
            .map_err(q("remove a patch baseline"))?;
        tx.commit().await.map_err(q("commit removing a patch baseline"))?;
        Ok(done.rows_affected() == 1)
    }

    async fn get_baseline(&self, id_or_name: &str) -> Result<Option<BaselineRecord>, StoreError> {
        sqlx::query(AssertSqlSafe(format!("SELECT {BASELINE_COLUMNS} FROM patch_baselines WHERE id = $1 OR name = $1")))
            .bind(id_or_name)
            .fetch_optional(&self.pool)
            .await
            .map_err(q("read a patch baseline"))?
            .as_ref()
            .map(baseline_from_row)
            .transpose()
    }

    async fn list_baselines(&self) -> Result<Vec<BaselineRecord>, StoreError> {
        sqlx::query(AssertSqlSafe(format!("SELECT {BASELINE_COLUMNS} FROM patch_baselines ORDER BY os, name")))
            .fetch_all(&self.pool)
            .await
            .map_err(q("list patch baselines"))?
            .iter()
            .map(baseline_from_row)
            .collect()
    }

    async fn set_default_baseline(&self, os: &str, baseline_id: &str) -> Result<(), StoreError> {
        sqlx::query(
            "INSERT INTO patch_defaults (os, baseline_id) VALUES ($1, $2) \
             ON CONFLICT (os) DO UPDATE SET baseline_id = excluded.baseline_id",
        )
        .bind(os)
        .bind(baseline_id)
        .execute(&self.pool)
        .await
        .map_err(q("set a default patch baseline"))?;
        Ok(())
    }

    async fn default_baselines(&self) -> Result<Vec<(String, String)>, StoreError> {
        let rows = sqlx::query("SELECT os, baseline_id FROM patch_defaults ORDER BY os")
            .fetch_all(&self.pool)
            .await
            .map_err(q("read the default patch baselines"))?;
        rows.iter().map(|r| Ok((get(r, "os")?, get(r, "baseline_id")?))).collect()
    }

    async fn set_patch_group(&self, g: &PatchGroupRecord) -> Result<(), StoreError> {
        sqlx::query(
            "INSERT INTO patch_groups (name, baseline_id) VALUES ($1, $2) \
             ON CONFLICT (name) DO UPDATE SET baseline_id = excluded.baseline_id",
        )
        .bind(&g.name)
        .bind(&g.baseline_id)
        .execute(&self.pool)
        .await
        .map_err(q("set a patch group"))?;
        Ok(())
    }

    async fn list_patch_groups(&self) -> Result<Vec<PatchGroupRecord>, StoreError> {
        let rows = sqlx::query("SELECT name, baseline_id FROM patch_groups ORDER BY name")
            .fetch_all(&self.pool)
            .await
            .map_err(q("list patch groups"))?;
        rows.iter()
            .map(|r| Ok(PatchGroupRecord { name: get(r, "name")?, baseline_id: get(r, "baseline_id")? }))
            .collect()
    }

    async fn record_patch_result(&self, r: &PatchResult) -> Result<(), StoreError> {
        let s = &r.summary;
        let mut tx = self.begin_write().await.map_err(q("begin recording a patch result"))?;
        sqlx::query("DELETE FROM patch_states WHERE node_id = $1")
            .bind(&s.node_id)
            .execute(&mut *tx)
            .await
            .map_err(q("replace a node's patch states"))?;
        for chunk in r.states.chunks(MAX_BINDS / STATE_BINDS) {
            let rows: Vec<String> = (0..chunk.len())
                .map(|i| format!("({})", super::placeholders(i * STATE_BINDS + 1, STATE_BINDS)))
                .collect();
            let sql = format!("INSERT INTO patch_states ({STATE_COLUMNS}) VALUES {}", rows.join(", "));
            let mut query = sqlx::query(AssertSqlSafe(sql));
            for p in chunk {
                query = query
                    .bind(&s.node_id)
                    .bind(&p.name)
                    .bind(&p.arch)
                    .bind(p.state.as_str())
                    .bind(&p.installed_version)
                    .bind(p.available_version.clone())
                    .bind(p.severity.as_str())
                    .bind(p.classification.clone())
                    .bind(p.cves.join(","))
                    .bind(p.repository.clone());
            }
            query.execute(&mut *tx).await.map_err(q("save patch states"))?;
        }
        sqlx::query(AssertSqlSafe(format!(
            "INSERT INTO patch_summaries ({SUMMARY_COLUMNS}) VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12) \
             ON CONFLICT (node_id) DO UPDATE SET baseline_id = excluded.baseline_id, baseline_name = excluded.baseline_name, \
             patch_group = excluded.patch_group, operation = excluded.operation, reboot_option = excluded.reboot_option, \
             status = excluded.status, severity = excluded.severity, counts = excluded.counts, \
             invocation_id = excluded.invocation_id, started_at = excluded.started_at, ended_at = excluded.ended_at"
        )))
        .bind(&s.node_id)
        .bind(&s.baseline_id)
        .bind(&s.baseline_name)
        .bind(&s.patch_group)
        .bind(&s.operation)
        .bind(&s.reboot_option)
        .bind(s.status.as_str())
        .bind(s.severity.as_str())
        .bind(&s.counts)
        .bind(&s.invocation_id)
        .bind(s.started_at)
        .bind(s.ended_at)
        .execute(&mut *tx)
        .await
        .map_err(q("save a patch summary"))?;
        compliance::put_items(&mut tx, std::slice::from_ref(&r.compliance)).await?;
        events::append(&mut tx, std::slice::from_ref(&r.event)).await?;
        tx.commit().await.map_err(q("commit a patch result"))
    }

    async fn patch_states(&self, node_id: &str) -> Result<Vec<PatchStateRecord>, StoreError> {
        sqlx::query(AssertSqlSafe(format!(
            "SELECT {STATE_COLUMNS} FROM patch_states WHERE node_id = $1 ORDER BY name, arch"
        )))
        .bind(node_id)
        .fetch_all(&self.pool)
        .await
        .map_err(q("read patch states"))?
        .iter()
        .map(state_from_row)
        .collect()
    }

    async fn patch_summaries(&self) -> Result<Vec<PatchSummaryRecord>, StoreError> {
        sqlx::query(AssertSqlSafe(format!("SELECT {SUMMARY_COLUMNS} FROM patch_summaries ORDER BY node_id")))
            .fetch_all(&self.pool)
            .await
            .map_err(q("list patch summaries"))?
            .iter()
            .map(summary_from_row)
            .collect()
    }
}
