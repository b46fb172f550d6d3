//! A typed client for `/api/v1` and `/agent/v1` over HTTPS, trusting the server's private CA.

mod parameters;
mod sessions;

use serde::Serialize;
use serde::de::DeserializeOwned;

use crate::types::*;

/// Why a call failed.
#[derive(Debug, thiserror::Error)]
pub enum ClientError {
    #[error("the CA certificate is not valid PEM: {0}")]
    BadCa(String),
    #[error("cannot build an HTTPS client: {0}")]
    Build(String),
    #[error("cannot reach the Flotilla server at {url}: {detail}")]
    Unreachable { url: String, detail: String },
    #[error("{message} (HTTP {status})")]
    Api { status: u16, code: String, message: String },
    #[error("the server's reply to {what} could not be read: {detail}")]
    BadReply { what: String, detail: String },
}

/// Talks to one Flotilla server.
#[derive(Clone)]
pub struct Client {
    http: reqwest::Client,
    /// For session streams (HTTP/1.1 upgrades): no overall timeout, they last for hours.
    streams: reqwest::Client,
    base: String,
    token: Option<String>,
}

fn describe(err: &reqwest::Error) -> String {
    // reqwest's top-level message is generic; the cause chain says what actually happened.
    let mut text = err.to_string();
    let mut source = std::error::Error::source(err);
    while let Some(s) = source {
        text.push_str(": ");
        text.push_str(&s.to_string());
        source = s.source();
    }
    text
}

impl Client {
    /// `ca_pem` is the server's CA (the `ca.pem` of its data dir); without it the system
    /// roots are trusted.
    pub fn new(base_url: &str, token: Option<String>, ca_pem: Option<&[u8]>) -> Result<Self, ClientError> {
        let mut builder = reqwest::Client::builder()
            .tls_backend_rustls()
            .connect_timeout(std::time::Duration::from_secs(10))
            .timeout(std::time::Duration::from_secs(60));
        let mut streams = reqwest::Client::builder()
            .tls_backend_rustls()
            .connect_timeout(std::time::Duration::from_secs(10))
            .http1_only()
            .tcp_nodelay(true);
        if let Some(pem) = ca_pem {
            let certs = reqwest::Certificate::from_pem_bundle(pem).map_err(|e| ClientError::BadCa(e.to_string()))?;
            if certs.is_empty() {
                return Err(ClientError::BadCa("no certificate found".into()));
            }
            builder = builder.tls_certs_only(certs.clone());
            streams = streams.tls_certs_only(certs);
        }
        let http = builder.build().map_err(|e| ClientError::Build(describe(&e)))?;
        let streams = streams.build().map_err(|e| ClientError::Build(describe(&e)))?;
        Ok(Client { http, streams, base: base_url.trim_end_matches('/').to_owned(), token })
    }

    /// The bearer token this client sends, if any.
    pub fn token(&self) -> Option<&str> {
        self.token.as_deref()
    }

    pub fn base_url(&self) -> &str {
        &self.base
    }

    /// Sends a request and returns the reply's bytes, or the server's error.
    async fn send<B: Serialize>(
        &self,
        method: reqwest::Method,
        path: &str,
        body: Option<&B>,
    ) -> Result<Vec<u8>, ClientError> {
        let url = format!("{}{}", self.base, path);
        let mut req = self.http.request(method.clone(), &url);
        if let Some(token) = &self.token {
            req = req.bearer_auth(token);
        }
        if let Some(body) = body {
            req = req.json(body);
        }
        let unreachable = |e: reqwest::Error| ClientError::Unreachable { url: self.base.clone(), detail: describe(&e) };
        let resp = req.send().await.map_err(unreachable)?;
        let status = resp.status();
        let bytes = resp.bytes().await.map_err(unreachable)?;
        if status.is_success() {
            return Ok(bytes.to_vec());
        }
        Err(match serde_json::from_slice::<ErrorBody>(&bytes) {
            Ok(body) => {
                ClientError::Api { status: status.as_u16(), code: body.error.code, message: body.error.message }
            }
            Err(_) => ClientError::Api {
                status: status.as_u16(),
                code: "http".into(),
                message: format!("{method} {path} failed: {}", String::from_utf8_lossy(&bytes).trim()),
            },
        })
    }

    /// Opens a session stream: `GET path` upgraded to `flotilla-session`. Returns the session
    /// id the server names and the bidirectional byte stream, or the server's error.
    pub async fn open_stream(&self, path: &str) -> Result<(String, reqwest::Upgraded), ClientError> {
        let url = format!("{}{}", self.base, path);
        let mut req = self
            .streams
            .get(&url)
            .header(reqwest::header::CONNECTION, "upgrade")
            .header(reqwest::header::UPGRADE, crate::sessions::UPGRADE_PROTOCOL);
        if let Some(token) = &self.token {
            req = req.bearer_auth(token);
        }
        let unreachable = |e: reqwest::Error| ClientError::Unreachable { url: self.base.clone(), detail: describe(&e) };
        let resp = req.send().await.map_err(unreachable)?;
        let status = resp.status();
        if status != reqwest::StatusCode::SWITCHING_PROTOCOLS {
            let bytes = resp.bytes().await.map_err(unreachable)?;
            return Err(match serde_json::from_slice::<ErrorBody>(&bytes) {
                Ok(body) => {
                    ClientError::Api { status: status.as_u16(), code: body.error.code, message: body.error.message }
                }
                Err(_) => ClientError::Api {
                    status: status.as_u16(),
                    code: "http".into(),
                    message: format!(
                        "GET {path} did not open a session stream: {}",
                        String::from_utf8_lossy(&bytes).trim()
                    ),
                },
            });
        }
        let id = resp
            .headers()
            .get(crate::sessions::SESSION_ID_HEADER)
            .and_then(|v| v.to_str().ok())
            .unwrap_or_default()
            .to_owned();
        let io = resp.upgrade().await.map_err(unreachable)?;
        Ok((id, io))
    }

    pub(crate) async fn call<B: Serialize, T: DeserializeOwned>(
        &self,
        method: reqwest::Method,
        path: &str,
        body: Option<&B>,
    ) -> Result<T, ClientError> {
        let bytes = self.send(method.clone(), path, body).await?;
        let body: &[u8] = if bytes.is_empty() { b"null" } else { &bytes };
        serde_json::from_slice(body)
            .map_err(|e| ClientError::BadReply { what: format!("{method} {path}"), detail: e.to_string() })
    }

    pub(crate) async fn get<T: DeserializeOwned>(&self, path: &str) -> Result<T, ClientError> {
        self.call::<(), T>(reqwest::Method::GET, path, None).await
    }

    pub async fn version(&self) -> Result<VersionInfo, ClientError> {
        self.get("/api/v1/version").await
    }

    pub async fn create_activation(&self, req: &CreateActivation) -> Result<Activation, ClientError> {
        self.call(reqwest::Method::POST, "/api/v1/activations", Some(req)).await
    }

    pub async fn list_activations(&self) -> Result<Vec<Activation>, ClientError> {
        self.get("/api/v1/activations").await
    }

    pub async fn delete_activation(&self, id: &str) -> Result<(), ClientError> {
        self.call::<(), ()>(reqwest::Method::DELETE, &format!("/api/v1/activations/{}", enc(id)), None).await
    }

    /// Nodes matching the union of `targets` (all nodes, deregistered included, when empty).
    pub async fn list_nodes(&self, targets: &[String]) -> Result<Vec<Node>, ClientError> {
        let query: Vec<String> = targets.iter().map(|t| format!("target={}", enc(t))).collect();
        let path =
            if query.is_empty() { "/api/v1/nodes".to_owned() } else { format!("/api/v1/nodes?{}", query.join("&")) };
        self.get(&path).await
    }

    pub async fn get_node(&self, id: &str) -> Result<Node, ClientError> {
        self.get(&format!("/api/v1/nodes/{}", enc(id))).await
    }

    pub async fn tag_node(&self, id: &str, req: &TagNode) -> Result<Node, ClientError> {
        self.call(reqwest::Method::POST, &format!("/api/v1/nodes/{}/tags", enc(id)), Some(req)).await
    }

    pub async fn untag_node(&self, id: &str, req: &UntagNode) -> Result<Node, ClientError> {
        self.call(reqwest::Method::POST, &format!("/api/v1/nodes/{}/untag", enc(id)), Some(req)).await
    }

    pub async fn deregister_node(&self, id: &str) -> Result<Node, ClientError> {
        self.call::<(), Node>(reqwest::Method::POST, &format!("/api/v1/nodes/{}/deregister", enc(id)), None).await
    }

    pub async fn put_group(&self, group: &Group) -> Result<Group, ClientError> {
        self.call(reqwest::Method::PUT, &format!("/api/v1/groups/{}", enc(&group.name)), Some(group)).await
    }

    pub async fn list_groups(&self) -> Result<Vec<Group>, ClientError> {
        self.get("/api/v1/groups").await
    }

    pub async fn delete_group(&self, name: &str) -> Result<(), ClientError> {
        self.call::<(), ()>(reqwest::Method::DELETE, &format!("/api/v1/groups/{}", enc(name)), None).await
    }

    pub async fn list_documents(&self) -> Result<Vec<DocumentSummary>, ClientError> {
        self.get("/api/v1/documents").await
    }

    pub async fn get_document(&self, name: &str, version: Option<i64>) -> Result<Document, ClientError> {
        let query = version.map(|v| format!("?version={v}")).unwrap_or_default();
        self.get(&format!("/api/v1/documents/{}{query}", enc(name))).await
    }

    pub async fn create_document(&self, req: &PutDocument) -> Result<Document, ClientError> {
        self.call(reqwest::Method::POST, "/api/v1/documents", Some(req)).await
    }

    pub async fn update_document(&self, req: &PutDocument) -> Result<Document, ClientError> {
        self.call(reqwest::Method::PUT, &format!("/api/v1/documents/{}", enc(&req.name)), Some(req)).await
    }

    pub async fn create_command(&self, req: &CreateCommand) -> Result<Command, ClientError> {
        self.call(reqwest::Method::POST, "/api/v1/commands", Some(req)).await
    }

    pub async fn list_commands(&self) -> Result<Vec<Command>, ClientError> {
        self.get("/api/v1/commands").await
    }

    pub async fn get_command(&self, id: &str) -> Result<Command, ClientError> {
        self.get(&format!("/api/v1/commands/{}", enc(id))).await
    }

    pub async fn cancel_command(&self, id: &str) -> Result<Command, ClientError> {
        self.call::<(), Command>(reqwest::Method::POST, &format!("/api/v1/commands/{}/cancel", enc(id)), None).await
    }

    /// The full output of one stream (`stdout` or `stderr`), byte for byte.
    pub async fn invocation_output(&self, id: &str, node: &str, stream: &str) -> Result<Vec<u8>, ClientError> {
        let path = format!("/api/v1/commands/{}/invocations/{}/output?stream={}", enc(id), enc(node), enc(stream));
        self.send::<()>(reqwest::Method::GET, &path, None).await
    }

    /// The highest event sequence number so far.
    pub async fn last_event_seq(&self) -> Result<EventsHead, ClientError> {
        self.get("/api/v1/events/last").await
    }

    /// Events after `query.after`, oldest first. With `wait`, the server holds the request
    /// until a matching event exists or the wait ends (then the list is empty).
    pub async fn list_events(&self, query: &EventQuery) -> Result<Vec<Event>, ClientError> {
        let mut path = format!("/api/v1/events?after={}", query.after);
        for t in &query.types {
            path.push_str(&format!("&type={}", enc(t)));
        }
        if let Some(limit) = query.limit {
            path.push_str(&format!("&limit={limit}"));
        }
        if let Some(wait) = query.wait {
            path.push_str(&format!("&wait={wait}"));
        }
        self.get(&path).await
    }

    /// The server's workers, agents and store (`flotilla server status`).
    pub async fn server_status(&self) -> Result<crate::server::ServerStatus, ClientError> {
        self.get("/api/v1/server/status").await
    }

    /// Enrolls an agent (no API token needed: the activation code is the credential).
    pub async fn register(&self, req: &RegisterRequest) -> Result<RegisterResponse, ClientError> {
        self.call(reqwest::Method::POST, "/agent/v1/register", Some(req)).await
    }
}

/// Percent-encodes a path segment or query value.
pub(crate) fn enc(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for b in s.bytes() {
        if b.is_ascii_alphanumeric() || b"-._~".contains(&b) {
            out.push(b as char);
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}
