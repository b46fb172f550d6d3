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

/// A document version, `GET /api/v1/documents/{name}`.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct Document {
    pub name: String,
    pub version: i64,
    pub default_version: i64,
    pub latest_version: i64,
    pub description: String,
    /// `flotilla` or `ssm` (an imported AWS SSM Command document).
    pub format: String,
    pub content: String,
    pub created_at: String,
}

/// A row of `GET /api/v1/documents`.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct DocumentSummary {
    pub name: String,
    pub description: String,
    pub default_version: i64,
    pub latest_version: i64,
}

/// Body of `POST /api/v1/documents` (create) and `PUT /api/v1/documents/{name}` (new version).
/// With `format: "ssm"` the content is an AWS SSM Command document (schema 2.2) to import.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(deny_unknown_fields)]
pub struct PutDocument {
    pub name: String,
    pub content: String,
    #[serde(default)]
    pub format: Option<String>,
}

/// Body of `POST /api/v1/commands`.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(deny_unknown_fields)]
pub struct CreateCommand {
    pub document: String,
    /// A version number; the default version when absent.
    #[serde(default)]
    pub document_version: Option<i64>,
    /// Parameter name -> values (a StringList takes several).
    #[serde(default)]
    pub parameters: BTreeMap<String, Vec<String>>,
    pub targets: Vec<String>,
    /// N or N% (default 50).
    #[serde(default)]
    pub max_concurrency: Option<String>,
    /// N or N% (default 0).
    #[serde(default)]
    pub max_errors: Option<String>,
    /// Execution timeout per step, seconds (overrides the document's).
    #[serde(default)]
    pub timeout_seconds: Option<u32>,
    /// Seconds to deliver to a node before it is Undeliverable (default 600).
    #[serde(default)]
    pub delivery_timeout_seconds: Option<u32>,
    #[serde(default)]
    pub comment: Option<String>,
    /// A topic to send the command's and its invocations' status changes to.
    #[serde(default)]
    pub notify: Option<String>,
    /// Which changes: All, InProgress, Success, TimedOut, Cancelled, Failed (default All).
    #[serde(default)]
    pub notify_on: Vec<String>,
}

/// Where a command's status changes are sent (`flotilla run --notify`).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct CommandNotification {
    pub topic: String,
    pub events: Vec<String>,
}

/// Inline output of an invocation.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct InvocationOutput {
    pub stdout: String,
    pub stderr: String,
    /// True when either inline copy was cut (24,000 / 8,000 characters); the full output is
    /// at `GET /api/v1/commands/{id}/invocations/{node}/output`.
    pub truncated: bool,
    pub stdout_bytes: i64,
    pub stderr_bytes: i64,
}

/// One node's part of a command.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct Invocation {
    pub node_id: String,
    pub status: String,
    pub exit_code: Option<i64>,
    pub started_at: Option<String>,
    pub ended_at: Option<String>,
    pub output: InvocationOutput,
    pub detail: String,
    /// Whether the run changed anything on the node: true when any desired-state step
    /// changed its resource, false when every one found it as described, null when no step
    /// reported a state (scripts only, or not ended).
    #[serde(default)]
    pub changed: Option<bool>,
    /// What each desired-state step found and did, in step order.
    #[serde(default)]
    pub state: Vec<StepState>,
}

/// One desired-state step's report (`file:write`, `service:ensure`, ...).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct StepState {
    /// The planned step's name (`desiredState.0`).
    pub step: String,
    pub action: String,
    /// The run had to change the resource.
    pub changed: bool,
    /// What differed and what was done, or "unchanged".
    pub detail: String,
}

/// A command, with its invocations in `show`.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct Command {
    pub id: String,
    pub document: String,
    pub document_version: i64,
    pub status: String,
    pub targets: Vec<String>,
    pub max_concurrency: String,
    pub max_errors: String,
    pub comment: String,
    pub counts: BTreeMap<String, u32>,
    pub created_at: String,
    pub ended_at: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub notification: Option<CommandNotification>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub invocations: Option<Vec<Invocation>>,
}

/// A state change from the server's durable event log (`GET /api/v1/events`).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct Event {
    /// Increasing, never reused, kept across restarts: ask for `?after=SEQ` to get only newer
    /// events.
    pub seq: i64,
    /// Unique and stable (what a webhook delivery names as `Flotilla-Event-Id`).
    pub id: String,
    pub time: String,
    /// `Command.StatusChanged`, `Invocation.StatusChanged`, `Node.Registered`, `Node.Online`,
    /// `Node.ConnectionLost`, `Node.Deregistered`, `Parameter.Changed`,
    /// `Assessment.StatusChanged`, `Assessment.Completed`, `Finding.Reported`, ...
    #[serde(rename = "type")]
    pub kind: String,
    /// The capability that emitted it, e.g. `flotilla.runcommand`.
    pub source: String,
    /// The ids the event is about (command, node, run, parameter name ...).
    pub resources: Vec<String>,
    /// Type-specific fields (e.g. `status`, `command_id`, `node_id`); never a secret value.
    #[cfg_attr(feature = "openapi", schema(value_type = Object))]
    pub detail: serde_json::Value,
}

/// The query of `GET /api/v1/events` (not a body: it is sent as URL parameters).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct EventQuery {
    /// Only events with a higher sequence number (0: from the start of the log).
    pub after: i64,
    /// Only these types (exact names); all when empty.
    pub types: Vec<String>,
    /// At most this many (the server's default and maximum: [`EVENTS_MAX_LIMIT`]).
    pub limit: Option<u32>,
    /// Seconds to wait for a first matching event (long poll; at most [`EVENTS_MAX_WAIT`]).
    pub wait: Option<u32>,
}

/// The most events one `GET /api/v1/events` returns.
pub const EVENTS_MAX_LIMIT: u32 = 1000;
/// The longest long poll `GET /api/v1/events?wait=` holds a request, in seconds (below the
/// client's 60 s request timeout).
pub const EVENTS_MAX_WAIT: u32 = 30;

/// Reply of `GET /api/v1/events/last`: where a follower that wants only new events starts.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct EventsHead {
    /// The highest sequence number handed out so far (0 for an empty log).
    pub seq: i64,
}
