//! Maintenance window storage: windows, their registered targets and tasks, executions (one per
//! occurrence) and each execution's task invocations. SQL in `sql/windows.rs`.
//!
//! Invariants: an execution is unique per (window, occurrence) — the second insert of one is
//! refused by the table's key, not by a check that could race; a window's removal takes its
//! targets, tasks, executions and task invocations with it in one transaction; an execution's
//! start (IN_PROGRESS, or SKIPPED_OVERLAPPING) and its end each write one `Window.Execution`
//! event in the transaction of the change.

use async_trait::async_trait;
use flotilla_core::UnixMillis;
use flotilla_core::window::{CutoffBehavior, ExecutionStatus, TaskStatus};

use crate::StoreError;

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct WindowRecord {
    pub id: String,
    pub name: String,
    pub schedule: String,
    /// IANA zone; None is UTC.
    pub timezone: Option<String>,
    pub duration_hours: i64,
    pub cutoff_hours: i64,
    pub start_date: Option<UnixMillis>,
    pub end_date: Option<UnixMillis>,
    pub enabled: bool,
    /// When the schedule, zone, dates or enabling last changed: no occurrence before it fires.
    pub schedule_since: UnixMillis,
    pub created_at: UnixMillis,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct WindowTargetRecord {
    pub id: String,
    pub window_id: String,
    pub name: String,
    /// Target expressions, as Run Command takes them.
    pub targets: Vec<String>,
    pub created_at: UnixMillis,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct WindowTaskRecord {
    pub id: String,
    pub window_id: String,
    pub name: String,
    pub document: String,
    pub document_version: Option<i64>,
    /// JSON text: name -> list of values.
    pub parameters: String,
    pub priority: i64,
    pub max_concurrency: String,
    pub max_errors: String,
    pub cutoff_behavior: CutoffBehavior,
    pub created_at: UnixMillis,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct WindowExecutionRecord {
    pub id: String,
    pub window_id: String,
    /// The occurrence's instant: when the window opened.
    pub occurrence_at: UnixMillis,
    pub duration_hours: i64,
    pub cutoff_hours: i64,
    pub status: ExecutionStatus,
    pub detail: String,
    pub started_at: UnixMillis,
    pub ended_at: Option<UnixMillis>,
}

/// One task of one execution, with the task's settings as they were at the occurrence.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TaskInvocationRecord {
    pub execution_id: String,
    pub task_id: String,
    pub task_name: String,
    pub document: String,
    pub document_version: Option<i64>,
    pub parameters: String,
    pub priority: i64,
    pub max_concurrency: String,
    pub max_errors: String,
    pub cutoff_behavior: CutoffBehavior,
    pub status: TaskStatus,
    pub command_id: Option<String>,
    /// Why it is in its status, when that needs saying ("not started: past the cutoff at ...").
    pub reason: String,
    pub started_at: Option<UnixMillis>,
    pub ended_at: Option<UnixMillis>,
}

#[async_trait]
pub trait WindowStore: Send + Sync {
    /// False when the name is taken (nothing stored).
    async fn create_window(&self, window: &WindowRecord) -> Result<bool, StoreError>;
    /// Replaces the window's settings; false when it does not exist.
    async fn update_window(&self, window: &WindowRecord) -> Result<bool, StoreError>;
    async fn get_window(&self, id: &str) -> Result<Option<WindowRecord>, StoreError>;
    async fn find_window_by_name(&self, name: &str) -> Result<Option<WindowRecord>, StoreError>;
    /// By name.
    async fn list_windows(&self) -> Result<Vec<WindowRecord>, StoreError>;
    /// Deletes the window with its targets, tasks, executions and task invocations; false
    /// when it did not exist.
    async fn delete_window(&self, id: &str) -> Result<bool, StoreError>;

    async fn add_window_target(&self, target: &WindowTargetRecord) -> Result<(), StoreError>;
    async fn remove_window_target(&self, window_id: &str, target_id: &str) -> Result<bool, StoreError>;
    /// In the order they were added.
    async fn list_window_targets(&self, window_id: &str) -> Result<Vec<WindowTargetRecord>, StoreError>;

    async fn add_window_task(&self, task: &WindowTaskRecord) -> Result<(), StoreError>;
    async fn remove_window_task(&self, window_id: &str, task_id: &str) -> Result<bool, StoreError>;
    /// By priority, then in the order they were added.
    async fn list_window_tasks(&self, window_id: &str) -> Result<Vec<WindowTaskRecord>, StoreError>;

    /// Stores an execution with its task invocations; false (nothing stored) when the window
    /// already has an execution for that occurrence.
    async fn create_window_execution(
        &self,
        execution: &WindowExecutionRecord,
        tasks: &[TaskInvocationRecord],
    ) -> Result<bool, StoreError>;
    /// Writes the execution's status, detail and end.
    async fn update_window_execution(&self, execution: &WindowExecutionRecord) -> Result<(), StoreError>;
    async fn get_window_execution(&self, id: &str) -> Result<Option<WindowExecutionRecord>, StoreError>;
    /// Newest occurrence first, at most `limit`.
    async fn list_window_executions(
        &self,
        window_id: &str,
        limit: u32,
    ) -> Result<Vec<WindowExecutionRecord>, StoreError>;
    /// PENDING and IN_PROGRESS executions of every window (to resume after a restart).
    async fn unfinished_window_executions(&self) -> Result<Vec<WindowExecutionRecord>, StoreError>;
    /// By priority, then task name.
    async fn list_task_invocations(&self, execution_id: &str) -> Result<Vec<TaskInvocationRecord>, StoreError>;
    /// Marks a PENDING task invocation IN_PROGRESS, started at `started_at`: true when this
    /// call did (the caller alone may start it), false when it was no longer PENDING (another
    /// driver, on this server or another, took it first).
    async fn claim_task_start(
        &self,
        execution_id: &str,
        task_id: &str,
        started_at: UnixMillis,
    ) -> Result<bool, StoreError>;
    async fn update_task_invocation(&self, invocation: &TaskInvocationRecord) -> Result<(), StoreError>;
}
