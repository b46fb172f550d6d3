//! `/api/v1/associations` routes, and the one place where associations become REST types.

use std::sync::Arc;

use axum::Json;
use axum::extract::{Path, State};
use axum::http::StatusCode;
use flotilla_api as api;
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

use crate::app::AppState;
use crate::platform::api_error::ApiError;
use crate::platform::extract::Body;
use crate::statemanager::{self as sm, AssociationInput, AssociationView};

type Result<T> = std::result::Result<T, ApiError>;
type S = State<Arc<AppState>>;

pub fn routes() -> OpenApiRouter<Arc<AppState>> {
    OpenApiRouter::new()
        .routes(routes!(list_associations, create_association))
        .routes(routes!(show_association, update_association, delete_association))
        .routes(routes!(apply_association))
        .routes(routes!(association_status))
}

fn input(req: api::AssociationRequest) -> AssociationInput {
    AssociationInput {
        name: req.name,
        document: req.document,
        document_version: req.document_version,
        parameters: req.parameters,
        targets: req.targets,
        schedule: req.schedule,
        timezone: req.timezone,
        max_concurrency: req.max_concurrency,
        max_errors: req.max_errors,
        compliance_severity: req.compliance_severity,
        apply_only_at_cron_interval: req.apply_only_at_cron_interval,
    }
}

fn to_api(v: AssociationView) -> api::Association {
    let a = v.record;
    api::Association {
        id: a.id,
        name: a.name,
        document: a.document,
        document_version: a.document_version,
        parameters: a.parameters,
        targets: a.targets,
        schedule: a.schedule,
        timezone: a.timezone,
        max_concurrency: a.max_concurrency,
        max_errors: a.max_errors,
        compliance_severity: a.compliance_severity.as_str().to_owned(),
        apply_only_at_cron_interval: a.apply_only_at_cron_interval,
        counts: v.counts.into_iter().map(|(s, n)| (s.as_str().to_owned(), n)).collect(),
        next_run: v.next_run_at.map(api::rfc3339),
        created_at: api::rfc3339(a.created_at),
        updated_at: api::rfc3339(a.updated_at),
    }
}

#[utoipa::path(post, path = "/api/v1/associations", request_body = api::AssociationRequest,
    responses((status = 201, body = api::Association), (status = 400, body = api::ErrorBody), (status = 409, body = api::ErrorBody)))]
async fn create_association(
    State(state): S,
    Body(req): Body<api::AssociationRequest>,
) -> Result<(StatusCode, Json<api::Association>)> {
    Ok((StatusCode::CREATED, Json(to_api(sm::create(&state, input(req)).await?))))
}

#[utoipa::path(get, path = "/api/v1/associations", responses((status = 200, body = [api::Association])))]
async fn list_associations(State(state): S) -> Result<Json<Vec<api::Association>>> {
    Ok(Json(sm::list(&state).await?.into_iter().map(to_api).collect()))
}

#[utoipa::path(get, path = "/api/v1/associations/{id}",
    params(("id" = String, Path, description = "The association's id or name")),
    responses((status = 200, body = api::Association), (status = 404, body = api::ErrorBody)))]
async fn show_association(State(state): S, Path(id): Path<String>) -> Result<Json<api::Association>> {
    Ok(Json(to_api(sm::get(&state, &id).await?)))
}

#[utoipa::path(patch, path = "/api/v1/associations/{id}", request_body = api::AssociationRequest,
    params(("id" = String, Path, description = "The association's id or name")),
    responses((status = 200, body = api::Association), (status = 400, body = api::ErrorBody), (status = 404, body = api::ErrorBody)))]
async fn update_association(
    State(state): S,
    Path(id): Path<String>,
    Body(req): Body<api::AssociationRequest>,
) -> Result<Json<api::Association>> {
    Ok(Json(to_api(sm::update(&state, &id, input(req)).await?)))
}

#[utoipa::path(delete, path = "/api/v1/associations/{id}",
    params(("id" = String, Path, description = "The association's id or name")),
    responses((status = 204), (status = 404, body = api::ErrorBody)))]
async fn delete_association(State(state): S, Path(id): Path<String>) -> Result<StatusCode> {
    sm::delete(&state, &id).await?;
    Ok(StatusCode::NO_CONTENT)
}

#[utoipa::path(post, path = "/api/v1/associations/{id}/apply",
    params(("id" = String, Path, description = "The association's id or name")),
    responses((status = 200, body = api::Association), (status = 404, body = api::ErrorBody)))]
async fn apply_association(State(state): S, Path(id): Path<String>) -> Result<Json<api::Association>> {
    Ok(Json(to_api(sm::apply(&state, &id).await?)))
}

#[utoipa::path(get, path = "/api/v1/associations/{id}/status",
    params(("id" = String, Path, description = "The association's id or name")),
    responses((status = 200, body = [api::AssociationNodeStatus]), (status = 404, body = api::ErrorBody)))]
async fn association_status(State(state): S, Path(id): Path<String>) -> Result<Json<Vec<api::AssociationNodeStatus>>> {
    let rows = sm::status(&state, &id).await?;
    Ok(Json(
        rows.into_iter()
            .map(|r| api::AssociationNodeStatus {
                node_id: r.node_id,
                status: r.status.as_str().to_owned(),
                changed: r.changed,
                detail: r.detail,
                command_id: r.command_id,
                last_run: api::rfc3339(r.updated_at),
            })
            .collect(),
    ))
}
