//! Running the server's invocations on this node, durably.
//!
//! Each invocation gets a spool directory `STATE_DIR/invocations/ID/` created BEFORE anything
//! runs; output is appended there as it streams, and `result.json` is written when it ends.
//! The directory is deleted only when the server acknowledges the result. So:
//! - an invocation id seen again (a duplicated message, a re-send after reconnect) never runs
//!   twice: a finished one re-sends its output and result, a running one is left alone, and one
//!   whose agent died mid-run (directory without result, not running) reports Terminated;
//! - results survive a lost connection and an agent restart, and are delivered on reconnect.

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

use crate::exec::{self, Chunk, Outcome, Spec};
use crate::inventory::Inventory;

/// The spool's record of a finished invocation.
#[derive(Debug, Clone, Serialize, Deserialize)]
struct ResultFile {
    outcome: i32,
    exit_code: i32,
    started_at_unix_ms: u64,
    ended_at_unix_ms: u64,
    detail: String,
}

/// Where to send messages while a session is up; None between sessions.
pub type Outbox = Arc<Mutex<Option<mpsc::Sender<AgentMessage>>>>;

/// The invocations of this agent process.
pub struct Runner {
    dir: PathBuf,
    outbox: Outbox,
    inventory: Arc<Inventory>,
    running: Mutex<HashMap<String, CancellationToken>>,
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
    pub fn new(state_dir: &Path, outbox: Outbox, inventory: Arc<Inventory>) -> Arc<Runner> {
        Arc::new(Runner { dir: state_dir.join("invocations"), outbox, inventory, running: Mutex::new(HashMap::new()) })
    }

    fn running(&self) -> std::sync::MutexGuard<'_, HashMap<String, CancellationToken>> {
        self.running.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Handles a RunInvocation from the server (possibly a duplicate).
    pub async fn start(self: &Arc<Self>, run: RunInvocation) {
        if !safe_id(&run.invocation_id) {
            tracing::warn!("ignoring an invocation with an unusable id {:?}", run.invocation_id);
            return;
        }
        let dir = self.dir.join(&run.invocation_id);
        if dir.exists() {
            if self.running().contains_key(&run.invocation_id) {
                return;
            }
            terminate_orphan(&dir, &run.invocation_id).await;
            self.resend(&run.invocation_id).await;
            return;
        }
        if let Err(e) = tokio::fs::create_dir_all(&dir).await {
            tracing::error!(invocation = %run.invocation_id, "cannot create the spool directory {}: {e}", dir.display());
            return;
        }
        let cancel = CancellationToken::new();
        self.running().insert(run.invocation_id.clone(), cancel.clone());
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
        });
    }

    pub fn cancel(&self, invocation_id: &str) {
        if let Some(token) = self.running().get(invocation_id) {
            token.cancel();
        }
    }

    /// The server has the result: forget the invocation.
    pub async fn acknowledged(&self, invocation_id: &str) {
        if safe_id(invocation_id) {
            let _ = tokio::fs::remove_dir_all(self.dir.join(invocation_id)).await;
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
        match tokio::fs::read(dir.join("result.json"))
            .await
            .ok()
            .and_then(|b| serde_json::from_slice::<ResultFile>(&b).ok())
        {
            Some(result) => self.send_result(id, &result).await,
            None => tracing::warn!(invocation = %id, "spooled result is unreadable"),
        }
    }

    async fn send_result(&self, id: &str, r: &ResultFile) {
        let size = |f: &str| std::fs::metadata(self.dir.join(id).join(f)).map(|m| m.len()).unwrap_or(0);
        let result = InvocationResult {
            invocation_id: id.to_owned(),
            outcome: r.outcome,
            exit_code: r.exit_code,
            stdout_bytes: size("stdout"),
            stderr_bytes: size("stderr"),
            started_at_unix_ms: r.started_at_unix_ms,
            ended_at_unix_ms: r.ended_at_unix_ms,
            detail: r.detail.clone(),
            ..Default::default()
        };
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
        };
        let mut offsets = [0u64; 2];
        for step in run.steps {
            if !step.agent_action.is_empty() {
                let (outcome, exit_code, detail, text) = self.agent_action(&step.agent_action).await;
                if let Err(e) = append(&dir.join("stdout"), text.as_bytes()).await {
                    tracing::warn!(invocation = %run.invocation_id, "cannot spool output: {e}");
                }
                let offset = offsets[0];
                offsets[0] += text.len() as u64;
                send(&self.outbox, chunk_message(&run.invocation_id, OutputStream::Stdout, offset, text.into_bytes()))
                    .await;
                (result.outcome, result.exit_code, result.detail) = (outcome as i32, exit_code, detail);
                if outcome != InvocationOutcome::Success {
                    break;
                }
                continue;
            }
            let mut env: std::collections::BTreeMap<String, String> = step.env.into_iter().collect();
            // Lets a later agent process recognise this script's processes (see `reap`).
            env.insert(MARKER_VAR.into(), run.invocation_id.clone());
            let spec = Spec {
                script: step.script,
                working_directory: Some(step.working_directory).filter(|d| !d.is_empty()).map(PathBuf::from),
                env,
                timeout: Duration::from_secs(u64::from(step.timeout_seconds.max(1))),
            };
            let (tx, mut rx) = mpsc::channel::<Chunk>(16);
            let exec_cancel = cancel.clone();
            let pgid_file = dir.join("pgid");
            let handle = tokio::spawn(async move {
                exec::run(&spec, tx, exec_cancel, move |pid| {
                    // Recorded before any output, so a crash after this point can be cleaned up.
                    let _ = std::fs::write(&pgid_file, pid.to_string());
                })
                .await
            });
            while let Some(chunk) = rx.recv().await {
                let (file, stream, slot, data) = match chunk {
                    Chunk::Stdout(d) => ("stdout", OutputStream::Stdout, 0, d),
                    Chunk::Stderr(d) => ("stderr", OutputStream::Stderr, 1, d),
                };
                if let Err(e) = append(&dir.join(file), &data).await {
                    tracing::warn!(invocation = %run.invocation_id, "cannot spool output: {e}");
                }
                let offset = offsets[slot];
                offsets[slot] += data.len() as u64;
                send(&self.outbox, chunk_message(&run.invocation_id, stream, offset, data)).await;
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
        result
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

/// Environment variable that marks every process of an invocation with its id.
const MARKER_VAR: &str = "FLOTILLA_INVOCATION_ID";

/// Ends an invocation whose agent process died: kills its leftover processes and records it
/// Terminated (unless it had finished).
async fn terminate_orphan(dir: &Path, id: &str) {
    if dir.join("result.json").exists() {
        return;
    }
    if let Some(pgid) =
        tokio::fs::read_to_string(dir.join("pgid")).await.ok().and_then(|t| t.trim().parse::<u32>().ok())
    {
        let killed = exec::kill_orphaned_group(pgid, &format!("{MARKER_VAR}={id}"));
        if killed > 0 {
            tracing::warn!(invocation = %id, killed, "killed processes left by an earlier agent process");
        }
    }
    let result = ResultFile {
        outcome: InvocationOutcome::Terminated as i32,
        exit_code: -1,
        started_at_unix_ms: 0,
        ended_at_unix_ms: now_ms(),
        detail: "the agent stopped while this invocation ran".into(),
    };
    if let Err(e) = write_result(dir, &result).await {
        tracing::warn!(invocation = %id, "cannot record a terminated invocation: {e}");
    }
}

fn chunk_message(id: &str, stream: OutputStream, offset: u64, data: Vec<u8>) -> agent_message::Body {
    agent_message::Body::Output(OutputChunk { invocation_id: id.to_owned(), stream: stream as i32, offset, data })
}

async fn append(path: &Path, data: &[u8]) -> std::io::Result<()> {
    let mut file = tokio::fs::OpenOptions::new().create(true).append(true).open(path).await?;
    file.write_all(data).await?;
    // tokio finishes writes in the background; the result's byte count must see this one.
    file.flush().await
}

async fn write_result(dir: &Path, result: &ResultFile) -> std::io::Result<()> {
    let tmp = dir.join("result.json.tmp");
    let bytes = serde_json::to_vec(result).map_err(std::io::Error::other)?;
    tokio::fs::write(&tmp, bytes).await?;
    tokio::fs::rename(&tmp, dir.join("result.json")).await
}
