//! Retention: finished commands, their invocations and their outputs are deleted once they are
//! older than `command_retention` (default 90 days), in bulk, so the store and the artifact
//! store do not grow without bound.
//!
//! Invariant: a command that has not ended is never deleted. Artifacts go after the rows, so an
//! interrupted sweep leaves at worst unreferenced objects, which the next sweep cannot see but
//! which never make a listed command lose its output.

use std::sync::Arc;
use std::time::Duration;

use tokio_util::sync::CancellationToken;

use crate::{AppState, now_ms};

pub async fn retention_worker(state: Arc<AppState>, shutdown: CancellationToken) {
    let retention = state.config.command_retention;
    let every = (retention / 4).clamp(Duration::from_secs(1), Duration::from_secs(3600));
    loop {
        tokio::select! {
            _ = shutdown.cancelled() => return,
            () = tokio::time::sleep(every) => {}
        }
        sweep(&state, retention).await;
    }
}

async fn sweep(state: &AppState, retention: Duration) {
    let cutoff = now_ms().saturating_sub(i64::try_from(retention.as_millis()).unwrap_or(i64::MAX));
    let ids = match state.store.delete_commands_ended_before(cutoff).await {
        Ok(ids) => ids,
        Err(e) => return tracing::warn!("retention sweep failed (will retry): {e}"),
    };
    for id in &ids {
        if let Err(e) = state.artifacts.delete_prefix(&format!("commands/{id}")).await {
            tracing::warn!(command_id = %id, "cannot delete the command's artifacts: {e}");
        }
    }
    if !ids.is_empty() {
        tracing::info!(commands = ids.len(), "retention: deleted finished commands past their retention");
    }
}
