//! Compliance: per node, items of a type (Association, Patch, Vulnerability), each COMPLIANT or
//! NON_COMPLIANT with a severity (ssm-inspector-spec §9). The names are the stored and reported
//! strings, spelled as AWS spells them. Pure.

use std::fmt;
use std::str::FromStr;

/// What kind of check produced a compliance item.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum ComplianceType {
    /// A State Manager association's last run on the node.
    Association,
    /// The node's patch state against its baseline.
    Patch,
    /// The node's latest vulnerability assessment.
    Vulnerability,
}

impl ComplianceType {
    pub const ALL: [ComplianceType; 3] =
        [ComplianceType::Association, ComplianceType::Patch, ComplianceType::Vulnerability];

    pub fn as_str(self) -> &'static str {
        match self {
            ComplianceType::Association => "Association",
            ComplianceType::Patch => "Patch",
            ComplianceType::Vulnerability => "Vulnerability",
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum ComplianceStatus {
    Compliant,
    NonCompliant,
}

impl ComplianceStatus {
    pub const ALL: [ComplianceStatus; 2] = [ComplianceStatus::Compliant, ComplianceStatus::NonCompliant];

    pub fn as_str(self) -> &'static str {
        match self {
            ComplianceStatus::Compliant => "COMPLIANT",
            ComplianceStatus::NonCompliant => "NON_COMPLIANT",
        }
    }
}

/// A compliance item's severity, most severe first (so `min` is the worst).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum ComplianceSeverity {
    Critical,
    High,
    Medium,
    Low,
    Informational,
    Unspecified,
}

impl ComplianceSeverity {
    pub const ALL: [ComplianceSeverity; 6] = [
        ComplianceSeverity::Critical,
        ComplianceSeverity::High,
        ComplianceSeverity::Medium,
        ComplianceSeverity::Low,
        ComplianceSeverity::Informational,
        ComplianceSeverity::Unspecified,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            ComplianceSeverity::Critical => "CRITICAL",
            ComplianceSeverity::High => "HIGH",
            ComplianceSeverity::Medium => "MEDIUM",
            ComplianceSeverity::Low => "LOW",
            ComplianceSeverity::Informational => "INFORMATIONAL",
            ComplianceSeverity::Unspecified => "UNSPECIFIED",
        }
    }

    /// A vulnerability's level as a compliance severity.
    pub fn from_vulnerability(severity: crate::Severity) -> ComplianceSeverity {
        match severity {
            crate::Severity::High => ComplianceSeverity::High,
            crate::Severity::Medium => ComplianceSeverity::Medium,
            crate::Severity::Low => ComplianceSeverity::Low,
            crate::Severity::Informational => ComplianceSeverity::Informational,
        }
    }
}

/// A name that is not one of the kind's values.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("`{value}` is not a compliance {what}: use one of {known}")]
pub struct ComplianceNameError {
    pub what: &'static str,
    pub value: String,
    pub known: String,
}

macro_rules! named {
    ($ty:ident, $what:literal) => {
        impl fmt::Display for $ty {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str(self.as_str())
            }
        }

        /// Case-insensitive, as operators type them (`high`, `non_compliant`); shown as stored.
        impl FromStr for $ty {
            type Err = ComplianceNameError;

            fn from_str(s: &str) -> Result<Self, Self::Err> {
                $ty::ALL.into_iter().find(|v| v.as_str().eq_ignore_ascii_case(s)).ok_or_else(|| ComplianceNameError {
                    what: $what,
                    value: s.to_owned(),
                    known: $ty::ALL.iter().map(|v| v.as_str()).collect::<Vec<_>>().join(", "),
                })
            }
        }
    };
}

named!(ComplianceType, "type");
named!(ComplianceStatus, "status");
named!(ComplianceSeverity, "severity");

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_round_trip_in_any_case() {
        for t in ComplianceType::ALL {
            assert_eq!(t.as_str().to_lowercase().parse::<ComplianceType>(), Ok(t));
        }
        for s in ComplianceStatus::ALL {
            assert_eq!(s.as_str().parse::<ComplianceStatus>(), Ok(s));
        }
        for s in ComplianceSeverity::ALL {
            assert_eq!(s.as_str().to_lowercase().parse::<ComplianceSeverity>(), Ok(s));
        }
        let err = "SEVERE".parse::<ComplianceSeverity>().unwrap_err();
        assert!(err.to_string().contains("CRITICAL, HIGH"), "{err}");
        assert!("Custom:Thing".parse::<ComplianceType>().is_err());
    }

    #[test]
    fn the_worst_severity_is_the_smallest() {
        assert_eq!(ComplianceSeverity::ALL.iter().min(), Some(&ComplianceSeverity::Critical));
        assert_eq!(ComplianceSeverity::from_vulnerability(crate::Severity::High), ComplianceSeverity::High);
    }
}
