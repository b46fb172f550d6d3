//! The agent's identity on disk, in `--state-dir`: `state.json` (versioned), `agent.key`
//! (mode 0600), `agent.pem` and `ca.pem`.
//!
//! Invariants: `state.json` carries a format version; older versions are migrated explicitly
//! and a newer one is refused with a clear message (never guessed at); files are written to a
//! temporary name and renamed, so a crash never leaves half an identity.

use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use crate::AgentError;

/// Current `state.json` format.
pub const STATE_VERSION: u32 = 1;

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct StateFile {
    pub version: u32,
    pub node_id: String,
    pub server_url: String,
}

/// The identity files of an enrolled agent.
pub struct Identity {
    pub state: StateFile,
    pub key_pem: String,
    pub cert_pem: String,
    pub ca_pem: String,
}

fn read(path: &Path) -> Result<String, AgentError> {
    std::fs::read_to_string(path).map_err(|source| AgentError::Read { path: path.to_path_buf(), source })
}

fn write(path: &Path, contents: &[u8], mode: u32) -> Result<(), AgentError> {
    use std::io::Write;
    use std::os::unix::fs::OpenOptionsExt;
    let tmp: PathBuf = path.with_extension("tmp");
    let err = |source| AgentError::Write { path: path.to_path_buf(), source };
    let mut file =
        std::fs::OpenOptions::new().write(true).create(true).truncate(true).mode(mode).open(&tmp).map_err(err)?;
    file.write_all(contents).map_err(err)?;
    file.sync_all().map_err(err)?;
    std::fs::rename(&tmp, path).map_err(err)
}

impl Identity {
    pub fn exists(dir: &Path) -> bool {
        dir.join("state.json").exists()
    }

    pub fn load(dir: &Path) -> Result<Identity, AgentError> {
        let state_path = dir.join("state.json");
        if !state_path.exists() {
            return Err(AgentError::NotEnrolled(dir.to_path_buf()));
        }
        let text = read(&state_path)?;
        let value: serde_json::Value = serde_json::from_str(&text)
            .map_err(|e| AgentError::BadState { path: state_path.clone(), detail: e.to_string() })?;
        let version = value.get("version").and_then(serde_json::Value::as_u64).unwrap_or(0);
        if version > u64::from(STATE_VERSION) {
            return Err(AgentError::BadState {
                path: state_path,
                detail: format!(
                    "format version {version} is newer than this agent understands ({STATE_VERSION}): upgrade the agent"
                ),
            });
        }
        // Version 1 is the first format; later versions add their migrations here.
        let state: StateFile = serde_json::from_value(value)
            .map_err(|e| AgentError::BadState { path: state_path.clone(), detail: e.to_string() })?;
        Ok(Identity {
            state,
            key_pem: read(&dir.join("agent.key"))?,
            cert_pem: read(&dir.join("agent.pem"))?,
            ca_pem: read(&dir.join("ca.pem"))?,
        })
    }

    pub fn save(&self, dir: &Path) -> Result<(), AgentError> {
        std::fs::create_dir_all(dir).map_err(|source| AgentError::Write { path: dir.to_path_buf(), source })?;
        write(&dir.join("agent.key"), self.key_pem.as_bytes(), 0o600)?;
        write(&dir.join("agent.pem"), self.cert_pem.as_bytes(), 0o644)?;
        write(&dir.join("ca.pem"), self.ca_pem.as_bytes(), 0o644)?;
        let json = serde_json::to_vec_pretty(&self.state)
            .map_err(|e| AgentError::BadState { path: dir.join("state.json"), detail: e.to_string() })?;
        // state.json last: its presence means the identity is complete.
        write(&dir.join("state.json"), &json, 0o600)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trip_and_version_guard() {
        let dir = tempfile::tempdir().expect("tempdir");
        assert!(matches!(Identity::load(dir.path()), Err(AgentError::NotEnrolled(_))));
        let id = Identity {
            state: StateFile {
                version: STATE_VERSION,
                node_id: "n-0123456789abcdef0".into(),
                server_url: "https://x".into(),
            },
            key_pem: "k".into(),
            cert_pem: "c".into(),
            ca_pem: "a".into(),
        };
        id.save(dir.path()).expect("save");
        let mode = std::os::unix::fs::PermissionsExt::mode(
            &std::fs::metadata(dir.path().join("agent.key")).expect("meta").permissions(),
        );
        assert_eq!(mode & 0o777, 0o600);
        assert_eq!(Identity::load(dir.path()).expect("load").state.node_id, "n-0123456789abcdef0");
        std::fs::write(dir.path().join("state.json"), r#"{"version": 9, "node_id": "x", "server_url": "y"}"#)
            .expect("write");
        let err = Identity::load(dir.path()).err().expect("newer format refused");
        assert!(err.to_string().contains("upgrade the agent"), "{err}");
        std::fs::write(dir.path().join("state.json"), "{not json").expect("write");
        assert!(matches!(Identity::load(dir.path()), Err(AgentError::BadState { .. })));
    }
}
