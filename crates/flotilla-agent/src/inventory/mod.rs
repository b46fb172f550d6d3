//! Inventory on the node: collect every type (see `collect`), and upload by type with a
//! content hash so that what the server already holds is never sent again.
//!
//! The server tells the agent, in Welcome and in every acknowledgement, the hash it holds per
//! type; a type whose hash matches travels as `unchanged`, without its items. If the server
//! answers that it does not hold an "unchanged" type after all (it lost it), that type is sent
//! again in full.
//!
//! Collections run at connect, every `interval_seconds` the server configures (default 30
//! minutes) and on demand (`inventory:collect` steps); one at a time.

mod collect;

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::Mutex;
use std::time::Duration;

use flotilla_proto::v1::{InventoryAck, InventoryConfig, InventoryReport, InventoryTypeData, agent_message};
use tokio::sync::{Notify, oneshot};

use crate::invocation::{Outbox, send};

/// Collection interval until the server says otherwise.
pub const DEFAULT_INTERVAL: Duration = Duration::from_secs(30 * 60);
/// How long an upload may wait for the server's acknowledgement.
const ACK_TIMEOUT: Duration = Duration::from_secs(120);

/// The node's inventory uploader.
pub struct Inventory {
    root: PathBuf,
    outbox: Outbox,
    config: Mutex<InventoryConfig>,
    /// What the server holds, per type name.
    server_hashes: Mutex<HashMap<String, String>>,
    waiting: Mutex<HashMap<String, oneshot::Sender<InventoryAck>>>,
    one_at_a_time: tokio::sync::Mutex<()>,
    reconfigured: Notify,
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|p| p.into_inner())
}

impl Inventory {
    pub fn new(root: &Path, outbox: Outbox) -> Self {
        Inventory {
            root: root.to_owned(),
            outbox,
            config: Mutex::new(InventoryConfig::default()),
            server_hashes: Mutex::new(HashMap::new()),
            waiting: Mutex::new(HashMap::new()),
            one_at_a_time: tokio::sync::Mutex::new(()),
            reconfigured: Notify::new(),
        }
    }

    /// The node's root, under which every collector and check reads.
    pub fn root(&self) -> &Path {
        &self.root
    }

    /// At (re)connect: the server's hashes and this node's settings.
    pub fn welcome(&self, hashes: HashMap<String, String>, config: Option<InventoryConfig>) {
        *lock(&self.server_hashes) = hashes;
        if let Some(config) = config {
            self.configure(config);
        }
    }

    pub fn configure(&self, config: InventoryConfig) {
        *lock(&self.config) = config;
        self.reconfigured.notify_waiters();
    }

    fn interval(&self) -> Duration {
        match lock(&self.config).interval_seconds {
            0 => DEFAULT_INTERVAL,
            seconds => Duration::from_secs(u64::from(seconds)),
        }
    }

    pub fn acknowledged(&self, ack: InventoryAck) {
        if let Some(waiter) = lock(&self.waiting).remove(&ack.report_id) {
            let _ = waiter.send(ack);
        }
    }

    /// Collects on the configured schedule, forever.
    pub async fn schedule(&self) {
        loop {
            tokio::select! {
                () = tokio::time::sleep(self.interval()) => {
                    match self.collect_and_upload().await {
                        Ok(summary) => tracing::info!("scheduled inventory collection: {}", summary.lines().next().unwrap_or("")),
                        Err(e) => tracing::warn!("scheduled inventory collection: {e}"),
                    }
                }
                () = self.reconfigured.notified() => {}
            }
        }
    }

    /// One collection and upload; returns a summary for people (first line) and the warnings.
    pub async fn collect_and_upload(&self) -> Result<String, String> {
        let _one = self.one_at_a_time.lock().await;
        let files = lock(&self.config).files.clone();
        let collected = collect::collect(&self.root, &files).await;
        let mut encoded: Vec<(String, String, Vec<u8>)> = Vec::new();
        for (name, items) in &collected.types {
            let bytes = serde_json::to_vec(items).map_err(|e| format!("cannot encode {name}: {e}"))?;
            let hash = collect::hex(aws_lc_rs::digest::digest(&aws_lc_rs::digest::SHA256, &bytes).as_ref());
            encoded.push((name.clone(), hash, bytes));
        }
        let item_count: usize = collected.types.values().map(Vec::len).sum();
        let mut resend: Vec<String> = Vec::new();
        let mut sent_bytes = 0usize;
        let mut sent_types = Vec::new();
        // A second round only when the server lost types it was told were unchanged.
        for _round in 0..2 {
            let hashes = lock(&self.server_hashes).clone();
            let types: Vec<InventoryTypeData> = encoded
                .iter()
                .map(|(name, hash, bytes)| {
                    let unchanged = hashes.get(name) == Some(hash) && !resend.contains(name);
                    InventoryTypeData {
                        name: name.clone(),
                        content_hash: hash.clone(),
                        items_json: if unchanged { Vec::new() } else { bytes.clone() },
                        unchanged,
                    }
                })
                .collect();
            for t in types.iter().filter(|t| !t.unchanged) {
                sent_bytes += t.items_json.len();
                sent_types.push(t.name.clone());
            }
            let report_id = collect::hex(&rand::random::<[u8; 12]>());
            let (tx, rx) = oneshot::channel();
            lock(&self.waiting).insert(report_id.clone(), tx);
            let report = InventoryReport { report_id: report_id.clone(), collected_at_unix_ms: now_ms(), types };
            if !send(&self.outbox, agent_message::Body::Inventory(report)).await {
                lock(&self.waiting).remove(&report_id);
                return Err("not connected to the server; the inventory will be sent after reconnecting".into());
            }
            let ack = match tokio::time::timeout(ACK_TIMEOUT, rx).await {
                Ok(Ok(ack)) => ack,
                _ => {
                    lock(&self.waiting).remove(&report_id);
                    return Err("the server did not acknowledge the inventory in time".into());
                }
            };
            *lock(&self.server_hashes) = ack.hashes.clone();
            let mut summary = format!(
                "inventory collected: {} types, {item_count} items; sent {} changed type(s) ({sent_bytes} bytes){}",
                encoded.len(),
                sent_types.len(),
                if sent_types.is_empty() { String::new() } else { format!(": {}", sent_types.join(", ")) },
            );
            for (kind, why) in &ack.rejected {
                summary.push_str(&format!("\nrejected by the server: {kind}: {why}"));
            }
            for warning in &collected.warnings {
                summary.push_str(&format!("\nwarning: {warning}"));
            }
            if ack.resend.is_empty() {
                for warning in &collected.warnings {
                    tracing::warn!("inventory: {warning}");
                }
                return Ok(summary);
            }
            resend = ack.resend;
        }
        Err("the server keeps asking for types it was sent; giving up until the next collection".into())
    }
}

fn now_ms() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| u64::try_from(d.as_millis()).unwrap_or(u64::MAX))
        .unwrap_or(0)
}
