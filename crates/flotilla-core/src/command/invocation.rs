//! One invocation of a command on one node: its status and the only way that status changes.
//!
//! ```text
//!                       Dispatched
//!            Pending ───────────────► InProgress ──┬─ Finished{0} ─────────► Success
//!                                      │      ▲     ├─ Finished{≠0} ───────► Failed
//!                     NodeNotConnected │      │     ├─ ExecutionTimedOut ──► TimedOut
//!                                      ▼      │     └─ AgentLost ──────────► Terminated
//!                                     Delayed ┘ AgentAccepted | Reconnected
//!                   (from Delayed, Finished and ExecutionTimedOut act as from InProgress)
//!
//!   from any of Pending, InProgress, Delayed:
//!     CancelRequested ──► Cancelled        DeliveryTimeout ──► Undeliverable
//!   from Pending and Delayed (InProgress ignores the first; the second ends it Terminated):
//!     ErrorThresholdExceeded ──► Cancelled   AgentLost ──► Undeliverable
//! ```
//!
//! Every other (status, event) pair is `Ignored`, except the agent reporting `AgentAccepted`,
//! `Finished` or `ExecutionTimedOut` for a Pending invocation, which is an error.
//!
//! Invariants:
//! - Terminal statuses never change. Any event on a terminal invocation is [`Outcome::Ignored`],
//!   so duplicated or late messages (delivery is at least once) are harmless.
//! - Only `Dispatched` takes an invocation out of Pending into flight, so the rate planner
//!   alone decides what runs: a node (re)connecting or disconnecting never starts a Pending one.
//! - `Applied(next)` always changes the status; an event that changes nothing (a duplicate
//!   acknowledgement, `Reconnected` for an invocation that is not Delayed) is `Ignored`.
//! - An error means the caller's bookkeeping is wrong: the agent reported on an invocation the
//!   server never dispatched. Recording `Dispatched` before sending leaves no race that can
//!   produce it.
//!
//! Rules that are choices, not spec text:
//! - Invocations never started because of the error stop end `Cancelled`, AWS's API status for
//!   them; the spec (§4.2.5, §4.4) gives their AWS *status detail*, "Terminated". Here
//!   `Terminated` instead means an agent lost mid-run (below). Keep the two apart when mapping
//!   to AWS-shaped output.
//! - Run Command's *DeliveryTimedOut* (spec §4.3) is recorded as `Undeliverable`: both mean
//!   "never ran to a result, not the command's fault" and neither counts against MaxErrors.
//! - `AgentLost` means the node or agent went away: `Terminated` if the agent had the invocation
//!   (InProgress), `Undeliverable` if it never did (Pending, Delayed).
//! - On `ErrorThresholdExceeded`, InProgress invocations run on (grace, spec §4.2.3) but Delayed
//!   ones are cancelled: they are not running, and re-sending them after the stop would be new
//!   work started past the threshold.
//! - `CancelRequested` cancels an InProgress invocation at once; cancelling is best effort
//!   (spec §4.5), and a result the agent sends afterwards is ignored.

use std::fmt;
use std::str::FromStr;

/// Where one invocation stands. The names are the exact strings of [`InvocationStatus::as_str`].
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default)]
pub enum InvocationStatus {
    /// Created, not yet dispatched by the rate planner.
    #[default]
    Pending,
    /// Sent to the agent, or running there.
    InProgress,
    /// Sending failed because the node is not connected; it is re-sent when the node returns.
    Delayed,
    /// Exit code 0.
    Success,
    /// Non-zero exit code. Counts against MaxErrors.
    Failed,
    /// Ran past the document's execution timeout. Counts against MaxErrors.
    TimedOut,
    /// Cancelled by the operator, or never started because the command hit MaxErrors.
    Cancelled,
    /// Never delivered: node gone, or the command's delivery timeout passed first.
    Undeliverable,
    /// The agent had it, then the node or agent went away before reporting a result.
    Terminated,
}

impl InvocationStatus {
    pub const ALL: [InvocationStatus; 9] = [
        InvocationStatus::Pending,
        InvocationStatus::InProgress,
        InvocationStatus::Delayed,
        InvocationStatus::Success,
        InvocationStatus::Failed,
        InvocationStatus::TimedOut,
        InvocationStatus::Cancelled,
        InvocationStatus::Undeliverable,
        InvocationStatus::Terminated,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            InvocationStatus::Pending => "Pending",
            InvocationStatus::InProgress => "InProgress",
            InvocationStatus::Delayed => "Delayed",
            InvocationStatus::Success => "Success",
            InvocationStatus::Failed => "Failed",
            InvocationStatus::TimedOut => "TimedOut",
            InvocationStatus::Cancelled => "Cancelled",
            InvocationStatus::Undeliverable => "Undeliverable",
            InvocationStatus::Terminated => "Terminated",
        }
    }

    /// Whether the status is final.
    pub fn is_terminal(self) -> bool {
        !matches!(self, InvocationStatus::Pending | InvocationStatus::InProgress | InvocationStatus::Delayed)
    }

    /// Whether the invocation counts against MaxErrors (spec §4.2.4): only a run that reached
    /// the node and went wrong there does; delivery problems and cancellations do not.
    pub fn counts_as_error(self) -> bool {
        matches!(self, InvocationStatus::Failed | InvocationStatus::TimedOut)
    }
}

impl fmt::Display for InvocationStatus {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// A string that is not an invocation status.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error(
    "`{0}` is not an invocation status: expected one of Pending, InProgress, Delayed, Success, Failed, TimedOut, Cancelled, Undeliverable, Terminated (exact case)"
)]
pub struct InvocationStatusError(pub String);

impl FromStr for InvocationStatus {
    type Err = InvocationStatusError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        InvocationStatus::ALL
            .into_iter()
            .find(|status| status.as_str() == s)
            .ok_or_else(|| InvocationStatusError(s.to_owned()))
    }
}

/// Everything that can happen to an invocation. Closed: a new kind of event is a new variant
/// and a compile error in [`transition`] until its rule is written.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum InvocationEvent {
    /// The rate planner chose it and the server sent it (or is about to).
    Dispatched,
    /// The agent acknowledged it and started running it.
    AgentAccepted,
    /// Sending failed, or the connection dropped before the agent acknowledged.
    NodeNotConnected,
    /// The node is connected again; a Delayed invocation is re-sent.
    Reconnected,
    /// The agent reports the run ended with this exit code.
    Finished { exit_code: i32 },
    /// The agent reports the run passed the document's execution timeout.
    ExecutionTimedOut,
    /// The operator cancelled the command.
    CancelRequested,
    /// The command's delivery timeout passed (spec §4.3).
    DeliveryTimeout,
    /// The node or its agent went away (deregistered, or the agent no longer knows the run).
    AgentLost,
    /// The command's error threshold was exceeded (spec §4.2.2).
    ErrorThresholdExceeded,
}

impl InvocationEvent {
    /// A stable name for messages and logs.
    pub fn name(self) -> &'static str {
        match self {
            InvocationEvent::Dispatched => "Dispatched",
            InvocationEvent::AgentAccepted => "AgentAccepted",
            InvocationEvent::NodeNotConnected => "NodeNotConnected",
            InvocationEvent::Reconnected => "Reconnected",
            InvocationEvent::Finished { .. } => "Finished",
            InvocationEvent::ExecutionTimedOut => "ExecutionTimedOut",
            InvocationEvent::CancelRequested => "CancelRequested",
            InvocationEvent::DeliveryTimeout => "DeliveryTimeout",
            InvocationEvent::AgentLost => "AgentLost",
            InvocationEvent::ErrorThresholdExceeded => "ErrorThresholdExceeded",
        }
    }
}

/// What an event did to an invocation.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Outcome {
    /// The status changed to this one (always different from the one before).
    Applied(InvocationStatus),
    /// Nothing changed: the invocation is terminal, or the event is a duplicate or does not
    /// concern an invocation in this status. Safe to drop.
    Ignored,
}

/// An event that cannot have happened if the caller's records are right.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum TransitionError {
    #[error(
        "the agent reported `{event}` for an invocation that is still Pending: it was never dispatched; record Dispatched before sending an invocation to an agent"
    )]
    NotDispatched { event: &'static str },
}

/// Applies `event` to an invocation in status `from`. See the module doc for the diagram.
pub fn transition(from: InvocationStatus, event: InvocationEvent) -> Result<Outcome, TransitionError> {
    use InvocationEvent as E;
    use InvocationStatus as S;

    if from.is_terminal() {
        return Ok(Outcome::Ignored);
    }
    let next = match (from, event) {
        (S::Pending, E::Dispatched) => S::InProgress,
        (S::Pending, E::AgentAccepted | E::Finished { .. } | E::ExecutionTimedOut) => {
            return Err(TransitionError::NotDispatched { event: event.name() });
        }
        (S::Pending, E::NodeNotConnected | E::Reconnected) => return Ok(Outcome::Ignored),
        (S::Pending | S::Delayed, E::AgentLost) => S::Undeliverable,
        (S::Pending | S::Delayed, E::ErrorThresholdExceeded) => S::Cancelled,

        (S::InProgress, E::NodeNotConnected) => S::Delayed,
        (S::InProgress, E::AgentLost) => S::Terminated,
        (S::InProgress, E::Dispatched | E::AgentAccepted | E::Reconnected | E::ErrorThresholdExceeded) => {
            return Ok(Outcome::Ignored);
        }

        (S::Delayed, E::AgentAccepted | E::Reconnected) => S::InProgress,
        (S::Delayed, E::Dispatched | E::NodeNotConnected) => return Ok(Outcome::Ignored),

        // The agent's report is authoritative even from Delayed: its acknowledgement may have
        // been lost while the run went ahead.
        (S::InProgress | S::Delayed, E::Finished { exit_code: 0 }) => S::Success,
        (S::InProgress | S::Delayed, E::Finished { .. }) => S::Failed,
        (S::InProgress | S::Delayed, E::ExecutionTimedOut) => S::TimedOut,

        (_, E::CancelRequested) => S::Cancelled,
        (_, E::DeliveryTimeout) => S::Undeliverable,

        // Terminal statuses returned above; listed so the match stays exhaustive without a
        // catch-all that would hide a new status.
        (
            S::Success | S::Failed | S::TimedOut | S::Cancelled | S::Undeliverable | S::Terminated,
            E::Dispatched
            | E::AgentAccepted
            | E::NodeNotConnected
            | E::Reconnected
            | E::Finished { .. }
            | E::ExecutionTimedOut
            | E::AgentLost
            | E::ErrorThresholdExceeded,
        ) => return Ok(Outcome::Ignored),
    };
    Ok(Outcome::Applied(next))
}

#[cfg(test)]
mod tests {
    use super::*;
    use InvocationEvent as E;
    use InvocationStatus as S;
    use proptest::prelude::*;

    /// Expected result of one (status, event) cell.
    #[derive(Debug, Clone, Copy, PartialEq)]
    enum Want {
        To(InvocationStatus),
        Ign,
        Err,
    }
    use Want::{Err, Ign, To};

    const EVENTS: [InvocationEvent; 11] = [
        E::Dispatched,
        E::AgentAccepted,
        E::NodeNotConnected,
        E::Reconnected,
        E::Finished { exit_code: 0 },
        E::Finished { exit_code: 1 },
        E::ExecutionTimedOut,
        E::CancelRequested,
        E::DeliveryTimeout,
        E::AgentLost,
        E::ErrorThresholdExceeded,
    ];

    #[test]
    fn transition_table() {
        // Columns in the order of EVENTS:
        //  Dispatched, AgentAccepted, NodeNotConnected, Reconnected, Finished{0}, Finished{1},
        //  ExecutionTimedOut, CancelRequested, DeliveryTimeout, AgentLost, ErrorThresholdExceeded
        let table: [(InvocationStatus, [Want; 11]); 9] = [
            (
                S::Pending,
                [
                    To(S::InProgress),
                    Err,
                    Ign,
                    Ign,
                    Err,
                    Err,
                    Err,
                    To(S::Cancelled),
                    To(S::Undeliverable),
                    To(S::Undeliverable),
                    To(S::Cancelled),
                ],
            ),
            (
                S::InProgress,
                [
                    Ign,
                    Ign,
                    To(S::Delayed),
                    Ign,
                    To(S::Success),
                    To(S::Failed),
                    To(S::TimedOut),
                    To(S::Cancelled),
                    To(S::Undeliverable),
                    To(S::Terminated),
                    Ign,
                ],
            ),
            (
                S::Delayed,
                [
                    Ign,
                    To(S::InProgress),
                    Ign,
                    To(S::InProgress),
                    To(S::Success),
                    To(S::Failed),
                    To(S::TimedOut),
                    To(S::Cancelled),
                    To(S::Undeliverable),
                    To(S::Undeliverable),
                    To(S::Cancelled),
                ],
            ),
            (S::Success, [Ign; 11]),
            (S::Failed, [Ign; 11]),
            (S::TimedOut, [Ign; 11]),
            (S::Cancelled, [Ign; 11]),
            (S::Undeliverable, [Ign; 11]),
            (S::Terminated, [Ign; 11]),
        ];
        for (from, row) in table {
            for (event, want) in EVENTS.into_iter().zip(row) {
                let got = match transition(from, event) {
                    Ok(Outcome::Applied(to)) => To(to),
                    Ok(Outcome::Ignored) => Ign,
                    Result::Err(_) => Err,
                };
                assert_eq!(got, want, "{from} + {event:?}");
            }
        }
    }

    #[test]
    fn any_non_zero_exit_code_fails() {
        for exit_code in [1, 2, 127, 255, -1, i32::MIN, i32::MAX] {
            assert_eq!(transition(S::InProgress, E::Finished { exit_code }), Ok(Outcome::Applied(S::Failed)));
        }
    }

    #[test]
    fn not_dispatched_error_says_what_to_do() {
        let err = transition(S::Pending, E::Finished { exit_code: 0 }).expect_err("pending cannot finish");
        assert_eq!(err, TransitionError::NotDispatched { event: "Finished" });
        assert!(err.to_string().contains("record Dispatched"), "{err}");
    }

    #[test]
    fn status_classification_table() {
        // (status, name, terminal, counts as error)
        let table = [
            (S::Pending, "Pending", false, false),
            (S::InProgress, "InProgress", false, false),
            (S::Delayed, "Delayed", false, false),
            (S::Success, "Success", true, false),
            (S::Failed, "Failed", true, true),
            (S::TimedOut, "TimedOut", true, true),
            (S::Cancelled, "Cancelled", true, false),
            (S::Undeliverable, "Undeliverable", true, false),
            (S::Terminated, "Terminated", true, false),
        ];
        assert_eq!(table.len(), S::ALL.len());
        for (status, name, terminal, error) in table {
            assert_eq!(status.as_str(), name);
            assert_eq!(status.to_string(), name);
            assert_eq!(name.parse::<InvocationStatus>(), Ok(status));
            assert_eq!(status.is_terminal(), terminal, "{name}");
            assert_eq!(status.counts_as_error(), error, "{name}");
        }
        for bad in ["", "pending", "PENDING", "In Progress", "Canceled", "DeliveryTimedOut", " Success"] {
            let err = bad.parse::<InvocationStatus>().expect_err(bad);
            assert!(err.to_string().contains("expected one of Pending"), "{err}");
        }
    }

    fn any_status() -> impl Strategy<Value = InvocationStatus> {
        proptest::sample::select(S::ALL.to_vec())
    }

    fn any_event() -> impl Strategy<Value = InvocationEvent> {
        prop_oneof![
            proptest::sample::select(EVENTS.to_vec()),
            any::<i32>().prop_map(|exit_code| E::Finished { exit_code }),
        ]
    }

    proptest! {
        #[test]
        fn terminal_is_forever(events in proptest::collection::vec(any_event(), 0..40)) {
            let mut status = S::Pending;
            let mut terminal_at = None;
            for event in events {
                if let Ok(Outcome::Applied(next)) = transition(status, event) {
                    prop_assert_ne!(next, status, "Applied always changes the status");
                    prop_assert_ne!(next, S::Pending, "nothing returns to Pending");
                    prop_assert!(terminal_at.is_none(), "{} changed after becoming terminal", status);
                    status = next;
                    if status.is_terminal() {
                        terminal_at = Some(status);
                    }
                }
            }
        }

        #[test]
        fn replaying_an_event_changes_nothing(from in any_status(), event in any_event()) {
            // At-least-once delivery: the same event twice has the effect of once.
            if let Ok(Outcome::Applied(next)) = transition(from, event) {
                prop_assert_eq!(transition(next, event), Ok(Outcome::Ignored), "{} + {:?} twice", from, event);
            }
        }

        #[test]
        fn only_dispatch_leaves_pending_for_flight(event in any_event()) {
            if let Ok(Outcome::Applied(next)) = transition(S::Pending, event) {
                prop_assert!(next.is_terminal() || event == E::Dispatched, "{:?} -> {}", event, next);
            }
        }
    }
}
