//! The dispatcher: two named workers over the event log.
//!
//! `notifications-router` follows the log from its stored cursor, matches each event against
//! the enabled rules and, per page, writes one Pending delivery per (event, subscription of a
//! matched topic) and moves its cursor in ONE store transaction; assessment and document-run
//! targets are started before that commit. So after a crash or restart it resumes at the first
//! page it had not committed: every event is routed at least once (an action may start twice,
//! a delivery row never exists twice). On first start it begins at the log's end: history is
//! not replayed to new rules. A rule whose topic or template is gone gets a `problem` (logged),
//! and the router goes on.
//!
//! `notifications-sender` sends due deliveries: per subscription at most
//! `delivery_concurrency` at once, each attempt in its own task, so a slow or dead receiver
//! only ever holds its own subscription's slots. A failed attempt is retried after the core's
//! backoff (jittered, capped) until `delivery_attempts`, then DeadLettered with its last error.
//! Memory is bounded by the slots: rows are read from the store only as slots free up.

use std::collections::{BTreeSet, HashMap, HashSet};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use flotilla_core::notification::{DeliveryStatus, NotifyOn, RetryPolicy, SubscriptionKind};
use flotilla_core::pattern::{Json, Pattern};
use flotilla_core::{Cursor, EventType, NodeId};
use flotilla_store::{DeliveryRecord, EventRecord, NewDelivery, RuleRecord, SubscriptionRecord};
use tokio::sync::{Notify, OwnedSemaphorePermit, Semaphore};
use tokio::task::JoinSet;

use super::{RuleTarget, email, open_secret, parse_pattern, to_pattern_json, webhook};
use crate::app::AppState;
use crate::assessments::{self, NewAssessment};
use crate::platform::worker::{WorkerContext, WorkerResult};
use crate::platform::{ServiceError, now_ms};
use crate::runcommand::commands::{self, NewCommand};

/// The router's cursor row.
const CURSOR: &str = "rules";
/// The longest the sender sleeps with nothing due (deliveries written by another replica).
const IDLE_POLL: Duration = Duration::from_secs(2);

/// The handle services use to wake the sender (a new subscription, a redrive, new deliveries).
#[derive(Default)]
pub struct Dispatcher {
    sender: Notify,
}

impl Dispatcher {
    pub fn changed(&self) {
        self.sender.notify_one();
    }
}

/// An event as patterns see it: `type`, `source`, `resources`, `detail`.
pub fn event_json(e: &EventRecord) -> Json {
    Json::Object(vec![
        ("type".into(), Json::String(e.kind.as_str().into())),
        ("source".into(), Json::String(e.source.clone())),
        ("resources".into(), Json::Array(e.resources.iter().cloned().map(Json::String).collect())),
        ("detail".into(), to_pattern_json(&e.detail)),
    ])
}

pub async fn route(state: Arc<AppState>, ctx: &WorkerContext) -> WorkerResult {
    let start = match state.store.notification_cursor(CURSOR).await? {
        Some(seq) => Cursor(seq),
        None => {
            let last = state.events.last().await?;
            state.store.route(CURSOR, last.0, &[], now_ms()).await?;
            last
        }
    };
    let mut events = state.events.subscribe(start, Vec::new());
    let mut routed: u64 = 0;
    loop {
        ctx.idle();
        let batch = tokio::select! {
            () = ctx.cancelled() => return Ok(()),
            batch = events.next() => batch?,
        };
        ctx.running();
        let made = route_batch(&state, &batch).await?;
        routed += batch.len() as u64;
        ctx.progress(format!("{routed} events routed since start; last page made {made} deliveries"));
    }
}

struct LiveRule {
    record: RuleRecord,
    pattern: Pattern,
    target: RuleTarget,
}

async fn route_batch(state: &Arc<AppState>, batch: &[EventRecord]) -> Result<usize, ServiceError> {
    let Some(last) = batch.last() else { return Ok(0) };
    let mut problems: HashMap<String, Option<String>> = HashMap::new();
    let mut rules = Vec::new();
    let all_rules = state.store.list_rules().await?;
    for record in all_rules.iter().filter(|r| r.enabled) {
        let parsed = serde_json::from_str::<serde_json::Value>(&record.pattern)
            .map_err(|e| ServiceError::Invalid(e.to_string()))
            .and_then(|v| parse_pattern(&v))
            .and_then(|p| RuleTarget::parse(&record.target).map(|t| (p, t)));
        match parsed {
            Ok((pattern, target)) => rules.push(LiveRule { record: record.clone(), pattern, target }),
            Err(e) => {
                problems.insert(record.id.clone(), Some(format!("the stored rule does not parse: {e}")));
            }
        }
    }
    let topics: HashSet<String> = state.store.list_topics().await?.into_iter().map(|t| t.name).collect();
    let mut subscribers: HashMap<String, Vec<String>> = HashMap::new();
    for s in state.store.list_subscriptions(None).await? {
        subscribers.entry(s.topic).or_default().push(s.id);
    }
    let mut deliveries = Vec::new();
    let mut seen: HashSet<(String, i64)> = HashSet::new();
    let mut notify_of: HashMap<String, Option<CommandNotify>> = HashMap::new();
    for event in batch {
        if let Some(topic) = command_notify_topic(state, &mut notify_of, event).await? {
            if topics.contains(&topic) {
                for sub in subscribers.get(&topic).into_iter().flatten() {
                    if seen.insert((sub.clone(), event.seq)) {
                        deliveries.push(NewDelivery {
                            subscription_id: sub.clone(),
                            event_seq: event.seq,
                            event_id: event.id.clone(),
                        });
                    }
                }
            } else {
                tracing::warn!(event = %event.id, "the --notify topic `{topic}` of the command does not exist (deleted?); event not sent");
            }
        }
        let json = event_json(event);
        for rule in rules.iter().filter(|r| r.pattern.matches(&json)) {
            let outcome = match &rule.target {
                RuleTarget::Topic(topic) => {
                    if topics.contains(topic) {
                        for sub in subscribers.get(topic).into_iter().flatten() {
                            if seen.insert((sub.clone(), event.seq)) {
                                deliveries.push(NewDelivery {
                                    subscription_id: sub.clone(),
                                    event_seq: event.seq,
                                    event_id: event.id.clone(),
                                });
                            }
                        }
                        Ok(())
                    } else {
                        Err(format!("topic `{topic}` does not exist (deleted?); event {} was not routed", event.id))
                    }
                }
                RuleTarget::Assessment(template) => {
                    let req = NewAssessment { template: Some(template.clone()), ..Default::default() };
                    match assessments::create(state, req).await {
                        Ok(run) => {
                            tracing::info!(rule = %rule.record.name, event = %event.id, run = %run.id, "rule started an assessment");
                            Ok(())
                        }
                        Err(e) => {
                            Err(format!("assessment template `{template}` not started for event {}: {e}", event.id))
                        }
                    }
                }
                RuleTarget::Run(document) => run_document(state, &rule.record, document, event).await,
            };
            match outcome {
                Ok(()) => {
                    problems.entry(rule.record.id.clone()).or_insert(None);
                }
                Err(problem) => {
                    problems.insert(rule.record.id.clone(), Some(problem));
                }
            }
        }
    }
    state.store.route(CURSOR, last.seq, &deliveries, now_ms()).await?;
    for rule in &all_rules {
        if let Some(problem) = problems.get(&rule.id)
            && *problem != rule.problem
        {
            if let Some(p) = problem {
                tracing::warn!(rule = %rule.name, "rule could not act: {p}");
            }
            state.store.set_rule_problem(&rule.id, problem.as_deref()).await?;
        }
    }
    if !deliveries.is_empty() {
        state.notifications.changed();
    }
    Ok(deliveries.len())
}

/// A command's `--notify` settings, as stored on it.
#[derive(serde::Deserialize)]
struct CommandNotify {
    topic: String,
    events: Vec<String>,
}

/// The topic a Run Command status change goes to under its command's `--notify`, if any.
/// `cache`: the settings of commands already read in this page.
async fn command_notify_topic(
    state: &AppState,
    cache: &mut HashMap<String, Option<CommandNotify>>,
    event: &EventRecord,
) -> Result<Option<String>, ServiceError> {
    if !matches!(event.kind, EventType::CommandStatusChanged | EventType::InvocationStatusChanged) {
        return Ok(None);
    }
    let (Some(command), Some(status)) =
        (event.detail.get("command_id").and_then(|v| v.as_str()), event.detail.get("status").and_then(|v| v.as_str()))
    else {
        return Ok(None);
    };
    if !cache.contains_key(command) {
        let settings = state.store.get_command(command).await?.and_then(|c| c.notification).and_then(|n| {
            serde_json::from_str::<CommandNotify>(&n)
                .map_err(|e| tracing::warn!(command = %command, "unreadable --notify settings: {e}"))
                .ok()
        });
        cache.insert(command.to_owned(), settings);
    }
    let Some(Some(settings)) = cache.get(command) else { return Ok(None) };
    let events: Vec<NotifyOn> = settings.events.iter().filter_map(|e| e.parse().ok()).collect();
    Ok(NotifyOn::any_covers(&events, status).then(|| settings.topic.clone()))
}

/// The nodes an event names (its resources that are enrolled nodes).
async fn nodes_named(state: &AppState, event: &EventRecord) -> Result<Vec<String>, ServiceError> {
    let mut out = BTreeSet::new();
    for r in &event.resources {
        if let Ok(id) = r.parse::<NodeId>()
            && state.store.get_node(&id).await?.is_some()
        {
            out.insert(r.clone());
        }
    }
    Ok(out.into_iter().collect())
}

async fn run_document(state: &AppState, rule: &RuleRecord, document: &str, event: &EventRecord) -> Result<(), String> {
    let targets = if rule.targets.is_empty() {
        let nodes = nodes_named(state, event).await.map_err(|e| e.to_string())?;
        if nodes.is_empty() {
            // Nothing to run on is not a fault of the rule.
            return Ok(());
        }
        nodes
    } else {
        rule.targets.clone()
    };
    let req = NewCommand {
        document: document.to_owned(),
        parameters: rule.parameters.clone(),
        targets,
        comment: Some(format!("rule {} on event {}", rule.name, event.id)),
        ..Default::default()
    };
    match commands::create(state, req).await {
        Ok(c) => {
            tracing::info!(rule = %rule.name, event = %event.id, command = %c.record.id, "rule ran a document");
            Ok(())
        }
        Err(e) => Err(format!("document `{document}` not run for event {}: {e}", event.id)),
    }
}

/// What one subscription's deliveries share.
struct Lane {
    record: SubscriptionRecord,
    client: Result<reqwest::Client, String>,
    secret: Result<Vec<u8>, String>,
    mailer: Result<email::Mailer, String>,
}

struct Slots {
    lane: Arc<Lane>,
    permits: Arc<Semaphore>,
    in_flight: Arc<Mutex<HashSet<i64>>>,
}

async fn lane(state: &AppState, record: SubscriptionRecord) -> Lane {
    let timeout = Duration::from_millis(u64::try_from(record.timeout_ms).unwrap_or(10_000));
    let (client, secret) = match record.kind {
        SubscriptionKind::Webhook => (
            webhook::client(timeout, record.ca_pem.as_deref()),
            open_secret(state, &record).await.map_err(|e| e.to_string()),
        ),
        _ => (Err("not a webhook".into()), Err("not a webhook".into())),
    };
    let mailer = match record.kind {
        SubscriptionKind::Email => email::mailer(&state.config, timeout),
        _ => Err("not an email subscription".into()),
    };
    Lane { record, client, secret, mailer }
}

fn policy(state: &AppState) -> RetryPolicy {
    RetryPolicy {
        attempts: state.config.delivery_attempts,
        base: state.config.delivery_backoff,
        cap: state.config.delivery_backoff_cap,
    }
}

pub async fn send(state: Arc<AppState>, ctx: &WorkerContext) -> WorkerResult {
    let slots_per_lane = usize::try_from(state.config.delivery_concurrency).unwrap_or(4).max(1);
    let mut lanes: HashMap<String, Slots> = HashMap::new();
    let mut tasks = JoinSet::new();
    let mut sent: u64 = 0;
    loop {
        ctx.running();
        while let Some(done) = tasks.try_join_next() {
            sent += 1;
            if let Err(e) = done
                && e.is_panic()
            {
                tracing::error!("a delivery attempt panicked: {e}");
            }
        }
        let subs = state.store.list_subscriptions(None).await?;
        let ids: HashSet<&str> = subs.iter().map(|s| s.id.as_str()).collect();
        lanes.retain(|id, _| ids.contains(id.as_str()));
        for s in subs {
            if !lanes.contains_key(&s.id) {
                let id = s.id.clone();
                let l = lane(&state, s).await;
                lanes.insert(
                    id,
                    Slots {
                        lane: Arc::new(l),
                        permits: Arc::new(Semaphore::new(slots_per_lane)),
                        in_flight: Arc::new(Mutex::new(HashSet::new())),
                    },
                );
            }
        }
        let now = now_ms();
        for slots in lanes.values() {
            let free = slots.permits.available_permits();
            if free == 0 {
                continue;
            }
            let busy: HashSet<i64> = slots.in_flight.lock().map(|s| s.clone()).unwrap_or_default();
            let limit = u32::try_from(free + busy.len()).unwrap_or(u32::MAX);
            let due = state.store.due_deliveries(&slots.lane.record.id, now, limit).await?;
            for d in due.into_iter().filter(|d| !busy.contains(&d.event_seq)) {
                let Ok(permit) = slots.permits.clone().try_acquire_owned() else { break };
                if let Ok(mut set) = slots.in_flight.lock() {
                    set.insert(d.event_seq);
                }
                tasks.spawn(attempt(state.clone(), slots.lane.clone(), d, permit, slots.in_flight.clone()));
            }
        }
        ctx.progress(format!("{sent} attempts since start; {} in flight", tasks.len()));
        ctx.idle();
        let wait = match state.store.next_delivery_due().await? {
            Some(at) if at > now => Duration::from_millis(u64::try_from(at - now).unwrap_or(0)).min(IDLE_POLL),
            _ => IDLE_POLL,
        };
        tokio::select! {
            () = ctx.cancelled() => {
                tasks.abort_all();
                return Ok(());
            }
            () = state.notifications.sender.notified() => {}
            () = tokio::time::sleep(wait) => {}
        }
    }
}

/// Why an attempt failed: worth retrying, or not.
enum Failure {
    Retry(String),
    Final(String),
}

async fn deliver(state: &AppState, lane: &Lane, d: &DeliveryRecord) -> Result<(), Failure> {
    let event = state
        .store
        .list_events(d.event_seq - 1, &[], 1)
        .await
        .map_err(|e| Failure::Retry(format!("cannot read event {}: {e}", d.event_id)))?
        .into_iter()
        .find(|e| e.seq == d.event_seq)
        .ok_or_else(|| {
            Failure::Final(format!("event {} is no longer in the event log (older than event_retention)", d.event_id))
        })?;
    match lane.record.kind {
        SubscriptionKind::Webhook => {
            let client = lane.client.as_ref().map_err(|e| Failure::Retry(e.clone()))?;
            let secret = lane.secret.as_ref().map_err(|e| Failure::Retry(e.clone()))?;
            let body = serde_json::to_vec(&crate::platform::http::to_api(event))
                .map_err(|e| Failure::Final(format!("cannot serialise event {}: {e}", d.event_id)))?;
            webhook::post(client, &lane.record.endpoint, secret, &d.event_id, body, now_ms() / 1000)
                .await
                .map_err(Failure::Retry)
        }
        SubscriptionKind::RunDocument => {
            let req = NewCommand {
                document: lane.record.endpoint.clone(),
                parameters: lane.record.parameters.clone(),
                targets: lane.record.targets.clone(),
                comment: Some(format!("subscription {} on event {}", lane.record.id, d.event_id)),
                ..Default::default()
            };
            match commands::create(state, req).await {
                Ok(_) => Ok(()),
                Err(e @ (ServiceError::Invalid(_) | ServiceError::Missing { .. })) => {
                    Err(Failure::Final(e.to_string()))
                }
                Err(e) => Err(Failure::Retry(e.to_string())),
            }
        }
        SubscriptionKind::Email => {
            let mailer = lane.mailer.as_ref().map_err(|e| Failure::Retry(e.clone()))?;
            let findings = email::findings_for(state, &event)
                .await
                .map_err(|e| Failure::Retry(format!("cannot read the findings of event {}: {e}", d.event_id)))?;
            let kind = event.kind;
            let json = serde_json::to_value(crate::platform::http::to_api(event))
                .map_err(|e| Failure::Final(format!("cannot serialise event {}: {e}", d.event_id)))?;
            let mail = email::compose(&json, kind, findings);
            let message_id = format!("<{}.{}@flotilla>", d.event_id, lane.record.id);
            email::send(mailer, &lane.record.endpoint, &message_id, &mail.subject, mail.body)
                .await
                .map_err(Failure::Retry)
        }
    }
}

async fn attempt(
    state: Arc<AppState>,
    lane: Arc<Lane>,
    mut d: DeliveryRecord,
    permit: OwnedSemaphorePermit,
    in_flight: Arc<Mutex<HashSet<i64>>>,
) {
    let result = deliver(&state, &lane, &d).await;
    let now = now_ms();
    d.attempts += 1;
    d.updated_at = now;
    match result {
        Ok(()) => {
            d.status = DeliveryStatus::Delivered;
            d.last_error = None;
        }
        Err(Failure::Final(e)) => {
            d.status = DeliveryStatus::DeadLettered;
            d.last_error = Some(e);
        }
        Err(Failure::Retry(e)) => {
            let made = u32::try_from(d.attempts).unwrap_or(u32::MAX);
            match policy(&state).after_failure(made, rand::random::<f64>()) {
                Some(wait) => {
                    d.status = DeliveryStatus::Retrying;
                    d.next_attempt_at = now + i64::try_from(wait.as_millis()).unwrap_or(i64::MAX / 2);
                }
                None => d.status = DeliveryStatus::DeadLettered,
            }
            d.last_error = Some(e);
        }
    }
    if d.status == DeliveryStatus::DeadLettered {
        tracing::warn!(
            subscription = %d.subscription_id, event = %d.event_id, attempts = d.attempts,
            "delivery dead-lettered: {}", d.last_error.as_deref().unwrap_or("")
        );
    }
    // A failure to record leaves the row open: it is sent again (at least once).
    if let Err(e) = state.store.record_attempt(&d).await {
        tracing::warn!(subscription = %d.subscription_id, event = %d.event_id, "cannot record a delivery attempt: {e}");
    }
    if let Ok(mut set) = in_flight.lock() {
        set.remove(&d.event_seq);
    }
    drop(permit);
    state.notifications.changed();
}
