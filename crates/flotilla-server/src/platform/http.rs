//! Routes of the platform itself: the version and the event log. Generic over the router's
//! state: the platform never names the application state, it only takes `PlatformState` from it.

use axum::Json;
use axum::extract::{FromRef, RawQuery, State};
use flotilla_api as api;
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

use super::PlatformState;
use super::api_error::ApiError;
use super::extract::query_values;

type Result<T> = std::result::Result<T, ApiError>;
type S = State<PlatformState>;

pub fn routes<T>() -> OpenApiRouter<T>
where
    T: Clone + Send + Sync + 'static,
    PlatformState: FromRef<T>,
{
    OpenApiRouter::new().routes(routes!(version)).routes(routes!(list_events))
}

#[utoipa::path(get, path = "/api/v1/version", responses((status = 200, body = api::VersionInfo)))]
async fn version(State(state): S) -> Json<api::VersionInfo> {
    Json(api::VersionInfo { version: env!("CARGO_PKG_VERSION").into(), store: state.store.backend().into() })
}

#[utoipa::path(get, path = "/api/v1/events", params(("since" = Option<u64>, Query, description = "Only events with a higher sequence number")),
    responses((status = 200, body = [api::Event])))]
async fn list_events(State(state): S, RawQuery(query): RawQuery) -> Result<Json<Vec<api::Event>>> {
    let since = match query_values(query.as_deref(), "since").first() {
        Some(v) => v.parse::<u64>().map_err(|_| ApiError::invalid(format!("since `{v}` is not a sequence number")))?,
        None => 0,
    };
    Ok(Json(state.events.since(since)))
}
