//! The agent's state dir, `--state-dir`: its identity (`state.json` (versioned), `agent.key`,
//! `agent.pem`, `ca.pem`) and the rule that everything in it is private.
//!
//! Invariants: `state.json` carries a format version; older versions are migrated explicitly
//! and a newer one is refused with a clear message (never guessed at); files are written to a
//! temporary name, fsync'd and renamed, so a crash never leaves half an identity. Every
//! directory the agent makes under the state dir is 0700 and every file 0600, whatever the
//! umask: modes are set on the open descriptor, so a temporary file is never wider than the
//! file it replaces, not even a stale one left by a crash.

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

fn write(path: &Path, contents: &[u8]) -> Result<(), AgentError> {
    write_private(path, contents).map_err(|source| AgentError::Write { path: path.to_path_buf(), source })
}

/// Mode of every file the agent writes under its state dir.
pub(crate) const PRIVATE_FILE: u32 = 0o600;
/// Mode of every directory the agent makes under (and of) its state dir.
pub(crate) const PRIVATE_DIR: u32 = 0o700;

/// Replaces `path` with `contents`, durably: a 0600 temporary file, fsync'd, renamed over
/// `path`, and the directory fsync'd so the rename survives a crash.
pub(crate) fn write_private(path: &Path, contents: &[u8]) -> std::io::Result<()> {
    use std::io::Write;
    use std::os::unix::fs::{OpenOptionsExt, PermissionsExt};
    let mut name = path.file_name().unwrap_or_default().to_os_string();
    name.push(".tmp");
    let tmp: PathBuf = path.with_file_name(name);
    let mut file = std::fs::OpenOptions::new().write(true).create(true).truncate(true).mode(PRIVATE_FILE).open(&tmp)?;
    // `mode` applies only when the file is created; a stale temporary file keeps its own.
    file.set_permissions(std::fs::Permissions::from_mode(PRIVATE_FILE))?;
    file.write_all(contents)?;
    file.sync_all()?;
    std::fs::rename(&tmp, path)?;
    sync_dir(path.parent().unwrap_or(Path::new(".")))
}

/// Makes the rename or creation of an entry in `dir` durable.
pub(crate) fn sync_dir(dir: &Path) -> std::io::Result<()> {
    std::fs::File::open(dir)?.sync_all()
}

/// Creates `dir` (and its parents) as 0700, or narrows an existing one to 0700.
pub(crate) fn private_dir(dir: &Path) -> std::io::Result<()> {
    use std::os::unix::fs::{DirBuilderExt, PermissionsExt};
    std::fs::DirBuilder::new().recursive(true).mode(PRIVATE_DIR).create(dir)?;
    // The umask may have narrowed nothing (umask 000) or the directory may predate us.
    let mode = std::fs::metadata(dir)?.permissions().mode() & 0o777;
    if mode != PRIVATE_DIR {
        std::fs::set_permissions(dir, std::fs::Permissions::from_mode(PRIVATE_DIR))?;
    }
    Ok(())
}

/// Creates exactly `dir` as 0700; fails with `AlreadyExists` when it exists (the atomic claim
/// of a name).
pub(crate) fn create_private_dir(dir: &Path) -> std::io::Result<()> {
    use std::os::unix::fs::{DirBuilderExt, PermissionsExt};
    std::fs::DirBuilder::new().mode(PRIVATE_DIR).create(dir)?;
    std::fs::set_permissions(dir, std::fs::Permissions::from_mode(PRIVATE_DIR))
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
        private_dir(dir).map_err(|source| AgentError::Write { path: dir.to_path_buf(), source })?;
        write(&dir.join("agent.key"), self.key_pem.as_bytes())?;
        write(&dir.join("agent.pem"), self.cert_pem.as_bytes())?;
        write(&dir.join("ca.pem"), self.ca_pem.as_bytes())?;
        let json = serde_json::to_vec_pretty(&self.state)
            .map_err(|e| AgentError::BadState { path: dir.join("state.json"), detail: e.to_string() })?;
        // state.json last: its presence means the identity is complete.
        write(&dir.join("state.json"), &json)
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
        let mode = |p: &Path| {
            std::os::unix::fs::PermissionsExt::mode(&std::fs::metadata(p).expect("meta").permissions()) & 0o777
        };
        assert_eq!(mode(&dir.path().join("agent.key")), 0o600);
        assert_eq!(Identity::load(dir.path()).expect("load").state.node_id, "n-0123456789abcdef0");
        std::fs::write(dir.path().join("state.json"), r#"{"version": 9, "node_id": "x", "server_url": "y"}"#)
            .expect("write");
        let err = Identity::load(dir.path()).err().expect("newer format refused");
        assert!(err.to_string().contains("upgrade the agent"), "{err}");
        std::fs::write(dir.path().join("state.json"), "{not json").expect("write");
        assert!(matches!(Identity::load(dir.path()), Err(AgentError::BadState { .. })));
    }

    #[test]
    fn everything_written_is_private_even_over_a_stale_wide_temporary_file() {
        use std::os::unix::fs::PermissionsExt;
        let parent = tempfile::tempdir().expect("tempdir");
        let dir = parent.path().join("state");
        std::fs::create_dir(&dir).expect("mkdir");
        std::fs::set_permissions(&dir, std::fs::Permissions::from_mode(0o777)).expect("chmod");
        // A crash left a world-writable temporary file behind.
        std::fs::write(dir.join("agent.pem.tmp"), "stale").expect("write");
        std::fs::set_permissions(dir.join("agent.pem.tmp"), std::fs::Permissions::from_mode(0o666)).expect("chmod");
        let id = Identity {
            state: StateFile { version: STATE_VERSION, node_id: "n-1".into(), server_url: "https://x".into() },
            key_pem: "k".into(),
            cert_pem: "c".into(),
            ca_pem: "a".into(),
        };
        id.save(&dir).expect("save");
        let mode = |p: &Path| std::fs::metadata(p).expect("meta").permissions().mode() & 0o777;
        assert_eq!(mode(&dir), 0o700, "the state dir");
        for file in ["agent.key", "agent.pem", "ca.pem", "state.json"] {
            assert_eq!(mode(&dir.join(file)), 0o600, "{file}");
        }
        assert!(!dir.join("agent.pem.tmp").exists());
    }
}
