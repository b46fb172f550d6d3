//! The four severity levels Flotilla reports (Inspector's High / Medium / Low / Informational).
//! Here rather than in flotilla-vuln because the store, which depends on the core only, keeps
//! finding severities and assessment thresholds typed; flotilla-vuln re-exports it and owns how
//! an advisory's level is decided.

use std::fmt;
use std::str::FromStr;

/// The reported severity levels, most severe first (so sorting puts High first).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Severity {
    High,
    Medium,
    Low,
    Informational,
}

impl Severity {
    /// Most severe first.
    pub const ALL: [Severity; 4] = [Severity::High, Severity::Medium, Severity::Low, Severity::Informational];

    pub fn as_str(self) -> &'static str {
        match self {
            Severity::High => "High",
            Severity::Medium => "Medium",
            Severity::Low => "Low",
            Severity::Informational => "Informational",
        }
    }

    /// The CVSS qualitative scale, with Critical folded into High.
    pub fn from_score(score: f64) -> Severity {
        if score >= 7.0 {
            Severity::High
        } else if score >= 4.0 {
            Severity::Medium
        } else if score > 0.0 {
            Severity::Low
        } else {
            Severity::Informational
        }
    }

    /// A level as an operator or a node-side rule may spell it (`high`, `HIGH`): the exact
    /// [`FromStr`] is for stored values, this is for input.
    pub fn parse_ignoring_case(text: &str) -> Result<Severity, SeverityError> {
        Severity::ALL
            .into_iter()
            .find(|s| s.as_str().eq_ignore_ascii_case(text))
            .ok_or_else(|| SeverityError(text.to_owned()))
    }
}

impl fmt::Display for Severity {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// A string that is not a severity level.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("`{0}` is not a severity: expected one of High, Medium, Low, Informational")]
pub struct SeverityError(pub String);

impl FromStr for Severity {
    type Err = SeverityError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Severity::ALL.into_iter().find(|level| level.as_str() == s).ok_or_else(|| SeverityError(s.to_owned()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_round_trip_exactly_and_input_ignores_case() {
        for level in Severity::ALL {
            assert_eq!(level.as_str().parse::<Severity>(), Ok(level));
            assert_eq!(Severity::parse_ignoring_case(&level.as_str().to_lowercase()), Ok(level));
        }
        for bad in ["high", "Critical", "", "None"] {
            assert!(bad.parse::<Severity>().is_err(), "{bad}");
        }
        assert!(Severity::parse_ignoring_case("critical").is_err());
    }

    #[test]
    fn sorts_most_severe_first() {
        let mut list = vec![Severity::Low, Severity::Informational, Severity::High, Severity::Medium];
        list.sort();
        assert_eq!(list, Severity::ALL);
    }
}
