//! SQL for [`WindowStore`].

use async_trait::async_trait;
use flotilla_core::EventType;
use flotilla_core::window::{ExecutionStatus, TaskStatus};
use sqlx::AssertSqlSafe;
use sqlx::any::AnyRow;

use super::{SqlStore, from_json, get, parse, q, to_json};
use crate::{
    NewEvent, StoreError, TaskInvocationRecord, WindowExecutionRecord, WindowRecord, WindowStore, WindowTargetRecord,
    WindowTaskRecord,
};

const WINDOW_COLUMNS: &str = "id, name, schedule, timezone, duration_hours, cutoff_hours, start_date, end_date, \
                              enabled, schedule_since, created_at";
const EXECUTION_COLUMNS: &str =
    "id, window_id, occurrence_at, duration_hours, cutoff_hours, status, detail, started_at, ended_at";
const INVOCATION_COLUMNS: &str = "execution_id, task_id, task_name, document, document_version, parameters, \
                                  priority, max_concurrency, max_errors, cutoff_behavior, status, command_id, \
                                  reason, started_at, ended_at";
const TASK_COLUMNS: &str = "id, window_id, name, document, document_version, parameters, priority, max_concurrency, \
                            max_errors, cutoff_behavior, created_at";

fn window_from_row(row: &AnyRow) -> Result<WindowRecord, StoreError> {
    Ok(WindowRecord {
        id: get(row, "id")?,
        name: get(row, "name")?,
        schedule: get(row, "schedule")?,
        timezone: get(row, "timezone")?,
        duration_hours: get(row, "duration_hours")?,
        cutoff_hours: get(row, "cutoff_hours")?,
        start_date: get(row, "start_date")?,
        end_date: get(row, "end_date")?,
        enabled: get::<i64>(row, "enabled")? != 0,
        schedule_since: get(row, "schedule_since")?,
        created_at: get(row, "created_at")?,
    })
}

fn execution_from_row(row: &AnyRow) -> Result<WindowExecutionRecord, StoreError> {
    let id: String = get(row, "id")?;
    Ok(WindowExecutionRecord {
        status: parse(row, "window_executions", &id, "status")?,
        window_id: get(row, "window_id")?,
        occurrence_at: get(row, "occurrence_at")?,
        duration_hours: get(row, "duration_hours")?,
        cutoff_hours: get(row, "cutoff_hours")?,
        detail: get(row, "detail")?,
        started_at: get(row, "started_at")?,
        ended_at: get(row, "ended_at")?,
        id,
    })
}

fn invocation_from_row(row: &AnyRow) -> Result<TaskInvocationRecord, StoreError> {
    let execution_id: String = get(row, "execution_id")?;
    let task_id: String = get(row, "task_id")?;
    let key = format!("{execution_id}/{task_id}");
    Ok(TaskInvocationRecord {
        status: parse(row, "window_task_invocations", &key, "status")?,
        cutoff_behavior: parse(row, "window_task_invocations", &key, "cutoff_behavior")?,
        task_name: get(row, "task_name")?,
        document: get(row, "document")?,
        document_version: get(row, "document_version")?,
        parameters: get(row, "parameters")?,
        priority: get(row, "priority")?,
        max_concurrency: get(row, "max_concurrency")?,
        max_errors: get(row, "max_errors")?,
        command_id: get(row, "command_id")?,
        reason: get(row, "reason")?,
        started_at: get(row, "started_at")?,
        ended_at: get(row, "ended_at")?,
        execution_id,
        task_id,
    })
}

fn task_from_row(row: &AnyRow) -> Result<WindowTaskRecord, StoreError> {
    let id: String = get(row, "id")?;
    Ok(WindowTaskRecord {
        cutoff_behavior: parse(row, "window_tasks", &id, "cutoff_behavior")?,
        window_id: get(row, "window_id")?,
        name: get(row, "name")?,
        document: get(row, "document")?,
        document_version: get(row, "document_version")?,
        parameters: get(row, "parameters")?,
        priority: get(row, "priority")?,
        max_concurrency: get(row, "max_concurrency")?,
        max_errors: get(row, "max_errors")?,
        created_at: get(row, "created_at")?,
        id,
    })
}

/// Whether a change to `status` is one the event log records: the start or the end.
fn announced(status: ExecutionStatus) -> bool {
    status == ExecutionStatus::InProgress || status.is_terminal()
}

/// `Window.Execution`: an execution started or ended.
fn execution_event(e: &WindowExecutionRecord, previous: Option<&str>) -> NewEvent {
    NewEvent::new(
        EventType::WindowExecution,
        super::events::now_ms(),
        vec![e.window_id.clone(), e.id.clone()],
        serde_json::json!({
            "window_id": e.window_id,
            "execution_id": e.id,
            "occurrence_at_ms": e.occurrence_at,
            "status": e.status.as_str(),
            "previous_status": previous,
            "detail": e.detail,
        }),
    )
}

#[async_trait]
impl WindowStore for SqlStore {
    async fn create_window(&self, w: &WindowRecord) -> Result<bool, StoreError> {
        let done = sqlx::query(AssertSqlSafe(format!(
            "INSERT INTO windows ({WINDOW_COLUMNS}) VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11) \
             ON CONFLICT DO NOTHING"
        )))
        .bind(&w.id)
        .bind(&w.name)
        .bind(&w.schedule)
        .bind(w.timezone.clone())
        .bind(w.duration_hours)
        .bind(w.cutoff_hours)
        .bind(w.start_date)
        .bind(w.end_date)
        .bind(i64::from(w.enabled))
        .bind(w.schedule_since)
        .bind(w.created_at)
        .execute(&self.pool)
        .await
        .map_err(q("store a maintenance window"))?;
        Ok(done.rows_affected() > 0)
    }

    async fn update_window(&self, w: &WindowRecord) -> Result<bool, StoreError> {
        let done = sqlx::query(
            "UPDATE windows SET name = $2, schedule = $3, timezone = $4, duration_hours = $5, cutoff_hours = $6, \
             start_date = $7, end_date = $8, enabled = $9, schedule_since = $10 WHERE id = $1",
        )
        .bind(&w.id)
        .bind(&w.name)
        .bind(&w.schedule)
        .bind(w.timezone.clone())
        .bind(w.duration_hours)
        .bind(w.cutoff_hours)
        .bind(w.start_date)
        .bind(w.end_date)
        .bind(i64::from(w.enabled))
        .bind(w.schedule_since)
        .execute(&self.pool)
        .await
        .map_err(q("update a maintenance window"))?;
        Ok(done.rows_affected() > 0)
    }

    async fn get_window(&self, id: &str) -> Result<Option<WindowRecord>, StoreError> {
        let row = sqlx::query(AssertSqlSafe(format!("SELECT {WINDOW_COLUMNS} FROM windows WHERE id = $1")))
            .bind(id)
            .fetch_optional(&self.pool)
            .await
            .map_err(q("read a maintenance window"))?;
        row.as_ref().map(window_from_row).transpose()
    }

    async fn find_window_by_name(&self, name: &str) -> Result<Option<WindowRecord>, StoreError> {
        let row = sqlx::query(AssertSqlSafe(format!("SELECT {WINDOW_COLUMNS} FROM windows WHERE name = $1")))
            .bind(name)
            .fetch_optional(&self.pool)
            .await
            .map_err(q("find a maintenance window by name"))?;
        row.as_ref().map(window_from_row).transpose()
    }

    async fn list_windows(&self) -> Result<Vec<WindowRecord>, StoreError> {
        let rows = sqlx::query(AssertSqlSafe(format!("SELECT {WINDOW_COLUMNS} FROM windows ORDER BY name")))
            .fetch_all(&self.pool)
            .await
            .map_err(q("list maintenance windows"))?;
        rows.iter().map(window_from_row).collect()
    }

    async fn delete_window(&self, id: &str) -> Result<bool, StoreError> {
        let mut tx = self.begin_write().await.map_err(q("begin deleting a maintenance window"))?;
        let statements = [
            "DELETE FROM window_task_invocations WHERE execution_id IN \
             (SELECT id FROM window_executions WHERE window_id = $1)",
            "DELETE FROM window_executions WHERE window_id = $1",
            "DELETE FROM window_tasks WHERE window_id = $1",
            "DELETE FROM window_targets WHERE window_id = $1",
        ];
        for sql in statements {
            sqlx::query(sql).bind(id).execute(&mut *tx).await.map_err(q("delete a maintenance window's records"))?;
        }
        let done = sqlx::query("DELETE FROM windows WHERE id = $1")
            .bind(id)
            .execute(&mut *tx)
            .await
            .map_err(q("delete a maintenance window"))?;
        tx.commit().await.map_err(q("commit deleting a maintenance window"))?;
        Ok(done.rows_affected() > 0)
    }

    async fn add_window_target(&self, t: &WindowTargetRecord) -> Result<(), StoreError> {
        sqlx::query(
            "INSERT INTO window_targets (id, window_id, name, targets, created_at) VALUES ($1, $2, $3, $4, $5)",
        )
        .bind(&t.id)
        .bind(&t.window_id)
        .bind(&t.name)
        .bind(to_json(&t.targets))
        .bind(t.created_at)
        .execute(&self.pool)
        .await
        .map_err(q("register a window target"))?;
        Ok(())
    }

    async fn remove_window_target(&self, window_id: &str, target_id: &str) -> Result<bool, StoreError> {
        let done = sqlx::query("DELETE FROM window_targets WHERE window_id = $1 AND id = $2")
            .bind(window_id)
            .bind(target_id)
            .execute(&self.pool)
            .await
            .map_err(q("remove a window target"))?;
        Ok(done.rows_affected() > 0)
    }

    async fn list_window_targets(&self, window_id: &str) -> Result<Vec<WindowTargetRecord>, StoreError> {
        let rows = sqlx::query(
            "SELECT id, window_id, name, targets, created_at FROM window_targets WHERE window_id = $1 \
             ORDER BY created_at, id",
        )
        .bind(window_id)
        .fetch_all(&self.pool)
        .await
        .map_err(q("list window targets"))?;
        rows.iter()
            .map(|row| {
                let id: String = get(row, "id")?;
                let targets: String = get(row, "targets")?;
                Ok(WindowTargetRecord {
                    targets: from_json(&targets, "window target expressions", &id)?,
                    window_id: get(row, "window_id")?,
                    name: get(row, "name")?,
                    created_at: get(row, "created_at")?,
                    id,
                })
            })
            .collect()
    }

    async fn add_window_task(&self, t: &WindowTaskRecord) -> Result<(), StoreError> {
        sqlx::query(AssertSqlSafe(format!(
            "INSERT INTO window_tasks ({TASK_COLUMNS}) VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11)"
        )))
        .bind(&t.id)
        .bind(&t.window_id)
        .bind(&t.name)
        .bind(&t.document)
        .bind(t.document_version)
        .bind(&t.parameters)
        .bind(t.priority)
        .bind(&t.max_concurrency)
        .bind(&t.max_errors)
        .bind(t.cutoff_behavior.as_str())
        .bind(t.created_at)
        .execute(&self.pool)
        .await
        .map_err(q("register a window task"))?;
        Ok(())
    }

    async fn remove_window_task(&self, window_id: &str, task_id: &str) -> Result<bool, StoreError> {
        let done = sqlx::query("DELETE FROM window_tasks WHERE window_id = $1 AND id = $2")
            .bind(window_id)
            .bind(task_id)
            .execute(&self.pool)
            .await
            .map_err(q("remove a window task"))?;
        Ok(done.rows_affected() > 0)
    }

    async fn list_window_tasks(&self, window_id: &str) -> Result<Vec<WindowTaskRecord>, StoreError> {
        let rows = sqlx::query(AssertSqlSafe(format!(
            "SELECT {TASK_COLUMNS} FROM window_tasks WHERE window_id = $1 ORDER BY priority, created_at, id"
        )))
        .bind(window_id)
        .fetch_all(&self.pool)
        .await
        .map_err(q("list window tasks"))?;
        rows.iter().map(task_from_row).collect()
    }

    async fn create_window_execution(
        &self,
        e: &WindowExecutionRecord,
        tasks: &[TaskInvocationRecord],
    ) -> Result<bool, StoreError> {
        let mut tx = self.begin_write().await.map_err(q("begin a window execution"))?;
        let done = sqlx::query(AssertSqlSafe(format!(
            "INSERT INTO window_executions ({EXECUTION_COLUMNS}) VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9) \
             ON CONFLICT DO NOTHING"
        )))
        .bind(&e.id)
        .bind(&e.window_id)
        .bind(e.occurrence_at)
        .bind(e.duration_hours)
        .bind(e.cutoff_hours)
        .bind(e.status.as_str())
        .bind(&e.detail)
        .bind(e.started_at)
        .bind(e.ended_at)
        .execute(&mut *tx)
        .await
        .map_err(q("store a window execution"))?;
        if done.rows_affected() == 0 {
            return Ok(false);
        }
        for t in tasks {
            insert_invocation(&mut tx, t).await?;
        }
        if announced(e.status) {
            super::events::append(&mut tx, &[execution_event(e, None)]).await?;
        }
        tx.commit().await.map_err(q("commit a window execution"))?;
        Ok(true)
    }

    async fn update_window_execution(&self, e: &WindowExecutionRecord) -> Result<(), StoreError> {
        let mut tx = self.begin_write().await.map_err(q("begin updating a window execution"))?;
        let previous: Option<String> = sqlx::query("SELECT status FROM window_executions WHERE id = $1")
            .bind(&e.id)
            .fetch_optional(&mut *tx)
            .await
            .map_err(q("read a window execution's status"))?
            .map(|row| get(&row, "status"))
            .transpose()?;
        sqlx::query("UPDATE window_executions SET status = $2, detail = $3, ended_at = $4 WHERE id = $1")
            .bind(&e.id)
            .bind(e.status.as_str())
            .bind(&e.detail)
            .bind(e.ended_at)
            .execute(&mut *tx)
            .await
            .map_err(q("update a window execution"))?;
        if let Some(previous) = previous.filter(|p| p.as_str() != e.status.as_str())
            && announced(e.status)
        {
            super::events::append(&mut tx, &[execution_event(e, Some(&previous))]).await?;
        }
        tx.commit().await.map_err(q("commit a window execution update"))?;
        Ok(())
    }

    async fn get_window_execution(&self, id: &str) -> Result<Option<WindowExecutionRecord>, StoreError> {
        let row =
            sqlx::query(AssertSqlSafe(format!("SELECT {EXECUTION_COLUMNS} FROM window_executions WHERE id = $1")))
                .bind(id)
                .fetch_optional(&self.pool)
                .await
                .map_err(q("read a window execution"))?;
        row.as_ref().map(execution_from_row).transpose()
    }

    async fn list_window_executions(
        &self,
        window_id: &str,
        limit: u32,
    ) -> Result<Vec<WindowExecutionRecord>, StoreError> {
        let rows = sqlx::query(AssertSqlSafe(format!(
            "SELECT {EXECUTION_COLUMNS} FROM window_executions WHERE window_id = $1 \
             ORDER BY occurrence_at DESC, id LIMIT $2"
        )))
        .bind(window_id)
        .bind(i64::from(limit))
        .fetch_all(&self.pool)
        .await
        .map_err(q("list window executions"))?;
        rows.iter().map(execution_from_row).collect()
    }

    async fn unfinished_window_executions(&self) -> Result<Vec<WindowExecutionRecord>, StoreError> {
        let rows = sqlx::query(AssertSqlSafe(format!(
            "SELECT {EXECUTION_COLUMNS} FROM window_executions WHERE status IN ($1, $2, $3) ORDER BY occurrence_at, id"
        )))
        .bind(ExecutionStatus::Pending.as_str())
        .bind(ExecutionStatus::InProgress.as_str())
        .bind(ExecutionStatus::Cancelling.as_str())
        .fetch_all(&self.pool)
        .await
        .map_err(q("list unfinished window executions"))?;
        rows.iter().map(execution_from_row).collect()
    }

    async fn list_task_invocations(&self, execution_id: &str) -> Result<Vec<TaskInvocationRecord>, StoreError> {
        let rows = sqlx::query(AssertSqlSafe(format!(
            "SELECT {INVOCATION_COLUMNS} FROM window_task_invocations WHERE execution_id = $1 \
             ORDER BY priority, task_name, task_id"
        )))
        .bind(execution_id)
        .fetch_all(&self.pool)
        .await
        .map_err(q("list window task invocations"))?;
        rows.iter().map(invocation_from_row).collect()
    }

    async fn claim_task_start(&self, execution_id: &str, task_id: &str, started_at: i64) -> Result<bool, StoreError> {
        let done = sqlx::query(
            "UPDATE window_task_invocations SET status = $3, started_at = $4 \
             WHERE execution_id = $1 AND task_id = $2 AND status = $5",
        )
        .bind(execution_id)
        .bind(task_id)
        .bind(TaskStatus::InProgress.as_str())
        .bind(started_at)
        .bind(TaskStatus::Pending.as_str())
        .execute(&self.pool)
        .await
        .map_err(q("claim a window task's start"))?;
        Ok(done.rows_affected() == 1)
    }

    async fn update_task_invocation(&self, t: &TaskInvocationRecord) -> Result<(), StoreError> {
        sqlx::query(
            "UPDATE window_task_invocations SET status = $3, command_id = $4, reason = $5, started_at = $6, \
             ended_at = $7 WHERE execution_id = $1 AND task_id = $2",
        )
        .bind(&t.execution_id)
        .bind(&t.task_id)
        .bind(t.status.as_str())
        .bind(t.command_id.clone())
        .bind(&t.reason)
        .bind(t.started_at)
        .bind(t.ended_at)
        .execute(&self.pool)
        .await
        .map_err(q("update a window task invocation"))?;
        Ok(())
    }
}

async fn insert_invocation(tx: &mut super::WriteTx, t: &TaskInvocationRecord) -> Result<(), StoreError> {
    let conn: &mut sqlx::AnyConnection = tx;
    sqlx::query(AssertSqlSafe(format!(
        "INSERT INTO window_task_invocations ({INVOCATION_COLUMNS}) \
         VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13, $14, $15)"
    )))
    .bind(&t.execution_id)
    .bind(&t.task_id)
    .bind(&t.task_name)
    .bind(&t.document)
    .bind(t.document_version)
    .bind(&t.parameters)
    .bind(t.priority)
    .bind(&t.max_concurrency)
    .bind(&t.max_errors)
    .bind(t.cutoff_behavior.as_str())
    .bind(t.status.as_str())
    .bind(t.command_id.clone())
    .bind(&t.reason)
    .bind(t.started_at)
    .bind(t.ended_at)
    .execute(&mut *conn)
    .await
    .map_err(q("store a window task invocation"))?;
    Ok(())
}
