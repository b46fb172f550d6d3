//! Enrollment: generate a key on the node, send a CSR with the activation id and code, keep
//! the returned certificate and the server's CA as the node's identity.

use std::path::PathBuf;

use flotilla_api::{Client, RegisterRequest};

use crate::AgentError;
use crate::state::{Identity, STATE_VERSION, StateFile};

pub struct RegisterOptions {
    pub server: String,
    pub ca: PathBuf,
    pub activation_id: String,
    pub activation_code: String,
    pub state_dir: PathBuf,
    pub root: PathBuf,
    pub force: bool,
}

/// Enrolls the node; returns its node id.
pub async fn register(opts: &RegisterOptions) -> Result<String, AgentError> {
    if !opts.force && Identity::exists(&opts.state_dir) {
        let existing = Identity::load(&opts.state_dir)?;
        return Err(AgentError::AlreadyEnrolled { node_id: existing.state.node_id, path: opts.state_dir.clone() });
    }
    if !opts.server.starts_with("https://") {
        return Err(AgentError::BadUrl {
            url: opts.server.clone(),
            detail: "the server URL must start with https://".into(),
        });
    }
    let ca_pem = std::fs::read(&opts.ca).map_err(|source| AgentError::Read { path: opts.ca.clone(), source })?;
    let key = rcgen::KeyPair::generate().map_err(|e| AgentError::Key(e.to_string()))?;
    let params = rcgen::CertificateParams::new(Vec::<String>::new()).map_err(|e| AgentError::Key(e.to_string()))?;
    let csr = params.serialize_request(&key).map_err(|e| AgentError::Key(e.to_string()))?;
    let csr_pem = csr.pem().map_err(|e| AgentError::Key(e.to_string()))?;

    let client = Client::new(&opts.server, None, Some(&ca_pem)).map_err(|e| AgentError::Enroll(e.to_string()))?;
    let info = crate::node::collect(&opts.root);
    let reply = client
        .register(&RegisterRequest {
            activation_id: opts.activation_id.clone(),
            activation_code: opts.activation_code.clone(),
            csr_pem,
            hostname: info.hostname,
        })
        .await
        .map_err(|e| AgentError::Enroll(e.to_string()))?;
    let identity = Identity {
        state: StateFile {
            version: STATE_VERSION,
            node_id: reply.node_id.clone(),
            server_url: opts.server.trim_end_matches('/').to_owned(),
        },
        key_pem: key.serialize_pem(),
        cert_pem: reply.certificate_pem,
        ca_pem: reply.ca_pem,
    };
    identity.save(&opts.state_dir)?;
    tracing::info!(node_id = %reply.node_id, "enrolled");
    Ok(reply.node_id)
}
