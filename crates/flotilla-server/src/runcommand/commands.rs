//! Run Command as operators see it: create (resolve targets and plan once, store, hand to the
//! engine), list, show, cancel, and full output from the artifact store.
//!
//! Invariant: a command is created only if its document plans, its limits parse, its
//! targets match at least one node and its `--notify` topic exists; otherwise nothing is
//! stored. The notification settings are stored on the command row, in the transaction that
//! writes its first event, so the router (`notifications::dispatcher`) never sees a status
//! change of a command before them.

use std::collections::BTreeMap;
use std::str::FromStr;

use flotilla_core::command::{CommandStatus, MaxConcurrency, MaxErrors};
use flotilla_core::notification::NotifyOn;
use flotilla_store::{CommandRecord, InvocationRecord};

use crate::app::AppState;
use crate::fleet;
use crate::platform::artifact::ArtifactError;
use crate::platform::secret::random_bytes;
use crate::platform::{ServiceError, now_ms};
use crate::runcommand::documents;
use crate::runcommand::engine::Event;
use crate::runcommand::engine::PlannedStep;

/// Default delivery timeout (AWS console default).
const DEFAULT_DELIVERY_TIMEOUT_S: u32 = 600;

/// What to run, where and how: the request to create a command, in the service's terms.
/// Absent limits take the defaults (50 at once, stop after the first error, 600 s delivery).
#[derive(Debug, Clone, Default)]
pub struct NewCommand {
    pub document: String,
    /// The default version when absent.
    pub document_version: Option<i64>,
    pub parameters: BTreeMap<String, Vec<String>>,
    pub targets: Vec<String>,
    pub max_concurrency: Option<String>,
    pub max_errors: Option<String>,
    pub timeout_seconds: Option<u32>,
    pub delivery_timeout_seconds: Option<u32>,
    pub comment: Option<String>,
    /// When not empty: exactly these nodes, already resolved from `targets` by the caller (an
    /// association sends itself only to the nodes that are behind). `targets` stays the record.
    pub nodes: Vec<String>,
    /// `flotilla run --notify TOPIC --notify-on ...`: the topic and the `NotifyOn` names
    /// (none means All).
    pub notify: Option<(String, Vec<String>)>,
}

/// The stored form of a command's notification settings: the topic must exist and every
/// `--notify-on` value be known.
async fn notification(state: &AppState, notify: Option<(String, Vec<String>)>) -> Result<Option<String>, ServiceError> {
    let Some((topic, on)) = notify else { return Ok(None) };
    let mut events: Vec<NotifyOn> = Vec::new();
    for name in on.iter().flat_map(|v| v.split(',')).filter(|v| !v.trim().is_empty()) {
        let n = name.parse::<NotifyOn>().map_err(|e| ServiceError::Invalid(e.to_string()))?;
        if !events.contains(&n) {
            events.push(n);
        }
    }
    if events.is_empty() {
        events.push(NotifyOn::All);
    }
    if !state.store.topic_exists(&topic).await? {
        return Err(ServiceError::missing(
            "topic",
            &topic,
            "--notify names a topic: create it with `flotilla topics create NAME` (see `flotilla topics ls`); no command was created",
        ));
    }
    let events: Vec<&str> = events.iter().map(|e| e.as_str()).collect();
    Ok(Some(serde_json::json!({ "topic": topic, "events": events }).to_string()))
}

/// A command with its invocations, as stored, and how many invocations are in each status
/// (keyed by the status's name, as the REST API shows them).
#[derive(Debug, Clone)]
pub struct CommandDetail {
    pub record: CommandRecord,
    pub invocations: Vec<InvocationRecord>,
    pub counts: BTreeMap<String, u32>,
}

/// A listed command: its record and its invocation counts (no invocations).
#[derive(Debug, Clone)]
pub struct CommandSummary {
    pub record: CommandRecord,
    pub counts: BTreeMap<String, u32>,
}

fn detail(record: CommandRecord, invocations: Vec<InvocationRecord>) -> CommandDetail {
    let mut counts: BTreeMap<String, u32> = BTreeMap::new();
    for i in &invocations {
        *counts.entry(i.status.as_str().to_owned()).or_default() += 1;
    }
    CommandDetail { record, invocations, counts }
}

pub async fn create(state: &AppState, req: NewCommand) -> Result<CommandDetail, ServiceError> {
    // Checked before anything is resolved, so a bad limit is reported first.
    if let Some(v) = &req.max_concurrency {
        MaxConcurrency::from_str(v).map_err(|e| ServiceError::Invalid(e.to_string()))?;
    }
    if let Some(v) = &req.max_errors {
        MaxErrors::from_str(v).map_err(|e| ServiceError::Invalid(e.to_string()))?;
    }
    if let Some(t) = req.timeout_seconds
        && !(5..=172_800).contains(&t)
    {
        return Err(ServiceError::Invalid(format!("timeout {t} s is out of range: use 5 to 172800")));
    }
    let delivery = req.delivery_timeout_seconds.unwrap_or(DEFAULT_DELIVERY_TIMEOUT_S);
    if !(5..=2_592_000).contains(&delivery) {
        return Err(ServiceError::Invalid(format!("delivery timeout {delivery} s is out of range: use 5 to 2592000")));
    }
    let comment = req.comment.clone().unwrap_or_default();
    if comment.chars().count() > 100 {
        return Err(ServiceError::Invalid("the comment is longer than 100 characters".into()));
    }
    if req.targets.is_empty() {
        return Err(ServiceError::Invalid(
            "no target: give at least one --target (a node id, tag:KEY=VALUE, tag:KEY, group:NAME or all; join terms with & and negate one with !)".into(),
        ));
    }
    let notification = notification(state, req.notify.clone()).await?;
    let (version, mut steps) = checked_plan(state, &req.document, req.document_version, &req.parameters).await?;
    if let Some(t) = req.timeout_seconds {
        for step in &mut steps {
            step.timeout_seconds = t;
        }
    }
    let node_ids: Vec<String> = if req.nodes.is_empty() {
        fleet::list_nodes(state, &req.targets).await?.iter().map(|n| n.id.to_string()).collect()
    } else {
        req.nodes.clone()
    };
    if node_ids.is_empty() {
        return Err(ServiceError::Invalid(format!(
            "the targets {} match no node: check them with `flotilla nodes ls --target ...`; no command was created",
            req.targets.join(" ")
        )));
    }
    let (default_concurrency, default_errors) = default_rate(&req, node_ids.len());
    let concurrency = MaxConcurrency::from_str(req.max_concurrency.as_deref().unwrap_or(&default_concurrency))
        .map_err(|e| ServiceError::Invalid(e.to_string()))?;
    let errors = MaxErrors::from_str(req.max_errors.as_deref().unwrap_or(&default_errors))
        .map_err(|e| ServiceError::Invalid(e.to_string()))?;
    let id_bytes: [u8; 10] = random_bytes();
    let record = CommandRecord {
        id: format!("c-{}", id_bytes.iter().map(|b| format!("{b:02x}")).collect::<String>()),
        document: req.document,
        document_version: version,
        parameters: serde_json::to_string(&req.parameters).unwrap_or_default(),
        targets: serde_json::to_string(&req.targets).unwrap_or_default(),
        plan: serde_json::to_string(&steps).map_err(|e| ServiceError::Internal(e.to_string()))?,
        max_concurrency: concurrency.to_string(),
        max_errors: errors.to_string(),
        delivery_timeout_ms: i64::from(delivery) * 1000,
        comment,
        status: CommandStatus::Pending,
        stopped_for_errors: false,
        cancel_requested: false,
        created_at: now_ms(),
        ended_at: None,
        notification,
    };
    state.store.create_command(&record, &node_ids).await?;
    tracing::info!(command_id = %record.id, document = %record.document, nodes = node_ids.len(), "command created");
    state.run.engine.notify(Event::Start(record.id.clone())).await;
    let invocations = state.store.list_invocations(&record.id).await?;
    Ok(detail(record, invocations))
}

/// The rate control a command gets when the caller gives none: Patch Manager's "patch now"
/// table (§7.6) for `Flotilla-RunPatchBaseline`, else 50 at once and stop at the first error.
fn default_rate(req: &NewCommand, nodes: usize) -> (String, String) {
    if req.document == flotilla_document::RUN_PATCH_BASELINE {
        let operation = req.parameters.get("Operation").and_then(|v| v.first()).and_then(|v| v.parse().ok());
        if let Some(operation) = operation {
            return flotilla_core::patch::patch_now_rate(operation, nodes);
        }
    }
    ("50".into(), "0".into())
}

/// Plans `document` with `parameters` as a command would: the document and version exist, the
/// parameters bind, and `{{param:...}}` references are well formed (whether the parameters
/// exist is checked when each invocation is sent: they may be created in between). For
/// services that store a command to run later (associations, window tasks).
pub async fn checked_plan(
    state: &AppState,
    document: &str,
    version: Option<i64>,
    parameters: &BTreeMap<String, Vec<String>>,
) -> Result<(i64, Vec<PlannedStep>), ServiceError> {
    let (version, steps) = documents::plan(state, document, version, parameters).await?;
    for step in &steps {
        crate::parameters::check_references(
            &step.name,
            &step.script,
            step.env.values().chain(step.agent_inputs.values()),
        )
        .map_err(ServiceError::Invalid)?;
    }
    Ok((version, steps))
}

pub async fn get(state: &AppState, id: &str) -> Result<CommandDetail, ServiceError> {
    let record = state
        .store
        .get_command(id)
        .await?
        .ok_or_else(|| ServiceError::missing("command", id, "list them with `flotilla commands ls`"))?;
    let invocations = state.store.list_invocations(id).await?;
    Ok(detail(record, invocations))
}

/// The newest 200 commands with their invocation counts.
pub async fn list(state: &AppState) -> Result<Vec<CommandSummary>, ServiceError> {
    let records = state.store.list_commands(200).await?;
    let ids: Vec<String> = records.iter().map(|r| r.id.clone()).collect();
    let mut counts: BTreeMap<String, BTreeMap<String, u32>> = BTreeMap::new();
    for (command, status, n) in state.store.invocation_counts(&ids).await? {
        counts.entry(command).or_default().insert(status.as_str().to_owned(), n);
    }
    Ok(records
        .into_iter()
        .map(|record| {
            let counts = counts.remove(&record.id).unwrap_or_default();
            CommandSummary { record, counts }
        })
        .collect())
}

pub async fn cancel(state: &AppState, id: &str) -> Result<CommandDetail, ServiceError> {
    state.run.engine.cancel(id).await?;
    get(state, id).await
}

/// The full output of one stream, byte for byte.
pub async fn output(state: &AppState, id: &str, node: &str, stream: &str) -> Result<Vec<u8>, ServiceError> {
    if stream != "stdout" && stream != "stderr" {
        return Err(ServiceError::Invalid(format!("unknown stream `{stream}`: use stdout or stderr")));
    }
    let invocations = state.store.list_invocations(id).await?;
    let Some(invocation) = invocations.iter().find(|i| i.node_id == node) else {
        return Err(ServiceError::missing_with(
            "invocation",
            format!("{id}/{node}"),
            format!("command `{id}` has no invocation on node `{node}`"),
        ));
    };
    let (bytes, whole, inline) = if stream == "stdout" {
        (invocation.stdout_bytes, invocation.stdout_whole, &invocation.stdout)
    } else {
        (invocation.stderr_bytes, invocation.stderr_whole, &invocation.stderr)
    };
    let finished = invocation.status.is_terminal();
    if finished && bytes == 0 {
        // The engine stores no artifact for an empty stream,
        return Ok(Vec::new());
    }
    if finished && whole {
        // nor for one whose inline copy is all of it.
        return Ok(inline.as_bytes().to_vec());
    }
    state.artifacts.get(&format!("commands/{id}/{node}/{stream}")).await.map_err(|e| match e {
        e @ (ArtifactError::Tampered { .. } | ArtifactError::NotEncrypted { .. }) => {
            ServiceError::Integrity(e.to_string())
        }
        ArtifactError::Crypto { .. } => ServiceError::Internal(e.to_string()),
        _ => ServiceError::missing_with(
            "output",
            format!("{id}/{node}/{stream}"),
            format!("no output yet for node `{node}` in command `{id}`: it has not finished"),
        ),
    })
}
