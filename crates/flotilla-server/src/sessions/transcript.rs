//! A shell's transcript in asciicast v2 (a header line, then `[seconds, "o"|"i"|"r", text]`
//! events), written into the artifact store while the session runs as numbered parts
//! (`sessions/ID/transcript/000000.cast`, `000001.cast`, ...), each encrypted under the key
//! service like every artifact. A part is written at least every second while there is
//! something to write, so a session that dies mid-way (the server included) leaves every part
//! written before: the transcript reads up to that point. Their concatenation is the file a
//! standard asciicast player replays.

use std::time::{Duration, Instant};

use crate::platform::artifact::{ArtifactError, ArtifactStore};

/// A part is written when this much is buffered, or after [`FLUSH_EVERY`].
const FLUSH_BYTES: usize = 256 * 1024;
const FLUSH_EVERY: Duration = Duration::from_secs(1);
/// Buffered bytes kept while the artifact store refuses writes; past it they are dropped.
const MAX_PENDING: usize = 8 * 1024 * 1024;

/// The artifact prefix of session `id`'s transcript.
pub fn prefix(id: &str) -> String {
    format!("sessions/{id}/transcript")
}

fn part_name(prefix: &str, part: u32) -> String {
    format!("{prefix}/{part:06}.cast")
}

pub struct Transcript {
    artifacts: ArtifactStore,
    prefix: String,
    part: u32,
    buf: Vec<u8>,
    start: Instant,
    last_flush: Instant,
    carry_in: Vec<u8>,
    carry_out: Vec<u8>,
    warned: bool,
}

/// What the header says.
pub struct Header<'a> {
    pub cols: u16,
    pub rows: u16,
    pub started_at_ms: i64,
    pub term: &'a str,
    pub title: String,
}

impl Transcript {
    pub fn new(artifacts: ArtifactStore, prefix: String, header: Header<'_>) -> Transcript {
        let head = serde_json::json!({
            "version": 2,
            "width": header.cols,
            "height": header.rows,
            "timestamp": header.started_at_ms / 1000,
            "env": { "TERM": header.term },
            "title": header.title,
        });
        let mut buf = head.to_string().into_bytes();
        buf.push(b'\n');
        let now = Instant::now();
        Transcript {
            artifacts,
            prefix,
            part: 0,
            buf,
            start: now,
            last_flush: now - FLUSH_EVERY,
            carry_in: Vec::new(),
            carry_out: Vec::new(),
            warned: false,
        }
    }

    fn event(&mut self, code: &str, text: &str) {
        let t = (self.start.elapsed().as_secs_f64() * 1e6).round() / 1e6;
        if let Ok(line) = serde_json::to_string(&(t, code, text)) {
            self.buf.extend_from_slice(line.as_bytes());
            self.buf.push(b'\n');
        }
    }

    /// Terminal output (node to operator).
    pub async fn output(&mut self, data: &[u8]) {
        let text = utf8(&mut self.carry_out, data);
        if !text.is_empty() {
            self.event("o", &text);
        }
        self.flush_if_due().await;
    }

    /// What the operator typed.
    pub async fn input(&mut self, data: &[u8]) {
        let text = utf8(&mut self.carry_in, data);
        if !text.is_empty() {
            self.event("i", &text);
        }
        self.flush_if_due().await;
    }

    pub fn resize(&mut self, rows: u16, cols: u16) {
        self.event("r", &format!("{cols}x{rows}"));
    }

    pub async fn flush_if_due(&mut self) {
        if self.buf.len() >= FLUSH_BYTES || (!self.buf.is_empty() && self.last_flush.elapsed() >= FLUSH_EVERY) {
            self.flush().await;
        }
    }

    async fn flush(&mut self) {
        self.last_flush = Instant::now();
        if self.buf.is_empty() {
            return;
        }
        let name = part_name(&self.prefix, self.part);
        match self.artifacts.put(&name, self.buf.clone()).await {
            Ok(()) => {
                self.part += 1;
                self.buf.clear();
            }
            Err(e) => {
                if !self.warned {
                    tracing::error!(artifact = %name, "cannot write the session transcript (kept in memory, retried): {e}");
                    self.warned = true;
                }
                if self.buf.len() > MAX_PENDING {
                    tracing::error!(artifact = %name, bytes = self.buf.len(), "session transcript dropped: the artifact store refuses writes");
                    self.buf.clear();
                }
            }
        }
    }

    /// Writes what is left (an incomplete UTF-8 tail as U+FFFD).
    pub async fn finish(mut self) {
        if !self.carry_out.is_empty() {
            let rest = String::from_utf8_lossy(&std::mem::take(&mut self.carry_out)).into_owned();
            self.event("o", &rest);
        }
        self.flush().await;
    }
}

/// Every part of a transcript, in order, as one asciicast file; `None` when it has none.
pub async fn read(artifacts: &ArtifactStore, prefix: &str) -> Result<Option<Vec<u8>>, ArtifactError> {
    let mut out = Vec::new();
    for part in 0.. {
        match artifacts.get(&part_name(prefix, part)).await {
            Ok(bytes) => out.extend_from_slice(&bytes),
            Err(ArtifactError::Get { source: object_store::Error::NotFound { .. }, .. }) => {
                return Ok(if part == 0 { None } else { Some(out) });
            }
            Err(e) => return Err(e),
        }
    }
    Ok(Some(out))
}

/// The text of `data` after what was left of the last chunk, holding back an incomplete UTF-8
/// sequence at the end for the next one; invalid bytes become U+FFFD.
fn utf8(carry: &mut Vec<u8>, data: &[u8]) -> String {
    carry.extend_from_slice(data);
    let mut out = String::new();
    loop {
        match std::str::from_utf8(carry) {
            Ok(s) => {
                out.push_str(s);
                carry.clear();
                return out;
            }
            Err(e) => {
                let valid = e.valid_up_to();
                out.push_str(&String::from_utf8_lossy(&carry[..valid]));
                match e.error_len() {
                    None => {
                        carry.drain(..valid);
                        return out;
                    }
                    Some(n) => {
                        out.push('\u{FFFD}');
                        carry.drain(..valid + n);
                    }
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::utf8;

    #[test]
    fn utf8_split_across_chunks_is_kept_whole() {
        let text = "héllo → wörld";
        let bytes = text.as_bytes();
        for cut in 0..bytes.len() {
            let mut carry = Vec::new();
            let mut out = utf8(&mut carry, &bytes[..cut]);
            out.push_str(&utf8(&mut carry, &bytes[cut..]));
            assert_eq!(out, text, "cut at {cut}");
            assert!(carry.is_empty());
        }
        let mut carry = Vec::new();
        assert_eq!(utf8(&mut carry, b"a\xffb"), "a\u{FFFD}b");
    }
}
