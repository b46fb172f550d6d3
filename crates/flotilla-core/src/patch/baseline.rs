//! Patch baselines (§7.1–7.3): approval rules of filters, approved and rejected lists, the
//! rejected-patch action, and the predefined baselines. Everything an operator writes is
//! checked here, with the path of what is wrong (`approval_rules[1].filters[0].values[2]`).

use std::fmt;
use std::str::FromStr;

use crate::compliance::ComplianceSeverity;

use super::OsFamily;

/// AWS's limits: rules per baseline, filters per group, entries per list.
pub const MAX_RULES: usize = 10;
pub const MAX_FILTERS: usize = 4;
pub const MAX_LIST: usize = 50;
const MAX_APPROVE_AFTER_DAYS: i64 = 360;

/// A baseline that failed validation: where, and what is wrong.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{path}: {message}")]
pub struct BaselineError {
    pub path: String,
    pub message: String,
}

impl BaselineError {
    pub fn new(path: impl Into<String>, message: impl Into<String>) -> BaselineError {
        BaselineError { path: path.into(), message: message.into() }
    }
}

/// What a filter looks at. Which keys a family offers is what its repositories describe.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum FilterKey {
    /// Debian priority: required, important, standard, optional, extra.
    Priority,
    /// Debian section (`libs`, `admin`, `universe/net`).
    Section,
    /// Security, Bugfix, Enhancement, Newpackage, Other: from the update notice, a
    /// `-security` suite, or a fixed CVE in the advisory database (which makes it Security).
    Classification,
    /// The vendor's severity, or the worst severity of the CVEs the update fixes.
    Severity,
    /// The package name (a single `*` wildcard allowed).
    Name,
    /// The repository the update comes from (apt `origin/suite`, dnf repo id, apk URL).
    Repository,
}

impl FilterKey {
    pub const ALL: [FilterKey; 6] = [
        FilterKey::Priority,
        FilterKey::Section,
        FilterKey::Classification,
        FilterKey::Severity,
        FilterKey::Name,
        FilterKey::Repository,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            FilterKey::Priority => "PRIORITY",
            FilterKey::Section => "SECTION",
            FilterKey::Classification => "CLASSIFICATION",
            FilterKey::Severity => "SEVERITY",
            FilterKey::Name => "NAME",
            FilterKey::Repository => "REPOSITORY",
        }
    }

    /// The keys a family's baselines may filter on.
    pub fn for_family(family: OsFamily) -> &'static [FilterKey] {
        if family.is_apt() {
            &FilterKey::ALL
        } else {
            &[FilterKey::Classification, FilterKey::Severity, FilterKey::Name, FilterKey::Repository]
        }
    }
}

impl fmt::Display for FilterKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

const PRIORITIES: &[&str] = &["required", "important", "standard", "optional", "extra"];
pub(super) const CLASSIFICATIONS: &[&str] = &["Security", "Bugfix", "Enhancement", "Newpackage", "Other"];

/// A severity as written in a filter or an update notice, on the compliance scale:
/// Red Hat's Important and Moderate are High and Medium; `None` means no severity is known.
pub fn normalize_severity(text: &str) -> Option<ComplianceSeverity> {
    Some(match text.trim().to_ascii_lowercase().as_str() {
        "critical" => ComplianceSeverity::Critical,
        "important" | "high" => ComplianceSeverity::High,
        "moderate" | "medium" => ComplianceSeverity::Medium,
        "low" => ComplianceSeverity::Low,
        "informational" | "negligible" => ComplianceSeverity::Informational,
        "none" | "unspecified" | "unknown" => ComplianceSeverity::Unspecified,
        _ => return None,
    })
}

/// One filter: the key and the values any of which matches (`*` matches everything).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Filter {
    pub key: FilterKey,
    /// Canonical spellings: priorities lower case, classifications as in `CLASSIFICATIONS`,
    /// severities as compliance severity names.
    pub values: Vec<String>,
}

impl Filter {
    /// Checks a filter of a `family` baseline; `path` names it in errors.
    pub fn parse(family: OsFamily, path: &str, key: &str, values: &[String]) -> Result<Filter, BaselineError> {
        let allowed = FilterKey::for_family(family);
        let names = || allowed.iter().map(|k| k.as_str()).collect::<Vec<_>>().join(", ");
        let key = match FilterKey::ALL.into_iter().find(|k| k.as_str().eq_ignore_ascii_case(key.trim())) {
            Some(k) if allowed.contains(&k) => k,
            Some(k) => {
                return Err(BaselineError::new(
                    format!("{path}.key"),
                    format!(
                        "{k} is not a filter key for {family} baselines (its repositories do not describe it); use one of {}",
                        names()
                    ),
                ));
            }
            None => {
                return Err(BaselineError::new(
                    format!("{path}.key"),
                    format!("unknown filter key `{key}`; {family} baselines filter on {}", names()),
                ));
            }
        };
        if values.is_empty() {
            return Err(BaselineError::new(
                format!("{path}.values"),
                "a filter needs at least one value (`*` for any)",
            ));
        }
        let mut canonical = Vec::with_capacity(values.len());
        for (i, value) in values.iter().enumerate() {
            let at = || format!("{path}.values[{i}]");
            let value = value.trim();
            if value == "*" {
                canonical.push("*".to_owned());
                continue;
            }
            let known = |set: &[&str]| set.iter().find(|v| v.eq_ignore_ascii_case(value)).map(|v| (*v).to_owned());
            let checked = match key {
                FilterKey::Priority => known(PRIORITIES)
                    .ok_or_else(|| format!("`{value}` is not a Debian priority; use one of {}", PRIORITIES.join(", "))),
                FilterKey::Classification => known(CLASSIFICATIONS)
                    .ok_or_else(|| format!("`{value}` is not a classification; use one of {}", CLASSIFICATIONS.join(", "))),
                FilterKey::Severity => normalize_severity(value).map(|s| s.as_str().to_owned()).ok_or_else(|| {
                    format!("`{value}` is not a severity; use one of Critical, Important (High), Moderate (Medium), Low, Informational, None")
                }),
                FilterKey::Section | FilterKey::Name | FilterKey::Repository => {
                    check_glob(value).map(|()| value.to_owned())
                }
            };
            canonical.push(checked.map_err(|m| BaselineError::new(at(), m))?);
        }
        Ok(Filter { key, values: canonical })
    }

    /// Whether `value` (the candidate's, `None` when unknown) passes the filter.
    pub(super) fn accepts(&self, value: Option<&str>) -> bool {
        self.values.iter().any(|v| {
            v == "*"
                || value.is_some_and(|value| match self.key {
                    FilterKey::Name | FilterKey::Section | FilterKey::Repository => glob_matches(v, value),
                    _ => v.eq_ignore_ascii_case(value),
                })
        })
    }
}

/// A text with at most one `*` and no whitespace or control characters.
fn check_glob(value: &str) -> Result<(), String> {
    if value.is_empty() {
        return Err("an empty value matches nothing".into());
    }
    if value.chars().any(|c| c.is_whitespace() || c.is_control()) {
        return Err(format!("`{value}` holds whitespace"));
    }
    if value.matches('*').count() > 1 {
        return Err(format!("`{value}` has more than one `*`; a single wildcard is allowed"));
    }
    Ok(())
}

/// `pattern` with at most one `*` against `text`, case-sensitively (package names are).
pub(super) fn glob_matches(pattern: &str, text: &str) -> bool {
    match pattern.split_once('*') {
        None => pattern == text,
        Some((prefix, suffix)) => {
            text.len() >= prefix.len() + suffix.len() && text.starts_with(prefix) && text.ends_with(suffix)
        }
    }
}

/// How an approval rule waits before approving a patch.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Approval {
    /// Approved this many days (0–360) after the package's publication in its repository.
    /// A repository that gives no date (apt) approves at once, as AWS does.
    AfterDays(u16),
    /// Approved when published on or before this day (days since 1970-01-01, UTC).
    UntilDate { day: i64, text: String },
}

impl Approval {
    pub fn parse(path: &str, after_days: Option<i64>, until_date: Option<&str>) -> Result<Approval, BaselineError> {
        match (after_days, until_date) {
            (Some(_), Some(_)) => {
                Err(BaselineError::new(path, "give approve_after_days or approve_until_date, not both"))
            }
            (None, None) => Err(BaselineError::new(
                path,
                "a rule needs approve_after_days (0–360) or approve_until_date (YYYY-MM-DD)",
            )),
            (Some(days), None) => match u16::try_from(days) {
                Ok(d) if i64::from(d) <= MAX_APPROVE_AFTER_DAYS => Ok(Approval::AfterDays(d)),
                _ => Err(BaselineError::new(
                    format!("{path}.approve_after_days"),
                    format!("{days} is out of range: approve_after_days is 0–360"),
                )),
            },
            (None, Some(text)) => {
                let day = parse_day(text).ok_or_else(|| {
                    BaselineError::new(
                        format!("{path}.approve_until_date"),
                        format!("`{text}` is not a date; write it YYYY-MM-DD"),
                    )
                })?;
                Ok(Approval::UntilDate { day, text: text.to_owned() })
            }
        }
    }

    /// Whether a patch published on `published` (unknown: `None`) is approved on `today`.
    pub(super) fn approves(&self, published: Option<i64>, today: i64) -> bool {
        match (self, published) {
            (_, None) => true,
            (Approval::AfterDays(d), Some(p)) => p + i64::from(*d) <= today,
            (Approval::UntilDate { day, .. }, Some(p)) => p <= *day,
        }
    }
}

/// Days since 1970-01-01 of a `YYYY-MM-DD` date.
fn parse_day(text: &str) -> Option<i64> {
    if text.len() != 10 {
        return None;
    }
    let date: jiff::civil::Date = text.parse().ok()?;
    let epoch = jiff::civil::date(1970, 1, 1);
    Some(i64::from(epoch.until(date).ok()?.get_days()))
}

/// An approval rule.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Rule {
    pub filters: Vec<Filter>,
    pub approval: Approval,
    /// The threshold for patches this rule approves: one MISSING (or FAILED, pending reboot)
    /// at or above it makes the node NON_COMPLIANT. UNSPECIFIED: every one does.
    pub compliance_level: ComplianceSeverity,
    /// Whether non-security updates are approved too (Linux; default false).
    pub enable_non_security: bool,
}

/// What happens to a rejected patch (§7.1).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum RejectedAction {
    /// May be installed as a dependency; installed, it reports INSTALLED_OTHER.
    #[default]
    AllowAsDependency,
    /// Never installed, even as a dependency; installed already, it reports INSTALLED_REJECTED.
    Block,
}

impl RejectedAction {
    pub const ALL: [RejectedAction; 2] = [RejectedAction::AllowAsDependency, RejectedAction::Block];

    pub fn as_str(self) -> &'static str {
        match self {
            RejectedAction::AllowAsDependency => "ALLOW_AS_DEPENDENCY",
            RejectedAction::Block => "BLOCK",
        }
    }
}

impl fmt::Display for RejectedAction {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl FromStr for RejectedAction {
    type Err = super::NameError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        RejectedAction::ALL.into_iter().find(|v| v.as_str().eq_ignore_ascii_case(s)).ok_or_else(|| super::NameError {
            what: "rejected patches action",
            value: s.to_owned(),
            known: "ALLOW_AS_DEPENDENCY, BLOCK".into(),
        })
    }
}

/// An entry of the approved or rejected list (§7.2): a package name, a name with one `*`,
/// `name=version`, or (approved only) a CVE or advisory id the update fixes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum PackagePattern {
    Name(String),
    NameVersion { name: String, version: String },
    Cve(String),
    Advisory(String),
}

impl PackagePattern {
    pub fn parse(path: &str, text: &str, rejected: bool) -> Result<PackagePattern, BaselineError> {
        let text = text.trim();
        let err = |m: String| BaselineError::new(path, m);
        if let Some(id) = text.strip_prefix("CVE-") {
            if rejected {
                return Err(err(format!(
                    "`{text}`: the rejected list takes package names (`name`, `name*`, `name=version`), not CVE ids"
                )));
            }
            let ok = id.split_once('-').is_some_and(|(y, n)| {
                y.len() == 4
                    && y.bytes().all(|b| b.is_ascii_digit())
                    && n.len() >= 4
                    && n.bytes().all(|b| b.is_ascii_digit())
            });
            return if ok {
                Ok(PackagePattern::Cve(text.to_owned()))
            } else {
                Err(err(format!("`{text}` is not a CVE id (CVE-YYYY-NNNN)")))
            };
        }
        if is_advisory_id(text) {
            if rejected {
                return Err(err(format!("`{text}`: the rejected list takes package names, not advisory ids")));
            }
            return Ok(PackagePattern::Advisory(text.to_owned()));
        }
        let (name, version) = match text.split_once('=') {
            Some((n, v)) => (n, Some(v)),
            None => (text, None),
        };
        let name_ok = !name.is_empty()
            && name.matches('*').count() <= 1
            && name.chars().all(|c| c.is_ascii_alphanumeric() || "+-._*".contains(c))
            && !name.starts_with('-');
        if !name_ok {
            return Err(err(format!(
                "`{text}` is not a package pattern: write a package name, a name with a single `*` (`libssl*`) or `name=version`"
            )));
        }
        match version {
            None => Ok(PackagePattern::Name(name.to_owned())),
            Some(v) if name.contains('*') => {
                Err(err(format!("`{text}`: `name=version` takes an exact name, without `*`; v={v}")))
            }
            Some(v) if !v.is_empty() && v.chars().all(|c| c.is_ascii_alphanumeric() || "+-.~:_".contains(c)) => {
                Ok(PackagePattern::NameVersion { name: name.to_owned(), version: v.to_owned() })
            }
            Some(_) => Err(err(format!("`{text}`: the version after `=` is empty or holds characters no version has"))),
        }
    }

    /// Whether the pattern names this package at this version (`cves`/`advisories`: what
    /// the version fixes).
    pub fn matches(&self, name: &str, version: &str, cves: &[String], advisories: &[String]) -> bool {
        match self {
            PackagePattern::Name(p) => glob_matches(p, name),
            PackagePattern::NameVersion { name: n, version: v } => n == name && v == version,
            PackagePattern::Cve(c) => cves.iter().any(|x| x == c),
            PackagePattern::Advisory(a) => advisories.iter().any(|x| x == a),
        }
    }

    /// The package-name part (for blocking), if the pattern is one.
    pub fn package_name(&self) -> Option<&str> {
        match self {
            PackagePattern::Name(n) | PackagePattern::NameVersion { name: n, .. } => Some(n),
            _ => None,
        }
    }
}

impl fmt::Display for PackagePattern {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            PackagePattern::Name(n) | PackagePattern::Cve(n) | PackagePattern::Advisory(n) => f.write_str(n),
            PackagePattern::NameVersion { name, version } => write!(f, "{name}={version}"),
        }
    }
}

/// `RHSA-2023:1234`, `RLSA-2024:0001`, `ALAS-2018-123`, `DSA-5678-1`, `USN-6543-1`.
fn is_advisory_id(text: &str) -> bool {
    let Some((prefix, rest)) = text.split_once('-') else { return false };
    (2..=5).contains(&prefix.len())
        && prefix.bytes().all(|b| b.is_ascii_uppercase())
        && rest.bytes().next().is_some_and(|b| b.is_ascii_digit())
        && rest.bytes().all(|b| b.is_ascii_digit() || b == b':' || b == b'-')
}

/// A patch baseline.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Baseline {
    pub name: String,
    pub os: OsFamily,
    pub description: String,
    /// Filters every approved patch must also pass.
    pub global_filters: Vec<Filter>,
    pub rules: Vec<Rule>,
    pub approved: Vec<PackagePattern>,
    pub approved_compliance_level: ComplianceSeverity,
    pub approved_enable_non_security: bool,
    pub rejected: Vec<PackagePattern>,
    pub rejected_action: RejectedAction,
}

impl Baseline {
    /// The name rule (3–128 of `[A-Za-z0-9_.-]`) and AWS's size limits.
    pub fn check(&self) -> Result<(), BaselineError> {
        let n = &self.name;
        if !(3..=128).contains(&n.len()) || !n.bytes().all(|b| b.is_ascii_alphanumeric() || b"_.-".contains(&b)) {
            return Err(BaselineError::new(
                "name",
                format!("`{n}`: a baseline name is 3–128 letters, digits, `_`, `.` or `-`"),
            ));
        }
        if self.rules.len() > MAX_RULES {
            return Err(BaselineError::new(
                "approval_rules",
                format!("{} rules; a baseline has at most {MAX_RULES}", self.rules.len()),
            ));
        }
        if self.global_filters.len() > MAX_FILTERS {
            return Err(BaselineError::new("global_filters", format!("at most {MAX_FILTERS} filters")));
        }
        for (i, r) in self.rules.iter().enumerate() {
            if r.filters.len() > MAX_FILTERS {
                return Err(BaselineError::new(
                    format!("approval_rules[{i}].filters"),
                    format!("at most {MAX_FILTERS} filters"),
                ));
            }
        }
        for (field, list) in [("approved_patches", &self.approved), ("rejected_patches", &self.rejected)] {
            if list.len() > MAX_LIST {
                return Err(BaselineError::new(field, format!("{} entries; at most {MAX_LIST}", list.len())));
            }
        }
        Ok(())
    }

    /// Whether the baseline can approve anything at all (rules or an approved list).
    pub fn approves_anything(&self) -> bool {
        !self.rules.is_empty() || !self.approved.is_empty()
    }
}

/// The predefined default baseline of a family (§7.3), read-only, named `Flotilla-…`.
pub fn predefined(family: OsFamily) -> Baseline {
    let filter = |key, values: &[&str]| Filter { key, values: values.iter().map(|v| (*v).to_owned()).collect() };
    let (name, description, rules) = match family {
        OsFamily::Debian | OsFamily::Ubuntu => (
            if family == OsFamily::Debian {
                "Flotilla-DebianDefaultPatchBaseline"
            } else {
                "Flotilla-UbuntuDefaultPatchBaseline"
            },
            "Security updates of every priority, approved at once (apt repositories give no reliable dates).",
            vec![Rule {
                filters: vec![filter(FilterKey::Priority, PRIORITIES)],
                approval: Approval::AfterDays(0),
                compliance_level: ComplianceSeverity::Unspecified,
                enable_non_security: false,
            }],
        ),
        OsFamily::Rhel => (
            "Flotilla-RhelDefaultPatchBaseline",
            "Security updates of Critical or Important severity, and bug fixes, approved 7 days after release.",
            vec![
                Rule {
                    filters: vec![
                        filter(FilterKey::Classification, &["Security"]),
                        filter(FilterKey::Severity, &["CRITICAL", "HIGH"]),
                    ],
                    approval: Approval::AfterDays(7),
                    compliance_level: ComplianceSeverity::Unspecified,
                    enable_non_security: false,
                },
                Rule {
                    filters: vec![filter(FilterKey::Classification, &["Bugfix"])],
                    approval: Approval::AfterDays(7),
                    compliance_level: ComplianceSeverity::Unspecified,
                    enable_non_security: true,
                },
            ],
        ),
        OsFamily::Alpine => (
            "Flotilla-AlpineDefaultPatchBaseline",
            "Updates that fix a known CVE, approved at once (APKINDEX gives build times, not advisories).",
            vec![Rule {
                filters: vec![filter(FilterKey::Classification, &["Security"])],
                approval: Approval::AfterDays(0),
                compliance_level: ComplianceSeverity::Unspecified,
                enable_non_security: false,
            }],
        ),
    };
    Baseline {
        name: name.to_owned(),
        os: family,
        description: description.to_owned(),
        global_filters: Vec::new(),
        rules,
        approved: Vec::new(),
        approved_compliance_level: ComplianceSeverity::Unspecified,
        approved_enable_non_security: false,
        rejected: Vec::new(),
        rejected_action: RejectedAction::AllowAsDependency,
    }
}
