//! `/api/v1/sessions`: the records (list, show, terminate, transcript) and the three upgraded
//! byte streams — `GET /api/v1/sessions/shell` and `GET /api/v1/sessions/port-forward` open a
//! session, `GET /api/v1/sessions/{id}/connect` one forwarded TCP connection of it. Each
//! needs `Connection: Upgrade` and `Upgrade: flotilla-session` (HTTP/1.1) and answers `101`
//! with the session id in `flotilla-session-id` once the node's agent has started it, or an
//! error body saying why not (node offline, no such user on the node, connection refused).

use std::sync::Arc;

use axum::Json;
use axum::body::Body;
use axum::extract::{Path, RawQuery, Request, State};
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::Response;
use flotilla_api as api;
use flotilla_store::{SessionConnectionRecord, SessionRecord};
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

use super::{ShellRequest, bridge};
use crate::app::AppState;
use crate::platform::ServiceError;
use crate::platform::api_error::ApiError;
use crate::platform::extract::query_values;

type S = State<Arc<AppState>>;
type Result<T> = std::result::Result<T, ApiError>;

pub fn routes() -> OpenApiRouter<Arc<AppState>> {
    OpenApiRouter::new()
        .routes(routes!(list))
        .routes(routes!(shell))
        .routes(routes!(port_forward))
        .routes(routes!(show))
        .routes(routes!(terminate))
        .routes(routes!(transcript))
        .routes(routes!(connect))
}

fn to_api(r: SessionRecord, connections: Vec<SessionConnectionRecord>) -> api::Session {
    api::Session {
        id: r.id,
        node_id: r.node_id,
        kind: r.kind.as_str().to_owned(),
        user: r.run_as,
        started_at: api::rfc3339(r.started_at),
        ended_at: r.ended_at.map(api::rfc3339),
        bytes_in: r.bytes_in,
        bytes_out: r.bytes_out,
        reason: r.reason,
        opened_by: r.opened_by,
        target: r.target,
        transcript: r.transcript.is_some(),
        connections: connections
            .into_iter()
            .map(|c| api::SessionConnection {
                seq: c.seq,
                target: c.target,
                opened_at: api::rfc3339(c.opened_at),
                closed_at: api::rfc3339(c.closed_at),
                bytes_in: c.bytes_in,
                bytes_out: c.bytes_out,
                reason: c.reason,
            })
            .collect(),
    }
}

fn one(raw: &Option<String>, key: &str) -> Option<String> {
    query_values(raw.as_deref(), key).into_iter().next()
}

fn number<T: std::str::FromStr>(raw: &Option<String>, key: &str, default: T) -> Result<T> {
    match one(raw, key) {
        None => Ok(default),
        Some(v) => v.parse().map_err(|_| ApiError::invalid(format!("`{key}` must be a whole number, not `{v}`"))),
    }
}

/// The upgrade this request asks for, or why it cannot be one.
fn upgrade_of(request: &mut Request) -> Result<hyper::upgrade::OnUpgrade> {
    let asks = request
        .headers()
        .get(header::UPGRADE)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.eq_ignore_ascii_case(api::UPGRADE_PROTOCOL));
    if !asks {
        return Err(ApiError::invalid(format!(
            "this endpoint carries a session stream: send `Connection: Upgrade` and `Upgrade: {}` over HTTP/1.1 (use `flotilla session`)",
            api::UPGRADE_PROTOCOL
        )));
    }
    request.extensions_mut().remove::<hyper::upgrade::OnUpgrade>().ok_or_else(|| {
        ApiError::invalid("this connection cannot be upgraded: use HTTP/1.1 (HTTP/2 carries no upgrades)")
    })
}

fn switching(id: &str) -> Result<Response> {
    Response::builder()
        .status(StatusCode::SWITCHING_PROTOCOLS)
        .header(header::CONNECTION, "upgrade")
        .header(header::UPGRADE, api::UPGRADE_PROTOCOL)
        .header(api::SESSION_ID_HEADER, id)
        .body(Body::empty())
        .map_err(|e| ApiError::from(ServiceError::Internal(format!("cannot build the 101 response: {e}"))))
}

/// The name of the API token on this request (it passed the token check to get here).
async fn token_name(state: &AppState, headers: &HeaderMap) -> String {
    let token = headers
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.strip_prefix("Bearer "))
        .map(str::trim)
        .unwrap_or_default();
    let hash = crate::platform::secret::sha256_hex(token.as_bytes());
    state.store.find_api_token(&hash).await.ok().flatten().unwrap_or_else(|| "unknown".into())
}

#[utoipa::path(get, path = "/api/v1/sessions", operation_id = "list_sessions",
    params(("node" = Option<String>, Query, description = "Only this node's sessions")),
    responses((status = 200, body = [api::Session])))]
async fn list(State(state): S, RawQuery(raw): RawQuery) -> Result<Json<Vec<api::Session>>> {
    let node = one(&raw, "node");
    let list = super::list(&state, node.as_deref()).await?;
    Ok(Json(list.into_iter().map(|r| to_api(r, Vec::new())).collect()))
}

#[utoipa::path(get, path = "/api/v1/sessions/{id}", operation_id = "show_session",
    params(("id" = String, Path, description = "Session id")),
    responses((status = 200, body = api::Session), (status = 404, body = api::ErrorBody)))]
async fn show(State(state): S, Path(id): Path<String>) -> Result<Json<api::Session>> {
    let (record, connections) = super::get(&state, &id).await?;
    Ok(Json(to_api(record, connections)))
}

#[utoipa::path(post, path = "/api/v1/sessions/{id}/terminate", operation_id = "terminate_session",
    params(("id" = String, Path, description = "Session id")),
    responses((status = 200, body = api::Session), (status = 404, body = api::ErrorBody), (status = 409, body = api::ErrorBody)))]
async fn terminate(State(state): S, Path(id): Path<String>) -> Result<Json<api::Session>> {
    let record = super::terminate(&state, &id).await?;
    let connections = state.store.list_connections(&id).await.map_err(ServiceError::from)?;
    Ok(Json(to_api(record, connections)))
}

#[utoipa::path(get, path = "/api/v1/sessions/{id}/transcript", operation_id = "session_transcript",
    params(("id" = String, Path, description = "Session id")),
    responses((status = 200, description = "The transcript, asciicast v2", content_type = "application/x-asciicast"),
        (status = 404, body = api::ErrorBody)))]
async fn transcript(State(state): S, Path(id): Path<String>) -> Result<Response> {
    let (record, _) = super::get(&state, &id).await?;
    let Some(prefix) = record.transcript else {
        return Err(ApiError::not_found(format!(
            "session {id} is a {} and has no transcript: `flotilla session show {id}` lists its connections",
            record.kind
        )));
    };
    let bytes = super::transcript::read(&state.artifacts, &prefix)
        .await
        .map_err(|e| ApiError::from(ServiceError::Internal(e.to_string())))?
        .ok_or_else(|| ApiError::not_found(format!("session {id} has no transcript yet")))?;
    Response::builder()
        .header(header::CONTENT_TYPE, "application/x-asciicast")
        .body(Body::from(bytes))
        .map_err(|e| ApiError::from(ServiceError::Internal(e.to_string())))
}

#[utoipa::path(get, path = "/api/v1/sessions/shell", operation_id = "session_shell",
    params(
        ("node" = String, Query, description = "The node"),
        ("user" = Option<String>, Query, description = "Run-as user (default: the node's `session-run-as` tag, then the server's `session_run_as`)"),
        ("rows" = Option<u16>, Query, description = "Terminal rows (24)"),
        ("cols" = Option<u16>, Query, description = "Terminal columns (80)"),
        ("term" = Option<String>, Query, description = "TERM on the node (xterm-256color)")
    ),
    responses((status = 101, description = "Upgraded: the shell's framed stream; the session id in `flotilla-session-id`"),
        (status = 400, body = api::ErrorBody), (status = 404, body = api::ErrorBody), (status = 409, body = api::ErrorBody)))]
async fn shell(State(state): S, RawQuery(raw): RawQuery, mut request: Request) -> Result<Response> {
    let upgrade = upgrade_of(&mut request)?;
    let node = one(&raw, "node").ok_or_else(|| ApiError::invalid("`node` is required"))?;
    let rows: u16 = number(&raw, "rows", 24)?;
    let cols: u16 = number(&raw, "cols", 80)?;
    let term = one(&raw, "term").unwrap_or_else(|| "xterm-256color".into());
    let opened_by = token_name(&state, request.headers()).await;
    let req = ShellRequest { node, user: one(&raw, "user"), rows, cols, term: term.clone(), opened_by };
    let opened = super::open_shell(&state, req).await?;
    let response = switching(&opened.record.id)?;
    let title =
        format!("flotilla session {} on {} as {}", opened.record.id, opened.record.node_id, opened.record.run_as);
    if let Some(stream) = opened.stream {
        tokio::spawn(bridge::shell(
            state.clone(),
            opened.live,
            stream,
            upgrade,
            bridge::Terminal { rows, cols, term, title },
        ));
    }
    Ok(response)
}

#[utoipa::path(get, path = "/api/v1/sessions/port-forward", operation_id = "session_port_forward",
    params(
        ("node" = String, Query, description = "The node"),
        ("host" = String, Query, description = "Host to connect to, as the node resolves it"),
        ("port" = u16, Query, description = "Port to connect to")
    ),
    responses((status = 101, description = "Upgraded: the session's control stream (it lasts while this stays open); the session id in `flotilla-session-id`"),
        (status = 400, body = api::ErrorBody), (status = 404, body = api::ErrorBody), (status = 409, body = api::ErrorBody)))]
async fn port_forward(State(state): S, RawQuery(raw): RawQuery, mut request: Request) -> Result<Response> {
    let upgrade = upgrade_of(&mut request)?;
    let node = one(&raw, "node").ok_or_else(|| ApiError::invalid("`node` is required"))?;
    let host = one(&raw, "host").ok_or_else(|| ApiError::invalid("`host` is required"))?;
    let port: u16 = number(&raw, "port", 0)?;
    let opened_by = token_name(&state, request.headers()).await;
    let opened = super::open_forward(&state, &node, &host, port, opened_by).await?;
    let response = switching(&opened.record.id)?;
    tokio::spawn(bridge::forward_control(state.clone(), opened.live, upgrade));
    Ok(response)
}

#[utoipa::path(get, path = "/api/v1/sessions/{id}/connect", operation_id = "session_connect",
    params(("id" = String, Path, description = "An open port-forward session")),
    responses((status = 101, description = "Upgraded: raw bytes of one TCP connection to the session's HOST:PORT from the node"),
        (status = 400, body = api::ErrorBody), (status = 404, body = api::ErrorBody), (status = 409, body = api::ErrorBody)))]
async fn connect(State(state): S, Path(id): Path<String>, mut request: Request) -> Result<Response> {
    let upgrade = upgrade_of(&mut request)?;
    let (live, seq, stream) = super::connect(&state, &id).await?;
    let response = switching(&id)?;
    tokio::spawn(bridge::connection(state.clone(), live, seq, stream, upgrade));
    Ok(response)
}
