//! Stored shapes of documents, commands and invocations. Plain data: the server owns their
//! meaning (the status names come from `flotilla_core::command`); JSON columns are carried as
//! text the server wrote.

use flotilla_core::UnixMillis;

/// One version of a document.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DocumentVersion {
    pub name: String,
    pub version: i64,
    pub content: String,
    pub description: String,
    /// `flotilla` or `ssm` (an imported AWS SSM document, kept as written).
    pub format: String,
    pub created_at: UnixMillis,
}

/// A document's name with its latest and default versions.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DocumentHead {
    pub name: String,
    pub latest_version: i64,
    pub default_version: i64,
    pub description: String,
}

/// A Run Command request and its state.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CommandRecord {
    pub id: String,
    pub document: String,
    pub document_version: i64,
    /// JSON: name -> list of values, as given.
    pub parameters: String,
    /// JSON: the target expressions as given.
    pub targets: String,
    /// JSON: the planned steps sent to every node.
    pub plan: String,
    pub max_concurrency: String,
    pub max_errors: String,
    pub delivery_timeout_ms: i64,
    pub comment: String,
    pub status: String,
    pub stopped_for_errors: bool,
    pub cancel_requested: bool,
    pub created_at: UnixMillis,
    pub ended_at: Option<UnixMillis>,
}

/// One node's part of a command.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct InvocationRecord {
    pub command_id: String,
    pub node_id: String,
    pub status: String,
    pub exit_code: Option<i64>,
    pub dispatched_at: Option<UnixMillis>,
    pub started_at: Option<UnixMillis>,
    pub ended_at: Option<UnixMillis>,
    /// Inline copies, truncated; the full output is in the artifact store.
    pub stdout: String,
    pub stderr: String,
    pub stdout_truncated: bool,
    pub stderr_truncated: bool,
    pub stdout_bytes: i64,
    pub stderr_bytes: i64,
    pub detail: String,
}
