//! OSV JSON → [`flotilla_vuln::Advisory`]. flotilla-vuln is pure and has no serde, so the
//! schema lives here, kept small and tolerant: unknown fields are ignored (OSV grows), but a
//! field of the wrong type, a missing `id` or `modified`, or an event that is none of
//! `introduced`/`fixed`/`last_affected`/`limit` rejects the record with the reason.
//!
//! [`parse_record`] also compiles the advisory (see [`flotilla_vuln::Advisory::compile`]), so
//! what it returns is exactly what the advisory database may store and match.

pub mod sample;

use flotilla_vuln::{
    Advisory, AdvisoryError, Affected, CompiledAdvisory, Event, EventKind, Range, RangeKind, SeverityEntry,
};
use serde::Deserialize;

/// Why a record was rejected.
#[derive(Debug, thiserror::Error)]
pub enum OsvError {
    #[error("malformed JSON: {0}")]
    Json(#[source] serde_json::Error),
    #[error("{id}: not an OSV record: {source}")]
    Schema { id: String, source: serde_json::Error },
    #[error("record has no `id`")]
    MissingId,
    #[error("{id}: `modified` {value:?} is not an RFC 3339 time")]
    BadModified { id: String, value: String },
    #[error("{id}: an event of {package} is none of introduced, fixed, last_affected, limit")]
    BadEvent { id: String, package: String },
    #[error(transparent)]
    Advisory(#[from] AdvisoryError),
}

impl OsvError {
    /// The record id, when the record got far enough to have one.
    pub fn id(&self) -> Option<&str> {
        match self {
            OsvError::Schema { id, .. } | OsvError::BadModified { id, .. } | OsvError::BadEvent { id, .. } => Some(id),
            OsvError::Advisory(
                AdvisoryError::EmptyAffected { id }
                | AdvisoryError::UnknownEcosystem { id, .. }
                | AdvisoryError::MissingPackage { id, .. }
                | AdvisoryError::NoIntroduced { id, .. }
                | AdvisoryError::InvalidEventVersion { id, .. },
            ) => Some(id),
            _ => None,
        }
    }
}

/// A checked record, ready to store and match.
#[derive(Debug, Clone)]
pub struct Record {
    pub advisory: CompiledAdvisory,
    /// `modified` in microseconds since the Unix epoch (what "newer" means on import).
    pub modified_micros: i64,
}

impl Record {
    /// The distinct `(ecosystem key, package)` pairs the record is indexed under.
    pub fn index_keys(&self) -> Vec<(String, String)> {
        let mut keys: Vec<(String, String)> =
            self.advisory.affected.iter().map(|a| (a.ecosystem.key().to_owned(), a.package.clone())).collect();
        keys.sort();
        keys.dedup();
        keys
    }
}

#[derive(Deserialize)]
struct RawRecord {
    id: Option<String>,
    modified: Option<String>,
    #[serde(default)]
    withdrawn: Option<String>,
    #[serde(default)]
    aliases: Option<Vec<String>>,
    #[serde(default)]
    upstream: Option<Vec<String>>,
    #[serde(default)]
    related: Option<Vec<String>>,
    #[serde(default)]
    summary: Option<String>,
    #[serde(default)]
    details: Option<String>,
    #[serde(default)]
    severity: Option<Vec<RawSeverity>>,
    #[serde(default)]
    affected: Option<Vec<RawAffected>>,
}

#[derive(Deserialize)]
struct RawSeverity {
    #[serde(rename = "type")]
    kind: String,
    score: String,
}

#[derive(Deserialize, Default)]
struct RawPackage {
    #[serde(default)]
    ecosystem: String,
    #[serde(default)]
    name: String,
    #[serde(default)]
    purl: Option<String>,
}

#[derive(Deserialize)]
struct RawAffected {
    #[serde(default)]
    package: Option<RawPackage>,
    #[serde(default)]
    ranges: Option<Vec<RawRange>>,
    #[serde(default)]
    versions: Option<Vec<String>>,
    #[serde(default)]
    severity: Option<Vec<RawSeverity>>,
    #[serde(default)]
    ecosystem_specific: Option<serde_json::Value>,
}

#[derive(Deserialize)]
struct RawRange {
    #[serde(rename = "type")]
    kind: String,
    #[serde(default)]
    events: Vec<RawEvent>,
}

#[derive(Deserialize)]
struct RawEvent {
    introduced: Option<String>,
    fixed: Option<String>,
    last_affected: Option<String>,
    limit: Option<String>,
}

fn severities(list: Option<Vec<RawSeverity>>) -> Vec<SeverityEntry> {
    list.unwrap_or_default().into_iter().map(|s| SeverityEntry { kind: s.kind, score: s.score }).collect()
}

fn specific(value: &Option<serde_json::Value>, key: &str) -> Option<String> {
    value.as_ref()?.get(key)?.as_str().map(str::to_owned)
}

/// Parses `modified` to microseconds since the epoch (OSV times are RFC 3339 UTC).
pub fn parse_time_micros(value: &str) -> Option<i64> {
    let t = time::OffsetDateTime::parse(value.trim(), &time::format_description::well_known::Rfc3339).ok()?;
    i64::try_from(t.unix_timestamp_nanos() / 1000).ok()
}

/// Converts a JSON value to the advisory model (no validation beyond the schema).
pub fn to_advisory(value: serde_json::Value) -> Result<(Advisory, i64), OsvError> {
    let id_hint = value.get("id").and_then(|v| v.as_str()).unwrap_or("(no id)").to_owned();
    let raw: RawRecord = serde_json::from_value(value).map_err(|source| OsvError::Schema { id: id_hint, source })?;
    let id = raw.id.filter(|id| !id.trim().is_empty()).ok_or(OsvError::MissingId)?;
    let modified = raw.modified.unwrap_or_default();
    let modified_micros = parse_time_micros(&modified)
        .ok_or_else(|| OsvError::BadModified { id: id.clone(), value: modified.clone() })?;
    let mut affected = Vec::new();
    for a in raw.affected.unwrap_or_default() {
        let package = a.package.unwrap_or_default();
        let mut ranges = Vec::new();
        for r in a.ranges.unwrap_or_default() {
            let kind = match r.kind.as_str() {
                "ECOSYSTEM" => RangeKind::Ecosystem,
                "SEMVER" => RangeKind::Semver,
                "GIT" => RangeKind::Git,
                other => RangeKind::Other(other.to_owned()),
            };
            let mut events = Vec::new();
            for e in r.events {
                let event = match (e.introduced, e.fixed, e.last_affected, e.limit) {
                    (Some(v), None, None, None) => Event::new(EventKind::Introduced, v),
                    (None, Some(v), None, None) => Event::new(EventKind::Fixed, v),
                    (None, None, Some(v), None) => Event::new(EventKind::LastAffected, v),
                    (None, None, None, Some(v)) => Event::new(EventKind::Limit, v),
                    _ => return Err(OsvError::BadEvent { id, package: package.name }),
                };
                events.push(event);
            }
            ranges.push(Range { kind, events });
        }
        affected.push(Affected {
            ubuntu_priority: specific(&a.ecosystem_specific, "ubuntu_priority"),
            debian_urgency: specific(&a.ecosystem_specific, "urgency"),
            ecosystem: package.ecosystem,
            package: package.name,
            purl: package.purl,
            ranges,
            versions: a.versions.unwrap_or_default(),
            severity: severities(a.severity),
        });
    }
    let advisory = Advisory {
        id,
        modified,
        withdrawn: raw.withdrawn,
        aliases: raw.aliases.unwrap_or_default(),
        upstream: raw.upstream.unwrap_or_default(),
        related: raw.related.unwrap_or_default(),
        summary: raw.summary.unwrap_or_default(),
        details: raw.details.unwrap_or_default(),
        severity: severities(raw.severity),
        affected,
    };
    Ok((advisory, modified_micros))
}

/// Parses and checks one OSV record given as JSON text.
pub fn parse_record(text: &str) -> Result<Record, OsvError> {
    let value: serde_json::Value = serde_json::from_str(text).map_err(OsvError::Json)?;
    parse_value(value)
}

/// Parses and checks one OSV record given as a JSON value.
pub fn parse_value(value: serde_json::Value) -> Result<Record, OsvError> {
    let (advisory, modified_micros) = to_advisory(value)?;
    Ok(Record { advisory: advisory.compile()?, modified_micros })
}
