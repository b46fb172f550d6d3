//! The HTTP surface, split by audience: `/api/v1` (operators; bearer token), `/agent/v1`
//! (enrollment; the activation code is the credential), the gRPC agent channel (mutual TLS),
//! and `/healthz`, `/readyz`, `/metrics` (unauthenticated, read-only).
//!
//! Handlers only parse, authorise, call a service and map the result; limits, timeouts,
//! auth, metrics and tracing are layers declared here once.

mod agent;
mod api;
mod assess;
mod error;
mod extract;
mod inventory;
mod parameters;
mod vulndb;

use std::sync::Arc;
use std::time::Duration;

use axum::Router;
use axum::extract::{Request, State};
use axum::http::StatusCode;
use axum::middleware::{self, Next};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use tower_http::limit::RequestBodyLimitLayer;
use tower_http::timeout::TimeoutLayer;
use tower_http::trace::TraceLayer;

use crate::AppState;
use crate::gateway::Gateway;

pub use error::ApiError;

/// Largest accepted request body on the REST surfaces.
const BODY_LIMIT: usize = 1024 * 1024;
const REQUEST_TIMEOUT: Duration = Duration::from_secs(60);

pub fn router(state: Arc<AppState>) -> Router {
    use flotilla_proto::v1::agent_channel_server::{AgentChannelServer, SERVICE_NAME};
    // Inventory reports carry whole types (a large node's package list is a few MiB).
    let grpc = AgentChannelServer::new(Gateway { state: state.clone() })
        .max_decoding_message_size(crate::inventory::MAX_TYPE_BYTES * 2);

    let operator = api::routes()
        .merge(inventory::routes())
        .merge(assess::routes())
        .merge(parameters::routes())
        .route_layer(middleware::from_fn_with_state(state.clone(), require_token))
        .route("/api/v1/openapi.json", get(api::openapi));
    // Advisory imports carry big batches: their own body limit, added after the general one.
    let vulndb = vulndb::routes()
        .route_layer(middleware::from_fn_with_state(state.clone(), require_token))
        .layer(RequestBodyLimitLayer::new(vulndb::IMPORT_BODY_LIMIT));
    let rest = operator
        .merge(agent::routes())
        .route("/healthz", get(|| async { "ok\n" }))
        .route("/readyz", get(readyz))
        .route("/metrics", get(metrics))
        .fallback(|| async { ApiError::not_found("no such endpoint: see /api/v1/openapi.json") })
        .layer(RequestBodyLimitLayer::new(BODY_LIMIT))
        .merge(vulndb)
        .layer(TimeoutLayer::with_status_code(StatusCode::REQUEST_TIMEOUT, REQUEST_TIMEOUT))
        .layer(middleware::from_fn_with_state(state.clone(), count_requests))
        .layer(TraceLayer::new_for_http())
        .with_state(state);
    // gRPC streams live for days: they get neither the REST timeout nor its body limit.
    rest.route_service(&format!("/{SERVICE_NAME}/{{*method}}"), grpc)
}

async fn require_token(State(state): State<Arc<AppState>>, request: Request, next: Next) -> Response {
    let token = request
        .headers()
        .get(axum::http::header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.strip_prefix("Bearer "))
        .map(str::trim);
    let Some(token) = token else {
        return ApiError::unauthorized("missing API token: send `Authorization: Bearer TOKEN` (the admin token is in the server's data dir, admin.token)").into_response();
    };
    match state.store.find_api_token(&crate::secret::sha256_hex(token.as_bytes())).await {
        Ok(Some(_name)) => next.run(request).await,
        Ok(None) => ApiError::unauthorized("the API token is not valid: check FLOTILLA_TOKEN or run `flotilla login`")
            .into_response(),
        Err(e) => ApiError::from(crate::ServiceError::Store(e)).into_response(),
    }
}

async fn count_requests(State(state): State<Arc<AppState>>, request: Request, next: Next) -> Response {
    let method = request.method().to_string();
    let response = next.run(request).await;
    state
        .metrics
        .api_requests
        .get_or_create(&crate::metrics::ApiLabels { method, status: response.status().as_u16() })
        .inc();
    response
}

async fn readyz(State(state): State<Arc<AppState>>) -> Response {
    match state.store.ping().await {
        Ok(()) => (StatusCode::OK, "ready\n").into_response(),
        Err(e) => (StatusCode::SERVICE_UNAVAILABLE, format!("not ready: {e}\n")).into_response(),
    }
}

async fn metrics(State(state): State<Arc<AppState>>) -> Response {
    state.metrics.connected_agents.set(i64::try_from(state.registry.connected()).unwrap_or(i64::MAX));
    ([(axum::http::header::CONTENT_TYPE, "text/plain; version=0.0.4")], state.metrics.render()).into_response()
}
