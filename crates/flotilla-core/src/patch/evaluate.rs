//! A baseline against one node's packages: which updates it approves, each installed
//! package's patch state (§7.7), what an Install should do, and the node's compliance.

use std::collections::BTreeMap;

use crate::compliance::{ComplianceSeverity, ComplianceStatus};

use super::PatchState;
use super::baseline::{Baseline, FilterKey, PackagePattern, RejectedAction, Rule};

/// One installed package, with the newest update its repositories offer (if any).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Candidate {
    pub name: String,
    pub arch: String,
    pub installed_version: String,
    /// The candidate update; the fields below describe it (or, without one, the package).
    pub available_version: Option<String>,
    pub repository: Option<String>,
    pub section: Option<String>,
    pub priority: Option<String>,
    /// One of `CLASSIFICATIONS`; `Security` when the update fixes a known CVE.
    pub classification: Option<String>,
    /// The vendor's severity, or the worst of the CVEs the update fixes.
    pub severity: Option<ComplianceSeverity>,
    /// Days since 1970-01-01 the update was published, when the repository says.
    pub published_day: Option<i64>,
    pub cves: Vec<String>,
    pub advisory_ids: Vec<String>,
}

impl Candidate {
    fn is_security(&self) -> bool {
        self.classification.as_deref() == Some("Security") || !self.cves.is_empty()
    }

    fn value(&self, key: FilterKey) -> Option<&str> {
        match key {
            FilterKey::Priority => self.priority.as_deref(),
            FilterKey::Section => self.section.as_deref(),
            FilterKey::Classification => {
                if !self.cves.is_empty() {
                    Some("Security")
                } else {
                    self.classification.as_deref()
                }
            }
            FilterKey::Severity => self.severity.map(ComplianceSeverity::as_str),
            FilterKey::Name => Some(&self.name),
            FilterKey::Repository => self.repository.as_deref(),
        }
    }
}

/// What the agent remembers between operations (AWS keeps the same in its tracking files):
/// the packages Patch Manager installed, and the updates whose install failed.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Memory {
    /// name → (version installed by an Install, when in Unix ms).
    pub patched: BTreeMap<String, (String, i64)>,
    /// name → the version whose install failed.
    pub failed: BTreeMap<String, String>,
}

/// One package's row of a node's patch states.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PatchRow {
    pub name: String,
    pub arch: String,
    pub state: PatchState,
    pub installed_version: String,
    pub available_version: Option<String>,
    pub severity: ComplianceSeverity,
    pub classification: Option<String>,
    pub cves: Vec<String>,
    pub repository: Option<String>,
    /// Whether this row makes the node NON_COMPLIANT: a non-compliant state at or above the
    /// compliance level of what approved it.
    pub counts: bool,
}

/// A node's counts by state and its compliance.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Summary {
    pub counts: BTreeMap<PatchState, usize>,
    pub status: ComplianceStatus,
    /// The worst severity among the rows that count (UNSPECIFIED when none).
    pub severity: ComplianceSeverity,
}

/// The outcome of evaluating a baseline.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Evaluation {
    /// One row per installed package, by name.
    pub rows: Vec<PatchRow>,
    /// The approved updates an Install applies (FAILED ones again): (name, version).
    pub to_install: Vec<(String, String)>,
    /// Names (one `*` allowed) that must never be installed, even as a dependency (BLOCK).
    pub blocked: Vec<String>,
    /// Rejected entries that match no package on the node (reported, not an error).
    pub unmatched_rejected: Vec<String>,
}

impl Evaluation {
    pub fn summary(&self) -> Summary {
        let mut counts: BTreeMap<PatchState, usize> = BTreeMap::new();
        for row in &self.rows {
            *counts.entry(row.state).or_default() += 1;
        }
        let counting: Vec<&PatchRow> = self.rows.iter().filter(|r| r.counts).collect();
        Summary {
            counts,
            status: if counting.is_empty() { ComplianceStatus::Compliant } else { ComplianceStatus::NonCompliant },
            severity: counting.iter().map(|r| r.severity).min().unwrap_or(ComplianceSeverity::Unspecified),
        }
    }
}

/// The rule (or the approved list, `None`) that approves `c`'s update, if any.
enum Approver<'a> {
    Rule(&'a Rule),
    List,
}

impl Approver<'_> {
    fn level(&self, baseline: &Baseline) -> ComplianceSeverity {
        match self {
            Approver::Rule(r) => r.compliance_level,
            Approver::List => baseline.approved_compliance_level,
        }
    }
}

fn approver<'a>(baseline: &'a Baseline, c: &Candidate, version: &str, today: i64) -> Option<Approver<'a>> {
    let global = baseline.global_filters.iter().all(|f| f.accepts(c.value(f.key)));
    if !global {
        return None;
    }
    if baseline.approved.iter().any(|p| p.matches(&c.name, version, &c.cves, &c.advisory_ids))
        && (baseline.approved_enable_non_security || c.is_security())
    {
        return Some(Approver::List);
    }
    baseline
        .rules
        .iter()
        .find(|r| {
            (r.enable_non_security || c.is_security())
                && r.filters.iter().all(|f| f.accepts(c.value(f.key)))
                && r.approval.approves(c.published_day, today)
        })
        .map(Approver::Rule)
}

/// Evaluates `baseline` over a node's `candidates` on `today` (days since 1970-01-01), with
/// what the agent remembers and whether the node waits for a reboot since `boot_ms`.
pub fn evaluate(
    baseline: &Baseline,
    candidates: &[Candidate],
    memory: &Memory,
    reboot_pending: bool,
    boot_ms: i64,
    today: i64,
) -> Evaluation {
    let rejected = |name: &str, version: &str| baseline.rejected.iter().any(|p| p.matches(name, version, &[], &[]));
    let mut rows = Vec::with_capacity(candidates.len());
    let mut to_install = Vec::new();
    for c in candidates {
        let severity = c.severity.unwrap_or(ComplianceSeverity::Unspecified);
        // A row counts when its severity reaches the approving level (UNSPECIFIED: always).
        let reaches = |level: ComplianceSeverity| level == ComplianceSeverity::Unspecified || severity <= level;
        let update = c.available_version.as_deref().filter(|v| !rejected(&c.name, v));
        let approved_update = update.and_then(|v| approver(baseline, c, v, today).map(|a| (v, a)));
        let failed_version = memory.failed.get(&c.name);
        let (state, counts) =
            if rejected(&c.name, &c.installed_version) && baseline.rejected_action == RejectedAction::Block {
                (PatchState::InstalledRejected, true)
            } else if failed_version == Some(&c.installed_version) {
                // Unpacked but not configured: the package manager holds the failed version.
                (PatchState::Failed, true)
            } else if let Some((version, by)) = approved_update {
                let level = by.level(baseline);
                // An Install tries a failed update again; until one succeeds it stays FAILED.
                to_install.push((c.name.clone(), version.to_owned()));
                if failed_version.is_some_and(|v| v == version) {
                    (PatchState::Failed, reaches(level))
                } else {
                    (PatchState::Missing, reaches(level))
                }
            } else if let Some((_, at)) = memory.patched.get(&c.name).filter(|(v, _)| *v == c.installed_version) {
                if reboot_pending && *at >= boot_ms {
                    (PatchState::InstalledPendingReboot, true)
                } else {
                    (PatchState::Installed, false)
                }
            } else if approver(baseline, c, &c.installed_version, today).is_some()
                && !rejected(&c.name, &c.installed_version)
            {
                (PatchState::Installed, false)
            } else {
                (PatchState::InstalledOther, false)
            };
        let cves = if matches!(state, PatchState::Missing | PatchState::Failed) { c.cves.clone() } else { Vec::new() };
        rows.push(PatchRow {
            name: c.name.clone(),
            arch: c.arch.clone(),
            state,
            installed_version: c.installed_version.clone(),
            available_version: c.available_version.clone(),
            severity,
            classification: c.classification.clone(),
            cves,
            repository: c.repository.clone(),
            counts,
        });
    }
    // An approved-list package the node does not have is NOT_APPLICABLE (§7.5): the operator
    // named it, so the report says it was considered, and it never counts against compliance.
    for pattern in &baseline.approved {
        let (name, version) = match pattern {
            PackagePattern::Name(name) if !name.contains('*') => (name, None),
            PackagePattern::NameVersion { name, version } => (name, Some(version)),
            _ => continue,
        };
        if candidates.iter().any(|c| c.name == *name) || rows.iter().any(|r| r.name == *name) {
            continue;
        }
        rows.push(PatchRow {
            name: name.clone(),
            arch: String::new(),
            state: PatchState::NotApplicable,
            installed_version: String::new(),
            available_version: version.cloned(),
            severity: ComplianceSeverity::Unspecified,
            classification: None,
            cves: Vec::new(),
            repository: None,
            counts: false,
        });
    }
    rows.sort_by(|a, b| a.name.cmp(&b.name).then_with(|| a.arch.cmp(&b.arch)));
    let unmatched_rejected = baseline
        .rejected
        .iter()
        .filter(|p| {
            !candidates.iter().any(|c| {
                p.matches(&c.name, &c.installed_version, &[], &[])
                    || c.available_version.as_deref().is_some_and(|v| p.matches(&c.name, v, &[], &[]))
            })
        })
        .map(ToString::to_string)
        .collect();
    let blocked = if baseline.rejected_action == RejectedAction::Block {
        baseline.rejected.iter().filter_map(|p| p.package_name().map(str::to_owned)).collect()
    } else {
        Vec::new()
    };
    Evaluation { rows, to_install, blocked, unmatched_rejected }
}
