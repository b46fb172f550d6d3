//! Incoming invocation output, spooled on the server's disk until the invocation's result
//! arrives; then it moves to the artifact store and the spool files are deleted.
//!
//! Invariants: a chunk is placed by its offset, so a chunk delivered twice is not appended
//! twice and a gap (chunks lost with a connection) is never papered over: the agent re-sends
//! everything from offset 0 after a reconnect. An agent can only write output for its own
//! invocations (the id names the node).

use std::path::{Path, PathBuf};

use flotilla_core::NodeId;
use flotilla_proto::v1::{OutputChunk, OutputStream};
use tokio::io::AsyncWriteExt;

/// Inline copy limits, as AWS Run Command (`StandardOutputContent`, `StandardErrorContent`).
pub const INLINE_STDOUT_CHARS: usize = 24_000;
pub const INLINE_STDERR_CHARS: usize = 8_000;

#[derive(Debug, thiserror::Error)]
pub enum OutputError {
    #[error("invocation `{0}` does not belong to this node")]
    Foreign(String),
    #[error("unknown output stream")]
    Stream,
    #[error("cannot spool output in {path}: {source}")]
    Io { path: PathBuf, source: std::io::Error },
}

/// The invocation id for a node's part of a command: `COMMAND.NODE`.
pub fn invocation_id(command_id: &str, node: &str) -> String {
    format!("{command_id}.{node}")
}

/// Splits `COMMAND.NODE`.
pub fn split_invocation_id(id: &str) -> Option<(&str, &str)> {
    id.rsplit_once('.')
}

pub struct OutputSpool {
    dir: PathBuf,
}

impl OutputSpool {
    pub fn new(dir: &Path) -> std::io::Result<Self> {
        std::fs::create_dir_all(dir)?;
        Ok(OutputSpool { dir: dir.to_path_buf() })
    }

    pub fn path(&self, invocation: &str, stream: &str) -> PathBuf {
        self.dir.join(format!("{invocation}.{stream}"))
    }

    pub async fn append(&self, node: &NodeId, chunk: &OutputChunk) -> Result<(), OutputError> {
        match split_invocation_id(&chunk.invocation_id) {
            Some((command, owner)) if owner == node.as_str() && !command.is_empty() && !command.contains('/') => {}
            _ => return Err(OutputError::Foreign(chunk.invocation_id.clone())),
        }
        let stream = match OutputStream::try_from(chunk.stream) {
            Ok(OutputStream::Stdout) => "stdout",
            Ok(OutputStream::Stderr) => "stderr",
            _ => return Err(OutputError::Stream),
        };
        let path = self.path(&chunk.invocation_id, stream);
        let io = |source| OutputError::Io { path: path.clone(), source };
        let have = match tokio::fs::metadata(&path).await {
            Ok(meta) => meta.len(),
            Err(_) => 0,
        };
        let end = chunk.offset.saturating_add(chunk.data.len() as u64);
        if chunk.offset > have || end <= have {
            return Ok(()); // a gap (re-sent later from 0) or a duplicate
        }
        let skip = usize::try_from(have - chunk.offset).unwrap_or(usize::MAX);
        let mut file = tokio::fs::OpenOptions::new().create(true).append(true).open(&path).await.map_err(io)?;
        file.write_all(chunk.data.get(skip..).unwrap_or_default()).await.map_err(io)?;
        // tokio completes file writes in the background: without this flush the next chunk's
        // length check could run before this write lands.
        file.flush().await.map_err(io)
    }

    /// Both streams' bytes so far (missing files are empty).
    pub async fn read(&self, invocation: &str) -> (Vec<u8>, Vec<u8>) {
        let stdout = tokio::fs::read(self.path(invocation, "stdout")).await.unwrap_or_default();
        let stderr = tokio::fs::read(self.path(invocation, "stderr")).await.unwrap_or_default();
        (stdout, stderr)
    }

    pub async fn remove(&self, invocation: &str) {
        let _ = tokio::fs::remove_file(self.path(invocation, "stdout")).await;
        let _ = tokio::fs::remove_file(self.path(invocation, "stderr")).await;
    }
}

/// The inline copy: lossy UTF-8 (NUL replaced, since database text cannot hold it), at most
/// `limit` characters; true when cut.
pub fn inline(bytes: &[u8], limit: usize) -> (String, bool) {
    let text = String::from_utf8_lossy(bytes);
    let out: String = text.chars().take(limit).map(|c| if c == '\0' { '\u{fffd}' } else { c }).collect();
    (out, text.chars().nth(limit).is_some())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn chunks_are_placed_by_offset() {
        let dir = tempfile::tempdir().expect("tempdir");
        let spool = OutputSpool::new(dir.path()).expect("spool");
        let node = NodeId::from_random([3; 9]);
        let id = invocation_id("c-1", node.as_str());
        let chunk = |offset, data: &[u8]| OutputChunk {
            invocation_id: id.clone(),
            stream: OutputStream::Stdout as i32,
            offset,
            data: data.to_vec(),
        };
        spool.append(&node, &chunk(0, b"hello ")).await.expect("append");
        spool.append(&node, &chunk(0, b"hello ")).await.expect("duplicate");
        spool.append(&node, &chunk(20, b"gap")).await.expect("gap");
        spool.append(&node, &chunk(3, b"lo world")).await.expect("overlap");
        assert_eq!(spool.read(&id).await.0, b"hello world");
        let other = NodeId::from_random([4; 9]);
        assert!(matches!(spool.append(&other, &chunk(0, b"x")).await, Err(OutputError::Foreign(_))));
    }

    #[test]
    fn inline_copies() {
        assert_eq!(inline(b"abc", 2), ("ab".into(), true));
        assert_eq!(inline(b"abc", 3), ("abc".into(), false));
        assert_eq!(inline(b"a\0\xff", 10), ("a\u{fffd}\u{fffd}".into(), false));
    }
}
