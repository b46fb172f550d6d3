//! The event log's vocabulary: which kinds of state change the control plane records.
//!
//! The names are a public contract (`flotilla events ls --type`, rule patterns, webhook bodies;
//! ../shared/CLI.md "Events"), so they are spelled exactly once, here, and the store refuses a
//! stored name it does not know instead of guessing. Pure: no I/O, no serde.

use std::fmt;
use std::str::FromStr;

/// A kind of event. `Area.What` names, as operators type them.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum EventType {
    /// A node enrolled under an activation.
    NodeRegistered,
    /// A node's agent connected (its stream was accepted).
    NodeOnline,
    /// A node's stream closed, or it fell silent.
    NodeConnectionLost,
    /// A node was deregistered; its credential is refused from then on.
    NodeDeregistered,
    /// A command was created or its status changed.
    CommandStatusChanged,
    /// One node's invocation of a command changed status.
    InvocationStatusChanged,
    /// A node's compliance with a State Manager association changed.
    AssociationCompliance,
    /// A node's patch compliance changed.
    PatchCompliance,
    /// A maintenance window execution started or ended.
    WindowExecution,
    /// An assessment run was created or moved to another step.
    AssessmentStatusChanged,
    /// An assessment run ended (Completed or Failed).
    AssessmentCompleted,
    /// An assessment stored findings for a node.
    FindingReported,
    /// A Parameter Store parameter was created, updated, labelled or deleted (name and version,
    /// never the value).
    ParameterChanged,
    /// A node's stored inventory changed.
    InventoryChanged,
    SessionStarted,
    SessionEnded,
}

/// A type name that is not one of [`EventType::ALL`].
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("unknown event type `{0}`; known types: {known}", known = EventType::known_names())]
pub struct UnknownEventType(pub String);

impl EventType {
    /// Every type, in the order they are documented.
    pub const ALL: [EventType; 16] = [
        EventType::NodeRegistered,
        EventType::NodeOnline,
        EventType::NodeConnectionLost,
        EventType::NodeDeregistered,
        EventType::CommandStatusChanged,
        EventType::InvocationStatusChanged,
        EventType::AssociationCompliance,
        EventType::PatchCompliance,
        EventType::WindowExecution,
        EventType::AssessmentStatusChanged,
        EventType::AssessmentCompleted,
        EventType::FindingReported,
        EventType::ParameterChanged,
        EventType::InventoryChanged,
        EventType::SessionStarted,
        EventType::SessionEnded,
    ];

    /// The public name, e.g. `Command.StatusChanged`.
    pub fn as_str(self) -> &'static str {
        match self {
            EventType::NodeRegistered => "Node.Registered",
            EventType::NodeOnline => "Node.Online",
            EventType::NodeConnectionLost => "Node.ConnectionLost",
            EventType::NodeDeregistered => "Node.Deregistered",
            EventType::CommandStatusChanged => "Command.StatusChanged",
            EventType::InvocationStatusChanged => "Invocation.StatusChanged",
            EventType::AssociationCompliance => "Association.Compliance",
            EventType::PatchCompliance => "Patch.Compliance",
            EventType::WindowExecution => "Window.Execution",
            EventType::AssessmentStatusChanged => "Assessment.StatusChanged",
            EventType::AssessmentCompleted => "Assessment.Completed",
            EventType::FindingReported => "Finding.Reported",
            EventType::ParameterChanged => "Parameter.Changed",
            EventType::InventoryChanged => "Inventory.Changed",
            EventType::SessionStarted => "Session.Started",
            EventType::SessionEnded => "Session.Ended",
        }
    }

    /// The capability that emits it (`flotilla.fleet`, `flotilla.runcommand`, ...): the
    /// event's `source`, so rules can match a whole area.
    pub fn source(self) -> &'static str {
        match self {
            EventType::NodeRegistered
            | EventType::NodeOnline
            | EventType::NodeConnectionLost
            | EventType::NodeDeregistered => "flotilla.fleet",
            EventType::CommandStatusChanged | EventType::InvocationStatusChanged => "flotilla.runcommand",
            EventType::AssociationCompliance => "flotilla.statemanager",
            EventType::PatchCompliance => "flotilla.patch",
            EventType::WindowExecution => "flotilla.windows",
            EventType::AssessmentStatusChanged | EventType::AssessmentCompleted | EventType::FindingReported => {
                "flotilla.assessments"
            }
            EventType::ParameterChanged => "flotilla.parameters",
            EventType::InventoryChanged => "flotilla.inventory",
            EventType::SessionStarted | EventType::SessionEnded => "flotilla.sessions",
        }
    }

    fn known_names() -> String {
        EventType::ALL.iter().map(|t| t.as_str()).collect::<Vec<_>>().join(", ")
    }
}

impl FromStr for EventType {
    type Err = UnknownEventType;

    /// Exact names only: `command.statuschanged` is refused, so a typo in a filter is an error
    /// rather than a filter that silently matches nothing.
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        EventType::ALL.into_iter().find(|t| t.as_str() == s).ok_or_else(|| UnknownEventType(s.to_owned()))
    }
}

impl fmt::Display for EventType {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// A position in the log: events are read strictly after it. Sequences start at 1, so
/// `Cursor::START` (0) reads from the beginning.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Default)]
pub struct Cursor(pub i64);

impl Cursor {
    pub const START: Cursor = Cursor(0);

    /// The cursor after having read `seq` (never moves backwards: an at-least-once reader
    /// that sees an old event again does not rewind).
    pub fn advance(self, seq: i64) -> Cursor {
        Cursor(self.0.max(seq))
    }
}

/// A cursor as an operator or a client writes it (`--after SEQ`, `?after=SEQ`).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum CursorError {
    #[error("`{0}` is not a sequence number: use a whole number from 0 up (0 reads from the start)")]
    NotANumber(String),
    #[error("sequence number {0} is negative: use a whole number from 0 up (0 reads from the start)")]
    Negative(i64),
}

impl FromStr for Cursor {
    type Err = CursorError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let n: i64 = s.trim().parse().map_err(|_| CursorError::NotANumber(s.to_owned()))?;
        if n < 0 {
            return Err(CursorError::Negative(n));
        }
        Ok(Cursor(n))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_round_trip_and_are_unique() {
        let mut seen = std::collections::BTreeSet::new();
        for t in EventType::ALL {
            assert_eq!(t.as_str().parse::<EventType>(), Ok(t));
            assert_eq!(t.to_string(), t.as_str());
            assert!(seen.insert(t.as_str()), "{t} twice");
            assert!(t.source().starts_with("flotilla."));
        }
    }

    #[test]
    fn contract_names() {
        // The names ../shared/CLI.md promises, spelled out so a rename fails here.
        for name in [
            "Node.Registered",
            "Node.ConnectionLost",
            "Command.StatusChanged",
            "Invocation.StatusChanged",
            "Association.Compliance",
            "Patch.Compliance",
            "Window.Execution",
            "Assessment.Completed",
            "Finding.Reported",
            "Parameter.Changed",
            "Session.Started",
            "Session.Ended",
        ] {
            assert_eq!(name.parse::<EventType>().map(|t| t.as_str()), Ok(name));
        }
    }

    #[test]
    fn unknown_names_are_refused_with_the_list() {
        for bad in ["", "Command", "command.statuschanged", "Command.StatusChanged ", "command.status", "Node.*"] {
            let err = bad.parse::<EventType>().expect_err(bad);
            assert_eq!(err, UnknownEventType(bad.to_owned()));
            assert!(err.to_string().contains("Command.StatusChanged"), "{err}");
        }
    }

    #[test]
    fn cursors() {
        let table: &[(&str, Result<Cursor, CursorError>)] = &[
            ("0", Ok(Cursor(0))),
            ("42", Ok(Cursor(42))),
            (" 7 ", Ok(Cursor(7))),
            ("-1", Err(CursorError::Negative(-1))),
            ("abc", Err(CursorError::NotANumber("abc".into()))),
            ("", Err(CursorError::NotANumber(String::new()))),
            ("1.5", Err(CursorError::NotANumber("1.5".into()))),
            ("99999999999999999999", Err(CursorError::NotANumber("99999999999999999999".into()))),
        ];
        for (input, want) in table {
            assert_eq!(&input.parse::<Cursor>(), want, "{input:?}");
        }
        assert_eq!(Cursor(5).advance(3), Cursor(5));
        assert_eq!(Cursor(5).advance(9), Cursor(9));
    }
}
