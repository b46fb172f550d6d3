//! The Run Command engine: the reconciler that drives every unfinished command to its end.
//!
//! One task owns the state of all active commands (no locks): it dispatches invocations as
//! the rate planner (`flotilla_core::command::rate`) allows, re-sends work to nodes that
//! reconnect, applies delivery timeouts, cancels, and records results. Every status change
//! goes through `flotilla_core::command::transition`, so duplicate or late messages are
//! harmless. State is written to the store in batches on each tick (never one write per event)
//! and reloaded at start-up, so a restarted server resumes each command where it stood.
//!
//! Nothing waits forever: an InProgress invocation whose node is not connected here (it
//! dropped, or it has not come back since this process started) ends Terminated once its
//! execution timeout and `lost_agent_grace` have passed; a Delayed invocation whose node is
//! connected (its queue was full) is re-sent on the next tick. A result's output moves from
//! the spool to the artifact store in a task of its own ([`persist`]), never in this one
//! (a stream whose inline copy is all of it exactly stays in the invocation row alone);
//! the result is acknowledged only after the output and the invocation record are durable,
//! and when the output cannot be stored the invocation fails with the reason. A result for
//! an invocation that has already ended (a replay, a duplicate) is acknowledged and changes
//! nothing.

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::str::FromStr;
use std::sync::Arc;
use std::time::Duration;

use flotilla_core::NodeId;
use flotilla_core::command::{
    Counts, Decision, InvocationEvent, InvocationStatus, MaxConcurrency, MaxErrors, Outcome, RatePlan, StepState,
    command_status, transition,
};
use flotilla_proto::v1::{
    CancelInvocation, InvocationAccepted, InvocationOutcome, InvocationResult, ResultAck, RunInvocation, ServerMessage,
    ShellStep, server_message,
};
use flotilla_store::{CommandRecord, InvocationRecord};
use serde::{Deserialize, Serialize};
use tokio::sync::{mpsc, oneshot};

use crate::app::AppState;
use crate::platform::metrics::StatusLabels;
use crate::platform::registry::Sent;
use crate::platform::worker::WorkerContext;
use crate::platform::{ServiceError, now_ms};
use crate::runcommand::output::{INLINE_STDERR_CHARS, INLINE_STDOUT_CHARS, inline, invocation_id, split_invocation_id};

const TICK: Duration = Duration::from_millis(200);
/// Events handled before the affected commands are advanced.
const EVENT_BATCH: usize = 4096;

/// One planned step, as stored with the command and sent to every node.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
pub struct PlannedStep {
    pub name: String,
    pub script: String,
    pub working_directory: Option<String>,
    pub timeout_seconds: u32,
    pub env: BTreeMap<String, String>,
    /// An action the agent performs itself (plans stored before it existed have none).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub agent_action: Option<String>,
    /// The inputs of a desired-state action (Parameter Store references unresolved).
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub agent_inputs: BTreeMap<String, String>,
}

/// What the engine reacts to.
pub enum Event {
    /// A command was stored; start driving it.
    Start(String),
    Connected(NodeId),
    Disconnected(NodeId),
    Result(NodeId, InvocationResult),
    /// A result's output is in the artifact store (or could not be stored, and why).
    Persisted(NodeId, InvocationResult, Result<Persisted, String>),
    Accepted(NodeId, InvocationAccepted),
    Cancel(String, oneshot::Sender<Result<(), ServiceError>>),
}

/// What [`persist`] keeps of a result's output for the invocation record.
pub struct Persisted {
    stdout: Vec<u8>,
    stderr: Vec<u8>,
    stdout_bytes: u64,
    stderr_bytes: u64,
    /// The stream has no artifact: its inline copy is all of it.
    stdout_whole: bool,
    stderr_whole: bool,
}

/// Handle to the engine task.
#[derive(Clone)]
pub struct Engine {
    tx: mpsc::Sender<Event>,
}

impl Engine {
    pub fn new() -> (Engine, mpsc::Receiver<Event>) {
        let (tx, rx) = mpsc::channel(4096);
        (Engine { tx }, rx)
    }

    pub async fn notify(&self, event: Event) {
        // Only fails after shutdown, when nothing needs the event any more.
        let _ = self.tx.send(event).await;
    }

    pub async fn cancel(&self, command_id: &str) -> Result<(), ServiceError> {
        let (reply, rx) = oneshot::channel();
        self.notify(Event::Cancel(command_id.to_owned(), reply)).await;
        rx.await.map_err(|_| ServiceError::Internal("the command engine is not running".into()))?
    }
}

/// A command being driven.
struct Active {
    record: CommandRecord,
    steps: Vec<ShellStep>,
    invocations: BTreeMap<String, InvocationRecord>,
    plan: RatePlan,
    dirty: BTreeSet<String>,
    record_dirty: bool,
    /// Nodes with an InProgress invocation whose connection dropped, and since when.
    lost_since: HashMap<String, i64>,
    /// Results to acknowledge once they are durable (after the next flush).
    acks: Vec<(NodeId, String)>,
    /// Status changes (node, new status) not yet counted and published.
    transitions: Vec<(String, InvocationStatus)>,
    /// Invocations to send (first delivery or re-send), drained by [`deliver`] right after
    /// the step that chose them: sending needs `{{param:...}}` resolution, which is async.
    /// One entry per node: the same invocation is never queued twice in one pass.
    outbox: BTreeMap<String, Delivery>,
    /// Nodes whose result's output is being moved to the artifact store.
    persisting: BTreeSet<String>,
    /// Total execution timeout of the steps, in ms.
    execution_ms: i64,
    /// Whether any step mentions a Parameter Store reference (then each send resolves them).
    has_references: bool,
}

/// Why an invocation is in the outbox.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Delivery {
    /// Just dispatched: not sent means NodeNotConnected.
    First,
    /// Re-sent to a reconnected node: sent means Reconnected.
    Resend,
}

impl Active {
    fn load(record: CommandRecord, invocations: Vec<InvocationRecord>) -> Result<Active, String> {
        let planned: Vec<PlannedStep> = serde_json::from_str(&record.plan).map_err(|e| format!("bad plan: {e}"))?;
        let steps: Vec<ShellStep> = planned
            .into_iter()
            .map(|s| ShellStep {
                name: s.name,
                script: s.script,
                working_directory: s.working_directory.unwrap_or_default(),
                timeout_seconds: s.timeout_seconds,
                env: s.env.into_iter().collect(),
                agent_action: s.agent_action.unwrap_or_default(),
                agent_inputs: s.agent_inputs.into_iter().collect(),
            })
            .collect();
        let concurrency = MaxConcurrency::from_str(&record.max_concurrency).map_err(|e| e.to_string())?;
        let errors = MaxErrors::from_str(&record.max_errors).map_err(|e| e.to_string())?;
        let total = u32::try_from(invocations.len()).unwrap_or(u32::MAX);
        let has_references = crate::parameters::mentions_references(&steps);
        // The agent runs a step with timeout 0 for at least 1 s (`timeout_seconds.max(1)`).
        let execution_ms = steps.iter().map(|s| i64::from(s.timeout_seconds.max(1)) * 1000).sum();
        Ok(Active {
            outbox: BTreeMap::new(),
            persisting: BTreeSet::new(),
            execution_ms,
            has_references,
            plan: RatePlan::new(total, concurrency, errors),
            invocations: invocations.into_iter().map(|i| (i.node_id.clone(), i)).collect(),
            record,
            steps,
            dirty: BTreeSet::new(),
            record_dirty: false,
            lost_since: HashMap::new(),
            acks: Vec::new(),
            transitions: Vec::new(),
        })
    }

    /// One pass over the invocations (this runs once or twice per batch of events).
    fn counts(&self) -> Counts {
        let mut counts = Counts::default();
        for inv in self.invocations.values() {
            let status = inv.status;
            counts.add(status);
            if status == InvocationStatus::InProgress && inv.started_at.is_some() {
                counts.acknowledged = counts.acknowledged.saturating_add(1);
            }
        }
        counts
    }

    /// The agent reports on `node`'s invocation, which proves it was dispatched. If the store
    /// still says Pending, the server died between sending it and recording that (dispatches
    /// are written on the next tick): record the dispatch now, so the report applies instead of
    /// being refused and the invocation re-sent.
    fn ensure_dispatched(&mut self, node: &str) {
        if self.invocations.get(node).map(|i| i.status) == Some(InvocationStatus::Pending) {
            tracing::info!(command_id = %self.record.id, node_id = %node, "report for an invocation recorded as Pending; recording its dispatch");
            self.apply(node, InvocationEvent::Dispatched);
            if let Some(inv) = self.invocations.get_mut(node) {
                inv.dispatched_at = inv.dispatched_at.or(Some(now_ms()));
            }
        }
    }

    /// Applies an event to one invocation; true when its status changed.
    fn apply(&mut self, node: &str, event: InvocationEvent) -> bool {
        let Some(inv) = self.invocations.get_mut(node) else { return false };
        match transition(inv.status, event) {
            Ok(Outcome::Applied(next)) => {
                inv.status = next;
                self.transitions.push((node.to_owned(), next));
                if next.is_terminal() && inv.ended_at.is_none() {
                    inv.ended_at = Some(now_ms());
                }
                self.dirty.insert(node.to_owned());
                true
            }
            Ok(Outcome::Ignored) => false,
            Err(e) => {
                tracing::warn!(command_id = %self.record.id, node_id = %node, "invocation event refused: {e}");
                false
            }
        }
    }

    fn run_message(&self, node: &str, steps: Vec<ShellStep>, max_output_bytes: u64) -> ServerMessage {
        ServerMessage {
            seq: 0,
            body: Some(server_message::Body::Run(RunInvocation {
                invocation_id: invocation_id(&self.record.id, node),
                command_id: self.record.id.clone(),
                steps,
                max_output_bytes,
            })),
        }
    }

    /// Queues a send; a node already in the outbox keeps its first reason.
    fn queue(&mut self, node: String, delivery: Delivery) {
        self.outbox.entry(node).or_insert(delivery);
    }

    /// Ends `node`'s invocation Failed with `detail` (nothing ran, or its output is lost).
    fn fail(&mut self, node: &str, detail: &str) {
        self.apply(node, InvocationEvent::Finished { exit_code: 1 });
        if let Some(inv) = self.invocations.get_mut(node) {
            inv.detail = detail.chars().take(1024).collect();
            self.dirty.insert(node.to_owned());
        }
    }
}

/// Sends what the last step put in the outbox. `{{param:...}}` references are resolved here,
/// at send time, into the message only (never into the stored command, its plan or a log);
/// when one cannot be resolved the invocation fails with the reason as its detail rather than
/// running with a missing value.
async fn deliver(state: &AppState, command: &mut Active) {
    let outbox = std::mem::take(&mut command.outbox);
    if outbox.is_empty() {
        return;
    }
    let steps = if command.has_references {
        crate::parameters::resolve_steps(state, &command.steps).await
    } else {
        Ok(command.steps.clone())
    };
    for (node, delivery) in outbox {
        let status = command.invocations.get(&node).map(|i| i.status);
        let still_wanted = match delivery {
            Delivery::First => status == Some(InvocationStatus::InProgress),
            Delivery::Resend => matches!(status, Some(InvocationStatus::InProgress | InvocationStatus::Delayed)),
        };
        if !still_wanted {
            continue;
        }
        match &steps {
            Ok(steps) => {
                let message = command.run_message(&node, steps.clone(), state.config.max_output_bytes);
                let id = invocation_id(&command.record.id, &node);
                // Output may follow the message at once: accept it before sending.
                state.run.output.accept(&id);
                let sent = match NodeId::from_str(&node) {
                    Ok(node_id) => state.registry.send_run(&node_id, &id, message),
                    Err(_) => Sent::NotConnected,
                };
                match (delivery, sent) {
                    // A full queue is not a delivery either; the tick re-sends while the node
                    // stays connected ([`expire`]).
                    (Delivery::First, Sent::NotConnected | Sent::QueueFull) => {
                        command.apply(&node, InvocationEvent::NodeNotConnected);
                    }
                    (Delivery::Resend, Sent::Queued) => {
                        command.apply(&node, InvocationEvent::Reconnected);
                    }
                    _ => {}
                }
            }
            Err(detail) if delivery == Delivery::Resend && status == Some(InvocationStatus::InProgress) => {
                // It may already be running from an earlier send: failing it here could
                // contradict the result the agent reports; without a re-send it ends by its
                // result or by the lost-agent timeout.
                tracing::warn!(command_id = %command.record.id, node_id = %node, "invocation not re-sent: {detail}");
            }
            Err(detail) => {
                tracing::warn!(command_id = %command.record.id, node_id = %node, "invocation not sent: {detail}");
                command.fail(&node, detail);
            }
        }
    }
}

/// The engine task, run as the `engine` worker. Returns when the worker is cancelled, after a
/// last flush. It borrows the event queue so that a restarted engine (after a panic) picks up
/// the same queue, and rebuilds its in-memory state from the store, as after a server restart.
pub async fn run(state: Arc<AppState>, events: &mut mpsc::Receiver<Event>, ctx: &WorkerContext) {
    let mut active: HashMap<String, Active> = HashMap::new();
    match state.store.unfinished_commands().await {
        Ok(ids) => {
            for id in ids {
                load(&state, &mut active, &id).await;
            }
            if !active.is_empty() {
                tracing::info!(commands = active.len(), "resuming unfinished commands");
            }
        }
        Err(e) => tracing::error!("cannot load unfinished commands: {e}"),
    }
    let mut ticker = tokio::time::interval(TICK);
    ticker.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        ctx.idle();
        tokio::select! {
            _ = ctx.cancelled() => {
                flush(&state, &mut active).await;
                return;
            }
            event = events.recv() => {
                let Some(event) = event else { return };
                ctx.running();
                // Take whatever else is already queued before advancing the commands: the rate
                // plan looks at every invocation of a command, so advancing once per batch and
                // not once per event keeps a fan-out to N nodes linear in N, not quadratic.
                let mut touched = BTreeSet::new();
                touched.extend(handle(&state, &mut active, event).await);
                for _ in 0..EVENT_BATCH {
                    let Ok(event) = events.try_recv() else { break };
                    touched.extend(handle(&state, &mut active, event).await);
                }
                for id in touched {
                    if let Some(command) = active.get_mut(&id) {
                        advance(&state, command);
                    }
                }
                for command in active.values_mut() {
                    deliver(&state, command).await;
                }
            }
            _ = ticker.tick() => {
                ctx.running();
                ctx.progress(format!("{} unfinished commands", active.len()));
                for command in active.values_mut() {
                    expire(&state, command);
                    advance(&state, command);
                    deliver(&state, command).await;
                }
                flush(&state, &mut active).await;
            }
        }
    }
}

async fn load(state: &AppState, active: &mut HashMap<String, Active>, id: &str) {
    let record = match state.store.get_command(id).await {
        Ok(Some(record)) => record,
        Ok(None) => return,
        Err(e) => return tracing::error!(command_id = %id, "cannot load command: {e}"),
    };
    let invocations = match state.store.list_invocations(id).await {
        Ok(list) => list,
        Err(e) => return tracing::error!(command_id = %id, "cannot load invocations: {e}"),
    };
    match Active::load(record, invocations) {
        Ok(mut command) => {
            // Invocations running when an earlier process stopped: their agents re-send output
            // and results after reconnecting, and until they do their nodes count as lost.
            let now = now_ms();
            for (node, inv) in &command.invocations {
                let status = inv.status;
                if matches!(status, InvocationStatus::InProgress | InvocationStatus::Delayed) {
                    state.run.output.accept(&invocation_id(id, node));
                }
                let connected = NodeId::from_str(node).is_ok_and(|n| state.registry.is_connected(&n));
                if status == InvocationStatus::InProgress && !connected {
                    command.lost_since.insert(node.clone(), now);
                }
            }
            active.insert(id.to_owned(), command);
        }
        Err(e) => tracing::error!(command_id = %id, "cannot resume command: {e}"),
    }
}

/// Applies one event; returns the command it changed, which the caller then advances.
async fn handle(state: &Arc<AppState>, active: &mut HashMap<String, Active>, event: Event) -> Option<String> {
    match event {
        Event::Start(id) => {
            load(state, active, &id).await;
            return Some(id);
        }
        Event::Connected(node) => {
            for command in active.values_mut() {
                command.lost_since.remove(node.as_str());
                let status = command.invocations.get(node.as_str()).map(|i| i.status);
                if matches!(status, Some(InvocationStatus::InProgress | InvocationStatus::Delayed)) {
                    // Re-send: the agent either runs it (first delivery), ignores it (running),
                    // or re-sends its spooled result (finished while disconnected).
                    command.queue(node.to_string(), Delivery::Resend);
                }
            }
        }
        Event::Disconnected(node) => {
            let now = now_ms();
            for command in active.values_mut() {
                if command.invocations.get(node.as_str()).map(|i| i.status) == Some(InvocationStatus::InProgress) {
                    command.lost_since.insert(node.to_string(), now);
                }
            }
        }
        Event::Result(node, result) => return record_result(state, active, &node, result).await,
        Event::Persisted(node, result, persisted) => return record_persisted(state, active, &node, result, persisted),
        Event::Accepted(node, accepted) => {
            let (command_id, owner) = split_invocation_id(&accepted.invocation_id)?;
            if owner != node.as_str() {
                return None;
            }
            if let Some(command) = active.get_mut(command_id) {
                command.ensure_dispatched(owner);
                command.apply(owner, InvocationEvent::AgentAccepted);
                if let Some(inv) = command.invocations.get_mut(owner)
                    && inv.started_at.is_none()
                {
                    inv.started_at =
                        i64::try_from(accepted.started_at_unix_ms).ok().filter(|t| *t > 0).or(Some(now_ms()));
                    command.dirty.insert(owner.to_owned());
                }
                return Some(command_id.to_owned());
            }
        }
        Event::Cancel(id, reply) => {
            let outcome = match active.get_mut(&id) {
                Some(command) if command.record.status.is_terminal() => Err(ServiceError::clash(
                    "command",
                    id.clone(),
                    format!(
                        "command {id} has already finished ({}); there is nothing to cancel",
                        command.record.status
                    ),
                )),
                Some(command) => {
                    command.record.cancel_requested = true;
                    command.record_dirty = true;
                    let nodes: Vec<String> = command.invocations.keys().cloned().collect();
                    for node in nodes {
                        let status = command.invocations.get(&node).map(|i| i.status);
                        if status == Some(InvocationStatus::InProgress)
                            && let Ok(node_id) = NodeId::from_str(&node)
                        {
                            let cancel = ServerMessage {
                                seq: 0,
                                body: Some(server_message::Body::Cancel(CancelInvocation {
                                    invocation_id: invocation_id(&id, &node),
                                })),
                            };
                            state.registry.send(&node_id, cancel);
                            state.registry.forget_run(&node_id, &invocation_id(&id, &node));
                        }
                        command.apply(&node, InvocationEvent::CancelRequested);
                    }
                    advance(state, command);
                    // The caller reads the command back from the store: make the cancel visible.
                    flush_one(state, command).await;
                    Ok(())
                }
                None => match state.store.get_command(&id).await {
                    Ok(Some(record)) => Err(ServiceError::clash(
                        "command",
                        id.clone(),
                        format!("command {id} has already finished ({}); there is nothing to cancel", record.status),
                    )),
                    Ok(None) => Err(ServiceError::missing("command", id.clone(), "")),
                    Err(e) => Err(e.into()),
                },
            };
            let _ = reply.send(outcome);
        }
    }
    None
}

/// Applies delivery and lost-agent timeouts, and re-sends Delayed invocations whose node is
/// connected (its queue was full when they were sent). On the tick: these are measured in
/// seconds.
fn expire(state: &AppState, command: &mut Active) {
    let now = now_ms();
    let grace = i64::try_from(state.config.lost_agent_grace.as_millis()).unwrap_or(i64::MAX);
    let timeout = command.record.delivery_timeout_ms;
    let nodes: Vec<String> = command.invocations.keys().cloned().collect();
    for node in &nodes {
        let Some(inv) = command.invocations.get(node) else { continue };
        // The delivery clock starts at dispatch: invocations the rate planner has not released
        // yet are waiting on the command, not on their node.
        let undelivered_since = inv.dispatched_at.unwrap_or(now);
        match inv.status {
            InvocationStatus::Delayed if now.saturating_sub(undelivered_since) > timeout => {
                command.apply(node, InvocationEvent::DeliveryTimeout);
            }
            InvocationStatus::Delayed if NodeId::from_str(node).is_ok_and(|n| state.registry.is_connected(&n)) => {
                command.queue(node.clone(), Delivery::Resend);
            }
            InvocationStatus::InProgress => {
                let Some(&since) = command.lost_since.get(node) else { continue };
                // A script cannot outlive its execution timeout (the agent kills it), so past
                // that plus the grace a live agent would have reconnected with its result.
                let started = inv.started_at.or(inv.dispatched_at).unwrap_or(since);
                let deadline = started.saturating_add(command.execution_ms).max(since).saturating_add(grace);
                if now > deadline && !command.persisting.contains(node) {
                    command.apply(node, InvocationEvent::AgentLost);
                    if let Some(inv) = command.invocations.get_mut(node) {
                        inv.detail = format!(
                            "the node's agent was not connected when the execution timeout plus lost_agent_grace \
                             ({} s) had passed; its result is lost",
                            grace / 1000
                        );
                    }
                }
            }
            _ => {}
        }
    }
}

/// Moves one command forward: error stop, dispatch, command status.
fn advance(state: &AppState, command: &mut Active) {
    let now = now_ms();
    let counts = command.counts();
    let mut changed = false;
    if !command.record.stopped_for_errors && command.plan.threshold_exceeded(&counts) {
        changed = true;
        command.record.stopped_for_errors = true;
        command.record_dirty = true;
        tracing::info!(command_id = %command.record.id, "error threshold exceeded: not starting any more invocations");
        let nodes: Vec<String> = command.invocations.keys().cloned().collect();
        for node in &nodes {
            command.apply(node, InvocationEvent::ErrorThresholdExceeded);
        }
    }
    if !command.record.cancel_requested
        && !command.record.stopped_for_errors
        && let Decision::Dispatch(n) = command.plan.next_dispatch(&counts)
    {
        let pending: Vec<String> = command
            .invocations
            .iter()
            .filter(|(_, inv)| inv.status == InvocationStatus::Pending)
            .map(|(node, _)| node.clone())
            .take(usize::try_from(n).unwrap_or(usize::MAX))
            .collect();
        for node in pending {
            changed = true;
            command.apply(&node, InvocationEvent::Dispatched);
            if let Some(inv) = command.invocations.get_mut(&node) {
                inv.dispatched_at = Some(now);
            }
            command.queue(node, Delivery::First);
        }
    }
    let counts = if changed { command.counts() } else { counts };
    let status = command_status(&counts, command.record.stopped_for_errors, command.record.cancel_requested);
    if status != command.record.status {
        command.record.status = status;
        if status.is_terminal() {
            command.record.ended_at = Some(now);
        }
        command.record_dirty = true;
        state.metrics.command_transitions.get_or_create(&StatusLabels { status: status.as_str() }).inc();
        tracing::info!(command_id = %command.record.id, status = status.as_str(), "command status");
    }
}

async fn record_result(
    state: &Arc<AppState>,
    active: &mut HashMap<String, Active>,
    node: &NodeId,
    result: InvocationResult,
) -> Option<String> {
    let (command_id, owner) = split_invocation_id(&result.invocation_id)?;
    if owner != node.as_str() {
        tracing::warn!(node_id = %node, invocation = %result.invocation_id, "result for another node ignored");
        return None;
    }
    let (command_id, owner) = (command_id.to_owned(), owner.to_owned());
    let (command_id, owner) = (command_id.as_str(), owner.as_str());
    if let Some(command) = active.get(command_id)
        && command.invocations.get(owner).map(|i| i.status).is_some_and(InvocationStatus::is_terminal)
        && (command.dirty.contains(owner) || command.acks.iter().any(|(_, id)| *id == result.invocation_id))
    {
        // It has ended but that is not durable yet: the acknowledgement follows the next flush.
        return None;
    }
    let settled =
        |command: &Active| command.invocations.get(owner).map(|i| i.status).is_none_or(InvocationStatus::is_terminal);
    let Some(command) = active.get_mut(command_id).filter(|c| !settled(c)) else {
        // Finished, unknown, or this invocation already ended (a replay or a duplicate): the
        // agent may forget it, and nothing here changes.
        if result.replayed {
            tracing::debug!(node_id = %node, invocation = %result.invocation_id, "replayed result for a settled invocation acknowledged");
        }
        state.registry.send(node, ack(&result.invocation_id));
        state.registry.forget_run(node, &result.invocation_id);
        state.run.output.remove(&result.invocation_id).await;
        return None;
    };
    if command.persisting.contains(owner) {
        return None; // a re-send while its output is being stored
    }
    if let Some(reason) = state.run.output.failure(&result.invocation_id) {
        // The spool lost part of this output: it can never be complete, so waiting would hang.
        tracing::error!(invocation = %result.invocation_id, "output could not be spooled: {reason}");
        command.ensure_dispatched(owner);
        command.fail(owner, &format!("the server could not keep this invocation's output: {reason}"));
        command.lost_since.remove(owner);
        command.acks.push((node.clone(), result.invocation_id));
        return Some(command_id.to_owned());
    }
    let cap = state.run.output.max_bytes();
    let (stdout, stderr) = state.run.output.spooled(&result.invocation_id);
    if stdout < result.stdout_bytes.min(cap) || stderr < result.stderr_bytes.min(cap) {
        // Chunks were lost with a connection; the agent re-sends everything after reconnecting.
        tracing::debug!(invocation = %result.invocation_id, "result before all its output; waiting for a re-send");
        return None;
    }
    command.persisting.insert(owner.to_owned());
    let (state, node) = (state.clone(), node.clone());
    tokio::spawn(async move {
        let persisted = persist(&state, &result.invocation_id).await;
        state.run.engine.notify(Event::Persisted(node, result, persisted)).await;
    });
    None
}

/// Attempts at storing one stream's output before the invocation fails with the reason.
const PERSIST_ATTEMPTS: u32 = 3;

/// Moves one invocation's spooled output to the artifact store, frame by frame (never whole
/// in memory), retrying a failed write; runs in a task of its own, off the engine's.
async fn persist(state: &AppState, invocation: &str) -> Result<Persisted, String> {
    let (command_id, owner) = split_invocation_id(invocation).ok_or("bad invocation id")?;
    let (stdout_bytes, stderr_bytes) = state.run.output.spooled(invocation);
    let mut prefixes = Vec::new();
    for (stream, bytes, chars) in
        [("stdout", stdout_bytes, INLINE_STDOUT_CHARS), ("stderr", stderr_bytes, INLINE_STDERR_CHARS)]
    {
        // An empty stream has no artifact (its byte count, 0, says all): most fleet commands
        // print nothing on stderr, and a write per node and stream is what a big fan-out waits on.
        if bytes == 0 {
            prefixes.push((Vec::new(), true));
            continue;
        }
        // Neither has a stream whose inline copy is exact: UTF-8 without NUL, within the limit
        // (at most `chars` bytes is at most `chars` characters).
        if bytes <= chars as u64 {
            let whole = read_spooled(state, invocation, stream).await?;
            if std::str::from_utf8(&whole).is_ok_and(|text| !text.contains('\0')) {
                prefixes.push((whole, true));
                continue;
            }
        }
        // Enough bytes for `chars` characters of any width, so the inline copy is exact.
        let keep = chars.saturating_mul(4).saturating_add(4);
        let name = format!("commands/{command_id}/{owner}/{stream}");
        let mut attempt = 1;
        loop {
            match stream_to_artifact(state, invocation, stream, &name, keep).await {
                Ok(prefix) => {
                    prefixes.push((prefix, false));
                    break;
                }
                Err(e) if attempt >= PERSIST_ATTEMPTS => {
                    tracing::error!(invocation, "cannot store output after {attempt} attempts: {e}");
                    return Err(format!("the server could not store this invocation's {stream}: {e}"));
                }
                Err(e) => {
                    tracing::warn!(invocation, "cannot store output (attempt {attempt}, retrying): {e}");
                    tokio::time::sleep(Duration::from_millis(500 * u64::from(attempt))).await;
                    attempt += 1;
                }
            }
        }
    }
    let (stderr, stderr_whole) = prefixes.pop().unwrap_or_default();
    let (stdout, stdout_whole) = prefixes.pop().unwrap_or_default();
    Ok(Persisted { stdout, stderr, stdout_bytes, stderr_bytes, stdout_whole, stderr_whole })
}

/// All of one small spooled stream.
async fn read_spooled(state: &AppState, invocation: &str, stream: &'static str) -> Result<Vec<u8>, String> {
    let mut reader = state.run.output.reader(invocation, stream).await.map_err(|e| e.to_string())?;
    let mut whole = Vec::new();
    while let Some(chunk) = reader.next().await.map_err(|e| e.to_string())? {
        whole.extend_from_slice(&chunk);
    }
    Ok(whole)
}

/// Copies one spooled stream into the artifact `name`; returns its first `keep` bytes.
async fn stream_to_artifact(
    state: &AppState,
    invocation: &str,
    stream: &'static str,
    name: &str,
    keep: usize,
) -> Result<Vec<u8>, String> {
    let mut reader = state.run.output.reader(invocation, stream).await.map_err(|e| e.to_string())?;
    let mut writer = state.artifacts.writer(name).await.map_err(|e| e.to_string())?;
    let mut prefix = Vec::new();
    while let Some(chunk) = reader.next().await.map_err(|e| e.to_string())? {
        if prefix.len() < keep {
            prefix.extend_from_slice(chunk.get(..(keep - prefix.len()).min(chunk.len())).unwrap_or_default());
        }
        writer.write(&chunk).await.map_err(|e| e.to_string())?;
    }
    writer.finish().await.map_err(|e| e.to_string())?;
    Ok(prefix)
}

/// Applies a result whose output [`persist`] has stored (or failed to store).
fn record_persisted(
    state: &AppState,
    active: &mut HashMap<String, Active>,
    node: &NodeId,
    result: InvocationResult,
    persisted: Result<Persisted, String>,
) -> Option<String> {
    let (command_id, owner) = split_invocation_id(&result.invocation_id)?;
    let (command_id, owner) = (command_id.to_owned(), owner.to_owned());
    let owner = owner.as_str();
    let command = active.get_mut(&command_id)?;
    command.persisting.remove(owner);
    command.ensure_dispatched(owner);
    command.lost_since.remove(owner);
    let output = match persisted {
        Ok(output) => output,
        Err(reason) => {
            command.fail(owner, &reason);
            command.acks.push((node.clone(), result.invocation_id));
            return Some(command_id);
        }
    };
    let event = match InvocationOutcome::try_from(result.outcome) {
        Ok(InvocationOutcome::Success) => InvocationEvent::Finished { exit_code: 0 },
        Ok(InvocationOutcome::Failed) => {
            InvocationEvent::Finished { exit_code: if result.exit_code == 0 { 1 } else { result.exit_code } }
        }
        Ok(InvocationOutcome::TimedOut) => InvocationEvent::ExecutionTimedOut,
        Ok(InvocationOutcome::Cancelled) => InvocationEvent::CancelRequested,
        Ok(InvocationOutcome::Terminated) | Ok(InvocationOutcome::Unspecified) | Err(_) => InvocationEvent::AgentLost,
    };
    if !command.apply(owner, event) {
        // It ended meanwhile (cancelled, lost): that status stands; the agent may forget it.
        command.acks.push((node.clone(), result.invocation_id));
        return Some(command_id);
    }
    if let Some(inv) = command.invocations.get_mut(owner) {
        let (out, out_cut) = inline(&output.stdout, INLINE_STDOUT_CHARS);
        let (err, err_cut) = inline(&output.stderr, INLINE_STDERR_CHARS);
        inv.stdout = out;
        inv.stderr = err;
        inv.stdout_truncated = out_cut;
        inv.stderr_truncated = err_cut;
        inv.stdout_whole = output.stdout_whole && output.stdout_bytes > 0;
        inv.stderr_whole = output.stderr_whole && output.stderr_bytes > 0;
        inv.stdout_bytes = i64::try_from(output.stdout_bytes).unwrap_or(i64::MAX);
        inv.stderr_bytes = i64::try_from(output.stderr_bytes).unwrap_or(i64::MAX);
        inv.exit_code = Some(i64::from(result.exit_code));
        inv.started_at = i64::try_from(result.started_at_unix_ms).ok().filter(|t| *t > 0);
        inv.ended_at = i64::try_from(result.ended_at_unix_ms).ok().filter(|t| *t > 0).or(inv.ended_at);
        let mut detail: String = result.detail.chars().take(1024).collect();
        if let Some(cut) = cut_note(&result, output.stdout_bytes, output.stderr_bytes, state.run.output.max_bytes()) {
            inv.stdout_truncated = true;
            detail = if detail.is_empty() { cut } else { format!("{detail}; {cut}") };
        }
        inv.detail = detail;
        inv.state = result
            .state
            .iter()
            .map(|s| StepState {
                step: s.step.chars().take(256).collect(),
                action: s.action.chars().take(64).collect(),
                changed: s.changed,
                detail: s.detail.chars().take(1024).collect(),
            })
            .collect();
        command.dirty.insert(owner.to_owned());
    }
    // Acknowledged after the next flush: an ack for a result that is not yet durable could
    // lose it, and flushing per result would turn a storm of results into a storm of writes.
    command.acks.push((node.clone(), result.invocation_id));
    Some(command_id)
}

/// "output cut at max_output_bytes: ..." when the node or the server dropped bytes.
fn cut_note(result: &InvocationResult, stdout_kept: u64, stderr_kept: u64, cap: u64) -> Option<String> {
    let dropped = |reported: u64, sent: u64, kept: u64| reported.saturating_add(sent.saturating_sub(kept));
    let out = dropped(result.stdout_dropped_bytes, result.stdout_bytes, stdout_kept);
    let err = dropped(result.stderr_dropped_bytes, result.stderr_bytes, stderr_kept);
    (out > 0 || err > 0).then(|| {
        format!("output cut at max_output_bytes ({cap}): {out} bytes of stdout and {err} bytes of stderr dropped")
    })
}

fn ack(invocation_id: &str) -> ServerMessage {
    ServerMessage {
        seq: 0,
        body: Some(server_message::Body::ResultAck(ResultAck { invocation_id: invocation_id.to_owned() })),
    }
}

async fn flush_one(state: &AppState, command: &mut Active) {
    let ended: Vec<String> =
        command.transitions.iter().filter(|(_, status)| status.is_terminal()).map(|(node, _)| node.clone()).collect();
    for (_, status) in command.transitions.drain(..) {
        state.metrics.invocation_transitions.get_or_create(&StatusLabels { status: status.as_str() }).inc();
    }
    let batch: Vec<InvocationRecord> =
        command.dirty.iter().filter_map(|node| command.invocations.get(node).cloned()).collect();
    match state.store.update_invocations(&batch).await {
        Ok(()) => command.dirty.clear(),
        Err(e) => tracing::warn!(command_id = %command.record.id, "cannot record invocations (will retry): {e}"),
    }
    if command.record_dirty {
        match state.store.update_command(&command.record).await {
            Ok(()) => command.record_dirty = false,
            Err(e) => tracing::warn!(command_id = %command.record.id, "cannot record command (will retry): {e}"),
        }
    }
    if command.dirty.is_empty() {
        for (node, invocation) in std::mem::take(&mut command.acks) {
            state.registry.send(&node, ack(&invocation));
            state.registry.forget_run(&node, &invocation);
            state.run.output.remove(&invocation).await;
        }
    }
    // Ended without a result waiting for its acknowledgement (cancelled, lost, undeliverable,
    // failed to store): stop accepting its output and drop what was spooled.
    for node in ended {
        if !command.acks.iter().any(|(n, _)| n.as_str() == node) {
            state.run.output.remove(&invocation_id(&command.record.id, &node)).await;
        }
    }
}

async fn flush(state: &AppState, active: &mut HashMap<String, Active>) {
    for command in active.values_mut() {
        if !command.dirty.is_empty() || command.record_dirty || !command.acks.is_empty() {
            flush_one(state, command).await;
        }
    }
    active.retain(|_, c| {
        let done = c.record.status.is_terminal();
        !(done && c.dirty.is_empty() && !c.record_dirty && c.acks.is_empty())
    });
}
