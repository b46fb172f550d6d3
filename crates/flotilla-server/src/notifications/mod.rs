//! Notifications: topics and their subscriptions (signed webhooks, run-a-document), event
//! rules that route events from the log to topics, assessment templates or document runs, and
//! the durable deliveries of events to subscriptions (`dispatcher`).
//!
//! Invariants: every rule stored has a pattern that parses and names only known event types,
//! and its target existed when it was created (a target deleted later is reported on the rule,
//! never a crash); a webhook secret is at least 16 bytes, stored sealed by the key service and
//! never listed back (a generated one is shown once, in the reply to create); a refused request
//! stores nothing.

pub mod dispatcher;
pub mod email;
pub mod http;
pub mod seed;
pub mod webhook;

use std::collections::BTreeMap;
use std::sync::Arc;

use base64::Engine;
use flotilla_core::notification::{DeliveryStatus, MIN_SECRET_BYTES, SubscriptionKind};
use flotilla_core::pattern::{Json, Pattern};
use flotilla_core::{EventType, UnixMillis};
use flotilla_store::{DeliveryRecord, RuleRecord, SubscriptionRecord, TopicRecord};

use crate::app::AppState;
use crate::fleet;
use crate::platform::keys::{Binding, KeyError};
use crate::platform::secret::{random_bytes, random_token};
use crate::platform::{ServiceError, now_ms};
use crate::runcommand::commands::checked_plan;

pub use dispatcher::Dispatcher;

/// Default seconds one webhook attempt may take.
pub const DEFAULT_TIMEOUT_SECONDS: u64 = 10;
/// Longest timeout a subscription may ask for.
const MAX_TIMEOUT_SECONDS: u64 = 300;
/// Most deliveries `subscriptions deliveries` lists.
pub const DELIVERIES_LISTED: u32 = 1000;

/// What a subscription sends to.
#[derive(Debug, Clone)]
pub enum Endpoint {
    Webhook { url: String, secret: Option<String>, ca_pem: Option<String>, timeout_seconds: Option<u64> },
    Email(String),
    RunDocument { document: String, parameters: BTreeMap<String, Vec<String>>, targets: Vec<String> },
}

/// A subscription with its delivery counts; `secret` only right after creation, when the
/// server generated it.
#[derive(Debug, Clone)]
pub struct SubscriptionView {
    pub record: SubscriptionRecord,
    pub counts: BTreeMap<DeliveryStatus, u64>,
    pub generated_secret: Option<String>,
}

/// A rule to create.
#[derive(Debug, Clone)]
pub struct NewRule {
    pub name: String,
    pub pattern: serde_json::Value,
    pub target: String,
    pub parameters: BTreeMap<String, Vec<String>>,
    pub targets: Vec<String>,
    pub enabled: bool,
}

/// Where a rule sends what it matches.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum RuleTarget {
    Topic(String),
    Assessment(String),
    Run(String),
}

impl RuleTarget {
    pub fn parse(text: &str) -> Result<RuleTarget, ServiceError> {
        let bad = || {
            ServiceError::Invalid(format!(
                "rule target `{text}` is not one of topic:NAME, assessment:TEMPLATE, run:DOC"
            ))
        };
        let (kind, name) = text.split_once(':').ok_or_else(bad)?;
        let name = name.trim();
        if name.is_empty() {
            return Err(bad());
        }
        match kind {
            "topic" => Ok(RuleTarget::Topic(name.to_owned())),
            "assessment" => Ok(RuleTarget::Assessment(name.to_owned())),
            "run" => Ok(RuleTarget::Run(name.to_owned())),
            _ => Err(bad()),
        }
    }
}

fn check_name(what: &str, name: &str) -> Result<(), ServiceError> {
    let ok = (1..=128).contains(&name.len())
        && name.chars().all(|c| c.is_ascii_alphanumeric() || matches!(c, '_' | '.' | '-'));
    if ok {
        Ok(())
    } else {
        Err(ServiceError::Invalid(format!("{what} name `{name}` is not valid: use 1 to 128 of a-z A-Z 0-9 _ . -")))
    }
}

fn hex_id(prefix: &str) -> String {
    let bytes: [u8; 8] = random_bytes();
    format!("{prefix}{}", bytes.iter().map(|b| format!("{b:02x}")).collect::<String>())
}

fn b64() -> base64::engine::GeneralPurpose {
    base64::engine::general_purpose::STANDARD
}

fn key_error(e: KeyError) -> ServiceError {
    match e {
        KeyError::Tampered { .. } | KeyError::Malformed { .. } => ServiceError::Integrity(e.to_string()),
        other => ServiceError::Internal(other.to_string()),
    }
}

/// A JSON value as the pure pattern matcher takes it.
pub fn to_pattern_json(v: &serde_json::Value) -> Json {
    match v {
        serde_json::Value::Null => Json::Null,
        serde_json::Value::Bool(b) => Json::Bool(*b),
        serde_json::Value::Number(n) => Json::Number(n.as_f64().unwrap_or(f64::NAN)),
        serde_json::Value::String(s) => Json::String(s.clone()),
        serde_json::Value::Array(a) => Json::Array(a.iter().map(to_pattern_json).collect()),
        serde_json::Value::Object(o) => Json::Object(o.iter().map(|(k, v)| (k.clone(), to_pattern_json(v))).collect()),
    }
}

/// Parses a pattern and checks that every event type it names exactly exists.
pub fn parse_pattern(value: &serde_json::Value) -> Result<Pattern, ServiceError> {
    let pattern = Pattern::parse(&to_pattern_json(value)).map_err(|e| ServiceError::Invalid(e.to_string()))?;
    for (path, v) in pattern.exact_values("type") {
        let known = match v {
            Json::String(s) => s.parse::<EventType>().map(|_| ()).map_err(|e| e.to_string()),
            other => Err(format!("an event type is a string such as \"Assessment.Completed\", not {other:?}")),
        };
        if let Err(message) = known {
            return Err(ServiceError::Invalid(format!("invalid event pattern at `{path}`: {message}")));
        }
    }
    Ok(pattern)
}

// ---- topics ----

pub async fn create_topic(state: &AppState, name: &str) -> Result<TopicRecord, ServiceError> {
    check_name("topic", name)?;
    let now = now_ms();
    if !state.store.create_topic(name, now).await? {
        return Err(ServiceError::clash(
            "topic",
            name,
            format!("topic `{name}` exists: list them with `flotilla topics ls`"),
        ));
    }
    Ok(TopicRecord { name: name.to_owned(), created_at: now, subscriptions: 0 })
}

pub async fn list_topics(state: &AppState) -> Result<Vec<TopicRecord>, ServiceError> {
    Ok(state.store.list_topics().await?)
}

/// Deletes a topic with its subscriptions and their deliveries; rules that route to it stay
/// and report the missing topic when they next match.
pub async fn delete_topic(state: &AppState, name: &str) -> Result<(), ServiceError> {
    if !state.store.delete_topic(name).await? {
        return Err(ServiceError::missing("topic", name, "list them with `flotilla topics ls`"));
    }
    state.notifications.changed();
    Ok(())
}

// ---- subscriptions ----

pub async fn create_subscription(
    state: &AppState,
    topic: &str,
    endpoint: Endpoint,
) -> Result<SubscriptionView, ServiceError> {
    if !state.store.topic_exists(topic).await? {
        return Err(ServiceError::missing(
            "topic",
            topic,
            "create it first with `flotilla topics create NAME` (see `flotilla topics ls`)",
        ));
    }
    let id = hex_id("sub-");
    let mut record = SubscriptionRecord {
        id: id.clone(),
        topic: topic.to_owned(),
        kind: SubscriptionKind::Webhook,
        endpoint: String::new(),
        secret: None,
        ca_pem: None,
        timeout_ms: i64::try_from(DEFAULT_TIMEOUT_SECONDS * 1000).unwrap_or(10_000),
        parameters: BTreeMap::new(),
        targets: Vec::new(),
        created_at: now_ms(),
    };
    let mut generated_secret = None;
    match endpoint {
        Endpoint::Webhook { url, secret, ca_pem, timeout_seconds } => {
            webhook::check_url(&url)?;
            let timeout = timeout_seconds.unwrap_or(DEFAULT_TIMEOUT_SECONDS);
            if !(1..=MAX_TIMEOUT_SECONDS).contains(&timeout) {
                return Err(ServiceError::Invalid(format!(
                    "timeout {timeout}s is out of range: use 1 to {MAX_TIMEOUT_SECONDS} seconds"
                )));
            }
            if let Some(pem) = &ca_pem {
                webhook::check_ca(pem)?;
            }
            let secret = match secret {
                Some(s) => {
                    if s.len() < MIN_SECRET_BYTES {
                        return Err(ServiceError::Invalid(format!(
                            "the webhook secret is {} bytes: use at least {MIN_SECRET_BYTES} (e.g. `openssl rand -hex 32 > secret`), \
                             or leave --secret-file out and the server generates one",
                            s.len()
                        )));
                    }
                    s
                }
                None => {
                    let s = random_token("whsec_");
                    generated_secret = Some(s.clone());
                    s
                }
            };
            let sealed = state.keys.seal(Binding::Subscription(&id), secret.into_bytes()).await.map_err(key_error)?;
            record.kind = SubscriptionKind::Webhook;
            record.endpoint = url;
            record.secret = Some(b64().encode(sealed));
            record.ca_pem = ca_pem;
            record.timeout_ms = i64::try_from(timeout * 1000).unwrap_or(10_000);
        }
        Endpoint::Email(address) => {
            record.endpoint = email::check_address(&address)?;
            email::check_configured(&state.config)?;
            record.kind = SubscriptionKind::Email;
        }
        Endpoint::RunDocument { document, parameters, targets } => {
            if targets.is_empty() {
                return Err(ServiceError::Invalid(
                    "a --run-document subscription needs at least one --target (a node id, tag:KEY=VALUE, group:NAME or all)"
                        .into(),
                ));
            }
            fleet::parse_targets(&targets)?;
            checked_plan(state, &document, None, &parameters).await?;
            record.kind = SubscriptionKind::RunDocument;
            record.endpoint = document;
            record.parameters = parameters;
            record.targets = targets;
        }
    }
    if !state.store.create_subscription(&record).await? {
        return Err(ServiceError::missing("topic", topic, "it was deleted meanwhile; create it again"));
    }
    state.notifications.changed();
    Ok(SubscriptionView { record, counts: BTreeMap::new(), generated_secret })
}

pub async fn list_subscriptions(state: &AppState, topic: Option<&str>) -> Result<Vec<SubscriptionView>, ServiceError> {
    if let Some(t) = topic
        && !state.store.topic_exists(t).await?
    {
        return Err(ServiceError::missing("topic", t, "list them with `flotilla topics ls`"));
    }
    let mut out = Vec::new();
    for record in state.store.list_subscriptions(topic).await? {
        let counts = state.store.delivery_counts(&record.id).await?;
        out.push(SubscriptionView { record, counts, generated_secret: None });
    }
    Ok(out)
}

async fn subscription(state: &AppState, id: &str) -> Result<SubscriptionRecord, ServiceError> {
    state
        .store
        .get_subscription(id)
        .await?
        .ok_or_else(|| ServiceError::missing("subscription", id, "list them with `flotilla subscriptions ls`"))
}

pub async fn delete_subscription(state: &AppState, id: &str) -> Result<(), ServiceError> {
    if !state.store.delete_subscription(id).await? {
        return Err(ServiceError::missing("subscription", id, "list them with `flotilla subscriptions ls`"));
    }
    state.notifications.changed();
    Ok(())
}

pub async fn deliveries(state: &AppState, id: &str) -> Result<Vec<DeliveryRecord>, ServiceError> {
    subscription(state, id).await?;
    Ok(state.store.list_deliveries(id, DELIVERIES_LISTED).await?)
}

/// Makes the subscription's dead letters Pending again; how many.
pub async fn redrive(state: &AppState, id: &str) -> Result<u64, ServiceError> {
    subscription(state, id).await?;
    let n = state.store.redrive(id, now_ms()).await?;
    state.notifications.changed();
    Ok(n)
}

/// The clear secret of a webhook subscription.
pub async fn open_secret(state: &AppState, record: &SubscriptionRecord) -> Result<Vec<u8>, ServiceError> {
    let sealed = record
        .secret
        .as_deref()
        .ok_or_else(|| ServiceError::Integrity(format!("subscription {} has no stored secret", record.id)))?;
    let bytes = b64().decode(sealed).map_err(|_| {
        ServiceError::Integrity(format!("subscription {}'s secret failed its integrity check (not base64)", record.id))
    })?;
    state.keys.open(Binding::Subscription(&record.id), bytes).await.map_err(key_error)
}

// ---- rules ----

/// Checks a rule target exists now.
async fn check_target(
    state: &AppState,
    target: &RuleTarget,
    parameters: &BTreeMap<String, Vec<String>>,
    targets: &[String],
) -> Result<(), ServiceError> {
    match target {
        RuleTarget::Topic(name) => {
            if !state.store.topic_exists(name).await? {
                return Err(ServiceError::missing("topic", name, "create it first with `flotilla topics create NAME`"));
            }
        }
        RuleTarget::Assessment(name) => {
            if !state.store.list_assessment_templates().await?.iter().any(|t| &t.name == name) {
                return Err(ServiceError::missing(
                    "assessment template",
                    name,
                    "list them with `flotilla assess templates ls`",
                ));
            }
        }
        RuleTarget::Run(doc) => {
            fleet::parse_targets(targets)?;
            checked_plan(state, doc, None, parameters).await?;
        }
    }
    Ok(())
}

pub async fn create_rule(state: &AppState, req: NewRule) -> Result<RuleRecord, ServiceError> {
    check_name("rule", &req.name)?;
    parse_pattern(&req.pattern)?;
    let target = RuleTarget::parse(&req.target)?;
    if !matches!(target, RuleTarget::Run(_)) && (!req.parameters.is_empty() || !req.targets.is_empty()) {
        return Err(ServiceError::Invalid("--param and --target go only with a run:DOC rule target".into()));
    }
    check_target(state, &target, &req.parameters, &req.targets).await?;
    let now = now_ms();
    let record = RuleRecord {
        id: hex_id("rule-"),
        name: req.name.clone(),
        pattern: req.pattern.to_string(),
        target: req.target.trim().to_owned(),
        parameters: req.parameters,
        targets: req.targets,
        enabled: req.enabled,
        problem: None,
        created_at: now,
        updated_at: now,
    };
    if !state.store.create_rule(&record).await? {
        return Err(ServiceError::clash(
            "rule",
            &req.name,
            format!("rule `{}` exists: see `flotilla rules show {}`", req.name, req.name),
        ));
    }
    state.notifications.changed();
    Ok(record)
}

pub async fn list_rules(state: &AppState) -> Result<Vec<RuleRecord>, ServiceError> {
    Ok(state.store.list_rules().await?)
}

pub async fn get_rule(state: &AppState, id: &str) -> Result<RuleRecord, ServiceError> {
    state
        .store
        .get_rule(id)
        .await?
        .ok_or_else(|| ServiceError::missing("rule", id, "list them with `flotilla rules ls`"))
}

pub async fn delete_rule(state: &AppState, id: &str) -> Result<(), ServiceError> {
    let rule = get_rule(state, id).await?;
    state.store.delete_rule(&rule.id).await?;
    state.notifications.changed();
    Ok(())
}

pub async fn set_rule_enabled(state: &AppState, id: &str, enabled: bool) -> Result<RuleRecord, ServiceError> {
    let rule = get_rule(state, id).await?;
    state.store.set_rule_enabled(&rule.id, enabled, now_ms()).await?;
    state.notifications.changed();
    get_rule(state, &rule.id).await
}

/// Starts the dispatcher's two workers: `notifications-router` (events to deliveries and
/// actions) and `notifications-sender` (deliveries to subscribers).
pub fn spawn(state: &Arc<AppState>) -> Result<(), crate::platform::worker::WorkerError> {
    let s = state.clone();
    state.workers.spawn("notifications-router", move |ctx| {
        let s = s.clone();
        async move { dispatcher::route(s, &ctx).await }
    })?;
    let s = state.clone();
    state.workers.spawn("notifications-sender", move |ctx| {
        let s = s.clone();
        async move { dispatcher::send(s, &ctx).await }
    })?;
    Ok(())
}

/// When the deliveries of a record were last changed, for the API.
pub fn next_attempt(d: &DeliveryRecord) -> Option<UnixMillis> {
    d.status.is_open().then_some(d.next_attempt_at)
}
