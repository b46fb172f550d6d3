//! SQL for the Parameter Store and the master key record ([`crate::ParameterStore`]).
//!
//! Invariants: a put advances `parameter_heads.latest_version` by a conditional update in the
//! same transaction as the version row, so two concurrent puts never share a version; labels
//! live in their own table keyed by (name, label), which makes them unique per parameter and
//! moving one a single upsert.

use std::collections::BTreeMap;

use async_trait::async_trait;
use sqlx::any::AnyRow;
use sqlx::{AssertSqlSafe, Row};

use super::{SqlStore, get, q};
use crate::{MasterKeyRecord, ParameterLabel, ParameterPut, ParameterRecord, ParameterStore, StoreError};

const COLUMNS: &str = "name, version, type, tier, description, value, created_at";

fn record_from_row(row: &AnyRow) -> Result<ParameterRecord, StoreError> {
    Ok(ParameterRecord {
        name: get(row, "name")?,
        version: get(row, "version")?,
        kind: get(row, "type")?,
        tier: get(row, "tier")?,
        description: get(row, "description")?,
        value: get(row, "value")?,
        labels: Vec::new(),
        created_at: get(row, "created_at")?,
    })
}

/// `prefix` as a LIKE pattern that matches only names starting with it (`_` and `%` are
/// wildcards in LIKE, and `_` is common in parameter names).
fn like_prefix(prefix: &str) -> String {
    let mut pattern = String::with_capacity(prefix.len() + 1);
    for c in prefix.chars() {
        if matches!(c, '\\' | '%' | '_') {
            pattern.push('\\');
        }
        pattern.push(c);
    }
    pattern.push('%');
    pattern
}

impl SqlStore {
    async fn labels_of(&self, name: &str) -> Result<BTreeMap<i64, Vec<String>>, StoreError> {
        let rows = sqlx::query("SELECT label, version FROM parameter_labels WHERE name = $1 ORDER BY label")
            .bind(name)
            .fetch_all(&self.pool)
            .await
            .map_err(q("read parameter labels"))?;
        let mut by_version: BTreeMap<i64, Vec<String>> = BTreeMap::new();
        for row in &rows {
            by_version.entry(get(row, "version")?).or_default().push(get(row, "label")?);
        }
        Ok(by_version)
    }
}

#[async_trait]
impl ParameterStore for SqlStore {
    async fn put_parameter(
        &self,
        record: &ParameterRecord,
        overwrite: bool,
        keep: usize,
    ) -> Result<ParameterPut, StoreError> {
        let name = record.name.as_str();
        let mut tx = self.begin_write().await.map_err(q("begin a parameter put"))?;
        let head = sqlx::query("SELECT latest_version FROM parameter_heads WHERE name = $1")
            .bind(name)
            .fetch_optional(&mut *tx)
            .await
            .map_err(q("read a parameter's latest version"))?;
        match head {
            Some(_) if !overwrite => return Ok(ParameterPut::Exists),
            Some(row) => {
                let latest: i64 = get(&row, "latest_version")?;
                if latest + 1 != record.version {
                    return Ok(ParameterPut::Conflict);
                }
                let done = sqlx::query(
                    "UPDATE parameter_heads SET latest_version = $1 WHERE name = $2 AND latest_version = $3",
                )
                .bind(record.version)
                .bind(name)
                .bind(latest)
                .execute(&mut *tx)
                .await
                .map_err(q("advance a parameter's version"))?;
                if done.rows_affected() == 0 {
                    return Ok(ParameterPut::Conflict);
                }
            }
            None => {
                if record.version != 1 {
                    return Ok(ParameterPut::Conflict);
                }
                let done = sqlx::query(
                    "INSERT INTO parameter_heads (name, latest_version) VALUES ($1, 1) ON CONFLICT (name) DO NOTHING",
                )
                .bind(name)
                .execute(&mut *tx)
                .await
                .map_err(q("create a parameter"))?;
                if done.rows_affected() == 0 {
                    return Ok(if overwrite { ParameterPut::Conflict } else { ParameterPut::Exists });
                }
            }
        }
        let kept = sqlx::query("SELECT version FROM parameter_versions WHERE name = $1 ORDER BY version")
            .bind(name)
            .fetch_all(&mut *tx)
            .await
            .map_err(q("count a parameter's versions"))?;
        let excess = (kept.len() + 1).saturating_sub(keep);
        for row in kept.iter().take(excess) {
            let version: i64 = get(row, "version")?;
            let labels: Vec<String> =
                sqlx::query("SELECT label FROM parameter_labels WHERE name = $1 AND version = $2 ORDER BY label")
                    .bind(name)
                    .bind(version)
                    .fetch_all(&mut *tx)
                    .await
                    .map_err(q("read the labels of a parameter's oldest version"))?
                    .iter()
                    .map(|r| r.try_get::<String, _>("label"))
                    .collect::<Result<_, _>>()
                    .map_err(q("decode a label"))?;
            if !labels.is_empty() {
                // Dropping it would silently break every reference to those labels.
                return Ok(ParameterPut::OldestLabelled { version, labels });
            }
            sqlx::query("DELETE FROM parameter_versions WHERE name = $1 AND version = $2")
                .bind(name)
                .bind(version)
                .execute(&mut *tx)
                .await
                .map_err(q("drop a parameter's oldest version"))?;
        }
        sqlx::query(AssertSqlSafe(format!(
            "INSERT INTO parameter_versions ({COLUMNS}) VALUES ($1, $2, $3, $4, $5, $6, $7)"
        )))
        .bind(name)
        .bind(record.version)
        .bind(&record.kind)
        .bind(&record.tier)
        .bind(&record.description)
        .bind(&record.value)
        .bind(record.created_at)
        .execute(&mut *tx)
        .await
        .map_err(q("store a parameter version"))?;
        let operation = if record.version == 1 { "Create" } else { "Update" };
        let event = super::events::parameter_changed(name, Some(record.version), operation, &[]);
        super::events::append(&mut tx, &[event]).await?;
        tx.commit().await.map_err(q("commit a parameter version"))?;
        Ok(ParameterPut::Stored)
    }

    async fn get_parameter(&self, name: &str, version: Option<i64>) -> Result<Option<ParameterRecord>, StoreError> {
        let row = match version {
            Some(v) => {
                sqlx::query(AssertSqlSafe(format!(
                    "SELECT {COLUMNS} FROM parameter_versions WHERE name = $1 AND version = $2"
                )))
                .bind(name)
                .bind(v)
                .fetch_optional(&self.pool)
                .await
            }
            None => {
                sqlx::query(AssertSqlSafe(format!(
                    "SELECT {COLUMNS} FROM parameter_versions WHERE name = $1 AND version = \
                 (SELECT latest_version FROM parameter_heads WHERE name = $2)"
                )))
                .bind(name)
                .bind(name)
                .fetch_optional(&self.pool)
                .await
            }
        }
        .map_err(q("read a parameter"))?;
        let Some(row) = row else { return Ok(None) };
        let mut record = record_from_row(&row)?;
        record.labels = self.labels_of(name).await?.remove(&record.version).unwrap_or_default();
        Ok(Some(record))
    }

    async fn parameter_label(&self, name: &str, label: &str) -> Result<Option<i64>, StoreError> {
        let row = sqlx::query("SELECT version FROM parameter_labels WHERE name = $1 AND label = $2")
            .bind(name)
            .bind(label)
            .fetch_optional(&self.pool)
            .await
            .map_err(q("read a parameter label"))?;
        row.map(|r| get(&r, "version")).transpose()
    }

    async fn list_parameters(&self, prefix: &str) -> Result<Vec<ParameterRecord>, StoreError> {
        let pattern = like_prefix(prefix);
        let rows = sqlx::query(
            "SELECT v.name, v.version, v.type, v.tier, v.description, v.value, v.created_at \
             FROM parameter_versions v JOIN parameter_heads h ON h.name = v.name AND h.latest_version = v.version \
             WHERE v.name LIKE $1 ESCAPE '\\' ORDER BY v.name",
        )
        .bind(&pattern)
        .fetch_all(&self.pool)
        .await
        .map_err(q("list parameters"))?;
        let label_rows =
            sqlx::query("SELECT name, label, version FROM parameter_labels WHERE name LIKE $1 ESCAPE '\\'")
                .bind(&pattern)
                .fetch_all(&self.pool)
                .await
                .map_err(q("list parameter labels"))?;
        let mut labels: BTreeMap<(String, i64), Vec<String>> = BTreeMap::new();
        for row in &label_rows {
            labels.entry((get(row, "name")?, get(row, "version")?)).or_default().push(get(row, "label")?);
        }
        rows.iter()
            .map(|row| {
                let mut record = record_from_row(row)?;
                record.labels = labels.remove(&(record.name.clone(), record.version)).unwrap_or_default();
                record.labels.sort();
                Ok(record)
            })
            .collect()
    }

    async fn parameter_history(&self, name: &str) -> Result<Vec<ParameterRecord>, StoreError> {
        let rows = sqlx::query(AssertSqlSafe(format!(
            "SELECT {COLUMNS} FROM parameter_versions WHERE name = $1 ORDER BY version"
        )))
        .bind(name)
        .fetch_all(&self.pool)
        .await
        .map_err(q("read a parameter's history"))?;
        let mut labels = self.labels_of(name).await?;
        rows.iter()
            .map(|row| {
                let mut record = record_from_row(row)?;
                record.labels = labels.remove(&record.version).unwrap_or_default();
                Ok(record)
            })
            .collect()
    }

    async fn label_parameter(
        &self,
        name: &str,
        version: i64,
        labels: &[String],
        max_per_version: usize,
    ) -> Result<ParameterLabel, StoreError> {
        let mut tx = self.begin_write().await.map_err(q("begin labelling a parameter"))?;
        let exists = sqlx::query("SELECT version FROM parameter_versions WHERE name = $1 AND version = $2")
            .bind(name)
            .bind(version)
            .fetch_optional(&mut *tx)
            .await
            .map_err(q("find a parameter version"))?;
        if exists.is_none() {
            return Ok(ParameterLabel::NoSuchVersion);
        }
        for label in labels {
            sqlx::query(
                "INSERT INTO parameter_labels (name, label, version) VALUES ($1, $2, $3) \
                 ON CONFLICT (name, label) DO UPDATE SET version = excluded.version",
            )
            .bind(name)
            .bind(label)
            .bind(version)
            .execute(&mut *tx)
            .await
            .map_err(q("move a parameter label"))?;
        }
        let count = sqlx::query("SELECT COUNT(*) AS n FROM parameter_labels WHERE name = $1 AND version = $2")
            .bind(name)
            .bind(version)
            .fetch_one(&mut *tx)
            .await
            .map_err(q("count a version's labels"))?;
        let n: i64 = get(&count, "n")?;
        if usize::try_from(n).unwrap_or(usize::MAX) > max_per_version {
            // Dropping the transaction rolls the moves back: a refusal changes nothing.
            return Ok(ParameterLabel::TooMany { limit: max_per_version });
        }
        let event = super::events::parameter_changed(name, Some(version), "Label", labels);
        super::events::append(&mut tx, &[event]).await?;
        tx.commit().await.map_err(q("commit parameter labels"))?;
        Ok(ParameterLabel::Labelled)
    }

    async fn delete_parameter(&self, name: &str) -> Result<bool, StoreError> {
        let mut tx = self.begin_write().await.map_err(q("begin deleting a parameter"))?;
        let done = sqlx::query("DELETE FROM parameter_heads WHERE name = $1")
            .bind(name)
            .execute(&mut *tx)
            .await
            .map_err(q("delete a parameter"))?;
        for table in ["parameter_versions", "parameter_labels"] {
            sqlx::query(AssertSqlSafe(format!("DELETE FROM {table} WHERE name = $1")))
                .bind(name)
                .execute(&mut *tx)
                .await
                .map_err(q("delete a parameter's versions and labels"))?;
        }
        if done.rows_affected() > 0 {
            super::events::append(&mut tx, &[super::events::parameter_changed(name, None, "Delete", &[])]).await?;
        }
        tx.commit().await.map_err(q("commit a parameter deletion"))?;
        Ok(done.rows_affected() > 0)
    }

    async fn record_master_key(&self, key: &MasterKeyRecord) -> Result<(), StoreError> {
        sqlx::query(
            "INSERT INTO master_keys (key_id, version, check_value, created_at) VALUES ($1, $2, $3, $4) \
             ON CONFLICT (key_id, version) DO NOTHING",
        )
        .bind(&key.key_id)
        .bind(key.version)
        .bind(&key.check_value)
        .bind(key.created_at)
        .execute(&self.pool)
        .await
        .map_err(q("record a master key version"))?;
        Ok(())
    }

    async fn list_master_keys(&self) -> Result<Vec<MasterKeyRecord>, StoreError> {
        let rows =
            sqlx::query("SELECT key_id, version, check_value, created_at FROM master_keys ORDER BY key_id, version")
                .fetch_all(&self.pool)
                .await
                .map_err(q("list master key versions"))?;
        rows.iter()
            .map(|row| {
                Ok(MasterKeyRecord {
                    key_id: get(row, "key_id")?,
                    version: get(row, "version")?,
                    check_value: get(row, "check_value")?,
                    created_at: get(row, "created_at")?,
                })
            })
            .collect()
    }
}
