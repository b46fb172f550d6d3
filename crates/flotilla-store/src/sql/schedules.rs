//! SQL for the scheduler's occurrence record ([`crate::ScheduleStore`]).
//!
//! Invariant: a claim is `INSERT ... ON CONFLICT DO NOTHING` on the primary key (schedule_key,
//! occurrence_at): the database, not a read-then-write, decides the one winner, on SQLite and
//! on PostgreSQL shared by several servers alike. Outcomes are parsed once here; an unknown one
//! is a `Corrupt` error naming the row.

use async_trait::async_trait;
use sqlx::any::AnyRow;

use super::{SqlStore, get, q};
use crate::{OccurrenceOutcome, OccurrenceRecord, ScheduleStore, StoreError};

const COLUMNS: &str = "schedule_key, occurrence_at, outcome, recorded_at, claimed_by";

const INSERT: &str = "INSERT INTO schedule_occurrences (schedule_key, occurrence_at, outcome, recorded_at, claimed_by) \
     VALUES ($1, $2, $3, $4, $5) ON CONFLICT (schedule_key, occurrence_at) DO NOTHING";

fn record_from_row(row: &AnyRow) -> Result<OccurrenceRecord, StoreError> {
    let schedule_key: String = get(row, "schedule_key")?;
    let occurrence_at: i64 = get(row, "occurrence_at")?;
    let outcome: String = get(row, "outcome")?;
    let outcome = outcome.parse().map_err(|e: crate::UnknownOutcome| StoreError::Corrupt {
        what: "schedule occurrence outcome",
        key: format!("{schedule_key} at {occurrence_at}"),
        detail: e.to_string(),
    })?;
    Ok(OccurrenceRecord {
        outcome,
        recorded_at: get(row, "recorded_at")?,
        claimed_by: get(row, "claimed_by")?,
        schedule_key,
        occurrence_at,
    })
}

impl SqlStore {
    async fn newest_occurrence(
        &self,
        schedule_key: &str,
        outcome: Option<OccurrenceOutcome>,
    ) -> Result<Option<OccurrenceRecord>, StoreError> {
        let row = match outcome {
            None => {
                sqlx::query(sqlx::AssertSqlSafe(format!(
                    "SELECT {COLUMNS} FROM schedule_occurrences WHERE schedule_key = $1 \
                 ORDER BY occurrence_at DESC LIMIT 1"
                )))
                .bind(schedule_key)
                .fetch_optional(&self.pool)
                .await
            }
            Some(outcome) => {
                sqlx::query(sqlx::AssertSqlSafe(format!(
                    "SELECT {COLUMNS} FROM schedule_occurrences WHERE schedule_key = $1 AND outcome = $2 \
                 ORDER BY occurrence_at DESC LIMIT 1"
                )))
                .bind(schedule_key)
                .bind(outcome.as_str())
                .fetch_optional(&self.pool)
                .await
            }
        }
        .map_err(q("read a schedule's last occurrence"))?;
        row.as_ref().map(record_from_row).transpose()
    }
}

#[async_trait]
impl ScheduleStore for SqlStore {
    async fn claim_occurrence(
        &self,
        schedule_key: &str,
        occurrence_at: i64,
        outcome: OccurrenceOutcome,
        now: i64,
        claimed_by: &str,
    ) -> Result<bool, StoreError> {
        let mut tx = self.begin_write().await.map_err(q("begin a schedule claim"))?;
        let done = sqlx::query(INSERT)
            .bind(schedule_key)
            .bind(occurrence_at)
            .bind(outcome.as_str())
            .bind(now)
            .bind(claimed_by)
            .execute(&mut *tx)
            .await
            .map_err(q("claim a schedule occurrence"))?;
        tx.commit().await.map_err(q("commit a schedule claim"))?;
        Ok(done.rows_affected() == 1)
    }

    async fn record_missed(
        &self,
        schedule_key: &str,
        occurrences: &[i64],
        now: i64,
        claimed_by: &str,
    ) -> Result<u64, StoreError> {
        if occurrences.is_empty() {
            return Ok(0);
        }
        let mut tx = self.begin_write().await.map_err(q("begin recording missed occurrences"))?;
        let mut written = 0;
        for at in occurrences {
            written += sqlx::query(INSERT)
                .bind(schedule_key)
                .bind(*at)
                .bind(OccurrenceOutcome::Missed.as_str())
                .bind(now)
                .bind(claimed_by)
                .execute(&mut *tx)
                .await
                .map_err(q("record a missed occurrence"))?
                .rows_affected();
        }
        tx.commit().await.map_err(q("commit missed occurrences"))?;
        Ok(written)
    }

    async fn last_occurrence(&self, schedule_key: &str) -> Result<Option<OccurrenceRecord>, StoreError> {
        self.newest_occurrence(schedule_key, None).await
    }

    async fn last_fired(&self, schedule_key: &str) -> Result<Option<OccurrenceRecord>, StoreError> {
        self.newest_occurrence(schedule_key, Some(OccurrenceOutcome::Fired)).await
    }

    async fn list_occurrences(&self, schedule_key: &str, limit: u32) -> Result<Vec<OccurrenceRecord>, StoreError> {
        let rows = sqlx::query(sqlx::AssertSqlSafe(format!(
            "SELECT {COLUMNS} FROM schedule_occurrences WHERE schedule_key = $1 \
             ORDER BY occurrence_at DESC LIMIT $2"
        )))
        .bind(schedule_key)
        .bind(i64::from(limit))
        .fetch_all(&self.pool)
        .await
        .map_err(q("list a schedule's occurrences"))?;
        rows.iter().map(record_from_row).collect()
    }

    async fn delete_occurrences(&self, schedule_key: &str) -> Result<u64, StoreError> {
        let mut tx = self.begin_write().await.map_err(q("begin deleting occurrences"))?;
        let done = sqlx::query("DELETE FROM schedule_occurrences WHERE schedule_key = $1")
            .bind(schedule_key)
            .execute(&mut *tx)
            .await
            .map_err(q("delete a schedule's occurrences"))?;
        tx.commit().await.map_err(q("commit deleting occurrences"))?;
        Ok(done.rows_affected())
    }

    async fn prune_occurrences(&self, cutoff: i64) -> Result<u64, StoreError> {
        let mut tx = self.begin_write().await.map_err(q("begin pruning occurrences"))?;
        let done = sqlx::query(
            "DELETE FROM schedule_occurrences WHERE recorded_at < $1 AND occurrence_at < \
             (SELECT MAX(o.occurrence_at) FROM schedule_occurrences o \
              WHERE o.schedule_key = schedule_occurrences.schedule_key)",
        )
        .bind(cutoff)
        .execute(&mut *tx)
        .await
        .map_err(q("prune old occurrences"))?;
        tx.commit().await.map_err(q("commit pruning occurrences"))?;
        Ok(done.rows_affected())
    }
}

#[cfg(test)]
mod tests {
    use sqlx::ConnectOptions;

    use super::super::{SQLITE_MIGRATIONS, migrator};
    use crate::{OccurrenceOutcome, ScheduleStore, SqlStore};

    /// A template that fired under the old claim (`last_fired_at`) has that instant as its
    /// catch-up mark after migration 0009, so the new scheduler does not fire it again.
    #[tokio::test]
    async fn the_old_template_claim_becomes_the_first_occurrence() {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("flotilla.db");
        {
            let options = sqlx::sqlite::SqliteConnectOptions::new().filename(&path).create_if_missing(true);
            let mut conn = options.connect().await.expect("connect");
            let before: Vec<_> = SQLITE_MIGRATIONS.iter().take_while(|(v, _, _)| *v < 9).copied().collect();
            let before: &'static [(i64, &'static str, &'static str)] = Box::leak(before.into_boxed_slice());
            sqlx::any::install_default_drivers();
            let pool = sqlx::any::AnyPoolOptions::new()
                .connect(&format!("sqlite://{}", path.display()))
                .await
                .expect("any pool");
            migrator(before).run(&pool).await.expect("migrate to 0008");
            pool.close().await;
            sqlx::query(
                "INSERT INTO assessment_templates (name, targets, rules, noncompliant_at, duration_seconds, schedule, \
                 last_fired_at, created_at) VALUES ('nightly', '[]', '[]', 'High', 600, '0 3 * * *', 1000, 1), \
                 ('fresh', '[]', '[]', 'High', 600, '0 3 * * *', NULL, 1)",
            )
            .execute(&mut conn)
            .await
            .expect("a template from before 0009");
        }
        let store = SqlStore::open_sqlite(&path).await.expect("open runs 0009");
        let mark = store.last_occurrence("assessment-template:nightly").await.expect("read").expect("migrated");
        assert_eq!((mark.occurrence_at, mark.outcome), (1000, OccurrenceOutcome::Fired));
        assert_eq!(store.last_occurrence("assessment-template:fresh").await.expect("read"), None);
    }
}
