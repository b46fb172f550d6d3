//! The server's view of itself for `GET /api/v1/server/status`: its named workers, the agents
//! it sees, and whether its store answers. Answers even when the store does not (that is
//! when an operator asks), with the store's part marked unreachable.

use std::time::Duration;

use flotilla_core::node::NodeStatus;

use super::Platform;
use super::worker::WorkerSnapshot;

/// A store that has not answered a trivial query in this long is reported unreachable.
const STORE_PROBE_TIMEOUT: Duration = Duration::from_secs(5);

pub struct ServerStatus {
    pub workers: Vec<WorkerSnapshot>,
    pub agents: Agents,
    pub store: StoreHealth,
}

pub struct Agents {
    /// Streams open to this process.
    pub connected: u64,
    /// `None` when the store could not be read.
    pub enrolled: Option<u64>,
    pub online: Option<u64>,
}

pub struct StoreHealth {
    pub backend: &'static str,
    pub reachable: bool,
    pub latency: Option<Duration>,
    pub error: Option<String>,
}

pub async fn status(platform: &Platform) -> ServerStatus {
    let store = platform.store.as_ref();
    let began = tokio::time::Instant::now();
    let probe = tokio::time::timeout(STORE_PROBE_TIMEOUT, store.ping()).await;
    let latency = began.elapsed();
    let store_health = match probe {
        Ok(Ok(())) => StoreHealth { backend: store.backend(), reachable: true, latency: Some(latency), error: None },
        Ok(Err(e)) => {
            StoreHealth { backend: store.backend(), reachable: false, latency: None, error: Some(e.to_string()) }
        }
        Err(_) => StoreHealth {
            backend: store.backend(),
            reachable: false,
            latency: None,
            error: Some(format!("no answer within {} s", STORE_PROBE_TIMEOUT.as_secs())),
        },
    };
    let (enrolled, online) = if store_health.reachable {
        match tokio::time::timeout(STORE_PROBE_TIMEOUT, store.count_nodes_by_status()).await {
            Ok(Ok(counts)) => {
                let sum = |keep: fn(NodeStatus) -> bool| counts.iter().filter(|(s, _)| keep(*s)).map(|(_, n)| n).sum();
                (Some(sum(|s| s != NodeStatus::Deregistered)), Some(sum(|s| s == NodeStatus::Online)))
            }
            Ok(Err(e)) => {
                tracing::warn!("server status: cannot count the nodes: {e}");
                (None, None)
            }
            Err(_) => (None, None),
        }
    } else {
        (None, None)
    };
    ServerStatus {
        workers: platform.workers.snapshot(),
        agents: Agents { connected: count(platform.registry.connected()), enrolled, online },
        store: store_health,
    }
}

fn count(n: usize) -> u64 {
    u64::try_from(n).unwrap_or(u64::MAX)
}
