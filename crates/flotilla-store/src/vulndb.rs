//! The advisory database's storage interface ([`VulnDbStore`], SQL in `sql/vulndb.rs`): OSV
//! records by id with their `modified` time, and the `(ecosystem, package) → advisory` index.
//!
//! Invariants: an import is idempotent per record — same id with the same or an older
//! `modified` changes nothing; a newer one replaces the record and all its index rows; a batch
//! is one transaction. Lookups read the index first, so matching never scans all advisories.

use async_trait::async_trait;
use flotilla_core::UnixMillis;

use crate::StoreError;

/// One checked record to store.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AdvisoryRecord {
    pub id: String,
    pub modified: String,
    pub modified_micros: i64,
    /// The JSON text as received.
    pub record: String,
    /// Distinct `(ecosystem key, package name)` pairs.
    pub index: Vec<(String, String)>,
}

/// What importing one record did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ImportOutcome {
    New,
    Updated,
    Unchanged,
}

/// An advisory indexed under one `(ecosystem, package)` key.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AdvisoryKeyHit {
    pub ecosystem: String,
    pub package: String,
    pub id: String,
    pub modified_micros: i64,
}

/// A stored record.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StoredAdvisory {
    pub id: String,
    pub modified_micros: i64,
    pub record: String,
}

/// Counts for `vulndb status`.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct AdvisoryStats {
    pub total: u64,
    /// `(ecosystem key, advisories indexed under it, newest modified_micros among them)`.
    pub ecosystems: Vec<(String, u64, i64)>,
    /// Id and `modified` of the most recently modified record.
    pub newest: Option<(String, String)>,
}

/// The advisory database (vulnerability assessment).
#[async_trait]
pub trait VulnDbStore: Send + Sync {
    /// Imports records in one transaction: a new id is inserted; a known id with a newer
    /// `modified` replaces the record and all its index rows; otherwise nothing changes.
    /// Returns one outcome per record, in order.
    async fn import_advisories(
        &self,
        records: &[AdvisoryRecord],
        now: UnixMillis,
    ) -> Result<Vec<ImportOutcome>, StoreError>;
    /// Ids and `modified_micros` of the advisories indexed under any `(ecosystem, package)`
    /// of `keys`, each once, sorted by id.
    async fn advisory_ids_for(&self, keys: &[(String, String)]) -> Result<Vec<(String, i64)>, StoreError>;
    /// The same lookup, saying which key each advisory was found under (a hit per key).
    async fn advisory_ids_by_key(&self, keys: &[(String, String)]) -> Result<Vec<AdvisoryKeyHit>, StoreError>;
    /// The stored records with these ids, sorted by id; unknown ids are skipped.
    async fn get_advisories(&self, ids: &[String]) -> Result<Vec<StoredAdvisory>, StoreError>;
    async fn advisory_stats(&self) -> Result<AdvisoryStats, StoreError>;
}
