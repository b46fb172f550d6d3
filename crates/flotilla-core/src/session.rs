//! Sessions' pure rules: the two kinds of session, a port forward's `LOCAL_PORT:HOST:PORT`
//! spelling, run-as user names, and when a session must end (idle or past its maximum
//! duration). Time is an argument.

use std::fmt;
use std::str::FromStr;

use crate::UnixMillis;

/// What a session carries.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum SessionKind {
    /// An interactive shell on a PTY of the node.
    Shell,
    /// TCP connections from the operator's machine to HOST:PORT as seen from the node.
    PortForward,
}

impl SessionKind {
    pub const ALL: [SessionKind; 2] = [SessionKind::Shell, SessionKind::PortForward];

    pub fn as_str(self) -> &'static str {
        match self {
            SessionKind::Shell => "shell",
            SessionKind::PortForward => "port-forward",
        }
    }
}

impl fmt::Display for SessionKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// A session kind name this version does not know.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SessionKindError(pub String);

impl fmt::Display for SessionKindError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "unknown session kind `{}` (expected shell or port-forward)", self.0)
    }
}

impl FromStr for SessionKind {
    type Err = SessionKindError;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        SessionKind::ALL.into_iter().find(|k| k.as_str() == s).ok_or_else(|| SessionKindError(s.to_owned()))
    }
}

/// `LOCAL_PORT:HOST:PORT` of `session port-forward`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ForwardSpec {
    /// 0: any free port, chosen by the operating system.
    pub local_port: u16,
    pub host: String,
    pub port: u16,
}

/// Reads `LOCAL_PORT:HOST:PORT` (an IPv6 host in brackets: `8080:[::1]:80`).
pub fn parse_forward(text: &str) -> Result<ForwardSpec, String> {
    let usage = || format!("`{text}` is not LOCAL_PORT:HOST:PORT (e.g. 8080:127.0.0.1:80)");
    let (local, rest) = text.split_once(':').ok_or_else(usage)?;
    let (host, port) = rest.rsplit_once(':').ok_or_else(usage)?;
    let local_port: u16 = local.parse().map_err(|_| format!("local port `{local}` is not a number from 0 to 65535"))?;
    let port: u16 = port.parse().map_err(|_| format!("port `{port}` is not a number from 1 to 65535"))?;
    if port == 0 {
        return Err("port 0 cannot be connected to: give the port the node-side server listens on".into());
    }
    let host = host.strip_prefix('[').and_then(|h| h.strip_suffix(']')).unwrap_or(host);
    check_host(host)?;
    Ok(ForwardSpec { local_port, host: host.to_owned(), port })
}

/// A host name or address a node may be asked to connect to: 1-253 characters of letters,
/// digits and `.-_:` (IPv6), nothing that could be read as an option or a path.
pub fn check_host(host: &str) -> Result<(), String> {
    if host.is_empty() || host.len() > 253 {
        return Err("the host must have 1 to 253 characters".into());
    }
    if host.starts_with('-') || !host.chars().all(|c| c.is_ascii_alphanumeric() || matches!(c, '.' | '-' | '_' | ':')) {
        return Err(format!("`{host}` is not a host name or address"));
    }
    Ok(())
}

/// A run-as user name as the shadow utilities accept it: `[a-z_][a-z0-9_-]*[$]?`, at most
/// 32 characters.
pub fn check_user(user: &str) -> Result<(), String> {
    let bad = || format!("`{user}` is not a user name (letters, digits, `_` and `-`, starting with a letter or `_`)");
    let mut chars = user.chars();
    let first = chars.next().ok_or_else(|| "the run-as user is empty".to_owned())?;
    if user.len() > 32 || !(first.is_ascii_lowercase() || first == '_') {
        return Err(bad());
    }
    let body = user.strip_suffix('$').unwrap_or(user);
    if !body.chars().all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '_' || c == '-') {
        return Err(bad());
    }
    Ok(())
}

/// Why a running session must end now, if it must.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Expiry {
    Idle,
    MaxDuration,
}

impl Expiry {
    /// The reason recorded for the session.
    pub fn reason(self) -> &'static str {
        match self {
            Expiry::Idle => "idle timeout",
            Expiry::MaxDuration => "maximum duration reached",
        }
    }
}

/// Whether a session started at `started` and last active at `active` has expired at `now`,
/// and otherwise how long until it might (milliseconds). The maximum duration wins a tie.
pub fn expiry(
    now: UnixMillis,
    started: UnixMillis,
    active: UnixMillis,
    idle_ms: i64,
    max_ms: i64,
) -> Result<Expiry, i64> {
    let max_left = started.saturating_add(max_ms).saturating_sub(now);
    let idle_left = active.saturating_add(idle_ms).saturating_sub(now);
    if max_left <= 0 {
        Ok(Expiry::MaxDuration)
    } else if idle_left <= 0 {
        Ok(Expiry::Idle)
    } else {
        Err(max_left.min(idle_left))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn forward_specs() {
        let ok = |t: &str, l: u16, h: &str, p: u16| {
            assert_eq!(parse_forward(t), Ok(ForwardSpec { local_port: l, host: h.into(), port: p }), "{t}");
        };
        ok("8080:127.0.0.1:80", 8080, "127.0.0.1", 80);
        ok("0:db.internal:5432", 0, "db.internal", 5432);
        ok("9000:[::1]:22", 9000, "::1", 22);
        for bad in ["8080", "8080:host", "x:h:1", "1:h:x", "1:h:0", "1::80", "1:-o:80", "1:a/b:80", "70000:h:1"] {
            assert!(parse_forward(bad).is_err(), "{bad} accepted");
        }
    }

    #[test]
    fn user_names() {
        for ok in ["root", "ssm-user", "_apt", "u1", "machine$"] {
            assert!(check_user(ok).is_ok(), "{ok}");
        }
        for bad in ["", "Root", "1user", "a b", "a/b", "-x", &"a".repeat(33)] {
            assert!(check_user(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn expiry_table() {
        // (now, started, active, idle, max) -> expected
        type Case = (i64, i64, i64, i64, i64, Result<Expiry, i64>);
        let cases: &[Case] = &[
            (100, 0, 90, 20, 1000, Err(10)),
            (110, 0, 90, 20, 1000, Ok(Expiry::Idle)),
            (1000, 0, 999, 20, 1000, Ok(Expiry::MaxDuration)),
            (990, 0, 985, 20, 1000, Err(10)),
            (1000, 0, 980, 20, 1000, Ok(Expiry::MaxDuration)),
        ];
        for (now, started, active, idle, max, want) in cases {
            assert_eq!(expiry(*now, *started, *active, *idle, *max), *want, "now {now}");
        }
        assert_eq!(SessionKind::from_str("port-forward"), Ok(SessionKind::PortForward));
        assert!(SessionKind::from_str("ssh").is_err());
    }
}
