//! `/api/v1/server/status`: the server's workers, agents and store as REST types. Bearer token
//! required (it is an operator route: worker errors can name nodes and commands).

use std::sync::Arc;

use axum::Json;
use axum::extract::State;
use flotilla_api as api;
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

use crate::AppState;
use crate::platform::status;
use crate::platform::worker::{WorkerSnapshot, WorkerState};

pub fn routes() -> OpenApiRouter<Arc<AppState>> {
    OpenApiRouter::new().routes(routes!(server_status))
}

/// `GET /api/v1/server/status`.
#[utoipa::path(get, path = "/api/v1/server/status",
    responses((status = 200, body = api::ServerStatus, description = "Answers while the store is down, with `store.reachable` false")))]
async fn server_status(State(state): State<Arc<AppState>>) -> Json<api::ServerStatus> {
    let s = status::status(state.store.as_ref(), &state.registry, &state.workers).await;
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
