//! SQL of the event log ([`crate::EventStore`]) and [`append`], the outbox write every
//! state-changing store method makes inside its own transaction.
//!
//! Why readers never skip: sequence numbers come from one counter row (`event_sequence`),
//! advanced by an UPDATE in the writing transaction. On PostgreSQL that UPDATE holds the row's
//! lock until the transaction ends, so a second event writer waits for the first to commit
//! (or roll back) before it gets its numbers: event-writing transactions commit in sequence
//! order, and a reader that has seen `seq` N will never later find a committed event below N.
//! (PostgreSQL makes a transaction visible before it releases its locks, so "committed first"
//! is also "visible first".) A sequence (BIGSERIAL) alone would not do: numbers are taken at
//! insert and transactions commit in any order. On SQLite writers are serial anyway. The
//! counter only grows, so numbers are never reused after deletion, retention or a restart, and
//! a rolled-back transaction gives its numbers back with its rows, leaving no holes.
//!
//! The cost is that event writers serialize from their `append` to their commit: callers
//! append as the LAST statement before commit, which keeps that window short and means a
//! transaction holding the counter never waits for another lock (so no deadlock with writers
//! queued on the counter while holding row locks).

use std::str::FromStr;

use async_trait::async_trait;
use flotilla_core::{EventType, UnixMillis};
use sqlx::AssertSqlSafe;
use sqlx::any::AnyRow;

use super::{MAX_BINDS, SqlStore, WriteTx, from_json, get, q, to_json};
use crate::{EventRecord, EventStore, NewEvent, StoreError};

const COLUMNS: &str = "seq, id, time, type, source, resources, detail";
const BINDS_PER_ROW: usize = 7;

/// The event id of sequence number `seq`: unique because `seq` is never reused.
fn event_id(seq: i64) -> String {
    format!("ev-{seq}")
}

/// Appends `events` in the caller's transaction; returns their sequence numbers, in order.
/// Call it last before commit (see the module comment).
pub(crate) async fn append(tx: &mut WriteTx, events: &[NewEvent]) -> Result<Vec<i64>, StoreError> {
    if events.is_empty() {
        return Ok(Vec::new());
    }
    let conn: &mut sqlx::AnyConnection = tx;
    let count = i64::try_from(events.len()).unwrap_or(i64::MAX);
    let row = sqlx::query("UPDATE event_sequence SET last_seq = last_seq + $1 WHERE id = 1 RETURNING last_seq")
        .bind(count)
        .fetch_one(&mut *conn)
        .await
        .map_err(q("take event sequence numbers"))?;
    let last: i64 = get(&row, "last_seq")?;
    let first = last - count + 1;
    let seqs: Vec<i64> = (first..=last).collect();
    for (chunk_index, chunk) in events.chunks(MAX_BINDS / BINDS_PER_ROW).enumerate() {
        let rows: Vec<String> = (0..chunk.len())
            .map(|r| {
                let b = r * BINDS_PER_ROW;
                format!("(${}, ${}, ${}, ${}, ${}, ${}, ${})", b + 1, b + 2, b + 3, b + 4, b + 5, b + 6, b + 7)
            })
            .collect();
        let sql = format!("INSERT INTO events ({COLUMNS}) VALUES {}", rows.join(", "));
        let mut query = sqlx::query(AssertSqlSafe(sql));
        for (i, event) in chunk.iter().enumerate() {
            let seq = seqs[chunk_index * (MAX_BINDS / BINDS_PER_ROW) + i];
            query = query
                .bind(seq)
                .bind(event_id(seq))
                .bind(event.time)
                .bind(event.kind.as_str())
                .bind(event.kind.source())
                .bind(to_json(&event.resources))
                .bind(to_json(&event.detail));
        }
        query.execute(&mut *conn).await.map_err(q("append events"))?;
    }
    tx.appended = Some(last);
    Ok(seqs)
}

/// Now, for the time of events the store derives (the store's callers pass no clock to most
/// state-changing methods; the event's time is when the change is written).
pub(crate) fn now_ms() -> UnixMillis {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| i64::try_from(d.as_millis()).unwrap_or(i64::MAX))
        .unwrap_or(0)
}

// The events each state-changing method writes, in one place so that their shape (resources
// and detail fields) stays the same wherever the change is made.

pub(crate) fn node_event(kind: EventType, node_id: &str, detail: serde_json::Value) -> NewEvent {
    NewEvent::new(kind, now_ms(), vec![node_id.to_owned()], detail)
}

/// A command's status, `previous` being what it was (None when it was just created).
pub(crate) fn command_status(command: &crate::CommandRecord, previous: Option<&str>) -> NewEvent {
    NewEvent::new(
        EventType::CommandStatusChanged,
        now_ms(),
        vec![command.id.clone()],
        serde_json::json!({
            "command_id": command.id,
            "document": command.document,
            "status": command.status.as_str(),
            "previous_status": previous,
        }),
    )
}

pub(crate) fn invocation_status(invocation: &crate::InvocationRecord, previous: &str) -> NewEvent {
    NewEvent::new(
        EventType::InvocationStatusChanged,
        now_ms(),
        vec![invocation.command_id.clone(), invocation.node_id.clone()],
        serde_json::json!({
            "command_id": invocation.command_id,
            "node_id": invocation.node_id,
            "status": invocation.status.as_str(),
            "previous_status": previous,
            "exit_code": invocation.exit_code,
        }),
    )
}

/// `operation`: `Create`, `Update`, `Label` or `Delete`. Name and version only: the value is
/// never in an event.
pub(crate) fn parameter_changed(name: &str, version: Option<i64>, operation: &str, labels: &[String]) -> NewEvent {
    let mut detail = serde_json::json!({ "name": name, "version": version, "operation": operation });
    if !labels.is_empty() {
        detail["labels"] = serde_json::json!(labels);
    }
    NewEvent::new(EventType::ParameterChanged, now_ms(), vec![name.to_owned()], detail)
}

/// A run's status change: `Assessment.Completed` when it ended, `Assessment.StatusChanged`
/// otherwise.
pub(crate) fn assessment_status(run: &crate::AssessmentRunRecord, previous: Option<&str>) -> NewEvent {
    let kind = if matches!(run.status.as_str(), "Completed" | "Failed") {
        EventType::AssessmentCompleted
    } else {
        EventType::AssessmentStatusChanged
    };
    let counts: serde_json::Value = serde_json::from_str(&run.finding_counts).unwrap_or(serde_json::Value::Null);
    NewEvent::new(
        kind,
        now_ms(),
        vec![run.id.clone()],
        serde_json::json!({
            "run_id": run.id,
            "status": run.status.as_str(),
            "previous_status": previous,
            "node_count": run.node_count,
            "finding_counts": counts,
        }),
    )
}

pub(crate) fn findings_reported(
    run_id: &str,
    node: &crate::AssessmentNodeRecord,
    findings: &[crate::FindingRecord],
) -> NewEvent {
    let mut counts = std::collections::BTreeMap::<&str, u64>::new();
    for f in findings {
        *counts.entry(f.severity.as_str()).or_default() += 1;
    }
    // Most severe first, the highest score first within a severity: what a receiver acts on
    // first (the reference design's handler sorted them itself).
    let score = |f: &crate::FindingRecord| f.score.as_deref().and_then(|s| s.parse::<f64>().ok()).unwrap_or(-1.0);
    let mut sorted: Vec<&crate::FindingRecord> = findings.iter().collect();
    sorted.sort_by(|a, b| {
        a.severity.cmp(&b.severity).then(score(b).total_cmp(&score(a))).then_with(|| a.advisory_id.cmp(&b.advisory_id))
    });
    let listed: Vec<serde_json::Value> = sorted
        .iter()
        .map(|f| {
            serde_json::json!({
                "severity": f.severity.as_str(),
                "advisory_id": f.advisory_id,
                "package": f.package,
                "installed_version": f.installed_version,
                "fixed_version": f.fixed_version,
                "score": f.score,
                "title": f.title,
            })
        })
        .collect();
    NewEvent::new(
        EventType::FindingReported,
        now_ms(),
        vec![run_id.to_owned(), node.node_id.clone()],
        serde_json::json!({
            "run_id": run_id,
            "node_id": node.node_id,
            "status": node.status.as_str(),
            "finding_counts": counts,
            "findings": listed,
        }),
    )
}

fn record_from_row(row: &AnyRow) -> Result<EventRecord, StoreError> {
    let seq: i64 = get(row, "seq")?;
    let key = seq.to_string();
    let kind: String = get(row, "type")?;
    let resources: String = get(row, "resources")?;
    let detail: String = get(row, "detail")?;
    Ok(EventRecord {
        kind: EventType::from_str(&kind).map_err(|e| StoreError::Corrupt {
            what: "event type",
            key: format!("event {key}"),
            detail: e.to_string(),
        })?,
        id: get(row, "id")?,
        time: get(row, "time")?,
        source: get(row, "source")?,
        resources: from_json(&resources, "event resources", &key)?,
        detail: from_json(&detail, "event detail", &key)?,
        seq,
    })
}

#[async_trait]
impl EventStore for SqlStore {
    async fn list_events(&self, after: i64, types: &[EventType], limit: u32) -> Result<Vec<EventRecord>, StoreError> {
        let mut sql = format!("SELECT {COLUMNS} FROM events WHERE seq > $1");
        if !types.is_empty() {
            sql.push_str(&format!(" AND type IN ({})", super::placeholders(2, types.len())));
        }
        sql.push_str(&format!(" ORDER BY seq LIMIT ${}", types.len() + 2));
        let mut query = sqlx::query(AssertSqlSafe(sql)).bind(after);
        for t in types {
            query = query.bind(t.as_str());
        }
        let rows = query.bind(i64::from(limit)).fetch_all(&self.pool).await.map_err(q("list events"))?;
        rows.iter().map(record_from_row).collect()
    }

    async fn last_event_seq(&self) -> Result<i64, StoreError> {
        let row = sqlx::query("SELECT last_seq FROM event_sequence WHERE id = 1")
            .fetch_one(&self.pool)
            .await
            .map_err(q("read the last event sequence number"))?;
        get(&row, "last_seq")
    }

    async fn delete_events_before(&self, cutoff: UnixMillis) -> Result<u64, StoreError> {
        let mut tx = self.begin_write().await.map_err(q("begin deleting old events"))?;
        let done = sqlx::query("DELETE FROM events WHERE time < $1")
            .bind(cutoff)
            .execute(&mut *tx)
            .await
            .map_err(q("delete old events"))?;
        tx.commit().await.map_err(q("commit deleting old events"))?;
        Ok(done.rows_affected())
    }

    fn watch_appended(&self) -> tokio::sync::watch::Receiver<i64> {
        self.appended.subscribe()
    }

    async fn publish(&self, events: &[NewEvent]) -> Result<Vec<i64>, StoreError> {
        if events.is_empty() {
            return Ok(Vec::new());
        }
        let mut tx = self.begin_write().await.map_err(q("begin publishing events"))?;
        let seqs = append(&mut tx, events).await?;
        tx.commit().await.map_err(q("commit published events"))?;
        Ok(seqs)
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use flotilla_core::EventType;

    use super::{append, event_id};
    use crate::{EventStore, NewEvent, SqlStore};

    #[test]
    fn ids_follow_sequence_numbers() {
        assert_eq!(event_id(1), "ev-1");
        assert_ne!(event_id(10), event_id(1));
    }

    fn one(time: i64) -> NewEvent {
        NewEvent::new(EventType::CommandStatusChanged, time, vec!["c-1".into()], serde_json::json!({}))
    }

    /// The case a plain sequence gets wrong: a transaction takes seq 1 and has not committed
    /// when another writer comes. The second writer must wait, so a reader never sees seq 2
    /// while seq 1 may still appear (it would page past it for good).
    #[tokio::test]
    async fn postgres_a_later_writer_waits_for_an_earlier_uncommitted_one() {
        let db = flotilla_testkit::postgres::TempDatabase::for_test().await;
        let store = Arc::new(SqlStore::open_postgres(db.url()).await.expect("open"));
        let mut slow = store.begin_write().await.expect("begin");
        assert_eq!(append(&mut slow, &[one(1)]).await.expect("append"), vec![1]);

        let later = {
            let store = store.clone();
            tokio::spawn(async move { store.publish(&[one(2)]).await })
        };
        // Give the later writer every chance to (wrongly) commit first.
        for _ in 0..20 {
            tokio::time::sleep(std::time::Duration::from_millis(10)).await;
            assert!(store.list_events(0, &[], 10).await.expect("read").is_empty(), "nothing visible yet");
        }
        assert!(!later.is_finished(), "the later writer waits for the earlier transaction");
        slow.commit().await.expect("commit");
        assert_eq!(later.await.expect("join").expect("publish"), vec![2]);
        let seqs: Vec<i64> = store.list_events(0, &[], 10).await.expect("read").iter().map(|e| e.seq).collect();
        assert_eq!(seqs, [1, 2]);

        // A rolled-back writer leaves no hole and no event.
        let mut aborted = store.begin_write().await.expect("begin");
        append(&mut aborted, &[one(3)]).await.expect("append");
        drop(aborted);
        assert_eq!(store.publish(&[one(4)]).await.expect("publish"), vec![3]);
        assert_eq!(store.list_events(2, &[], 10).await.expect("read")[0].time, 4);
        store.close().await;
        db.drop_database().await.expect("drop");
    }
}
