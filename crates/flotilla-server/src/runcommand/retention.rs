//! Retention: finished commands, their invocations and their outputs are deleted once they are
//! older than `command_retention` (default 90 days), in bulk, and replaced inventory snapshots
//! (`inventory/...` in the artifact store) once they became history longer than
//! `inventory_history_retention` ago (default 30 days), and events of the event log older than
//! `event_retention` (default 30 days), and Delivered notification deliveries older than
//! `delivery_retention` (default 7 days; open and dead-lettered ones are kept), and stored
//! inventory items no node's current inventory names any more, so the store and the artifact
//! store do not grow without bound. A node's current inventory lives in the store and is never
//! swept.
//!
//! Invariant: a command that has not ended is never deleted. Artifacts go after the rows, so an
//! interrupted sweep leaves at worst unreferenced objects, which the next sweep cannot see but
//! which never make a listed command lose its output.

use std::sync::Arc;
use std::time::Duration;

use crate::app::AppState;
use crate::platform::now_ms;
use crate::platform::worker::WorkerContext;

pub async fn retention_worker(state: Arc<AppState>, ctx: WorkerContext) {
    let retention = state.config.command_retention;
    let history = state.config.inventory_history_retention;
    let events = state.config.event_retention;
    let deliveries = state.config.delivery_retention;
    let every = (retention.min(history).min(events).min(deliveries) / 4)
        .clamp(Duration::from_secs(1), Duration::from_secs(3600));
    loop {
        ctx.idle();
        tokio::select! {
            _ = ctx.cancelled() => return,
            () = tokio::time::sleep(every) => {}
        }
        ctx.running();
        sweep(&state, retention).await;
        sweep_inventory_history(&state, history).await;
        sweep_events(&state, events).await;
        sweep_deliveries(&state, deliveries).await;
        sweep_inventory_entries(&state).await;
    }
}

async fn sweep_inventory_entries(state: &AppState) {
    match state.store.delete_unreferenced_inventory_entries().await {
        Ok(0) => {}
        Ok(n) => tracing::info!(entries = n, "retention: deleted inventory items no node reports any more"),
        Err(e) => tracing::warn!("inventory entry sweep failed (will retry): {e}"),
    }
}

async fn sweep_deliveries(state: &AppState, retention: Duration) {
    let cutoff = now_ms().saturating_sub(i64::try_from(retention.as_millis()).unwrap_or(i64::MAX));
    match state.store.delete_delivered_before(cutoff).await {
        Ok(0) => {}
        Ok(n) => tracing::info!(deliveries = n, "retention: deleted delivered notifications past their retention"),
        Err(e) => tracing::warn!("delivery sweep failed (will retry): {e}"),
    }
}

async fn sweep_events(state: &AppState, retention: Duration) {
    let cutoff = now_ms().saturating_sub(i64::try_from(retention.as_millis()).unwrap_or(i64::MAX));
    match state.store.delete_events_before(cutoff).await {
        Ok(0) => {}
        Ok(n) => tracing::info!(events = n, "retention: deleted events past their retention"),
        Err(e) => tracing::warn!("event log sweep failed (will retry): {e}"),
    }
}

async fn sweep_inventory_history(state: &AppState, retention: Duration) {
    let cutoff = now_ms().saturating_sub(i64::try_from(retention.as_millis()).unwrap_or(i64::MAX));
    match state.artifacts.delete_older_than("inventory", cutoff).await {
        Ok(0) => {}
        Ok(n) => tracing::info!(snapshots = n, "retention: deleted inventory history past its retention"),
        Err(e) => tracing::warn!("inventory history sweep failed (will retry): {e}"),
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
