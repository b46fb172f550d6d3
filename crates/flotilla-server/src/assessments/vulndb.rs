//! The advisory database service: import of OSV records, status, single-version matching, and
//! [`assess_node`], the CVE rule of assessments.
//!
//! Invariants: records are checked by `flotilla_osv` before they are stored (a bad record is
//! rejected alone, with its reason); the store keeps the text as received and an index by
//! `(ecosystem key, package)`; matching reads only the advisories of the node's own
//! `(ecosystem, package)` pairs, and an [`AdvisoryCache`] parses each stored record once per
//! assessment run however many nodes need it; the run's [`Verdicts`] match each package
//! version once, however many nodes hold it.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use flotilla_osv::parse_record;
use flotilla_store::{AdvisoryRecord, AdvisoryStats, ImportOutcome, Store};
use flotilla_vuln::{
    AdvisoryMatch, CompiledAdvisory, InstalledPackage, NodeVulnReport, OsFacts, OsvEcosystem, PreparedNode, Verdicts,
};

use crate::platform::ServiceError;

/// Largest batch of records accepted in one import request.
pub const MAX_RECORDS_PER_BATCH: usize = 5_000;

/// One OSV record as sent, with where it came from (a file name, for the rejection report).
#[derive(Debug, Clone)]
pub struct RecordText {
    pub source: String,
    pub text: String,
}

/// A record that was not imported, and why.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Rejected {
    pub source: String,
    /// The record id, when it got far enough to have one.
    pub id: Option<String>,
    pub reason: String,
}

/// What an import did.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ImportSummary {
    pub new: u64,
    pub updated: u64,
    pub unchanged: u64,
    pub rejected: Vec<Rejected>,
}

/// Checks and stores a batch of OSV records; each record is new, updated, unchanged or
/// rejected with its reason.
pub async fn import(store: &dyn Store, records: Vec<RecordText>) -> Result<ImportSummary, ServiceError> {
    if records.len() > MAX_RECORDS_PER_BATCH {
        return Err(ServiceError::Invalid(format!(
            "too many records in one request ({}; at most {MAX_RECORDS_PER_BATCH}): send smaller batches",
            records.len()
        )));
    }
    // Parsing a batch is CPU work: keep it off the async threads.
    let (accepted, mut result) = tokio::task::spawn_blocking(move || {
        let mut accepted = Vec::new();
        let mut result = ImportSummary::default();
        for r in records {
            match parse_record(&r.text) {
                Ok(record) => {
                    let index = record.index_keys();
                    let a = &record.advisory.advisory;
                    accepted.push(AdvisoryRecord {
                        id: a.id.clone(),
                        modified: a.modified.clone(),
                        modified_micros: record.modified_micros,
                        record: r.text,
                        index,
                    });
                }
                Err(e) => result.rejected.push(Rejected {
                    source: r.source,
                    id: e.id().map(str::to_owned),
                    reason: e.to_string(),
                }),
            }
        }
        (accepted, result)
    })
    .await
    .map_err(|e| ServiceError::Internal(format!("advisory parsing task failed: {e}")))?;
    let outcomes = store.import_advisories(&accepted, crate::platform::now_ms()).await?;
    for outcome in outcomes {
        match outcome {
            ImportOutcome::New => result.new += 1,
            ImportOutcome::Updated => result.updated += 1,
            ImportOutcome::Unchanged => result.unchanged += 1,
        }
    }
    Ok(result)
}

/// Counts per ecosystem and the newest record.
pub async fn status(store: &dyn Store) -> Result<AdvisoryStats, ServiceError> {
    Ok(store.advisory_stats().await?)
}

/// Parsed advisories by id, reused across the nodes of one assessment run. A record whose
/// `modified` changed since it was cached is read again.
///
/// It also remembers which advisories each `(ecosystem, package)` key has (most have none):
/// across a fleet the same packages recur on every node, so after the first nodes an
/// assessment asks the store only for keys it has not seen in this run.
/// `(ecosystem key, package)`, as the advisory index names it.
type LookupKey = (String, String);

#[derive(Default)]
pub struct AdvisoryCache {
    parsed: Mutex<HashMap<String, (i64, Arc<CompiledAdvisory>)>>,
    by_key: Mutex<HashMap<LookupKey, Vec<(String, i64)>>>,
}

impl AdvisoryCache {
    pub fn new() -> Self {
        Self::default()
    }

    /// How many parsed advisories it holds.
    pub fn len(&self) -> usize {
        self.parsed.lock().map(|c| c.len()).unwrap_or(0)
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Ids and `modified_micros` of the advisories under any of `keys`, each once, sorted;
    /// the store is asked only for keys this cache has not looked up before.
    pub async fn ids_for(
        &self,
        store: &dyn Store,
        keys: &[(String, String)],
    ) -> Result<Vec<(String, i64)>, ServiceError> {
        let poisoned = || ServiceError::Internal("advisory cache poisoned".into());
        let missing: Vec<LookupKey> = {
            let known = self.by_key.lock().map_err(|_| poisoned())?;
            keys.iter().filter(|k| !known.contains_key(*k)).cloned().collect()
        };
        if !missing.is_empty() {
            let hits = store.advisory_ids_by_key(&missing).await?;
            let mut known = self.by_key.lock().map_err(|_| poisoned())?;
            for key in missing {
                known.entry(key).or_default();
            }
            for hit in hits {
                known.entry((hit.ecosystem, hit.package)).or_default().push((hit.id, hit.modified_micros));
            }
        }
        let known = self.by_key.lock().map_err(|_| poisoned())?;
        let mut out: Vec<(String, i64)> = keys.iter().filter_map(|k| known.get(k)).flatten().cloned().collect();
        out.sort();
        out.dedup();
        Ok(out)
    }

    /// The advisories with these `(id, modified_micros)`, reading and parsing only those not
    /// cached yet. A stored record that no longer parses is skipped (and logged): it was
    /// valid when imported, so only a rule change can cause it.
    pub async fn load(
        &self,
        store: &dyn Store,
        ids: &[(String, i64)],
    ) -> Result<Vec<Arc<CompiledAdvisory>>, ServiceError> {
        let mut out = Vec::with_capacity(ids.len());
        let mut missing = Vec::new();
        {
            let cache = self.parsed.lock().map_err(|_| ServiceError::Internal("advisory cache poisoned".into()))?;
            for (id, modified) in ids {
                match cache.get(id) {
                    Some((m, adv)) if m == modified => out.push(adv.clone()),
                    _ => missing.push(id.clone()),
                }
            }
        }
        if missing.is_empty() {
            return Ok(out);
        }
        let stored = store.get_advisories(&missing).await?;
        let parsed = tokio::task::spawn_blocking(move || {
            stored
                .into_iter()
                .filter_map(|s| match parse_record(&s.record) {
                    Ok(r) => Some((s.id, s.modified_micros, Arc::new(r.advisory))),
                    Err(e) => {
                        tracing::warn!(advisory = %s.id, "stored advisory no longer parses, skipped: {e}");
                        None
                    }
                })
                .collect::<Vec<_>>()
        })
        .await
        .map_err(|e| ServiceError::Internal(format!("advisory parsing task failed: {e}")))?;
        let mut cache = self.parsed.lock().map_err(|_| ServiceError::Internal("advisory cache poisoned".into()))?;
        for (id, modified, adv) in parsed {
            cache.insert(id, (modified, adv.clone()));
            out.push(adv);
        }
        Ok(out)
    }
}

/// The CVE rule for one node: its packages against the advisories of its ecosystems.
///
/// A package version `verdicts` already judged (on an earlier node of the run) is not matched
/// again; for the others only the advisories indexed under their `(ecosystem, package)` pairs
/// are read (one batched lookup), each parsed at most once per `cache`. A node whose OS maps
/// to no ecosystem is `assessable: false` (not clean). Findings are sorted by severity.
pub async fn assess_node(
    store: &dyn Store,
    cache: &AdvisoryCache,
    verdicts: &Verdicts,
    os: &OsFacts,
    packages: &[InstalledPackage],
) -> Result<NodeVulnReport, ServiceError> {
    let Some(node) = PreparedNode::new(os, packages) else {
        return Ok(NodeVulnReport { assessable: false, ..NodeVulnReport::default() });
    };
    let lookups = node.lookups_missing(verdicts);
    let advisories = if lookups.is_empty() {
        Vec::new()
    } else {
        let ids = cache.ids_for(store, &lookups).await?;
        cache.load(store, &ids).await?
    };
    Ok(node.assess_with(verdicts, advisories.iter().map(Arc::as_ref)))
}

/// `vulndb match`: the advisories affecting one package version (the name as the
/// advisories use it).
pub async fn match_version(
    store: &dyn Store,
    ecosystem: &str,
    package: &str,
    version: &str,
) -> Result<Vec<AdvisoryMatch>, ServiceError> {
    let eco = OsvEcosystem::parse(ecosystem).map_err(|e| ServiceError::Invalid(e.to_string()))?;
    let ids = store.advisory_ids_for(&[(eco.key().to_owned(), package.to_owned())]).await?;
    let advisories = AdvisoryCache::new().load(store, &ids).await?;
    flotilla_vuln::match_version(&eco, package, version, advisories.iter().map(Arc::as_ref))
        .map_err(|e| ServiceError::Invalid(format!("{e} (versions are compared as {} does)", eco.ordering())))
}
