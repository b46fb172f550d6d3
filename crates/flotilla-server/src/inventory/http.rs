//! `/api/v1` inventory routes (bearer token, like the rest of `/api/v1`).

use std::sync::Arc;

use axum::Json;
use axum::extract::{Path, RawQuery, State};
use flotilla_api as api;
use flotilla_store::InventorySetting;
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

use crate::app::AppState;
use crate::inventory::{self, Query, TypeSnapshot};
use crate::platform::api_error::ApiError;
use crate::platform::extract::{Body, query_values};

type Result<T> = std::result::Result<T, ApiError>;
type S = State<Arc<AppState>>;

pub fn routes() -> OpenApiRouter<Arc<AppState>> {
    OpenApiRouter::new()
        .routes(routes!(node_inventory))
        .routes(routes!(query))
        .routes(routes!(list_settings))
        .routes(routes!(put_settings, delete_settings))
}

#[utoipa::path(get, path = "/api/v1/nodes/{id}/inventory",
    params(("type" = Option<String>, Query, description = "Only this type, e.g. Application or Custom:Rack")),
    responses((status = 200, body = [api::InventoryTypeView]), (status = 400, body = api::ErrorBody), (status = 404, body = api::ErrorBody)))]
async fn node_inventory(
    State(state): S,
    Path(id): Path<String>,
    RawQuery(raw): RawQuery,
) -> Result<Json<Vec<api::InventoryTypeView>>> {
    let type_name = query_values(raw.as_deref(), "type").into_iter().next();
    Ok(Json(inventory::show(&state, &id, type_name.as_deref()).await?.into_iter().map(snapshot_to_api).collect()))
}

#[utoipa::path(post, path = "/api/v1/inventory/query", request_body = api::InventoryQuery,
    responses((status = 200, body = api::InventoryPage), (status = 400, body = api::ErrorBody)))]
async fn query(State(state): S, Body(req): Body<api::InventoryQuery>) -> Result<Json<api::InventoryPage>> {
    let q = Query { type_name: req.type_name, filters: req.filters, limit: req.limit, after: req.after };
    let page = inventory::query(&state, q).await?;
    Ok(Json(api::InventoryPage {
        rows: page
            .rows
            .into_iter()
            .map(|r| api::InventoryRow { node_id: r.node_id, hostname: r.hostname, items: r.items })
            .collect(),
        next: page.next,
    }))
}

#[utoipa::path(get, path = "/api/v1/inventory/settings", responses((status = 200, body = [api::InventorySettings])))]
async fn list_settings(State(state): S) -> Result<Json<Vec<api::InventorySettings>>> {
    Ok(Json(inventory::list_settings(&state).await?.into_iter().map(settings_to_api).collect()))
}

#[utoipa::path(put, path = "/api/v1/inventory/settings/{group}", request_body = api::InventorySettings,
    responses((status = 200, body = api::InventorySettings), (status = 400, body = api::ErrorBody), (status = 404, body = api::ErrorBody)))]
async fn put_settings(
    State(state): S,
    Path(group): Path<String>,
    Body(req): Body<api::InventorySettings>,
) -> Result<Json<api::InventorySettings>> {
    Ok(Json(settings_to_api(inventory::put_settings(&state, &group, req.interval_seconds, req.files).await?)))
}

#[utoipa::path(delete, path = "/api/v1/inventory/settings/{group}",
    responses((status = 200), (status = 404, body = api::ErrorBody)))]
async fn delete_settings(State(state): S, Path(group): Path<String>) -> Result<Json<()>> {
    inventory::delete_settings(&state, &group).await?;
    Ok(Json(()))
}

fn snapshot_to_api(t: TypeSnapshot) -> api::InventoryTypeView {
    api::InventoryTypeView {
        type_name: t.stored.type_name,
        content_hash: t.stored.content_hash,
        item_count: t.stored.item_count,
        collected_at: api::rfc3339(t.stored.collected_at),
        items: t.items,
    }
}

fn settings_to_api(s: InventorySetting) -> api::InventorySettings {
    api::InventorySettings {
        group: s.group_name,
        interval_seconds: s.interval_seconds.and_then(|i| u32::try_from(i).ok()),
        files: s.files,
    }
}
