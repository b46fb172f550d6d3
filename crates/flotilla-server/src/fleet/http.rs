//! Fleet and enrollment routes: activations, nodes, tags, groups (`/api/v1`, bearer token) and
//! `/agent/v1/register` (no token: the activation id and code are the credential, and the reply
//! is the node's own certificate).

use std::sync::Arc;

use axum::Json;
use axum::extract::{Path, RawQuery, State};
use axum::http::StatusCode;
use flotilla_api as api;
use flotilla_core::{Activation, Node};
use flotilla_store::TargetGroup;
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

use crate::app::AppState;
use crate::fleet;
use crate::fleet::enrollment::{self, NewActivation, Registration};
use crate::platform::api_error::ApiError;
use crate::platform::extract::{Body, query_values};
use crate::platform::now_ms;

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
    let list = enrollment::list_activations(&state).await?;
    Ok(Json(list.iter().map(|a| activation_to_api(a, None)).collect()))
}

#[utoipa::path(post, path = "/api/v1/activations", request_body = api::CreateActivation,
    responses((status = 201, body = api::Activation, description = "Created; `code` is shown only here"), (status = 400, body = api::ErrorBody)))]
async fn create_activation(
    State(state): S,
    Body(req): Body<api::CreateActivation>,
) -> Result<(StatusCode, Json<api::Activation>)> {
    let new = NewActivation {
        description: req.description,
        registration_limit: req.registration_limit,
        expires_in_seconds: req.expires_in_seconds,
        tags: req.tags,
    };
    let created = enrollment::create_activation(&state, new).await?;
    Ok((StatusCode::CREATED, Json(activation_to_api(&created.activation, Some(created.code)))))
}

#[utoipa::path(delete, path = "/api/v1/activations/{id}", responses((status = 200), (status = 404, body = api::ErrorBody)))]
async fn delete_activation(State(state): S, Path(id): Path<String>) -> Result<Json<()>> {
    enrollment::delete_activation(&state, &id).await?;
    Ok(Json(()))
}

#[utoipa::path(get, path = "/api/v1/nodes",
    params(("target" = Option<Vec<String>>, Query, description = "Target expressions (repeatable, a union): node id, tag:KEY=VALUE, tag:KEY, group:NAME, all; terms joined by & must all hold, a term prefixed by ! must not")),
    responses((status = 200, body = [api::Node]), (status = 400, body = api::ErrorBody)))]
async fn list_nodes(State(state): S, RawQuery(query): RawQuery) -> Result<Json<Vec<api::Node>>> {
    let targets = query_values(query.as_deref(), "target");
    Ok(Json(fleet::list_nodes(&state, &targets).await?.iter().map(node_to_api).collect()))
}

#[utoipa::path(get, path = "/api/v1/nodes/{id}", responses((status = 200, body = api::Node), (status = 404, body = api::ErrorBody)))]
async fn get_node(State(state): S, Path(id): Path<String>) -> Result<Json<api::Node>> {
    Ok(Json(node_to_api(&fleet::get_node(&state, &id).await?)))
}

#[utoipa::path(post, path = "/api/v1/nodes/{id}/tags", request_body = api::TagNode,
    responses((status = 200, body = api::Node), (status = 400, body = api::ErrorBody), (status = 404, body = api::ErrorBody)))]
async fn tag_node(State(state): S, Path(id): Path<String>, Body(req): Body<api::TagNode>) -> Result<Json<api::Node>> {
    Ok(Json(node_to_api(&fleet::tag_node(&state, &id, req.tags).await?)))
}

#[utoipa::path(post, path = "/api/v1/nodes/{id}/untag", request_body = api::UntagNode,
    responses((status = 200, body = api::Node), (status = 404, body = api::ErrorBody)))]
async fn untag_node(
    State(state): S,
    Path(id): Path<String>,
    Body(req): Body<api::UntagNode>,
) -> Result<Json<api::Node>> {
    Ok(Json(node_to_api(&fleet::untag_node(&state, &id, req.keys).await?)))
}

#[utoipa::path(post, path = "/api/v1/nodes/{id}/deregister",
    responses((status = 200, body = api::Node), (status = 404, body = api::ErrorBody)))]
async fn deregister_node(State(state): S, Path(id): Path<String>) -> Result<Json<api::Node>> {
    Ok(Json(node_to_api(&fleet::deregister(&state, &id).await?)))
}

#[utoipa::path(get, path = "/api/v1/groups", responses((status = 200, body = [api::Group])))]
async fn list_groups(State(state): S) -> Result<Json<Vec<api::Group>>> {
    Ok(Json(fleet::list_groups(&state).await?.into_iter().map(group_to_api).collect()))
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
    Ok(Json(group_to_api(fleet::put_group(&state, group.name, group.targets).await?)))
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
    let registration = Registration {
        activation_id: req.activation_id,
        activation_code: req.activation_code,
        csr_pem: req.csr_pem,
        hostname: req.hostname,
    };
    let reply =
        enrollment::register(&state, registration).await.inspect_err(|e| tracing::info!("enrollment refused: {e}"))?;
    state.metrics.enrollments.inc();
    Ok(Json(api::RegisterResponse {
        node_id: reply.node_id.to_string(),
        certificate_pem: reply.certificate_pem,
        ca_pem: reply.ca_pem,
    }))
}

fn activation_to_api(a: &Activation, code: Option<String>) -> api::Activation {
    api::Activation {
        id: a.id.clone(),
        code,
        description: a.description.clone(),
        registration_limit: a.registration_limit,
        registrations: a.registrations,
        expires_at: api::rfc3339(a.expires_at),
        expired: now_ms() >= a.expires_at,
        tags: a.default_tags.clone(),
        created_at: api::rfc3339(a.created_at),
    }
}

fn node_to_api(n: &Node) -> api::Node {
    api::Node {
        id: n.id.to_string(),
        hostname: n.hostname.clone(),
        status: n.status.as_str().to_owned(),
        last_seen: n.last_seen.map(api::rfc3339),
        platform: api::Platform {
            name: n.platform.name.clone(),
            version: n.platform.version.clone(),
            id: n.platform.id.clone(),
        },
        kernel: n.kernel.clone(),
        arch: n.arch.clone(),
        agent_version: n.agent_version.clone(),
        addresses: n.addresses.clone(),
        tags: n.tags.clone(),
        activation_id: n.activation_id.clone(),
        registered_at: api::rfc3339(n.registered_at),
    }
}

fn group_to_api(g: TargetGroup) -> api::Group {
    api::Group { name: g.name, targets: g.targets }
}
