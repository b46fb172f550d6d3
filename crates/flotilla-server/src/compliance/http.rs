//! `/api/v1/compliance` routes, and the one place where compliance becomes REST types.

use std::sync::Arc;

use axum::Json;
use axum::extract::{RawQuery, State};
use flotilla_api as api;
use flotilla_store::ComplianceItem;
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

use crate::app::AppState;
use crate::compliance::{self, parse_type};
use crate::platform::ServiceError;
use crate::platform::api_error::ApiError;
use crate::platform::extract::query_values;

type Result<T> = std::result::Result<T, ApiError>;
type S = State<Arc<AppState>>;

pub fn routes() -> OpenApiRouter<Arc<AppState>> {
    OpenApiRouter::new()
        .routes(routes!(list_compliance))
        .routes(routes!(compliance_summary))
        .routes(routes!(compliance_history))
}

fn item_to_api(i: ComplianceItem) -> api::ComplianceItem {
    api::ComplianceItem {
        node_id: i.node_id,
        kind: i.kind.as_str().to_owned(),
        id: i.item_id,
        title: i.title,
        status: i.status.as_str().to_owned(),
        severity: i.severity.as_str().to_owned(),
        detail: i.detail,
        execution_id: i.execution_id,
        time: api::rfc3339(i.time),
    }
}

#[utoipa::path(get, path = "/api/v1/compliance",
    params(
        ("target" = Option<Vec<String>>, Query, description = "Only nodes matching these targets (a union)"),
        ("type" = Option<String>, Query, description = "Association, Patch or Vulnerability")
    ),
    responses((status = 200, body = [api::ComplianceItem]), (status = 400, body = api::ErrorBody)))]
async fn list_compliance(State(state): S, RawQuery(raw): RawQuery) -> Result<Json<Vec<api::ComplianceItem>>> {
    let targets = query_values(raw.as_deref(), "target");
    let kind = parse_type(query_values(raw.as_deref(), "type").first().map(String::as_str))?;
    let items = compliance::list(&state, &targets, kind).await?;
    Ok(Json(items.into_iter().map(item_to_api).collect()))
}

#[utoipa::path(get, path = "/api/v1/compliance/summary",
    params(("type" = Option<String>, Query, description = "Association, Patch or Vulnerability")),
    responses((status = 200, body = [api::ComplianceSummary]), (status = 400, body = api::ErrorBody)))]
async fn compliance_summary(State(state): S, RawQuery(raw): RawQuery) -> Result<Json<Vec<api::ComplianceSummary>>> {
    let kind = parse_type(query_values(raw.as_deref(), "type").first().map(String::as_str))?;
    let list = compliance::summary(&state, kind).await?;
    Ok(Json(
        list.into_iter()
            .map(|s| api::ComplianceSummary {
                kind: s.kind.as_str().to_owned(),
                compliant: s.compliant,
                non_compliant: s.non_compliant,
                non_compliant_by_severity: s
                    .non_compliant_by_severity
                    .into_iter()
                    .map(|(k, n)| (k.as_str().to_owned(), n))
                    .collect(),
                items: s.items,
            })
            .collect(),
    ))
}

#[utoipa::path(get, path = "/api/v1/compliance/history",
    params(
        ("node" = String, Query, description = "The node"),
        ("type" = Option<String>, Query, description = "Association, Patch or Vulnerability"),
        ("limit" = Option<u32>, Query, description = "At most this many, newest first (default 100, at most 1000)")
    ),
    responses((status = 200, body = [api::ComplianceItem]), (status = 400, body = api::ErrorBody), (status = 404, body = api::ErrorBody)))]
async fn compliance_history(State(state): S, RawQuery(raw): RawQuery) -> Result<Json<Vec<api::ComplianceItem>>> {
    let one = |k: &str| query_values(raw.as_deref(), k).into_iter().next();
    let node = one("node").ok_or_else(|| ServiceError::Invalid("give the node: ?node=NODE".into()))?;
    let kind = parse_type(one("type").as_deref())?;
    let limit = one("limit")
        .map(|l| l.parse::<u32>().map_err(|_| ServiceError::Invalid(format!("limit `{l}` is not a whole number"))))
        .transpose()?;
    let items = compliance::history(&state, &node, kind, limit).await?;
    Ok(Json(items.into_iter().map(item_to_api).collect()))
}
