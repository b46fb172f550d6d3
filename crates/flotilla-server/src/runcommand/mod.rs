//! Run Command: documents (versions, built-ins, planning), commands (create, list, cancel,
//! output), the engine that drives every unfinished command to an end, the output spool, and
//! the retention of finished commands.

pub mod commands;
pub mod documents;
pub mod engine;
pub mod http;
pub mod output;
pub mod retention;

/// Run Command's part of the application state: what its services share beyond the platform.
pub struct RunState {
    pub engine: engine::Engine,
    pub output: output::OutputSpool,
}
