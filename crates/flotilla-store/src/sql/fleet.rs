//! SQL for [`FleetStore`]: activations, nodes, API tokens and target groups.
//!
//! Invariant: enrollment takes a registration and inserts the node in one transaction, with a
//! conditional update, so an activation's limit holds under concurrent enrollments.

use std::str::FromStr;

use async_trait::async_trait;
use flotilla_core::{Activation, EventType, Node, NodeId, NodeInfo, NodeStatus, Platform, Tags, UnixMillis};
use sqlx::AssertSqlSafe;
use sqlx::any::AnyRow;

use super::{MAX_BINDS, SqlStore, events, from_json, get, parse, placeholders, q, to_json};
use crate::{Enrollment, FleetStore, StoreError, TargetGroup};

const ACTIVATION_COLUMNS: &str =
    "id, code_hash, description, registration_limit, registrations, expires_at, default_tags, created_at";

fn activation_from_row(row: &AnyRow) -> Result<Activation, StoreError> {
    let id: String = get(row, "id")?;
    let tags: String = get(row, "default_tags")?;
    Ok(Activation {
        default_tags: from_json(&tags, "activation tags", &id)?,
        code_hash: get(row, "code_hash")?,
        description: get(row, "description")?,
        registration_limit: u32::try_from(get::<i64>(row, "registration_limit")?).unwrap_or(0),
        registrations: u32::try_from(get::<i64>(row, "registrations")?).unwrap_or(u32::MAX),
        expires_at: get(row, "expires_at")?,
        created_at: get(row, "created_at")?,
        id,
    })
}

const NODE_COLUMNS: &str = "id, hostname, status, last_seen, platform_name, platform_version, platform_id, kernel, arch, \
     agent_version, addresses, tags, activation_id, registered_at, cert_fingerprint";

fn node_from_row(row: &AnyRow) -> Result<Node, StoreError> {
    let id: String = get(row, "id")?;
    let corrupt = |what: &'static str, detail: String| StoreError::Corrupt { what, key: id.clone(), detail };
    let addresses: String = get(row, "addresses")?;
    let tags: String = get(row, "tags")?;
    Ok(Node {
        id: NodeId::from_str(&id).map_err(|e| corrupt("node id", e.to_string()))?,
        hostname: get(row, "hostname")?,
        status: parse::<NodeStatus>(row, "nodes", &id, "status")?,
        last_seen: get(row, "last_seen")?,
        platform: Platform {
            name: get(row, "platform_name")?,
            version: get(row, "platform_version")?,
            id: get(row, "platform_id")?,
        },
        kernel: get(row, "kernel")?,
        arch: get(row, "arch")?,
        agent_version: get(row, "agent_version")?,
        addresses: from_json(&addresses, "node addresses", &id)?,
        tags: from_json(&tags, "node tags", &id)?,
        activation_id: get(row, "activation_id")?,
        registered_at: get(row, "registered_at")?,
        cert_fingerprint: get(row, "cert_fingerprint")?,
    })
}

#[async_trait]
impl FleetStore for SqlStore {
    async fn create_activation(&self, a: &Activation) -> Result<(), StoreError> {
        sqlx::query(AssertSqlSafe(format!(
            "INSERT INTO activations ({ACTIVATION_COLUMNS}) VALUES ($1, $2, $3, $4, $5, $6, $7, $8)"
        )))
        .bind(&a.id)
        .bind(&a.code_hash)
        .bind(&a.description)
        .bind(i64::from(a.registration_limit))
        .bind(i64::from(a.registrations))
        .bind(a.expires_at)
        .bind(to_json(&a.default_tags))
        .bind(a.created_at)
        .execute(&self.pool)
        .await
        .map_err(q("create an activation"))?;
        Ok(())
    }

    async fn get_activation(&self, id: &str) -> Result<Option<Activation>, StoreError> {
        let row = sqlx::query(AssertSqlSafe(format!("SELECT {ACTIVATION_COLUMNS} FROM activations WHERE id = $1")))
            .bind(id)
            .fetch_optional(&self.pool)
            .await
            .map_err(q("read an activation"))?;
        row.as_ref().map(activation_from_row).transpose()
    }

    async fn list_activations(&self) -> Result<Vec<Activation>, StoreError> {
        let rows =
            sqlx::query(AssertSqlSafe(format!("SELECT {ACTIVATION_COLUMNS} FROM activations ORDER BY created_at, id")))
                .fetch_all(&self.pool)
                .await
                .map_err(q("list activations"))?;
        rows.iter().map(activation_from_row).collect()
    }

    async fn delete_activation(&self, id: &str) -> Result<bool, StoreError> {
        let done = sqlx::query("DELETE FROM activations WHERE id = $1")
            .bind(id)
            .execute(&self.pool)
            .await
            .map_err(q("delete an activation"))?;
        Ok(done.rows_affected() > 0)
    }

    async fn enroll_node(&self, activation_id: &str, n: &Node) -> Result<Enrollment, StoreError> {
        let mut tx = self.begin_write().await.map_err(q("begin an enrollment"))?;
        let taken = sqlx::query(
            "UPDATE activations SET registrations = registrations + 1 \
             WHERE id = $1 AND registrations < registration_limit",
        )
        .bind(activation_id)
        .execute(&mut *tx)
        .await
        .map_err(q("take a registration from an activation"))?;
        if taken.rows_affected() == 0 {
            return Ok(Enrollment::LimitReached);
        }
        sqlx::query(AssertSqlSafe(format!(
            "INSERT INTO nodes ({NODE_COLUMNS}) VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13, $14, $15)"
        )))
        .bind(n.id.as_str())
        .bind(&n.hostname)
        .bind(n.status.as_str())
        .bind(n.last_seen)
        .bind(&n.platform.name)
        .bind(&n.platform.version)
        .bind(&n.platform.id)
        .bind(&n.kernel)
        .bind(&n.arch)
        .bind(&n.agent_version)
        .bind(to_json(&n.addresses))
        .bind(to_json(&n.tags))
        .bind(&n.activation_id)
        .bind(n.registered_at)
        .bind(&n.cert_fingerprint)
        .execute(&mut *tx)
        .await
        .map_err(q("insert an enrolled node"))?;
        let detail = serde_json::json!({ "hostname": n.hostname, "activation_id": activation_id });
        events::append(&mut tx, &[events::node_event(EventType::NodeRegistered, n.id.as_str(), detail)]).await?;
        tx.commit().await.map_err(q("commit an enrollment"))?;
        Ok(Enrollment::Enrolled)
    }

    async fn get_node(&self, id: &NodeId) -> Result<Option<Node>, StoreError> {
        let row = sqlx::query(AssertSqlSafe(format!("SELECT {NODE_COLUMNS} FROM nodes WHERE id = $1")))
            .bind(id.as_str())
            .fetch_optional(&self.pool)
            .await
            .map_err(q("read a node"))?;
        row.as_ref().map(node_from_row).transpose()
    }

    async fn list_nodes(&self) -> Result<Vec<Node>, StoreError> {
        let rows = sqlx::query(AssertSqlSafe(format!("SELECT {NODE_COLUMNS} FROM nodes ORDER BY hostname, id")))
            .fetch_all(&self.pool)
            .await
            .map_err(q("list nodes"))?;
        rows.iter().map(node_from_row).collect()
    }

    async fn node_names(&self, ids: &[String]) -> Result<Vec<(String, String, NodeStatus)>, StoreError> {
        let mut out = Vec::with_capacity(ids.len());
        for chunk in ids.chunks(MAX_BINDS) {
            let sql = format!("SELECT id, hostname, status FROM nodes WHERE id IN ({})", placeholders(1, chunk.len()));
            let mut query = sqlx::query(AssertSqlSafe(sql));
            for id in chunk {
                query = query.bind(id);
            }
            for row in query.fetch_all(&self.pool).await.map_err(q("look nodes up"))? {
                let id: String = get(&row, "id")?;
                let status = parse::<NodeStatus>(&row, "nodes", &id, "status")?;
                out.push((id, get(&row, "hostname")?, status));
            }
        }
        Ok(out)
    }

    async fn count_nodes_by_status(&self) -> Result<Vec<(NodeStatus, u64)>, StoreError> {
        let rows = sqlx::query("SELECT status, COUNT(*) AS n FROM nodes GROUP BY status ORDER BY status")
            .fetch_all(&self.pool)
            .await
            .map_err(q("count nodes"))?;
        rows.iter()
            .map(|row| {
                let n: i64 = get(row, "n")?;
                Ok((parse(row, "nodes", "(counted by status)", "status")?, u64::try_from(n).unwrap_or(0)))
            })
            .collect()
    }

    async fn node_connected(&self, id: &NodeId, info: &NodeInfo, now: UnixMillis) -> Result<bool, StoreError> {
        let mut tx = self.begin_write().await.map_err(q("begin recording a node's connection"))?;
        let done = sqlx::query(
            "UPDATE nodes SET status = 'Online', last_seen = $1, hostname = $2, platform_name = $3, \
             platform_version = $4, platform_id = $5, kernel = $6, arch = $7, agent_version = $8, addresses = $9 \
             WHERE id = $10 AND status <> 'Deregistered'",
        )
        .bind(now)
        .bind(&info.hostname)
        .bind(&info.platform.name)
        .bind(&info.platform.version)
        .bind(&info.platform.id)
        .bind(&info.kernel)
        .bind(&info.arch)
        .bind(&info.agent_version)
        .bind(to_json(&info.addresses))
        .bind(id.as_str())
        .execute(&mut *tx)
        .await
        .map_err(q("record a node's connection"))?;
        if done.rows_affected() == 0 {
            return Ok(false);
        }
        let detail = serde_json::json!({ "hostname": info.hostname, "agent_version": info.agent_version });
        events::append(&mut tx, &[events::node_event(EventType::NodeOnline, id.as_str(), detail)]).await?;
        tx.commit().await.map_err(q("commit a node's connection"))?;
        Ok(true)
    }

    async fn nodes_lost(&self, ids: &[NodeId]) -> Result<(), StoreError> {
        let mut tx = self.begin_write().await.map_err(q("begin marking nodes lost"))?;
        let mut lost = Vec::new();
        for id in ids {
            let done = sqlx::query("UPDATE nodes SET status = 'ConnectionLost' WHERE id = $1 AND status = 'Online'")
                .bind(id.as_str())
                .execute(&mut *tx)
                .await
                .map_err(q("mark a node ConnectionLost"))?;
            if done.rows_affected() > 0 {
                let detail = serde_json::json!({ "reason": "stream closed" });
                lost.push(events::node_event(EventType::NodeConnectionLost, id.as_str(), detail));
            }
        }
        events::append(&mut tx, &lost).await?;
        tx.commit().await.map_err(q("commit nodes lost"))
    }

    async fn expire_silent_nodes(&self, before: UnixMillis) -> Result<Vec<NodeId>, StoreError> {
        let mut tx = self.begin_write().await.map_err(q("begin expiring silent nodes"))?;
        let rows = sqlx::query(
            "UPDATE nodes SET status = 'ConnectionLost' \
             WHERE status = 'Online' AND (last_seen IS NULL OR last_seen < $1) RETURNING id",
        )
        .bind(before)
        .fetch_all(&mut *tx)
        .await
        .map_err(q("expire silent nodes"))?;
        let ids = rows
            .iter()
            .map(|row| {
                let id: String = get(row, "id")?;
                NodeId::from_str(&id).map_err(|e| StoreError::Corrupt {
                    what: "node id",
                    key: id,
                    detail: e.to_string(),
                })
            })
            .collect::<Result<Vec<_>, _>>()?;
        let lost: Vec<_> = ids
            .iter()
            .map(|id| {
                let detail = serde_json::json!({ "reason": "silent", "not_seen_since": before });
                events::node_event(EventType::NodeConnectionLost, id.as_str(), detail)
            })
            .collect();
        events::append(&mut tx, &lost).await?;
        tx.commit().await.map_err(q("commit expiring silent nodes"))?;
        Ok(ids)
    }

    async fn touch_nodes(&self, seen: &[(NodeId, UnixMillis)]) -> Result<(), StoreError> {
        let mut tx = self.begin_write().await.map_err(q("begin a last-seen update"))?;
        for (id, at) in seen {
            sqlx::query("UPDATE nodes SET last_seen = $1 WHERE id = $2 AND (last_seen IS NULL OR last_seen < $1)")
                .bind(*at)
                .bind(id.as_str())
                .execute(&mut *tx)
                .await
                .map_err(q("update a node's last-seen time"))?;
        }
        tx.commit().await.map_err(q("commit a last-seen update"))
    }

    async fn set_tags(&self, id: &NodeId, tags: &Tags) -> Result<bool, StoreError> {
        let done = sqlx::query("UPDATE nodes SET tags = $1 WHERE id = $2")
            .bind(to_json(tags))
            .bind(id.as_str())
            .execute(&self.pool)
            .await
            .map_err(q("set a node's tags"))?;
        Ok(done.rows_affected() > 0)
    }

    async fn deregister_node(&self, id: &NodeId) -> Result<bool, StoreError> {
        let mut tx = self.begin_write().await.map_err(q("begin deregistering a node"))?;
        let Some(row) = sqlx::query("SELECT status FROM nodes WHERE id = $1")
            .bind(id.as_str())
            .fetch_optional(&mut *tx)
            .await
            .map_err(q("read a node's status"))?
        else {
            return Ok(false);
        };
        let previous: String = get(&row, "status")?;
        if previous != NodeStatus::Deregistered.as_str() {
            sqlx::query("UPDATE nodes SET status = 'Deregistered' WHERE id = $1")
                .bind(id.as_str())
                .execute(&mut *tx)
                .await
                .map_err(q("deregister a node"))?;
            let detail = serde_json::json!({ "previous_status": previous });
            events::append(&mut tx, &[events::node_event(EventType::NodeDeregistered, id.as_str(), detail)]).await?;
            tx.commit().await.map_err(q("commit a deregistration"))?;
        }
        Ok(true)
    }

    async fn put_api_token(&self, name: &str, token_hash: &str, now: UnixMillis) -> Result<(), StoreError> {
        sqlx::query(
            "INSERT INTO api_tokens (name, token_hash, created_at) VALUES ($1, $2, $3) \
             ON CONFLICT (name) DO UPDATE SET token_hash = excluded.token_hash, created_at = excluded.created_at",
        )
        .bind(name)
        .bind(token_hash)
        .bind(now)
        .execute(&self.pool)
        .await
        .map_err(q("store an API token"))?;
        Ok(())
    }

    async fn find_api_token(&self, token_hash: &str) -> Result<Option<String>, StoreError> {
        let row = sqlx::query("SELECT name FROM api_tokens WHERE token_hash = $1")
            .bind(token_hash)
            .fetch_optional(&self.pool)
            .await
            .map_err(q("look up an API token"))?;
        row.as_ref().map(|r| get(r, "name")).transpose()
    }

    async fn put_group(&self, g: &TargetGroup) -> Result<(), StoreError> {
        sqlx::query(
            "INSERT INTO target_groups (name, targets, created_at) VALUES ($1, $2, $3) \
             ON CONFLICT (name) DO UPDATE SET targets = excluded.targets",
        )
        .bind(&g.name)
        .bind(to_json(&g.targets))
        .bind(g.created_at)
        .execute(&self.pool)
        .await
        .map_err(q("save a target group"))?;
        Ok(())
    }

    async fn list_groups(&self) -> Result<Vec<TargetGroup>, StoreError> {
        let rows = sqlx::query("SELECT name, targets, created_at FROM target_groups ORDER BY name")
            .fetch_all(&self.pool)
            .await
            .map_err(q("list target groups"))?;
        rows.iter()
            .map(|row| {
                let name: String = get(row, "name")?;
                let targets: String = get(row, "targets")?;
                Ok(TargetGroup {
                    targets: from_json(&targets, "group targets", &name)?,
                    created_at: get(row, "created_at")?,
                    name,
                })
            })
            .collect()
    }

    async fn delete_group(&self, name: &str) -> Result<bool, StoreError> {
        let done = sqlx::query("DELETE FROM target_groups WHERE name = $1")
            .bind(name)
            .execute(&self.pool)
            .await
            .map_err(q("delete a target group"))?;
        Ok(done.rows_affected() > 0)
    }
}
