//! The agent's error type: what failed, on what, and what to do.

use std::path::PathBuf;

#[derive(Debug, thiserror::Error)]
pub enum AgentError {
    #[error("cannot read {path}: {source}")]
    Read { path: PathBuf, source: std::io::Error },
    #[error("cannot write {path}: {source}")]
    Write { path: PathBuf, source: std::io::Error },
    #[error("{path} is not a valid agent state file: {detail}")]
    BadState { path: PathBuf, detail: String },
    #[error("this node is not enrolled: no identity in {0}; run `flotilla-agent register` first")]
    NotEnrolled(PathBuf),
    #[error("this node is already enrolled as {node_id} (state in {path}); pass --force to enroll again")]
    AlreadyEnrolled { node_id: String, path: PathBuf },
    #[error("enrollment failed: {0}")]
    Enroll(String),
    #[error("invalid server URL `{url}`: {detail}")]
    BadUrl { url: String, detail: String },
    #[error("cannot generate the node key: {0}")]
    Key(String),
    /// The server refused this node's credential for good (deregistered or replaced).
    #[error("{0}")]
    Revoked(String),
}
