//! `/api/v1/windows` routes (bearer token, like the rest of `/api/v1`), and the one place where
//! windows and their executions become REST types. `{window}` is a window's id or its name.

use std::collections::BTreeMap;
use std::sync::Arc;

use axum::Json;
use axum::extract::{Path, RawQuery, State};
use axum::http::StatusCode;
use flotilla_api as api;
use flotilla_core::window::{self, CutoffBehavior};
use flotilla_store::{TaskInvocationRecord, WindowTargetRecord, WindowTaskRecord};
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

use crate::app::AppState;
use crate::platform::ServiceError;
use crate::platform::api_error::ApiError;
use crate::platform::extract::{Body, query_values};
use crate::windows::{self as windows, ExecutionView, NewTask, NewWindow, WindowPatch, WindowView};

type Result<T> = std::result::Result<T, ApiError>;
type S = State<Arc<AppState>>;

/// How many occurrences `next` lists unless asked.
const DEFAULT_NEXT: usize = 5;

pub fn routes() -> OpenApiRouter<Arc<AppState>> {
    OpenApiRouter::new()
        .routes(routes!(list_windows, create_window))
        .routes(routes!(show_window, update_window, remove_window))
        .routes(routes!(window_next))
        .routes(routes!(add_window_target))
        .routes(routes!(remove_window_target))
        .routes(routes!(add_window_task))
        .routes(routes!(remove_window_task))
        .routes(routes!(window_executions))
}

#[utoipa::path(post, path = "/api/v1/windows", request_body = api::CreateWindow,
    responses((status = 201, body = api::Window), (status = 400, body = api::ErrorBody), (status = 409, body = api::ErrorBody)))]
async fn create_window(State(state): S, Body(req): Body<api::CreateWindow>) -> Result<(StatusCode, Json<api::Window>)> {
    let new = NewWindow {
        name: req.name,
        schedule: req.schedule,
        timezone: req.timezone,
        duration_hours: req.duration_hours,
        cutoff_hours: req.cutoff_hours,
        start_date: req.start_date,
        end_date: req.end_date,
        enabled: req.enabled.unwrap_or(true),
    };
    Ok((StatusCode::CREATED, Json(window_to_api(windows::create(&state, new).await?))))
}

#[utoipa::path(get, path = "/api/v1/windows", responses((status = 200, body = [api::Window])))]
async fn list_windows(State(state): S) -> Result<Json<Vec<api::Window>>> {
    Ok(Json(windows::list(&state).await?.into_iter().map(window_to_api).collect()))
}

#[utoipa::path(get, path = "/api/v1/windows/{window}",
    responses((status = 200, body = api::Window), (status = 404, body = api::ErrorBody)))]
async fn show_window(State(state): S, Path(win): Path<String>) -> Result<Json<api::Window>> {
    Ok(Json(window_to_api(windows::show(&state, &win).await?)))
}

#[utoipa::path(patch, path = "/api/v1/windows/{window}", request_body = api::UpdateWindow,
    responses((status = 200, body = api::Window), (status = 400, body = api::ErrorBody), (status = 404, body = api::ErrorBody)))]
async fn update_window(
    State(state): S,
    Path(win): Path<String>,
    Body(req): Body<api::UpdateWindow>,
) -> Result<Json<api::Window>> {
    let patch = WindowPatch {
        name: req.name,
        schedule: req.schedule,
        timezone: req.timezone,
        duration_hours: req.duration_hours,
        cutoff_hours: req.cutoff_hours,
        start_date: req.start_date,
        end_date: req.end_date,
        enabled: req.enabled,
    };
    Ok(Json(window_to_api(windows::update(&state, &win, patch).await?)))
}

#[utoipa::path(delete, path = "/api/v1/windows/{window}",
    responses((status = 200), (status = 404, body = api::ErrorBody), (status = 409, body = api::ErrorBody)))]
async fn remove_window(State(state): S, Path(win): Path<String>) -> Result<Json<()>> {
    windows::remove(&state, &win).await?;
    Ok(Json(()))
}

#[utoipa::path(get, path = "/api/v1/windows/{window}/next",
    params(("count" = Option<u32>, Query, description = "How many (1 to 100, default 5)")),
    responses((status = 200, description = "RFC 3339 instants with the window's UTC offset", body = [String]),
        (status = 404, body = api::ErrorBody)))]
async fn window_next(State(state): S, Path(win): Path<String>, RawQuery(raw): RawQuery) -> Result<Json<Vec<String>>> {
    let count = match query_values(raw.as_deref(), "count").into_iter().next() {
        None => DEFAULT_NEXT,
        Some(text) => text
            .parse::<usize>()
            .map_err(|_| ServiceError::Invalid(format!("count `{text}` is not a whole number from 1 to 100")))?,
    };
    let (w, list) = windows::next(&state, &win, count).await?;
    Ok(Json(list.into_iter().map(|t| window::local_rfc3339(t, w.timezone.as_deref())).collect()))
}

#[utoipa::path(post, path = "/api/v1/windows/{window}/targets", request_body = api::AddWindowTarget,
    responses((status = 201, body = api::WindowTarget), (status = 400, body = api::ErrorBody), (status = 404, body = api::ErrorBody)))]
async fn add_window_target(
    State(state): S,
    Path(win): Path<String>,
    Body(req): Body<api::AddWindowTarget>,
) -> Result<(StatusCode, Json<api::WindowTarget>)> {
    let (_, target) = windows::add_target(&state, &win, req.targets, req.name).await?;
    Ok((StatusCode::CREATED, Json(target_to_api(target))))
}

#[utoipa::path(delete, path = "/api/v1/windows/{window}/targets/{target}",
    responses((status = 200), (status = 404, body = api::ErrorBody)))]
async fn remove_window_target(State(state): S, Path((win, target)): Path<(String, String)>) -> Result<Json<()>> {
    windows::remove_target(&state, &win, &target).await?;
    Ok(Json(()))
}

#[utoipa::path(post, path = "/api/v1/windows/{window}/tasks", request_body = api::AddWindowTask,
    responses((status = 201, body = api::WindowTask), (status = 400, body = api::ErrorBody), (status = 404, body = api::ErrorBody)))]
async fn add_window_task(
    State(state): S,
    Path(win): Path<String>,
    Body(req): Body<api::AddWindowTask>,
) -> Result<(StatusCode, Json<api::WindowTask>)> {
    let cutoff_behavior = req
        .cutoff_behavior
        .as_deref()
        .map(|b| b.parse::<CutoffBehavior>())
        .transpose()
        .map_err(|e| ServiceError::Invalid(format!("--cutoff-behavior: {e}")))?;
    let new = NewTask {
        document: req.document,
        document_version: req.document_version,
        parameters: req.parameters,
        priority: req.priority,
        max_concurrency: req.max_concurrency,
        max_errors: req.max_errors,
        cutoff_behavior,
        name: req.name,
    };
    let (_, task) = windows::add_task(&state, &win, new).await?;
    Ok((StatusCode::CREATED, Json(task_to_api(task))))
}

#[utoipa::path(delete, path = "/api/v1/windows/{window}/tasks/{task}",
    responses((status = 200), (status = 404, body = api::ErrorBody)))]
async fn remove_window_task(State(state): S, Path((win, task)): Path<(String, String)>) -> Result<Json<()>> {
    windows::remove_task(&state, &win, &task).await?;
    Ok(Json(()))
}

#[utoipa::path(get, path = "/api/v1/windows/{window}/executions",
    responses((status = 200, body = [api::WindowExecution]), (status = 404, body = api::ErrorBody)))]
async fn window_executions(State(state): S, Path(win): Path<String>) -> Result<Json<Vec<api::WindowExecution>>> {
    Ok(Json(windows::executions(&state, &win).await?.into_iter().map(execution_to_api).collect()))
}

fn target_to_api(t: WindowTargetRecord) -> api::WindowTarget {
    api::WindowTarget { id: t.id, name: t.name, targets: t.targets }
}

fn task_to_api(t: WindowTaskRecord) -> api::WindowTask {
    api::WindowTask {
        parameters: serde_json::from_str::<BTreeMap<String, Vec<String>>>(&t.parameters).unwrap_or_default(),
        id: t.id,
        name: t.name,
        document: t.document,
        document_version: t.document_version,
        priority: u32::try_from(t.priority).unwrap_or(u32::MAX),
        max_concurrency: t.max_concurrency,
        max_errors: t.max_errors,
        cutoff_behavior: t.cutoff_behavior.as_str().to_owned(),
    }
}

fn window_to_api(v: WindowView) -> api::Window {
    let w = v.window;
    let tz = w.timezone.as_deref();
    let utc = |t: i64| window::local_rfc3339(t, None);
    api::Window {
        next_execution_at: v.next.map(|t| window::local_rfc3339(t, tz)),
        timezone: tz.unwrap_or("UTC").to_owned(),
        duration_hours: u32::try_from(w.duration_hours).unwrap_or(0),
        cutoff_hours: u32::try_from(w.cutoff_hours).unwrap_or(0),
        start_date: w.start_date.map(utc),
        end_date: w.end_date.map(utc),
        created_at: api::rfc3339(w.created_at),
        targets: v.targets.into_iter().map(target_to_api).collect(),
        tasks: v.tasks.into_iter().map(task_to_api).collect(),
        id: w.id,
        name: w.name,
        schedule: w.schedule,
        enabled: w.enabled,
    }
}

fn invocation_to_api(t: TaskInvocationRecord, tz: Option<&str>) -> api::WindowTaskInvocation {
    api::WindowTaskInvocation {
        task_id: t.task_id,
        task_name: t.task_name,
        document: t.document,
        priority: u32::try_from(t.priority).unwrap_or(u32::MAX),
        cutoff_behavior: t.cutoff_behavior.as_str().to_owned(),
        status: t.status.as_str().to_owned(),
        command_id: t.command_id,
        reason: t.reason,
        started_at: t.started_at.map(|s| window::local_rfc3339(s, tz)),
        ended_at: t.ended_at.map(|s| window::local_rfc3339(s, tz)),
    }
}

fn execution_to_api(v: ExecutionView) -> api::WindowExecution {
    let tz = v.timezone.as_deref();
    let e = v.execution;
    let occurrence = windows::occurrence_of(&e);
    api::WindowExecution {
        status: e.status.as_str().to_owned(),
        occurrence_at: window::local_rfc3339(e.occurrence_at, tz),
        cutoff_at: window::local_rfc3339(occurrence.cutoff_at(), tz),
        end_at: window::local_rfc3339(occurrence.end(), tz),
        started_at: window::local_rfc3339(e.started_at, tz),
        ended_at: e.ended_at.map(|t| window::local_rfc3339(t, tz)),
        task_invocations: v.tasks.into_iter().map(|t| invocation_to_api(t, tz)).collect(),
        id: e.id,
        window_id: e.window_id,
        detail: e.detail,
    }
}
