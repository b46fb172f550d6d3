//! CVE assessment of one node: its installed packages against the advisories of its
//! ecosystems, giving findings (rule `cve`).
//!
//! Invariants and decisions:
//! * **Names.** Debian and Ubuntu advisories name source packages: a dpkg item is looked up by
//!   `source_name`/`source_version` (its own name and version when the source is absent), and
//!   the binaries built from one source version become one candidate. Alpine advisories name
//!   the origin (`source_name`), AlmaLinux/Rocky/Red Hat binary packages.
//! * **rpm epochs.** Inventory may keep the epoch apart (`epoch` field); it is put in front
//!   of the version before comparing. A version without one is epoch 0, as in rpm.
//! * **Within the node's release.** Only entries of the node's own ecosystems are evaluated,
//!   and only their ranges (a Debian `versions` list, which leaks other releases, is ignored
//!   when a range exists).
//! * **Pockets.** When several entries of one advisory apply to the same package (Ubuntu lists
//!   a package once per pocket, e.g. `fips` and `fips-updates`; LTS and Pro), a version that
//!   has reached a `fixed` event of any of them is fixed: that pocket's fix is installed. At
//!   most one match per advisory and package, whatever the number of entries.
//! * **One CVE, one finding per package.** Matching advisories of one package that share a
//!   CVE (from `id`, `aliases`, `upstream` or `related`, with `UBUNTU-CVE-`/`DEBIAN-CVE-`/
//!   `ALPINE-CVE-` ids read as the CVE) or name each other in `aliases`/`upstream` are one
//!   finding: the CVE-level record is its advisory id, the others and every CVE its aliases,
//!   the highest score and level, and the highest fix among them (none if one has no fix).
//! * **Kernels.** Only the running kernel's packages are exposed. Kernel image packages of
//!   other versions go to `not_running_kernel_findings`. When the running release is unknown,
//!   every kernel package counts as exposed (never silently clean).
//! * **Withdrawn** advisories never match. A version that does not parse is an error for that
//!   item only; the rest of the node is still assessed.

use std::cmp::Ordering;
use std::collections::{BTreeSet, HashMap};
use std::sync::{Arc, PoisonError, RwLock, RwLockReadGuard};

use crate::advisory::{CompiledAdvisory, CompiledAffected, PackageVersion, RangeVerdict, evaluate_affected};
use crate::distro::{Distro, OsvEcosystem, ecosystems_for_os};
use crate::severity::Severity;
use crate::{Ecosystem, VersionError};

/// The rule name of CVE findings.
pub const RULE_CVE: &str = "cve";

/// What assessment needs to know about a node's operating system.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct OsFacts {
    /// os-release `ID` (`debian`, `ubuntu`, `alpine`, `almalinux`, `rocky`, `rhel`).
    pub id: String,
    /// os-release `VERSION_ID`.
    pub version_id: String,
    /// The running kernel release (`uname -r`, e.g. `6.1.0-18-amd64` or
    /// `5.14.0-362.8.1.el9_3.x86_64`); `None` when unknown.
    pub kernel_release: Option<String>,
}

/// One installed package, as inventory reports it.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct InstalledPackage {
    pub name: String,
    /// The full version as the package manager states it (rpm: `[EPOCH:]VERSION-RELEASE`).
    pub version: String,
    pub arch: String,
    pub source_name: Option<String>,
    pub source_version: Option<String>,
    /// `dpkg`, `rpm` or `apk`.
    pub package_manager: String,
    /// rpm's separate epoch, when the version does not carry it.
    pub epoch: Option<String>,
}

/// An item that could not be assessed.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum ItemError {
    #[error("package {package} {version}: {source}")]
    InvalidVersion { package: String, version: String, source: VersionError },
    #[error("package {package}: package manager {manager:?} does not belong to this node's {expected} system")]
    ForeignPackageManager { package: String, manager: String, expected: Ecosystem },
}

/// One finding.
#[derive(Debug, Clone, PartialEq)]
pub struct Finding {
    pub rule: &'static str,
    pub advisory_id: String,
    /// The CVE ids and other advisory ids of the same vulnerability, sorted.
    pub aliases: Vec<String>,
    /// The package as the advisory names it (a source package on Debian/Ubuntu/Alpine).
    pub package: String,
    pub installed_version: String,
    pub fixed_version: Option<String>,
    pub score: Option<f64>,
    pub severity: Severity,
    pub title: String,
    /// The installed binary packages behind `package`.
    pub binaries: Vec<String>,
}

/// The CVE verdict for one node.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct NodeVulnReport {
    /// False when the OS is unknown: nothing was matched and the node is NOT clean.
    pub assessable: bool,
    /// The ecosystem keys the node was matched against.
    pub ecosystems: Vec<String>,
    /// Sorted by severity (High first), then score (highest first), package and advisory.
    pub findings: Vec<Finding>,
    /// Findings on installed kernels that are not running.
    pub not_running_kernel_findings: Vec<Finding>,
    pub errors: Vec<ItemError>,
}

/// A package as advisories name it, ready to compare.
#[derive(Debug, Clone)]
struct Candidate {
    version_text: String,
    version: PackageVersion,
    binaries: Vec<String>,
    exposed: bool,
}

/// A node's packages grouped by the names advisories use; built once per node.
#[derive(Debug, Clone)]
pub struct PreparedNode {
    ecosystems: Vec<OsvEcosystem>,
    candidates: HashMap<String, Vec<Candidate>>,
    errors: Vec<ItemError>,
}

impl PreparedNode {
    /// `None` when the OS maps to no known ecosystem (not assessable).
    pub fn new(os: &OsFacts, packages: &[InstalledPackage]) -> Option<PreparedNode> {
        let ecosystems = ecosystems_for_os(&os.id, &os.version_id)?;
        let distro = ecosystems.first()?.distro();
        let ordering = distro.ordering();
        let mut candidates: HashMap<String, Vec<Candidate>> = HashMap::new();
        let mut errors = Vec::new();
        for p in packages {
            if manager_ordering(&p.package_manager) != Some(ordering) {
                errors.push(ItemError::ForeignPackageManager {
                    package: p.name.clone(),
                    manager: p.package_manager.clone(),
                    expected: ordering,
                });
                continue;
            }
            let (name, text) = lookup_name_version(distro, p);
            let version = match PackageVersion::parse(ordering, &text) {
                Ok(v) => v,
                Err(source) => {
                    errors.push(ItemError::InvalidVersion { package: p.name.clone(), version: text, source });
                    continue;
                }
            };
            let exposed = !is_kernel_package(distro, p) || kernel_is_running(distro, p, os.kernel_release.as_deref());
            let list = candidates.entry(name).or_default();
            match list.iter_mut().find(|c| c.version.compare(&version) == Some(Ordering::Equal)) {
                Some(c) => {
                    c.binaries.push(p.name.clone());
                    c.exposed |= exposed;
                }
                None => list.push(Candidate { version_text: text, version, binaries: vec![p.name.clone()], exposed }),
            }
        }
        Some(PreparedNode { ecosystems, candidates, errors })
    }

    /// The `(ecosystem key, package name)` pairs whose advisories this node needs.
    pub fn lookups(&self) -> Vec<(String, String)> {
        let mut keys: Vec<&str> = self.ecosystems.iter().map(OsvEcosystem::key).collect();
        keys.dedup();
        let mut out: Vec<(String, String)> =
            keys.iter().flat_map(|k| self.candidates.keys().map(|n| ((*k).to_owned(), n.clone()))).collect();
        out.sort();
        out
    }

    pub fn ecosystem_keys(&self) -> Vec<String> {
        self.ecosystems.iter().map(|e| e.key().to_owned()).collect()
    }

    /// Matches the node against `advisories` (any superset of those for [`Self::lookups`]).
    pub fn assess<'a>(&self, advisories: impl IntoIterator<Item = &'a CompiledAdvisory>) -> NodeVulnReport {
        self.assess_with(&Verdicts::default(), advisories)
    }

    /// The `(ecosystem key, package name)` pairs of the candidates `verdicts` does not know:
    /// the advisories [`Self::assess_with`] needs besides what `verdicts` remembers.
    pub fn lookups_missing(&self, verdicts: &Verdicts) -> Vec<(String, String)> {
        let scope = self.scope();
        let missing: BTreeSet<&str> = self
            .candidates
            .iter()
            .filter(|(name, cands)| cands.iter().any(|c| !verdicts.knows(&scope, name, &c.version_text)))
            .map(|(name, _)| name.as_str())
            .collect();
        let mut keys: Vec<&str> = self.ecosystems.iter().map(OsvEcosystem::key).collect();
        keys.dedup();
        keys.iter().flat_map(|k| missing.iter().map(|n| ((*k).to_owned(), (*n).to_owned()))).collect()
    }

    /// Like [`Self::assess`], but the verdict on a package version `verdicts` already holds is
    /// taken from it, and each one matched here is added to it: `advisories` need only cover
    /// [`Self::lookups_missing`].
    pub fn assess_with<'a>(
        &self,
        verdicts: &Verdicts,
        advisories: impl IntoIterator<Item = &'a CompiledAdvisory>,
    ) -> NodeVulnReport {
        let scope = self.scope();
        let keys: Vec<&str> = self.ecosystems.iter().map(OsvEcosystem::key).collect();
        let missing = |name: &str, cand: &Candidate| !verdicts.knows(&scope, name, &cand.version_text);
        // (package, candidate index) -> matches, for the candidates without a verdict
        let mut matches: HashMap<(&str, usize), Vec<Match<'a>>> = HashMap::new();
        for adv in advisories {
            if adv.advisory.withdrawn.is_some() {
                continue;
            }
            let names: BTreeSet<&str> =
                adv.affected.iter().filter(|a| keys.contains(&a.ecosystem.key())).map(|a| a.package.as_str()).collect();
            for name in names {
                let Some((name, cands)) = self.candidates.get_key_value(name) else { continue };
                for (i, cand) in cands.iter().enumerate().filter(|(_, c)| missing(name, c)) {
                    if let Some(m) = match_advisory(adv, &keys, name, &cand.version) {
                        matches.entry((name.as_str(), i)).or_default().push(m);
                    }
                }
            }
        }
        for (name, cands) in &self.candidates {
            for (i, cand) in cands.iter().enumerate().filter(|(_, c)| missing(name, c)) {
                let list = matches.remove(&(name.as_str(), i)).unwrap_or_default();
                verdicts.insert(&scope, name, &cand.version_text, group_findings(name, &cand.version_text, list));
            }
        }
        let mut report = NodeVulnReport {
            assessable: true,
            ecosystems: self.ecosystem_keys(),
            errors: self.errors.clone(),
            ..NodeVulnReport::default()
        };
        for (name, cands) in &self.candidates {
            for cand in cands {
                let found = verdicts.get(&scope, name, &cand.version_text).unwrap_or_else(|| Arc::from([]));
                let list = if cand.exposed { &mut report.findings } else { &mut report.not_running_kernel_findings };
                list.extend(found.iter().map(|f| Finding { binaries: cand.binaries.clone(), ..f.clone() }));
            }
        }
        sort_findings(&mut report.findings);
        sort_findings(&mut report.not_running_kernel_findings);
        report
    }

    /// What a verdict depends on besides the package and version: the ecosystems matched.
    fn scope(&self) -> String {
        self.ecosystem_keys().join(",")
    }
}

/// Verdicts by `(ecosystems, package, version)`, shared by the nodes of one assessment run: a
/// fleet's nodes mostly hold the same versions, so each is matched against its advisories once
/// (the findings without `binaries`, which are each node's own). Safe to share across threads.
#[derive(Debug, Default)]
pub struct Verdicts {
    known: RwLock<VerdictMap>,
}

/// scope → package → version → findings; nested so a lookup needs no key built.
type VerdictMap = HashMap<String, HashMap<String, HashMap<String, Arc<[Finding]>>>>;

impl Verdicts {
    /// How many package versions have a verdict.
    pub fn len(&self) -> usize {
        self.read().values().flat_map(HashMap::values).map(HashMap::len).sum()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    fn read(&self) -> RwLockReadGuard<'_, VerdictMap> {
        // A panic while the lock was held left at worst a verdict out, never a wrong one.
        self.known.read().unwrap_or_else(PoisonError::into_inner)
    }

    fn knows(&self, scope: &str, name: &str, version: &str) -> bool {
        self.get(scope, name, version).is_some()
    }

    fn get(&self, scope: &str, name: &str, version: &str) -> Option<Arc<[Finding]>> {
        self.read().get(scope)?.get(name)?.get(version).cloned()
    }

    fn insert(&self, scope: &str, name: &str, version: &str, findings: Vec<Finding>) {
        let mut known = self.known.write().unwrap_or_else(PoisonError::into_inner);
        known
            .entry(scope.to_owned())
            .or_default()
            .entry(name.to_owned())
            .or_default()
            .insert(version.to_owned(), findings.into());
    }
}

/// Prepares and assesses in one call. A node whose OS is unknown is `assessable: false`.
pub fn assess_node<'a>(
    os: &OsFacts,
    packages: &[InstalledPackage],
    advisories: impl IntoIterator<Item = &'a CompiledAdvisory>,
) -> NodeVulnReport {
    match PreparedNode::new(os, packages) {
        Some(node) => node.assess(advisories),
        None => NodeVulnReport { assessable: false, ..NodeVulnReport::default() },
    }
}

fn sort_findings(list: &mut [Finding]) {
    list.sort_by(|a, b| {
        a.severity
            .cmp(&b.severity)
            .then(b.score.unwrap_or(-1.0).total_cmp(&a.score.unwrap_or(-1.0)))
            .then_with(|| a.package.cmp(&b.package))
            .then_with(|| a.installed_version.cmp(&b.installed_version))
            .then_with(|| a.advisory_id.cmp(&b.advisory_id))
    });
}

fn manager_ordering(manager: &str) -> Option<Ecosystem> {
    match manager {
        "dpkg" | "deb" | "apt" => Some(Ecosystem::Deb),
        "rpm" | "dnf" | "yum" => Some(Ecosystem::Rpm),
        "apk" => Some(Ecosystem::Apk),
        _ => None,
    }
}

fn non_empty(s: &Option<String>) -> Option<&str> {
    s.as_deref().map(str::trim).filter(|s| !s.is_empty())
}

/// The name and version the distribution's advisories use for `p`.
fn lookup_name_version(distro: Distro, p: &InstalledPackage) -> (String, String) {
    match distro {
        // Debian's signed kernel images come from `linux-signed-ARCH` at the `linux` version
        // with its last `-` made `+` (6.1.76-1 → 6.1.76+1); Debian's advisories name `linux`.
        Distro::Debian if non_empty(&p.source_name).is_some_and(|n| n.starts_with("linux-signed-")) => {
            let v = non_empty(&p.source_version).unwrap_or(&p.version);
            let v = match v.rsplit_once('+') {
                Some((upstream, rev)) => format!("{upstream}-{rev}"),
                None => v.to_owned(),
            };
            ("linux".to_owned(), v)
        }
        Distro::Debian | Distro::Ubuntu => match (non_empty(&p.source_name), non_empty(&p.source_version)) {
            (Some(n), Some(v)) => (n.to_owned(), v.to_owned()),
            // dpkg omits the version in `Source:` when it equals the binary's.
            (Some(n), None) => (n.to_owned(), p.version.clone()),
            _ => (p.name.clone(), p.version.clone()),
        },
        Distro::Alpine => (non_empty(&p.source_name).unwrap_or(&p.name).to_owned(), p.version.clone()),
        Distro::AlmaLinux | Distro::RockyLinux | Distro::RedHat => (p.name.clone(), rpm_version_with_epoch(p)),
    }
}

/// `EPOCH:VERSION-RELEASE` when inventory keeps the epoch apart; rpm prints `(none)` or
/// nothing for no epoch, which is epoch 0.
pub fn rpm_version_with_epoch(p: &InstalledPackage) -> String {
    let has_epoch =
        p.version.split_once(':').is_some_and(|(e, _)| !e.is_empty() && e.bytes().all(|b| b.is_ascii_digit()));
    match non_empty(&p.epoch) {
        Some(e) if !has_epoch && e != "(none)" && e.bytes().all(|b| b.is_ascii_digit()) => {
            format!("{e}:{}", p.version)
        }
        _ => p.version.clone(),
    }
}

/// rpm names that are not a kernel build (single-version tools and headers).
const RPM_KERNEL_NOT_IMAGE: [&str; 9] = [
    "kernel-headers",
    "kernel-tools",
    "kernel-tools-libs",
    "kernel-tools-libs-devel",
    "kernel-doc",
    "kernel-abi-stablelists",
    "kernel-abi-whitelists",
    "kernel-cross-headers",
    "kernel-srpm-macros",
];

/// The kernel ABI in a Debian/Ubuntu kernel binary package name: what follows the first `-`
/// that is followed by a digit, in a `linux-…` name (`linux-image-6.1.0-18-amd64` → `6.1.0-18-amd64`).
fn deb_kernel_abi(name: &str) -> Option<&str> {
    let rest = name.strip_prefix("linux-")?;
    let at = rest.char_indices().find(|&(i, c)| c == '-' && rest[i + 1..].starts_with(|d: char| d.is_ascii_digit()))?.0;
    let kind = &rest[..at];
    // Only the packages built per ABI (not linux-libc-dev, linux-firmware, linux-base).
    ["image", "image-unsigned", "modules", "modules-extra", "headers", "tools", "cloud-tools", "buildinfo"]
        .contains(&kind)
        .then(|| &rest[at + 1..])
}

/// Whether `p` is one kernel build among the possibly several installed.
pub fn is_kernel_package(distro: Distro, p: &InstalledPackage) -> bool {
    match distro.ordering() {
        Ecosystem::Rpm => {
            (p.name == "kernel" || p.name.starts_with("kernel-") || p.name.starts_with("kernel-uek"))
                && !RPM_KERNEL_NOT_IMAGE.contains(&p.name.as_str())
        }
        // Packages of one kernel ABI: linux-image-6.1.0-18-amd64, linux-modules-5.15.0-91-generic,
        // linux-headers-5.15.0-91; not the meta packages (linux-image-amd64) or linux-libc-dev.
        Ecosystem::Deb => deb_kernel_abi(&p.name).is_some(),
        // linux-lts, linux-virt, linux-edge, ...
        Ecosystem::Apk => {
            p.name.starts_with("linux-")
                && !matches!(p.name.as_str(), "linux-headers" | "linux-firmware")
                && !p.name.starts_with("linux-firmware-")
                && !p.name.starts_with("linux-pam")
                && !p.name.ends_with("-dev")
                && !p.name.ends_with("-doc")
        }
    }
}

/// Whether kernel package `p` is the running kernel (`true` when the running one is unknown).
pub fn kernel_is_running(distro: Distro, p: &InstalledPackage, running: Option<&str>) -> bool {
    let Some(running) = running.map(str::trim).filter(|r| !r.is_empty()) else { return true };
    match distro.ordering() {
        // uname -r = VERSION-RELEASE.ARCH (epoch never appears).
        Ecosystem::Rpm => {
            let vr = p.version.split_once(':').map_or(p.version.as_str(), |(_, v)| v);
            running == vr || running.strip_prefix(vr).is_some_and(|rest| rest.starts_with('.') || rest.starts_with('+'))
        }
        // The ABI is in the binary name: linux-image-6.1.0-18-amd64 runs as 6.1.0-18-amd64, and
        // linux-headers-5.15.0-91 belongs to 5.15.0-91-generic.
        Ecosystem::Deb => deb_kernel_abi(&p.name)
            .is_some_and(|abi| running == abi || running.strip_prefix(abi).is_some_and(|rest| rest.starts_with('-'))),
        // linux-lts 6.6.14-r0 runs as 6.6.14-0-lts.
        Ecosystem::Apk => {
            let flavor = p.name.strip_prefix("linux-").unwrap_or(&p.name);
            match p.version.rsplit_once("-r") {
                Some((ver, rel)) => running == format!("{ver}-{rel}-{flavor}"),
                None => running.starts_with(&p.version),
            }
        }
    }
}

/// One advisory's verdict on one candidate.
#[derive(Debug, Clone)]
struct Match<'a> {
    advisory: &'a CompiledAdvisory,
    entry: &'a CompiledAffected,
    fixed: Option<String>,
}

/// The advisory's verdict on `name` at `version` within the ecosystems `keys` (see "Pockets").
fn match_advisory<'a>(
    adv: &'a CompiledAdvisory,
    keys: &[&str],
    name: &str,
    version: &PackageVersion,
) -> Option<Match<'a>> {
    let mut hit: Option<Match<'a>> = None;
    for entry in adv.affected.iter().filter(|a| a.package == name && keys.contains(&a.ecosystem.key())) {
        match evaluate_affected(entry, version) {
            RangeVerdict::Fixed => return None,
            RangeVerdict::Affected { fixed } => {
                let better = match (&hit, &fixed) {
                    (None, _) => true,
                    // Prefer an entry that names a fix (the pocket that has one).
                    (Some(h), Some(_)) => h.fixed.is_none(),
                    _ => false,
                };
                if better {
                    hit = Some(Match { advisory: adv, entry, fixed });
                }
            }
            RangeVerdict::NotAffected => {}
        }
    }
    hit
}

/// A CVE id named by an OSV id: `CVE-…` itself, or a distribution's per-CVE record id.
pub fn cve_of(id: &str) -> Option<String> {
    if id.starts_with("CVE-") {
        return Some(id.to_owned());
    }
    ["UBUNTU-", "DEBIAN-", "ALPINE-"]
        .iter()
        .find_map(|p| id.strip_prefix(p))
        .filter(|rest| rest.starts_with("CVE-"))
        .map(str::to_owned)
}

/// Every CVE the advisory is about: from its id, `aliases`, `upstream` and `related`
/// (AlmaLinux and older Ubuntu records name their CVEs only in `related`).
pub fn cve_ids(adv: &crate::Advisory) -> BTreeSet<String> {
    std::iter::once(&adv.id)
        .chain(&adv.aliases)
        .chain(&adv.upstream)
        .chain(&adv.related)
        .filter_map(|id| cve_of(id))
        .collect()
}

/// Ids that identify the same vulnerability as the advisory (its own, its CVEs, its aliases
/// and upstream ids); `related` non-CVE ids are only related, not the same.
fn identity(adv: &crate::Advisory) -> BTreeSet<String> {
    let mut ids = cve_ids(adv);
    ids.insert(adv.id.clone());
    ids.extend(adv.aliases.iter().cloned());
    ids.extend(adv.upstream.iter().cloned());
    ids
}

/// Merges the matches of one candidate into findings (see "One CVE, one finding").
fn group_findings(name: &str, version: &str, mut list: Vec<Match<'_>>) -> Vec<Finding> {
    list.sort_by(|a, b| a.advisory.advisory.id.cmp(&b.advisory.advisory.id));
    list.dedup_by(|a, b| a.advisory.advisory.id == b.advisory.advisory.id);
    let ids: Vec<BTreeSet<String>> = list.iter().map(|m| identity(&m.advisory.advisory)).collect();
    // Union-find over shared ids; lists are small (the advisories of one package).
    let mut parent: Vec<usize> = (0..list.len()).collect();
    fn root(parent: &mut [usize], mut i: usize) -> usize {
        while parent[i] != i {
            parent[i] = parent[parent[i]];
            i = parent[i];
        }
        i
    }
    for i in 0..list.len() {
        for j in (i + 1)..list.len() {
            if !ids[i].is_disjoint(&ids[j]) {
                let (ri, rj) = (root(&mut parent, i), root(&mut parent, j));
                parent[rj] = ri;
            }
        }
    }
    let mut groups: HashMap<usize, Vec<usize>> = HashMap::new();
    for i in 0..list.len() {
        let r = root(&mut parent, i);
        groups.entry(r).or_default().push(i);
    }
    groups
        .into_values()
        .filter_map(|members| {
            let ms: Vec<&Match<'_>> = members.iter().filter_map(|&i| list.get(i)).collect();
            finding_of(name, version, &ms)
        })
        .collect()
}

fn is_cve_level(id: &str) -> bool {
    cve_of(id).is_some()
}

/// The finding without `binaries` (a node's own, filled in by the caller).
fn finding_of(name: &str, version: &str, members: &[&Match<'_>]) -> Option<Finding> {
    // The CVE-level record represents the group; then the smallest id, for stable output.
    let rep = members
        .iter()
        .min_by(|a, b| {
            let (x, y) = (&a.advisory.advisory.id, &b.advisory.advisory.id);
            is_cve_level(y).cmp(&is_cve_level(x)).then(x.cmp(y))
        })
        .copied()?;
    let mut aliases = BTreeSet::new();
    let mut score: Option<f64> = None;
    let mut severity = Severity::Informational;
    for m in members {
        let adv = &m.advisory.advisory;
        aliases.extend(cve_ids(adv));
        aliases.insert(adv.id.clone());
        let (s, level) = (m.entry.score, m.entry.level);
        if let Some(s) = s {
            score = Some(score.map_or(s, |b: f64| b.max(s)));
        }
        severity = severity.min(level);
    }
    aliases.remove(&rep.advisory.advisory.id);
    // Every member's fix is needed; one without a fix leaves the vulnerability unfixed.
    let fixed_version = if members.iter().all(|m| m.fixed.is_some()) {
        members
            .iter()
            .filter_map(|m| m.fixed.as_ref())
            .filter_map(|f| PackageVersion::parse(rep.entry.ecosystem.ordering(), f).ok().map(|v| (v, f)))
            .max_by(|a, b| a.0.compare(&b.0).unwrap_or(Ordering::Equal))
            .map(|(_, f)| f.clone())
    } else {
        None
    };
    let adv = &rep.advisory.advisory;
    let first_cve = aliases.iter().find(|a| a.starts_with("CVE-")).cloned().or_else(|| cve_of(&adv.id));
    Some(Finding {
        rule: RULE_CVE,
        advisory_id: adv.id.clone(),
        aliases: aliases.into_iter().collect(),
        package: name.to_owned(),
        installed_version: version.to_owned(),
        fixed_version,
        score,
        severity,
        title: title(adv, first_cve.as_deref(), name),
        binaries: Vec::new(),
    })
}

/// A one-line title: the summary, else the CVE (or id) and the first line of the details.
fn title(adv: &crate::Advisory, cve: Option<&str>, package: &str) -> String {
    const MAX: usize = 120;
    let head = cve.unwrap_or(&adv.id);
    let text = if !adv.summary.trim().is_empty() {
        adv.summary.trim().to_owned()
    } else {
        match adv.details.lines().map(str::trim).find(|l| !l.is_empty()) {
            Some(line) => format!("{head}: {line}"),
            None => format!("{head} in {package}"),
        }
    };
    if text.chars().count() > MAX {
        let cut: String = text.chars().take(MAX - 1).collect();
        format!("{}…", cut.trim_end())
    } else {
        text
    }
}

/// One advisory affecting a queried package version (`vulndb match`).
#[derive(Debug, Clone, PartialEq)]
pub struct AdvisoryMatch {
    pub advisory_id: String,
    pub aliases: Vec<String>,
    pub package: String,
    pub fixed_version: Option<String>,
    pub score: Option<f64>,
    pub severity: Severity,
    pub title: String,
}

/// Which of `advisories` affect `package` at `version` in `ecosystem` (the name as the
/// advisories use it), one row per advisory, most severe first.
pub fn match_version<'a>(
    ecosystem: &OsvEcosystem,
    package: &str,
    version: &str,
    advisories: impl IntoIterator<Item = &'a CompiledAdvisory>,
) -> Result<Vec<AdvisoryMatch>, VersionError> {
    let parsed = PackageVersion::parse(ecosystem.ordering(), version)?;
    let keys = [ecosystem.key()];
    let mut out = Vec::new();
    for adv in advisories {
        if adv.advisory.withdrawn.is_some() {
            continue;
        }
        if let Some(m) = match_advisory(adv, &keys, package, &parsed) {
            let a = &m.advisory.advisory;
            let mut aliases: BTreeSet<String> = cve_ids(a);
            aliases.extend(a.aliases.iter().cloned());
            aliases.extend(a.upstream.iter().cloned());
            aliases.remove(&a.id);
            let (score, severity) = (m.entry.score, m.entry.level);
            let cve = aliases.iter().find(|x| x.starts_with("CVE-")).cloned().or_else(|| cve_of(&a.id));
            out.push(AdvisoryMatch {
                advisory_id: a.id.clone(),
                aliases: aliases.into_iter().collect(),
                package: package.to_owned(),
                fixed_version: m.fixed,
                score,
                severity,
                title: title(a, cve.as_deref(), package),
            });
        }
    }
    out.sort_by(|a, b| a.severity.cmp(&b.severity).then_with(|| a.advisory_id.cmp(&b.advisory_id)));
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn pkg(name: &str, version: &str, source: Option<(&str, &str)>, manager: &str) -> InstalledPackage {
        InstalledPackage {
            name: name.into(),
            version: version.into(),
            source_name: source.map(|s| s.0.to_owned()),
            source_version: source.map(|s| s.1.to_owned()).filter(|v| !v.is_empty()),
            package_manager: manager.into(),
            ..InstalledPackage::default()
        }
    }

    #[test]
    fn deb_kernel_packages_and_the_running_one() {
        let running = Some("5.15.0-91-generic");
        for (name, kernel, is_running) in [
            ("linux-image-5.15.0-91-generic", true, true),
            ("linux-modules-5.15.0-91-generic", true, true),
            ("linux-modules-extra-5.15.0-91-generic", true, true),
            ("linux-headers-5.15.0-91", true, true),
            ("linux-headers-5.15.0-91-generic", true, true),
            ("linux-image-5.15.0-89-generic", true, false),
            ("linux-headers-5.15.0-89", true, false),
            ("linux-image-5.15.0-9-generic", true, false),
            ("linux-image-generic", false, true),
            ("linux-libc-dev", false, true),
            ("linux-firmware", false, true),
            ("linux-base", false, true),
            ("libc6", false, true),
        ] {
            let p = pkg(name, "1.0-1", None, "dpkg");
            assert_eq!(is_kernel_package(Distro::Ubuntu, &p), kernel, "{name}");
            if kernel {
                assert_eq!(kernel_is_running(Distro::Ubuntu, &p, running), is_running, "{name}");
            }
        }
    }

    #[test]
    fn rpm_and_apk_kernels() {
        let running = Some("5.14.0-362.8.1.el9_3.x86_64");
        let core = pkg("kernel-core", "5.14.0-362.8.1.el9_3", None, "rpm");
        let old = pkg("kernel-core", "5.14.0-284.11.1.el9_2", None, "rpm");
        assert!(is_kernel_package(Distro::AlmaLinux, &core));
        assert!(kernel_is_running(Distro::AlmaLinux, &core, running));
        assert!(!kernel_is_running(Distro::AlmaLinux, &old, running));
        assert!(!is_kernel_package(Distro::AlmaLinux, &pkg("kernel-headers", "5.14.0-1", None, "rpm")));
        assert!(!is_kernel_package(Distro::AlmaLinux, &pkg("kernelshark", "1-1", None, "rpm")));
        let lts = pkg("linux-lts", "6.6.14-r0", Some(("linux-lts", "")), "apk");
        assert!(is_kernel_package(Distro::Alpine, &lts));
        assert!(kernel_is_running(Distro::Alpine, &lts, Some("6.6.14-0-lts")));
        assert!(!kernel_is_running(Distro::Alpine, &lts, Some("6.6.13-0-lts")), "upgraded, not rebooted");
        assert!(!is_kernel_package(Distro::Alpine, &pkg("linux-firmware-intel", "1-r0", None, "apk")));
    }

    #[test]
    fn names_and_versions_advisories_use() {
        let signed = pkg("linux-image-6.1.0-18-amd64", "6.1.76-1", Some(("linux-signed-amd64", "6.1.76+1")), "dpkg");
        assert_eq!(lookup_name_version(Distro::Debian, &signed), ("linux".into(), "6.1.76-1".into()));
        let ssh = pkg("openssh-server", "1:9.2p1-2+deb12u2", Some(("openssh", "")), "dpkg");
        assert_eq!(lookup_name_version(Distro::Debian, &ssh), ("openssh".into(), "1:9.2p1-2+deb12u2".into()));
        let binnmu = pkg("libfoo1", "1.0-1+b1", Some(("foo", "1.0-1")), "dpkg");
        assert_eq!(lookup_name_version(Distro::Ubuntu, &binnmu), ("foo".into(), "1.0-1".into()));
        let musl = pkg("musl-utils", "1.2.4-r2", Some(("musl", "")), "apk");
        assert_eq!(lookup_name_version(Distro::Alpine, &musl), ("musl".into(), "1.2.4-r2".into()));
        let mut ssl = pkg("openssl-libs", "3.0.7-24.el9", None, "rpm");
        ssl.epoch = Some("1".into());
        assert_eq!(lookup_name_version(Distro::AlmaLinux, &ssl), ("openssl-libs".into(), "1:3.0.7-24.el9".into()));
        ssl.epoch = Some("(none)".into());
        assert_eq!(rpm_version_with_epoch(&ssl), "3.0.7-24.el9");
        ssl.version = "2:3.0.7-24.el9".into();
        ssl.epoch = Some("1".into());
        assert_eq!(rpm_version_with_epoch(&ssl), "2:3.0.7-24.el9", "the version's own epoch wins");
    }

    #[test]
    fn cve_ids_from_every_field() {
        assert_eq!(cve_of("UBUNTU-CVE-2024-6387").as_deref(), Some("CVE-2024-6387"));
        assert_eq!(cve_of("DEBIAN-CVE-2022-1292").as_deref(), Some("CVE-2022-1292"));
        assert_eq!(cve_of("ALPINE-CVE-2025-26519").as_deref(), Some("CVE-2025-26519"));
        assert_eq!(cve_of("USN-6859-1"), None);
        assert_eq!(cve_of("DSA-3029-1"), None);
    }
}
