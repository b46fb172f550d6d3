//! SQL for [`CommandStore`]: documents and their versions, commands and their invocations.
//!
//! Invariants: a document version is claimed by a conditional update of its head, so two
//! concurrent puts never share a version; a command and its invocations are created in one
//! transaction; invocation results are written in batches, one transaction each.

use std::collections::{BTreeMap, HashMap};

use async_trait::async_trait;
use flotilla_core::UnixMillis;
use flotilla_core::command::{InvocationStatus, StepState};
use sqlx::AssertSqlSafe;
use sqlx::any::AnyRow;

use super::{MAX_BINDS, SqlStore, WriteTx, events, get, parse, placeholders, q};
use crate::{CommandRecord, CommandStore, DocumentHead, DocumentVersion, InvocationRecord, StoreError};

const COMMAND_COLUMNS: &str = "id, document, document_version, parameters, targets, plan, max_concurrency, max_errors, \
     delivery_timeout_ms, comment, status, stopped_for_errors, cancel_requested, created_at, ended_at, \
     notification";

/// The stored status of each of `list`'s invocations, by (command id, node id).
async fn statuses_before<'a>(
    tx: &mut WriteTx,
    list: &'a [InvocationRecord],
) -> Result<HashMap<(&'a str, &'a str), String>, StoreError> {
    let mut by_command: BTreeMap<&str, Vec<&str>> = BTreeMap::new();
    for i in list {
        by_command.entry(i.command_id.as_str()).or_default().push(i.node_id.as_str());
    }
    let mut out = HashMap::with_capacity(list.len());
    for (command, nodes) in by_command {
        for chunk in nodes.chunks(MAX_BINDS - 1) {
            let sql = format!(
                "SELECT node_id, status FROM invocations WHERE command_id = $1 AND node_id IN ({})",
                placeholders(2, chunk.len())
            );
            let mut query = sqlx::query(AssertSqlSafe(sql)).bind(command);
            for node in chunk {
                query = query.bind(*node);
            }
            let rows = query.fetch_all(&mut **tx).await.map_err(q("read invocations' statuses"))?;
            let mut found = HashMap::with_capacity(rows.len());
            for row in &rows {
                found.insert(get::<String>(row, "node_id")?, get::<String>(row, "status")?);
            }
            for node in chunk {
                if let Some(status) = found.remove(*node) {
                    out.insert((command, *node), status);
                }
            }
        }
    }
    Ok(out)
}

fn command_from_row(row: &AnyRow) -> Result<CommandRecord, StoreError> {
    let id: String = get(row, "id")?;
    Ok(CommandRecord {
        status: parse(row, "commands", &id, "status")?,
        id,
        document: get(row, "document")?,
        document_version: get(row, "document_version")?,
        parameters: get(row, "parameters")?,
        targets: get(row, "targets")?,
        plan: get(row, "plan")?,
        max_concurrency: get(row, "max_concurrency")?,
        max_errors: get(row, "max_errors")?,
        delivery_timeout_ms: get(row, "delivery_timeout_ms")?,
        comment: get(row, "comment")?,
        stopped_for_errors: get::<i64>(row, "stopped_for_errors")? != 0,
        cancel_requested: get::<i64>(row, "cancel_requested")? != 0,
        created_at: get(row, "created_at")?,
        ended_at: get(row, "ended_at")?,
        notification: get(row, "notification")?,
    })
}

const INVOCATION_COLUMNS: &str = "command_id, node_id, status, exit_code, dispatched_at, started_at, ended_at, stdout, \
     stderr, stdout_truncated, stderr_truncated, stdout_whole, stderr_whole, stdout_bytes, stderr_bytes, detail, state";

fn invocation_from_row(row: &AnyRow) -> Result<InvocationRecord, StoreError> {
    let command_id: String = get(row, "command_id")?;
    let node_id: String = get(row, "node_id")?;
    let key = invocation_key(&command_id, &node_id);
    Ok(InvocationRecord {
        status: parse(row, "invocations", &key, "status")?,
        command_id,
        node_id,
        exit_code: get(row, "exit_code")?,
        dispatched_at: get(row, "dispatched_at")?,
        started_at: get(row, "started_at")?,
        ended_at: get(row, "ended_at")?,
        stdout: get(row, "stdout")?,
        stderr: get(row, "stderr")?,
        stdout_truncated: get::<i64>(row, "stdout_truncated")? != 0,
        stderr_truncated: get::<i64>(row, "stderr_truncated")? != 0,
        stdout_whole: get::<i64>(row, "stdout_whole")? != 0,
        stderr_whole: get::<i64>(row, "stderr_whole")? != 0,
        stdout_bytes: get(row, "stdout_bytes")?,
        stderr_bytes: get(row, "stderr_bytes")?,
        detail: get(row, "detail")?,
        state: state_from_text(get(row, "state")?).map_err(|value| StoreError::UnknownValue {
            table: "invocations",
            key: key.clone(),
            column: "state",
            value,
        })?,
    })
}

/// A step state as stored in `invocations.state` (a JSON list of these).
#[derive(serde::Serialize, serde::Deserialize)]
struct StoredState {
    step: String,
    action: String,
    changed: bool,
    detail: String,
}

fn state_to_text(states: &[StepState]) -> Option<String> {
    if states.is_empty() {
        return None;
    }
    let stored: Vec<StoredState> = states
        .iter()
        .map(|s| StoredState {
            step: s.step.clone(),
            action: s.action.clone(),
            changed: s.changed,
            detail: s.detail.clone(),
        })
        .collect();
    serde_json::to_string(&stored).ok()
}

/// The stored text back; `Err` is the text (cut) when it is not a list of step states.
fn state_from_text(text: Option<String>) -> Result<Vec<StepState>, String> {
    let Some(text) = text.filter(|t| !t.is_empty()) else { return Ok(Vec::new()) };
    let stored: Vec<StoredState> =
        serde_json::from_str(&text).map_err(|_| text.chars().take(80).collect::<String>())?;
    Ok(stored
        .into_iter()
        .map(|s| StepState { step: s.step, action: s.action, changed: s.changed, detail: s.detail })
        .collect())
}

const DOCUMENT_HEAD_SELECT: &str = "SELECT h.name, h.latest_version, h.default_version, d.description \
     FROM document_heads h JOIN documents d ON d.name = h.name AND d.version = h.default_version";

fn document_head_from_row(row: &AnyRow) -> Result<DocumentHead, StoreError> {
    Ok(DocumentHead {
        name: get(row, "name")?,
        latest_version: get(row, "latest_version")?,
        default_version: get(row, "default_version")?,
        description: get(row, "description")?,
    })
}

/// An invocation's key in error messages: the command, then the node.
fn invocation_key(command_id: &str, node_id: &str) -> String {
    format!("{command_id}/{node_id}")
}

fn document_from_row(row: &AnyRow) -> Result<DocumentVersion, StoreError> {
    let name: String = get(row, "name")?;
    let version: i64 = get(row, "version")?;
    Ok(DocumentVersion {
        format: parse(row, "documents", &format!("{name} version {version}"), "format")?,
        name,
        version,
        content: get(row, "content")?,
        description: get(row, "description")?,
        created_at: get(row, "created_at")?,
    })
}

#[async_trait]
impl CommandStore for SqlStore {
    async fn put_document(&self, doc: &DocumentVersion) -> Result<i64, StoreError> {
        let name = doc.name.as_str();
        let mut tx = self.begin_write().await.map_err(q("begin a document update"))?;
        let head = sqlx::query("SELECT latest_version FROM document_heads WHERE name = $1")
            .bind(name)
            .fetch_optional(&mut *tx)
            .await
            .map_err(q("read a document's latest version"))?;
        let version = match head {
            Some(row) => get::<i64>(&row, "latest_version")? + 1,
            None => 1,
        };
        if version == 1 {
            sqlx::query("INSERT INTO document_heads (name, latest_version, default_version) VALUES ($1, 1, 1)")
                .bind(name)
                .execute(&mut *tx)
                .await
                .map_err(q("create a document"))?;
        } else {
            // The conditional update makes two concurrent updates conflict instead of both
            // claiming the same version.
            let done =
                sqlx::query("UPDATE document_heads SET latest_version = $1 WHERE name = $2 AND latest_version = $3")
                    .bind(version)
                    .bind(name)
                    .bind(version - 1)
                    .execute(&mut *tx)
                    .await
                    .map_err(q("advance a document's version"))?;
            if done.rows_affected() == 0 {
                return Err(StoreError::Query { op: "advance a document's version", source: sqlx::Error::RowNotFound });
            }
        }
        sqlx::query(
            "INSERT INTO documents (name, version, content, description, format, created_at) VALUES ($1, $2, $3, $4, $5, $6)",
        )
        .bind(name)
        .bind(version)
        .bind(&doc.content)
        .bind(&doc.description)
        .bind(doc.format.as_str())
        .bind(doc.created_at)
            .execute(&mut *tx)
            .await
            .map_err(q("store a document version"))?;
        tx.commit().await.map_err(q("commit a document version"))?;
        Ok(version)
    }

    async fn get_document(&self, name: &str, version: Option<i64>) -> Result<Option<DocumentVersion>, StoreError> {
        let row = match version {
            Some(v) => sqlx::query(
                "SELECT name, version, content, description, format, created_at FROM documents WHERE name = $1 AND version = $2",
            )
                .bind(name)
                .bind(v)
                .fetch_optional(&self.pool)
                .await,
            None => sqlx::query(
                "SELECT d.name, d.version, d.content, d.description, d.format, d.created_at FROM documents d \
                 JOIN document_heads h ON h.name = d.name AND h.default_version = d.version WHERE d.name = $1",
            )
            .bind(name)
            .fetch_optional(&self.pool)
            .await,
        }
        .map_err(q("read a document"))?;
        row.as_ref().map(document_from_row).transpose()
    }

    async fn list_documents(&self) -> Result<Vec<DocumentHead>, StoreError> {
        let rows = sqlx::query(AssertSqlSafe(format!("{DOCUMENT_HEAD_SELECT} ORDER BY h.name")))
            .fetch_all(&self.pool)
            .await
            .map_err(q("list documents"))?;
        rows.iter().map(document_head_from_row).collect()
    }

    async fn get_document_head(&self, name: &str) -> Result<Option<DocumentHead>, StoreError> {
        let row = sqlx::query(AssertSqlSafe(format!("{DOCUMENT_HEAD_SELECT} WHERE h.name = $1")))
            .bind(name)
            .fetch_optional(&self.pool)
            .await
            .map_err(q("read a document"))?;
        row.as_ref().map(document_head_from_row).transpose()
    }

    async fn set_default_document_version(&self, name: &str, version: i64) -> Result<bool, StoreError> {
        let done = sqlx::query(
            "UPDATE document_heads SET default_version = $1 WHERE name = $2 AND latest_version >= $1 AND $1 >= 1",
        )
        .bind(version)
        .bind(name)
        .execute(&self.pool)
        .await
        .map_err(q("set a document's default version"))?;
        Ok(done.rows_affected() > 0)
    }

    async fn create_command(&self, c: &CommandRecord, nodes: &[String]) -> Result<(), StoreError> {
        let mut tx = self.begin_write().await.map_err(q("begin creating a command"))?;
        sqlx::query(AssertSqlSafe(format!(
            "INSERT INTO commands ({COMMAND_COLUMNS}) VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13, $14, $15, $16)"
        )))
        .bind(&c.id)
        .bind(&c.document)
        .bind(c.document_version)
        .bind(&c.parameters)
        .bind(&c.targets)
        .bind(&c.plan)
        .bind(&c.max_concurrency)
        .bind(&c.max_errors)
        .bind(c.delivery_timeout_ms)
        .bind(&c.comment)
        .bind(c.status.as_str())
        .bind(i64::from(c.stopped_for_errors))
        .bind(i64::from(c.cancel_requested))
        .bind(c.created_at)
        .bind(c.ended_at)
        .bind(c.notification.clone())
        .execute(&mut *tx)
        .await
        .map_err(q("insert a command"))?;
        for node in nodes {
            sqlx::query("INSERT INTO invocations (command_id, node_id, status) VALUES ($1, $2, $3)")
                .bind(&c.id)
                .bind(node)
                .bind(InvocationStatus::Pending.as_str())
                .execute(&mut *tx)
                .await
                .map_err(q("insert an invocation"))?;
        }
        events::append(&mut tx, &[events::command_status(c, None)]).await?;
        tx.commit().await.map_err(q("commit a new command"))
    }

    async fn get_command(&self, id: &str) -> Result<Option<CommandRecord>, StoreError> {
        let row = sqlx::query(AssertSqlSafe(format!("SELECT {COMMAND_COLUMNS} FROM commands WHERE id = $1")))
            .bind(id)
            .fetch_optional(&self.pool)
            .await
            .map_err(q("read a command"))?;
        row.as_ref().map(command_from_row).transpose()
    }

    async fn list_commands(&self, limit: u32) -> Result<Vec<CommandRecord>, StoreError> {
        let rows = sqlx::query(AssertSqlSafe(format!(
            "SELECT {COMMAND_COLUMNS} FROM commands ORDER BY created_at DESC, id DESC LIMIT $1"
        )))
        .bind(i64::from(limit))
        .fetch_all(&self.pool)
        .await
        .map_err(q("list commands"))?;
        rows.iter().map(command_from_row).collect()
    }

    async fn unfinished_commands(&self) -> Result<Vec<String>, StoreError> {
        let rows = sqlx::query("SELECT id FROM commands WHERE ended_at IS NULL ORDER BY created_at")
            .fetch_all(&self.pool)
            .await
            .map_err(q("list unfinished commands"))?;
        rows.iter().map(|row| get(row, "id")).collect()
    }

    async fn update_command(&self, c: &CommandRecord) -> Result<(), StoreError> {
        let mut tx = self.begin_write().await.map_err(q("begin updating a command"))?;
        let previous: Option<String> = sqlx::query("SELECT status FROM commands WHERE id = $1")
            .bind(&c.id)
            .fetch_optional(&mut *tx)
            .await
            .map_err(q("read a command's status"))?
            .map(|row| get(&row, "status"))
            .transpose()?;
        sqlx::query(
            "UPDATE commands SET status = $1, stopped_for_errors = $2, cancel_requested = $3, ended_at = $4 WHERE id = $5",
        )
        .bind(c.status.as_str())
        .bind(i64::from(c.stopped_for_errors))
        .bind(i64::from(c.cancel_requested))
        .bind(c.ended_at)
        .bind(&c.id)
        .execute(&mut *tx)
        .await
        .map_err(q("update a command"))?;
        // No row, or the same status: nothing happened that an event would tell.
        if let Some(previous) = previous.filter(|p| p.as_str() != c.status.as_str()) {
            events::append(&mut tx, &[events::command_status(c, Some(&previous))]).await?;
        }
        tx.commit().await.map_err(q("commit a command update"))
    }

    async fn list_invocations(&self, command_id: &str) -> Result<Vec<InvocationRecord>, StoreError> {
        let rows = sqlx::query(AssertSqlSafe(format!(
            "SELECT {INVOCATION_COLUMNS} FROM invocations WHERE command_id = $1 ORDER BY node_id"
        )))
        .bind(command_id)
        .fetch_all(&self.pool)
        .await
        .map_err(q("list invocations"))?;
        rows.iter().map(invocation_from_row).collect()
    }

    async fn delete_commands_ended_before(&self, cutoff: UnixMillis) -> Result<Vec<String>, StoreError> {
        let mut tx = self.begin_write().await.map_err(q("begin deleting old commands"))?;
        sqlx::query(
            "DELETE FROM invocations WHERE command_id IN \
             (SELECT id FROM commands WHERE ended_at IS NOT NULL AND ended_at < $1)",
        )
        .bind(cutoff)
        .execute(&mut *tx)
        .await
        .map_err(q("delete old invocations"))?;
        let rows = sqlx::query("DELETE FROM commands WHERE ended_at IS NOT NULL AND ended_at < $1 RETURNING id")
            .bind(cutoff)
            .fetch_all(&mut *tx)
            .await
            .map_err(q("delete old commands"))?;
        tx.commit().await.map_err(q("commit deleting old commands"))?;
        rows.iter().map(|row| get(row, "id")).collect()
    }

    async fn invocation_counts(
        &self,
        command_ids: &[String],
    ) -> Result<Vec<(String, InvocationStatus, u32)>, StoreError> {
        let mut out = Vec::new();
        for chunk in command_ids.chunks(MAX_BINDS) {
            let sql = format!(
                "SELECT command_id, status, COUNT(*) AS n FROM invocations WHERE command_id IN ({}) GROUP BY command_id, status",
                placeholders(1, chunk.len())
            );
            let mut query = sqlx::query(AssertSqlSafe(sql));
            for id in chunk {
                query = query.bind(id);
            }
            let rows = query.fetch_all(&self.pool).await.map_err(q("count invocations"))?;
            for row in &rows {
                let n: i64 = get(row, "n")?;
                let command_id: String = get(row, "command_id")?;
                // A grouped row has no node: the key names the command.
                let status = parse(row, "invocations", &format!("{command_id}/(any node)"), "status")?;
                out.push((command_id, status, u32::try_from(n).unwrap_or(u32::MAX)));
            }
        }
        Ok(out)
    }

    async fn update_invocations(&self, list: &[InvocationRecord]) -> Result<(), StoreError> {
        if list.is_empty() {
            return Ok(());
        }
        let mut tx = self.begin_write().await.map_err(q("begin an invocation batch"))?;
        // The statuses before, to record an event only for a real change (the engine rewrites
        // invocations whose status did not change, e.g. to store output). Read in the write
        // transaction, a few statements per batch rather than one per invocation.
        let previous = statuses_before(&mut tx, list).await?;
        let mut changed = Vec::new();
        for i in list {
            let before = previous.get(&(i.command_id.as_str(), i.node_id.as_str()));
            if let Some(before) = before.filter(|p| p.as_str() != i.status.as_str()) {
                changed.push(events::invocation_status(i, before));
            }
            sqlx::query(
                "UPDATE invocations SET status = $1, exit_code = $2, dispatched_at = $3, started_at = $4, ended_at = $5, \
                 stdout = $6, stderr = $7, stdout_truncated = $8, stderr_truncated = $9, stdout_bytes = $10, \
                 stderr_bytes = $11, detail = $12, state = $13, stdout_whole = $14, stderr_whole = $15 \
                 WHERE command_id = $16 AND node_id = $17",
            )
            .bind(i.status.as_str())
            .bind(i.exit_code)
            .bind(i.dispatched_at)
            .bind(i.started_at)
            .bind(i.ended_at)
            .bind(&i.stdout)
            .bind(&i.stderr)
            .bind(i64::from(i.stdout_truncated))
            .bind(i64::from(i.stderr_truncated))
            .bind(i.stdout_bytes)
            .bind(i.stderr_bytes)
            .bind(&i.detail)
            .bind(state_to_text(&i.state))
            .bind(i64::from(i.stdout_whole))
            .bind(i64::from(i.stderr_whole))
            .bind(&i.command_id)
            .bind(&i.node_id)
            .execute(&mut *tx)
            .await
            .map_err(q("update an invocation"))?;
        }
        events::append(&mut tx, &changed).await?;
        tx.commit().await.map_err(q("commit an invocation batch"))
    }
}

#[cfg(test)]
mod state_tests {
    use super::*;

    #[test]
    fn step_states_round_trip_and_damage_is_reported() {
        let states = vec![StepState {
            step: "d.0".into(),
            action: "file:write".into(),
            changed: true,
            detail: "/etc/motd: created".into(),
        }];
        let text = state_to_text(&states);
        assert_eq!(state_from_text(text), Ok(states));
        assert_eq!(state_to_text(&[]), None, "no states: NULL");
        assert_eq!(state_from_text(None), Ok(Vec::new()));
        assert_eq!(state_from_text(Some("{\"v\":2}".into())), Err("{\"v\":2}".into()));
    }
}
