//! `/api/v1`: the operator API. Every route here requires a bearer token.

use std::sync::Arc;

use axum::Json;
use axum::extract::{Path, RawQuery, State};
use axum::http::StatusCode;
use flotilla_api as api;
use utoipa::OpenApi;
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

use super::ApiError;
use super::extract::{Body, query_values};
use crate::{AppState, commands, documents, enrollment, fleet};

type Result<T> = std::result::Result<T, ApiError>;
type S = State<Arc<AppState>>;

pub fn routes() -> OpenApiRouter<Arc<AppState>> {
    OpenApiRouter::new()
        .routes(routes!(version))
        .routes(routes!(list_activations, create_activation))
        .routes(routes!(delete_activation))
        .routes(routes!(list_nodes))
        .routes(routes!(get_node))
        .routes(routes!(tag_node))
        .routes(routes!(untag_node))
        .routes(routes!(deregister_node))
        .routes(routes!(list_groups))
        .routes(routes!(put_group, delete_group))
        .routes(routes!(list_documents, create_document))
        .routes(routes!(get_document, update_document))
        .routes(routes!(list_commands, create_command))
        .routes(routes!(get_command))
        .routes(routes!(cancel_command))
        .routes(routes!(command_output))
}

/// The document's head: what every path shares (title, the bearer scheme).
#[derive(OpenApi)]
#[openapi(
    info(
        title = "Flotilla API",
        description = "Operator API of the Flotilla control plane. Authenticate with `Authorization: Bearer TOKEN`."
    ),
    modifiers(&BearerAuth),
    security(("bearer" = []))
)]
pub struct ApiDoc;

struct BearerAuth;

impl utoipa::Modify for BearerAuth {
    fn modify(&self, doc: &mut utoipa::openapi::OpenApi) {
        use utoipa::openapi::security::{HttpAuthScheme, HttpBuilder, SecurityScheme};
        doc.components.get_or_insert_with(Default::default).add_security_scheme(
            "bearer",
            SecurityScheme::Http(HttpBuilder::new().scheme(HttpAuthScheme::Bearer).build()),
        );
    }
}

/// The serialised OpenAPI document, filled in once the router (its source) is built.
#[derive(Clone, Default)]
pub struct OpenApiJson(pub Arc<std::sync::OnceLock<String>>);

/// The public routes of `/api/v1` (no token: the document describes, it does not reveal).
pub fn public_routes() -> OpenApiRouter<Arc<AppState>> {
    OpenApiRouter::new().routes(routes!(openapi))
}

/// `GET /api/v1/openapi.json`.
#[utoipa::path(get, path = "/api/v1/openapi.json", security(()),
    responses((status = 200, description = "This document (OpenAPI 3.1)", content_type = "application/json")))]
async fn openapi(axum::Extension(doc): axum::Extension<OpenApiJson>) -> Result<axum::response::Response> {
    use axum::response::IntoResponse;
    match doc.0.get() {
        Some(json) => Ok(([(axum::http::header::CONTENT_TYPE, "application/json")], json.clone()).into_response()),
        None => Err(ApiError::new(
            StatusCode::INTERNAL_SERVER_ERROR,
            "internal",
            "the OpenAPI document was not built: this is a bug, please report it",
        )),
    }
}

#[utoipa::path(get, path = "/api/v1/version", responses((status = 200, body = api::VersionInfo)))]
async fn version(State(state): S) -> Json<api::VersionInfo> {
    Json(api::VersionInfo { version: env!("CARGO_PKG_VERSION").into(), store: state.store.backend().into() })
}

#[utoipa::path(get, path = "/api/v1/activations", responses((status = 200, body = [api::Activation])))]
async fn list_activations(State(state): S) -> Result<Json<Vec<api::Activation>>> {
    let list = state.store.list_activations().await.map_err(crate::ServiceError::from)?;
    Ok(Json(list.iter().map(|a| enrollment::to_api(a, None)).collect()))
}

#[utoipa::path(post, path = "/api/v1/activations", request_body = api::CreateActivation,
    responses((status = 201, body = api::Activation, description = "Created; `code` is shown only here"), (status = 400, body = api::ErrorBody)))]
async fn create_activation(
    State(state): S,
    Body(req): Body<api::CreateActivation>,
) -> Result<(StatusCode, Json<api::Activation>)> {
    Ok((StatusCode::CREATED, Json(enrollment::create_activation(&state, req).await?)))
}

#[utoipa::path(delete, path = "/api/v1/activations/{id}", responses((status = 200), (status = 404, body = api::ErrorBody)))]
async fn delete_activation(State(state): S, Path(id): Path<String>) -> Result<Json<()>> {
    if state.store.delete_activation(&id).await.map_err(crate::ServiceError::from)? {
        Ok(Json(()))
    } else {
        Err(ApiError::not_found(format!("no activation `{id}`")))
    }
}

#[utoipa::path(get, path = "/api/v1/nodes",
    params(("target" = Option<Vec<String>>, Query, description = "Target expressions (repeatable, a union): node id, tag:KEY=VALUE, tag:KEY, group:NAME, all; terms joined by & must all hold, a term prefixed by ! must not")),
    responses((status = 200, body = [api::Node]), (status = 400, body = api::ErrorBody)))]
async fn list_nodes(State(state): S, RawQuery(query): RawQuery) -> Result<Json<Vec<api::Node>>> {
    let targets = query_values(query.as_deref(), "target");
    Ok(Json(fleet::list_nodes(&state, &targets).await?))
}

#[utoipa::path(get, path = "/api/v1/nodes/{id}", responses((status = 200, body = api::Node), (status = 404, body = api::ErrorBody)))]
async fn get_node(State(state): S, Path(id): Path<String>) -> Result<Json<api::Node>> {
    Ok(Json(fleet::get_node(&state, &id).await?))
}

#[utoipa::path(post, path = "/api/v1/nodes/{id}/tags", request_body = api::TagNode,
    responses((status = 200, body = api::Node), (status = 400, body = api::ErrorBody), (status = 404, body = api::ErrorBody)))]
async fn tag_node(State(state): S, Path(id): Path<String>, Body(req): Body<api::TagNode>) -> Result<Json<api::Node>> {
    Ok(Json(fleet::tag_node(&state, &id, req.tags).await?))
}

#[utoipa::path(post, path = "/api/v1/nodes/{id}/untag", request_body = api::UntagNode,
    responses((status = 200, body = api::Node), (status = 404, body = api::ErrorBody)))]
async fn untag_node(
    State(state): S,
    Path(id): Path<String>,
    Body(req): Body<api::UntagNode>,
) -> Result<Json<api::Node>> {
    Ok(Json(fleet::untag_node(&state, &id, req.keys).await?))
}

#[utoipa::path(post, path = "/api/v1/nodes/{id}/deregister",
    responses((status = 200, body = api::Node), (status = 404, body = api::ErrorBody)))]
async fn deregister_node(State(state): S, Path(id): Path<String>) -> Result<Json<api::Node>> {
    Ok(Json(fleet::deregister(&state, &id).await?))
}

#[utoipa::path(get, path = "/api/v1/groups", responses((status = 200, body = [api::Group])))]
async fn list_groups(State(state): S) -> Result<Json<Vec<api::Group>>> {
    Ok(Json(fleet::list_groups(&state).await?))
}

#[utoipa::path(put, path = "/api/v1/groups/{name}", request_body = api::Group,
    responses((status = 200, body = api::Group), (status = 400, body = api::ErrorBody)))]
async fn put_group(
    State(state): S,
    Path(name): Path<String>,
    Body(group): Body<api::Group>,
) -> Result<Json<api::Group>> {
    if group.name != name {
        return Err(ApiError::invalid(format!("the body names group `{}` but the path names `{name}`", group.name)));
    }
    Ok(Json(fleet::put_group(&state, group).await?))
}

#[utoipa::path(delete, path = "/api/v1/groups/{name}", responses((status = 200), (status = 404, body = api::ErrorBody)))]
async fn delete_group(State(state): S, Path(name): Path<String>) -> Result<Json<()>> {
    fleet::delete_group(&state, &name).await?;
    Ok(Json(()))
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

