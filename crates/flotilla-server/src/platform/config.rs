//! The server's configuration: one TOML file, every key overridable by a `FLOTILLA_*`
//! environment variable, safe defaults. Unknown keys are refused (a typo must not silently
//! fall back to a default on a control plane).

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;

use serde::Deserialize;

/// `flotilla server` configuration.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct ServerConfig {
    /// Address for the API and the agent channel, both TLS on one port. Env: `FLOTILLA_LISTEN`.
    pub listen: SocketAddr,
    /// Where the CA, the master key, the admin token, the SQLite database and the artifacts
    /// live. Env: `FLOTILLA_DATA_DIR`.
    pub data_dir: PathBuf,
    /// `postgres://...` to use PostgreSQL; empty means SQLite in the data dir.
    /// Env: `FLOTILLA_DATABASE_URL`.
    pub database_url: Option<String>,
    /// The master key file (the keyring of every master key version); empty means
    /// `master.key` in the data dir, created on first start. Point it at a file kept off the
    /// data dir's backups to separate keys from data. Env: `FLOTILLA_MASTER_KEY_FILE`.
    pub master_key_file: Option<PathBuf>,
    /// Extra DNS names or IP addresses for the server certificate (localhost, 127.0.0.1, ::1 and
    /// the host name are always included). Env: `FLOTILLA_TLS_NAMES` (comma-separated).
    pub tls_names: Vec<String>,
    /// How often agents send a heartbeat, e.g. "30s". Env: `FLOTILLA_HEARTBEAT_INTERVAL`.
    #[serde(with = "humantime_serde")]
    pub heartbeat_interval: Duration,
    /// Heartbeats a node may miss before it is ConnectionLost. Env: `FLOTILLA_MISSED_HEARTBEATS`.
    pub missed_heartbeats: u32,
    /// How long finished commands, their invocations and outputs are kept, e.g. "90d".
    /// Env: `FLOTILLA_COMMAND_RETENTION`.
    #[serde(with = "humantime_serde")]
    pub command_retention: Duration,
    /// Advisory data whose newest record (OSV `modified`) for a node's release is older than
    /// this still assesses, but the run, the node and its findings say how many days old it
    /// was, e.g. "7d". Env: `FLOTILLA_ADVISORY_MAX_AGE`.
    #[serde(with = "humantime_serde")]
    pub advisory_max_age: Duration,
    /// How long replaced inventory snapshots are kept in the artifact store, e.g. "30d".
    /// Env: `FLOTILLA_INVENTORY_HISTORY_RETENTION`.
    #[serde(with = "humantime_serde")]
    pub inventory_history_retention: Duration,
    /// How long events are kept in the event log, e.g. "30d"; older ones are deleted by the
    /// retention worker (their sequence numbers are never handed out again).
    /// Env: `FLOTILLA_EVENT_RETENTION`.
    #[serde(with = "humantime_serde")]
    pub event_retention: Duration,
    /// How long a client may take to complete the TLS handshake, e.g. "10s".
    /// Env: `FLOTILLA_TLS_HANDSHAKE_TIMEOUT`.
    #[serde(with = "humantime_serde")]
    pub tls_handshake_timeout: Duration,
    /// How long a client may take, after the handshake, to send a complete first request (HTTP/1
    /// headers, or the HTTP/2 preface and a request) and, on HTTP/1, the headers of each later
    /// request: slow-header ("slowloris") clients are closed after it. Env:
    /// `FLOTILLA_HTTP_HEADER_READ_TIMEOUT`.
    #[serde(with = "humantime_serde")]
    pub http_header_read_timeout: Duration,
    /// How long a connection may stay open with no request in flight (HTTP/1 keep-alive or an
    /// HTTP/2 connection without streams) before it is closed. An agent's channel is one
    /// long request, so it never counts as idle. Env: `FLOTILLA_CONNECTION_IDLE_TIMEOUT`.
    #[serde(with = "humantime_serde")]
    pub connection_idle_timeout: Duration,
    /// Most connections open at once, of every kind. When full, the oldest idle anonymous
    /// connection is closed for a new one; with none to close, the new one is refused. Keep the
    /// process's open-file limit above it. Env: `FLOTILLA_MAX_CONNECTIONS`.
    pub max_connections: usize,
    /// Most anonymous connections (no client certificate from this server's CA yet: handshakes
    /// in progress, the CLI, enrollment, strangers) open at once. When full, a new connection
    /// closes the oldest idle anonymous one, so anonymous clients can never use up the room
    /// agents need. Env: `FLOTILLA_MAX_ANONYMOUS_CONNECTIONS`.
    pub max_anonymous_connections: usize,
    /// Most anonymous connections from one source IP address; a new one closes that address's
    /// oldest idle anonymous connection. Agents with a valid certificate are not counted, so
    /// any number of them may share one NAT address. Env: `FLOTILLA_MAX_ANONYMOUS_PER_ADDRESS`.
    pub max_anonymous_per_address: usize,
    /// The most bytes kept per output stream (stdout, stderr) of one invocation. Agents are
    /// told to stop sending past it, the server drops what arrives beyond it anyway, and the
    /// invocation says how much was cut. Env: `FLOTILLA_MAX_OUTPUT_BYTES`.
    pub max_output_bytes: u64,
    /// How long past its execution timeout an InProgress invocation whose node is not
    /// connected waits for the agent to come back with its result before it ends Terminated,
    /// e.g. "60s". Env: `FLOTILLA_LOST_AGENT_GRACE`.
    #[serde(with = "humantime_serde")]
    pub lost_agent_grace: Duration,
    /// Attempts in all (the first included) to deliver one event to one subscription before
    /// it is dead-lettered. Env: `FLOTILLA_DELIVERY_ATTEMPTS`.
    pub delivery_attempts: u32,
    /// The first retry of a failed delivery comes within this, doubling each time (with
    /// jitter), e.g. "1s". Env: `FLOTILLA_DELIVERY_BACKOFF`.
    #[serde(with = "humantime_serde")]
    pub delivery_backoff: Duration,
    /// No wait between delivery attempts is longer, e.g. "10m". Env: `FLOTILLA_DELIVERY_BACKOFF_CAP`.
    #[serde(with = "humantime_serde")]
    pub delivery_backoff_cap: Duration,
    /// Deliveries in flight at once to one subscription (others never wait for it).
    /// Env: `FLOTILLA_DELIVERY_CONCURRENCY`.
    pub delivery_concurrency: u32,
    /// How long a Delivered delivery row is kept before the retention worker deletes it, e.g.
    /// "7d" (Pending, Retrying and DeadLettered rows are never pruned).
    /// Env: `FLOTILLA_DELIVERY_RETENTION`.
    #[serde(with = "humantime_serde")]
    pub delivery_retention: Duration,
    /// The SMTP server email subscriptions are sent through; unset refuses `--email`
    /// subscriptions. Env: `FLOTILLA_SMTP_HOST`.
    pub smtp_host: Option<String>,
    /// Its port; unset means 25 for `none`, 587 for `starttls`, 465 for `tls`.
    /// Env: `FLOTILLA_SMTP_PORT`.
    pub smtp_port: Option<u16>,
    /// `none` (plain text: only for a relay on a trusted network), `starttls` (required, never
    /// a fallback to plain text) or `tls` (TLS from the first byte). The server's certificate is
    /// checked against the system's roots. Env: `FLOTILLA_SMTP_TLS`.
    pub smtp_tls: SmtpTls,
    /// The user to authenticate as (with `smtp_password_file`); unset sends without AUTH.
    /// Env: `FLOTILLA_SMTP_USERNAME`.
    pub smtp_username: Option<String>,
    /// A file holding the SMTP password (a trailing newline is dropped), read when the sender
    /// first sends to each email subscription (a rotated password takes effect at the next
    /// restart). Env: `FLOTILLA_SMTP_PASSWORD_FILE`.
    pub smtp_password_file: Option<PathBuf>,
    /// The From address of notification emails, e.g. `Flotilla <flotilla@example.com>`;
    /// needed with `smtp_host`. Env: `FLOTILLA_SMTP_FROM`.
    pub smtp_from: Option<String>,
    /// A session (shell or port forward) with no byte either way for this long is ended, e.g.
    /// "20m". Env: `FLOTILLA_SESSION_IDLE_TIMEOUT`.
    #[serde(with = "humantime_serde")]
    pub session_idle_timeout: Duration,
    /// A session open this long is ended however busy it is, e.g. "12h".
    /// Env: `FLOTILLA_SESSION_MAX_DURATION`.
    #[serde(with = "humantime_serde")]
    pub session_max_duration: Duration,
    /// The node-side user a shell runs as when neither `--user` nor the node's
    /// `session-run-as` tag names one. Env: `FLOTILLA_SESSION_RUN_AS`.
    pub session_run_as: String,
}

/// How email reaches the SMTP server.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum SmtpTls {
    None,
    #[default]
    Starttls,
    Tls,
}

impl SmtpTls {
    /// The usual port of each mode.
    pub fn default_port(self) -> u16 {
        match self {
            SmtpTls::None => 25,
            SmtpTls::Starttls => 587,
            SmtpTls::Tls => 465,
        }
    }
}

impl std::str::FromStr for SmtpTls {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s {
            "none" => Ok(SmtpTls::None),
            "starttls" => Ok(SmtpTls::Starttls),
            "tls" => Ok(SmtpTls::Tls),
            _ => Err("not one of none, starttls, tls".into()),
        }
    }
}

/// Default [`ServerConfig::delivery_retention`]: a week.
pub const DEFAULT_DELIVERY_RETENTION: Duration = Duration::from_secs(7 * 24 * 3600);

/// Advisories older than a week are flagged: the distributions publish daily.
pub const DEFAULT_ADVISORY_MAX_AGE: Duration = Duration::from_secs(7 * 24 * 3600);
/// Inventory history kept for a month by default.
pub const DEFAULT_INVENTORY_HISTORY_RETENTION: Duration = Duration::from_secs(30 * 24 * 3600);
/// Default [`ServerConfig::event_retention`]: 30 days.
pub const DEFAULT_EVENT_RETENTION: Duration = Duration::from_secs(30 * 24 * 3600);
/// Default [`ServerConfig::max_output_bytes`]: 256 MiB per stream.
pub const DEFAULT_MAX_OUTPUT_BYTES: u64 = 256 * 1024 * 1024;
/// Default [`ServerConfig::lost_agent_grace`].
pub const DEFAULT_LOST_AGENT_GRACE: Duration = Duration::from_secs(60);
/// Bounds of [`ServerConfig::max_output_bytes`]: 1 KiB to 64 GiB.
const MAX_OUTPUT_BYTES_RANGE: std::ops::RangeInclusive<u64> = 1024..=64 * 1024 * 1024 * 1024;

/// Default [`ServerConfig::session_idle_timeout`]: 20 minutes, as Session Manager's.
pub const DEFAULT_SESSION_IDLE_TIMEOUT: Duration = Duration::from_secs(20 * 60);
/// Default [`ServerConfig::session_max_duration`]: 12 hours.
pub const DEFAULT_SESSION_MAX_DURATION: Duration = Duration::from_secs(12 * 3600);

/// Default API/agent port.
pub const DEFAULT_LISTEN: &str = "0.0.0.0:8443";
/// Default `tls_handshake_timeout`.
pub const DEFAULT_TLS_HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(10);
/// Default `http_header_read_timeout`.
pub const DEFAULT_HTTP_HEADER_READ_TIMEOUT: Duration = Duration::from_secs(10);
/// Default `connection_idle_timeout`.
pub const DEFAULT_CONNECTION_IDLE_TIMEOUT: Duration = Duration::from_secs(120);
/// Default `max_connections`.
pub const DEFAULT_MAX_CONNECTIONS: usize = 50_000;
/// Default `max_anonymous_connections`.
pub const DEFAULT_MAX_ANONYMOUS_CONNECTIONS: usize = 4_096;
/// Default `max_anonymous_per_address`.
pub const DEFAULT_MAX_ANONYMOUS_PER_ADDRESS: usize = 256;

impl Default for ServerConfig {
    fn default() -> Self {
        ServerConfig {
            listen: SocketAddr::from(([0, 0, 0, 0], 8443)),
            data_dir: PathBuf::from("flotilla-data"),
            database_url: None,
            master_key_file: None,
            tls_names: Vec::new(),
            heartbeat_interval: Duration::from_secs(30),
            missed_heartbeats: 3,
            command_retention: Duration::from_secs(90 * 24 * 3600),
            advisory_max_age: DEFAULT_ADVISORY_MAX_AGE,
            inventory_history_retention: DEFAULT_INVENTORY_HISTORY_RETENTION,
            event_retention: DEFAULT_EVENT_RETENTION,
            tls_handshake_timeout: DEFAULT_TLS_HANDSHAKE_TIMEOUT,
            http_header_read_timeout: DEFAULT_HTTP_HEADER_READ_TIMEOUT,
            connection_idle_timeout: DEFAULT_CONNECTION_IDLE_TIMEOUT,
            max_connections: DEFAULT_MAX_CONNECTIONS,
            max_anonymous_connections: DEFAULT_MAX_ANONYMOUS_CONNECTIONS,
            max_anonymous_per_address: DEFAULT_MAX_ANONYMOUS_PER_ADDRESS,
            max_output_bytes: DEFAULT_MAX_OUTPUT_BYTES,
            session_idle_timeout: DEFAULT_SESSION_IDLE_TIMEOUT,
            session_max_duration: DEFAULT_SESSION_MAX_DURATION,
            session_run_as: "root".into(),
            lost_agent_grace: DEFAULT_LOST_AGENT_GRACE,
            delivery_attempts: 8,
            delivery_backoff: Duration::from_secs(1),
            delivery_backoff_cap: Duration::from_secs(600),
            delivery_concurrency: 4,
            delivery_retention: DEFAULT_DELIVERY_RETENTION,
            smtp_host: None,
            smtp_port: None,
            smtp_tls: SmtpTls::default(),
            smtp_username: None,
            smtp_password_file: None,
            smtp_from: None,
        }
    }
}

/// Every problem found in a configuration, reported together.
#[derive(Debug, thiserror::Error)]
#[error("invalid server configuration:\n  - {}", .0.join("\n  - "))]
pub struct ConfigError(pub Vec<String>);

impl ServerConfig {
    /// Reads `file` (if given), then applies `FLOTILLA_*` variables from `env`.
    pub fn load(file: Option<&Path>, env: impl Iterator<Item = (String, String)>) -> Result<Self, ConfigError> {
        let mut problems = Vec::new();
        let mut config = match file {
            Some(path) => match std::fs::read_to_string(path) {
                Ok(text) => match toml::from_str::<ServerConfig>(&text) {
                    Ok(c) => c,
                    Err(e) => return Err(ConfigError(vec![format!("{}: {}", path.display(), e.message())])),
                },
                Err(e) => return Err(ConfigError(vec![format!("cannot read {}: {e}", path.display())])),
            },
            None => ServerConfig::default(),
        };
        for (key, value) in env {
            let mut bad = |what: String| problems.push(format!("{key}={value:?}: {what}"));
            match key.as_str() {
                "FLOTILLA_LISTEN" => match value.parse() {
                    Ok(v) => config.listen = v,
                    Err(e) => bad(format!("not an address like 0.0.0.0:8443 ({e})")),
                },
                "FLOTILLA_DATA_DIR" => config.data_dir = PathBuf::from(value.clone()),
                "FLOTILLA_DATABASE_URL" => config.database_url = Some(value.clone()).filter(|v| !v.is_empty()),
                "FLOTILLA_MASTER_KEY_FILE" => {
                    config.master_key_file = Some(PathBuf::from(value.clone())).filter(|p| !p.as_os_str().is_empty())
                }
                "FLOTILLA_TLS_NAMES" => {
                    config.tls_names =
                        value.split(',').map(str::trim).filter(|s| !s.is_empty()).map(str::to_owned).collect()
                }
                "FLOTILLA_HEARTBEAT_INTERVAL" => match humantime::parse_duration(&value) {
                    Ok(v) => config.heartbeat_interval = v,
                    Err(e) => bad(format!("not a duration like 30s ({e})")),
                },
                "FLOTILLA_COMMAND_RETENTION" => match humantime::parse_duration(&value) {
                    Ok(v) => config.command_retention = v,
                    Err(e) => bad(format!("not a duration like 90d ({e})")),
                },
                "FLOTILLA_ADVISORY_MAX_AGE" => match humantime::parse_duration(&value) {
                    Ok(v) => config.advisory_max_age = v,
                    Err(e) => bad(format!("not a duration like 7d ({e})")),
                },
                "FLOTILLA_EVENT_RETENTION" => match humantime::parse_duration(&value) {
                    Ok(v) => config.event_retention = v,
                    Err(e) => bad(format!("not a duration like 30d ({e})")),
                },
                "FLOTILLA_INVENTORY_HISTORY_RETENTION" => match humantime::parse_duration(&value) {
                    Ok(v) => config.inventory_history_retention = v,
                    Err(e) => bad(format!("not a duration like 30d ({e})")),
                },
                "FLOTILLA_MAX_OUTPUT_BYTES" => match value.parse() {
                    Ok(v) => config.max_output_bytes = v,
                    Err(e) => bad(format!("not a whole number of bytes like 268435456 ({e})")),
                },
                "FLOTILLA_LOST_AGENT_GRACE" => match humantime::parse_duration(&value) {
                    Ok(v) => config.lost_agent_grace = v,
                    Err(e) => bad(format!("not a duration like 60s ({e})")),
                },
                "FLOTILLA_DELIVERY_ATTEMPTS" | "FLOTILLA_DELIVERY_CONCURRENCY" => match value.parse() {
                    Ok(v) if key == "FLOTILLA_DELIVERY_ATTEMPTS" => config.delivery_attempts = v,
                    Ok(v) => config.delivery_concurrency = v,
                    Err(e) => bad(format!("not a whole number ({e})")),
                },
                "FLOTILLA_DELIVERY_BACKOFF" | "FLOTILLA_DELIVERY_BACKOFF_CAP" => {
                    match humantime::parse_duration(&value) {
                        Ok(v) if key == "FLOTILLA_DELIVERY_BACKOFF" => config.delivery_backoff = v,
                        Ok(v) => config.delivery_backoff_cap = v,
                        Err(e) => bad(format!("not a duration like 1s ({e})")),
                    }
                }
                "FLOTILLA_SESSION_IDLE_TIMEOUT" | "FLOTILLA_SESSION_MAX_DURATION" => {
                    match humantime::parse_duration(&value) {
                        Ok(v) if key == "FLOTILLA_SESSION_IDLE_TIMEOUT" => config.session_idle_timeout = v,
                        Ok(v) => config.session_max_duration = v,
                        Err(e) => bad(format!("not a duration like 20m ({e})")),
                    }
                }
                "FLOTILLA_DELIVERY_RETENTION" => match humantime::parse_duration(&value) {
                    Ok(v) => config.delivery_retention = v,
                    Err(e) => bad(format!("not a duration like 7d ({e})")),
                },
                "FLOTILLA_SMTP_HOST" => config.smtp_host = Some(value.clone()).filter(|v| !v.is_empty()),
                "FLOTILLA_SMTP_PORT" => match value.parse() {
                    Ok(v) => config.smtp_port = Some(v),
                    Err(e) => bad(format!("not a port number like 587 ({e})")),
                },
                "FLOTILLA_SMTP_TLS" => match value.parse() {
                    Ok(v) => config.smtp_tls = v,
                    Err(e) => bad(e),
                },
                "FLOTILLA_SMTP_USERNAME" => config.smtp_username = Some(value.clone()).filter(|v| !v.is_empty()),
                "FLOTILLA_SMTP_PASSWORD_FILE" => {
                    config.smtp_password_file = Some(PathBuf::from(value.clone())).filter(|p| !p.as_os_str().is_empty())
                }
                "FLOTILLA_SMTP_FROM" => config.smtp_from = Some(value.clone()).filter(|v| !v.is_empty()),
                "FLOTILLA_SESSION_RUN_AS" => config.session_run_as = value.clone(),
                "FLOTILLA_MISSED_HEARTBEATS" => match value.parse() {
                    Ok(v) => config.missed_heartbeats = v,
                    Err(e) => bad(format!("not a whole number ({e})")),
                },
                "FLOTILLA_TLS_HANDSHAKE_TIMEOUT"
                | "FLOTILLA_HTTP_HEADER_READ_TIMEOUT"
                | "FLOTILLA_CONNECTION_IDLE_TIMEOUT" => match humantime::parse_duration(&value) {
                    Ok(v) => match key.as_str() {
                        "FLOTILLA_TLS_HANDSHAKE_TIMEOUT" => config.tls_handshake_timeout = v,
                        "FLOTILLA_HTTP_HEADER_READ_TIMEOUT" => config.http_header_read_timeout = v,
                        _ => config.connection_idle_timeout = v,
                    },
                    Err(e) => bad(format!("not a duration like 10s ({e})")),
                },
                "FLOTILLA_MAX_CONNECTIONS"
                | "FLOTILLA_MAX_ANONYMOUS_CONNECTIONS"
                | "FLOTILLA_MAX_ANONYMOUS_PER_ADDRESS" => match value.parse() {
                    Ok(v) => match key.as_str() {
                        "FLOTILLA_MAX_CONNECTIONS" => config.max_connections = v,
                        "FLOTILLA_MAX_ANONYMOUS_CONNECTIONS" => config.max_anonymous_connections = v,
                        _ => config.max_anonymous_per_address = v,
                    },
                    Err(e) => bad(format!("not a whole number ({e})")),
                },
                _ => {}
            }
        }
        problems.extend(config.check());
        if problems.is_empty() { Ok(config) } else { Err(ConfigError(problems)) }
    }

    /// The SMTP settings' problems: each is needed by another, and a From address must parse.
    fn check_smtp(&self) -> Vec<String> {
        let mut problems = Vec::new();
        match (&self.smtp_host, &self.smtp_from) {
            (Some(_), None) => problems.push(
                "smtp_host is set but smtp_from is not: give the From address of notification emails \
                 (FLOTILLA_SMTP_FROM, e.g. flotilla@example.com)"
                    .into(),
            ),
            (None, Some(_)) => problems.push("smtp_from is set but smtp_host is not: give the SMTP server".into()),
            _ => {}
        }
        if let Some(from) = &self.smtp_from
            && let Err(e) = from.parse::<lettre::message::Mailbox>()
        {
            problems.push(format!(
                "smtp_from = {from:?} is not an email address ({e}): use NAME <USER@DOMAIN> or USER@DOMAIN"
            ));
        }
        if self.smtp_username.is_some() != self.smtp_password_file.is_some() {
            problems.push(
                "smtp_username and smtp_password_file go together: give both, or neither to send without AUTH".into(),
            );
        }
        if self.smtp_username.is_some() && self.smtp_tls == SmtpTls::None {
            problems.push(
                "smtp_username with smtp_tls = none would send the password in clear: use starttls or tls".into(),
            );
        }
        if self.smtp_port == Some(0) {
            problems.push("smtp_port = 0 is not a port: use 1 to 65535".into());
        }
        problems
    }

    /// Where the master keyring lives.
    pub fn master_key_path(&self) -> PathBuf {
        self.master_key_file.clone().unwrap_or_else(|| self.data_dir.join("master.key"))
    }

    fn check(&self) -> Vec<String> {
        let mut problems = Vec::new();
        if self.heartbeat_interval < Duration::from_millis(100) || self.heartbeat_interval > Duration::from_secs(3600) {
            problems
                .push(format!("heartbeat_interval = {:?} is out of range: use 100ms to 1h", self.heartbeat_interval));
        }
        if self.command_retention < Duration::from_secs(1) {
            problems.push("command_retention must be at least 1s".into());
        }
        if self.advisory_max_age < Duration::from_secs(3600) {
            problems.push(format!("advisory_max_age = {:?} is too short: use at least 1h", self.advisory_max_age));
        }
        if self.event_retention < Duration::from_secs(1) {
            problems.push("event_retention must be at least 1s".into());
        }
        if self.inventory_history_retention < Duration::from_secs(1) {
            problems.push("inventory_history_retention must be at least 1s".into());
        }
        if !MAX_OUTPUT_BYTES_RANGE.contains(&self.max_output_bytes) {
            problems.push(format!(
                "max_output_bytes = {} is out of range: use 1024 (1 KiB) to 68719476736 (64 GiB)",
                self.max_output_bytes
            ));
        }
        if self.lost_agent_grace < Duration::from_secs(1) || self.lost_agent_grace > Duration::from_secs(24 * 3600) {
            problems.push(format!("lost_agent_grace = {:?} is out of range: use 1s to 24h", self.lost_agent_grace));
        }
        if !(1..=100).contains(&self.delivery_attempts) {
            problems.push(format!("delivery_attempts = {} is out of range: use 1 to 100", self.delivery_attempts));
        }
        if !(1..=256).contains(&self.delivery_concurrency) {
            problems
                .push(format!("delivery_concurrency = {} is out of range: use 1 to 256", self.delivery_concurrency));
        }
        if self.delivery_backoff < Duration::from_millis(10) || self.delivery_backoff > self.delivery_backoff_cap {
            problems.push(format!(
                "delivery_backoff = {:?} must be at least 10ms and at most delivery_backoff_cap ({:?})",
                self.delivery_backoff, self.delivery_backoff_cap
            ));
        }
        if self.delivery_backoff_cap > Duration::from_secs(24 * 3600) {
            problems.push(format!(
                "delivery_backoff_cap = {:?} is out of range: use at most 24h",
                self.delivery_backoff_cap
            ));
        }
        if self.delivery_retention < Duration::from_secs(60) {
            problems.push(format!("delivery_retention = {:?} is too short: use at least 1m", self.delivery_retention));
        }
        problems.extend(self.check_smtp());
        for (name, value) in
            [("session_idle_timeout", self.session_idle_timeout), ("session_max_duration", self.session_max_duration)]
        {
            if value < Duration::from_secs(1) || value > Duration::from_secs(7 * 24 * 3600) {
                problems.push(format!("{name} = {value:?} is out of range: use 1s to 7d"));
            }
        }
        if let Err(e) = flotilla_core::session::check_user(&self.session_run_as) {
            problems.push(format!("session_run_as: {e}"));
        }
        if self.missed_heartbeats == 0 {
            problems.push("missed_heartbeats must be at least 1".into());
        }
        for (name, value) in [
            ("tls_handshake_timeout", self.tls_handshake_timeout),
            ("http_header_read_timeout", self.http_header_read_timeout),
            ("connection_idle_timeout", self.connection_idle_timeout),
        ] {
            if value < Duration::from_millis(100) || value > Duration::from_secs(24 * 3600) {
                problems.push(format!("{name} = {value:?} is out of range: use 100ms to 24h"));
            }
        }
        if self.max_connections == 0 || self.max_anonymous_connections == 0 || self.max_anonymous_per_address == 0 {
            problems.push(
                "max_connections, max_anonymous_connections and max_anonymous_per_address must be at least 1".into(),
            );
        }
        if self.max_anonymous_connections > self.max_connections {
            problems.push(format!(
                "max_anonymous_connections ({}) is above max_connections ({}): anonymous clients could fill the room \
                 agents need; lower it",
                self.max_anonymous_connections, self.max_connections
            ));
        }
        if self.max_anonymous_per_address > self.max_anonymous_connections {
            problems.push(format!(
                "max_anonymous_per_address ({}) is above max_anonymous_connections ({}): lower it",
                self.max_anonymous_per_address, self.max_anonymous_connections
            ));
        }
        if let Some(url) = &self.database_url
            && !(url.starts_with("postgres://") || url.starts_with("postgresql://") || url.starts_with("sqlite://"))
        {
            problems.push("database_url must start with postgres:// (or sqlite://PATH)".into());
        }
        problems
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn env(pairs: &[(&str, &str)]) -> impl Iterator<Item = (String, String)> {
        pairs.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect::<Vec<_>>().into_iter()
    }

    #[test]
    fn env_overrides_and_reports_all_errors() {
        let c = ServerConfig::load(
            None,
            env(&[("FLOTILLA_LISTEN", "127.0.0.1:9000"), ("FLOTILLA_HEARTBEAT_INTERVAL", "2s")]),
        )
        .expect("valid");
        assert_eq!(c.listen.port(), 9000);
        assert_eq!(c.heartbeat_interval, Duration::from_secs(2));
        let err = ServerConfig::load(None, env(&[("FLOTILLA_LISTEN", "nope"), ("FLOTILLA_MISSED_HEARTBEATS", "0")]))
            .expect_err("invalid");
        assert_eq!(err.0.len(), 2, "{err}");
        let c = ServerConfig::load(
            None,
            env(&[("FLOTILLA_MAX_OUTPUT_BYTES", "2147483648"), ("FLOTILLA_LOST_AGENT_GRACE", "5s")]),
        )
        .expect("valid");
        assert_eq!((c.max_output_bytes, c.lost_agent_grace), (2 << 30, Duration::from_secs(5)));
        assert_eq!(ServerConfig::default().max_output_bytes, 256 << 20);
        let err = ServerConfig::load(
            None,
            env(&[
                ("FLOTILLA_MAX_OUTPUT_BYTES", "10"),
                ("FLOTILLA_LOST_AGENT_GRACE", "0s"),
                ("FLOTILLA_MAX_OUTPUT_BYTES", "x"),
            ]),
        )
        .expect_err("invalid");
        assert_eq!(err.0.len(), 3, "{err}");
    }

    #[test]
    fn connection_limits_are_read_and_checked() {
        let c = ServerConfig::load(
            None,
            env(&[
                ("FLOTILLA_HTTP_HEADER_READ_TIMEOUT", "3s"),
                ("FLOTILLA_CONNECTION_IDLE_TIMEOUT", "1m"),
                ("FLOTILLA_TLS_HANDSHAKE_TIMEOUT", "2s"),
                ("FLOTILLA_MAX_CONNECTIONS", "100"),
                ("FLOTILLA_MAX_ANONYMOUS_CONNECTIONS", "50"),
                ("FLOTILLA_MAX_ANONYMOUS_PER_ADDRESS", "5"),
            ]),
        )
        .expect("valid");
        assert_eq!(
            (c.http_header_read_timeout, c.connection_idle_timeout, c.tls_handshake_timeout),
            (Duration::from_secs(3), Duration::from_secs(60), Duration::from_secs(2))
        );
        assert_eq!((c.max_connections, c.max_anonymous_connections, c.max_anonymous_per_address), (100, 50, 5));
        let err = ServerConfig::load(
            None,
            env(&[
                ("FLOTILLA_MAX_CONNECTIONS", "10"),
                ("FLOTILLA_MAX_ANONYMOUS_CONNECTIONS", "20"),
                ("FLOTILLA_HTTP_HEADER_READ_TIMEOUT", "0s"),
                ("FLOTILLA_MAX_ANONYMOUS_PER_ADDRESS", "many"),
            ]),
        )
        .expect_err("invalid");
        assert_eq!(err.0.len(), 4, "{err}");
    }

    #[test]
    fn delivery_settings_are_read_and_checked() {
        let c = ServerConfig::load(
            None,
            env(&[
                ("FLOTILLA_DELIVERY_ATTEMPTS", "3"),
                ("FLOTILLA_DELIVERY_BACKOFF", "100ms"),
                ("FLOTILLA_DELIVERY_BACKOFF_CAP", "2s"),
                ("FLOTILLA_DELIVERY_CONCURRENCY", "2"),
            ]),
        )
        .expect("valid");
        assert_eq!(
            (c.delivery_attempts, c.delivery_backoff, c.delivery_backoff_cap, c.delivery_concurrency),
            (3, Duration::from_millis(100), Duration::from_secs(2), 2)
        );
        let err = ServerConfig::load(
            None,
            env(&[
                ("FLOTILLA_DELIVERY_ATTEMPTS", "0"),
                ("FLOTILLA_DELIVERY_BACKOFF", "1h"),
                ("FLOTILLA_DELIVERY_CONCURRENCY", "x"),
            ]),
        )
        .expect_err("invalid");
        assert_eq!(err.0.len(), 3, "{err}");
    }

    #[test]
    fn smtp_settings_are_read_and_checked() {
        let c = ServerConfig::load(
            None,
            env(&[
                ("FLOTILLA_SMTP_HOST", "mail.example.com"),
                ("FLOTILLA_SMTP_TLS", "tls"),
                ("FLOTILLA_SMTP_USERNAME", "flotilla"),
                ("FLOTILLA_SMTP_PASSWORD_FILE", "/etc/flotilla/smtp.password"),
                ("FLOTILLA_SMTP_FROM", "Flotilla <flotilla@example.com>"),
                ("FLOTILLA_DELIVERY_RETENTION", "2d"),
            ]),
        )
        .expect("valid");
        assert_eq!((c.smtp_tls, c.smtp_port, c.smtp_tls.default_port()), (SmtpTls::Tls, None, 465));
        assert_eq!(c.smtp_host.as_deref(), Some("mail.example.com"));
        assert_eq!(c.delivery_retention, Duration::from_secs(2 * 24 * 3600));
        assert_eq!(ServerConfig::default().smtp_tls, SmtpTls::Starttls);
        let err = ServerConfig::load(
            None,
            env(&[
                ("FLOTILLA_SMTP_HOST", "mail.example.com"),
                ("FLOTILLA_SMTP_TLS", "sometimes"),
                ("FLOTILLA_SMTP_PORT", "x"),
                ("FLOTILLA_SMTP_USERNAME", "u"),
            ]),
        )
        .expect_err("invalid");
        let text = err.to_string();
        assert!(
            text.contains("none, starttls, tls") && text.contains("smtp_from") && text.contains("go together"),
            "{text}"
        );
        assert_eq!(err.0.len(), 4, "{err}");
        let err = ServerConfig::load(
            None,
            env(&[
                ("FLOTILLA_SMTP_HOST", "h"),
                ("FLOTILLA_SMTP_FROM", "not an address"),
                ("FLOTILLA_SMTP_TLS", "none"),
                ("FLOTILLA_SMTP_USERNAME", "u"),
                ("FLOTILLA_SMTP_PASSWORD_FILE", "/p"),
            ]),
        )
        .expect_err("invalid");
        assert!(err.to_string().contains("not an email address") && err.to_string().contains("in clear"), "{err}");
    }

    #[test]
    fn unknown_keys_are_refused() {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("server.toml");
        std::fs::write(&path, "listen = \"127.0.0.1:1\"\nheartbeat_intervall = \"1s\"\n").expect("write");
        let err = ServerConfig::load(Some(&path), env(&[])).expect_err("typo refused");
        assert!(err.to_string().contains("heartbeat_intervall"), "{err}");
        std::fs::write(&path, "heartbeat_interval = \"5s\"\ndatabase_url = \"postgres://x@y/z\"\n").expect("write");
        let c = ServerConfig::load(Some(&path), env(&[])).expect("valid");
        assert_eq!(c.heartbeat_interval, Duration::from_secs(5));
    }
}
