//! `/api/v1/vulndb`: the advisory database (operator API; bearer token), and the one place
//! where its results become REST types. Import gets its own body limit: OSV exports are
//! streamed by the CLI in batches of a few MiB.

use std::sync::Arc;

use axum::Json;
use axum::extract::{DefaultBodyLimit, Query, State};
use flotilla_api as api;
use flotilla_store::{AdvisoryStats, Store};
use flotilla_vuln::AdvisoryMatch;
use serde::Deserialize;
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

use crate::app::AppState;
use crate::assessments::vulndb;
use crate::platform::ServiceError;
use crate::platform::api_error::ApiError;
use crate::platform::extract::Body;

type S = State<Arc<AppState>>;

/// Largest import request body.
pub const IMPORT_BODY_LIMIT: usize = 16 * 1024 * 1024;

pub fn routes() -> OpenApiRouter<Arc<AppState>> {
    OpenApiRouter::new()
        .routes(routes!(import))
        .routes(routes!(status))
        .routes(routes!(match_version))
        // axum's extractors stop at 2 MB by default; a batch may be bigger.
        .layer(DefaultBodyLimit::max(IMPORT_BODY_LIMIT))
}

#[utoipa::path(post, path = "/api/v1/vulndb/records", request_body = api::VulnImport,
    responses((status = 200, body = api::VulnImportResult, description = "Counts; each bad record is rejected alone, with its reason"),
        (status = 400, body = api::ErrorBody)))]
async fn import(State(state): S, Body(req): Body<api::VulnImport>) -> Result<Json<api::VulnImportResult>, ApiError> {
    let result = import_request(state.store.as_ref(), req).await?;
    if result.new > 0 {
        super::templates::schedule_daily(&state).await?;
    }
    Ok(Json(result))
}

#[utoipa::path(get, path = "/api/v1/vulndb/status", responses((status = 200, body = api::VulnDbStatus)))]
async fn status(State(state): S) -> Result<Json<api::VulnDbStatus>, ApiError> {
    Ok(Json(status_to_api(vulndb::status(state.store.as_ref()).await?)))
}

#[derive(Deserialize)]
struct MatchQuery {
    ecosystem: String,
    package: String,
    version: String,
}

#[utoipa::path(get, path = "/api/v1/vulndb/match",
    params(("ecosystem" = String, Query, description = "OSV ecosystem, e.g. Debian:12 or Ubuntu:22.04:LTS"),
        ("package" = String, Query, description = "Package name as the advisories use it (Debian/Ubuntu: source package)"),
        ("version" = String, Query, description = "Exact version, compared with the ecosystem's own ordering")),
    responses((status = 200, body = [api::VulnMatch]), (status = 400, body = api::ErrorBody)))]
async fn match_version(
    State(state): S,
    query: Result<Query<MatchQuery>, axum::extract::rejection::QueryRejection>,
) -> Result<Json<Vec<api::VulnMatch>>, ApiError> {
    let Query(q) =
        query.map_err(|e| ApiError::invalid(format!("{}: give ecosystem, package and version", e.body_text())))?;
    let rows = vulndb::match_version(state.store.as_ref(), &q.ecosystem, &q.package, &q.version).await?;
    Ok(Json(rows.into_iter().map(match_to_api).collect()))
}

/// [`vulndb::import`] of a request as the API carries it (also the library's entry point for
/// tools that import without a server).
pub async fn import_request(store: &dyn Store, req: api::VulnImport) -> Result<api::VulnImportResult, ServiceError> {
    let records = req.records.into_iter().map(|r| vulndb::RecordText { source: r.source, text: r.text }).collect();
    let summary = vulndb::import(store, records).await?;
    Ok(api::VulnImportResult {
        new: summary.new,
        updated: summary.updated,
        unchanged: summary.unchanged,
        rejected: summary
            .rejected
            .into_iter()
            .map(|r| api::VulnRejected { source: r.source, id: r.id, reason: r.reason })
            .collect(),
    })
}

fn status_to_api(stats: AdvisoryStats) -> api::VulnDbStatus {
    api::VulnDbStatus {
        advisories: stats.total,
        ecosystems: stats
            .ecosystems
            .into_iter()
            .map(|(ecosystem, advisories, newest)| api::VulnEcosystemStatus {
                ecosystem,
                advisories,
                newest_modified: Some(api::rfc3339(newest / 1000)),
            })
            .collect(),
        newest: stats.newest.map(|(id, modified)| api::VulnNewest { id, modified }),
    }
}

fn match_to_api(m: AdvisoryMatch) -> api::VulnMatch {
    api::VulnMatch {
        advisory_id: m.advisory_id,
        aliases: m.aliases,
        package: m.package,
        fixed_version: m.fixed_version,
        severity: m.severity.to_string(),
        score: m.score,
        title: m.title,
    }
}
