//! Run Command routes: documents, commands, their output (`/api/v1`, bearer token).

use std::collections::BTreeMap;
use std::sync::Arc;

use axum::Json;
use axum::extract::{Path, RawQuery, State};
use axum::http::StatusCode;
use flotilla_api as api;
use flotilla_store::{CommandRecord, InvocationRecord};
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

use crate::app::AppState;
use crate::platform::api_error::ApiError;
use crate::platform::extract::{Body, query_values};
use crate::runcommand::commands::{self, CommandDetail, CommandSummary, NewCommand};
use crate::runcommand::documents::{self, DocumentDetail, NewDocument};

type Result<T> = std::result::Result<T, ApiError>;
type S = State<Arc<AppState>>;

pub fn routes() -> OpenApiRouter<Arc<AppState>> {
    OpenApiRouter::new()
        .routes(routes!(list_documents, create_document))
        .routes(routes!(get_document, update_document))
        .routes(routes!(list_commands, create_command))
        .routes(routes!(get_command))
        .routes(routes!(cancel_command))
        .routes(routes!(command_output))
}

#[utoipa::path(get, path = "/api/v1/documents", responses((status = 200, body = [api::DocumentSummary])))]
async fn list_documents(State(state): S) -> Result<Json<Vec<api::DocumentSummary>>> {
    let heads = documents::list(&state).await?;
    Ok(Json(
        heads
            .into_iter()
            .map(|h| api::DocumentSummary {
                name: h.name,
                description: h.description,
                default_version: h.default_version,
                latest_version: h.latest_version,
            })
            .collect(),
    ))
}

#[utoipa::path(get, path = "/api/v1/documents/{name}", params(("version" = Option<i64>, Query, description = "Version; the default when absent")),
    responses((status = 200, body = api::Document), (status = 404, body = api::ErrorBody)))]
async fn get_document(
    State(state): S,
    Path(name): Path<String>,
    RawQuery(query): RawQuery,
) -> Result<Json<api::Document>> {
    let version = match query_values(query.as_deref(), "version").first() {
        Some(v) => Some(v.parse::<i64>().map_err(|_| ApiError::invalid(format!("version `{v}` is not a number")))?),
        None => None,
    };
    Ok(Json(document_to_api(documents::get(&state, &name, version).await?)))
}

#[utoipa::path(post, path = "/api/v1/documents", request_body = api::PutDocument,
    responses((status = 201, body = api::Document), (status = 400, body = api::ErrorBody), (status = 409, body = api::ErrorBody)))]
async fn create_document(
    State(state): S,
    Body(req): Body<api::PutDocument>,
) -> Result<(StatusCode, Json<api::Document>)> {
    Ok((StatusCode::CREATED, Json(document_to_api(documents::put(&state, new_document(req), true).await?))))
}

#[utoipa::path(put, path = "/api/v1/documents/{name}", request_body = api::PutDocument,
    responses((status = 200, body = api::Document), (status = 400, body = api::ErrorBody), (status = 404, body = api::ErrorBody)))]
async fn update_document(
    State(state): S,
    Path(name): Path<String>,
    Body(req): Body<api::PutDocument>,
) -> Result<Json<api::Document>> {
    if req.name != name {
        return Err(ApiError::invalid(format!("the body names document `{}` but the path names `{name}`", req.name)));
    }
    Ok(Json(document_to_api(documents::put(&state, new_document(req), false).await?)))
}

#[utoipa::path(get, path = "/api/v1/commands", responses((status = 200, body = [api::Command])))]
async fn list_commands(State(state): S) -> Result<Json<Vec<api::Command>>> {
    Ok(Json(commands::list(&state).await?.into_iter().map(summary_to_api).collect()))
}

#[utoipa::path(post, path = "/api/v1/commands", request_body = api::CreateCommand,
    responses((status = 201, body = api::Command), (status = 400, body = api::ErrorBody)))]
async fn create_command(
    State(state): S,
    Body(req): Body<api::CreateCommand>,
) -> Result<(StatusCode, Json<api::Command>)> {
    Ok((StatusCode::CREATED, Json(command_to_api(commands::create(&state, new_command(req)).await?))))
}

#[utoipa::path(get, path = "/api/v1/commands/{id}", responses((status = 200, body = api::Command), (status = 404, body = api::ErrorBody)))]
async fn get_command(State(state): S, Path(id): Path<String>) -> Result<Json<api::Command>> {
    Ok(Json(command_to_api(commands::get(&state, &id).await?)))
}

#[utoipa::path(post, path = "/api/v1/commands/{id}/cancel",
    responses((status = 200, body = api::Command), (status = 404, body = api::ErrorBody), (status = 409, body = api::ErrorBody)))]
async fn cancel_command(State(state): S, Path(id): Path<String>) -> Result<Json<api::Command>> {
    Ok(Json(command_to_api(commands::cancel(&state, &id).await?)))
}

#[utoipa::path(get, path = "/api/v1/commands/{id}/invocations/{node}/output",
    params(("stream" = Option<String>, Query, description = "stdout (default) or stderr")),
    responses((status = 200, description = "The full output, byte for byte", content_type = "application/octet-stream"), (status = 404, body = api::ErrorBody)))]
async fn command_output(
    State(state): S,
    Path((id, node)): Path<(String, String)>,
    RawQuery(query): RawQuery,
) -> Result<([(axum::http::header::HeaderName, &'static str); 1], Vec<u8>)> {
    let stream = query_values(query.as_deref(), "stream").into_iter().next().unwrap_or_else(|| "stdout".into());
    let bytes = commands::output(&state, &id, &node, &stream).await?;
    Ok(([(axum::http::header::CONTENT_TYPE, "application/octet-stream")], bytes))
}

fn new_document(req: api::PutDocument) -> NewDocument {
    NewDocument { name: req.name, content: req.content, format: req.format }
}

fn document_to_api(d: DocumentDetail) -> api::Document {
    let v = d.version;
    api::Document {
        name: v.name,
        version: v.version,
        default_version: d.default_version,
        latest_version: d.latest_version,
        description: v.description,
        format: v.format.as_str().to_owned(),
        content: v.content,
        created_at: api::rfc3339(v.created_at),
    }
}

fn new_command(req: api::CreateCommand) -> NewCommand {
    NewCommand {
        document: req.document,
        document_version: req.document_version,
        parameters: req.parameters,
        targets: req.targets,
        max_concurrency: req.max_concurrency,
        max_errors: req.max_errors,
        timeout_seconds: req.timeout_seconds,
        delivery_timeout_seconds: req.delivery_timeout_seconds,
        comment: req.comment,
        nodes: Vec::new(),
        notify: req.notify.map(|topic| (topic, req.notify_on)),
    }
}

fn invocation_to_api(i: &InvocationRecord) -> api::Invocation {
    api::Invocation {
        node_id: i.node_id.clone(),
        status: i.status.as_str().to_owned(),
        exit_code: i.exit_code,
        started_at: i.started_at.map(api::rfc3339),
        ended_at: i.ended_at.map(api::rfc3339),
        output: api::InvocationOutput {
            stdout: i.stdout.clone(),
            stderr: i.stderr.clone(),
            truncated: i.stdout_truncated || i.stderr_truncated,
            stdout_bytes: i.stdout_bytes,
            stderr_bytes: i.stderr_bytes,
        },
        detail: i.detail.clone(),
        changed: flotilla_core::command::any_changed(&i.state),
        state: i
            .state
            .iter()
            .map(|s| api::StepState {
                step: s.step.clone(),
                action: s.action.clone(),
                changed: s.changed,
                detail: s.detail.clone(),
            })
            .collect(),
    }
}

fn record_to_api(
    c: &CommandRecord,
    counts: BTreeMap<String, u32>,
    invocations: Option<&[InvocationRecord]>,
) -> api::Command {
    api::Command {
        id: c.id.clone(),
        document: c.document.clone(),
        document_version: c.document_version,
        status: c.status.as_str().to_owned(),
        // Stored by `commands::create` from a list of strings; an unreadable list shows empty.
        targets: serde_json::from_str(&c.targets).unwrap_or_default(),
        max_concurrency: c.max_concurrency.clone(),
        max_errors: c.max_errors.clone(),
        comment: c.comment.clone(),
        counts,
        created_at: api::rfc3339(c.created_at),
        ended_at: c.ended_at.map(api::rfc3339),
        // Written by `commands::create`; an unreadable value shows as none.
        notification: c.notification.as_deref().and_then(|n| serde_json::from_str(n).ok()),
        invocations: invocations.map(|list| list.iter().map(invocation_to_api).collect()),
    }
}

/// A command as `GET /api/v1/commands/{id}` shows it: with every invocation.
fn command_to_api(c: CommandDetail) -> api::Command {
    record_to_api(&c.record, c.counts, Some(&c.invocations))
}

fn summary_to_api(c: CommandSummary) -> api::Command {
    record_to_api(&c.record, c.counts, None)
}
