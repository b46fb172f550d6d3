//! Enrollment: activations are created by operators; agents exchange an activation id and
//! code for a node id and a client certificate.
//!
//! Invariants: the code is returned once, at creation, and stored only as its SHA-256; a
//! refused enrollment changes nothing; the registration count never exceeds the limit, even
//! under concurrent enrollments (the store takes the registration atomically).

use std::collections::BTreeMap;

use flotilla_api as api;
use flotilla_core::activation::MAX_REGISTRATION_LIMIT;
use flotilla_core::{Activation, ActivationRefusal, Node, NodeId, NodeStatus, Platform, tag};
use flotilla_store::Enrollment;

use crate::app::AppState;
use crate::platform::secret::{random_bytes, sha256_hex};
use crate::platform::{ServiceError, now_ms};

/// Default activation lifetime, as for SSM hybrid activations.
const DEFAULT_EXPIRY_SECS: u64 = 24 * 3600;
/// Longest allowed activation lifetime (SSM allows 30 days).
const MAX_EXPIRY_SECS: u64 = 30 * 24 * 3600;

/// What an operator asks for; absent values take the defaults (one registration, 24 hours).
#[derive(Debug, Clone, Default)]
pub struct NewActivation {
    pub description: Option<String>,
    pub registration_limit: Option<u32>,
    pub expires_in_seconds: Option<u64>,
    pub tags: BTreeMap<String, String>,
}

/// A new activation and its code in clear, which exists only in this reply.
#[derive(Debug, Clone)]
pub struct CreatedActivation {
    pub activation: Activation,
    pub code: String,
}

/// An agent's enrollment request: the activation it proves and the key it wants certified.
#[derive(Debug, Clone)]
pub struct Registration {
    pub activation_id: String,
    pub activation_code: String,
    pub csr_pem: String,
    pub hostname: String,
}

/// An enrolled node's identity: its id, its client certificate and the CA that signed it.
#[derive(Debug, Clone)]
pub struct Registered {
    pub node_id: NodeId,
    pub certificate_pem: String,
    pub ca_pem: String,
}

pub fn validate_tags(tags: &BTreeMap<String, String>) -> Result<(), ServiceError> {
    for (key, value) in tags {
        tag::validate(key, value).map_err(|e| ServiceError::Invalid(e.to_string()))?;
    }
    Ok(())
}

pub async fn create_activation(state: &AppState, req: NewActivation) -> Result<CreatedActivation, ServiceError> {
    let limit = req.registration_limit.unwrap_or(1);
    if limit == 0 || limit > MAX_REGISTRATION_LIMIT {
        return Err(ServiceError::Invalid(format!(
            "registration_limit {limit} is out of range: use 1 to {MAX_REGISTRATION_LIMIT}"
        )));
    }
    let expiry = req.expires_in_seconds.unwrap_or(DEFAULT_EXPIRY_SECS);
    if expiry == 0 || expiry > MAX_EXPIRY_SECS {
        return Err(ServiceError::Invalid(format!(
            "expires_in_seconds {expiry} is out of range: use 1 to {MAX_EXPIRY_SECS} (30 days)"
        )));
    }
    validate_tags(&req.tags)?;
    let description = req.description.unwrap_or_default();
    if description.chars().count() > 256 {
        return Err(ServiceError::Invalid("description is longer than 256 characters".into()));
    }
    let now = now_ms();
    let id_bytes: [u8; 8] = random_bytes();
    let id = format!("act-{}", id_bytes.iter().map(|b| format!("{b:02x}")).collect::<String>());
    // Hex, so a code never starts with `-` and is never mistaken for a command-line flag.
    let code: String = random_bytes::<16>().iter().map(|b| format!("{b:02x}")).collect();
    let activation = Activation {
        id,
        code_hash: sha256_hex(code.as_bytes()),
        description,
        registration_limit: limit,
        registrations: 0,
        expires_at: now.saturating_add(i64::try_from(expiry * 1000).unwrap_or(i64::MAX)),
        default_tags: req.tags,
        created_at: now,
    };
    state.store.create_activation(&activation).await?;
    tracing::info!(activation_id = %activation.id, limit, "activation created");
    Ok(CreatedActivation { activation, code })
}

pub async fn list_activations(state: &AppState) -> Result<Vec<Activation>, ServiceError> {
    Ok(state.store.list_activations().await?)
}

pub async fn delete_activation(state: &AppState, id: &str) -> Result<(), ServiceError> {
    if state.store.delete_activation(id).await? { Ok(()) } else { Err(ServiceError::missing("activation", id, "")) }
}

/// Enrolls an agent. Every refusal leaves the store as it was.
pub async fn register(state: &AppState, req: Registration) -> Result<Registered, ServiceError> {
    let activation = state
        .store
        .get_activation(&req.activation_id)
        .await?
        .ok_or_else(|| ActivationRefusal::UnknownId(req.activation_id.clone()))?;
    activation.admit(&sha256_hex(req.activation_code.as_bytes()), now_ms())?;

    let node_id = NodeId::from_random(random_bytes());
    let (cert_pem, cert_der) =
        state.pki.sign_node_csr(&req.csr_pem, node_id.as_str()).map_err(ServiceError::Invalid)?;
    let hostname: String = req.hostname.chars().take(255).collect();
    let node = Node {
        id: node_id.clone(),
        hostname,
        status: NodeStatus::ConnectionLost,
        last_seen: None,
        platform: Platform::default(),
        kernel: String::new(),
        arch: String::new(),
        agent_version: String::new(),
        addresses: Vec::new(),
        tags: activation.default_tags.clone(),
        activation_id: activation.id.clone(),
        registered_at: now_ms(),
        cert_fingerprint: sha256_hex(&cert_der),
    };
    match state.store.enroll_node(&activation.id, &node).await? {
        Enrollment::Enrolled => {}
        Enrollment::LimitReached => {
            return Err(
                ActivationRefusal::LimitReached { id: activation.id, limit: activation.registration_limit }.into()
            );
        }
    }
    tracing::info!(node_id = %node_id, activation_id = %activation.id, "node enrolled");
    // The enrollment record is history, not state: the node is enrolled whether or not it is
    // kept, so a failure here is logged and the agent still gets its certificate.
    let record = serde_json::json!({
        "node_id": node_id.as_str(),
        "activation_id": activation.id,
        "hostname": node.hostname,
        "cert_fingerprint": node.cert_fingerprint,
        "enrolled_at": api::rfc3339(node.registered_at),
    });
    if let Err(e) =
        state.artifacts.put(&format!("nodes/{node_id}/enrollment.json"), record.to_string().into_bytes()).await
    {
        tracing::warn!(node_id = %node_id, "cannot keep the enrollment record: {e}");
    }
    Ok(Registered { node_id, certificate_pem: cert_pem, ca_pem: state.pki.ca_pem.clone() })
}
