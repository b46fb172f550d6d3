//! `/api/v1` assessment routes (bearer token, like the rest of `/api/v1`).

use std::sync::Arc;

use axum::Json;
use axum::extract::{Path, RawQuery, State};
use axum::http::StatusCode;
use flotilla_api as api;
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

use crate::app::AppState;
use crate::assessments as assess;
use crate::platform::api_error::ApiError;
use crate::platform::extract::{Body, query_values};

type Result<T> = std::result::Result<T, ApiError>;
type S = State<Arc<AppState>>;

pub fn routes() -> OpenApiRouter<Arc<AppState>> {
    OpenApiRouter::new()
        .routes(routes!(list, create))
        .routes(routes!(show))
        .routes(routes!(findings))
        .routes(routes!(list_templates))
        .routes(routes!(put_template, delete_template))
}

#[utoipa::path(post, path = "/api/v1/assessments", request_body = api::CreateAssessment,
    responses((status = 201, body = api::AssessmentRun), (status = 400, body = api::ErrorBody)))]
async fn create(
    State(state): S,
    Body(req): Body<api::CreateAssessment>,
) -> Result<(StatusCode, Json<api::AssessmentRun>)> {
    Ok((StatusCode::CREATED, Json(assess::create(&state, req).await?)))
}

#[utoipa::path(get, path = "/api/v1/assessments", responses((status = 200, body = [api::AssessmentRun])))]
async fn list(State(state): S) -> Result<Json<Vec<api::AssessmentRun>>> {
    Ok(Json(assess::list(&state).await?))
}

#[utoipa::path(get, path = "/api/v1/assessments/{id}",
    responses((status = 200, body = api::AssessmentRun), (status = 404, body = api::ErrorBody)))]
async fn show(State(state): S, Path(id): Path<String>) -> Result<Json<api::AssessmentRun>> {
    Ok(Json(assess::show(&state, &id).await?))
}

#[utoipa::path(get, path = "/api/v1/findings",
    params(
        ("node" = Option<String>, Query, description = "Only this node"),
        ("severity" = Option<String>, Query, description = "High, Medium, Low or Informational"),
        ("run" = Option<String>, Query, description = "This run's findings (default: each node's latest)")
    ),
    responses((status = 200, body = [api::FindingView]), (status = 400, body = api::ErrorBody), (status = 404, body = api::ErrorBody)))]
async fn findings(State(state): S, RawQuery(raw): RawQuery) -> Result<Json<Vec<api::FindingView>>> {
    let one = |k: &str| query_values(raw.as_deref(), k).into_iter().next();
    Ok(Json(assess::findings(&state, one("node").as_deref(), one("severity").as_deref(), one("run").as_deref()).await?))
}

#[utoipa::path(get, path = "/api/v1/assessment-templates", responses((status = 200, body = [api::AssessmentTemplate])))]
async fn list_templates(State(state): S) -> Result<Json<Vec<api::AssessmentTemplate>>> {
    Ok(Json(assess::list_templates(&state).await?))
}

#[utoipa::path(put, path = "/api/v1/assessment-templates/{name}", request_body = api::AssessmentTemplate,
    responses((status = 200, body = api::AssessmentTemplate), (status = 400, body = api::ErrorBody)))]
async fn put_template(
    State(state): S,
    Path(name): Path<String>,
    Body(req): Body<api::AssessmentTemplate>,
) -> Result<Json<api::AssessmentTemplate>> {
    Ok(Json(assess::put_template(&state, &name, req).await?))
}

#[utoipa::path(delete, path = "/api/v1/assessment-templates/{name}",
    responses((status = 200), (status = 404, body = api::ErrorBody)))]
async fn delete_template(State(state): S, Path(name): Path<String>) -> Result<Json<()>> {
    assess::delete_template(&state, &name).await?;
    Ok(Json(()))
}
