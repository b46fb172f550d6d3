//! Fleet storage: activations (enrollment codes), nodes, API tokens and target groups — who
//! belongs to the fleet and who may call the API. SQL in `sql/fleet.rs`.

use async_trait::async_trait;
use flotilla_core::{Activation, Node, NodeId, NodeInfo, NodeStatus, Tags, UnixMillis};

use crate::StoreError;

/// A saved target query, used as `group:NAME`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TargetGroup {
    pub name: String,
    /// Target expressions, each as the user wrote it.
    pub targets: Vec<String>,
    pub created_at: UnixMillis,
}

/// What happened when an agent tried to enroll under an activation.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Enrollment {
    Enrolled,
    /// Another agent took the last registration between check and insert.
    LimitReached,
}

/// Enrollment, node state, API tokens and groups.
#[async_trait]
pub trait FleetStore: Send + Sync {
    async fn create_activation(&self, activation: &Activation) -> Result<(), StoreError>;
    async fn get_activation(&self, id: &str) -> Result<Option<Activation>, StoreError>;
    async fn list_activations(&self) -> Result<Vec<Activation>, StoreError>;
    /// Returns false when there was no such activation.
    async fn delete_activation(&self, id: &str) -> Result<bool, StoreError>;

    /// Atomically takes one registration from the activation (if still under its limit) and
    /// inserts the node. Nothing changes when the limit is reached.
    async fn enroll_node(&self, activation_id: &str, node: &Node) -> Result<Enrollment, StoreError>;
    async fn get_node(&self, id: &NodeId) -> Result<Option<Node>, StoreError>;
    async fn list_nodes(&self) -> Result<Vec<Node>, StoreError>;
    /// Hostname and status of each of `ids` that exists (for a page of fleet-query rows:
    /// reading every node for that cost ≈ 100 ms at 10,000 nodes).
    async fn node_names(&self, ids: &[String]) -> Result<Vec<(String, String, NodeStatus)>, StoreError>;
    /// How many nodes are in each status (one grouped query; for status pages on big fleets).
    async fn count_nodes_by_status(&self) -> Result<Vec<(NodeStatus, u64)>, StoreError>;
    /// Records what the agent reported at connect and marks it Online. Returns false when the
    /// node does not exist or is deregistered (then nothing changes).
    async fn node_connected(&self, id: &NodeId, info: &NodeInfo, now: UnixMillis) -> Result<bool, StoreError>;
    /// Marks nodes ConnectionLost, unless deregistered meanwhile.
    async fn nodes_lost(&self, ids: &[NodeId]) -> Result<(), StoreError>;
    /// Marks every Online node not heard from since `before` ConnectionLost; returns their ids.
    /// This is how a node whose replica died, or whose server restarted, leaves Online.
    async fn expire_silent_nodes(&self, before: UnixMillis) -> Result<Vec<NodeId>, StoreError>;
    /// Batched last-seen update for connected nodes.
    async fn touch_nodes(&self, seen: &[(NodeId, UnixMillis)]) -> Result<(), StoreError>;
    /// Replaces a node's tags. Returns false when the node does not exist.
    async fn set_tags(&self, id: &NodeId, tags: &Tags) -> Result<bool, StoreError>;
    /// Marks the node Deregistered; its credential is refused from then on. Returns false when
    /// the node does not exist.
    async fn deregister_node(&self, id: &NodeId) -> Result<bool, StoreError>;

    async fn put_api_token(&self, name: &str, token_hash: &str, now: UnixMillis) -> Result<(), StoreError>;
    /// The token's name when the hash is known.
    async fn find_api_token(&self, token_hash: &str) -> Result<Option<String>, StoreError>;

    /// Creates or replaces a group.
    async fn put_group(&self, group: &TargetGroup) -> Result<(), StoreError>;
    async fn list_groups(&self) -> Result<Vec<TargetGroup>, StoreError>;
    async fn delete_group(&self, name: &str) -> Result<bool, StoreError>;
}
