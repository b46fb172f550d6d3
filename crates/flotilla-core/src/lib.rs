//! Flotilla's domain core: nodes, activations, tags, targets, reconnect backoff, Run Command's
//! rules, the Parameter Store's rules, State Manager associations, compliance, assessment
//! states, severity levels, the event log's vocabulary, and maintenance windows' rules and
//! execution planner.
//!
//! Architecture invariant: this crate does no I/O and knows nothing of tokio, sqlx, axum or
//! tonic. Time and randomness come in as arguments, so every rule here is testable with tables.

pub mod activation;
pub mod assessment;
pub mod association;
pub mod backoff;
pub mod command;
pub mod compliance;
pub mod desired;
pub mod event;
pub mod node;
pub mod notification;
pub mod parameter;
pub mod patch;
pub mod pattern;
pub mod schedule;
pub mod session;
pub mod severity;
pub mod tag;
pub mod target;
pub mod window;

pub use activation::{Activation, ActivationRefusal};
pub use event::{Cursor, CursorError, EventType, UnknownEventType};
pub use node::{Node, NodeId, NodeIdError, NodeInfo, NodeStatus, Platform};
pub use severity::{Severity, SeverityError};
pub use tag::{TagError, Tags};
pub use target::{Literal, Target, TargetError, Term};

/// Milliseconds since the Unix epoch: the one time representation of the domain.
pub type UnixMillis = i64;
