//! Inventory service: ingest agents' reports, keep history, answer fleet queries, and decide
//! each node's collection settings.
//!
//! Invariants:
//! - A report is applied in one store transaction: a changed type replaces the stored one
//!   whole, a type the node no longer reports is deleted, a refused type changes nothing.
//! - Before a stored type is replaced or deleted, its items are written to the artifact store
//!   (`inventory/NODE/TYPE/COLLECTED_AT-HASH.json`), so history is kept outside the hot tables.
//! - The server never trusts an "unchanged" claim it cannot verify: when it does not hold that
//!   hash it asks the agent to send the type again. Items that are sent are hashed here and
//!   refused when they do not match the hash the agent claims for them, so the hash the server
//!   holds (and later answers "unchanged" against) is always the hash of what it stored.
//! - Replaced snapshots are kept for `inventory_history_retention` (retention.rs deletes older
//!   ones).
//! - Types the server writes itself (`Finding`, `Compliance`) are never sent by, nor deleted
//!   because of, an agent.

pub mod http;

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::str::FromStr;

use flotilla_core::{NodeId, NodeStatus, Target};
use flotilla_inventory::types::SERVER_WRITTEN;
use flotilla_inventory::{Filter, InventoryType};
use flotilla_proto::v1::{InventoryAck, InventoryConfig, InventoryReport, ServerMessage, server_message};
use flotilla_store::{InventoryChange, InventorySetting, StoreError, StoredInventoryType};
use serde_json::Value;

use crate::app::AppState;
use crate::platform::{ServiceError, now_ms};

/// Largest item data accepted for one type of one node.
pub const MAX_TYPE_BYTES: usize = 16 * 1024 * 1024;
/// Items accepted per type and node.
const MAX_ITEMS: usize = 100_000;
/// Custom types a node may have.
const MAX_CUSTOM_TYPES: usize = 50;
/// Nodes read from the store per round while a query fills a page.
const SCAN_BATCH_NODES: i64 = 500;
const DEFAULT_PAGE: u32 = 100;
const MAX_PAGE: u32 = 1000;
/// Shortest collection interval a group may set.
const MIN_INTERVAL_SECONDS: u32 = 10;
const MAX_WATCHED_PATTERNS: usize = 100;

/// Reports decoded and applied at once, per store engine. A fleet reporting together (every
/// agent collects at connect) would otherwise hold every pooled connection in a transaction:
/// SQLite has one writer, so they queued in busy waits while everything else (and most of
/// those reports) timed out waiting for a connection; and each report decoded meanwhile was
/// held in memory. Measured with flotilla-loadgen (bench/RESULTS.md, "Load generator"). Writers
/// now queue on the store's own write lock, not on a pooled connection, so SQLite's permits
/// only bound memory: four keep both cores decoding while one report is written.
fn ingest_permits(backend: &str) -> &'static tokio::sync::Semaphore {
    static PERMITS: std::sync::OnceLock<tokio::sync::Semaphore> = std::sync::OnceLock::new();
    PERMITS.get_or_init(|| tokio::sync::Semaphore::new(if backend == "sqlite" { 4 } else { 8 }))
}

/// Applies one report from `node` and says what the server now holds.
pub async fn ingest(state: &AppState, node: &NodeId, report: InventoryReport) -> InventoryAck {
    // The semaphore is never closed, so acquiring cannot fail; without a permit we still ingest.
    let _permit = ingest_permits(state.store.backend()).acquire().await.ok();
    let started = std::time::Instant::now();
    let ack = ingest_report(state, node, report).await;
    state.metrics.inventory_ingest_seconds.observe(started.elapsed().as_secs_f64());
    ack
}

async fn ingest_report(state: &AppState, node: &NodeId, report: InventoryReport) -> InventoryAck {
    state.metrics.inventory_reports.inc();
    let mut ack = InventoryAck { report_id: report.report_id.clone(), ..Default::default() };
    let stored = match state.store.inventory_types(node).await {
        Ok(stored) => stored,
        Err(e) => {
            tracing::error!(node_id = %node, "cannot read stored inventory: {e}");
            ack.rejected.insert("*".into(), "the server cannot reach its database; the next collection retries".into());
            return ack;
        }
    };
    let held: HashMap<String, (String, i64)> =
        stored.iter().map(|t| (t.type_name.clone(), (t.content_hash.clone(), t.collected_at))).collect();
    let mut reported = BTreeSet::new();
    let mut changes = Vec::new();
    let mut custom_types = 0;
    for data in report.types {
        let kind = match InventoryType::parse(&data.name) {
            Ok(kind) => kind,
            Err(e) => {
                ack.rejected.insert(data.name.clone(), e.to_string());
                continue;
            }
        };
        if SERVER_WRITTEN.contains(&kind.as_str()) {
            ack.rejected.insert(data.name, format!("{kind} is written by the server, not by agents"));
            continue;
        }
        if matches!(kind, InventoryType::Custom(_)) {
            custom_types += 1;
            if custom_types > MAX_CUSTOM_TYPES {
                ack.rejected.insert(data.name, format!("a node may have at most {MAX_CUSTOM_TYPES} custom types"));
                continue;
            }
        }
        reported.insert(data.name.clone());
        let held_hash = held.get(&data.name).map(|(hash, _)| hash.as_str());
        if data.unchanged {
            if held_hash != Some(data.content_hash.as_str()) {
                ack.resend.push(data.name);
            }
            continue;
        }
        if held_hash == Some(data.content_hash.as_str()) {
            continue;
        }
        state.metrics.inventory_item_bytes.inc_by(data.items_json.len() as u64);
        if let Err(why) = check_hash(&data.items_json, &data.content_hash) {
            ack.rejected.insert(data.name, why);
            continue;
        }
        match decode(&kind, &data.items_json) {
            Ok(items) => {
                changes.push(InventoryChange::Replace { type_name: data.name, content_hash: data.content_hash, items })
            }
            Err(why) => {
                // Keep what is stored: a refused type is neither replaced nor deleted.
                ack.rejected.insert(data.name, why);
            }
        }
    }
    for gone in held.keys() {
        if !reported.contains(gone) && !ack.rejected.contains_key(gone) && !SERVER_WRITTEN.contains(&gone.as_str()) {
            changes.push(InventoryChange::Delete { type_name: gone.clone() });
        }
    }
    // The store records the change's Inventory.Changed event with it.
    if !changes.is_empty()
        && let Err(e) = apply(state, node, &changes, &held, report.collected_at_unix_ms).await
    {
        tracing::error!(node_id = %node, "cannot store inventory: {e}");
        ack.rejected.insert("*".into(), format!("the server could not store the inventory: {e}"));
        ack.hashes = held.into_iter().map(|(name, (hash, _))| (name, hash)).collect();
        return ack;
    }
    let mut now_held: HashMap<String, String> = held.into_iter().map(|(name, (hash, _))| (name, hash)).collect();
    for change in changes {
        match change {
            InventoryChange::Replace { type_name, content_hash, .. } => {
                now_held.insert(type_name, content_hash);
            }
            InventoryChange::Delete { type_name } => {
                now_held.remove(&type_name);
            }
        }
    }
    ack.hashes = now_held;
    ack
}

/// The agent names a type's content by the hex SHA-256 of its items as sent; a mismatch (a
/// damaged or forged report) must not be stored under a hash it does not have.
fn check_hash(items_json: &[u8], claimed: &str) -> Result<(), String> {
    let actual = crate::platform::secret::sha256_hex(items_json);
    if actual.eq_ignore_ascii_case(claimed) {
        Ok(())
    } else {
        Err(format!(
            "content hash {claimed:?} does not match the items sent (their SHA-256 is {actual}); nothing was stored"
        ))
    }
}

/// Parses and checks a type's items; each becomes (key field value, JSON text).
fn decode(kind: &InventoryType, bytes: &[u8]) -> Result<Vec<(Option<String>, String)>, String> {
    if bytes.len() > MAX_TYPE_BYTES {
        return Err(format!("{} bytes of items; at most {MAX_TYPE_BYTES} are accepted per type", bytes.len()));
    }
    // Each item is kept as the text the agent sent (valid JSON, checked against the schema),
    // never rebuilt as a `Value` and written out again.
    let items: Vec<&serde_json::value::RawValue> =
        serde_json::from_slice(bytes).map_err(|e| format!("the items are not a JSON array: {e}"))?;
    if items.len() > MAX_ITEMS {
        return Err(format!("{} items; at most {MAX_ITEMS} are accepted per type", items.len()));
    }
    let keys = kind.check_items(items.iter().map(|i| i.get()))?;
    Ok(keys.into_iter().zip(items).map(|(key, item)| (key, item.get().to_owned())).collect())
}

/// History first (the replaced snapshot goes to the artifact store), then the one transaction.
async fn apply(
    state: &AppState,
    node: &NodeId,
    changes: &[InventoryChange],
    held: &HashMap<String, (String, i64)>,
    collected_at: u64,
) -> Result<(), String> {
    for change in changes {
        let type_name = match change {
            InventoryChange::Replace { type_name, .. } | InventoryChange::Delete { type_name } => type_name,
        };
        let Some((hash, at)) = held.get(type_name) else { continue };
        let items = state.store.inventory_items(node, type_name).await.map_err(|e| e.to_string())?;
        let name = history_name(node, type_name, *at, hash);
        state.artifacts.put(&name, format!("[{}]", items.join(",")).into_bytes()).await.map_err(|e| e.to_string())?;
    }
    let collected_at = i64::try_from(collected_at).unwrap_or(i64::MAX).min(now_ms());
    state.store.apply_inventory(node, changes, collected_at, now_ms()).await.map_err(|e: StoreError| e.to_string())
}

/// `Custom:Rack` is not a portable object name: `:` becomes `_`.
pub fn history_name(node: &NodeId, type_name: &str, collected_at: i64, hash: &str) -> String {
    let short: String = hash.chars().take(16).collect();
    format!("inventory/{node}/{}/{collected_at}-{short}.json", type_name.replace(':', "_"))
}

/// What a node gets at connect: the hashes the server holds and its collection settings.
pub async fn welcome(state: &AppState, node: &NodeId) -> (HashMap<String, String>, InventoryConfig) {
    let hashes = match state.store.inventory_types(node).await {
        Ok(types) => types.into_iter().map(|t| (t.type_name, t.content_hash)).collect(),
        Err(e) => {
            tracing::warn!(node_id = %node, "cannot read inventory hashes; the agent will send everything: {e}");
            HashMap::new()
        }
    };
    let config = match config_for(state, std::slice::from_ref(node)).await {
        Ok(mut configs) => configs.remove(node).unwrap_or_default(),
        Err(e) => {
            tracing::warn!(node_id = %node, "cannot read inventory settings; using defaults: {e}");
            InventoryConfig::default()
        }
    };
    (hashes, config)
}

/// Effective settings of `nodes`: the shortest interval and the union of watched files of
/// every group each node belongs to.
async fn config_for(state: &AppState, nodes: &[NodeId]) -> Result<HashMap<NodeId, InventoryConfig>, ServiceError> {
    let settings = state.store.list_inventory_settings().await?;
    let mut out: HashMap<NodeId, InventoryConfig> =
        nodes.iter().map(|n| (n.clone(), InventoryConfig::default())).collect();
    if settings.is_empty() {
        return Ok(out);
    }
    let all = state.store.list_nodes().await?;
    let wanted: BTreeSet<&NodeId> = nodes.iter().collect();
    let candidates: Vec<flotilla_core::Node> = all.into_iter().filter(|n| wanted.contains(&n.id)).collect();
    let groups = crate::fleet::saved_groups(state).await?;
    for setting in &settings {
        let target = [Target::group(setting.group_name.clone())];
        // A group deleted since its settings were saved simply matches nobody.
        let Ok(members) = crate::fleet::resolve(&target, &candidates, &groups) else { continue };
        for member in members {
            let Some(config) = out.get_mut(&member.id) else { continue };
            if let Some(seconds) = setting.interval_seconds.and_then(|s| u32::try_from(s).ok()) {
                config.interval_seconds =
                    if config.interval_seconds == 0 { seconds } else { config.interval_seconds.min(seconds) };
            }
            for file in &setting.files {
                if !config.files.contains(file) {
                    config.files.push(file.clone());
                }
            }
        }
    }
    Ok(out)
}

/// Sends every connected node its (possibly changed) settings.
pub async fn push_settings(state: &AppState) -> Result<(), ServiceError> {
    let connected = state.registry.connected_ids();
    for (node, config) in config_for(state, &connected).await? {
        let message = ServerMessage { seq: 0, body: Some(server_message::Body::InventoryConfig(config)) };
        state.registry.send(&node, message);
    }
    Ok(())
}

fn parse_node(id: &str) -> Result<NodeId, ServiceError> {
    NodeId::from_str(id).map_err(|e| ServiceError::Invalid(e.to_string()))
}

fn parse_type(name: &str) -> Result<InventoryType, ServiceError> {
    InventoryType::parse(name).map_err(|e| ServiceError::Invalid(e.to_string()))
}

/// One inventory type a node reported, with its items.
#[derive(Debug, Clone)]
pub struct TypeSnapshot {
    pub stored: StoredInventoryType,
    pub items: Vec<Value>,
}

/// A fleet query: nodes with items of `type_name` matching every filter, a page at a time.
#[derive(Debug, Clone, Default)]
pub struct Query {
    pub type_name: String,
    pub filters: Vec<String>,
    /// Rows per page (default 100, at most 1000).
    pub limit: Option<u32>,
    /// The `next` of the previous page.
    pub after: Option<String>,
}

/// A node and its matching items.
#[derive(Debug, Clone)]
pub struct Row {
    pub node_id: String,
    pub hostname: String,
    pub items: Vec<Value>,
}

/// One page of a query; `next` is where the next page starts, when there is one.
#[derive(Debug, Clone)]
pub struct Page {
    pub rows: Vec<Row>,
    pub next: Option<String>,
}

/// A node's inventory, every type or only `type_name`.
pub async fn show(state: &AppState, id: &str, type_name: Option<&str>) -> Result<Vec<TypeSnapshot>, ServiceError> {
    let node = parse_node(id)?;
    if state.store.get_node(&node).await?.is_none() {
        return Err(ServiceError::missing("node", id, "list nodes with `flotilla nodes ls`"));
    }
    if let Some(t) = type_name {
        parse_type(t)?;
    }
    let mut out = Vec::new();
    for stored in state.store.inventory_types(&node).await? {
        if type_name.is_some_and(|t| t != stored.type_name) {
            continue;
        }
        let items = state.store.inventory_items(&node, &stored.type_name).await?;
        let items = items
            .iter()
            .map(|i| {
                serde_json::from_str(i).map_err(|e| ServiceError::Internal(format!("stored item unreadable: {e}")))
            })
            .collect::<Result<Vec<Value>, _>>()?;
        out.push(TypeSnapshot { stored, items });
    }
    Ok(out)
}

/// Nodes (in id order) with the items matching every filter.
pub async fn query(state: &AppState, q: Query) -> Result<Page, ServiceError> {
    let kind = parse_type(&q.type_name)?;
    let filters = q
        .filters
        .iter()
        .map(|f| Filter::parse(f, &kind).map_err(|e| ServiceError::Invalid(e.to_string())))
        .collect::<Result<Vec<_>, _>>()?;
    let limit = q.limit.unwrap_or(DEFAULT_PAGE);
    if limit == 0 || limit > MAX_PAGE {
        return Err(ServiceError::Invalid(format!("limit {limit} is outside 1..={MAX_PAGE}")));
    }
    if let Some(after) = &q.after {
        parse_node(after)
            .map_err(|_| ServiceError::Invalid(format!("after `{after}` is not a node id from `next`")))?;
    }
    let key = filters.iter().find_map(|f| f.key_lookup(&kind));
    let mut rows = Vec::new();
    let mut cursor = q.after.clone();
    loop {
        let batch = state.store.inventory_scan(kind.as_str(), key, cursor.as_deref(), SCAN_BATCH_NODES).await?;
        let Some((last, _)) = batch.last() else {
            return Ok(Page { rows, next: None });
        };
        let last = last.clone();
        let mut by_node: BTreeMap<String, Vec<Value>> = BTreeMap::new();
        // Most nodes hold the same few items (the store keeps each once): decide each once.
        let mut verdicts: HashMap<String, Option<Value>> = HashMap::new();
        for (node, item) in batch {
            let entry = by_node.entry(node).or_default();
            let verdict = verdicts.entry(item).or_insert_with_key(|item| {
                serde_json::from_str::<Value>(item).ok().filter(|item| filters.iter().all(|f| f.matches(item)))
            });
            if let Some(item) = verdict {
                entry.push(item.clone());
            }
        }
        by_node.retain(|_, items| !items.is_empty());
        let ids: Vec<String> = by_node.keys().cloned().collect();
        let nodes: BTreeMap<String, (String, NodeStatus)> =
            state.store.node_names(&ids).await?.into_iter().map(|(id, host, status)| (id, (host, status))).collect();
        for (node, items) in by_node {
            let Some((hostname, status)) = nodes.get(&node) else { continue };
            if *status == NodeStatus::Deregistered {
                continue;
            }
            rows.push(Row { node_id: node.clone(), hostname: hostname.clone(), items });
            if rows.len() == limit as usize {
                let more =
                    node != last || !state.store.inventory_scan(kind.as_str(), key, Some(&node), 1).await?.is_empty();
                return Ok(Page { rows, next: more.then_some(node) });
            }
        }
        cursor = Some(last);
    }
}

pub async fn list_settings(state: &AppState) -> Result<Vec<InventorySetting>, ServiceError> {
    Ok(state.store.list_inventory_settings().await?)
}

/// Sets how often `group` collects (`None`: the agent's default) and which files it watches.
pub async fn put_settings(
    state: &AppState,
    group: &str,
    interval_seconds: Option<u32>,
    files: Vec<String>,
) -> Result<InventorySetting, ServiceError> {
    if !state.store.list_groups().await?.iter().any(|g| g.name == group) {
        return Err(ServiceError::missing(
            "group",
            group,
            &format!("create it with `flotilla groups create {group} --target ...` first"),
        ));
    }
    if let Some(seconds) = interval_seconds
        && seconds < MIN_INTERVAL_SECONDS
    {
        return Err(ServiceError::Invalid(format!(
            "interval {seconds}s is too short: collections may run at most every {MIN_INTERVAL_SECONDS}s"
        )));
    }
    if files.len() > MAX_WATCHED_PATTERNS {
        return Err(ServiceError::Invalid(format!("at most {MAX_WATCHED_PATTERNS} file patterns per group")));
    }
    if let Some(bad) = files.iter().find(|f| !f.starts_with('/') || f.contains('\0') || f.len() > 4096) {
        return Err(ServiceError::Invalid(format!(
            "file pattern {bad:?} must be an absolute path or glob, like /etc/*.conf"
        )));
    }
    let setting = InventorySetting {
        group_name: group.to_owned(),
        interval_seconds: interval_seconds.map(i64::from),
        files,
        updated_at: now_ms(),
    };
    state.store.put_inventory_setting(&setting).await?;
    push_settings(state).await?;
    Ok(setting)
}

pub async fn delete_settings(state: &AppState, group: &str) -> Result<(), ServiceError> {
    if !state.store.delete_inventory_setting(group).await? {
        return Err(ServiceError::missing_with(
            "inventory settings",
            group,
            format!("no inventory settings for group `{group}`"),
        ));
    }
    push_settings(state).await
}

#[cfg(test)]
mod tests {
    use super::check_hash;

    #[test]
    fn items_are_stored_only_under_their_own_hash() {
        // FIPS 180-2's test vector: SHA-256("abc").
        let abc = "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad";
        assert_eq!(check_hash(b"abc", abc), Ok(()));
        assert_eq!(check_hash(b"abc", &abc.to_uppercase()), Ok(()));
        let refused = check_hash(b"abd", abc).expect_err("one changed byte is refused");
        assert!(refused.contains("does not match") && refused.contains("nothing was stored"), "{refused}");
        assert!(check_hash(b"abc", "").is_err(), "an empty claim is refused");
        assert!(check_hash(b"", abc).is_err(), "items dropped in transit are refused");
    }
}
