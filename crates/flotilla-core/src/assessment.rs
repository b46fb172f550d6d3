//! The life of a vulnerability assessment, as states: a run goes Created → CollectingData
//! (node-side rules run as commands) → EvaluatingRules → Completed | Failed; each node of a run
//! starts Pending and ends Assessed, Incomplete (a rule could not run) or NotAssessable (no
//! advisory data for its OS). The names are the stored and reported strings.

use std::fmt;
use std::str::FromStr;

/// Where an assessment run stands.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum RunStatus {
    Created,
    CollectingData,
    EvaluatingRules,
    Completed,
    Failed,
}

impl RunStatus {
    pub const ALL: [RunStatus; 5] = [
        RunStatus::Created,
        RunStatus::CollectingData,
        RunStatus::EvaluatingRules,
        RunStatus::Completed,
        RunStatus::Failed,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            RunStatus::Created => "Created",
            RunStatus::CollectingData => "CollectingData",
            RunStatus::EvaluatingRules => "EvaluatingRules",
            RunStatus::Completed => "Completed",
            RunStatus::Failed => "Failed",
        }
    }

    pub fn is_terminal(self) -> bool {
        matches!(self, RunStatus::Completed | RunStatus::Failed)
    }
}

/// Where one node of an assessment run stands.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum NodeStatus {
    /// Not evaluated yet.
    Pending,
    /// Every rule ran.
    Assessed,
    /// Some rule could not run (its command failed, or its output did not parse).
    Incomplete,
    /// The advisory database holds nothing for the node's OS: not assessable, never clean.
    NotAssessable,
}

impl NodeStatus {
    pub const ALL: [NodeStatus; 4] =
        [NodeStatus::Pending, NodeStatus::Assessed, NodeStatus::Incomplete, NodeStatus::NotAssessable];

    pub fn as_str(self) -> &'static str {
        match self {
            NodeStatus::Pending => "Pending",
            NodeStatus::Assessed => "Assessed",
            NodeStatus::Incomplete => "Incomplete",
            NodeStatus::NotAssessable => "NotAssessable",
        }
    }
}

/// A string that is not a status of the kind named.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("`{value}` is not an assessment {what} status")]
pub struct StatusError {
    pub what: &'static str,
    pub value: String,
}

macro_rules! named {
    ($ty:ident, $what:literal) => {
        impl fmt::Display for $ty {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str(self.as_str())
            }
        }

        impl FromStr for $ty {
            type Err = StatusError;

            fn from_str(s: &str) -> Result<Self, Self::Err> {
                $ty::ALL
                    .into_iter()
                    .find(|status| status.as_str() == s)
                    .ok_or_else(|| StatusError { what: $what, value: s.to_owned() })
            }
        }
    };
}

named!(RunStatus, "run");
named!(NodeStatus, "node");

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_round_trip_exactly() {
        for status in RunStatus::ALL {
            assert_eq!(status.as_str().parse::<RunStatus>(), Ok(status));
        }
        for status in NodeStatus::ALL {
            assert_eq!(status.as_str().parse::<NodeStatus>(), Ok(status));
        }
        for bad in ["completed", "Bogus", ""] {
            assert!(bad.parse::<RunStatus>().is_err(), "{bad}");
            assert!(bad.parse::<NodeStatus>().is_err(), "{bad}");
        }
        assert_eq!(RunStatus::ALL.iter().filter(|s| s.is_terminal()).count(), 2);
    }
}
