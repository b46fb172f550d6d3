//! Maintenance windows: windows (schedule with zone, duration, cutoff, dates, enabled), their
//! registered targets and tasks, and their executions — one per occurrence, created by the one
//! scheduler through [`schedules::WindowSchedules`] and driven by [`driver`].
//!
//! Invariants: every rule of a window is `flotilla_core::window`'s, checked when it is created
//! or its schedule, zone or dates change (a window that could never open is refused); a task is
//! stored only if its document plans with its parameters now; an execution is unique per
//! (window, occurrence) in the store; a window with an execution in progress is not removed
//! (its driver would lose its record mid-window).

pub mod driver;
pub mod http;
pub mod schedules;

use std::collections::BTreeMap;
use std::str::FromStr;

use flotilla_core::UnixMillis;
use flotilla_core::command::{MaxConcurrency, MaxErrors};
use flotilla_core::window::{self, CutoffBehavior, Occurrence, WindowSpec};
use flotilla_store::{TaskInvocationRecord, WindowExecutionRecord, WindowRecord, WindowTargetRecord, WindowTaskRecord};

use crate::app::AppState;
use crate::platform::secret::random_bytes;
use crate::platform::{ServiceError, now_ms};

/// Most executions `executions` lists (newest first).
const EXECUTIONS_LISTED: u32 = 100;

fn new_id(prefix: &str) -> String {
    let bytes: [u8; 8] = random_bytes();
    format!("{prefix}{}", bytes.iter().map(|b| format!("{b:02x}")).collect::<String>())
}

fn invalid(e: window::WindowError) -> ServiceError {
    ServiceError::Invalid(e.to_string())
}

fn hours(v: i64) -> u32 {
    u32::try_from(v).unwrap_or(0)
}

/// A window as an operator creates it.
#[derive(Debug, Clone, Default)]
pub struct NewWindow {
    pub name: String,
    pub schedule: String,
    pub timezone: Option<String>,
    pub duration_hours: u32,
    pub cutoff_hours: u32,
    pub start_date: Option<String>,
    pub end_date: Option<String>,
    pub enabled: bool,
}

/// A change to a window: only what is given changes; `Some("")` removes a date.
#[derive(Debug, Clone, Default)]
pub struct WindowPatch {
    pub name: Option<String>,
    pub schedule: Option<String>,
    pub timezone: Option<String>,
    pub duration_hours: Option<u32>,
    pub cutoff_hours: Option<u32>,
    pub start_date: Option<String>,
    pub end_date: Option<String>,
    pub enabled: Option<bool>,
}

/// A task as an operator registers it.
#[derive(Debug, Clone, Default)]
pub struct NewTask {
    pub document: String,
    pub document_version: Option<i64>,
    pub parameters: BTreeMap<String, Vec<String>>,
    pub priority: Option<u32>,
    pub max_concurrency: Option<String>,
    pub max_errors: Option<String>,
    pub cutoff_behavior: Option<CutoffBehavior>,
    pub name: Option<String>,
}

/// A window with its targets, tasks and next occurrence.
#[derive(Debug, Clone)]
pub struct WindowView {
    pub window: WindowRecord,
    pub targets: Vec<WindowTargetRecord>,
    pub tasks: Vec<WindowTaskRecord>,
    pub next: Option<UnixMillis>,
}

/// An execution with its task invocations and the window's zone (for showing its times).
#[derive(Debug, Clone)]
pub struct ExecutionView {
    pub execution: WindowExecutionRecord,
    pub tasks: Vec<TaskInvocationRecord>,
    pub timezone: Option<String>,
}

pub(crate) fn spec_of(w: &WindowRecord) -> WindowSpec {
    WindowSpec {
        name: w.name.clone(),
        schedule: w.schedule.clone(),
        timezone: w.timezone.clone(),
        duration_hours: hours(w.duration_hours),
        cutoff_hours: hours(w.cutoff_hours),
        start_date: w.start_date,
        end_date: w.end_date,
    }
}

/// The occurrence an execution stands for.
pub(crate) fn occurrence_of(e: &WindowExecutionRecord) -> Occurrence {
    Occurrence { start: e.occurrence_at, duration_hours: hours(e.duration_hours), cutoff_hours: hours(e.cutoff_hours) }
}

fn date(text: Option<&str>) -> Result<Option<UnixMillis>, ServiceError> {
    match text.map(str::trim) {
        None | Some("") => Ok(None),
        Some(t) => window::parse_date(t).map(Some).map_err(invalid),
    }
}

fn zone(text: Option<String>) -> Option<String> {
    text.map(|t| t.trim().to_owned()).filter(|t| !t.is_empty())
}

/// The window named by `win`: its id (`mw-...`) or its name.
pub async fn resolve(state: &AppState, win: &str) -> Result<WindowRecord, ServiceError> {
    let found = if window::is_id_shaped(win) {
        state.store.get_window(win).await?
    } else {
        state.store.find_window_by_name(win).await?
    };
    found.ok_or_else(|| ServiceError::missing("maintenance window", win, "list them with `flotilla windows ls`"))
}

async fn view(state: &AppState, window: WindowRecord) -> Result<WindowView, ServiceError> {
    let targets = state.store.list_window_targets(&window.id).await?;
    let tasks = state.store.list_window_tasks(&window.id).await?;
    let next = if window.enabled { next_occurrences(&window, now_ms(), 1).first().copied() } else { None };
    Ok(WindowView { window, targets, tasks, next })
}

/// The next `count` occurrences after `after`, inside the window's dates.
fn next_occurrences(w: &WindowRecord, after: UnixMillis, count: usize) -> Vec<UnixMillis> {
    match window::schedule_of(&spec_of(w), w.schedule_since) {
        Ok(schedule) => window::occurrences(&schedule, after, w.start_date, w.end_date, count),
        Err(e) => {
            tracing::warn!(window = %w.id, "window schedule unreadable: {e}");
            Vec::new()
        }
    }
}

pub async fn create(state: &AppState, req: NewWindow) -> Result<WindowView, ServiceError> {
    let now = now_ms();
    let spec = WindowSpec {
        name: req.name.trim().to_owned(),
        schedule: req.schedule.trim().to_owned(),
        timezone: zone(req.timezone),
        duration_hours: req.duration_hours,
        cutoff_hours: req.cutoff_hours,
        start_date: date(req.start_date.as_deref())?,
        end_date: date(req.end_date.as_deref())?,
    };
    window::check(&spec, now).map_err(invalid)?;
    let record = WindowRecord {
        id: new_id("mw-"),
        name: spec.name,
        schedule: spec.schedule,
        timezone: spec.timezone,
        duration_hours: i64::from(spec.duration_hours),
        cutoff_hours: i64::from(spec.cutoff_hours),
        start_date: spec.start_date,
        end_date: spec.end_date,
        enabled: req.enabled,
        schedule_since: now,
        created_at: now,
    };
    if !state.store.create_window(&record).await? {
        return Err(ServiceError::clash(
            "maintenance window",
            &record.name,
            format!("a maintenance window named `{}` already exists: choose another name", record.name),
        ));
    }
    tracing::info!(window = %record.id, name = %record.name, schedule = %record.schedule, "maintenance window created");
    state.scheduler.changed();
    view(state, record).await
}

pub async fn update(state: &AppState, win: &str, patch: WindowPatch) -> Result<WindowView, ServiceError> {
    let old = resolve(state, win).await?;
    let mut new = old.clone();
    if let Some(name) = patch.name {
        new.name = name.trim().to_owned();
    }
    if let Some(schedule) = patch.schedule {
        new.schedule = schedule.trim().to_owned();
    }
    if let Some(tz) = patch.timezone {
        new.timezone = zone(Some(tz));
    }
    if let Some(d) = patch.duration_hours {
        new.duration_hours = i64::from(d);
    }
    if let Some(c) = patch.cutoff_hours {
        new.cutoff_hours = i64::from(c);
    }
    if let Some(s) = patch.start_date {
        new.start_date = date(Some(&s))?;
    }
    if let Some(e) = patch.end_date {
        new.end_date = date(Some(&e))?;
    }
    if let Some(enabled) = patch.enabled {
        new.enabled = enabled;
    }
    let now = now_ms();
    let spec = spec_of(&new);
    let schedule_changed = new.schedule != old.schedule
        || new.timezone != old.timezone
        || new.start_date != old.start_date
        || new.end_date != old.end_date;
    if schedule_changed {
        // A new schedule starts now: nothing from before the change is caught up.
        window::check(&spec, now).map_err(invalid)?;
        new.schedule_since = now;
    } else {
        window::validate_name(&spec.name).map_err(invalid)?;
        window::validate_hours(spec.duration_hours, spec.cutoff_hours).map_err(invalid)?;
    }
    if new.name != old.name && state.store.find_window_by_name(&new.name).await?.is_some() {
        return Err(ServiceError::clash(
            "maintenance window",
            &new.name,
            format!("a maintenance window named `{}` already exists: choose another name", new.name),
        ));
    }
    if !state.store.update_window(&new).await? {
        return Err(ServiceError::missing("maintenance window", win, "it was removed meanwhile"));
    }
    state.scheduler.changed();
    view(state, new).await
}

pub async fn list(state: &AppState) -> Result<Vec<WindowView>, ServiceError> {
    let mut out = Vec::new();
    for w in state.store.list_windows().await? {
        out.push(view(state, w).await?);
    }
    Ok(out)
}

pub async fn show(state: &AppState, win: &str) -> Result<WindowView, ServiceError> {
    let w = resolve(state, win).await?;
    view(state, w).await
}

/// Removes a window with its targets, tasks and execution history, and forgets its
/// occurrences. Refused while one of its executions is in progress.
pub async fn remove(state: &AppState, win: &str) -> Result<(), ServiceError> {
    let w = resolve(state, win).await?;
    if let Some(running) = state.store.unfinished_window_executions().await?.into_iter().find(|e| e.window_id == w.id) {
        let end = window::local_rfc3339(occurrence_of(&running).end(), w.timezone.as_deref());
        return Err(ServiceError::clash(
            "maintenance window",
            &w.name,
            format!(
                "window `{}` has the execution {} in progress until {end}: remove it after that (disable it meanwhile \
                 with `flotilla windows update {} --disabled` so that no new one starts)",
                w.name, running.id, w.name
            ),
        ));
    }
    state.store.delete_window(&w.id).await?;
    state.store.delete_occurrences(&schedules::key(&w.id)).await?;
    state.scheduler.changed();
    tracing::info!(window = %w.id, name = %w.name, "maintenance window removed");
    Ok(())
}

/// `windows next`: the next `count` occurrences inside the dates (whether enabled or not).
pub async fn next(state: &AppState, win: &str, count: usize) -> Result<(WindowRecord, Vec<UnixMillis>), ServiceError> {
    if !(1..=window::MAX_NEXT).contains(&count) {
        return Err(ServiceError::Invalid(format!("--count {count} is outside 1 to {}", window::MAX_NEXT)));
    }
    let w = resolve(state, win).await?;
    let list = next_occurrences(&w, now_ms(), count);
    Ok((w, list))
}

pub async fn add_target(
    state: &AppState,
    win: &str,
    targets: Vec<String>,
    name: Option<String>,
) -> Result<(WindowRecord, WindowTargetRecord), ServiceError> {
    let w = resolve(state, win).await?;
    let targets: Vec<String> = targets.into_iter().map(|t| t.trim().to_owned()).filter(|t| !t.is_empty()).collect();
    if targets.is_empty() {
        return Err(ServiceError::Invalid(
            "no target: give at least one --target (a node id, tag:KEY=VALUE, tag:KEY, group:NAME or all; join terms \
             with & and negate one with !)"
                .into(),
        ));
    }
    crate::fleet::parse_targets(&targets)?;
    let name = zone(name).unwrap_or_else(|| targets.join(" "));
    if name.chars().count() > 128 {
        return Err(ServiceError::Invalid("a target name has at most 128 characters".into()));
    }
    let record = WindowTargetRecord { id: new_id("wt-"), window_id: w.id.clone(), name, targets, created_at: now_ms() };
    state.store.add_window_target(&record).await?;
    Ok((w, record))
}

pub async fn remove_target(state: &AppState, win: &str, target: &str) -> Result<(), ServiceError> {
    let w = resolve(state, win).await?;
    if !state.store.remove_window_target(&w.id, target).await? {
        return Err(ServiceError::missing(
            "window target",
            target,
            &format!("see the targets of `{}` with `flotilla windows show {}`", w.name, w.name),
        ));
    }
    Ok(())
}

pub async fn add_task(
    state: &AppState,
    win: &str,
    req: NewTask,
) -> Result<(WindowRecord, WindowTaskRecord), ServiceError> {
    let w = resolve(state, win).await?;
    let document = req.document.trim().to_owned();
    if document.is_empty() {
        return Err(ServiceError::Invalid("no document: give --document NAME (see `flotilla documents ls`)".into()));
    }
    // The document must exist and plan with these parameters now; a task that cannot run is
    // not stored.
    crate::runcommand::documents::plan(state, &document, req.document_version, &req.parameters).await?;
    let max_concurrency = MaxConcurrency::from_str(req.max_concurrency.as_deref().unwrap_or("50"))
        .map_err(|e| ServiceError::Invalid(e.to_string()))?;
    let max_errors = MaxErrors::from_str(req.max_errors.as_deref().unwrap_or("0"))
        .map_err(|e| ServiceError::Invalid(e.to_string()))?;
    let name = zone(req.name).unwrap_or_else(|| document.clone());
    if name.chars().count() > 128 {
        return Err(ServiceError::Invalid("a task name has at most 128 characters".into()));
    }
    let record = WindowTaskRecord {
        id: new_id("wtask-"),
        window_id: w.id.clone(),
        name,
        document,
        document_version: req.document_version,
        parameters: serde_json::to_string(&req.parameters).map_err(|e| ServiceError::Internal(e.to_string()))?,
        priority: i64::from(req.priority.unwrap_or(1)),
        max_concurrency: max_concurrency.to_string(),
        max_errors: max_errors.to_string(),
        cutoff_behavior: req.cutoff_behavior.unwrap_or(CutoffBehavior::ContinueTask),
        created_at: now_ms(),
    };
    state.store.add_window_task(&record).await?;
    Ok((w, record))
}

pub async fn remove_task(state: &AppState, win: &str, task: &str) -> Result<(), ServiceError> {
    let w = resolve(state, win).await?;
    if !state.store.remove_window_task(&w.id, task).await? {
        return Err(ServiceError::missing(
            "window task",
            task,
            &format!("see the tasks of `{}` with `flotilla windows show {}`", w.name, w.name),
        ));
    }
    Ok(())
}

/// The window's executions, newest occurrence first, with their task invocations.
pub async fn executions(state: &AppState, win: &str) -> Result<Vec<ExecutionView>, ServiceError> {
    let w = resolve(state, win).await?;
    let mut out = Vec::new();
    for execution in state.store.list_window_executions(&w.id, EXECUTIONS_LISTED).await? {
        let tasks = state.store.list_task_invocations(&execution.id).await?;
        out.push(ExecutionView { execution, tasks, timezone: w.timezone.clone() });
    }
    Ok(out)
}
