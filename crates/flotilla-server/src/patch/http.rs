//! `/api/v1/patch` routes, and the one place where Patch Manager's records become REST types.
//! `{baseline}` is a baseline's id or its name; `{node}` a node id.

use std::collections::BTreeMap;
use std::sync::Arc;

use axum::Json;
use axum::extract::{Path, RawQuery, State};
use axum::http::StatusCode;
use flotilla_api as api;
use flotilla_store::{PatchStateRecord, PatchSummaryRecord};
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

use crate::app::AppState;
use crate::patch::{self, BaselineView, GroupView};
use crate::platform::api_error::ApiError;
use crate::platform::extract::{Body, query_values};

type Result<T> = std::result::Result<T, ApiError>;
type S = State<Arc<AppState>>;

pub fn routes() -> OpenApiRouter<Arc<AppState>> {
    OpenApiRouter::new()
        .routes(routes!(list_patch_baselines, create_patch_baseline))
        .routes(routes!(show_patch_baseline, update_patch_baseline, remove_patch_baseline))
        .routes(routes!(set_default_patch_baseline))
        .routes(routes!(list_patch_groups))
        .routes(routes!(set_patch_group))
        .routes(routes!(node_patch_states))
        .routes(routes!(patch_compliance))
}

fn baseline_to_api(b: BaselineView) -> api::PatchBaseline {
    api::PatchBaseline {
        id: b.record.id,
        name: b.record.name,
        os: b.record.os,
        predefined: b.record.predefined,
        default: b.default,
        patch_groups: b.groups,
        spec: b.spec,
        created_at: api::rfc3339(b.record.created_at),
        updated_at: api::rfc3339(b.record.updated_at),
    }
}

fn group_to_api(g: GroupView) -> api::PatchGroup {
    api::PatchGroup { group: g.group, baseline_id: g.baseline.id, baseline: g.baseline.name, os: g.baseline.os }
}

fn state_to_api(p: PatchStateRecord) -> api::PatchStateRow {
    api::PatchStateRow {
        name: p.name,
        arch: p.arch,
        state: p.state.as_str().to_owned(),
        installed_version: p.installed_version,
        available_version: p.available_version,
        severity: p.severity.as_str().to_owned(),
        classification: p.classification,
        cves: p.cves,
        repository: p.repository,
        counts: false,
    }
}

fn summary_to_api(s: PatchSummaryRecord) -> api::PatchCompliance {
    // Written by this server from a map of the same type; unreadable means no counts.
    let counts: BTreeMap<String, u64> = serde_json::from_str(&s.counts).unwrap_or_default();
    api::PatchCompliance {
        node_id: s.node_id,
        baseline: s.baseline_name,
        baseline_id: s.baseline_id,
        patch_group: s.patch_group,
        status: s.status.as_str().to_owned(),
        severity: s.severity.as_str().to_owned(),
        counts,
        operation: s.operation,
        reboot_option: s.reboot_option,
        invocation_id: s.invocation_id,
        time: api::rfc3339(s.ended_at),
    }
}

#[utoipa::path(get, path = "/api/v1/patch/baselines", responses((status = 200, body = [api::PatchBaseline])))]
async fn list_patch_baselines(State(state): S) -> Result<Json<Vec<api::PatchBaseline>>> {
    Ok(Json(patch::list_baselines(&state).await?.into_iter().map(baseline_to_api).collect()))
}

#[utoipa::path(post, path = "/api/v1/patch/baselines", request_body = api::BaselineSpec,
    responses((status = 201, body = api::PatchBaseline), (status = 400, body = api::ErrorBody), (status = 409, body = api::ErrorBody)))]
async fn create_patch_baseline(
    State(state): S,
    Body(spec): Body<api::BaselineSpec>,
) -> Result<(StatusCode, Json<api::PatchBaseline>)> {
    let b = patch::create_baseline(&state, spec).await?;
    Ok((StatusCode::CREATED, Json(baseline_to_api(b))))
}

#[utoipa::path(get, path = "/api/v1/patch/baselines/{baseline}",
    responses((status = 200, body = api::PatchBaseline), (status = 404, body = api::ErrorBody)))]
async fn show_patch_baseline(State(state): S, Path(baseline): Path<String>) -> Result<Json<api::PatchBaseline>> {
    Ok(Json(baseline_to_api(patch::get_baseline(&state, &baseline).await?)))
}

#[utoipa::path(put, path = "/api/v1/patch/baselines/{baseline}", request_body = api::BaselineSpec,
    responses((status = 200, body = api::PatchBaseline), (status = 400, body = api::ErrorBody), (status = 404, body = api::ErrorBody)))]
async fn update_patch_baseline(
    State(state): S,
    Path(baseline): Path<String>,
    Body(spec): Body<api::BaselineSpec>,
) -> Result<Json<api::PatchBaseline>> {
    Ok(Json(baseline_to_api(patch::update_baseline(&state, &baseline, spec).await?)))
}

#[utoipa::path(delete, path = "/api/v1/patch/baselines/{baseline}",
    responses((status = 200), (status = 400, body = api::ErrorBody), (status = 404, body = api::ErrorBody)))]
async fn remove_patch_baseline(State(state): S, Path(baseline): Path<String>) -> Result<Json<()>> {
    patch::delete_baseline(&state, &baseline).await?;
    Ok(Json(()))
}

#[utoipa::path(put, path = "/api/v1/patch/defaults/{os}", request_body = api::SetDefaultBaseline,
    responses((status = 200, body = api::PatchBaseline), (status = 400, body = api::ErrorBody), (status = 404, body = api::ErrorBody)))]
async fn set_default_patch_baseline(
    State(state): S,
    Path(os): Path<String>,
    Body(req): Body<api::SetDefaultBaseline>,
) -> Result<Json<api::PatchBaseline>> {
    Ok(Json(baseline_to_api(patch::set_default(&state, &os, &req.baseline).await?)))
}

#[utoipa::path(get, path = "/api/v1/patch/groups", responses((status = 200, body = [api::PatchGroup])))]
async fn list_patch_groups(State(state): S) -> Result<Json<Vec<api::PatchGroup>>> {
    Ok(Json(patch::list_groups(&state).await?.into_iter().map(group_to_api).collect()))
}

#[utoipa::path(put, path = "/api/v1/patch/groups/{group}", request_body = api::SetPatchGroup,
    responses((status = 200, body = api::PatchGroup), (status = 400, body = api::ErrorBody), (status = 404, body = api::ErrorBody)))]
async fn set_patch_group(
    State(state): S,
    Path(group): Path<String>,
    Body(req): Body<api::SetPatchGroup>,
) -> Result<Json<api::PatchGroup>> {
    Ok(Json(group_to_api(patch::set_group(&state, &group, &req.baseline).await?)))
}

#[utoipa::path(get, path = "/api/v1/patch/states/{node}",
    responses((status = 200, body = [api::PatchStateRow]), (status = 404, body = api::ErrorBody)))]
async fn node_patch_states(State(state): S, Path(node): Path<String>) -> Result<Json<Vec<api::PatchStateRow>>> {
    Ok(Json(patch::states(&state, &node).await?.into_iter().map(state_to_api).collect()))
}

#[utoipa::path(get, path = "/api/v1/patch/compliance",
    params(("target" = Option<Vec<String>>, Query, description = "Only nodes matching these targets (a union)")),
    responses((status = 200, body = [api::PatchCompliance]), (status = 400, body = api::ErrorBody)))]
async fn patch_compliance(State(state): S, RawQuery(raw): RawQuery) -> Result<Json<Vec<api::PatchCompliance>>> {
    let targets = query_values(raw.as_deref(), "target");
    Ok(Json(patch::compliance(&state, &targets).await?.into_iter().map(summary_to_api).collect()))
}
