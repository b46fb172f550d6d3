//! `/api/v1/topics`, `/api/v1/subscriptions`, `/api/v1/rules` routes, and the one place where
//! notifications become REST types.

use std::sync::Arc;

use axum::Json;
use axum::extract::{Path, Query, State};
use axum::http::StatusCode;
use flotilla_api as api;
use flotilla_store::{DeliveryRecord, RuleRecord, TopicRecord};
use serde::Deserialize;
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

use crate::app::AppState;
use crate::notifications::{self as n, Endpoint, NewRule, SubscriptionView};
use crate::platform::ServiceError;
use crate::platform::api_error::ApiError;
use crate::platform::extract::Body;

type Result<T> = std::result::Result<T, ApiError>;
type S = State<Arc<AppState>>;

pub fn routes() -> OpenApiRouter<Arc<AppState>> {
    OpenApiRouter::new()
        .routes(routes!(list_topics, create_topic))
        .routes(routes!(delete_topic))
        .routes(routes!(list_subscriptions, create_subscription))
        .routes(routes!(delete_subscription))
        .routes(routes!(deliveries))
        .routes(routes!(redrive))
        .routes(routes!(list_rules, create_rule))
        .routes(routes!(show_rule, delete_rule))
        .routes(routes!(enable_rule))
        .routes(routes!(disable_rule))
}

fn topic_to_api(t: TopicRecord) -> api::Topic {
    api::Topic { name: t.name, subscriptions: t.subscriptions, created_at: api::rfc3339(t.created_at) }
}

fn sub_to_api(v: SubscriptionView) -> api::Subscription {
    let s = v.record;
    api::Subscription {
        id: s.id,
        topic: s.topic,
        kind: s.kind.as_str().to_owned(),
        endpoint: s.endpoint,
        secret: v.generated_secret,
        timeout_seconds: u64::try_from(s.timeout_ms / 1000).unwrap_or(0),
        custom_ca: s.ca_pem.is_some(),
        parameters: s.parameters,
        targets: s.targets,
        counts: v.counts.into_iter().map(|(k, n)| (k.as_str().to_owned(), n)).collect(),
        created_at: api::rfc3339(s.created_at),
    }
}

fn delivery_to_api(d: DeliveryRecord) -> api::Delivery {
    api::Delivery {
        next_attempt: n::next_attempt(&d).map(api::rfc3339),
        event_id: d.event_id,
        seq: d.event_seq,
        status: d.status.as_str().to_owned(),
        attempts: d.attempts,
        last_error: d.last_error,
        time: api::rfc3339(d.updated_at),
    }
}

fn rule_to_api(r: RuleRecord) -> api::Rule {
    api::Rule {
        pattern: serde_json::from_str(&r.pattern).unwrap_or(serde_json::Value::String(r.pattern.clone())),
        id: r.id,
        name: r.name,
        target: r.target,
        parameters: r.parameters,
        targets: r.targets,
        enabled: r.enabled,
        problem: r.problem,
        created_at: api::rfc3339(r.created_at),
        updated_at: api::rfc3339(r.updated_at),
    }
}

#[utoipa::path(post, path = "/api/v1/topics", request_body = api::CreateTopic,
    responses((status = 201, body = api::Topic), (status = 400, body = api::ErrorBody), (status = 409, body = api::ErrorBody)))]
async fn create_topic(State(state): S, Body(req): Body<api::CreateTopic>) -> Result<(StatusCode, Json<api::Topic>)> {
    Ok((StatusCode::CREATED, Json(topic_to_api(n::create_topic(&state, &req.name).await?))))
}

#[utoipa::path(get, path = "/api/v1/topics", responses((status = 200, body = [api::Topic])))]
async fn list_topics(State(state): S) -> Result<Json<Vec<api::Topic>>> {
    Ok(Json(n::list_topics(&state).await?.into_iter().map(topic_to_api).collect()))
}

#[utoipa::path(delete, path = "/api/v1/topics/{name}", params(("name" = String, Path, description = "The topic")),
    responses((status = 204), (status = 404, body = api::ErrorBody)))]
async fn delete_topic(State(state): S, Path(name): Path<String>) -> Result<StatusCode> {
    n::delete_topic(&state, &name).await?;
    Ok(StatusCode::NO_CONTENT)
}

#[utoipa::path(post, path = "/api/v1/subscriptions", request_body = api::CreateSubscription,
    responses((status = 201, body = api::Subscription), (status = 400, body = api::ErrorBody), (status = 404, body = api::ErrorBody)))]
async fn create_subscription(
    State(state): S,
    Body(req): Body<api::CreateSubscription>,
) -> Result<(StatusCode, Json<api::Subscription>)> {
    let given = [req.webhook.is_some(), req.email.is_some(), req.run_document.is_some()];
    if given.iter().filter(|g| **g).count() != 1 {
        return Err(ServiceError::Invalid(
            "give exactly one of --webhook URL, --email ADDRESS, --run-document DOC".into(),
        )
        .into());
    }
    let webhook_only = req.secret.is_some() || req.ca_pem.is_some() || req.timeout_seconds.is_some();
    let endpoint = if let Some(url) = req.webhook {
        Endpoint::Webhook { url, secret: req.secret, ca_pem: req.ca_pem, timeout_seconds: req.timeout_seconds }
    } else if webhook_only {
        return Err(ServiceError::Invalid("--secret-file, --ca and --timeout go only with --webhook".into()).into());
    } else if let Some(address) = req.email {
        Endpoint::Email(address)
    } else {
        Endpoint::RunDocument {
            document: req.run_document.unwrap_or_default(),
            parameters: req.parameters,
            targets: req.targets,
        }
    };
    let view = n::create_subscription(&state, &req.topic, endpoint).await?;
    Ok((StatusCode::CREATED, Json(sub_to_api(view))))
}

#[derive(Debug, Deserialize, utoipa::IntoParams)]
struct TopicFilter {
    /// Only this topic's subscriptions.
    topic: Option<String>,
}

#[utoipa::path(get, path = "/api/v1/subscriptions", params(TopicFilter),
    responses((status = 200, body = [api::Subscription]), (status = 404, body = api::ErrorBody)))]
async fn list_subscriptions(State(state): S, Query(q): Query<TopicFilter>) -> Result<Json<Vec<api::Subscription>>> {
    Ok(Json(n::list_subscriptions(&state, q.topic.as_deref()).await?.into_iter().map(sub_to_api).collect()))
}

#[utoipa::path(delete, path = "/api/v1/subscriptions/{id}", params(("id" = String, Path, description = "The subscription")),
    responses((status = 204), (status = 404, body = api::ErrorBody)))]
async fn delete_subscription(State(state): S, Path(id): Path<String>) -> Result<StatusCode> {
    n::delete_subscription(&state, &id).await?;
    Ok(StatusCode::NO_CONTENT)
}

#[utoipa::path(get, path = "/api/v1/subscriptions/{id}/deliveries", params(("id" = String, Path, description = "The subscription")),
    responses((status = 200, body = [api::Delivery], description = "Newest event first, at most 1000"), (status = 404, body = api::ErrorBody)))]
async fn deliveries(State(state): S, Path(id): Path<String>) -> Result<Json<Vec<api::Delivery>>> {
    Ok(Json(n::deliveries(&state, &id).await?.into_iter().map(delivery_to_api).collect()))
}

#[utoipa::path(post, path = "/api/v1/subscriptions/{id}/redrive", params(("id" = String, Path, description = "The subscription")),
    responses((status = 200, body = api::Redrive), (status = 404, body = api::ErrorBody)))]
async fn redrive(State(state): S, Path(id): Path<String>) -> Result<Json<api::Redrive>> {
    let redriven = n::redrive(&state, &id).await?;
    Ok(Json(api::Redrive { subscription: id, redriven }))
}

#[utoipa::path(post, path = "/api/v1/rules", request_body = api::CreateRule,
    responses((status = 201, body = api::Rule), (status = 400, body = api::ErrorBody), (status = 404, body = api::ErrorBody), (status = 409, body = api::ErrorBody)))]
async fn create_rule(State(state): S, Body(req): Body<api::CreateRule>) -> Result<(StatusCode, Json<api::Rule>)> {
    let rule = n::create_rule(
        &state,
        NewRule {
            name: req.name,
            pattern: req.pattern,
            target: req.target,
            parameters: req.parameters,
            targets: req.targets,
            enabled: req.enabled.unwrap_or(true),
        },
    )
    .await?;
    Ok((StatusCode::CREATED, Json(rule_to_api(rule))))
}

#[utoipa::path(get, path = "/api/v1/rules", responses((status = 200, body = [api::Rule])))]
async fn list_rules(State(state): S) -> Result<Json<Vec<api::Rule>>> {
    Ok(Json(n::list_rules(&state).await?.into_iter().map(rule_to_api).collect()))
}

#[utoipa::path(get, path = "/api/v1/rules/{id}", params(("id" = String, Path, description = "The rule's id or name")),
    responses((status = 200, body = api::Rule), (status = 404, body = api::ErrorBody)))]
async fn show_rule(State(state): S, Path(id): Path<String>) -> Result<Json<api::Rule>> {
    Ok(Json(rule_to_api(n::get_rule(&state, &id).await?)))
}

#[utoipa::path(delete, path = "/api/v1/rules/{id}", params(("id" = String, Path, description = "The rule's id or name")),
    responses((status = 204), (status = 404, body = api::ErrorBody)))]
async fn delete_rule(State(state): S, Path(id): Path<String>) -> Result<StatusCode> {
    n::delete_rule(&state, &id).await?;
    Ok(StatusCode::NO_CONTENT)
}

#[utoipa::path(post, path = "/api/v1/rules/{id}/enable", params(("id" = String, Path, description = "The rule's id or name")),
    responses((status = 200, body = api::Rule), (status = 404, body = api::ErrorBody)))]
async fn enable_rule(State(state): S, Path(id): Path<String>) -> Result<Json<api::Rule>> {
    Ok(Json(rule_to_api(n::set_rule_enabled(&state, &id, true).await?)))
}

#[utoipa::path(post, path = "/api/v1/rules/{id}/disable", params(("id" = String, Path, description = "The rule's id or name")),
    responses((status = 200, body = api::Rule), (status = 404, body = api::ErrorBody)))]
async fn disable_rule(State(state): S, Path(id): Path<String>) -> Result<Json<api::Rule>> {
    Ok(Json(rule_to_api(n::set_rule_enabled(&state, &id, false).await?)))
}
