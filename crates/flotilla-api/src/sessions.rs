//! Sessions: interactive shells and port forwards through the agent, and what was recorded
//! of them. The byte streams themselves travel over an HTTP/1.1 Upgrade of
//! `/api/v1/sessions/shell`, `/api/v1/sessions/port-forward` and
//! `/api/v1/sessions/{id}/connect` (framing in `flotilla-server`'s `sessions` module).

use serde::{Deserialize, Serialize};

/// The `Upgrade:` protocol name of session streams.
pub const UPGRADE_PROTOCOL: &str = "flotilla-session";
/// Response header of a 101 answer naming the session.
pub const SESSION_ID_HEADER: &str = "flotilla-session-id";

/// A session (CLI.md "Sessions" row: id, node_id, kind, user, started_at, ended_at, bytes_in,
/// bytes_out, reason).
#[derive(Debug, Clone, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct Session {
    pub id: String,
    pub node_id: String,
    /// `shell` or `port-forward`.
    pub kind: String,
    /// The node-side user a shell runs as (empty for a port forward).
    pub user: String,
    pub started_at: String,
    /// Empty while the session is open.
    pub ended_at: Option<String>,
    /// Bytes from the operator to the node.
    pub bytes_in: i64,
    /// Bytes from the node to the operator.
    pub bytes_out: i64,
    /// Why it ended (`shell exited (status 0)`, `idle timeout`, `terminated`, ...).
    pub reason: Option<String>,
    /// The API token that opened it.
    pub opened_by: String,
    /// A port forward's HOST:PORT on the node's side.
    pub target: String,
    /// Whether a transcript can be replayed (`flotilla session replay`).
    pub transcript: bool,
    /// A port forward's TCP connections (in `show`; empty in lists).
    #[serde(default)]
    pub connections: Vec<SessionConnection>,
}

/// One forwarded TCP connection: when, to where, bytes, how it ended.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct SessionConnection {
    pub seq: i64,
    pub target: String,
    pub opened_at: String,
    pub closed_at: String,
    pub bytes_in: i64,
    pub bytes_out: i64,
    pub reason: String,
}

/// The framing of a shell's (and a port forward's control) upgraded stream: each frame is a
/// kind byte, a 4-byte big-endian payload length and the payload. Forwarded TCP connections
/// (`/api/v1/sessions/{id}/connect`) carry raw bytes instead, unframed.
pub mod frame {
    /// Terminal bytes (either way).
    pub const DATA: u8 = 0;
    /// Client to server: the terminal's new size, rows then columns, each a big-endian u16.
    pub const RESIZE: u8 = 1;
    /// Server to client: the session ended; a big-endian i32 exit status (-1: none), then
    /// the reason in UTF-8.
    pub const CLOSED: u8 = 2;
    pub const HEADER_LEN: usize = 5;
    /// Largest payload accepted.
    pub const MAX_PAYLOAD: usize = 1 << 20;

    pub fn header(kind: u8, len: usize) -> [u8; HEADER_LEN] {
        let n = u32::try_from(len).unwrap_or(u32::MAX).to_be_bytes();
        [kind, n[0], n[1], n[2], n[3]]
    }

    /// The kind and payload length of a frame header.
    pub fn parse_header(h: [u8; HEADER_LEN]) -> Result<(u8, usize), String> {
        let len = u32::from_be_bytes([h[1], h[2], h[3], h[4]]) as usize;
        if len > MAX_PAYLOAD {
            return Err(format!("a session frame of {len} bytes is larger than {MAX_PAYLOAD}"));
        }
        if h[0] > CLOSED {
            return Err(format!("unknown session frame kind {}", h[0]));
        }
        Ok((h[0], len))
    }

    pub fn resize(rows: u16, cols: u16) -> [u8; 4] {
        let (r, c) = (rows.to_be_bytes(), cols.to_be_bytes());
        [r[0], r[1], c[0], c[1]]
    }

    pub fn parse_resize(p: &[u8]) -> Option<(u16, u16)> {
        match p {
            [a, b, c, d] => Some((u16::from_be_bytes([*a, *b]), u16::from_be_bytes([*c, *d]))),
            _ => None,
        }
    }

    pub fn closed(exit_code: i32, reason: &str) -> Vec<u8> {
        let mut out = exit_code.to_be_bytes().to_vec();
        out.extend_from_slice(reason.as_bytes());
        out
    }

    pub fn parse_closed(p: &[u8]) -> (i32, String) {
        match p {
            [a, b, c, d, rest @ ..] => {
                (i32::from_be_bytes([*a, *b, *c, *d]), String::from_utf8_lossy(rest).into_owned())
            }
            _ => (-1, String::from_utf8_lossy(p).into_owned()),
        }
    }

    #[cfg(test)]
    mod tests {
        use super::*;

        #[test]
        fn frames_round_trip() {
            assert_eq!(parse_header(header(DATA, 300)), Ok((DATA, 300)));
            assert!(parse_header(header(DATA, MAX_PAYLOAD + 1)).is_err());
            assert!(parse_header(header(9, 1)).is_err());
            assert_eq!(parse_resize(&resize(40, 120)), Some((40, 120)));
            assert_eq!(parse_resize(&[1, 2, 3]), None);
            assert_eq!(parse_closed(&closed(130, "shell exited")), (130, "shell exited".to_owned()));
        }
    }
}
