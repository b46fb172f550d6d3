//! The advisory model (the parts of an OSV record that matching needs) and its validation.
//!
//! [`Advisory`] is plain data, filled by whoever reads OSV JSON (this crate has no serde).
//! [`Advisory::compile`] checks it and turns every range into events parsed with the
//! ecosystem's own version ordering, sorted by that ordering: a record that fails is rejected
//! whole with an [`AdvisoryError`] saying why, so nothing half-valid is ever matched.
//!
//! Rules enforced here:
//! * at least one `affected` entry, and at least one of them in a supported ecosystem (entries
//!   of other ecosystems are kept out of the index, not guessed at);
//! * every range has an `introduced` event (OSV requires one; `0` means "from the start");
//! * every event version of an `ECOSYSTEM` range parses in the ecosystem's ordering.
//!   `SEMVER` and `GIT` ranges say nothing about distribution package versions and are
//!   ignored for matching (but still need their `introduced`).

use std::cmp::Ordering;

use crate::distro::{OsvEcosystem, UnknownOsvEcosystem};
use crate::{ApkVersion, DebVersion, Ecosystem, RpmVersion, VersionError};

/// An OSV record, reduced to what assessment needs.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Advisory {
    pub id: String,
    /// RFC 3339 text as published.
    pub modified: String,
    /// Set when the record was withdrawn: it is stored but never matched.
    pub withdrawn: Option<String>,
    pub aliases: Vec<String>,
    pub upstream: Vec<String>,
    pub related: Vec<String>,
    pub summary: String,
    pub details: String,
    /// Record-level `severity` entries.
    pub severity: Vec<SeverityEntry>,
    pub affected: Vec<Affected>,
}

/// One `severity` entry: `type` (`CVSS_V3`, `CVSS_V4`, `Ubuntu`, ...) and `score`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SeverityEntry {
    pub kind: String,
    pub score: String,
}

/// One `affected` entry.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Affected {
    /// `package.ecosystem` as written.
    pub ecosystem: String,
    /// `package.name`: a source package (Debian, Ubuntu), an origin (Alpine) or a binary
    /// package (AlmaLinux, Rocky, Red Hat).
    pub package: String,
    pub purl: Option<String>,
    pub ranges: Vec<Range>,
    /// The explicit `versions` list. Debian's lists mix in versions of other releases, so it
    /// is used only when an entry has no `ECOSYSTEM` range.
    pub versions: Vec<String>,
    /// `ecosystem_specific.ubuntu_priority`.
    pub ubuntu_priority: Option<String>,
    /// `ecosystem_specific.urgency` (Debian).
    pub debian_urgency: Option<String>,
    /// Entry-level `severity` entries.
    pub severity: Vec<SeverityEntry>,
}

/// A range's `type`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum RangeKind {
    Ecosystem,
    Semver,
    Git,
    Other(String),
}

/// One range: its type and its events as written.
#[derive(Debug, Clone, PartialEq)]
pub struct Range {
    pub kind: RangeKind,
    pub events: Vec<Event>,
}

/// A range event.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum EventKind {
    Introduced,
    LastAffected,
    Fixed,
    Limit,
}

impl EventKind {
    pub fn as_str(self) -> &'static str {
        match self {
            EventKind::Introduced => "introduced",
            EventKind::LastAffected => "last_affected",
            EventKind::Fixed => "fixed",
            EventKind::Limit => "limit",
        }
    }
}

/// One event: kind and version text.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Event {
    pub kind: EventKind,
    pub version: String,
}

impl Event {
    pub fn new(kind: EventKind, version: impl Into<String>) -> Self {
        Event { kind, version: version.into() }
    }
}

/// Why a record cannot be used.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum AdvisoryError {
    #[error("record has no id")]
    MissingId,
    #[error("{id}: `affected` is empty")]
    EmptyAffected { id: String },
    #[error("{id}: {source}")]
    UnknownEcosystem { id: String, source: UnknownOsvEcosystem },
    #[error("{id}: an affected entry in {ecosystem} has no package name")]
    MissingPackage { id: String, ecosystem: String },
    #[error("{id}: a range of {package} ({ecosystem}) has no `introduced` event")]
    NoIntroduced { id: String, package: String, ecosystem: String },
    #[error("{id}: {event} event of {package} ({ecosystem}): {source}")]
    InvalidEventVersion {
        id: String,
        package: String,
        ecosystem: String,
        event: &'static str,
        source: Box<VersionError>,
    },
}

/// A parsed version of one of the three orderings.
#[derive(Debug, Clone)]
pub enum PackageVersion {
    Deb(DebVersion),
    Rpm(RpmVersion),
    Apk(ApkVersion),
}

impl PackageVersion {
    pub fn parse(eco: Ecosystem, s: &str) -> Result<Self, VersionError> {
        Ok(match eco {
            Ecosystem::Deb => PackageVersion::Deb(DebVersion::parse(s)?),
            Ecosystem::Rpm => PackageVersion::Rpm(RpmVersion::parse(s)?),
            Ecosystem::Apk => PackageVersion::Apk(ApkVersion::parse(s)?),
        })
    }

    /// `None` when the two belong to different orderings (never the case within one entry).
    pub fn compare(&self, other: &PackageVersion) -> Option<Ordering> {
        match (self, other) {
            (PackageVersion::Deb(a), PackageVersion::Deb(b)) => Some(a.cmp(b)),
            (PackageVersion::Rpm(a), PackageVersion::Rpm(b)) => Some(a.cmp(b)),
            (PackageVersion::Apk(a), PackageVersion::Apk(b)) => Some(a.cmp(b)),
            _ => None,
        }
    }

    /// RHEL-family module builds (`...module+el8...`, `...module_el9...`) are a separate
    /// stream whose versions do not compare meaningfully with the base stream's.
    pub fn is_module_stream(&self) -> bool {
        match self {
            PackageVersion::Rpm(v) => v.release().is_some_and(is_module_release),
            _ => false,
        }
    }
}

/// Whether an rpm release marks a modular build.
pub fn is_module_release(release: &str) -> bool {
    release.contains("module+el") || release.contains("module_el")
}

/// An event with its version parsed; `version` is `None` only for `introduced: 0`.
#[derive(Debug, Clone)]
pub struct CompiledEvent {
    pub kind: EventKind,
    pub version: Option<PackageVersion>,
    pub text: String,
}

/// An `affected` entry ready for matching.
#[derive(Debug, Clone)]
pub struct CompiledAffected {
    pub ecosystem: OsvEcosystem,
    pub package: String,
    pub purl: Option<String>,
    /// `ECOSYSTEM` ranges, each sorted by the ecosystem ordering.
    pub ranges: Vec<Vec<CompiledEvent>>,
    /// The explicit versions, used only when `ranges` is empty; unparsable ones are dropped
    /// (they are informative and never decide a match on their own).
    pub versions: Vec<PackageVersion>,
    pub ubuntu_priority: Option<String>,
    pub debian_urgency: Option<String>,
    pub severity: Vec<SeverityEntry>,
    /// CVSS base score and level for this entry, computed once here (see `severity::rate`).
    pub score: Option<f64>,
    pub level: crate::Severity,
}

/// An advisory whose every range has been checked and parsed.
#[derive(Debug, Clone)]
pub struct CompiledAdvisory {
    /// The record's own fields. Its `affected` is emptied once compiled (the compiled form
    /// below replaces it): parsed advisories are cached per assessment run, and Ubuntu's and
    /// Debian's `versions` lists would dominate that memory.
    pub advisory: Advisory,
    /// The entries of supported ecosystems.
    pub affected: Vec<CompiledAffected>,
}

impl Advisory {
    /// Validates the record and parses its ranges (see the module documentation).
    pub fn compile(self) -> Result<CompiledAdvisory, AdvisoryError> {
        if self.id.trim().is_empty() {
            return Err(AdvisoryError::MissingId);
        }
        let id = self.id.clone();
        if self.affected.is_empty() {
            return Err(AdvisoryError::EmptyAffected { id });
        }
        let mut affected = Vec::new();
        let mut first_unknown = None;
        for entry in &self.affected {
            let ecosystem = match OsvEcosystem::parse(&entry.ecosystem) {
                Ok(e) => e,
                Err(e) => {
                    first_unknown.get_or_insert(e);
                    continue;
                }
            };
            if entry.package.trim().is_empty() {
                return Err(AdvisoryError::MissingPackage { id, ecosystem: entry.ecosystem.clone() });
            }
            let ordering = ecosystem.ordering();
            let mut ranges = Vec::new();
            for range in &entry.ranges {
                if !range.events.iter().any(|e| e.kind == EventKind::Introduced) {
                    return Err(AdvisoryError::NoIntroduced {
                        id,
                        package: entry.package.clone(),
                        ecosystem: entry.ecosystem.clone(),
                    });
                }
                if range.kind != RangeKind::Ecosystem {
                    continue;
                }
                let mut events = Vec::with_capacity(range.events.len());
                for event in &range.events {
                    let version = if event.kind == EventKind::Introduced && event.version == "0" {
                        None
                    } else {
                        Some(PackageVersion::parse(ordering, &event.version).map_err(|source| {
                            AdvisoryError::InvalidEventVersion {
                                id: id.clone(),
                                package: entry.package.clone(),
                                ecosystem: entry.ecosystem.clone(),
                                event: event.kind.as_str(),
                                source: Box::new(source),
                            }
                        })?)
                    };
                    events.push(CompiledEvent { kind: event.kind, version, text: event.version.clone() });
                }
                sort_events(&mut events);
                ranges.push(events);
            }
            let versions = if ranges.is_empty() {
                entry.versions.iter().filter_map(|v| PackageVersion::parse(ordering, v).ok()).collect()
            } else {
                Vec::new()
            };
            let (score, level) = crate::severity::rate(
                &self.severity,
                &self.summary,
                &entry.severity,
                entry.ubuntu_priority.as_deref(),
                entry.debian_urgency.as_deref(),
            );
            affected.push(CompiledAffected {
                ecosystem,
                package: entry.package.clone(),
                purl: entry.purl.clone(),
                ranges,
                versions,
                ubuntu_priority: entry.ubuntu_priority.clone(),
                debian_urgency: entry.debian_urgency.clone(),
                severity: entry.severity.clone(),
                score,
                level,
            });
        }
        if affected.is_empty()
            && let Some(source) = first_unknown
        {
            return Err(AdvisoryError::UnknownEcosystem { id, source });
        }
        let mut advisory = self;
        advisory.affected = Vec::new();
        Ok(CompiledAdvisory { advisory, affected })
    }
}

/// Sorts events by version in the ecosystem ordering (`introduced: 0` first). At one version,
/// `introduced` comes before the events that end a range, so `introduced X, fixed X` is empty.
fn sort_events(events: &mut [CompiledEvent]) {
    events.sort_by(|a, b| {
        let by_version = match (&a.version, &b.version) {
            (None, None) => Ordering::Equal,
            (None, Some(_)) => Ordering::Less,
            (Some(_), None) => Ordering::Greater,
            (Some(x), Some(y)) => x.compare(y).unwrap_or(Ordering::Equal),
        };
        by_version.then(a.kind.cmp(&b.kind))
    });
}

/// The verdict of one range (or versions list) on one installed version.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum RangeVerdict {
    /// Affected; the fix, when the range has one above the installed version.
    Affected { fixed: Option<String> },
    /// Not affected because a `fixed` event at or below the installed version applies.
    Fixed,
    /// Not affected for another reason (before `introduced`, past `last_affected`/`limit`,
    /// not listed).
    NotAffected,
}

/// Evaluates one sorted range on `installed` (OSV's algorithm: walk the events in order; an
/// `introduced` at or below the version opens, a `fixed`/`limit` at or below it, or a
/// `last_affected` strictly below it, closes).
pub fn evaluate_range(events: &[CompiledEvent], installed: &PackageVersion) -> RangeVerdict {
    let at_or_below = |v: &Option<PackageVersion>, strict: bool| match v {
        None => true,
        Some(v) => match v.compare(installed) {
            Some(Ordering::Less) => true,
            Some(Ordering::Equal) => !strict,
            _ => false,
        },
    };
    let mut affected = false;
    let mut closed_by_fix = false;
    for event in events {
        match event.kind {
            EventKind::Introduced if at_or_below(&event.version, false) => {
                affected = true;
                closed_by_fix = false;
            }
            EventKind::Fixed if at_or_below(&event.version, false) => {
                affected = false;
                closed_by_fix = true;
            }
            EventKind::Limit if at_or_below(&event.version, false) => {
                affected = false;
                closed_by_fix = false;
            }
            EventKind::LastAffected if at_or_below(&event.version, true) => {
                affected = false;
                closed_by_fix = false;
            }
            _ => {}
        }
    }
    if affected {
        // The fix is the first `fixed` above the installed version, before the range reopens.
        let fixed = events
            .iter()
            .skip_while(|e| at_or_below(&e.version, false))
            .take_while(|e| e.kind != EventKind::Introduced)
            .find(|e| e.kind == EventKind::Fixed)
            .map(|e| e.text.clone());
        RangeVerdict::Affected { fixed }
    } else if closed_by_fix {
        RangeVerdict::Fixed
    } else {
        RangeVerdict::NotAffected
    }
}

/// Whether `installed` is affected by one compiled entry: any `ECOSYSTEM` range, or (only
/// when there is none) the explicit versions list.
pub fn evaluate_affected(entry: &CompiledAffected, installed: &PackageVersion) -> RangeVerdict {
    // A module-stream fix says nothing about a base-stream build, and the reverse.
    let installed_module = installed.is_module_stream();
    let mut best = RangeVerdict::NotAffected;
    for range in &entry.ranges {
        let range_module = range.iter().filter_map(|e| e.version.as_ref()).any(PackageVersion::is_module_stream);
        if range_module != installed_module {
            continue;
        }
        match evaluate_range(range, installed) {
            RangeVerdict::Affected { fixed } => {
                return RangeVerdict::Affected { fixed };
            }
            RangeVerdict::Fixed => best = RangeVerdict::Fixed,
            RangeVerdict::NotAffected => {}
        }
    }
    if entry.ranges.is_empty() && entry.versions.iter().any(|v| v.compare(installed) == Some(Ordering::Equal)) {
        return RangeVerdict::Affected { fixed: None };
    }
    best
}

#[cfg(test)]
mod tests {
    use super::*;

    fn entry(eco: &str, events: &[(EventKind, &str)]) -> Affected {
        Affected {
            ecosystem: eco.into(),
            package: "pkg".into(),
            ranges: vec![Range {
                kind: RangeKind::Ecosystem,
                events: events.iter().map(|(k, v)| Event::new(*k, *v)).collect(),
            }],
            ..Affected::default()
        }
    }

    fn advisory(affected: Vec<Affected>) -> Advisory {
        Advisory { id: "T-1".into(), affected, ..Advisory::default() }
    }

    fn verdict(eco: &str, events: &[(EventKind, &str)], installed: &str) -> RangeVerdict {
        let compiled = advisory(vec![entry(eco, events)]).compile().expect("compiles");
        let e = &compiled.affected[0];
        let v = PackageVersion::parse(e.ecosystem.ordering(), installed).expect("installed version");
        evaluate_affected(e, &v)
    }

    use EventKind::*;

    #[test]
    fn introduced_zero_and_fixed() {
        let ev = [(Introduced, "0"), (Fixed, "1.1.0l-1~deb9u6")];
        assert_eq!(
            verdict("Debian:9", &ev, "1.1.0l-1~deb9u5"),
            RangeVerdict::Affected { fixed: Some("1.1.0l-1~deb9u6".into()) }
        );
        assert_eq!(verdict("Debian:9", &ev, "1.1.0l-1~deb9u6"), RangeVerdict::Fixed);
        assert_eq!(verdict("Debian:9", &ev, "1.1.0l-1"), RangeVerdict::Fixed, "~deb9u6 sorts before -1");
    }

    #[test]
    fn unsorted_events_are_sorted_by_the_ecosystem_ordering() {
        // Written out of order; a string sort would put "1.10" before "1.9".
        let ev = [(Fixed, "1.10-1"), (Introduced, "1.9-1"), (Introduced, "2.0-1"), (Fixed, "2.0-3")];
        assert_eq!(verdict("Debian:12", &ev, "1.8-1"), RangeVerdict::NotAffected);
        assert_eq!(verdict("Debian:12", &ev, "1.9-5"), RangeVerdict::Affected { fixed: Some("1.10-1".into()) });
        assert_eq!(verdict("Debian:12", &ev, "1.10-1"), RangeVerdict::Fixed);
        assert_eq!(verdict("Debian:12", &ev, "2.0-2"), RangeVerdict::Affected { fixed: Some("2.0-3".into()) });
        assert_eq!(verdict("Debian:12", &ev, "2.0-3"), RangeVerdict::Fixed);
    }

    #[test]
    fn last_affected_and_limit() {
        let ev = [(Introduced, "0"), (LastAffected, "1.2-r0")];
        assert_eq!(verdict("Alpine:v3.19", &ev, "1.2-r0"), RangeVerdict::Affected { fixed: None });
        assert_eq!(verdict("Alpine:v3.19", &ev, "1.2-r1"), RangeVerdict::NotAffected);
        let ev = [(Introduced, "1.0-r0"), (Limit, "2.0-r0")];
        assert_eq!(verdict("Alpine:v3.19", &ev, "1.5-r0"), RangeVerdict::Affected { fixed: None });
        assert_eq!(verdict("Alpine:v3.19", &ev, "2.0-r0"), RangeVerdict::NotAffected);
        assert_eq!(verdict("Alpine:v3.19", &ev, "0.9-r0"), RangeVerdict::NotAffected);
    }

    #[test]
    fn rpm_epoch_missing_on_one_side_is_zero() {
        let ev = [(Introduced, "0"), (Fixed, "1:3.0.1-41.el9_0")];
        // An installed version without epoch is epoch 0: older than any 1: version.
        assert_eq!(
            verdict("AlmaLinux:9", &ev, "3.0.7-1.el9"),
            RangeVerdict::Affected { fixed: Some("1:3.0.1-41.el9_0".into()) }
        );
        assert_eq!(verdict("AlmaLinux:9", &ev, "1:3.0.1-41.el9_0"), RangeVerdict::Fixed);
        let ev = [(Introduced, "0"), (Fixed, "1.8.29-8.el8_7.1")];
        assert_eq!(verdict("AlmaLinux:8", &ev, "0:1.8.29-8.el8_7.1"), RangeVerdict::Fixed, "0: = no epoch");
    }

    #[test]
    fn module_streams_do_not_match_base_stream() {
        let ev = [(Introduced, "0"), (Fixed, "1:1.22.1-8.module_el9.5.0+153+8c633b18.1.alma.1")];
        assert_eq!(verdict("AlmaLinux:9", &ev, "1:1.20.1-14.el9_2.1.alma.1"), RangeVerdict::NotAffected);
        assert_eq!(
            verdict("AlmaLinux:9", &ev, "1:1.22.1-4.module_el9.3.0+58+4d5c7c35.alma.1"),
            RangeVerdict::Affected { fixed: Some("1:1.22.1-8.module_el9.5.0+153+8c633b18.1.alma.1".into()) }
        );
        let base = [(Introduced, "0"), (Fixed, "1:1.20.1-14.el9_2.1.alma.1")];
        assert_eq!(verdict("AlmaLinux:9", &base, "1:1.22.1-4.module+el8.8.0+1234+abcd"), RangeVerdict::NotAffected);
    }

    #[test]
    fn bad_records_are_rejected_with_the_reason() {
        assert_eq!(
            Advisory { affected: vec![], ..advisory(vec![]) }.compile().err(),
            Some(AdvisoryError::EmptyAffected { id: "T-1".into() })
        );
        assert!(matches!(
            advisory(vec![entry("npm", &[(Introduced, "0")])]).compile(),
            Err(AdvisoryError::UnknownEcosystem { .. })
        ));
        assert!(matches!(
            advisory(vec![entry("Debian:12", &[(Fixed, "1.0-1")])]).compile(),
            Err(AdvisoryError::NoIntroduced { .. })
        ));
        let err = advisory(vec![entry("Debian:12", &[(Introduced, "0"), (Fixed, "not a version!")])])
            .compile()
            .expect_err("rejected");
        assert!(matches!(err, AdvisoryError::InvalidEventVersion { event: "fixed", .. }), "{err}");
        assert!(err.to_string().contains("invalid dpkg version"), "{err}");
        // A record with one supported entry keeps it and drops the unknown one.
        let ok = advisory(vec![entry("npm", &[(Introduced, "0")]), entry("Debian:12", &[(Introduced, "0")])])
            .compile()
            .expect("compiles");
        assert_eq!(ok.affected.len(), 1);
    }

    #[test]
    fn versions_list_is_used_only_without_ranges() {
        let mut e = entry("Debian:9", &[(Introduced, "0"), (Fixed, "1.0-2")]);
        e.versions = vec!["1.0-1".into(), "5.0-1".into()];
        let compiled = advisory(vec![e.clone()]).compile().expect("compiles");
        let v = PackageVersion::parse(Ecosystem::Deb, "5.0-1").expect("v");
        assert_eq!(evaluate_affected(&compiled.affected[0], &v), RangeVerdict::Fixed, "range decides, not the list");
        e.ranges.clear();
        let compiled = advisory(vec![e]).compile().expect("compiles");
        assert_eq!(evaluate_affected(&compiled.affected[0], &v), RangeVerdict::Affected { fixed: None });
    }
}
