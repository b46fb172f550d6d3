//! `/agent/v1`: enrollment. No API token: the activation id and code are the credential, and
//! the reply is the node's own certificate.

use std::sync::Arc;

use axum::Json;
use axum::extract::State;
use flotilla_api as api;
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

use super::ApiError;
use super::extract::Body;
use crate::{AppState, enrollment};

pub fn routes() -> OpenApiRouter<Arc<AppState>> {
    OpenApiRouter::new().routes(routes!(register))
}

#[utoipa::path(post, path = "/agent/v1/register", security(()), request_body = api::RegisterRequest,
    responses((status = 200, body = api::RegisterResponse), (status = 403, body = api::ErrorBody), (status = 404, body = api::ErrorBody)))]
async fn register(
    State(state): State<Arc<AppState>>,
    Body(req): Body<api::RegisterRequest>,
) -> Result<Json<api::RegisterResponse>, ApiError> {
    let reply = enrollment::register(&state, req).await.inspect_err(|e| tracing::info!("enrollment refused: {e}"))?;
    state.metrics.enrollments.inc();
    Ok(Json(reply))
}
