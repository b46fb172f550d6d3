//! Routes of the platform itself: the version, the event log and the server's status (its
//! workers, agents and store). Generic over the router's
//! state: the platform never names the application state, it only takes `PlatformState` from it.
//!
//! `/api/v1/events` pages the durable event log by sequence number (`?after=SEQ`), filters by
//! exact type names (`?type=T`, repeatable), and follows it by long poll (`?wait=SECONDS`: the
//! reply comes as soon as one matching event exists, or empty when the wait ends). Bad input (a
//! negative or non-numeric `after`, an unknown type, a limit or wait out of range) is a 400
//! that says what to send instead.

use std::time::Duration;

use axum::Json;
use axum::extract::{FromRef, RawQuery, State};
use flotilla_api as api;
use flotilla_core::{Cursor, EventType};
use flotilla_store::EventRecord;
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

use super::api_error::ApiError;
use super::extract::query_values;
use super::status;
use super::worker::{WorkerSnapshot, WorkerState};
use super::{PlatformState, ServiceError};

type Result<T> = std::result::Result<T, ApiError>;
type S = State<PlatformState>;

pub fn routes<T>() -> OpenApiRouter<T>
where
    T: Clone + Send + Sync + 'static,
    PlatformState: FromRef<T>,
{
    OpenApiRouter::new()
        .routes(routes!(version))
        .routes(routes!(list_events))
        .routes(routes!(last_event))
        .routes(routes!(server_status))
}

#[utoipa::path(get, path = "/api/v1/version", responses((status = 200, body = api::VersionInfo)))]
async fn version(State(state): S) -> Json<api::VersionInfo> {
    Json(api::VersionInfo { version: env!("CARGO_PKG_VERSION").into(), store: state.store.backend().into() })
}

/// An event as the REST API (`events ls -o json`) and webhook deliveries show it.
pub fn to_api(e: EventRecord) -> api::Event {
    api::Event {
        seq: e.seq,
        id: e.id,
        time: api::rfc3339(e.time),
        kind: e.kind.as_str().to_owned(),
        source: e.source,
        resources: e.resources,
        detail: e.detail,
    }
}

/// The parsed query of `GET /api/v1/events`.
#[derive(Debug, PartialEq)]
struct Query {
    after: Cursor,
    types: Vec<EventType>,
    limit: u32,
    wait: Option<Duration>,
}

fn parse_query(query: Option<&str>) -> std::result::Result<Query, String> {
    let one = |key: &str| -> std::result::Result<Option<String>, String> {
        let mut values = query_values(query, key);
        match values.len() {
            0 => Ok(None),
            1 => Ok(values.pop()),
            _ => Err(format!("`{key}` is given {} times: give it once", values.len())),
        }
    };
    // `since` is what this endpoint took before the log was durable.
    let after = match (one("after")?, one("since")?) {
        (Some(_), Some(_)) => return Err("give `after` or its old name `since`, not both".into()),
        (Some(v), None) | (None, Some(v)) => v.parse::<Cursor>().map_err(|e| format!("after: {e}"))?,
        (None, None) => Cursor::START,
    };
    let types = query_values(query, "type")
        .iter()
        .map(|t| t.parse::<EventType>().map_err(|e| e.to_string()))
        .collect::<std::result::Result<Vec<_>, _>>()?;
    let limit = match one("limit")? {
        None => api::EVENTS_MAX_LIMIT,
        Some(v) => match v.parse::<u32>() {
            Ok(n) if (1..=api::EVENTS_MAX_LIMIT).contains(&n) => n,
            _ => return Err(format!("limit `{v}` is not a number from 1 to {}", api::EVENTS_MAX_LIMIT)),
        },
    };
    let wait = match one("wait")? {
        None => None,
        Some(v) => match v.parse::<u32>() {
            Ok(n) if n <= api::EVENTS_MAX_WAIT => Some(Duration::from_secs(u64::from(n))),
            _ => return Err(format!("wait `{v}` is not a number of seconds from 0 to {}", api::EVENTS_MAX_WAIT)),
        },
    };
    Ok(Query { after, types, limit, wait })
}

#[utoipa::path(get, path = "/api/v1/events",
    params(
        ("after" = Option<i64>, Query, description = "Only events with a higher sequence number (default 0: from the start)"),
        ("type" = Option<Vec<String>>, Query, description = "Only events of these types (exact names, repeatable)"),
        ("limit" = Option<u32>, Query, description = "At most this many (1 to 1000, default 1000)"),
        ("wait" = Option<u32>, Query, description = "Long poll: wait up to this many seconds (at most 30) for a first matching event"),
    ),
    responses((status = 200, body = [api::Event], description = "Oldest first"), (status = 400, body = api::ErrorBody)))]
async fn list_events(State(state): S, RawQuery(query): RawQuery) -> Result<Json<Vec<api::Event>>> {
    let q = parse_query(query.as_deref()).map_err(ApiError::invalid)?;
    let events = match q.wait {
        Some(wait) => state.events.wait_for(q.after, &q.types, q.limit, wait).await,
        None => state.events.list(q.after, &q.types, q.limit).await,
    }
    .map_err(ServiceError::from)?;
    Ok(Json(events.into_iter().map(to_api).collect()))
}

#[utoipa::path(get, path = "/api/v1/events/last",
    responses((status = 200, body = api::EventsHead, description = "The highest sequence number so far: where a follower of new events starts")))]
async fn last_event(State(state): S) -> Result<Json<api::EventsHead>> {
    let last = state.events.last().await.map_err(ServiceError::from)?;
    Ok(Json(api::EventsHead { seq: last.0 }))
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn queries() {
        let ok = |q: &str| parse_query(Some(q)).expect(q);
        assert_eq!(ok(""), Query { after: Cursor(0), types: vec![], limit: api::EVENTS_MAX_LIMIT, wait: None });
        assert_eq!(
            ok("after=12&type=Command.StatusChanged&type=Node.Online&limit=5&wait=30"),
            Query {
                after: Cursor(12),
                types: vec![EventType::CommandStatusChanged, EventType::NodeOnline],
                limit: 5,
                wait: Some(Duration::from_secs(30)),
            }
        );
        assert_eq!(ok("since=7").after, Cursor(7));
        for (bad, says) in [
            ("after=-1", "negative"),
            ("after=abc", "not a sequence number"),
            ("after=1&after=2", "once"),
            ("after=1&since=2", "not both"),
            ("type=command.status", "unknown event type `command.status`"),
            ("limit=0", "from 1 to 1000"),
            ("limit=1001", "from 1 to 1000"),
            ("wait=31", "from 0 to 30"),
            ("wait=-1", "from 0 to 30"),
        ] {
            let err = parse_query(Some(bad)).expect_err(bad);
            assert!(err.contains(says), "{bad}: {err}");
        }
    }
}
