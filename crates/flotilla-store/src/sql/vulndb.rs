//! SQL for [`VulnDbStore`]: OSV records by id and the `(ecosystem, package) → advisory` index.
//!
//! Invariants: an import is idempotent per record and one transaction per batch; lookups read
//! the index first, so matching never scans all advisories; statements are sized to
//! [`MAX_BINDS`].

use async_trait::async_trait;
use flotilla_core::UnixMillis;
use sqlx::{AnyPool, AssertSqlSafe, Row};

use super::{MAX_BINDS, SqlStore, WriteTx, q};
use crate::{AdvisoryKeyHit, AdvisoryRecord, AdvisoryStats, ImportOutcome, StoreError, StoredAdvisory, VulnDbStore};

#[async_trait]
impl VulnDbStore for SqlStore {
    async fn import_advisories(
        &self,
        records: &[AdvisoryRecord],
        now: UnixMillis,
    ) -> Result<Vec<ImportOutcome>, StoreError> {
        import(self.begin_write().await.map_err(q("begin an advisory import"))?, records, now).await
    }

    async fn advisory_ids_for(&self, keys: &[(String, String)]) -> Result<Vec<(String, i64)>, StoreError> {
        ids_for(&self.pool, keys).await
    }

    async fn advisory_ids_by_key(&self, keys: &[(String, String)]) -> Result<Vec<AdvisoryKeyHit>, StoreError> {
        ids_by_key(&self.pool, keys).await
    }

    async fn get_advisories(&self, ids: &[String]) -> Result<Vec<StoredAdvisory>, StoreError> {
        get(&self.pool, ids).await
    }

    async fn advisory_stats(&self) -> Result<AdvisoryStats, StoreError> {
        stats(&self.pool).await
    }
}

/// Index rows per INSERT statement (3 parameters each).
const INDEX_ROWS_PER_INSERT: usize = MAX_BINDS / 3;
/// Names per lookup statement (plus the ecosystem).
const NAMES_PER_LOOKUP: usize = MAX_BINDS - 1;

async fn import(mut tx: WriteTx, records: &[AdvisoryRecord], now: i64) -> Result<Vec<ImportOutcome>, StoreError> {
    let mut outcomes = Vec::with_capacity(records.len());
    for r in records {
        let existing = sqlx::query("SELECT modified_micros FROM advisories WHERE id = $1")
            .bind(&r.id)
            .fetch_optional(&mut *tx)
            .await
            .map_err(q("read an advisory's modified time"))?;
        let outcome = match existing {
            Some(row) => {
                let stored: i64 = row.try_get("modified_micros").map_err(q("decode a row"))?;
                if r.modified_micros <= stored {
                    outcomes.push(ImportOutcome::Unchanged);
                    continue;
                }
                sqlx::query("UPDATE advisories SET modified = $1, modified_micros = $2, record = $3, imported_at = $4 WHERE id = $5")
                    .bind(&r.modified)
                    .bind(r.modified_micros)
                    .bind(&r.record)
                    .bind(now)
                    .bind(&r.id)
                    .execute(&mut *tx)
                    .await
                    .map_err(q("replace an advisory"))?;
                sqlx::query("DELETE FROM advisory_index WHERE advisory_id = $1")
                    .bind(&r.id)
                    .execute(&mut *tx)
                    .await
                    .map_err(q("delete an advisory's index rows"))?;
                ImportOutcome::Updated
            }
            None => {
                sqlx::query(
                    "INSERT INTO advisories (id, modified, modified_micros, record, imported_at) VALUES ($1, $2, $3, $4, $5)",
                )
                .bind(&r.id)
                .bind(&r.modified)
                .bind(r.modified_micros)
                .bind(&r.record)
                .bind(now)
                .execute(&mut *tx)
                .await
                .map_err(q("insert an advisory"))?;
                ImportOutcome::New
            }
        };
        let mut index = r.index.clone();
        index.sort();
        index.dedup();
        for chunk in index.chunks(INDEX_ROWS_PER_INSERT) {
            let values: Vec<String> =
                (0..chunk.len()).map(|i| format!("(${}, ${}, ${})", 3 * i + 1, 3 * i + 2, 3 * i + 3)).collect();
            let sql =
                format!("INSERT INTO advisory_index (ecosystem, package, advisory_id) VALUES {}", values.join(", "));
            let mut query = sqlx::query(AssertSqlSafe(sql));
            for (ecosystem, package) in chunk {
                query = query.bind(ecosystem.clone()).bind(package.clone()).bind(r.id.clone());
            }
            query.execute(&mut *tx).await.map_err(q("insert advisory index rows"))?;
        }
        outcomes.push(outcome);
    }
    tx.commit().await.map_err(q("commit an advisory import"))?;
    Ok(outcomes)
}

/// Ids (with `modified_micros`) of the advisories indexed under any of `keys`, each once.
async fn ids_for(pool: &AnyPool, keys: &[(String, String)]) -> Result<Vec<(String, i64)>, StoreError> {
    let mut out: Vec<(String, i64)> =
        ids_by_key(pool, keys).await?.into_iter().map(|hit| (hit.id, hit.modified_micros)).collect();
    out.sort();
    out.dedup();
    Ok(out)
}

async fn ids_by_key(pool: &AnyPool, keys: &[(String, String)]) -> Result<Vec<AdvisoryKeyHit>, StoreError> {
    let mut by_ecosystem: std::collections::BTreeMap<&str, Vec<&str>> = Default::default();
    for (ecosystem, package) in keys {
        by_ecosystem.entry(ecosystem).or_default().push(package);
    }
    let mut out = Vec::new();
    for (ecosystem, names) in by_ecosystem {
        for chunk in names.chunks(NAMES_PER_LOOKUP) {
            let sql = format!(
                "SELECT DISTINCT i.package, a.id, a.modified_micros FROM advisory_index i \
                 JOIN advisories a ON a.id = i.advisory_id WHERE i.ecosystem = $1 AND i.package IN ({})",
                super::placeholders(2, chunk.len())
            );
            let mut query = sqlx::query(AssertSqlSafe(sql)).bind(ecosystem.to_owned());
            for name in chunk {
                query = query.bind((*name).to_owned());
            }
            for row in query.fetch_all(pool).await.map_err(q("look up advisories by package"))? {
                out.push(AdvisoryKeyHit {
                    ecosystem: ecosystem.to_owned(),
                    package: row.try_get("package").map_err(q("decode a row"))?,
                    id: row.try_get("id").map_err(q("decode a row"))?,
                    modified_micros: row.try_get("modified_micros").map_err(q("decode a row"))?,
                });
            }
        }
    }
    Ok(out)
}

/// The stored records with these ids (unknown ids are skipped).
async fn get(pool: &AnyPool, ids: &[String]) -> Result<Vec<StoredAdvisory>, StoreError> {
    let mut out = Vec::with_capacity(ids.len());
    for chunk in ids.chunks(NAMES_PER_LOOKUP) {
        let sql = format!(
            "SELECT id, modified_micros, record FROM advisories WHERE id IN ({})",
            super::placeholders(1, chunk.len())
        );
        let mut query = sqlx::query(AssertSqlSafe(sql));
        for id in chunk {
            query = query.bind(id.clone());
        }
        for row in query.fetch_all(pool).await.map_err(q("read advisories"))? {
            out.push(StoredAdvisory {
                id: row.try_get("id").map_err(q("decode a row"))?,
                modified_micros: row.try_get("modified_micros").map_err(q("decode a row"))?,
                record: row.try_get("record").map_err(q("decode a row"))?,
            });
        }
    }
    out.sort_by(|a, b| a.id.cmp(&b.id));
    Ok(out)
}

async fn stats(pool: &AnyPool) -> Result<AdvisoryStats, StoreError> {
    let total: i64 = sqlx::query("SELECT COUNT(*) AS n FROM advisories")
        .fetch_one(pool)
        .await
        .map_err(q("count advisories"))?
        .try_get("n")
        .map_err(q("decode a row"))?;
    let rows = sqlx::query(
        "SELECT i.ecosystem AS ecosystem, COUNT(DISTINCT i.advisory_id) AS n, MAX(a.modified_micros) AS newest \
         FROM advisory_index i JOIN advisories a ON a.id = i.advisory_id GROUP BY i.ecosystem ORDER BY i.ecosystem",
    )
    .fetch_all(pool)
    .await
    .map_err(q("count advisories per ecosystem"))?;
    let mut ecosystems = Vec::with_capacity(rows.len());
    for row in rows {
        let n: i64 = row.try_get("n").map_err(q("decode a row"))?;
        ecosystems.push((
            row.try_get("ecosystem").map_err(q("decode a row"))?,
            u64::try_from(n).unwrap_or(0),
            row.try_get("newest").map_err(q("decode a row"))?,
        ));
    }
    let newest = sqlx::query("SELECT id, modified FROM advisories ORDER BY modified_micros DESC, id LIMIT 1")
        .fetch_optional(pool)
        .await
        .map_err(q("find the newest advisory"))?
        .map(|row| -> Result<(String, String), StoreError> {
            Ok((row.try_get("id").map_err(q("decode a row"))?, row.try_get("modified").map_err(q("decode a row"))?))
        })
        .transpose()?;
    Ok(AdvisoryStats { total: u64::try_from(total).unwrap_or(0), ecosystems, newest })
}
