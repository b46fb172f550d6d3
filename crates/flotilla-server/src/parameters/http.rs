//! `/api/v1/parameters` and `/api/v1/keys`: the Parameter Store and the key service's
//! operator surface. Single-parameter calls name the parameter in the query (`?name=/a/b`),
//! since hierarchical names contain slashes.

use std::sync::Arc;

use axum::Json;
use axum::extract::{RawQuery, State};
use flotilla_api as api;
use flotilla_core::parameter::Selector;
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

use crate::app::AppState;
use crate::parameters::{self, NewParameter, ParameterView};
use crate::platform::api_error::ApiError;
use crate::platform::extract::{Body, query_values};
use crate::platform::keys::KeyVersionInfo;

type Result<T> = std::result::Result<T, ApiError>;
type S = State<Arc<AppState>>;

pub fn routes() -> OpenApiRouter<Arc<AppState>> {
    OpenApiRouter::new()
        .routes(routes!(list_parameters, put_parameter, delete_parameter))
        .routes(routes!(get_parameter))
        .routes(routes!(parameter_history))
        .routes(routes!(label_parameter))
        .routes(routes!(list_keys))
        .routes(routes!(rotate_key))
}

fn one(query: Option<&str>, key: &str) -> Option<String> {
    query_values(query, key).into_iter().next()
}

fn flag(query: Option<&str>, key: &str) -> Result<bool> {
    match one(query, key).as_deref() {
        None | Some("false") | Some("0") => Ok(false),
        Some("true") | Some("1") | Some("") => Ok(true),
        Some(other) => Err(ApiError::invalid(format!("{key}=`{other}` is not true or false"))),
    }
}

fn name(query: Option<&str>) -> Result<String> {
    one(query, "name").ok_or_else(|| ApiError::invalid("name the parameter: ?name=/path/to/it"))
}

#[utoipa::path(get, path = "/api/v1/parameters",
    params(("path" = Option<String>, Query, description = "List under this path (default /)"),
           ("recursive" = Option<bool>, Query, description = "All levels below the path, not just the next one"),
           ("decrypt" = Option<bool>, Query, description = "Return SecureString values in clear")),
    responses((status = 200, body = [api::Parameter]), (status = 400, body = api::ErrorBody)))]
async fn list_parameters(State(state): S, RawQuery(query): RawQuery) -> Result<Json<Vec<api::Parameter>>> {
    let q = query.as_deref();
    let path = one(q, "path").unwrap_or_else(|| "/".into());
    let list = parameters::list(&state, &path, flag(q, "recursive")?, flag(q, "decrypt")?).await?;
    Ok(Json(list.into_iter().map(parameter_to_api).collect()))
}

#[utoipa::path(put, path = "/api/v1/parameters", request_body = api::PutParameter,
    responses((status = 200, body = api::Parameter, description = "Stored; the value is not echoed"), (status = 400, body = api::ErrorBody), (status = 409, body = api::ErrorBody)))]
async fn put_parameter(State(state): S, Body(req): Body<api::PutParameter>) -> Result<Json<api::Parameter>> {
    let new = NewParameter {
        name: req.name,
        value: req.value,
        kind: req.kind,
        description: req.description,
        overwrite: req.overwrite,
        tier: req.tier,
    };
    Ok(Json(parameter_to_api(parameters::put(&state, new).await?)))
}

#[utoipa::path(delete, path = "/api/v1/parameters", params(("name" = String, Query, description = "The parameter")),
    responses((status = 200), (status = 404, body = api::ErrorBody)))]
async fn delete_parameter(State(state): S, RawQuery(query): RawQuery) -> Result<Json<()>> {
    parameters::delete(&state, &name(query.as_deref())?).await?;
    Ok(Json(()))
}

#[utoipa::path(get, path = "/api/v1/parameters/value",
    params(("name" = String, Query, description = "The parameter"),
           ("version" = Option<i64>, Query, description = "A version (default: the latest)"),
           ("label" = Option<String>, Query, description = "A label instead of a version"),
           ("decrypt" = Option<bool>, Query, description = "Return a SecureString value in clear")),
    responses((status = 200, body = api::Parameter), (status = 400, body = api::ErrorBody), (status = 404, body = api::ErrorBody)))]
async fn get_parameter(State(state): S, RawQuery(query): RawQuery) -> Result<Json<api::Parameter>> {
    let q = query.as_deref();
    let selector = match (one(q, "version"), one(q, "label")) {
        (Some(_), Some(_)) => return Err(ApiError::invalid("give a version or a label, not both")),
        (Some(v), None) => match v.parse::<i64>() {
            Ok(v) if v >= 1 => Selector::Version(v),
            _ => return Err(ApiError::invalid(format!("version `{v}` is not a whole number from 1"))),
        },
        (None, Some(l)) => Selector::Label(l),
        (None, None) => Selector::Latest,
    };
    Ok(Json(parameter_to_api(parameters::get(&state, &name(q)?, selector, flag(q, "decrypt")?).await?)))
}

#[utoipa::path(get, path = "/api/v1/parameters/history",
    params(("name" = String, Query, description = "The parameter"), ("decrypt" = Option<bool>, Query, description = "Return SecureString values in clear")),
    responses((status = 200, body = [api::Parameter]), (status = 404, body = api::ErrorBody)))]
async fn parameter_history(State(state): S, RawQuery(query): RawQuery) -> Result<Json<Vec<api::Parameter>>> {
    let q = query.as_deref();
    let history = parameters::history(&state, &name(q)?, flag(q, "decrypt")?).await?;
    Ok(Json(history.into_iter().map(parameter_to_api).collect()))
}

#[utoipa::path(post, path = "/api/v1/parameters/labels", request_body = api::LabelParameter,
    responses((status = 200, body = api::Parameter), (status = 400, body = api::ErrorBody), (status = 404, body = api::ErrorBody)))]
async fn label_parameter(State(state): S, Body(req): Body<api::LabelParameter>) -> Result<Json<api::Parameter>> {
    Ok(Json(parameter_to_api(parameters::label(&state, &req.name, req.version, &req.labels).await?)))
}

#[utoipa::path(get, path = "/api/v1/keys", responses((status = 200, body = [api::KeyVersion])))]
async fn list_keys(State(state): S) -> Json<Vec<api::KeyVersion>> {
    Json(parameters::key_versions(&state).into_iter().map(key_to_api).collect())
}

#[utoipa::path(post, path = "/api/v1/keys/rotate", responses((status = 200, body = api::KeyVersion)))]
async fn rotate_key(State(state): S) -> Result<Json<api::KeyVersion>> {
    Ok(Json(key_to_api(parameters::rotate_key(&state).await?)))
}

fn parameter_to_api(p: ParameterView) -> api::Parameter {
    let record = p.record;
    api::Parameter {
        name: record.name,
        kind: record.kind.as_str().to_owned(),
        value: p.value,
        version: record.version,
        labels: record.labels,
        last_modified: api::rfc3339(record.created_at),
        description: record.description,
        tier: record.tier.as_str().to_owned(),
    }
}

fn key_to_api(v: KeyVersionInfo) -> api::KeyVersion {
    api::KeyVersion {
        key_id: v.key_id,
        version: v.version,
        created_at: (v.created_at > 0).then(|| api::rfc3339(v.created_at)),
        current: v.current,
    }
}
