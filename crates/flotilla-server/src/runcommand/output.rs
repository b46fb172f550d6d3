//! Incoming invocation output, spooled on the server's disk until the invocation's result
//! arrives; then it moves to the artifact store and the spool files are deleted.
//!
//! Invariants: a chunk is placed by its offset, so a chunk delivered twice is not appended
//! twice and a gap (chunks lost with a connection) is never papered over: the agent re-sends
//! everything from offset 0 after a reconnect. An agent can only write output for its own
//! invocations (the id names the node), and only while the engine accepts output for that
//! invocation ([`OutputSpool::accept`]: from before its `RunInvocation` is sent until it ends);
//! anything else is refused and never written. At most `max_output_bytes` are kept per
//! stream; bytes past it are dropped. A chunk that cannot be written is remembered as the
//! invocation's spool failure, so its result fails with the reason instead of waiting for
//! output that will never be complete.
//!
//! The spool is encrypted like everything else at rest, but with a key that lives only in this
//! process's memory: the spool never needs to outlive the process, because after a server
//! restart every agent reconnects and re-sends its unacknowledged output from offset 0. So a
//! restart simply clears the directory. Each chunk is one frame, `len (u32 BE) ‖ nonce (12) ‖
//! AES-256-GCM ciphertext + tag`, authenticated with its invocation, stream and offset; reading
//! stops at the first frame that does not open, and the engine then waits for the re-send
//! (the byte count falls short of the result's).
//!
//! Small output never touches the disk: a stream stays in memory while it is at most
//! [`MEMORY_PER_STREAM`] bytes and all such streams together stay within [`MEMORY_TOTAL`]; the
//! chunk that would cross either limit moves the stream to its file (what memory held becomes
//! the file's first frame). A fan-out of 1 KiB outputs to 10,000 nodes then costs no file at
//! all, where it cost a create, an append, a read and a delete per node; memory stays bounded.

use std::collections::{HashMap, HashSet};
use std::path::{Path, PathBuf};
use std::sync::Mutex;

use aws_lc_rs::aead::{AES_256_GCM, Aad, LessSafeKey, NONCE_LEN, Nonce, UnboundKey};
use flotilla_core::NodeId;
use flotilla_proto::v1::{OutputChunk, OutputStream};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

use crate::platform::secret::random_bytes;

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
    #[error("output chunk of {0} bytes is too large to spool")]
    TooLarge(usize),
    #[error("invocation `{0}` does not exist or is not running; output for it is not accepted")]
    NotAccepting(String),
    #[error("spooled output in {path} failed its integrity check or is cut short")]
    Damaged { path: PathBuf },
}

/// A stream up to this size is held in memory instead of a file.
pub const MEMORY_PER_STREAM: usize = 64 * 1024;
/// All streams held in memory together stay within this; beyond it new output goes to files.
pub const MEMORY_TOTAL: usize = 64 * 1024 * 1024;

/// The largest frame the spool writes (an agent's chunk plus the tag), checked on reading.
const MAX_FRAME: usize = 64 * 1024 * 1024;

/// Reads one spooled stream back frame by frame, so its output is never whole in memory.
pub struct SpoolReader<'a> {
    spool: &'a OutputSpool,
    invocation: String,
    stream: &'static str,
    path: PathBuf,
    file: Option<tokio::io::BufReader<tokio::fs::File>>,
    /// The stream's bytes when memory held it (then there is no file).
    memory: Option<Vec<u8>>,
    offset: u64,
}

impl SpoolReader<'_> {
    /// The next chunk of plaintext, authenticated; `None` at the end.
    pub async fn next(&mut self) -> Result<Option<Vec<u8>>, OutputError> {
        if let Some(bytes) = self.memory.take() {
            self.offset += bytes.len() as u64;
            return Ok(Some(bytes));
        }
        let Some(file) = self.file.as_mut() else { return Ok(None) };
        let io = |source| OutputError::Io { path: self.path.clone(), source };
        let mut len = [0u8; 4];
        match file.read_exact(&mut len).await {
            Ok(_) => {}
            Err(e) if e.kind() == std::io::ErrorKind::UnexpectedEof => return Ok(None),
            Err(e) => return Err(io(e)),
        }
        let len = u32::from_be_bytes(len) as usize;
        if len > MAX_FRAME {
            return Err(OutputError::Damaged { path: self.path.clone() });
        }
        let mut nonce = [0u8; NONCE_LEN];
        let mut sealed = vec![0u8; len];
        let read = async {
            file.read_exact(&mut nonce).await?;
            file.read_exact(&mut sealed).await
        };
        read.await.map_err(|_| OutputError::Damaged { path: self.path.clone() })?;
        let aad = aad(&self.invocation, self.stream, self.offset);
        let plain = self
            .spool
            .key
            .open_in_place(Nonce::assume_unique_for_key(nonce), Aad::from(aad), &mut sealed)
            .map_err(|_| OutputError::Damaged { path: self.path.clone() })?;
        let n = plain.len();
        sealed.truncate(n);
        self.offset += n as u64;
        Ok(Some(sealed))
    }
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
    key: LessSafeKey,
    /// Plaintext bytes spooled per file: the files hold frames, not the bytes themselves.
    lengths: Mutex<HashMap<PathBuf, u64>>,
    /// Invocations whose output is accepted, and why spooling failed for those where it did.
    open: Mutex<HashMap<String, Option<String>>>,
    /// Streams held in memory rather than in a file, and which ones went to a file.
    held: Mutex<Held>,
    /// Bytes kept per stream of one invocation.
    max_bytes: u64,
}

impl OutputSpool {
    /// Opens the spool in `dir`, dropping whatever an earlier process left there (it was
    /// encrypted under a key that died with that process; the agents re-send it).
    pub fn new(dir: &Path, max_bytes: u64) -> std::io::Result<Self> {
        if dir.exists() {
            std::fs::remove_dir_all(dir)?;
        }
        std::fs::create_dir_all(dir)?;
        let key = UnboundKey::new(&AES_256_GCM, &random_bytes::<32>())
            .map_err(|_| std::io::Error::other("cannot create the spool key"))?;
        Ok(OutputSpool {
            dir: dir.to_path_buf(),
            key: LessSafeKey::new(key),
            lengths: Mutex::new(HashMap::new()),
            open: Mutex::new(HashMap::new()),
            held: Mutex::new(Held {
                memory: HashMap::new(),
                total: 0,
                files: HashSet::new(),
                per_stream: MEMORY_PER_STREAM,
                limit: MEMORY_TOTAL,
            }),
            max_bytes,
        })
    }

    /// The same spool with other memory limits (0, 0: every stream goes to a file).
    #[cfg(test)]
    fn with_memory(self, per_stream: usize, limit: usize) -> Self {
        {
            let mut held = self.held();
            held.per_stream = per_stream;
            held.limit = limit;
        }
        self
    }

    fn open_set(&self) -> std::sync::MutexGuard<'_, HashMap<String, Option<String>>> {
        self.open.lock().unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    /// Accepts output for `invocation` from now on (its `RunInvocation` is about to be sent, or
    /// it was running when this process started).
    pub fn accept(&self, invocation: &str) {
        self.open_set().entry(invocation.to_owned()).or_insert(None);
    }

    /// Why spooling `invocation`'s output failed, if it did.
    pub fn failure(&self, invocation: &str) -> Option<String> {
        self.open_set().get(invocation).cloned().flatten()
    }

    /// Plaintext bytes spooled so far for (stdout, stderr).
    pub fn spooled(&self, invocation: &str) -> (u64, u64) {
        let lengths = self.lengths();
        let len = |stream| lengths.get(&self.path(invocation, stream)).copied().unwrap_or(0);
        (len("stdout"), len("stderr"))
    }

    /// Bytes kept per stream.
    pub fn max_bytes(&self) -> u64 {
        self.max_bytes
    }

    fn path(&self, invocation: &str, stream: &str) -> PathBuf {
        self.dir.join(format!("{invocation}.{stream}"))
    }

    fn lengths(&self) -> std::sync::MutexGuard<'_, HashMap<PathBuf, u64>> {
        self.lengths.lock().unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    fn held(&self) -> std::sync::MutexGuard<'_, Held> {
        self.held.lock().unwrap_or_else(std::sync::PoisonError::into_inner)
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
        match self.open_set().get(&chunk.invocation_id) {
            Some(None) => {}
            // Already failed: the result will fail with the reason; more bytes change nothing.
            Some(Some(_)) => return Ok(()),
            None => return Err(OutputError::NotAccepting(chunk.invocation_id.clone())),
        }
        let path = self.path(&chunk.invocation_id, stream);
        // Past the cap the bytes are dropped; the result's byte count tells how many.
        let end = chunk.offset.saturating_add(chunk.data.len() as u64).min(self.max_bytes);
        // Claim the range before writing, so a duplicate arriving meanwhile is skipped.
        let have = {
            let mut lengths = self.lengths();
            let have = lengths.get(&path).copied().unwrap_or(0);
            if chunk.offset > have || end <= have {
                return Ok(()); // a gap (re-sent later from 0) or a duplicate
            }
            lengths.insert(path.clone(), end);
            have
        };
        let skip = usize::try_from(have - chunk.offset).unwrap_or(usize::MAX);
        let take = usize::try_from(end - have).unwrap_or(usize::MAX);
        let data = chunk.data.get(skip..).unwrap_or_default();
        let data = data.get(..take.min(data.len())).unwrap_or_default();
        let hold = self.held().hold(&path, have, data);
        let written = match hold {
            Hold::Held => Ok(()),
            Hold::ToFile(None) => self.write_frame(&path, &chunk.invocation_id, stream, have, data).await,
            Hold::ToFile(Some(earlier)) => {
                match self.write_frame(&path, &chunk.invocation_id, stream, 0, &earlier).await {
                    Ok(()) => self.write_frame(&path, &chunk.invocation_id, stream, have, data).await,
                    Err(e) => Err(e),
                }
            }
        };
        if let Err(e) = &written {
            self.lengths().insert(path, have);
            if let Some(failure) = self.open_set().get_mut(&chunk.invocation_id) {
                *failure = Some(e.to_string());
            }
        }
        written
    }

    async fn write_frame(
        &self,
        path: &Path,
        invocation: &str,
        stream: &str,
        offset: u64,
        data: &[u8],
    ) -> Result<(), OutputError> {
        let io = |source| OutputError::Io { path: path.to_path_buf(), source };
        let nonce = random_bytes::<NONCE_LEN>();
        let mut sealed = data.to_vec();
        self.key
            .seal_in_place_append_tag(
                Nonce::assume_unique_for_key(nonce),
                Aad::from(aad(invocation, stream, offset)),
                &mut sealed,
            )
            .map_err(|_| OutputError::TooLarge(data.len()))?;
        let len = u32::try_from(sealed.len()).map_err(|_| OutputError::TooLarge(data.len()))?;
        let mut frame = Vec::with_capacity(4 + NONCE_LEN + sealed.len());
        frame.extend_from_slice(&len.to_be_bytes());
        frame.extend_from_slice(&nonce);
        frame.extend_from_slice(&sealed);
        let mut file = tokio::fs::OpenOptions::new().create(true).append(true).open(path).await.map_err(io)?;
        file.write_all(&frame).await.map_err(io)?;
        // tokio completes file writes in the background: without this flush a read right
        // after the result could miss this frame.
        file.flush().await.map_err(io)
    }

    /// A reader of one stream (`stdout` or `stderr`) as spooled; a missing file is empty.
    pub async fn reader(&self, invocation: &str, stream: &'static str) -> Result<SpoolReader<'_>, OutputError> {
        let path = self.path(invocation, stream);
        let memory = self.held().memory.get(&path).cloned();
        if memory.is_some() {
            return Ok(SpoolReader {
                spool: self,
                invocation: invocation.to_owned(),
                stream,
                path,
                file: None,
                memory,
                offset: 0,
            });
        }
        let file = match tokio::fs::File::open(&path).await {
            Ok(file) => Some(tokio::io::BufReader::with_capacity(256 * 1024, file)),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => None,
            Err(source) => return Err(OutputError::Io { path, source }),
        };
        Ok(SpoolReader { spool: self, invocation: invocation.to_owned(), stream, path, file, memory: None, offset: 0 })
    }

    /// Both streams' bytes so far (missing files are empty).
    #[cfg(test)]
    pub async fn read(&self, invocation: &str) -> (Vec<u8>, Vec<u8>) {
        let mut both = Vec::new();
        for stream in ["stdout", "stderr"] {
            let mut reader = self.reader(invocation, stream).await.expect("reader");
            let mut bytes = Vec::new();
            while let Ok(Some(chunk)) = reader.next().await {
                bytes.extend_from_slice(&chunk);
            }
            both.push(bytes);
        }
        let stderr = both.pop().unwrap_or_default();
        (both.pop().unwrap_or_default(), stderr)
    }

    /// Stops accepting output for `invocation` and deletes what was spooled.
    pub async fn remove(&self, invocation: &str) {
        self.open_set().remove(invocation);
        for stream in ["stdout", "stderr"] {
            let path = self.path(invocation, stream);
            self.lengths().remove(&path);
            let has_file = self.held().forget(&path);
            if has_file {
                let _ = tokio::fs::remove_file(path).await;
            }
        }
    }
}

/// The streams kept in memory, and those that went to a file.
struct Held {
    memory: HashMap<PathBuf, Vec<u8>>,
    total: usize,
    files: HashSet<PathBuf>,
    per_stream: usize,
    limit: usize,
}

enum Hold {
    Held,
    /// Write it to the file, after what memory held until now (written at offset 0) if any.
    ToFile(Option<Vec<u8>>),
}

impl Held {
    /// Keeps `data` (the stream's bytes from `offset`) in memory when both limits allow.
    fn hold(&mut self, path: &Path, offset: u64, data: &[u8]) -> Hold {
        if self.files.contains(path) {
            return Hold::ToFile(None);
        }
        let held = self.memory.get(path).map_or(0, Vec::len);
        let fits = held + data.len() <= self.per_stream && self.total + data.len() <= self.limit;
        if fits && held as u64 == offset {
            self.memory.entry(path.to_path_buf()).or_default().extend_from_slice(data);
            self.total += data.len();
            return Hold::Held;
        }
        self.files.insert(path.to_path_buf());
        let earlier = self.memory.remove(path);
        self.total -= earlier.as_ref().map_or(0, Vec::len);
        Hold::ToFile(earlier.filter(|e| !e.is_empty()))
    }

    /// Drops a stream; true when it has a file to delete.
    fn forget(&mut self, path: &Path) -> bool {
        if let Some(bytes) = self.memory.remove(path) {
            self.total -= bytes.len();
        }
        self.files.remove(path)
    }
}

fn aad(invocation: &str, stream: &str, offset: u64) -> Vec<u8> {
    format!("spool\0{invocation}\0{stream}\0{offset}").into_bytes()
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
        let spool = OutputSpool::new(dir.path(), 1 << 20).expect("spool").with_memory(0, 0);
        let node = NodeId::from_random([3; 9]);
        let id = invocation_id("c-1", node.as_str());
        spool.accept(&id);
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
        let mut reader = spool.reader(&id, "stdout").await.expect("reader");
        let mut streamed = Vec::new();
        while let Some(chunk) = reader.next().await.expect("frame") {
            streamed.extend(chunk);
        }
        assert_eq!(streamed, b"hello world", "the streaming reader sees the same bytes");
        let on_disk = std::fs::read(dir.path().join(format!("{id}.stdout"))).expect("spool file");
        assert!(!on_disk.windows(5).any(|w| w == b"hello"), "the spool holds ciphertext only");
        let other = NodeId::from_random([4; 9]);
        assert!(matches!(spool.append(&other, &chunk(0, b"x")).await, Err(OutputError::Foreign(_))));
        spool.remove(&id).await;
        assert_eq!(spool.read(&id).await.0, b"");
    }

    #[tokio::test]
    async fn a_damaged_frame_ends_the_stream_there() {
        let dir = tempfile::tempdir().expect("tempdir");
        let spool = OutputSpool::new(dir.path(), 1 << 20).expect("spool").with_memory(0, 0);
        let node = NodeId::from_random([5; 9]);
        let id = invocation_id("c-2", node.as_str());
        spool.accept(&id);
        for (offset, data) in [(0, &b"first "[..]), (6, &b"second"[..])] {
            let chunk = OutputChunk {
                invocation_id: id.clone(),
                stream: OutputStream::Stdout as i32,
                offset,
                data: data.to_vec(),
            };
            spool.append(&node, &chunk).await.expect("append");
        }
        let path = dir.path().join(format!("{id}.stdout"));
        let mut bytes = std::fs::read(&path).expect("read");
        let last = bytes.len() - 1;
        bytes[last] ^= 1;
        std::fs::write(&path, &bytes).expect("write");
        assert_eq!(spool.read(&id).await.0, b"first ");
        // A new process cannot read an old spool: it starts empty.
        drop(spool);
        let again = OutputSpool::new(dir.path(), 1 << 20).expect("reopen");
        assert_eq!(again.read(&id).await.0, b"");
    }

    #[tokio::test]
    async fn only_accepted_invocations_are_spooled_and_only_up_to_the_cap() {
        let dir = tempfile::tempdir().expect("tempdir");
        let spool = OutputSpool::new(&dir.path().join("spool"), 10).expect("spool").with_memory(0, 0);
        let node = NodeId::from_random([6; 9]);
        let id = invocation_id("c-3", node.as_str());
        let chunk = |offset, data: &[u8]| OutputChunk {
            invocation_id: id.clone(),
            stream: OutputStream::Stdout as i32,
            offset,
            data: data.to_vec(),
        };
        assert!(matches!(spool.append(&node, &chunk(0, b"early")).await, Err(OutputError::NotAccepting(_))));
        assert!(!dir.path().join(format!("spool/{id}.stdout")).exists(), "a refused chunk is never written");
        spool.accept(&id);
        spool.append(&node, &chunk(0, b"0123456")).await.expect("append");
        spool.append(&node, &chunk(7, b"789abc")).await.expect("append past the cap");
        spool.append(&node, &chunk(13, b"def")).await.expect("beyond the cap");
        assert_eq!(spool.read(&id).await.0, b"0123456789");
        assert_eq!(spool.spooled(&id), (10, 0));
        // A failed write is remembered as the invocation's failure, with the reason.
        std::fs::remove_dir_all(dir.path().join("spool")).expect("rm");
        std::fs::write(dir.path().join("spool"), b"not a directory").expect("file");
        let err_chunk = OutputChunk { stream: OutputStream::Stderr as i32, ..chunk(0, b"x") };
        assert!(spool.append(&node, &err_chunk).await.is_err());
        assert!(spool.failure(&id).is_some_and(|why| why.contains("cannot spool output")));
        spool.remove(&id).await;
        assert!(matches!(spool.append(&node, &chunk(0, b"late")).await, Err(OutputError::NotAccepting(_))));
    }

    #[tokio::test]
    async fn small_streams_stay_in_memory_and_move_to_a_file_past_a_limit() {
        let dir = tempfile::tempdir().expect("tempdir");
        let spool = OutputSpool::new(dir.path(), 1 << 20).expect("spool").with_memory(8, 12);
        let node = NodeId::from_random([7; 9]);
        let (a, b) = (invocation_id("c-4", node.as_str()), invocation_id("c-5", node.as_str()));
        let chunk = |id: &str, offset, data: &[u8]| OutputChunk {
            invocation_id: id.to_owned(),
            stream: OutputStream::Stdout as i32,
            offset,
            data: data.to_vec(),
        };
        spool.accept(&a);
        spool.accept(&b);
        spool.append(&node, &chunk(&a, 0, b"abc")).await.expect("append");
        spool.append(&node, &chunk(&a, 3, b"def")).await.expect("append");
        let file_a = dir.path().join(format!("{a}.stdout"));
        assert!(!file_a.exists(), "6 bytes stay in memory");
        assert_eq!(spool.read(&a).await.0, b"abcdef");
        // Past the per-stream limit: what memory held becomes the file's first frame.
        spool.append(&node, &chunk(&a, 6, b"ghi")).await.expect("append");
        assert!(file_a.exists(), "9 bytes went to a file");
        spool.append(&node, &chunk(&a, 9, b"jk")).await.expect("append");
        assert_eq!(spool.read(&a).await.0, b"abcdefghijk");
        assert_eq!(spool.spooled(&a), (11, 0));
        // The total: a second stream may hold only what the others leave.
        spool.append(&node, &chunk(&b, 0, b"12345678")).await.expect("append");
        assert!(!dir.path().join(format!("{b}.stdout")).exists(), "memory is free again after the first moved");
        let err = OutputChunk { stream: OutputStream::Stderr as i32, ..chunk(&b, 0, b"12345") };
        spool.append(&node, &err).await.expect("append");
        assert!(dir.path().join(format!("{b}.stderr")).exists(), "8 + 5 bytes exceed the total of 12");
        assert_eq!(spool.read(&b).await, (b"12345678".to_vec(), b"12345".to_vec()));
        spool.remove(&a).await;
        spool.remove(&b).await;
        assert!(!file_a.exists() && !dir.path().join(format!("{b}.stderr")).exists(), "files deleted");
        assert_eq!(spool.held().total, 0, "memory given back");
    }

    #[test]
    fn inline_copies() {
        assert_eq!(inline(b"abc", 2), ("ab".into(), true));
        assert_eq!(inline(b"abc", 3), ("abc".into(), false));
        assert_eq!(inline(b"a\0\xff", 10), ("a\u{fffd}\u{fffd}".into(), false));
    }
}
