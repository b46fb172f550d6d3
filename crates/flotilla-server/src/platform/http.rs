//! Routes of the platform itself: the version, the event log and the server's status (its
//! workers, agents and store). Generic over the router's
//! state: the platform never names the application state, it only takes `PlatformState` from it.

use axum::Json;
use axum::extract::{FromRef, RawQuery, State};
use flotilla_api as api;
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

use super::PlatformState;
use super::api_error::ApiError;
use super::extract::query_values;
use super::status;
use super::worker::{WorkerSnapshot, WorkerState};

type Result<T> = std::result::Result<T, ApiError>;
type S = State<PlatformState>;

pub fn routes<T>() -> OpenApiRouter<T>
where
    T: Clone + Send + Sync + 'static,
    PlatformState: FromRef<T>,
{
    OpenApiRouter::new().routes(routes!(version)).routes(routes!(list_events)).routes(routes!(server_status))
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

/// `GET /api/v1/server/status` (bearer token: worker errors can name nodes and commands).
#[utoipa::path(get, path = "/api/v1/server/status",
    responses((status = 200, body = api::ServerStatus, description = "Answers while the store is down, with `store.reachable` false")))]
async fn server_status(State(state): S) -> Json<api::ServerStatus> {
    let s = status::status(&state).await;
    Json(api::ServerStatus {
        version: env!("CARGO_PKG_VERSION").into(),
        workers: s.workers.iter().map(worker_to_api).collect(),
        agents: api::AgentCounts {
            connected: s.agents.connected,
            enrolled: s.agents.enrolled,
            online: s.agents.online,
        },
        store: api::StoreStatus {
            backend: s.store.backend.into(),
            reachable: s.store.reachable,
            latency_ms: s.store.latency.map(|d| d.as_secs_f64() * 1000.0),
            error: s.store.error,
        },
    })
}

fn worker_to_api(w: &WorkerSnapshot) -> api::WorkerStatus {
    let (state, restart_at) = match &w.state {
        WorkerState::Running => (api::WorkerState::Running, None),
        WorkerState::Idle => (api::WorkerState::Idle, None),
        WorkerState::BackingOff { until_ms, .. } => (api::WorkerState::BackingOff, Some(api::rfc3339(*until_ms))),
        WorkerState::Failed { .. } => (api::WorkerState::Failed, None),
        WorkerState::Stopped => (api::WorkerState::Stopped, None),
    };
    api::WorkerStatus {
        name: w.name.clone(),
        state,
        last_run: w.last_run.map(|r| api::WorkerRun {
            started_at: api::rfc3339(r.started_at_ms),
            ended_at: r.ended_at_ms.map(api::rfc3339),
        }),
        last_error: w.last_error.clone(),
        restart_at,
        progress: w.progress.clone(),
        runs: w.runs,
        failures: w.failures,
        restarts: w.restarts,
    }
}
