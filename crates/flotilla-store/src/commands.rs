//! Run Command storage: documents and their versions, commands and their invocations. SQL in
//! `sql/commands.rs`. JSON columns (parameters, targets, plan) are carried as text the server
//! wrote.

use async_trait::async_trait;
use flotilla_core::UnixMillis;
use flotilla_core::command::{CommandStatus, DocumentFormat, InvocationStatus, StepState};

use crate::StoreError;

/// One version of a document.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DocumentVersion {
    pub name: String,
    pub version: i64,
    pub content: String,
    pub description: String,
    /// An imported AWS SSM document is kept as written.
    pub format: DocumentFormat,
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
    pub status: CommandStatus,
    pub stopped_for_errors: bool,
    pub cancel_requested: bool,
    pub created_at: UnixMillis,
    pub ended_at: Option<UnixMillis>,
    /// JSON `{"topic": NAME, "events": [...]}`: where its status changes are sent
    /// (`flotilla run --notify`), None for none.
    pub notification: Option<String>,
}

/// One node's part of a command.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct InvocationRecord {
    pub command_id: String,
    pub node_id: String,
    pub status: InvocationStatus,
    pub exit_code: Option<i64>,
    pub dispatched_at: Option<UnixMillis>,
    pub started_at: Option<UnixMillis>,
    pub ended_at: Option<UnixMillis>,
    /// Inline copies, truncated; the full output is in the artifact store, except for a stream
    /// whose `*_whole` flag is set: its inline copy is all of it, byte for byte, and no artifact
    /// exists (small UTF-8 output, the common case a big fan-out would otherwise write to disk).
    pub stdout: String,
    pub stderr: String,
    pub stdout_truncated: bool,
    pub stderr_truncated: bool,
    pub stdout_whole: bool,
    pub stderr_whole: bool,
    pub stdout_bytes: i64,
    pub stderr_bytes: i64,
    pub detail: String,
    /// What each desired-state step reported, in step order (empty: none reported).
    pub state: Vec<StepState>,
}

/// Documents, commands and invocations.
#[async_trait]
pub trait CommandStore: Send + Sync {
    /// Stores `doc` (its `version` is ignored) as the next version of its document; version 1
    /// creates it and is its default. Returns the new version.
    async fn put_document(&self, doc: &DocumentVersion) -> Result<i64, StoreError>;
    /// A version of a document; its default version when `version` is None.
    async fn get_document(&self, name: &str, version: Option<i64>) -> Result<Option<DocumentVersion>, StoreError>;
    async fn list_documents(&self) -> Result<Vec<DocumentHead>, StoreError>;
    async fn get_document_head(&self, name: &str) -> Result<Option<DocumentHead>, StoreError>;
    /// Returns false when that version does not exist.
    async fn set_default_document_version(&self, name: &str, version: i64) -> Result<bool, StoreError>;

    /// Inserts the command and one Pending invocation per node, atomically.
    async fn create_command(&self, command: &CommandRecord, nodes: &[String]) -> Result<(), StoreError>;
    async fn get_command(&self, id: &str) -> Result<Option<CommandRecord>, StoreError>;
    /// Newest first.
    async fn list_commands(&self, limit: u32) -> Result<Vec<CommandRecord>, StoreError>;
    /// Ids of commands that are not finished (to resume after a restart).
    async fn unfinished_commands(&self) -> Result<Vec<String>, StoreError>;
    async fn update_command(&self, command: &CommandRecord) -> Result<(), StoreError>;
    async fn list_invocations(&self, command_id: &str) -> Result<Vec<InvocationRecord>, StoreError>;
    /// Invocations per status for each of `command_ids` (one query, for listings).
    async fn invocation_counts(
        &self,
        command_ids: &[String],
    ) -> Result<Vec<(String, InvocationStatus, u32)>, StoreError>;
    /// Deletes every command that ended before `cutoff`, with its invocations, in bulk;
    /// returns the deleted ids (their artifacts are the caller's to delete).
    async fn delete_commands_ended_before(&self, cutoff: UnixMillis) -> Result<Vec<String>, StoreError>;
    /// Writes many invocation states in one transaction (results arrive in storms).
    async fn update_invocations(&self, invocations: &[InvocationRecord]) -> Result<(), StoreError>;
}
