//! The windows' [`ScheduleSource`] (key `window:ID`): each enabled window's schedule, whose
//! occurrence creates one execution and starts its driver.
//!
//! Invariants: exactly once across servers comes from the scheduler's claim, and again from the
//! store (an execution is unique per (window, occurrence)); the grace is the time from the
//! occurrence to its cutoff, so an occurrence missed while no server ran still opens late
//! while tasks may start, and never after; an occurrence outside the window's dates, or one
//! coming while the window's previous execution is still in progress (SKIPPED_OVERLAPPING),
//! runs no task.

use std::sync::Arc;

use async_trait::async_trait;
use flotilla_core::UnixMillis;
use flotilla_core::window::{self, ExecutionStatus, Occurrence, TaskStatus};
use flotilla_store::{TaskInvocationRecord, WindowExecutionRecord, WindowRecord};

use super::{driver, new_id, occurrence_of, spec_of};
use crate::app::AppState;
use crate::platform::scheduler::{ScheduleEntry, ScheduleSource, SourceError};
use crate::platform::{ServiceError, now_ms};

/// Windows' keys in the scheduler's occurrence record.
pub const KEY_PREFIX: &str = "window:";

pub fn key(window_id: &str) -> String {
    format!("{KEY_PREFIX}{window_id}")
}

pub struct WindowSchedules {
    state: Arc<AppState>,
}

impl WindowSchedules {
    pub fn new(state: Arc<AppState>) -> WindowSchedules {
        WindowSchedules { state }
    }
}

#[async_trait]
impl ScheduleSource for WindowSchedules {
    fn name(&self) -> &'static str {
        "maintenance windows"
    }

    async fn schedules(&self) -> Result<Vec<ScheduleEntry>, SourceError> {
        let windows = self
            .state
            .store
            .list_windows()
            .await
            .map_err(|e| SourceError(format!("cannot read maintenance windows: {e}")))?;
        let mut out = Vec::new();
        for w in windows.into_iter().filter(|w| w.enabled) {
            let spec = spec_of(&w);
            match window::schedule_of(&spec, w.schedule_since) {
                Ok(schedule) => out.push(ScheduleEntry {
                    key: key(&w.id),
                    schedule,
                    grace_ms: Occurrence::grace_ms(spec.duration_hours, spec.cutoff_hours),
                    since: w.schedule_since,
                }),
                Err(e) => tracing::warn!(window = %w.id, "window schedule skipped: {e}"),
            }
        }
        Ok(out)
    }

    async fn fire(&self, key: &str, occurrence_at: UnixMillis) -> Result<(), SourceError> {
        let id = key.strip_prefix(KEY_PREFIX).unwrap_or(key);
        open(&self.state, id, occurrence_at)
            .await
            .map_err(|e| SourceError(format!("window {id}: the occurrence at {occurrence_at} did not open: {e}")))
    }
}

/// Opens the occurrence `at` of window `id`: one execution (its tasks as they are now), driven
/// at once.
async fn open(state: &Arc<AppState>, id: &str, at: UnixMillis) -> Result<(), ServiceError> {
    let Some(w) = state.store.get_window(id).await? else {
        tracing::info!(window = %id, "occurrence of a removed window ignored");
        return Ok(());
    };
    if !w.enabled {
        tracing::info!(window = %w.id, "occurrence of a disabled window ignored");
        return Ok(());
    }
    if !window::in_dates(at, w.start_date, w.end_date) {
        tracing::info!(window = %w.id, occurrence = at, "occurrence outside the window's start and end dates: no execution");
        return Ok(());
    }
    let now = now_ms();
    let base = WindowExecutionRecord {
        id: new_id("we-"),
        window_id: w.id.clone(),
        occurrence_at: at,
        duration_hours: w.duration_hours,
        cutoff_hours: w.cutoff_hours,
        status: ExecutionStatus::Pending,
        detail: String::new(),
        started_at: now,
        ended_at: None,
    };
    if let Some(previous) = overlapping(state, &w, at).await? {
        let skipped = WindowExecutionRecord {
            status: ExecutionStatus::SkippedOverlapping,
            detail: format!(
                "the execution {} of the occurrence at {} was still in progress",
                previous.id,
                window::local_rfc3339(previous.occurrence_at, w.timezone.as_deref())
            ),
            ended_at: Some(now),
            ..base
        };
        if state.store.create_window_execution(&skipped, &[]).await? {
            tracing::warn!(window = %w.id, execution = %skipped.id, "window occurrence skipped: {}", skipped.detail);
        }
        return Ok(());
    }
    let tasks: Vec<TaskInvocationRecord> = state
        .store
        .list_window_tasks(&w.id)
        .await?
        .into_iter()
        .map(|t| TaskInvocationRecord {
            execution_id: base.id.clone(),
            task_id: t.id,
            task_name: t.name,
            document: t.document,
            document_version: t.document_version,
            parameters: t.parameters,
            priority: t.priority,
            max_concurrency: t.max_concurrency,
            max_errors: t.max_errors,
            cutoff_behavior: t.cutoff_behavior,
            status: TaskStatus::Pending,
            command_id: None,
            reason: String::new(),
            started_at: None,
            ended_at: None,
        })
        .collect();
    if state.store.create_window_execution(&base, &tasks).await? {
        tracing::info!(window = %w.id, execution = %base.id, tasks = tasks.len(), "maintenance window opened");
        driver::spawn(state.clone(), base.id);
    } else {
        tracing::info!(window = %w.id, occurrence = at, "this occurrence already has its execution");
    }
    Ok(())
}

/// The window's unfinished execution of another occurrence that is still open at `at`.
async fn overlapping(
    state: &AppState,
    w: &WindowRecord,
    at: UnixMillis,
) -> Result<Option<WindowExecutionRecord>, ServiceError> {
    Ok(state
        .store
        .unfinished_window_executions()
        .await?
        .into_iter()
        .find(|e| e.window_id == w.id && e.occurrence_at != at && occurrence_of(e).end() > at))
}
