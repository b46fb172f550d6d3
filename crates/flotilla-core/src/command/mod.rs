//! Run Command's pure rules: rate-control limits, the life of one invocation, the rate planner
//! that decides how many invocations to dispatch, and the status of a whole command (spec §4).
//!
//! Invariant: nothing here keeps time, state or I/O. The server stores invocation statuses,
//! feeds every event through [`transition`], and asks [`RatePlan::next_dispatch`] and
//! [`command_status`] for decisions derived from [`Counts`] of those statuses, so a restart
//! loses nothing.

pub mod format;
pub mod invocation;
pub mod limit;
pub mod rate;
pub mod state;
pub mod status;

pub use format::{DocumentFormat, DocumentFormatError};
pub use invocation::{InvocationEvent, InvocationStatus, InvocationStatusError, Outcome, TransitionError, transition};
pub use limit::{Limit, LimitError, MaxConcurrency, MaxErrors, Percent};
pub use rate::{Counts, Decision, RatePlan};
pub use state::{StepState, any_changed};
pub use status::{CommandStatus, CommandStatusError, command_status};
