//! The State Manager reconciler (the worker `associations`): keeps every association applied
//! on every node its targets match.
//!
//! Each pass first settles finished runs (an invocation that ended gives the node's status,
//! whether it changed anything, and its Association compliance item), then, per association,
//! resolves its targets over the current fleet and applies it to the nodes that are behind
//! (`flotilla_core::association::decide`) as ONE command with the association's rate control.
//! It wakes on a change made here (create, edit, apply, a schedule occurrence), on events that
//! can make work (commands and invocations ending, nodes registering or coming online) and
//! every [`RESYNC`] (retagged nodes, changes made through another server).
//!
//! Everything it knows is in the store, so a restart resumes: runs still Pending are settled
//! from their commands, and nodes behind are applied. Between creating a command and recording
//! it on the node rows a crash would let the next pass send the association again; desired
//! state actions are idempotent, so a node may run it twice but never ends wrong.

use std::collections::{BTreeMap, HashMap};
use std::sync::Arc;
use std::time::Duration;

use flotilla_core::association::{Applied, AssociationStatus, Decision, decide};
use flotilla_core::command::InvocationStatus;
use flotilla_core::command::state::any_changed;
use flotilla_core::{EventType, NodeStatus};
use flotilla_store::{AssociationNodeRecord, AssociationRecord, InvocationRecord, SettledRun};
use tokio::sync::Notify;

use crate::app::AppState;
use crate::fleet;
use crate::platform::worker::{WorkerContext, WorkerResult};
use crate::platform::{ServiceError, now_ms};
use crate::runcommand::commands::{self, NewCommand};

/// A pass at least this often.
const RESYNC: Duration = Duration::from_secs(10);
/// Events arriving together make one pass: wait this long after the first.
const DEBOUNCE: Duration = Duration::from_millis(300);

/// The handle services use to wake the reconciler.
#[derive(Default)]
pub struct Reconciler {
    wake: Notify,
}

impl Reconciler {
    pub fn wake(&self) {
        self.wake.notify_one();
    }
}

pub async fn run(state: Arc<AppState>, ctx: &WorkerContext) -> WorkerResult {
    let from = state.events.last().await?;
    let mut events = state.events.subscribe(
        from,
        vec![
            EventType::CommandStatusChanged,
            EventType::InvocationStatusChanged,
            EventType::NodeRegistered,
            EventType::NodeOnline,
        ],
    );
    loop {
        ctx.running();
        match pass(&state).await {
            Ok(summary) => ctx.progress(summary),
            Err(e) => {
                tracing::warn!("association pass failed: {e}");
                ctx.progress(format!("last pass failed: {e}"));
            }
        }
        ctx.idle();
        tokio::select! {
            () = ctx.cancelled() => return Ok(()),
            () = state.associations.wake.notified() => {}
            batch = events.next() => { batch?; }
            () = tokio::time::sleep(RESYNC) => {}
        }
        tokio::select! {
            () = ctx.cancelled() => return Ok(()),
            () = tokio::time::sleep(DEBOUNCE) => {}
        }
    }
}

/// One pass: settle, then apply. Returns a line for `server status`.
pub async fn pass(state: &AppState) -> Result<String, ServiceError> {
    let settled = settle(state).await?;
    let associations = state.store.list_associations().await?;
    if associations.is_empty() {
        return Ok(format!("no associations; {settled} run(s) settled"));
    }
    let nodes = state.store.list_nodes().await?;
    let groups = fleet::saved_groups(state).await?;
    let mut sent = 0;
    for a in &associations {
        match apply(state, a, &nodes, &groups).await {
            Ok(n) => sent += n,
            // One association's problem (a document deleted since, a group gone) does not stop
            // the others; it is logged each pass until fixed.
            Err(e) => tracing::warn!(association = %a.id, name = %a.name, "association not applied: {e}"),
        }
    }
    Ok(format!("{} association(s); {sent} node run(s) started, {settled} settled", associations.len()))
}

/// Settles every Pending node row whose invocation has ended.
async fn settle(state: &AppState) -> Result<usize, ServiceError> {
    let pending = state.store.pending_association_nodes().await?;
    let mut by_command: BTreeMap<(String, String), Vec<AssociationNodeRecord>> = BTreeMap::new();
    for row in pending {
        if let Some(command) = row.command_id.clone() {
            by_command.entry((row.association_id.clone(), command)).or_default().push(row);
        }
    }
    let mut count = 0;
    let mut associations: HashMap<String, Option<AssociationRecord>> = HashMap::new();
    for ((association_id, command_id), rows) in by_command {
        let association = match associations.get(&association_id) {
            Some(a) => a.clone(),
            None => {
                let a = state.store.get_association(&association_id).await?;
                associations.insert(association_id.clone(), a.clone());
                a
            }
        };
        let Some(association) = association else { continue };
        let invocations: HashMap<String, InvocationRecord> =
            state.store.list_invocations(&command_id).await?.into_iter().map(|i| (i.node_id.clone(), i)).collect();
        let now = now_ms();
        let runs: Vec<SettledRun> = rows
            .iter()
            .filter_map(|row| {
                let Some(invocation) = invocations.get(&row.node_id) else {
                    // The command is gone (retention) or never had this node.
                    return Some(SettledRun {
                        node_id: row.node_id.clone(),
                        command_id: command_id.clone(),
                        status: AssociationStatus::Failed,
                        changed: None,
                        detail: format!("command {command_id} holds no result for this node"),
                        undelivered: true,
                        time: now,
                    });
                };
                let status = AssociationStatus::of_invocation(invocation.status)?;
                Some(SettledRun {
                    node_id: row.node_id.clone(),
                    command_id: command_id.clone(),
                    status,
                    changed: changed(invocation),
                    detail: detail(invocation),
                    undelivered: invocation.status == InvocationStatus::Undeliverable,
                    time: invocation.ended_at.unwrap_or(now),
                })
            })
            .collect();
        if runs.is_empty() {
            continue;
        }
        count += runs.len();
        state.store.settle_association_runs(&association, &runs).await?;
    }
    Ok(count)
}

/// Whether the run changed the node: any desired-state step reporting a change. None when no
/// step says (a document of scripts only).
fn changed(invocation: &InvocationRecord) -> Option<bool> {
    any_changed(&invocation.state)
}

/// What the node's status says, for people: what the run changed (or that nothing differed),
/// and why it failed.
fn detail(invocation: &InvocationRecord) -> String {
    let mut parts = Vec::new();
    let changed: Vec<&str> = invocation.state.iter().filter(|s| s.changed).map(|s| s.detail.as_str()).collect();
    if !changed.is_empty() {
        parts.push(format!("corrected: {}", changed.join("; ")));
    } else if !invocation.state.is_empty() {
        parts.push(format!("{} resource(s) unchanged", invocation.state.len()));
    }
    match invocation.status {
        InvocationStatus::Success => {}
        InvocationStatus::Failed => parts.push(match invocation.exit_code {
            Some(code) => format!("failed with exit code {code}"),
            None => "failed".to_owned(),
        }),
        other => parts.push(other.as_str().to_owned()),
    }
    if !invocation.detail.is_empty() {
        parts.push(invocation.detail.clone());
    } else if invocation.status != InvocationStatus::Success
        && let Some(last) = invocation.stderr.lines().rev().find(|l| !l.trim().is_empty())
    {
        // The node's own words for why (a step's error goes to stderr).
        parts.push(last.trim().chars().take(300).collect());
    }
    if parts.is_empty() { "succeeded".to_owned() } else { parts.join("; ") }
}

/// Sends `a` to the targeted nodes that are behind; returns how many.
async fn apply(
    state: &AppState,
    a: &AssociationRecord,
    nodes: &[flotilla_core::Node],
    groups: &BTreeMap<String, Vec<String>>,
) -> Result<usize, ServiceError> {
    if a.generation <= 0 {
        return Ok(0);
    }
    let targets = fleet::parse_targets(&a.targets)?;
    let targeted = fleet::resolve(&targets, nodes, groups)?;
    if targeted.is_empty() {
        return Ok(0);
    }
    let rows: HashMap<String, AssociationNodeRecord> =
        state.store.association_nodes(&a.id).await?.into_iter().map(|r| (r.node_id.clone(), r)).collect();
    let behind: Vec<String> = targeted
        .iter()
        .filter(|node| {
            let applied = rows.get(node.id.as_str()).map(|r| Applied {
                generation: r.generation,
                in_flight: r.status == AssociationStatus::Pending,
                undelivered: r.undelivered,
            });
            decide(a.generation, applied, node.status == NodeStatus::Online) == Decision::Apply
        })
        .map(|node| node.id.to_string())
        .collect();
    if behind.is_empty() {
        return Ok(0);
    }
    let command = commands::create(
        state,
        NewCommand {
            document: a.document.clone(),
            document_version: a.document_version,
            parameters: a.parameters.clone(),
            targets: a.targets.clone(),
            max_concurrency: Some(a.max_concurrency.clone()),
            max_errors: Some(a.max_errors.clone()),
            comment: Some(comment(a)),
            nodes: behind.clone(),
            ..Default::default()
        },
    )
    .await?;
    state.store.start_association_runs(&a.id, a.generation, &command.record.id, &behind, now_ms()).await?;
    tracing::info!(association = %a.id, command = %command.record.id, nodes = behind.len(), generation = a.generation, "association applied");
    Ok(behind.len())
}

/// The command's comment (at most 100 characters).
fn comment(a: &AssociationRecord) -> String {
    let text = format!("association {} ({})", a.id, a.name);
    text.chars().take(100).collect()
}
