//! Running the server's invocations on this node, at most once and durably.
//!
//! Each invocation gets a spool directory `STATE_DIR/invocations/ID/`, created (fsync'd) BEFORE
//! anything runs; output is appended there as it streams, and `result.json` is written when it
//! ends. When the server acknowledges the result, a tombstone `STATE_DIR/executed/ID.json`
//! (the recorded outcome, exit code and sizes, fsync'd) is written and only then is the spool
//! directory deleted. So:
//! - an id is claimed synchronously, under one lock and before any await (`Runner::claim`):
//!   two identical Run messages arriving together run the script once;
//! - an id seen again never runs twice: a running one is left alone; a finished, unacknowledged
//!   one re-sends its output and result; an acknowledged one is answered from its tombstone
//!   (`replayed = true`, no output); one whose agent died mid-run (spool directory without
//!   result, not running) reports Terminated;
//! - tombstones are kept `TOMBSTONE_RETENTION` (24 h, far beyond the server's 600 s default
//!   delivery timeout) and survive agent restarts;
//! - results survive a lost connection and an agent restart, and are delivered on reconnect;
//! - each output stream is sent (and spooled) up to the Run's `max_output_bytes` (0: 256 MiB);
//!   past it the pipe is still drained, so the script never blocks, and the dropped byte
//!   count is reported in the result.

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use flotilla_proto::v1::{
    AgentMessage, InvocationAccepted, InvocationOutcome, InvocationResult, OutputChunk, OutputStream, RunInvocation,
    agent_message,
};
use serde::{Deserialize, Serialize};
use tokio::io::AsyncWriteExt;
use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;

use crate::AgentError;
use crate::exec::{self, Chunk, Outcome, Spec};
use crate::inventory::Inventory;
use crate::patching::Patching;
use crate::state::{PRIVATE_FILE, create_private_dir, private_dir, sync_dir, write_private};

/// How long an acknowledged invocation's id is remembered. The server re-sends a Run it has no
/// result for until its delivery timeout (600 s by default); a day covers that, reconnects
/// after long outages and any sane configured timeout.
pub const TOMBSTONE_RETENTION: Duration = Duration::from_secs(24 * 3600);
/// How often, at most, expired tombstones are looked for after an acknowledgement.
const TOMBSTONE_PRUNE_EVERY: Duration = Duration::from_secs(3600);
/// Per-stream output limit when the Run does not name one (`max_output_bytes = 0`).
pub const DEFAULT_MAX_OUTPUT_BYTES: u64 = 256 * 1024 * 1024;

/// The spool's record of a finished invocation.
#[derive(Debug, Clone, Serialize, Deserialize)]
struct ResultFile {
    outcome: i32,
    exit_code: i32,
    started_at_unix_ms: u64,
    ended_at_unix_ms: u64,
    detail: String,
    /// Bytes past `max_output_bytes`, neither spooled nor sent (absent in older spools).
    #[serde(default)]
    stdout_dropped_bytes: u64,
    #[serde(default)]
    stderr_dropped_bytes: u64,
    /// What each desired-state step found and did (absent in older spools and tombstones).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    state: Vec<StepStateFile>,
}

/// One desired-state step's report, as spooled.
#[derive(Debug, Clone, Serialize, Deserialize)]
struct StepStateFile {
    step: String,
    action: String,
    changed: bool,
    detail: String,
}

/// What is remembered of an acknowledged invocation, in `executed/ID.json`.
#[derive(Debug, Clone, Serialize, Deserialize)]
struct Tombstone {
    result: ResultFile,
    stdout_bytes: u64,
    stderr_bytes: u64,
    acknowledged_at_unix_ms: u64,
}

/// What a Run message finds when it claims its id.
enum Claim {
    /// Nobody had it: the spool directory is created, run it.
    Fresh(CancellationToken),
    /// This process runs it now.
    Running,
    /// A spool directory from before: finished and unacknowledged, or orphaned by a dead agent.
    Spooled,
    /// Ran and acknowledged earlier.
    Executed(Box<Tombstone>),
}

/// One output stream's budget: what fits under the limit is kept, the rest only counted.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Budget {
    limit: u64,
    kept: u64,
    dropped: u64,
}

impl Budget {
    fn new(max_output_bytes: u64) -> Budget {
        let limit = if max_output_bytes == 0 { DEFAULT_MAX_OUTPUT_BYTES } else { max_output_bytes };
        Budget { limit, kept: 0, dropped: 0 }
    }

    /// Takes a chunk; returns the offset and the part to keep (empty once the limit is hit).
    fn admit(&mut self, mut data: Vec<u8>) -> (u64, Vec<u8>) {
        let offset = self.kept;
        let room = usize::try_from(self.limit.saturating_sub(self.kept)).unwrap_or(usize::MAX);
        if data.len() > room {
            self.dropped += (data.len() - room) as u64;
            data.truncate(room);
        }
        self.kept += data.len() as u64;
        (offset, data)
    }
}

/// Where to send messages while a session is up; None between sessions.
pub type Outbox = Arc<Mutex<Option<mpsc::Sender<AgentMessage>>>>;

/// The invocations of this agent process.
pub struct Runner {
    /// Spool directories, one per unacknowledged invocation.
    dir: PathBuf,
    /// Tombstones of acknowledged invocations.
    executed: PathBuf,
    outbox: Outbox,
    inventory: Arc<Inventory>,
    patching: Arc<Patching>,
    /// Invocations running in this process. Its lock also serialises claims.
    running: Mutex<HashMap<String, CancellationToken>>,
    last_prune: Mutex<std::time::Instant>,
}

fn now_ms() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| u64::try_from(d.as_millis()).unwrap_or(u64::MAX))
        .unwrap_or(0)
}

/// Invocation ids become directory names: allow only a safe alphabet.
fn safe_id(id: &str) -> bool {
    !id.is_empty()
        && id.len() <= 128
        && id.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_' || b == b'.')
        && id != "."
        && id != ".."
}

/// Sends when a session is up; false when the message was dropped (the spool re-sends
/// invocation messages on the next session).
pub(crate) async fn send(outbox: &Outbox, message: agent_message::Body) -> bool {
    let sender = outbox.lock().unwrap_or_else(|p| p.into_inner()).clone();
    match sender {
        Some(sender) => sender.send(AgentMessage { seq: 0, body: Some(message) }).await.is_ok(),
        None => false,
    }
}

impl Runner {
    /// Prepares the spool and tombstone directories (0700) under `state_dir`.
    pub fn new(
        state_dir: &Path,
        outbox: Outbox,
        inventory: Arc<Inventory>,
        patching: Arc<Patching>,
    ) -> Result<Arc<Runner>, AgentError> {
        let (dir, executed) = (state_dir.join("invocations"), state_dir.join("executed"));
        for d in [state_dir, &dir, &executed] {
            private_dir(d).map_err(|source| AgentError::Write { path: d.to_path_buf(), source })?;
        }
        Ok(Arc::new(Runner {
            dir,
            executed,
            outbox,
            inventory,
            patching,
            running: Mutex::new(HashMap::new()),
            last_prune: Mutex::new(std::time::Instant::now()),
        }))
    }

    /// Patch Manager's operations (the channel hands them the server's answers).
    pub fn patching(&self) -> &Patching {
        &self.patching
    }

    fn running(&self) -> std::sync::MutexGuard<'_, HashMap<String, CancellationToken>> {
        self.running.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Decides, atomically, what a Run for `id` does. Synchronous on purpose: no await may
    /// come between looking for the id and taking it.
    fn claim(&self, id: &str) -> std::io::Result<Claim> {
        let mut running = self.running();
        if running.contains_key(id) {
            return Ok(Claim::Running);
        }
        if let Some(tombstone) = self.tombstone(id)? {
            return Ok(Claim::Executed(Box::new(tombstone)));
        }
        match create_private_dir(&self.dir.join(id)) {
            Ok(()) => {
                // The claim must outlive a crash of the agent or the machine.
                sync_dir(&self.dir)?;
                let cancel = CancellationToken::new();
                running.insert(id.to_owned(), cancel.clone());
                Ok(Claim::Fresh(cancel))
            }
            Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => Ok(Claim::Spooled),
            Err(e) => Err(e),
        }
    }

    /// The tombstone of `id`, if it ran. A tombstone that cannot be read (other than absent)
    /// is an error: running the id again might be running it twice.
    fn tombstone(&self, id: &str) -> std::io::Result<Option<Tombstone>> {
        let path = self.executed.join(format!("{id}.json"));
        let bytes = match std::fs::read(&path) {
            Ok(bytes) => bytes,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
            Err(e) => return Err(std::io::Error::new(e.kind(), format!("cannot read {}: {e}", path.display()))),
        };
        Ok(Some(match serde_json::from_slice(&bytes) {
            Ok(tombstone) => tombstone,
            Err(e) => {
                // Still proof that it ran: never run it again, answer with what is known.
                tracing::warn!(invocation = %id, "tombstone {} is unreadable ({e}); answering Terminated", path.display());
                Tombstone {
                    result: ResultFile {
                        outcome: InvocationOutcome::Terminated as i32,
                        exit_code: -1,
                        started_at_unix_ms: 0,
                        ended_at_unix_ms: 0,
                        detail: "this invocation already ran; its record on the node is damaged".into(),
                        stdout_dropped_bytes: 0,
                        stderr_dropped_bytes: 0,
                        state: Vec::new(),
                    },
                    stdout_bytes: 0,
                    stderr_bytes: 0,
                    acknowledged_at_unix_ms: 0,
                }
            }
        }))
    }

    /// Handles a RunInvocation from the server (possibly a duplicate).
    pub async fn start(self: &Arc<Self>, run: RunInvocation) {
        if !safe_id(&run.invocation_id) {
            tracing::warn!("ignoring an invocation with an unusable id {:?}", run.invocation_id);
            return;
        }
        let dir = self.dir.join(&run.invocation_id);
        let cancel = match self.claim(&run.invocation_id) {
            Ok(Claim::Fresh(cancel)) => cancel,
            Ok(Claim::Running) => return,
            Ok(Claim::Spooled) => {
                terminate_orphan(&dir, &run.invocation_id).await;
                self.resend(&run.invocation_id).await;
                return;
            }
            Ok(Claim::Executed(tombstone)) => {
                tracing::info!(invocation = %run.invocation_id, "already ran; answering from its tombstone");
                let result = result_message(
                    &run.invocation_id,
                    &tombstone.result,
                    tombstone.stdout_bytes,
                    tombstone.stderr_bytes,
                    true,
                );
                send(&self.outbox, agent_message::Body::Result(result)).await;
                return;
            }
            Err(e) => {
                tracing::error!(invocation = %run.invocation_id, "cannot claim the invocation (spool {}): {e}; not running it: check the state dir", dir.display());
                return;
            }
        };
        let accepted = InvocationAccepted { invocation_id: run.invocation_id.clone(), started_at_unix_ms: now_ms() };
        send(&self.outbox, agent_message::Body::Accepted(accepted)).await;
        let runner = self.clone();
        tokio::spawn(async move {
            let id = run.invocation_id.clone();
            let result = runner.execute(&dir, run, cancel).await;
            if let Err(e) = write_result(&dir, &result).await {
                tracing::error!(invocation = %id, "cannot spool the result: {e}");
            }
            runner.running().remove(&id);
            runner.send_result(&id, &result).await;
            runner.patching.reboot_if_requested(&id, &dir).await;
        });
    }

    pub fn cancel(&self, invocation_id: &str) {
        if let Some(token) = self.running().get(invocation_id) {
            token.cancel();
        }
    }

    /// The server has the result: keep a tombstone, then drop the spool.
    pub async fn acknowledged(&self, invocation_id: &str) {
        if !safe_id(invocation_id) || self.running().contains_key(invocation_id) {
            return;
        }
        let dir = self.dir.join(invocation_id);
        let Some(result) = read_result(&dir).await else { return };
        let tombstone = Tombstone {
            stdout_bytes: file_size(&dir.join("stdout")),
            stderr_bytes: file_size(&dir.join("stderr")),
            result,
            acknowledged_at_unix_ms: now_ms(),
        };
        let path = self.executed.join(format!("{invocation_id}.json"));
        let written = match serde_json::to_vec(&tombstone) {
            Ok(bytes) => {
                let path = path.clone();
                tokio::task::spawn_blocking(move || write_private(&path, &bytes))
                    .await
                    .unwrap_or_else(|e| Err(std::io::Error::other(e)))
            }
            Err(e) => Err(std::io::Error::other(e)),
        };
        if let Err(e) = written {
            // Keeping the spool keeps the id claimed: a re-sent Run gets the result again.
            tracing::error!(invocation = %invocation_id, "cannot write the tombstone {}: {e}; keeping the spool", path.display());
            return;
        }
        if let Err(e) = tokio::fs::remove_dir_all(&dir).await {
            tracing::warn!(invocation = %invocation_id, "cannot remove the spool {}: {e}", dir.display());
        }
        let due = {
            let mut last = self.last_prune.lock().unwrap_or_else(|p| p.into_inner());
            let due = last.elapsed() >= TOMBSTONE_PRUNE_EVERY;
            if due {
                *last = std::time::Instant::now();
            }
            due
        };
        if due {
            self.prune_tombstones();
        }
    }

    /// Deletes tombstones older than `TOMBSTONE_RETENTION` (by modification time, which the
    /// write sets).
    pub fn prune_tombstones(&self) {
        let Ok(entries) = std::fs::read_dir(&self.executed) else { return };
        let now = std::time::SystemTime::now();
        for entry in entries.flatten() {
            let expired = entry
                .metadata()
                .and_then(|m| m.modified())
                .is_ok_and(|t| now.duration_since(t).is_ok_and(|age| age > TOMBSTONE_RETENTION));
            if expired {
                let _ = std::fs::remove_file(entry.path());
            }
        }
    }

    /// At start-up: invocations an earlier agent process left unfinished end Terminated, and
    /// whatever of their scripts still runs is killed.
    pub async fn reap(&self) {
        let Ok(mut entries) = tokio::fs::read_dir(&self.dir).await else { return };
        while let Ok(Some(entry)) = entries.next_entry().await {
            let id = entry.file_name().to_string_lossy().into_owned();
            if safe_id(&id) && !self.running().contains_key(&id) {
                terminate_orphan(&entry.path(), &id).await;
            }
        }
    }

    /// After a reconnect: re-send every finished, unacknowledged invocation.
    pub async fn resend_all(&self) {
        let Ok(mut entries) = tokio::fs::read_dir(&self.dir).await else { return };
        while let Ok(Some(entry)) = entries.next_entry().await {
            let id = entry.file_name().to_string_lossy().into_owned();
            if entry.path().join("result.json").exists() {
                self.resend(&id).await;
            }
        }
    }

    async fn resend(&self, id: &str) {
        let dir = self.dir.join(id);
        for (file, stream) in [("stdout", OutputStream::Stdout), ("stderr", OutputStream::Stderr)] {
            let data = tokio::fs::read(dir.join(file)).await.unwrap_or_default();
            for (index, piece) in data.chunks(exec::CHUNK_BYTES).enumerate() {
                let offset = (index * exec::CHUNK_BYTES) as u64;
                send(&self.outbox, chunk_message(id, stream, offset, piece.to_vec())).await;
            }
        }
        match read_result(&dir).await {
            Some(result) => self.send_result(id, &result).await,
            None => tracing::warn!(invocation = %id, "spooled result is unreadable"),
        }
    }

    async fn send_result(&self, id: &str, r: &ResultFile) {
        let dir = self.dir.join(id);
        let result = result_message(id, r, file_size(&dir.join("stdout")), file_size(&dir.join("stderr")), false);
        send(&self.outbox, agent_message::Body::Result(result)).await;
    }

    /// Runs the steps in order; the first step that does not succeed ends the invocation.
    async fn execute(&self, dir: &Path, run: RunInvocation, cancel: CancellationToken) -> ResultFile {
        let started = now_ms();
        let mut result = ResultFile {
            outcome: InvocationOutcome::Success as i32,
            exit_code: 0,
            started_at_unix_ms: started,
            ended_at_unix_ms: started,
            detail: String::new(),
            stdout_dropped_bytes: 0,
            stderr_dropped_bytes: 0,
            state: Vec::new(),
        };
        let mut budgets = [Budget::new(run.max_output_bytes); 2];
        for step in run.steps {
            if crate::desired::is_desired_state(&step.agent_action) {
                let root = self.inventory.root().to_owned();
                let timeout = Duration::from_secs(u64::from(step.timeout_seconds.max(1)));
                let inputs: std::collections::BTreeMap<String, String> = step.agent_inputs.into_iter().collect();
                let applied = tokio::select! {
                    applied = crate::desired::apply(&root, &step.agent_action, &inputs, timeout) => applied,
                    () = cancel.cancelled() => {
                        (result.outcome, result.exit_code, result.detail) =
                            (InvocationOutcome::Cancelled as i32, -1, "cancelled".into());
                        break;
                    }
                };
                let line = match &applied {
                    Ok(report) => format!("{}\n", report.detail),
                    Err(why) => format!("{}: {why}\n", step.name),
                };
                self.output(dir, &run.invocation_id, &mut budgets[0], OutputStream::Stdout, line.into_bytes()).await;
                match applied {
                    Ok(report) => {
                        result.state.push(StepStateFile {
                            step: step.name,
                            action: step.agent_action,
                            changed: report.changed,
                            detail: report.detail,
                        });
                        (result.outcome, result.exit_code, result.detail) =
                            (InvocationOutcome::Success as i32, 0, String::new());
                    }
                    Err(why) => {
                        (result.outcome, result.exit_code, result.detail) =
                            (InvocationOutcome::Failed as i32, 1, format!("step {}: {why}", step.name));
                        break;
                    }
                }
                continue;
            }
            if step.agent_action == flotilla_core::patch::ACTION {
                let inputs: std::collections::BTreeMap<String, String> = step.agent_inputs.into_iter().collect();
                let outcome = tokio::select! {
                    outcome = self.patching.run(&run.invocation_id, &inputs) => outcome,
                    () = cancel.cancelled() => {
                        (result.outcome, result.exit_code, result.detail) =
                            (InvocationOutcome::Cancelled as i32, -1, "cancelled".into());
                        break;
                    }
                };
                self.output(dir, &run.invocation_id, &mut budgets[0], OutputStream::Stdout, outcome.log.into_bytes())
                    .await;
                (result.outcome, result.exit_code, result.detail) = if outcome.success {
                    (InvocationOutcome::Success as i32, 0, String::new())
                } else {
                    (InvocationOutcome::Failed as i32, 1, format!("step {}: {}", step.name, outcome.detail))
                };
                if !outcome.success {
                    break;
                }
                continue;
            }
            if !step.agent_action.is_empty() {
                let (outcome, exit_code, detail, text) = self.agent_action(&step.agent_action).await;
                self.output(dir, &run.invocation_id, &mut budgets[0], OutputStream::Stdout, text.into_bytes()).await;
                (result.outcome, result.exit_code, result.detail) = (outcome as i32, exit_code, detail);
                if outcome != InvocationOutcome::Success {
                    break;
                }
                continue;
            }
            let spec = Spec {
                script: step.script,
                working_directory: Some(step.working_directory).filter(|d| !d.is_empty()).map(PathBuf::from),
                env: step.env.into_iter().collect(),
                timeout: Duration::from_secs(u64::from(step.timeout_seconds.max(1))),
                // Marks every process of the script, so it is killed wherever it went, now or
                // by a later agent process (see `reap`).
                invocation_id: Some(run.invocation_id.clone()),
            };
            let (tx, mut rx) = mpsc::channel::<Chunk>(16);
            let exec_cancel = cancel.clone();
            let handle = tokio::spawn(async move { exec::run(&spec, tx, exec_cancel).await });
            // Read to the end even past the budgets: a script must never block on a full pipe.
            while let Some(chunk) = rx.recv().await {
                let (stream, slot, data) = match chunk {
                    Chunk::Stdout(d) => (OutputStream::Stdout, 0, d),
                    Chunk::Stderr(d) => (OutputStream::Stderr, 1, d),
                };
                self.output(dir, &run.invocation_id, &mut budgets[slot], stream, data).await;
            }
            let (outcome, exit_code, detail) = match handle.await {
                Ok(Ok(Outcome::Exited(0))) => (InvocationOutcome::Success, 0, String::new()),
                Ok(Ok(Outcome::Exited(code))) => (InvocationOutcome::Failed, code, String::new()),
                Ok(Ok(Outcome::Signalled(sig))) => {
                    (InvocationOutcome::Failed, -1, format!("step {} killed by signal {sig}", step.name))
                }
                Ok(Ok(Outcome::TimedOut)) => (InvocationOutcome::TimedOut, -1, format!("step {} timed out", step.name)),
                Ok(Ok(Outcome::Cancelled)) => (InvocationOutcome::Cancelled, -1, "cancelled".into()),
                Ok(Err(e)) => (InvocationOutcome::Failed, -1, format!("step {}: {e}", step.name)),
                Err(e) => (InvocationOutcome::Failed, -1, format!("step {}: {e}", step.name)),
            };
            result.outcome = outcome as i32;
            result.exit_code = exit_code;
            result.detail = detail;
            if outcome != InvocationOutcome::Success {
                break;
            }
        }
        result.ended_at_unix_ms = now_ms();
        result.stdout_dropped_bytes = budgets[0].dropped;
        result.stderr_dropped_bytes = budgets[1].dropped;
        if budgets.iter().any(|b| b.dropped > 0) {
            tracing::warn!(
                invocation = %run.invocation_id,
                stdout_dropped = budgets[0].dropped,
                stderr_dropped = budgets[1].dropped,
                "output past max_output_bytes was dropped"
            );
        }
        result
    }

    /// Spools and sends what of `data` fits in the stream's budget.
    async fn output(&self, dir: &Path, id: &str, budget: &mut Budget, stream: OutputStream, data: Vec<u8>) {
        let (offset, kept) = budget.admit(data);
        if kept.is_empty() {
            return;
        }
        let file = if stream == OutputStream::Stderr { "stderr" } else { "stdout" };
        if let Err(e) = append(&dir.join(file), &kept).await {
            tracing::warn!(invocation = %id, "cannot spool output: {e}");
        }
        send(&self.outbox, chunk_message(id, stream, offset, kept)).await;
    }

    /// A step the agent performs itself: (outcome, exit code, detail, output).
    async fn agent_action(&self, action: &str) -> (InvocationOutcome, i32, String, String) {
        match action {
            "inventory:collect" => match self.inventory.collect_and_upload().await {
                Ok(summary) => (InvocationOutcome::Success, 0, String::new(), summary + "\n"),
                Err(e) => (InvocationOutcome::Failed, 1, e.clone(), e + "\n"),
            },
            "assess:best-practices" | "assess:network-reachability" => {
                let root = self.inventory.root().to_owned();
                let network = action == "assess:network-reachability";
                let checked = tokio::task::spawn_blocking(move || {
                    if network {
                        crate::assess::network_reachability(&root)
                    } else {
                        crate::assess::best_practices(&root)
                    }
                })
                .await;
                match checked
                    .map_err(|e| e.to_string())
                    .and_then(|f| serde_json::to_string(&f).map_err(|e| e.to_string()))
                {
                    Ok(json) => (InvocationOutcome::Success, 0, String::new(), json + "\n"),
                    Err(e) => (InvocationOutcome::Failed, 1, format!("the checks failed: {e}"), e + "\n"),
                }
            }
            other => {
                let why = format!("this agent does not know the action {other}; upgrade the agent");
                (InvocationOutcome::Failed, 1, why.clone(), why + "\n")
            }
        }
    }
}

/// Ends an invocation whose agent process died: kills its leftover processes and records it
/// Terminated (unless it had finished).
async fn terminate_orphan(dir: &Path, id: &str) {
    if dir.join("result.json").exists() {
        return;
    }
    let marker = exec::marker(id);
    let killed = tokio::task::spawn_blocking(move || exec::kill_marked(&marker)).await.unwrap_or(0);
    if killed > 0 {
        tracing::warn!(invocation = %id, killed, "killed processes left by an earlier agent process");
    }
    let result = ResultFile {
        outcome: InvocationOutcome::Terminated as i32,
        exit_code: -1,
        started_at_unix_ms: 0,
        ended_at_unix_ms: now_ms(),
        detail: "the agent stopped while this invocation ran".into(),
        stdout_dropped_bytes: 0,
        stderr_dropped_bytes: 0,
        state: Vec::new(),
    };
    if let Err(e) = write_result(dir, &result).await {
        tracing::warn!(invocation = %id, "cannot record a terminated invocation: {e}");
    }
}

fn chunk_message(id: &str, stream: OutputStream, offset: u64, data: Vec<u8>) -> agent_message::Body {
    agent_message::Body::Output(OutputChunk { invocation_id: id.to_owned(), stream: stream as i32, offset, data })
}

fn result_message(id: &str, r: &ResultFile, stdout_bytes: u64, stderr_bytes: u64, replayed: bool) -> InvocationResult {
    InvocationResult {
        invocation_id: id.to_owned(),
        outcome: r.outcome,
        exit_code: r.exit_code,
        stdout_bytes,
        stderr_bytes,
        started_at_unix_ms: r.started_at_unix_ms,
        ended_at_unix_ms: r.ended_at_unix_ms,
        detail: r.detail.clone(),
        stdout_dropped_bytes: r.stdout_dropped_bytes,
        stderr_dropped_bytes: r.stderr_dropped_bytes,
        replayed,
        state: r
            .state
            .iter()
            .map(|s| flotilla_proto::v1::StepState {
                step: s.step.clone(),
                action: s.action.clone(),
                changed: s.changed,
                detail: s.detail.clone(),
            })
            .collect(),
    }
}

fn file_size(path: &Path) -> u64 {
    std::fs::metadata(path).map(|m| m.len()).unwrap_or(0)
}

async fn read_result(dir: &Path) -> Option<ResultFile> {
    let bytes = tokio::fs::read(dir.join("result.json")).await.ok()?;
    serde_json::from_slice(&bytes).ok()
}

async fn append(path: &Path, data: &[u8]) -> std::io::Result<()> {
    let mut file = tokio::fs::OpenOptions::new().create(true).append(true).mode(PRIVATE_FILE).open(path).await?;
    file.write_all(data).await?;
    // tokio finishes writes in the background; the result's byte count must see this one.
    file.flush().await
}

async fn write_result(dir: &Path, result: &ResultFile) -> std::io::Result<()> {
    let bytes = serde_json::to_vec(result).map_err(std::io::Error::other)?;
    let path = dir.join("result.json");
    tokio::task::spawn_blocking(move || write_private(&path, &bytes)).await.map_err(std::io::Error::other)?
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn budgets_keep_up_to_the_limit_and_count_the_rest() {
        let mut b = Budget::new(10);
        assert_eq!(b.admit(b"abcdef".to_vec()), (0, b"abcdef".to_vec()));
        assert_eq!(b.admit(b"ghijkl".to_vec()), (6, b"ghij".to_vec()), "cut at the limit");
        assert_eq!(b.admit(b"mnop".to_vec()), (10, Vec::new()), "nothing past it");
        assert_eq!((b.kept, b.dropped), (10, 6));
        let mut exact = Budget::new(3);
        assert_eq!(exact.admit(b"abc".to_vec()), (0, b"abc".to_vec()));
        assert_eq!(exact.dropped, 0);
        assert_eq!(Budget::new(0).limit, DEFAULT_MAX_OUTPUT_BYTES, "0 means the default");
    }
}
