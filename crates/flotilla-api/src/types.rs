//! Request and response bodies. Times are RFC 3339 strings in UTC.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

/// Body of `POST /api/v1/activations`.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(deny_unknown_fields)]
pub struct CreateActivation {
    /// Free text shown in listings.
    #[serde(default)]
    pub description: Option<String>,
    /// How many nodes may enroll with it (default 1).
    #[serde(default)]
    pub registration_limit: Option<u32>,
    /// Seconds until it expires (default 24 hours, at most 30 days).
    #[serde(default)]
    pub expires_in_seconds: Option<u64>,
    /// Tags every node enrolled with it starts with.
    #[serde(default)]
    pub tags: BTreeMap<String, String>,
}

/// An activation. `code` is present only in the reply to its creation.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct Activation {
    pub id: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub code: Option<String>,
    pub description: String,
    pub registration_limit: u32,
    pub registrations: u32,
    pub expires_at: String,
    pub expired: bool,
    pub tags: BTreeMap<String, String>,
    pub created_at: String,
}

/// Operating system of a node, from its os-release.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct Platform {
    pub name: String,
    pub version: String,
    pub id: String,
}

/// A managed node.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct Node {
    pub id: String,
    pub hostname: String,
    /// `Online`, `ConnectionLost` or `Deregistered`.
    pub status: String,
    pub last_seen: Option<String>,
    pub platform: Platform,
    pub kernel: String,
    pub arch: String,
    pub agent_version: String,
    pub addresses: Vec<String>,
    pub tags: BTreeMap<String, String>,
    pub activation_id: String,
    pub registered_at: String,
}

/// Body of `POST /api/v1/nodes/{id}/tags`: tags to add or overwrite.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(deny_unknown_fields)]
pub struct TagNode {
    pub tags: BTreeMap<String, String>,
}

/// Body of `POST /api/v1/nodes/{id}/untag`: tag keys to remove.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(deny_unknown_fields)]
pub struct UntagNode {
    pub keys: Vec<String>,
}

/// A saved target query, usable as `group:NAME`.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(deny_unknown_fields)]
pub struct Group {
    pub name: String,
    pub targets: Vec<String>,
}

/// Body of `POST /agent/v1/register`: an agent enrolling with an activation.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(deny_unknown_fields)]
pub struct RegisterRequest {
    pub activation_id: String,
    pub activation_code: String,
    /// PEM certificate signing request for the key the agent generated; the private key never
    /// leaves the node.
    pub csr_pem: String,
    /// The node's hostname at enrollment, shown until its first connection.
    #[serde(default)]
    pub hostname: String,
}

/// Reply to a successful enrollment.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct RegisterResponse {
    pub node_id: String,
    /// The node's client certificate, signed by the server's private CA.
    pub certificate_pem: String,
    /// The CA that signed both the server's and the node's certificate.
    pub ca_pem: String,
}

/// Every error reply: `{"error": {"code": ..., "message": ...}}`.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct ErrorBody {
    pub error: ErrorDetail,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct ErrorDetail {
    /// Stable machine-readable code, e.g. `not_found`, `invalid_request`, `unauthorized`.
    pub code: String,
    /// What was wrong and what to do.
    pub message: String,
}

/// Server identity, `GET /api/v1/version`.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct VersionInfo {
    pub version: String,
    pub store: String,
}

/// Formats Unix milliseconds as RFC 3339 UTC with millisecond precision.
pub fn rfc3339(unix_ms: i64) -> String {
    let ms = u64::try_from(unix_ms).unwrap_or(0);
    humantime::format_rfc3339_millis(std::time::UNIX_EPOCH + std::time::Duration::from_millis(ms)).to_string()
}
