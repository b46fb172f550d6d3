//! The status of a whole command, derived from its invocations (spec §4.4).
//!
//! A command's status is never stored independently of its invocations: it is recomputed from
//! [`Counts`] and two facts the caller records (the error stop, the operator's cancel), so it
//! cannot drift from them.
//!
//! The set is AWS's `CommandStatus` minus `TimedOut`: a delivery timeout is recorded per
//! invocation as Undeliverable (see [`invocation`](super::invocation)), so no count could tell
//! a timed-out command from one whose nodes were all missing, and both end Failed here.
//!
//! Rules, in order of precedence:
//! 1. Some invocation is unfinished (pending or in flight):
//!    `Cancelling` if a cancel was requested, else `Pending` if none has left Pending yet, else
//!    `InProgress` (also while grace runs finish after an error stop).
//! 2. All terminal and the error threshold was exceeded: `Failed`. This wins over a cancel,
//!    because a cancel ends every unfinished invocation at once, so errors past the threshold
//!    were there before it.
//! 3. All terminal and a cancel was requested: `Cancelled`.
//! 4. All terminal and no invocation succeeded: `Failed`. This covers all-Undeliverable (spec),
//!    a command with no targets (AWS reports *No Instances In Tag*; we would rather fail than
//!    call a mistyped tag a success), and all-failed under a tolerant MaxErrors such as 100%.
//! 5. Otherwise `Success`, even with some errors within MaxErrors or some Undeliverable nodes
//!    (AWS's detail for that case, *Incomplete*, is not modelled).

use std::fmt;
use std::str::FromStr;

use super::rate::Counts;

/// Where a command stands as a whole.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum CommandStatus {
    /// Nothing dispatched yet.
    Pending,
    /// Some invocations dispatched, some not yet terminal.
    InProgress,
    /// The operator cancelled; some invocations are not yet terminal.
    Cancelling,
    /// Every invocation is terminal, at least one succeeded, the error threshold was not exceeded.
    Success,
    /// The error threshold was exceeded, or no invocation succeeded.
    Failed,
    /// The operator cancelled and every invocation is terminal.
    Cancelled,
}

impl CommandStatus {
    pub const ALL: [CommandStatus; 6] = [
        CommandStatus::Pending,
        CommandStatus::InProgress,
        CommandStatus::Cancelling,
        CommandStatus::Success,
        CommandStatus::Failed,
        CommandStatus::Cancelled,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            CommandStatus::Pending => "Pending",
            CommandStatus::InProgress => "InProgress",
            CommandStatus::Cancelling => "Cancelling",
            CommandStatus::Success => "Success",
            CommandStatus::Failed => "Failed",
            CommandStatus::Cancelled => "Cancelled",
        }
    }

    pub fn is_terminal(self) -> bool {
        matches!(self, CommandStatus::Success | CommandStatus::Failed | CommandStatus::Cancelled)
    }
}

impl fmt::Display for CommandStatus {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// A string that is not a command status.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error(
    "`{0}` is not a command status: expected one of Pending, InProgress, Cancelling, Success, Failed, Cancelled (exact case)"
)]
pub struct CommandStatusError(pub String);

impl FromStr for CommandStatus {
    type Err = CommandStatusError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        CommandStatus::ALL
            .into_iter()
            .find(|status| status.as_str() == s)
            .ok_or_else(|| CommandStatusError(s.to_owned()))
    }
}

/// The command's status (rules in the module doc). `stopped_for_errors` is
/// [`RatePlan::threshold_exceeded`](super::rate::RatePlan::threshold_exceeded) on the current
/// counts; `cancel_requested` is whether the operator cancelled the command while it was unfinished.
pub fn command_status(counts: &Counts, stopped_for_errors: bool, cancel_requested: bool) -> CommandStatus {
    if counts.unfinished() > 0 {
        return if cancel_requested {
            CommandStatus::Cancelling
        } else if counts.pending == counts.total() {
            CommandStatus::Pending
        } else {
            CommandStatus::InProgress
        };
    }
    if stopped_for_errors {
        CommandStatus::Failed
    } else if cancel_requested {
        CommandStatus::Cancelled
    } else if counts.succeeded == 0 {
        CommandStatus::Failed
    } else {
        CommandStatus::Success
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::command::invocation::InvocationStatus as I;
    use crate::command::limit::{Limit, MaxConcurrency, MaxErrors};
    use crate::command::rate::RatePlan;
    use CommandStatus as C;
    use proptest::prelude::*;

    fn of(statuses: &[I]) -> Counts {
        Counts::from_statuses(statuses.iter().copied())
    }

    #[test]
    fn command_status_table() {
        // (invocations, stopped for errors, cancel requested, want)
        let table: &[(&[I], bool, bool, CommandStatus)] = &[
            (&[I::Pending, I::Pending], false, false, C::Pending),
            (&[I::Pending, I::InProgress], false, false, C::InProgress),
            (&[I::Success, I::Pending], false, false, C::InProgress),
            (&[I::Delayed, I::Success], false, false, C::InProgress),
            // Grace: stopped, but running ones have not finished.
            (&[I::Failed, I::Failed, I::InProgress, I::Cancelled], true, false, C::InProgress),
            (&[I::Failed, I::Failed, I::Success, I::Cancelled], true, false, C::Failed),
            (&[I::Failed, I::Failed, I::Failed, I::Cancelled], true, false, C::Failed),
            // Cancel.
            (&[I::Pending, I::InProgress], false, true, C::Cancelling),
            (&[I::Pending, I::Pending], false, true, C::Cancelling),
            (&[I::Cancelled, I::Success], false, true, C::Cancelled),
            (&[I::Cancelled, I::Cancelled], false, true, C::Cancelled),
            (&[I::Failed, I::Cancelled], true, true, C::Failed),
            // Success and its edges.
            (&[I::Success, I::Success], false, false, C::Success),
            (&[I::Success, I::Undeliverable], false, false, C::Success),
            (&[I::Success, I::Failed], false, false, C::Success), // within MaxErrors
            (&[I::Success, I::Terminated, I::TimedOut], false, false, C::Success),
            (&[I::Undeliverable, I::Undeliverable], false, false, C::Failed),
            (&[I::Undeliverable, I::Terminated], false, false, C::Failed),
            (&[I::Failed, I::TimedOut], false, false, C::Failed), // e.g. MaxErrors 100%
            (&[], false, false, C::Failed),
        ];
        for (statuses, stopped, cancel, want) in table {
            assert_eq!(command_status(&of(statuses), *stopped, *cancel), *want, "{statuses:?} {stopped} {cancel}");
        }
    }

    #[test]
    fn names_round_trip() {
        for status in CommandStatus::ALL {
            assert_eq!(status.as_str().parse::<CommandStatus>(), Ok(status));
            assert_eq!(status.to_string(), status.as_str());
        }
        let err = "TimedOut".parse::<CommandStatus>().expect_err("not in the set");
        assert!(err.to_string().contains("expected one of"), "{err}");
        let terminal: Vec<_> = CommandStatus::ALL.into_iter().filter(|s| s.is_terminal()).collect();
        assert_eq!(terminal, vec![C::Success, C::Failed, C::Cancelled]);
    }

    #[test]
    fn spec_example_ten_percent_of_fifty() {
        let plan = RatePlan::new(50, MaxConcurrency::default(), MaxErrors::new("10%".parse::<Limit>().expect("valid")));
        let mut statuses = vec![I::Success; 44];
        statuses.extend([I::Failed; 5]);
        statuses.push(I::Undeliverable);
        let five = of(&statuses);
        assert_eq!(command_status(&five, plan.threshold_exceeded(&five), false), C::Success);
        statuses[0] = I::Failed;
        let six = of(&statuses);
        assert_eq!(command_status(&six, plan.threshold_exceeded(&six), false), C::Failed);
    }

    fn any_status() -> impl Strategy<Value = I> {
        proptest::sample::select(I::ALL.to_vec())
    }

    proptest! {
        #[test]
        fn terminal_exactly_when_every_invocation_is(
            statuses in proptest::collection::vec(any_status(), 0..30),
            stopped in any::<bool>(),
            cancel in any::<bool>(),
        ) {
            let status = command_status(&of(&statuses), stopped, cancel);
            prop_assert_eq!(status.is_terminal(), statuses.iter().all(|s| s.is_terminal()));
            if status == C::Success {
                prop_assert!(!stopped && !cancel && statuses.contains(&I::Success));
            }
        }
    }
}
