//! Run Command routes: documents, commands, their output (`/api/v1`, bearer token).

use std::sync::Arc;

use axum::Json;
use axum::extract::{Path, RawQuery, State};
use axum::http::StatusCode;
use flotilla_api as api;
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

use crate::app::AppState;
use crate::platform::api_error::ApiError;
use crate::platform::extract::{Body, query_values};
use crate::runcommand::{commands, documents};

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
    Ok(Json(documents::list(&state).await?))
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
    Ok(Json(documents::get(&state, &name, version).await?))
}

#[utoipa::path(post, path = "/api/v1/documents", request_body = api::PutDocument,
    responses((status = 201, body = api::Document), (status = 400, body = api::ErrorBody), (status = 409, body = api::ErrorBody)))]
async fn create_document(
    State(state): S,
    Body(req): Body<api::PutDocument>,
) -> Result<(StatusCode, Json<api::Document>)> {
    Ok((StatusCode::CREATED, Json(documents::put(&state, req, true).await?)))
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
    Ok(Json(documents::put(&state, req, false).await?))
}

#[utoipa::path(get, path = "/api/v1/commands", responses((status = 200, body = [api::Command])))]
async fn list_commands(State(state): S) -> Result<Json<Vec<api::Command>>> {
    Ok(Json(commands::list(&state).await?))
}

#[utoipa::path(post, path = "/api/v1/commands", request_body = api::CreateCommand,
    responses((status = 201, body = api::Command), (status = 400, body = api::ErrorBody)))]
async fn create_command(
    State(state): S,
    Body(req): Body<api::CreateCommand>,
) -> Result<(StatusCode, Json<api::Command>)> {
    Ok((StatusCode::CREATED, Json(commands::create(&state, req).await?)))
}

#[utoipa::path(get, path = "/api/v1/commands/{id}", responses((status = 200, body = api::Command), (status = 404, body = api::ErrorBody)))]
async fn get_command(State(state): S, Path(id): Path<String>) -> Result<Json<api::Command>> {
    Ok(Json(commands::get(&state, &id).await?))
}

#[utoipa::path(post, path = "/api/v1/commands/{id}/cancel",
    responses((status = 200, body = api::Command), (status = 404, body = api::ErrorBody), (status = 409, body = api::ErrorBody)))]
async fn cancel_command(State(state): S, Path(id): Path<String>) -> Result<Json<api::Command>> {
    Ok(Json(commands::cancel(&state, &id).await?))
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
