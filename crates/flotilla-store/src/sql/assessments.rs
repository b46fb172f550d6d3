//! SQL for [`AssessmentStore`].

use async_trait::async_trait;
use flotilla_core::UnixMillis;
use flotilla_core::assessment::{NodeStatus, RunStatus};
use sqlx::Row;
use sqlx::any::AnyRow;

use super::{SqlStore, WriteTx, from_json, get, parse, q, to_json};
use crate::{
    AssessmentNodeRecord, AssessmentRunRecord, AssessmentStore, AssessmentTemplate, FindingRecord, NodeAssessment,
    StoreError,
};

const RUN_COLUMNS: &str = "id, targets, rules, noncompliant_at, duration_seconds, status, node_count, finding_counts, command_ids, detail, \
                           created_at, ended_at";
/// Finding rows per INSERT (12 binds a row).
const FINDINGS_PER_INSERT: usize = super::MAX_BINDS / 12;
/// Node rows per INSERT (one bind a row, plus the run id and the Pending status).
const NODES_PER_INSERT: usize = super::MAX_BINDS - 2;

fn run_from_row(row: &AnyRow) -> Result<AssessmentRunRecord, StoreError> {
    let id: String = get(row, "id")?;
    let text = |c: &'static str| -> Result<String, StoreError> { get(row, c) };
    Ok(AssessmentRunRecord {
        targets: from_json(&text("targets")?, "run targets", &id)?,
        rules: from_json(&text("rules")?, "run rules", &id)?,
        command_ids: from_json(&text("command_ids")?, "run commands", &id)?,
        noncompliant_at: parse(row, "assessment_runs", &id, "noncompliant_at")?,
        duration_seconds: get(row, "duration_seconds")?,
        status: parse(row, "assessment_runs", &id, "status")?,
        node_count: get(row, "node_count")?,
        finding_counts: text("finding_counts")?,
        detail: text("detail")?,
        created_at: get(row, "created_at")?,
        ended_at: get(row, "ended_at")?,
        id,
    })
}

fn finding_from_row(row: &AnyRow) -> Result<FindingRecord, StoreError> {
    let run_id: String = get(row, "run_id")?;
    let node_id: String = get(row, "node_id")?;
    let advisory_id: String = get(row, "advisory_id")?;
    let key = format!("{run_id}/{node_id}/{advisory_id}");
    let aliases: String = get(row, "aliases")?;
    Ok(FindingRecord {
        aliases: from_json(&aliases, "finding aliases", &key)?,
        severity: parse(row, "findings", &key, "severity")?,
        rule: get(row, "rule")?,
        package: get(row, "package")?,
        installed_version: get(row, "installed_version")?,
        fixed_version: get(row, "fixed_version")?,
        score: get(row, "score")?,
        title: get(row, "title")?,
        node_id,
        advisory_id,
        run_id,
    })
}

#[async_trait]
impl AssessmentStore for SqlStore {
    async fn put_assessment_template(&self, t: &AssessmentTemplate) -> Result<(), StoreError> {
        sqlx::query(
            "INSERT INTO assessment_templates (name, targets, rules, noncompliant_at, duration_seconds, schedule, \
             timezone, grace_seconds, schedule_since, created_at) VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10) \
             ON CONFLICT (name) DO UPDATE SET targets = excluded.targets, rules = excluded.rules, \
             noncompliant_at = excluded.noncompliant_at, duration_seconds = excluded.duration_seconds, \
             schedule = excluded.schedule, timezone = excluded.timezone, grace_seconds = excluded.grace_seconds, \
             schedule_since = excluded.schedule_since",
        )
        .bind(&t.name)
        .bind(to_json(&t.targets))
        .bind(to_json(&t.rules))
        .bind(t.noncompliant_at.as_str())
        .bind(t.duration_seconds)
        .bind(t.schedule.clone())
        .bind(t.timezone.clone())
        .bind(t.grace_seconds)
        .bind(t.schedule_since)
        .bind(t.created_at)
        .execute(&self.pool)
        .await
        .map_err(q("save an assessment template"))?;
        Ok(())
    }

    async fn list_assessment_templates(&self) -> Result<Vec<AssessmentTemplate>, StoreError> {
        let rows = sqlx::query(
            "SELECT name, targets, rules, noncompliant_at, duration_seconds, schedule, timezone, grace_seconds, \
             schedule_since, created_at FROM assessment_templates ORDER BY name",
        )
        .fetch_all(&self.pool)
        .await
        .map_err(q("list assessment templates"))?;
        rows.iter()
            .map(|row| {
                let name: String = get(row, "name")?;
                let targets: String = get(row, "targets")?;
                let rules: String = get(row, "rules")?;
                let created_at: i64 = get(row, "created_at")?;
                Ok(AssessmentTemplate {
                    targets: from_json(&targets, "template targets", &name)?,
                    rules: from_json(&rules, "template rules", &name)?,
                    noncompliant_at: parse(row, "assessment_templates", &name, "noncompliant_at")?,
                    duration_seconds: get(row, "duration_seconds")?,
                    schedule: get(row, "schedule")?,
                    timezone: get(row, "timezone")?,
                    grace_seconds: get(row, "grace_seconds")?,
                    // Templates from before migration 0009 scheduled from their creation.
                    schedule_since: get::<Option<i64>>(row, "schedule_since")?.unwrap_or(created_at),
                    created_at,
                    name,
                })
            })
            .collect()
    }

    async fn delete_assessment_template(&self, name: &str) -> Result<bool, StoreError> {
        let done = sqlx::query("DELETE FROM assessment_templates WHERE name = $1")
            .bind(name)
            .execute(&self.pool)
            .await
            .map_err(q("delete an assessment template"))?;
        Ok(done.rows_affected() > 0)
    }

    async fn create_assessment_run(&self, run: &AssessmentRunRecord, nodes: &[String]) -> Result<(), StoreError> {
        let mut tx = self.begin_write().await.map_err(q("begin an assessment run"))?;
        sqlx::query(sqlx::AssertSqlSafe(format!(
            "INSERT INTO assessment_runs ({RUN_COLUMNS}) VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12)"
        )))
        .bind(&run.id)
        .bind(to_json(&run.targets))
        .bind(to_json(&run.rules))
        .bind(run.noncompliant_at.as_str())
        .bind(run.duration_seconds)
        .bind(run.status.as_str())
        .bind(run.node_count)
        .bind(&run.finding_counts)
        .bind(to_json(&run.command_ids))
        .bind(&run.detail)
        .bind(run.created_at)
        .bind(run.ended_at)
        .execute(&mut *tx)
        .await
        .map_err(q("store an assessment run"))?;
        for chunk in nodes.chunks(NODES_PER_INSERT) {
            let values: Vec<String> =
                (0..chunk.len()).map(|i| format!("($1, ${}, ${}, '')", i + 2, chunk.len() + 2)).collect();
            let sql =
                format!("INSERT INTO assessment_nodes (run_id, node_id, status, detail) VALUES {}", values.join(","));
            let mut query = sqlx::query(sqlx::AssertSqlSafe(sql)).bind(&run.id);
            for node in chunk {
                query = query.bind(node);
            }
            query = query.bind(NodeStatus::Pending.as_str());
            query.execute(&mut *tx).await.map_err(q("store assessment nodes"))?;
        }
        super::events::append(&mut tx, &[super::events::assessment_status(run, None)]).await?;
        tx.commit().await.map_err(q("commit an assessment run"))?;
        Ok(())
    }

    async fn update_assessment_run(&self, run: &AssessmentRunRecord) -> Result<(), StoreError> {
        let mut tx = self.begin_write().await.map_err(q("begin updating an assessment run"))?;
        let previous: Option<String> = sqlx::query("SELECT status FROM assessment_runs WHERE id = $1")
            .bind(&run.id)
            .fetch_optional(&mut *tx)
            .await
            .map_err(q("read an assessment run's status"))?
            .map(|row| get(&row, "status"))
            .transpose()?;
        sqlx::query(
            "UPDATE assessment_runs SET status = $2, node_count = $3, finding_counts = $4, command_ids = $5, \
             detail = $6, ended_at = $7 WHERE id = $1",
        )
        .bind(&run.id)
        .bind(run.status.as_str())
        .bind(run.node_count)
        .bind(&run.finding_counts)
        .bind(to_json(&run.command_ids))
        .bind(&run.detail)
        .bind(run.ended_at)
        .execute(&mut *tx)
        .await
        .map_err(q("update an assessment run"))?;
        if let Some(previous) = previous.filter(|p| p.as_str() != run.status.as_str()) {
            super::events::append(&mut tx, &[super::events::assessment_status(run, Some(&previous))]).await?;
        }
        tx.commit().await.map_err(q("commit an assessment run update"))?;
        Ok(())
    }

    async fn get_assessment_run(&self, id: &str) -> Result<Option<AssessmentRunRecord>, StoreError> {
        let row = sqlx::query(sqlx::AssertSqlSafe(format!("SELECT {RUN_COLUMNS} FROM assessment_runs WHERE id = $1")))
            .bind(id)
            .fetch_optional(&self.pool)
            .await
            .map_err(q("read an assessment run"))?;
        row.as_ref().map(run_from_row).transpose()
    }

    async fn list_assessment_runs(&self) -> Result<Vec<AssessmentRunRecord>, StoreError> {
        let rows = sqlx::query(sqlx::AssertSqlSafe(format!(
            "SELECT {RUN_COLUMNS} FROM assessment_runs ORDER BY created_at, id"
        )))
        .fetch_all(&self.pool)
        .await
        .map_err(q("list assessment runs"))?;
        rows.iter().map(run_from_row).collect()
    }

    async fn unfinished_assessment_runs(&self) -> Result<Vec<AssessmentRunRecord>, StoreError> {
        let rows = sqlx::query(sqlx::AssertSqlSafe(format!(
            "SELECT {RUN_COLUMNS} FROM assessment_runs WHERE status NOT IN ($1, $2) ORDER BY created_at"
        )))
        .bind(RunStatus::Completed.as_str())
        .bind(RunStatus::Failed.as_str())
        .fetch_all(&self.pool)
        .await
        .map_err(q("list unfinished assessment runs"))?;
        rows.iter().map(run_from_row).collect()
    }

    async fn assessment_nodes(&self, run_id: &str) -> Result<Vec<AssessmentNodeRecord>, StoreError> {
        let rows = sqlx::query(
            "SELECT node_id, status, detail, advisories_age_days FROM assessment_nodes WHERE run_id = $1 \
                 ORDER BY node_id",
        )
        .bind(run_id)
        .fetch_all(&self.pool)
        .await
        .map_err(q("read assessment nodes"))?;
        rows.iter()
            .map(|row| {
                let node_id: String = get(row, "node_id")?;
                Ok(AssessmentNodeRecord {
                    status: parse(row, "assessment_nodes", &format!("{run_id}/{node_id}"), "status")?,
                    node_id,
                    detail: get(row, "detail")?,
                    advisories_age_days: row.try_get("advisories_age_days").map_err(q("decode a row"))?,
                })
            })
            .collect()
    }

    async fn record_node_assessments(
        &self,
        run_id: &str,
        nodes: &[NodeAssessment],
        now: UnixMillis,
    ) -> Result<(), StoreError> {
        let mut tx = self.begin_write().await.map_err(q("begin a node assessment"))?;
        let mut turn = self.entry_turn(&mut tx).await?;
        for n in nodes {
            record_node(&mut tx, run_id, &n.record, &n.findings).await?;
            self.apply_in(&mut tx, &mut turn, &n.record.node_id, &n.inventory, now, now).await?;
            super::compliance::put_items(&mut tx, &n.compliance).await?;
        }
        tx.commit().await.map_err(q("commit node assessments"))?;
        self.remember(turn);
        Ok(())
    }

    async fn run_findings(&self, run_id: &str, node: Option<&str>) -> Result<Vec<FindingRecord>, StoreError> {
        let columns = "run_id, node_id, rule, advisory_id, aliases, package, installed_version, fixed_version, \
                       severity, score, title";
        let rows = match node {
            Some(node) => {
                sqlx::query(sqlx::AssertSqlSafe(format!(
                    "SELECT {columns} FROM findings WHERE run_id = $1 AND node_id = $2 ORDER BY node_id, seq"
                )))
                .bind(run_id)
                .bind(node)
                .fetch_all(&self.pool)
                .await
            }
            None => {
                sqlx::query(sqlx::AssertSqlSafe(format!(
                    "SELECT {columns} FROM findings WHERE run_id = $1 ORDER BY node_id, seq"
                )))
                .bind(run_id)
                .fetch_all(&self.pool)
                .await
            }
        }
        .map_err(q("read findings"))?;
        rows.iter().map(finding_from_row).collect()
    }
}

/// One node's row and findings for the run, inside `tx`.
async fn record_node(
    tx: &mut WriteTx,
    run_id: &str,
    node: &AssessmentNodeRecord,
    findings: &[FindingRecord],
) -> Result<(), StoreError> {
    sqlx::query(
        "UPDATE assessment_nodes SET status = $3, detail = $4, advisories_age_days = $5 \
         WHERE run_id = $1 AND node_id = $2",
    )
    .bind(run_id)
    .bind(&node.node_id)
    .bind(node.status.as_str())
    .bind(&node.detail)
    .bind(node.advisories_age_days)
    .execute(&mut **tx)
    .await
    .map_err(q("record a node assessment"))?;
    sqlx::query("DELETE FROM findings WHERE run_id = $1 AND node_id = $2")
        .bind(run_id)
        .bind(&node.node_id)
        .execute(&mut **tx)
        .await
        .map_err(q("replace findings"))?;
    for (chunk_index, chunk) in findings.chunks(FINDINGS_PER_INSERT).enumerate() {
        let values: Vec<String> = (0..chunk.len())
            .map(|i| {
                let b = i * 12;
                format!(
                    "(${}, ${}, ${}, ${}, ${}, ${}, ${}, ${}, ${}, ${}, ${}, ${})",
                    b + 1,
                    b + 2,
                    b + 3,
                    b + 4,
                    b + 5,
                    b + 6,
                    b + 7,
                    b + 8,
                    b + 9,
                    b + 10,
                    b + 11,
                    b + 12
                )
            })
            .collect();
        let sql = format!(
            "INSERT INTO findings (run_id, node_id, seq, rule, advisory_id, aliases, package, installed_version, \
                 fixed_version, severity, score, title) VALUES {}",
            values.join(",")
        );
        let mut query = sqlx::query(sqlx::AssertSqlSafe(sql));
        for (i, f) in chunk.iter().enumerate() {
            query = query
                .bind(run_id)
                .bind(&node.node_id)
                .bind(i64::try_from(chunk_index * FINDINGS_PER_INSERT + i).unwrap_or(i64::MAX))
                .bind(&f.rule)
                .bind(&f.advisory_id)
                .bind(to_json(&f.aliases))
                .bind(&f.package)
                .bind(&f.installed_version)
                .bind(f.fixed_version.clone())
                .bind(f.severity.as_str())
                .bind(f.score.clone())
                .bind(&f.title);
        }
        query.execute(&mut **tx).await.map_err(q("store findings"))?;
    }
    super::events::append(tx, &[super::events::findings_reported(run_id, node, findings)]).await?;
    Ok(())
}
