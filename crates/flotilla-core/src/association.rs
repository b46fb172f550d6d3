//! State Manager associations: the rules that decide, per node, whether an association must be
//! applied now, and what a finished run means for the node (ssm-inspector-spec §5).
//!
//! An association carries a *generation*, raised whenever it must run again everywhere: at
//! creation (unless it applies only at its cron interval), when edited, at each occurrence of
//! its schedule and on a manual apply. Each node records the generation it last applied; the
//! reconciler applies to every targeted node that is behind, so a node that starts matching
//! later (newly registered, retagged) gets it at once, and a restart loses nothing. Pure.

use std::fmt;
use std::str::FromStr;

use crate::command::InvocationStatus;
use crate::compliance::ComplianceStatus;

/// An association's status on one node (`AssociationStatusName`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum AssociationStatus {
    /// Sent, not finished yet.
    Pending,
    /// The last run succeeded.
    Success,
    /// The last run failed, timed out, was cancelled or never reached the node.
    Failed,
}

impl AssociationStatus {
    pub const ALL: [AssociationStatus; 3] =
        [AssociationStatus::Pending, AssociationStatus::Success, AssociationStatus::Failed];

    pub fn as_str(self) -> &'static str {
        match self {
            AssociationStatus::Pending => "Pending",
            AssociationStatus::Success => "Success",
            AssociationStatus::Failed => "Failed",
        }
    }

    /// The status a finished invocation gives; None while it is not finished.
    pub fn of_invocation(status: InvocationStatus) -> Option<AssociationStatus> {
        match status {
            InvocationStatus::Success => Some(AssociationStatus::Success),
            InvocationStatus::Pending | InvocationStatus::InProgress | InvocationStatus::Delayed => None,
            InvocationStatus::Failed
            | InvocationStatus::TimedOut
            | InvocationStatus::Cancelled
            | InvocationStatus::Undeliverable
            | InvocationStatus::Terminated => Some(AssociationStatus::Failed),
        }
    }

    /// Compliance of type Association: the last run succeeded (whatever it had to correct, the
    /// node is now as desired) or not.
    pub fn compliance(self) -> Option<ComplianceStatus> {
        match self {
            AssociationStatus::Pending => None,
            AssociationStatus::Success => Some(ComplianceStatus::Compliant),
            AssociationStatus::Failed => Some(ComplianceStatus::NonCompliant),
        }
    }
}

impl fmt::Display for AssociationStatus {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("`{0}` is not an association status (Pending, Success or Failed)")]
pub struct AssociationStatusError(pub String);

impl FromStr for AssociationStatus {
    type Err = AssociationStatusError;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        AssociationStatus::ALL.into_iter().find(|v| v.as_str() == s).ok_or_else(|| AssociationStatusError(s.to_owned()))
    }
}

/// What a node last did with an association.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Applied {
    /// The association generation the node's last run was for.
    pub generation: i64,
    /// Its command has not finished.
    pub in_flight: bool,
    /// It finished without ever reaching the node (Undeliverable).
    pub undelivered: bool,
}

/// The reconciler's decision for one targeted node.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Decision {
    /// Send the association to the node now.
    Apply,
    /// A run is in flight: look again when it ends.
    Wait,
    /// Nothing to do.
    UpToDate,
}

/// Whether a node the association targets must get it now. `generation` 0 means the
/// association has not been asked to run anywhere yet (it applies only at its cron interval).
/// A run that never reached the node is repeated when the node is online again, and only then,
/// so an offline node is not sent the same undeliverable command over and over.
pub fn decide(generation: i64, applied: Option<Applied>, online: bool) -> Decision {
    match applied {
        _ if generation <= 0 => Decision::UpToDate,
        None => Decision::Apply,
        Some(a) if a.in_flight => Decision::Wait,
        Some(a) if a.generation < generation => Decision::Apply,
        Some(a) if a.undelivered && online => Decision::Apply,
        Some(_) => Decision::UpToDate,
    }
}

/// Why an association name is refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("association name `{0}` is invalid: use 3 to 128 characters from a-z, A-Z, 0-9, `_`, `.` and `-`")]
pub struct NameError(pub String);

/// AWS's association name rule: 3–128 of `[a-zA-Z0-9_.-]`.
pub fn validate_name(name: &str) -> Result<(), NameError> {
    let ok = (3..=128).contains(&name.len())
        && name.bytes().all(|b| b.is_ascii_alphanumeric() || matches!(b, b'_' | b'.' | b'-'));
    if ok { Ok(()) } else { Err(NameError(name.to_owned())) }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn applied(generation: i64, in_flight: bool, undelivered: bool) -> Option<Applied> {
        Some(Applied { generation, in_flight, undelivered })
    }

    #[test]
    fn decisions() {
        use Decision::*;
        let cases = [
            // (generation, applied, online, decision)
            (0, None, true, UpToDate),
            (1, None, true, Apply),
            (1, None, false, Apply),
            (1, applied(1, false, false), true, UpToDate),
            (2, applied(1, false, false), false, Apply),
            (2, applied(1, true, false), true, Wait),
            (1, applied(1, true, false), true, Wait),
            (1, applied(1, false, true), true, Apply),
            (1, applied(1, false, true), false, UpToDate),
        ];
        for (generation, a, online, want) in cases {
            assert_eq!(decide(generation, a, online), want, "{generation} {a:?} {online}");
        }
    }

    #[test]
    fn finished_invocations_give_a_status_and_a_compliance() {
        for status in InvocationStatus::ALL {
            let got = AssociationStatus::of_invocation(status);
            assert_eq!(got.is_some(), status.is_terminal(), "{status:?}");
            if let Some(s) = got {
                let compliant = s.compliance() == Some(ComplianceStatus::Compliant);
                assert_eq!(compliant, status == InvocationStatus::Success, "{status:?}");
            }
        }
        assert_eq!(AssociationStatus::Pending.compliance(), None);
    }

    #[test]
    fn names() {
        for good in ["motd", "keep-motd.v2", "a_b", &"x".repeat(128)] {
            assert!(validate_name(good).is_ok(), "{good}");
        }
        for bad in ["ab", "has space", "slash/", &"x".repeat(129), "ünï"] {
            assert!(validate_name(bad).is_err(), "{bad}");
        }
        assert_eq!("Success".parse::<AssociationStatus>(), Ok(AssociationStatus::Success));
        assert!("success".parse::<AssociationStatus>().is_err());
    }
}
