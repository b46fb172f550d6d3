//! SQL for [`NotificationStore`].

use std::collections::BTreeMap;

use async_trait::async_trait;
use flotilla_core::UnixMillis;
use flotilla_core::notification::DeliveryStatus;
use sqlx::AssertSqlSafe;
use sqlx::any::AnyRow;

use super::{MAX_BINDS, SqlStore, from_json, get, parse, q, to_json};
use crate::{DeliveryRecord, NewDelivery, NotificationStore, RuleRecord, StoreError, SubscriptionRecord, TopicRecord};

const SUB_COLUMNS: &str = "id, topic, kind, endpoint, secret, ca_pem, timeout_ms, parameters, targets, created_at";
const RULE_COLUMNS: &str = "id, name, pattern, target, parameters, targets, enabled, problem, created_at, updated_at";
const DELIVERY_COLUMNS: &str =
    "subscription_id, event_seq, event_id, status, attempts, next_attempt_at, last_error, updated_at";

fn sub_from_row(row: &AnyRow) -> Result<SubscriptionRecord, StoreError> {
    let id: String = get(row, "id")?;
    let parameters: String = get(row, "parameters")?;
    let targets: String = get(row, "targets")?;
    Ok(SubscriptionRecord {
        topic: get(row, "topic")?,
        kind: parse(row, "notification_subscriptions", &id, "kind")?,
        endpoint: get(row, "endpoint")?,
        secret: get(row, "secret")?,
        ca_pem: get(row, "ca_pem")?,
        timeout_ms: get(row, "timeout_ms")?,
        parameters: from_json(&parameters, "subscription parameters", &id)?,
        targets: from_json(&targets, "subscription targets", &id)?,
        created_at: get(row, "created_at")?,
        id,
    })
}

fn rule_from_row(row: &AnyRow) -> Result<RuleRecord, StoreError> {
    let id: String = get(row, "id")?;
    let parameters: String = get(row, "parameters")?;
    let targets: String = get(row, "targets")?;
    Ok(RuleRecord {
        name: get(row, "name")?,
        pattern: get(row, "pattern")?,
        target: get(row, "target")?,
        parameters: from_json(&parameters, "rule parameters", &id)?,
        targets: from_json(&targets, "rule targets", &id)?,
        enabled: get::<i64>(row, "enabled")? != 0,
        problem: get(row, "problem")?,
        created_at: get(row, "created_at")?,
        updated_at: get(row, "updated_at")?,
        id,
    })
}

fn delivery_from_row(row: &AnyRow) -> Result<DeliveryRecord, StoreError> {
    let subscription_id: String = get(row, "subscription_id")?;
    let event_seq: i64 = get(row, "event_seq")?;
    let key = format!("{subscription_id}/{event_seq}");
    Ok(DeliveryRecord {
        event_id: get(row, "event_id")?,
        status: parse(row, "notification_deliveries", &key, "status")?,
        attempts: get(row, "attempts")?,
        next_attempt_at: get(row, "next_attempt_at")?,
        last_error: get(row, "last_error")?,
        updated_at: get(row, "updated_at")?,
        subscription_id,
        event_seq,
    })
}

fn is_unique_violation(e: &sqlx::Error) -> bool {
    matches!(e, sqlx::Error::Database(d) if d.is_unique_violation())
}

#[async_trait]
impl NotificationStore for SqlStore {
    async fn create_topic(&self, name: &str, now: UnixMillis) -> Result<bool, StoreError> {
        let mut tx = self.begin_write().await.map_err(q("begin creating a topic"))?;
        let done = sqlx::query(
            "INSERT INTO notification_topics (name, created_at) VALUES ($1, $2) ON CONFLICT (name) DO NOTHING",
        )
        .bind(name)
        .bind(now)
        .execute(&mut *tx)
        .await
        .map_err(q("insert a topic"))?;
        tx.commit().await.map_err(q("commit a topic"))?;
        Ok(done.rows_affected() > 0)
    }

    async fn list_topics(&self) -> Result<Vec<TopicRecord>, StoreError> {
        let rows = sqlx::query(
            "SELECT t.name, t.created_at, COUNT(s.id) AS subs FROM notification_topics t \
             LEFT JOIN notification_subscriptions s ON s.topic = t.name GROUP BY t.name, t.created_at ORDER BY t.name",
        )
        .fetch_all(&self.pool)
        .await
        .map_err(q("list topics"))?;
        rows.iter()
            .map(|r| {
                Ok(TopicRecord {
                    name: get(r, "name")?,
                    created_at: get(r, "created_at")?,
                    subscriptions: u64::try_from(get::<i64>(r, "subs")?).unwrap_or(0),
                })
            })
            .collect()
    }

    async fn topic_exists(&self, name: &str) -> Result<bool, StoreError> {
        let row = sqlx::query("SELECT name FROM notification_topics WHERE name = $1")
            .bind(name)
            .fetch_optional(&self.pool)
            .await
            .map_err(q("read a topic"))?;
        Ok(row.is_some())
    }

    async fn delete_topic(&self, name: &str) -> Result<bool, StoreError> {
        let mut tx = self.begin_write().await.map_err(q("begin deleting a topic"))?;
        // Explicit rather than relying on ON DELETE CASCADE alone: SQLite enforces foreign
        // keys only on connections that asked for it.
        sqlx::query(
            "DELETE FROM notification_deliveries WHERE subscription_id IN \
             (SELECT id FROM notification_subscriptions WHERE topic = $1)",
        )
        .bind(name)
        .execute(&mut *tx)
        .await
        .map_err(q("delete a topic's deliveries"))?;
        sqlx::query("DELETE FROM notification_subscriptions WHERE topic = $1")
            .bind(name)
            .execute(&mut *tx)
            .await
            .map_err(q("delete a topic's subscriptions"))?;
        let done = sqlx::query("DELETE FROM notification_topics WHERE name = $1")
            .bind(name)
            .execute(&mut *tx)
            .await
            .map_err(q("delete a topic"))?;
        tx.commit().await.map_err(q("commit a topic deletion"))?;
        Ok(done.rows_affected() > 0)
    }

    async fn create_subscription(&self, s: &SubscriptionRecord) -> Result<bool, StoreError> {
        let mut tx = self.begin_write().await.map_err(q("begin creating a subscription"))?;
        let topic = sqlx::query("SELECT name FROM notification_topics WHERE name = $1")
            .bind(&s.topic)
            .fetch_optional(&mut *tx)
            .await
            .map_err(q("read a subscription's topic"))?;
        if topic.is_none() {
            return Ok(false);
        }
        sqlx::query(AssertSqlSafe(format!(
            "INSERT INTO notification_subscriptions ({SUB_COLUMNS}) VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10)"
        )))
        .bind(&s.id)
        .bind(&s.topic)
        .bind(s.kind.as_str())
        .bind(&s.endpoint)
        .bind(s.secret.clone())
        .bind(s.ca_pem.clone())
        .bind(s.timeout_ms)
        .bind(to_json(&s.parameters))
        .bind(to_json(&s.targets))
        .bind(s.created_at)
        .execute(&mut *tx)
        .await
        .map_err(q("insert a subscription"))?;
        tx.commit().await.map_err(q("commit a subscription"))?;
        Ok(true)
    }

    async fn list_subscriptions(&self, topic: Option<&str>) -> Result<Vec<SubscriptionRecord>, StoreError> {
        let rows = match topic {
            Some(t) => {
                sqlx::query(AssertSqlSafe(format!(
                    "SELECT {SUB_COLUMNS} FROM notification_subscriptions WHERE topic = $1 ORDER BY created_at, id"
                )))
                .bind(t)
                .fetch_all(&self.pool)
                .await
            }
            None => {
                sqlx::query(AssertSqlSafe(format!(
                    "SELECT {SUB_COLUMNS} FROM notification_subscriptions ORDER BY created_at, id"
                )))
                .fetch_all(&self.pool)
                .await
            }
        }
        .map_err(q("list subscriptions"))?;
        rows.iter().map(sub_from_row).collect()
    }

    async fn get_subscription(&self, id: &str) -> Result<Option<SubscriptionRecord>, StoreError> {
        let row =
            sqlx::query(AssertSqlSafe(format!("SELECT {SUB_COLUMNS} FROM notification_subscriptions WHERE id = $1")))
                .bind(id)
                .fetch_optional(&self.pool)
                .await
                .map_err(q("read a subscription"))?;
        row.as_ref().map(sub_from_row).transpose()
    }

    async fn delete_subscription(&self, id: &str) -> Result<bool, StoreError> {
        let mut tx = self.begin_write().await.map_err(q("begin deleting a subscription"))?;
        sqlx::query("DELETE FROM notification_deliveries WHERE subscription_id = $1")
            .bind(id)
            .execute(&mut *tx)
            .await
            .map_err(q("delete a subscription's deliveries"))?;
        let done = sqlx::query("DELETE FROM notification_subscriptions WHERE id = $1")
            .bind(id)
            .execute(&mut *tx)
            .await
            .map_err(q("delete a subscription"))?;
        tx.commit().await.map_err(q("commit a subscription deletion"))?;
        Ok(done.rows_affected() > 0)
    }

    async fn create_rule(&self, r: &RuleRecord) -> Result<bool, StoreError> {
        let mut tx = self.begin_write().await.map_err(q("begin creating a rule"))?;
        let inserted = sqlx::query(AssertSqlSafe(format!(
            "INSERT INTO notification_rules ({RULE_COLUMNS}) VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10)"
        )))
        .bind(&r.id)
        .bind(&r.name)
        .bind(&r.pattern)
        .bind(&r.target)
        .bind(to_json(&r.parameters))
        .bind(to_json(&r.targets))
        .bind(i64::from(r.enabled))
        .bind(r.problem.clone())
        .bind(r.created_at)
        .bind(r.updated_at)
        .execute(&mut *tx)
        .await;
        match inserted {
            Ok(_) => {}
            Err(e) if is_unique_violation(&e) => return Ok(false),
            Err(e) => return Err(StoreError::Query { op: "insert a rule", source: e }),
        }
        tx.commit().await.map_err(q("commit a rule"))?;
        Ok(true)
    }

    async fn list_rules(&self) -> Result<Vec<RuleRecord>, StoreError> {
        let rows = sqlx::query(AssertSqlSafe(format!("SELECT {RULE_COLUMNS} FROM notification_rules ORDER BY name")))
            .fetch_all(&self.pool)
            .await
            .map_err(q("list rules"))?;
        rows.iter().map(rule_from_row).collect()
    }

    async fn get_rule(&self, id_or_name: &str) -> Result<Option<RuleRecord>, StoreError> {
        let row = sqlx::query(AssertSqlSafe(format!(
            "SELECT {RULE_COLUMNS} FROM notification_rules WHERE id = $1 OR name = $1 \
             ORDER BY CASE WHEN id = $1 THEN 0 ELSE 1 END LIMIT 1"
        )))
        .bind(id_or_name)
        .fetch_optional(&self.pool)
        .await
        .map_err(q("read a rule"))?;
        row.as_ref().map(rule_from_row).transpose()
    }

    async fn delete_rule(&self, id: &str) -> Result<bool, StoreError> {
        let mut tx = self.begin_write().await.map_err(q("begin deleting a rule"))?;
        let done = sqlx::query("DELETE FROM notification_rules WHERE id = $1")
            .bind(id)
            .execute(&mut *tx)
            .await
            .map_err(q("delete a rule"))?;
        tx.commit().await.map_err(q("commit a rule deletion"))?;
        Ok(done.rows_affected() > 0)
    }

    async fn set_rule_enabled(&self, id: &str, enabled: bool, now: UnixMillis) -> Result<bool, StoreError> {
        let mut tx = self.begin_write().await.map_err(q("begin changing a rule"))?;
        let done = sqlx::query("UPDATE notification_rules SET enabled = $2, updated_at = $3 WHERE id = $1")
            .bind(id)
            .bind(i64::from(enabled))
            .bind(now)
            .execute(&mut *tx)
            .await
            .map_err(q("enable or disable a rule"))?;
        tx.commit().await.map_err(q("commit a rule change"))?;
        Ok(done.rows_affected() > 0)
    }

    async fn set_rule_problem(&self, id: &str, problem: Option<&str>) -> Result<(), StoreError> {
        let mut tx = self.begin_write().await.map_err(q("begin recording a rule's problem"))?;
        sqlx::query("UPDATE notification_rules SET problem = $2 WHERE id = $1")
            .bind(id)
            .bind(problem)
            .execute(&mut *tx)
            .await
            .map_err(q("record a rule's problem"))?;
        tx.commit().await.map_err(q("commit a rule's problem"))?;
        Ok(())
    }

    async fn notification_cursor(&self, name: &str) -> Result<Option<i64>, StoreError> {
        let row = sqlx::query("SELECT seq FROM notification_cursors WHERE name = $1")
            .bind(name)
            .fetch_optional(&self.pool)
            .await
            .map_err(q("read a notification cursor"))?;
        row.as_ref().map(|r| get::<i64>(r, "seq")).transpose()
    }

    async fn route(&self, name: &str, seq: i64, deliveries: &[NewDelivery], now: UnixMillis) -> Result<(), StoreError> {
        const PER_ROW: usize = 5;
        let mut tx = self.begin_write().await.map_err(q("begin routing events"))?;
        for chunk in deliveries.chunks(MAX_BINDS / PER_ROW) {
            let values: Vec<String> = (0..chunk.len())
                .map(|i| {
                    let b = i * PER_ROW;
                    format!("(${}, ${}, ${}, 'Pending', 0, ${}, NULL, ${})", b + 1, b + 2, b + 3, b + 4, b + 5)
                })
                .collect();
            let sql = format!(
                "INSERT INTO notification_deliveries ({DELIVERY_COLUMNS}) VALUES {} \
                 ON CONFLICT (subscription_id, event_seq) DO NOTHING",
                values.join(", ")
            );
            let mut query = sqlx::query(AssertSqlSafe(sql));
            for d in chunk {
                query = query.bind(&d.subscription_id).bind(d.event_seq).bind(&d.event_id).bind(now).bind(now);
            }
            query.execute(&mut *tx).await.map_err(q("insert deliveries"))?;
        }
        sqlx::query(
            "INSERT INTO notification_cursors (name, seq) VALUES ($1, $2) \
             ON CONFLICT (name) DO UPDATE SET seq = excluded.seq",
        )
        .bind(name)
        .bind(seq)
        .execute(&mut *tx)
        .await
        .map_err(q("move a notification cursor"))?;
        tx.commit().await.map_err(q("commit routed events"))?;
        Ok(())
    }

    async fn due_deliveries(
        &self,
        subscription_id: &str,
        now: UnixMillis,
        limit: u32,
    ) -> Result<Vec<DeliveryRecord>, StoreError> {
        let rows = sqlx::query(AssertSqlSafe(format!(
            "SELECT {DELIVERY_COLUMNS} FROM notification_deliveries \
             WHERE subscription_id = $1 AND status IN ('Pending', 'Retrying') AND next_attempt_at <= $2 \
             ORDER BY event_seq LIMIT $3"
        )))
        .bind(subscription_id)
        .bind(now)
        .bind(i64::from(limit))
        .fetch_all(&self.pool)
        .await
        .map_err(q("list due deliveries"))?;
        rows.iter().map(delivery_from_row).collect()
    }

    async fn next_delivery_due(&self) -> Result<Option<UnixMillis>, StoreError> {
        let row = sqlx::query(
            "SELECT MIN(next_attempt_at) AS due FROM notification_deliveries WHERE status IN ('Pending', 'Retrying')",
        )
        .fetch_one(&self.pool)
        .await
        .map_err(q("find the next due delivery"))?;
        get::<Option<i64>>(&row, "due")
    }

    async fn record_attempt(&self, d: &DeliveryRecord) -> Result<(), StoreError> {
        let mut tx = self.begin_write().await.map_err(q("begin recording a delivery attempt"))?;
        sqlx::query(
            "UPDATE notification_deliveries SET status = $3, attempts = $4, next_attempt_at = $5, last_error = $6, \
             updated_at = $7 WHERE subscription_id = $1 AND event_seq = $2",
        )
        .bind(&d.subscription_id)
        .bind(d.event_seq)
        .bind(d.status.as_str())
        .bind(d.attempts)
        .bind(d.next_attempt_at)
        .bind(d.last_error.clone())
        .bind(d.updated_at)
        .execute(&mut *tx)
        .await
        .map_err(q("record a delivery attempt"))?;
        tx.commit().await.map_err(q("commit a delivery attempt"))?;
        Ok(())
    }

    async fn list_deliveries(&self, subscription_id: &str, limit: u32) -> Result<Vec<DeliveryRecord>, StoreError> {
        let rows = sqlx::query(AssertSqlSafe(format!(
            "SELECT {DELIVERY_COLUMNS} FROM notification_deliveries WHERE subscription_id = $1 \
             ORDER BY event_seq DESC LIMIT $2"
        )))
        .bind(subscription_id)
        .bind(i64::from(limit))
        .fetch_all(&self.pool)
        .await
        .map_err(q("list deliveries"))?;
        rows.iter().map(delivery_from_row).collect()
    }

    async fn delivery_counts(&self, subscription_id: &str) -> Result<BTreeMap<DeliveryStatus, u64>, StoreError> {
        let rows = sqlx::query(
            "SELECT status, COUNT(*) AS n FROM notification_deliveries WHERE subscription_id = $1 GROUP BY status",
        )
        .bind(subscription_id)
        .fetch_all(&self.pool)
        .await
        .map_err(q("count deliveries"))?;
        let mut out = BTreeMap::new();
        for r in &rows {
            let status: DeliveryStatus = parse(r, "notification_deliveries", subscription_id, "status")?;
            out.insert(status, u64::try_from(get::<i64>(r, "n")?).unwrap_or(0));
        }
        Ok(out)
    }

    async fn redrive(&self, subscription_id: &str, now: UnixMillis) -> Result<u64, StoreError> {
        let mut tx = self.begin_write().await.map_err(q("begin a redrive"))?;
        let done = sqlx::query(
            "UPDATE notification_deliveries SET status = 'Pending', attempts = 0, next_attempt_at = $2, updated_at = $2 \
             WHERE subscription_id = $1 AND status = 'DeadLettered'",
        )
        .bind(subscription_id)
        .bind(now)
        .execute(&mut *tx)
        .await
        .map_err(q("redrive dead letters"))?;
        tx.commit().await.map_err(q("commit a redrive"))?;
        Ok(done.rows_affected())
    }

    async fn delete_delivered_before(&self, cutoff: UnixMillis) -> Result<u64, StoreError> {
        let mut tx = self.begin_write().await.map_err(q("begin pruning deliveries"))?;
        let done = sqlx::query("DELETE FROM notification_deliveries WHERE status = 'Delivered' AND updated_at < $1")
            .bind(cutoff)
            .execute(&mut *tx)
            .await
            .map_err(q("prune delivered deliveries"))?;
        tx.commit().await.map_err(q("commit pruning deliveries"))?;
        Ok(done.rows_affected())
    }

    async fn seed_applied(&self, name: &str) -> Result<bool, StoreError> {
        let row = sqlx::query("SELECT name FROM seeds WHERE name = $1")
            .bind(name)
            .fetch_optional(&self.pool)
            .await
            .map_err(q("read a seed"))?;
        Ok(row.is_some())
    }

    async fn mark_seed(&self, name: &str, now: UnixMillis) -> Result<(), StoreError> {
        let mut tx = self.begin_write().await.map_err(q("begin marking a seed"))?;
        sqlx::query("INSERT INTO seeds (name, applied_at) VALUES ($1, $2) ON CONFLICT (name) DO NOTHING")
            .bind(name)
            .bind(now)
            .execute(&mut *tx)
            .await
            .map_err(q("mark a seed"))?;
        tx.commit().await.map_err(q("commit a seed"))?;
        Ok(())
    }
}
