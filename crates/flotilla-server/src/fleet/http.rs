//! Fleet and enrollment routes: activations, nodes, tags, groups (`/api/v1`, bearer token) and
//! `/agent/v1/register` (no token: the activation id and code are the credential, and the reply
//! is the node's own certificate).

use std::sync::Arc;

use axum::Json;
use axum::extract::{Path, RawQuery, State};
use axum::http::StatusCode;
use flotilla_api as api;
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

use crate::app::AppState;
use crate::fleet::{self, enrollment};
use crate::platform::api_error::ApiError;
use crate::platform::extract::{Body, query_values};

type Result<T> = std::result::Result<T, ApiError>;
type S = State<Arc<AppState>>;

pub fn routes() -> OpenApiRouter<Arc<AppState>> {
    OpenApiRouter::new()
        .routes(routes!(list_activations, create_activation))
        .routes(routes!(delete_activation))
        .routes(routes!(list_nodes))
        .routes(routes!(get_node))
        .routes(routes!(tag_node))
        .routes(routes!(untag_node))
        .routes(routes!(deregister_node))
        .routes(routes!(list_groups))
        .routes(routes!(put_group, delete_group))
}

/// Enrollment: public, the activation code is the credential.
pub fn public_routes() -> OpenApiRouter<Arc<AppState>> {
    OpenApiRouter::new().routes(routes!(register))
}

#[utoipa::path(get, path = "/api/v1/activations", responses((status = 200, body = [api::Activation])))]
async fn list_activations(State(state): S) -> Result<Json<Vec<api::Activation>>> {
    let list = state.store.list_activations().await.map_err(crate::platform::ServiceError::from)?;
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
    if state.store.delete_activation(&id).await.map_err(crate::platform::ServiceError::from)? {
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

#[utoipa::path(post, path = "/agent/v1/register", security(()), request_body = api::RegisterRequest,
    responses((status = 200, body = api::RegisterResponse), (status = 403, body = api::ErrorBody), (status = 404, body = api::ErrorBody)))]
async fn register(
    State(state): State<Arc<AppState>>,
    Body(req): Body<api::RegisterRequest>,
) -> Result<Json<api::RegisterResponse>> {
    let reply = enrollment::register(&state, req).await.inspect_err(|e| tracing::info!("enrollment refused: {e}"))?;
    state.metrics.enrollments.inc();
    Ok(Json(reply))
}
