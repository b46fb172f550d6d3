//! Managed nodes: identity, status and what the agent reported about the machine.
//!
//! Invariant: a node id is `n-` followed by exactly 17 lowercase hex digits (the SSM managed
//! node shape); ids are never reused.

use std::fmt;
use std::str::FromStr;

use crate::{Tags, UnixMillis};

/// A managed node's id, `n-` + 17 lowercase hex digits.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct NodeId(String);

/// Why a string is not a node id.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("`{0}` is not a node id: expected `n-` followed by 17 hex digits, e.g. n-0123456789abcdef0")]
pub struct NodeIdError(pub String);

impl NodeId {
    /// Builds an id from 9 random bytes (the caller owns randomness; 17 hex digits use 68 bits).
    pub fn from_random(bytes: [u8; 9]) -> Self {
        let hex: String = bytes.iter().map(|b| format!("{b:02x}")).collect();
        NodeId(format!("n-{}", &hex[..17]))
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl FromStr for NodeId {
    type Err = NodeIdError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let hex = s.strip_prefix("n-").ok_or_else(|| NodeIdError(s.to_owned()))?;
        if hex.len() == 17 && hex.bytes().all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b)) {
            Ok(NodeId(s.to_owned()))
        } else {
            Err(NodeIdError(s.to_owned()))
        }
    }
}

impl fmt::Display for NodeId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

/// Connection state of a node as the control plane sees it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum NodeStatus {
    Online,
    ConnectionLost,
    Deregistered,
}

impl NodeStatus {
    pub fn as_str(self) -> &'static str {
        match self {
            NodeStatus::Online => "Online",
            NodeStatus::ConnectionLost => "ConnectionLost",
            NodeStatus::Deregistered => "Deregistered",
        }
    }
}

impl FromStr for NodeStatus {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s {
            "Online" => Ok(NodeStatus::Online),
            "ConnectionLost" => Ok(NodeStatus::ConnectionLost),
            "Deregistered" => Ok(NodeStatus::Deregistered),
            other => Err(format!("unknown node status `{other}`")),
        }
    }
}

/// Operating system as read from the node's os-release.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Platform {
    /// os-release `NAME`, e.g. "Debian GNU/Linux".
    pub name: String,
    /// os-release `VERSION_ID`, e.g. "12".
    pub version: String,
    /// os-release `ID`, e.g. "debian".
    pub id: String,
}

/// A managed node as stored by the control plane.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Node {
    pub id: NodeId,
    pub hostname: String,
    pub status: NodeStatus,
    pub last_seen: Option<UnixMillis>,
    pub platform: Platform,
    pub kernel: String,
    pub arch: String,
    pub agent_version: String,
    pub addresses: Vec<String>,
    pub tags: Tags,
    pub activation_id: String,
    pub registered_at: UnixMillis,
    /// SHA-256 (hex) of the node's current client certificate: the credential it must present.
    pub cert_fingerprint: String,
}

/// What an agent reports about its machine when it connects.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct NodeInfo {
    pub hostname: String,
    pub platform: Platform,
    pub kernel: String,
    pub arch: String,
    pub agent_version: String,
    pub addresses: Vec<String>,
}

/// Whether a node that was last heard from at `last_seen` is still to be considered alive.
/// A node is lost after `missed` heartbeat intervals without a message.
pub fn is_silent(last_seen: UnixMillis, now: UnixMillis, heartbeat_ms: i64, missed: u32) -> bool {
    now.saturating_sub(last_seen) > heartbeat_ms.saturating_mul(i64::from(missed))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn node_ids() {
        let table = [
            ("n-0123456789abcdef0", true),
            ("n-0123456789ABCDEF0", false),
            ("n-0123456789abcdef", false),
            ("n-0123456789abcdef01", false),
            ("i-0123456789abcdef0", false),
            ("", false),
            ("n-", false),
        ];
        for (input, ok) in table {
            assert_eq!(input.parse::<NodeId>().is_ok(), ok, "{input}");
        }
        let id = NodeId::from_random([0xab; 9]);
        assert_eq!(id.as_str(), "n-ababababababababa");
        assert!(id.as_str().parse::<NodeId>().is_ok());
    }

    #[test]
    fn silence() {
        assert!(!is_silent(1_000, 3_900, 1_000, 3));
        assert!(is_silent(1_000, 4_001, 1_000, 3));
        assert!(!is_silent(5_000, 1_000, 1_000, 3), "clock skew backwards is not silence");
    }
}
