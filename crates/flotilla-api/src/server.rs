//! `GET /api/v1/server/status`: what the server itself is doing — its named workers, the agents
//! it sees and its store — for `flotilla server status`.

use serde::{Deserialize, Serialize};

/// Body of `GET /api/v1/server/status`.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct ServerStatus {
    /// The server's version.
    pub version: String,
    /// Every background worker of this server process, by name.
    pub workers: Vec<WorkerStatus>,
    pub agents: AgentCounts,
    pub store: StoreStatus,
}

/// Where a worker is.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(rename_all = "snake_case")]
pub enum WorkerState {
    /// Doing work (or a worker that never reports otherwise, such as the listener).
    Running,
    /// Waiting for its next piece of work.
    Idle,
    /// Its last attempt failed (`last_error`); it restarts at `restart_at`.
    BackingOff,
    /// Failed and not restarted (the server is stopping, or it ignored the shutdown deadline).
    Failed,
    /// Ended normally.
    Stopped,
}

impl WorkerState {
    pub fn as_str(self) -> &'static str {
        match self {
            WorkerState::Running => "running",
            WorkerState::Idle => "idle",
            WorkerState::BackingOff => "backing_off",
            WorkerState::Failed => "failed",
            WorkerState::Stopped => "stopped",
        }
    }
}

/// One background worker.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct WorkerStatus {
    pub name: String,
    pub state: WorkerState,
    /// Its last piece of work; absent before the first.
    pub last_run: Option<WorkerRun>,
    /// The error (or panic message) of its last failure, kept after it restarted.
    pub last_error: Option<String>,
    /// When a worker in `backing_off` starts again.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub restart_at: Option<String>,
    /// What it last said it was doing.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub progress: Option<String>,
    /// Pieces of work started.
    pub runs: u64,
    /// Attempts that returned an error or panicked.
    pub failures: u64,
    /// Attempts started again after a failure.
    pub restarts: u64,
}

/// The start and end of a worker's last piece of work (RFC 3339); `ended_at` is absent while
/// it runs.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct WorkerRun {
    pub started_at: String,
    pub ended_at: Option<String>,
}

/// Agents as this server sees them.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct AgentCounts {
    /// Agent streams open to this server process.
    pub connected: u64,
    /// Nodes enrolled and not deregistered (every server on this store); absent when the
    /// store cannot be read.
    pub enrolled: Option<u64>,
    /// Enrolled nodes whose status is `Online` (connected to any server on this store); absent
    /// when the store cannot be read.
    pub online: Option<u64>,
}

/// The store as this server reaches it.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct StoreStatus {
    /// `sqlite` or `postgres`.
    pub backend: String,
    pub reachable: bool,
    /// How long one round trip (a trivial query) took, in milliseconds.
    pub latency_ms: Option<f64>,
    /// Why it is not reachable.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
}
