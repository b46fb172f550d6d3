//! The execution driver: one transient worker (`window-execution ID`) per unfinished
//! execution. It asks `flotilla_core::window::plan` what to do, does it, and waits for its
//! commands' `Command.StatusChanged` events in the event log (or the next cutoff or end).
//!
//! Invariants:
//! - A task is started at most once: its start is claimed in the store (PENDING → IN_PROGRESS,
//!   a conditional update only one driver wins, on any server) before its command is created,
//!   and a task already IN_PROGRESS is never started again. A driver resumed after
//!   a restart therefore starts no task that has a command; one the server died while starting
//!   (IN_PROGRESS with no command recorded) is reported FAILED saying so, not started twice.
//! - Nothing starts from the cutoff on, resumed or not: the planner refuses, and pending tasks
//!   are recorded NOT_STARTED with the cutoff in the window's zone.
//! - At the window's end, work still running is recorded (TIMED_OUT, left running) or cancelled
//!   (CANCELLED) per its task's cutoff behaviour, and the execution ends.
//! - Every step reads the stored state again, so a restart at any point resumes correctly.

use std::collections::{BTreeMap, HashSet};
use std::sync::Arc;
use std::time::Duration;

use flotilla_core::window::{self, ExecutionStatus, TaskState, TaskStatus};
use flotilla_core::{Cursor, EventType, UnixMillis};
use flotilla_store::{TaskInvocationRecord, WindowExecutionRecord};

use super::occurrence_of;
use crate::app::AppState;
use crate::platform::{ServiceError, now_ms};
use crate::runcommand::commands::{self, NewCommand};

/// The longest a driver waits without reading the stored state again.
const RECHECK: Duration = Duration::from_secs(30);

/// Drives execution `id` as the transient worker `window-execution ID` (a panic restarts it
/// with backoff; every step resumes from the stored state).
pub fn spawn(state: Arc<AppState>, id: String) {
    let workers = state.workers.clone();
    let name = format!("window-execution {id}");
    let started = workers.spawn_transient(name, move |ctx| {
        let (state, id) = (state.clone(), id.clone());
        async move {
            ctx.running();
            let outcome = tokio::select! {
                () = ctx.cancelled() => return Ok(()),
                outcome = drive(&state, &id) => outcome,
            };
            if let Err(e) = outcome {
                tracing::error!(execution = %id, "window execution failed: {e}");
                if let Ok(Some(mut execution)) = state.store.get_window_execution(&id).await
                    && !execution.status.is_terminal()
                {
                    execution.status = ExecutionStatus::Failed;
                    execution.detail = e.to_string();
                    execution.ended_at = Some(now_ms());
                    let _ = state.store.update_window_execution(&execution).await;
                }
            }
            Ok(())
        }
    });
    if let Err(e) = started {
        tracing::debug!("{e}");
    }
}

/// At start-up: every unfinished execution continues where it was.
pub async fn resume(state: &Arc<AppState>) -> Result<(), ServiceError> {
    for execution in state.store.unfinished_window_executions().await? {
        tracing::info!(execution = %execution.id, status = %execution.status, "resuming window execution");
        spawn(state.clone(), execution.id);
    }
    Ok(())
}

fn local(t: UnixMillis, tz: Option<&str>) -> String {
    window::local_rfc3339(t, tz)
}

async fn drive(state: &Arc<AppState>, id: &str) -> Result<(), ServiceError> {
    let Some(mut execution) = state.store.get_window_execution(id).await? else { return Ok(()) };
    let window = state.store.get_window(&execution.window_id).await?;
    let tz = window.as_ref().and_then(|w| w.timezone.clone());
    let name = window.as_ref().map_or_else(|| execution.window_id.clone(), |w| w.name.clone());
    let occurrence = occurrence_of(&execution);
    if execution.status == ExecutionStatus::Pending {
        execution.status = ExecutionStatus::InProgress;
        state.store.update_window_execution(&execution).await?;
    }
    loop {
        // Taken BEFORE the commands are read: a command that ends after the read has its event
        // after this position, so the wait below cannot miss it.
        let from = state.events.last().await?;
        let mut tasks = state.store.list_task_invocations(id).await?;
        for task in tasks.iter_mut().filter(|t| t.status == TaskStatus::InProgress) {
            refresh(state, task).await?;
        }
        let now = now_ms();
        let states: Vec<TaskState> = tasks
            .iter()
            .map(|t| TaskState {
                priority: u32::try_from(t.priority).unwrap_or(u32::MAX),
                status: t.status,
                cutoff_behavior: t.cutoff_behavior,
            })
            .collect();
        let plan = window::plan(&occurrence, now, &states);
        for i in &plan.not_started {
            let task = &mut tasks[*i];
            task.status = TaskStatus::NotStarted;
            task.reason = format!("not started: past the cutoff at {}", local(occurrence.cutoff_at(), tz.as_deref()));
            state.store.update_task_invocation(task).await?;
            tracing::info!(execution = %id, task = %task.task_name, "window task not started: past the cutoff");
        }
        let end = local(occurrence.end(), tz.as_deref());
        for i in &plan.left_running {
            let task = &mut tasks[*i];
            task.status = TaskStatus::TimedOut;
            task.reason = format!(
                "still running at the window's end at {end}: left running (CONTINUE_TASK); follow it with `flotilla \
                 commands show {}`",
                task.command_id.as_deref().unwrap_or("-")
            );
            state.store.update_task_invocation(task).await?;
        }
        for i in &plan.cancel {
            let task = &mut tasks[*i];
            let mut reason = format!("still running at the window's end at {end}: cancelled (CANCEL_TASK)");
            if let Some(command) = &task.command_id
                && let Err(e) = commands::cancel(state, command).await
            {
                reason = format!("still running at the window's end at {end}: the cancel was refused: {e}");
            }
            task.status = TaskStatus::Cancelled;
            task.reason = reason;
            task.ended_at = Some(now);
            state.store.update_task_invocation(task).await?;
        }
        if let Some(status) = plan.finished {
            execution.status = status;
            execution.detail = summary(&tasks);
            execution.ended_at = Some(now_ms());
            state.store.update_window_execution(&execution).await?;
            tracing::info!(execution = %id, status = %status, detail = %execution.detail, "window execution ended");
            return Ok(());
        }
        if !plan.start.is_empty() {
            let targets = match &window {
                Some(w) => state.store.list_window_targets(&w.id).await?.into_iter().flat_map(|t| t.targets).collect(),
                None => Vec::new(),
            };
            for i in &plan.start {
                start(state, &name, &execution, &mut tasks[*i], &targets).await?;
            }
            continue;
        }
        let running: HashSet<String> =
            tasks.iter().filter(|t| t.status == TaskStatus::InProgress).filter_map(|t| t.command_id.clone()).collect();
        wait(state, from, &running, plan.wake_at.unwrap_or(now)).await?;
    }
}

/// A running task's command, read again: a finished command finishes the task.
async fn refresh(state: &AppState, task: &mut TaskInvocationRecord) -> Result<(), ServiceError> {
    let Some(command_id) = task.command_id.clone() else {
        task.status = TaskStatus::Failed;
        task.reason = "the server stopped while starting this task, before its command was recorded; it was not \
                       started again (a command may have been created: see `flotilla commands ls`)"
            .into();
        task.ended_at = Some(now_ms());
        state.store.update_task_invocation(task).await?;
        return Ok(());
    };
    let Some(command) = state.store.get_command(&command_id).await? else {
        task.status = TaskStatus::Failed;
        task.reason = format!("its command {command_id} is gone (removed by command retention?)");
        task.ended_at = Some(now_ms());
        state.store.update_task_invocation(task).await?;
        return Ok(());
    };
    if command.status.is_terminal() {
        task.status = if command.status == flotilla_core::command::CommandStatus::Success {
            TaskStatus::Success
        } else {
            TaskStatus::Failed
        };
        task.reason = format!("command {}", command.status);
        task.ended_at = Some(command.ended_at.unwrap_or_else(now_ms));
        state.store.update_task_invocation(task).await?;
    }
    Ok(())
}

/// Starts one task: marked IN_PROGRESS first (at most once), then its command.
async fn start(
    state: &AppState,
    window: &str,
    execution: &WindowExecutionRecord,
    task: &mut TaskInvocationRecord,
    targets: &[String],
) -> Result<(), ServiceError> {
    let now = now_ms();
    if !state.store.claim_task_start(&task.execution_id, &task.task_id, now).await? {
        // Another driver (a second server resuming the same execution) took it first.
        tracing::info!(execution = %execution.id, task = %task.task_name, "window task already started elsewhere");
        return Ok(());
    }
    task.status = TaskStatus::InProgress;
    task.started_at = Some(now);
    let created = if targets.is_empty() {
        Err(ServiceError::Invalid(format!(
            "the window has no registered targets: add some with `flotilla windows targets add {window} --target ...`"
        )))
    } else {
        let parameters: BTreeMap<String, Vec<String>> = serde_json::from_str(&task.parameters).unwrap_or_default();
        let comment: String =
            format!("window {window} {}: {}", execution.id, task.task_name).chars().take(100).collect();
        commands::create(
            state,
            NewCommand {
                document: task.document.clone(),
                document_version: task.document_version,
                parameters,
                targets: targets.to_vec(),
                max_concurrency: Some(task.max_concurrency.clone()),
                max_errors: Some(task.max_errors.clone()),
                comment: Some(comment),
                ..Default::default()
            },
        )
        .await
    };
    match created {
        Ok(command) => {
            tracing::info!(execution = %execution.id, task = %task.task_name, command_id = %command.record.id, "window task started");
            task.command_id = Some(command.record.id);
        }
        Err(e) => {
            tracing::warn!(execution = %execution.id, task = %task.task_name, "window task could not start: {e}");
            task.status = TaskStatus::Failed;
            task.reason = format!("not started: {e}");
            task.ended_at = Some(now_ms());
        }
    }
    state.store.update_task_invocation(task).await?;
    Ok(())
}

/// Waits until one of `running` ends (its final `Command.StatusChanged` after `from`), until
/// `until`, or [`RECHECK`], whichever comes first.
async fn wait(
    state: &AppState,
    from: Cursor,
    running: &HashSet<String>,
    until: UnixMillis,
) -> Result<(), ServiceError> {
    let started = tokio::time::Instant::now();
    let mut cursor = from;
    loop {
        let left = Duration::from_millis(u64::try_from(until.saturating_sub(now_ms())).unwrap_or(0));
        let budget = RECHECK.saturating_sub(started.elapsed()).min(left);
        if budget.is_zero() {
            return Ok(());
        }
        let events = state.events.wait_for(cursor, &[EventType::CommandStatusChanged], 500, budget).await?;
        for event in &events {
            cursor = cursor.advance(event.seq);
            let ours = event.resources.first().is_some_and(|c| running.contains(c));
            let ended = event
                .detail
                .get("status")
                .and_then(serde_json::Value::as_str)
                .and_then(|s| s.parse::<flotilla_core::command::CommandStatus>().ok())
                .is_some_and(|s| s.is_terminal());
            if ours && ended {
                return Ok(());
            }
        }
    }
}

/// `3 tasks: 2 SUCCESS, 1 NOT_STARTED`.
fn summary(tasks: &[TaskInvocationRecord]) -> String {
    let mut counts: BTreeMap<&str, usize> = BTreeMap::new();
    for t in tasks {
        *counts.entry(t.status.as_str()).or_default() += 1;
    }
    let parts: Vec<String> = counts.iter().map(|(s, n)| format!("{n} {s}")).collect();
    if tasks.is_empty() { "no tasks".into() } else { format!("{} task(s): {}", tasks.len(), parts.join(", ")) }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_summary_counts_each_status() {
        let t = |status| TaskInvocationRecord {
            execution_id: "we".into(),
            task_id: "t".into(),
            task_name: "t".into(),
            document: "d".into(),
            document_version: None,
            parameters: "{}".into(),
            priority: 1,
            max_concurrency: "50".into(),
            max_errors: "0".into(),
            cutoff_behavior: flotilla_core::window::CutoffBehavior::ContinueTask,
            status,
            command_id: None,
            reason: String::new(),
            started_at: None,
            ended_at: None,
        };
        assert_eq!(summary(&[]), "no tasks");
        let tasks = [t(TaskStatus::Success), t(TaskStatus::NotStarted), t(TaskStatus::Success)];
        assert_eq!(summary(&tasks), "3 task(s): 1 NOT_STARTED, 2 SUCCESS");
    }
}
