//! Maintenance windows on the REST surface: windows with their targets and tasks, their next
//! occurrences, and their executions with each task's command.
//!
//! Times of a window (occurrences, cutoff, end, an execution's and a task's start and end) are
//! RFC 3339 with the window's UTC offset at that instant (`2026-03-29T03:00:00+02:00`); the
//! start and end dates are instants, shown in UTC.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use crate::client::{Client, ClientError, enc};

/// Body of `POST /api/v1/windows`.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(deny_unknown_fields)]
pub struct CreateWindow {
    /// 3 to 128 of `[a-zA-Z0-9_.-]`.
    pub name: String,
    /// `cron(MIN HOUR DOM MON DOW)`, `rate(N minutes|hours|days)` or `at(YYYY-MM-DDTHH:MM:SS)`.
    pub schedule: String,
    /// IANA zone of the schedule (default UTC).
    #[serde(default)]
    pub timezone: Option<String>,
    /// 1 to 24 hours.
    pub duration_hours: u32,
    /// Hours before the end from which no new task starts: 0 to duration - 1.
    pub cutoff_hours: u32,
    /// ISO 8601; without an offset it is UTC. No occurrence before it runs.
    #[serde(default)]
    pub start_date: Option<String>,
    /// ISO 8601; without an offset it is UTC. No occurrence at or after it runs.
    #[serde(default)]
    pub end_date: Option<String>,
    /// Default true.
    #[serde(default)]
    pub enabled: Option<bool>,
}

/// Body of `PATCH /api/v1/windows/{window}`: only what is given changes. An empty
/// `start_date`/`end_date` removes it.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(deny_unknown_fields)]
pub struct UpdateWindow {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub name: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub schedule: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub timezone: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub duration_hours: Option<u32>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cutoff_hours: Option<u32>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub start_date: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub end_date: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub enabled: Option<bool>,
}

/// A registered target of a window.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct WindowTarget {
    pub id: String,
    pub name: String,
    /// Target expressions, as `flotilla run --target` takes them.
    pub targets: Vec<String>,
}

/// Body of `POST /api/v1/windows/{window}/targets`.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(deny_unknown_fields)]
pub struct AddWindowTarget {
    pub targets: Vec<String>,
    #[serde(default)]
    pub name: Option<String>,
}

/// A task of a window: a Run Command document run on the window's targets.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct WindowTask {
    pub id: String,
    pub name: String,
    pub document: String,
    /// None: the document's default version when the task starts.
    pub document_version: Option<i64>,
    pub parameters: BTreeMap<String, Vec<String>>,
    /// Lower runs first; equal priorities run together.
    pub priority: u32,
    pub max_concurrency: String,
    pub max_errors: String,
    /// CONTINUE_TASK or CANCEL_TASK: what happens to its work still running at the window's end.
    pub cutoff_behavior: String,
}

/// Body of `POST /api/v1/windows/{window}/tasks`.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(deny_unknown_fields)]
pub struct AddWindowTask {
    pub document: String,
    #[serde(default)]
    pub document_version: Option<i64>,
    #[serde(default)]
    pub parameters: BTreeMap<String, Vec<String>>,
    /// Default 1.
    #[serde(default)]
    pub priority: Option<u32>,
    /// N or N% (default 50).
    #[serde(default)]
    pub max_concurrency: Option<String>,
    /// N or N% (default 0).
    #[serde(default)]
    pub max_errors: Option<String>,
    /// CONTINUE_TASK (default) or CANCEL_TASK.
    #[serde(default)]
    pub cutoff_behavior: Option<String>,
    #[serde(default)]
    pub name: Option<String>,
}

/// A maintenance window.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct Window {
    pub id: String,
    pub name: String,
    pub schedule: String,
    /// IANA zone of the schedule.
    pub timezone: String,
    pub duration_hours: u32,
    pub cutoff_hours: u32,
    pub start_date: Option<String>,
    pub end_date: Option<String>,
    pub enabled: bool,
    /// The next occurrence inside the dates (null when disabled or there is none).
    pub next_execution_at: Option<String>,
    pub created_at: String,
    pub targets: Vec<WindowTarget>,
    /// By priority.
    pub tasks: Vec<WindowTask>,
}

/// One task of one execution.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct WindowTaskInvocation {
    pub task_id: String,
    pub task_name: String,
    pub document: String,
    pub priority: u32,
    pub cutoff_behavior: String,
    /// PENDING, IN_PROGRESS, SUCCESS, FAILED, TIMED_OUT (running at the window's end, left
    /// running), CANCELLED (running at the end, cancelled) or NOT_STARTED (past the cutoff).
    pub status: String,
    /// The Run Command command that ran it (`flotilla commands show ID`).
    pub command_id: Option<String>,
    pub reason: String,
    pub started_at: Option<String>,
    pub ended_at: Option<String>,
}

/// One execution of a window: one per occurrence.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct WindowExecution {
    pub id: String,
    pub window_id: String,
    /// PENDING, IN_PROGRESS, SUCCESS, FAILED, TIMED_OUT, CANCELLING, CANCELLED or SKIPPED_OVERLAPPING.
    pub status: String,
    /// The occurrence: when the window opened.
    pub occurrence_at: String,
    /// No task starts from this instant on.
    pub cutoff_at: String,
    /// The window closes.
    pub end_at: String,
    pub started_at: String,
    pub ended_at: Option<String>,
    pub detail: String,
    /// By priority.
    pub task_invocations: Vec<WindowTaskInvocation>,
}

impl Client {
    pub async fn create_window(&self, req: &CreateWindow) -> Result<Window, ClientError> {
        self.call(reqwest::Method::POST, "/api/v1/windows", Some(req)).await
    }

    pub async fn list_windows(&self) -> Result<Vec<Window>, ClientError> {
        self.get("/api/v1/windows").await
    }

    /// `window`: its id or its name.
    pub async fn get_window(&self, window: &str) -> Result<Window, ClientError> {
        self.get(&format!("/api/v1/windows/{}", enc(window))).await
    }

    pub async fn update_window(&self, window: &str, req: &UpdateWindow) -> Result<Window, ClientError> {
        self.call(reqwest::Method::PATCH, &format!("/api/v1/windows/{}", enc(window)), Some(req)).await
    }

    pub async fn delete_window(&self, window: &str) -> Result<(), ClientError> {
        self.call::<(), ()>(reqwest::Method::DELETE, &format!("/api/v1/windows/{}", enc(window)), None).await
    }

    /// The next `count` occurrences, in the window's zone.
    pub async fn window_next(&self, window: &str, count: u32) -> Result<Vec<String>, ClientError> {
        self.get(&format!("/api/v1/windows/{}/next?count={count}", enc(window))).await
    }

    pub async fn add_window_target(&self, window: &str, req: &AddWindowTarget) -> Result<WindowTarget, ClientError> {
        self.call(reqwest::Method::POST, &format!("/api/v1/windows/{}/targets", enc(window)), Some(req)).await
    }

    pub async fn remove_window_target(&self, window: &str, target: &str) -> Result<(), ClientError> {
        let path = format!("/api/v1/windows/{}/targets/{}", enc(window), enc(target));
        self.call::<(), ()>(reqwest::Method::DELETE, &path, None).await
    }

    pub async fn add_window_task(&self, window: &str, req: &AddWindowTask) -> Result<WindowTask, ClientError> {
        self.call(reqwest::Method::POST, &format!("/api/v1/windows/{}/tasks", enc(window)), Some(req)).await
    }

    pub async fn remove_window_task(&self, window: &str, task: &str) -> Result<(), ClientError> {
        let path = format!("/api/v1/windows/{}/tasks/{}", enc(window), enc(task));
        self.call::<(), ()>(reqwest::Method::DELETE, &path, None).await
    }

    /// Newest first.
    pub async fn window_executions(&self, window: &str) -> Result<Vec<WindowExecution>, ClientError> {
        self.get(&format!("/api/v1/windows/{}/executions", enc(window))).await
    }
}
