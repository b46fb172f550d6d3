//! The HTTP surface, assembled from each capability's routes and split by audience: `/api/v1`
//! (operators; bearer token), `/agent/v1` (enrollment; the activation code is the credential),
//! the gRPC agent channel (mutual TLS), and `/healthz`, `/readyz`, `/metrics`
//! (unauthenticated, read-only).
//!
//! Handlers (in each capability's `http.rs`) only parse, authorise, call a service and map the
//! result; limits, timeouts, auth, metrics and tracing are layers declared here once.

use std::sync::Arc;
use std::time::Duration;

use axum::extract::{Request, State};
use axum::http::StatusCode;
use axum::middleware::{self, Next};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::{Extension, Router};
use tower_http::limit::RequestBodyLimitLayer;
use tower_http::timeout::TimeoutLayer;
use tower_http::trace::TraceLayer;
use utoipa::OpenApi;
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

use crate::app::AppState;
use crate::fleet::gateway::Gateway;
use crate::platform::api_error::ApiError;
use crate::{
    assessments, compliance, fleet, inventory, notifications, parameters, patch, platform, runcommand, sessions,
    statemanager, windows,
};

/// Largest accepted request body on the REST surfaces.
const BODY_LIMIT: usize = 1024 * 1024;
const REQUEST_TIMEOUT: Duration = Duration::from_secs(60);

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
async fn openapi(axum::Extension(doc): axum::Extension<OpenApiJson>) -> Result<axum::response::Response, ApiError> {
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

/// The REST routes with their OpenAPI descriptions, grouped by how they are guarded. Built
/// without state so that tests can walk them; [`router`] adds the layers and serves the
/// document made from exactly these routes, so a route cannot be served undocumented.
pub(crate) struct RestRoutes {
    /// `/api/v1` behind the bearer token.
    pub(crate) operator: OpenApiRouter<Arc<AppState>>,
    /// `/api/v1/vulndb`, behind the bearer token, with the import's larger body limit.
    pub(crate) vulndb: OpenApiRouter<Arc<AppState>>,
    /// `/api/v1/openapi.json` and `/agent/v1/register`: no token.
    pub(crate) public: OpenApiRouter<Arc<AppState>>,
}

impl RestRoutes {
    pub fn new() -> Self {
        RestRoutes {
            operator: OpenApiRouter::with_openapi(ApiDoc::openapi())
                .merge(platform::http::routes())
                .merge(fleet::http::routes())
                .merge(runcommand::http::routes())
                .merge(inventory::http::routes())
                .merge(assessments::http::routes())
                .merge(parameters::http::routes())
                .merge(statemanager::http::routes())
                .merge(compliance::http::routes())
                .merge(notifications::http::routes())
                .merge(windows::http::routes())
                .merge(patch::http::routes())
                .merge(sessions::http::routes()),
            vulndb: assessments::vulndb_http::routes(),
            public: public_routes().merge(fleet::http::public_routes()),
        }
    }

    /// The OpenAPI document of every route here.
    pub fn openapi(&self) -> utoipa::openapi::OpenApi {
        let mut doc = self.operator.get_openapi().clone();
        doc.merge(self.vulndb.get_openapi().clone());
        doc.merge(self.public.get_openapi().clone());
        doc
    }
}

impl Default for RestRoutes {
    fn default() -> Self {
        Self::new()
    }
}

pub fn router(state: Arc<AppState>) -> Router {
    use flotilla_proto::v1::agent_channel_server::{AgentChannelServer, SERVICE_NAME};
    // Inventory reports carry whole types (a large node's package list is a few MiB).
    let grpc = AgentChannelServer::new(Gateway { state: state.clone() })
        .max_decoding_message_size(inventory::MAX_TYPE_BYTES * 2);

    let routes = RestRoutes::new();
    let spec = OpenApiJson::default();
    match serde_json::to_string(&routes.openapi()) {
        Ok(json) => {
            let _ = spec.0.set(json);
        }
        Err(e) => tracing::error!("cannot serialise the OpenAPI document: {e}"),
    }
    let (operator, _) = routes.operator.split_for_parts();
    let (vulndb, _) = routes.vulndb.split_for_parts();
    let (public, _) = routes.public.split_for_parts();
    let operator = operator.route_layer(middleware::from_fn_with_state(state.clone(), require_token));
    // Advisory imports carry big batches: their own body limit, added after the general one.
    let vulndb = vulndb
        .route_layer(middleware::from_fn_with_state(state.clone(), require_token))
        .layer(RequestBodyLimitLayer::new(assessments::vulndb_http::IMPORT_BODY_LIMIT));
    let rest = operator
        .merge(public.layer(Extension(spec)))
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
    match state.store.find_api_token(&crate::platform::secret::sha256_hex(token.as_bytes())).await {
        Ok(Some(_name)) => next.run(request).await,
        Ok(None) => ApiError::unauthorized("the API token is not valid: check FLOTILLA_TOKEN or run `flotilla login`")
            .into_response(),
        Err(e) => ApiError::from(crate::platform::ServiceError::Store(e)).into_response(),
    }
}

async fn count_requests(State(state): State<Arc<AppState>>, request: Request, next: Next) -> Response {
    let method = request.method().to_string();
    let response = next.run(request).await;
    state
        .metrics
        .api_requests
        .get_or_create(&crate::platform::metrics::ApiLabels { method, status: response.status().as_u16() })
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

#[cfg(test)]
mod tests {
    use std::collections::BTreeSet;

    use super::RestRoutes;

    /// The paths an axum router really routes. axum offers no way to list them other than its
    /// `Debug` output, which prints each route's path template as `RouteId(N): "PATH"`; if that
    /// format changes this finds nothing and the test fails rather than passing empty.
    fn routed_paths(router: axum::Router<std::sync::Arc<crate::app::AppState>>) -> BTreeSet<String> {
        let text = format!("{router:?}");
        text.split("RouteId(")
            .skip(1)
            .filter_map(|rest| rest.split_once("): \"").map(|(_, path)| path))
            .filter_map(|path| path.split_once('"').map(|(path, _)| path.to_owned()))
            .collect()
    }

    #[test]
    fn every_routed_path_is_documented_with_its_schemas() {
        let routes = RestRoutes::new();
        let doc = routes.openapi();
        let mut routed = BTreeSet::new();
        for group in [routes.operator, routes.vulndb, routes.public] {
            // axum's own entries ("/" and its fallback) are not routes of ours.
            routed.extend(
                routed_paths(group.split_for_parts().0)
                    .into_iter()
                    .filter(|p| p.starts_with("/api/") || p.starts_with("/agent/")),
            );
        }
        assert!(routed.contains("/api/v1/nodes"), "the router walk found no routes: {routed:?}");
        let documented: BTreeSet<String> = doc.paths.paths.keys().cloned().collect();
        let missing: Vec<_> = routed.difference(&documented).collect();
        assert!(missing.is_empty(), "routed but not in /api/v1/openapi.json: {missing:?}");
        for path in routed.iter().filter(|p| p.starts_with("/api/v1/")) {
            let item = &doc.paths.paths[path];
            for (method, operation) in [
                ("GET", &item.get),
                ("POST", &item.post),
                ("PUT", &item.put),
                ("DELETE", &item.delete),
                ("PATCH", &item.patch),
            ] {
                let Some(operation) = operation else { continue };
                // Session streams answer 101 Switching Protocols instead.
                let ok = operation.responses.responses.keys().find(|code| code.starts_with('2') || *code == "101");
                assert!(ok.is_some(), "{method} {path} documents no success response");
                // Every body-taking operation names its request schema, except the ones whose
                // inputs are all in the path.
                let bodiless =
                    ["/deregister", "/cancel", "/rotate", "/apply", "/enable", "/disable", "/redrive", "/terminate"]
                        .iter()
                        .any(|end| path.ends_with(end));
                if matches!(method, "POST" | "PUT") && !bodiless {
                    assert!(operation.request_body.is_some(), "{method} {path} documents no request body");
                }
            }
        }
    }
}
