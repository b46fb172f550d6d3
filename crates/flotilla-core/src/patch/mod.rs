//! Patch Manager's rules (ssm-inspector-spec §7): OS families, baselines and their validation
//! (`baseline`), which patches a baseline approves and each package's patch state
//! (`evaluate`), and a node's patch compliance. The agent evaluates with these rules on the
//! node (it knows the repositories); the server validates baselines with them. Pure.

mod baseline;
mod evaluate;
#[cfg(test)]
mod tests;

pub use baseline::{
    Approval, Baseline, BaselineError, Filter, FilterKey, MAX_FILTERS, MAX_LIST, MAX_RULES, PackagePattern,
    RejectedAction, Rule, normalize_severity, predefined,
};
pub use evaluate::{Candidate, Evaluation, Memory, PatchRow, Summary, evaluate};

use std::fmt;
use std::str::FromStr;

/// The OS families Patch Manager knows; a baseline is for exactly one.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum OsFamily {
    Debian,
    Ubuntu,
    /// The RHEL family: RHEL, Rocky, Alma, CentOS, Oracle Linux, Amazon Linux (dnf/yum).
    Rhel,
    Alpine,
}

impl OsFamily {
    pub const ALL: [OsFamily; 4] = [OsFamily::Debian, OsFamily::Ubuntu, OsFamily::Rhel, OsFamily::Alpine];

    pub fn as_str(self) -> &'static str {
        match self {
            OsFamily::Debian => "debian",
            OsFamily::Ubuntu => "ubuntu",
            OsFamily::Rhel => "rhel",
            OsFamily::Alpine => "alpine",
        }
    }

    /// The family of a node from its os-release `ID` (and `ID_LIKE` as a fallback).
    pub fn of_os(id: &str, id_like: &str) -> Option<OsFamily> {
        let one = |id: &str| match id.trim().trim_matches('"').to_ascii_lowercase().as_str() {
            "debian" | "raspbian" => Some(OsFamily::Debian),
            "ubuntu" => Some(OsFamily::Ubuntu),
            "rhel" | "rocky" | "almalinux" | "centos" | "ol" | "amzn" | "fedora" => Some(OsFamily::Rhel),
            "alpine" => Some(OsFamily::Alpine),
            _ => None,
        };
        one(id).or_else(|| id_like.split_whitespace().find_map(one))
    }

    /// Whether the family's package manager is dpkg/apt (sections and priorities, no dates).
    pub fn is_apt(self) -> bool {
        matches!(self, OsFamily::Debian | OsFamily::Ubuntu)
    }
}

impl fmt::Display for OsFamily {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl FromStr for OsFamily {
    type Err = NameError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let lower = s.to_ascii_lowercase();
        let alias = match lower.as_str() {
            "rocky" | "redhat" | "redhat_enterprise_linux" | "rocky_linux" | "alma_linux" | "centos" => "rhel",
            other => other,
        };
        OsFamily::ALL
            .into_iter()
            .find(|f| f.as_str() == alias)
            .ok_or_else(|| NameError::new("OS family", s, &Self::ALL))
    }
}

/// A patch's state on a node (AWS's `PatchComplianceDataState`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum PatchState {
    Installed,
    InstalledOther,
    InstalledPendingReboot,
    InstalledRejected,
    Missing,
    Failed,
    NotApplicable,
}

impl PatchState {
    pub const ALL: [PatchState; 7] = [
        PatchState::Installed,
        PatchState::InstalledOther,
        PatchState::InstalledPendingReboot,
        PatchState::InstalledRejected,
        PatchState::Missing,
        PatchState::Failed,
        PatchState::NotApplicable,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            PatchState::Installed => "INSTALLED",
            PatchState::InstalledOther => "INSTALLED_OTHER",
            PatchState::InstalledPendingReboot => "INSTALLED_PENDING_REBOOT",
            PatchState::InstalledRejected => "INSTALLED_REJECTED",
            PatchState::Missing => "MISSING",
            PatchState::Failed => "FAILED",
            PatchState::NotApplicable => "NOT_APPLICABLE",
        }
    }

    /// Whether a patch in this state makes the node non-compliant (§7.7).
    pub fn is_non_compliant(self) -> bool {
        matches!(
            self,
            PatchState::InstalledPendingReboot
                | PatchState::InstalledRejected
                | PatchState::Missing
                | PatchState::Failed
        )
    }
}

impl fmt::Display for PatchState {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl FromStr for PatchState {
    type Err = NameError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        PatchState::ALL
            .into_iter()
            .find(|v| v.as_str().eq_ignore_ascii_case(s))
            .ok_or_else(|| NameError::new("patch state", s, &Self::ALL))
    }
}

/// `Flotilla-RunPatchBaseline`'s `Operation`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Operation {
    /// Reports compliance; never installs or reboots.
    Scan,
    /// Installs approved missing patches, then reboots as `RebootOption` says.
    Install,
}

impl Operation {
    pub const ALL: [Operation; 2] = [Operation::Scan, Operation::Install];

    pub fn as_str(self) -> &'static str {
        match self {
            Operation::Scan => "Scan",
            Operation::Install => "Install",
        }
    }
}

impl fmt::Display for Operation {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl FromStr for Operation {
    type Err = NameError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Operation::ALL
            .into_iter()
            .find(|v| v.as_str().eq_ignore_ascii_case(s))
            .ok_or_else(|| NameError::new("Operation", s, &Self::ALL))
    }
}

/// `Flotilla-RunPatchBaseline`'s `RebootOption`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RebootOption {
    /// Reboot after an Install when the node says it needs one (a pending-reboot marker or a
    /// newer kernel than the running one).
    RebootIfNeeded,
    NoReboot,
}

impl RebootOption {
    pub const ALL: [RebootOption; 2] = [RebootOption::RebootIfNeeded, RebootOption::NoReboot];

    pub fn as_str(self) -> &'static str {
        match self {
            RebootOption::RebootIfNeeded => "RebootIfNeeded",
            RebootOption::NoReboot => "NoReboot",
        }
    }
}

impl fmt::Display for RebootOption {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl FromStr for RebootOption {
    type Err = NameError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        RebootOption::ALL
            .into_iter()
            .find(|v| v.as_str().eq_ignore_ascii_case(s))
            .ok_or_else(|| NameError::new("RebootOption", s, &Self::ALL))
    }
}

/// A value that is not one of a closed set's names.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("`{value}` is not a valid {what}: use one of {known}")]
pub struct NameError {
    pub what: &'static str,
    pub value: String,
    pub known: String,
}

impl NameError {
    fn new<T: fmt::Display>(what: &'static str, value: &str, all: &[T]) -> NameError {
        NameError {
            what,
            value: value.to_owned(),
            known: all.iter().map(ToString::to_string).collect::<Vec<_>>().join(", "),
        }
    }
}

/// The "patch now" rate control of §7.6 for `nodes` nodes: (max concurrency, max errors).
/// Scan runs on up to 1,000 nodes at once and continues until 1,000 errors.
pub fn patch_now_rate(operation: Operation, nodes: usize) -> (String, String) {
    match operation {
        Operation::Scan => ("1000".into(), "1000".into()),
        Operation::Install => match nodes {
            0..=24 => ("1".into(), "1".into()),
            25..=100 => ("5%".into(), "5".into()),
            101..=1000 => ("8%".into(), "10".into()),
            _ => ("10%".into(), "10".into()),
        },
    }
}

/// The inputs of a `patch:baseline` step (`Flotilla-RunPatchBaseline`'s only step).
pub const STEP_INPUTS: &[&str] = &["operation", "rebootOption", "installOverrideList"];

/// A `patch:baseline` step's inputs, checked.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StepInputs {
    pub operation: Operation,
    pub reboot: RebootOption,
    /// Installed on Install in addition to what the baseline approves (never what it
    /// rejects); Scan ignores it, as compliance is always against the baseline.
    pub install_override: Vec<PackagePattern>,
}

impl StepInputs {
    /// Checks the inputs; a value for which `skip` is true (it holds a reference resolved
    /// later) is not checked yet, and then `Ok(None)`.
    pub fn parse(
        inputs: &std::collections::BTreeMap<String, String>,
        skip: &dyn Fn(&str) -> bool,
    ) -> Result<Option<StepInputs>, String> {
        if let Some(unknown) = inputs.keys().find(|k| !STEP_INPUTS.contains(&k.as_str())) {
            return Err(format!("unknown input `{unknown}`; patch:baseline takes {}", STEP_INPUTS.join(", ")));
        }
        let operation = inputs.get("operation").ok_or("the input `operation` (Scan or Install) is required")?;
        let reboot = inputs.get("rebootOption").map(String::as_str).unwrap_or("RebootIfNeeded");
        let list = inputs.get("installOverrideList").map(String::as_str).unwrap_or("");
        if [operation.as_str(), reboot, list].into_iter().any(skip) {
            return Ok(None);
        }
        let operation = operation.parse().map_err(|e: NameError| format!("operation: {e}"))?;
        let reboot = reboot.parse().map_err(|e: NameError| format!("rebootOption: {e}"))?;
        let install_override = list
            .split([',', '\n'])
            .map(str::trim)
            .filter(|s| !s.is_empty())
            .enumerate()
            .map(|(i, p)| {
                PackagePattern::parse(&format!("installOverrideList[{i}]"), p, true).map_err(|e| e.to_string())
            })
            .collect::<Result<Vec<_>, _>>()?;
        Ok(Some(StepInputs { operation, reboot, install_override }))
    }
}

/// The step action that runs a patch operation on the agent.
pub const ACTION: &str = "patch:baseline";
