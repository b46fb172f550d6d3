//! The fleet as operators see it: listing and targeting nodes, tags, deregistration and
//! saved target groups.

pub mod enrollment;
pub mod gateway;
pub mod http;

use std::collections::BTreeMap;
use std::str::FromStr;

use flotilla_core::{Node, NodeId, Target, tag, target};
use flotilla_store::TargetGroup;

use crate::app::AppState;
use crate::fleet::enrollment::validate_tags;
use crate::platform::{ServiceError, now_ms};

fn parse_node_id(id: &str) -> Result<NodeId, ServiceError> {
    NodeId::from_str(id).map_err(|e| ServiceError::Invalid(e.to_string()))
}

pub fn parse_targets(exprs: &[String]) -> Result<Vec<Target>, ServiceError> {
    exprs.iter().map(|t| Target::from_str(t).map_err(|e| ServiceError::Invalid(e.to_string()))).collect()
}

/// Saved groups by name, as target expressions.
pub(crate) async fn saved_groups(state: &AppState) -> Result<BTreeMap<String, Vec<String>>, ServiceError> {
    Ok(state.store.list_groups().await?.into_iter().map(|g| (g.name, g.targets)).collect())
}

/// Resolves `targets` over `nodes`, expanding `group:NAME` from `groups`.
pub(crate) fn resolve<'n>(
    targets: &[Target],
    nodes: &'n [Node],
    groups: &BTreeMap<String, Vec<String>>,
) -> Result<Vec<&'n Node>, ServiceError> {
    let lookup =
        |name: &str| groups.get(name).map(|exprs| exprs.iter().filter_map(|e| Target::from_str(e).ok()).collect());
    target::resolve(targets, nodes, &lookup).map_err(|e| ServiceError::Invalid(e.to_string()))
}

/// Nodes matching the union of `targets`; every node (deregistered included) without targets.
pub async fn list_nodes(state: &AppState, targets: &[String]) -> Result<Vec<Node>, ServiceError> {
    let parsed = parse_targets(targets)?;
    let nodes = state.store.list_nodes().await?;
    if parsed.is_empty() {
        return Ok(nodes);
    }
    let groups = saved_groups(state).await?;
    let picked = resolve(&parsed, &nodes, &groups)?;
    Ok(picked.into_iter().cloned().collect())
}

async fn load(state: &AppState, id: &NodeId) -> Result<Node, ServiceError> {
    state
        .store
        .get_node(id)
        .await?
        .ok_or_else(|| ServiceError::missing("node", id.as_str(), "list nodes with `flotilla nodes ls`"))
}

pub async fn get_node(state: &AppState, id: &str) -> Result<Node, ServiceError> {
    load(state, &parse_node_id(id)?).await
}

pub async fn tag_node(state: &AppState, id: &str, tags: BTreeMap<String, String>) -> Result<Node, ServiceError> {
    let id = parse_node_id(id)?;
    if tags.is_empty() {
        return Err(ServiceError::Invalid("no tags given: pass KEY=VALUE".into()));
    }
    validate_tags(&tags)?;
    let mut node = load(state, &id).await?;
    node.tags.extend(tags);
    if node.tags.len() > 50 {
        return Err(ServiceError::Invalid(format!(
            "a node has at most 50 tags; this would give it {}",
            node.tags.len()
        )));
    }
    state.store.set_tags(&id, &node.tags).await?;
    membership_changed(state).await;
    Ok(node)
}

pub async fn untag_node(state: &AppState, id: &str, keys: Vec<String>) -> Result<Node, ServiceError> {
    let id = parse_node_id(id)?;
    if keys.is_empty() {
        return Err(ServiceError::Invalid("no tag keys given".into()));
    }
    for key in &keys {
        tag::validate_key(key).map_err(|e| ServiceError::Invalid(e.to_string()))?;
    }
    let mut node = load(state, &id).await?;
    for key in &keys {
        node.tags.remove(key);
    }
    state.store.set_tags(&id, &node.tags).await?;
    membership_changed(state).await;
    Ok(node)
}

/// Revokes the node's credential and closes its stream if it is connected here.
pub async fn deregister(state: &AppState, id: &str) -> Result<Node, ServiceError> {
    let id = parse_node_id(id)?;
    let mut node = load(state, &id).await?;
    state.store.deregister_node(&id).await?;
    state.registry.kick(
        &id,
        flotilla_proto::refusal::deregistered(format!(
            "node {id} was deregistered and its credential revoked: enroll again with a new activation"
        )),
    );
    node.status = flotilla_core::NodeStatus::Deregistered;
    tracing::info!(node_id = %id, "node deregistered");
    Ok(node)
}

/// Group membership decides inventory settings: connected nodes get theirs again. The change
/// itself is already stored, so a failure here only delays the settings to the next connect.
async fn membership_changed(state: &AppState) {
    if state.store.list_inventory_settings().await.is_ok_and(|s| s.is_empty()) {
        return;
    }
    if let Err(e) = crate::inventory::push_settings(state).await {
        tracing::warn!("cannot send inventory settings after a group change: {e}");
    }
}

/// Saves the group `name` (replacing one of that name) once its targets resolve.
pub async fn put_group(state: &AppState, name: String, targets: Vec<String>) -> Result<TargetGroup, ServiceError> {
    target::validate_group_name(&name).map_err(|reason| ServiceError::Invalid(format!("group `{name}`: {reason}")))?;
    if targets.is_empty() {
        return Err(ServiceError::Invalid("a group needs at least one target".into()));
    }
    let parsed = parse_targets(&targets)?;
    // Refuse a group that would not resolve (unknown or cyclic references) now, not later.
    let mut groups = saved_groups(state).await?;
    groups.insert(name.clone(), targets.clone());
    resolve(&parsed, &[], &groups)?;
    let group = TargetGroup { name, targets, created_at: now_ms() };
    state.store.put_group(&group).await?;
    membership_changed(state).await;
    Ok(group)
}

pub async fn list_groups(state: &AppState) -> Result<Vec<TargetGroup>, ServiceError> {
    Ok(state.store.list_groups().await?)
}

pub async fn delete_group(state: &AppState, name: &str) -> Result<(), ServiceError> {
    if state.store.delete_group(name).await? {
        membership_changed(state).await;
        Ok(())
    } else {
        Err(ServiceError::missing("group", name, ""))
    }
}
