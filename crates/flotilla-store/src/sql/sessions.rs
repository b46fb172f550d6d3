//! SQL for [`SessionStore`].

use async_trait::async_trait;
use flotilla_core::{EventType, UnixMillis};
use sqlx::AssertSqlSafe;
use sqlx::any::AnyRow;

use super::{SqlStore, events, get, parse, q};
use crate::{NewEvent, SessionConnectionRecord, SessionRecord, SessionStore, StoreError};

const COLUMNS: &str =
    "id, node_id, kind, run_as, target, opened_by, started_at, ended_at, bytes_in, bytes_out, reason, transcript";
const CONNECTION_COLUMNS: &str = "session_id, seq, target, opened_at, closed_at, bytes_in, bytes_out, reason";

fn from_row(row: &AnyRow) -> Result<SessionRecord, StoreError> {
    let id: String = get(row, "id")?;
    Ok(SessionRecord {
        node_id: get(row, "node_id")?,
        kind: parse(row, "sessions", &id, "kind")?,
        run_as: get(row, "run_as")?,
        target: get(row, "target")?,
        opened_by: get(row, "opened_by")?,
        started_at: get(row, "started_at")?,
        ended_at: get(row, "ended_at")?,
        bytes_in: get(row, "bytes_in")?,
        bytes_out: get(row, "bytes_out")?,
        reason: get(row, "reason")?,
        transcript: get(row, "transcript")?,
        id,
    })
}

fn connection_from_row(row: &AnyRow) -> Result<SessionConnectionRecord, StoreError> {
    Ok(SessionConnectionRecord {
        session_id: get(row, "session_id")?,
        seq: get(row, "seq")?,
        target: get(row, "target")?,
        opened_at: get(row, "opened_at")?,
        closed_at: get(row, "closed_at")?,
        bytes_in: get(row, "bytes_in")?,
        bytes_out: get(row, "bytes_out")?,
        reason: get(row, "reason")?,
    })
}

fn ended_event(id: &str, node_id: &str, at: UnixMillis, bytes_in: i64, bytes_out: i64, reason: &str) -> NewEvent {
    NewEvent::new(
        EventType::SessionEnded,
        at,
        vec![id.to_owned(), node_id.to_owned()],
        serde_json::json!({ "session_id": id, "node_id": node_id, "bytes_in": bytes_in, "bytes_out": bytes_out, "reason": reason }),
    )
}

#[async_trait]
impl SessionStore for SqlStore {
    async fn create_session(&self, s: &SessionRecord) -> Result<(), StoreError> {
        let mut tx = self.begin_write().await.map_err(q("begin creating a session"))?;
        sqlx::query(AssertSqlSafe(format!(
            "INSERT INTO sessions ({COLUMNS}) VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12)"
        )))
        .bind(&s.id)
        .bind(&s.node_id)
        .bind(s.kind.as_str())
        .bind(&s.run_as)
        .bind(&s.target)
        .bind(&s.opened_by)
        .bind(s.started_at)
        .bind(s.ended_at)
        .bind(s.bytes_in)
        .bind(s.bytes_out)
        .bind(s.reason.clone())
        .bind(s.transcript.clone())
        .execute(&mut *tx)
        .await
        .map_err(q("insert a session"))?;
        let event = NewEvent::new(
            EventType::SessionStarted,
            s.started_at,
            vec![s.id.clone(), s.node_id.clone()],
            serde_json::json!({
                "session_id": s.id, "node_id": s.node_id, "kind": s.kind.as_str(), "user": s.run_as,
                "target": s.target, "opened_by": s.opened_by,
            }),
        );
        events::append(&mut tx, &[event]).await?;
        tx.commit().await.map_err(q("commit a new session"))
    }

    async fn session_bytes(&self, id: &str, bytes_in: i64, bytes_out: i64) -> Result<(), StoreError> {
        let mut tx = self.begin_write().await.map_err(q("begin counting a session's bytes"))?;
        sqlx::query("UPDATE sessions SET bytes_in = $2, bytes_out = $3 WHERE id = $1 AND ended_at IS NULL")
            .bind(id)
            .bind(bytes_in)
            .bind(bytes_out)
            .execute(&mut *tx)
            .await
            .map_err(q("count a session's bytes"))?;
        tx.commit().await.map_err(q("commit a session's bytes"))
    }

    async fn end_session(
        &self,
        id: &str,
        ended_at: UnixMillis,
        bytes_in: i64,
        bytes_out: i64,
        reason: &str,
    ) -> Result<bool, StoreError> {
        let mut tx = self.begin_write().await.map_err(q("begin ending a session"))?;
        let row = sqlx::query(
            "UPDATE sessions SET ended_at = $2, bytes_in = $3, bytes_out = $4, reason = $5 \
             WHERE id = $1 AND ended_at IS NULL RETURNING node_id",
        )
        .bind(id)
        .bind(ended_at)
        .bind(bytes_in)
        .bind(bytes_out)
        .bind(reason)
        .fetch_optional(&mut *tx)
        .await
        .map_err(q("end a session"))?;
        let Some(row) = row else { return Ok(false) };
        let node_id: String = get(&row, "node_id")?;
        events::append(&mut tx, &[ended_event(id, &node_id, ended_at, bytes_in, bytes_out, reason)]).await?;
        tx.commit().await.map_err(q("commit an ended session"))?;
        Ok(true)
    }

    async fn end_open_sessions(&self, ended_at: UnixMillis, reason: &str) -> Result<Vec<String>, StoreError> {
        let mut tx = self.begin_write().await.map_err(q("begin ending open sessions"))?;
        let rows = sqlx::query(
            "UPDATE sessions SET ended_at = $1, reason = $2 WHERE ended_at IS NULL \
             RETURNING id, node_id, bytes_in, bytes_out",
        )
        .bind(ended_at)
        .bind(reason)
        .fetch_all(&mut *tx)
        .await
        .map_err(q("end open sessions"))?;
        let mut ids = Vec::new();
        let mut news = Vec::new();
        for row in &rows {
            let id: String = get(row, "id")?;
            let node_id: String = get(row, "node_id")?;
            news.push(ended_event(&id, &node_id, ended_at, get(row, "bytes_in")?, get(row, "bytes_out")?, reason));
            ids.push(id);
        }
        events::append(&mut tx, &news).await?;
        tx.commit().await.map_err(q("commit ended sessions"))?;
        Ok(ids)
    }

    async fn get_session(&self, id: &str) -> Result<Option<SessionRecord>, StoreError> {
        let row = sqlx::query(AssertSqlSafe(format!("SELECT {COLUMNS} FROM sessions WHERE id = $1")))
            .bind(id)
            .fetch_optional(&self.pool)
            .await
            .map_err(q("read a session"))?;
        row.as_ref().map(from_row).transpose()
    }

    async fn list_sessions(&self, node_id: Option<&str>) -> Result<Vec<SessionRecord>, StoreError> {
        let rows = match node_id {
            Some(node) => {
                sqlx::query(AssertSqlSafe(format!(
                    "SELECT {COLUMNS} FROM sessions WHERE node_id = $1 ORDER BY started_at DESC, id"
                )))
                .bind(node)
                .fetch_all(&self.pool)
                .await
            }
            None => {
                sqlx::query(AssertSqlSafe(format!("SELECT {COLUMNS} FROM sessions ORDER BY started_at DESC, id")))
                    .fetch_all(&self.pool)
                    .await
            }
        }
        .map_err(q("list sessions"))?;
        rows.iter().map(from_row).collect()
    }

    async fn record_connection(&self, c: &SessionConnectionRecord) -> Result<(), StoreError> {
        let mut tx = self.begin_write().await.map_err(q("begin recording a forwarded connection"))?;
        sqlx::query(AssertSqlSafe(format!(
            "INSERT INTO session_connections ({CONNECTION_COLUMNS}) VALUES ($1, $2, $3, $4, $5, $6, $7, $8)"
        )))
        .bind(&c.session_id)
        .bind(c.seq)
        .bind(&c.target)
        .bind(c.opened_at)
        .bind(c.closed_at)
        .bind(c.bytes_in)
        .bind(c.bytes_out)
        .bind(&c.reason)
        .execute(&mut *tx)
        .await
        .map_err(q("record a forwarded connection"))?;
        tx.commit().await.map_err(q("commit a forwarded connection"))
    }

    async fn list_connections(&self, session_id: &str) -> Result<Vec<SessionConnectionRecord>, StoreError> {
        let rows = sqlx::query(AssertSqlSafe(format!(
            "SELECT {CONNECTION_COLUMNS} FROM session_connections WHERE session_id = $1 ORDER BY seq"
        )))
        .bind(session_id)
        .fetch_all(&self.pool)
        .await
        .map_err(q("list a session's connections"))?;
        rows.iter().map(connection_from_row).collect()
    }
}
