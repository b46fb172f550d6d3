//! Flotilla's node agent.
//!
//! `enroll` turns an activation into an identity kept in the state dir (`state`); `channel`
//! keeps the one outbound stream to the server alive; `node` reads the machine's facts,
//! always under `--root`; `session` serves shells and port forwards on streams of that same
//! connection.
//!
//! Architecture invariant: the agent is lean. It never opens a database, serves nothing and
//! accepts no inbound connection; its private key is generated here and never leaves the node.

mod assess;
mod channel;
mod desired;
mod enroll;
mod error;
pub mod exec;
mod inventory;
mod invocation;
mod node;
pub mod patch;
mod patching;
mod root;
pub mod session;
mod state;

pub use channel::run;
pub use enroll::{RegisterOptions, register};
pub use error::AgentError;

/// Default place of the agent's identity.
pub const DEFAULT_STATE_DIR: &str = "/var/lib/flotilla-agent";

/// The agent's version, reported to the server.
pub const VERSION: &str = env!("CARGO_PKG_VERSION");
