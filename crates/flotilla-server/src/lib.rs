//! Flotilla's control plane.
//!
//! Entry point: [`Server::start`] binds one TLS address that serves the operator API
//! (`/api/v1`), enrollment (`/agent/v1`), the agent channel (gRPC `flotilla.agent.v1`), and
//! `/healthz`, `/readyz`, `/metrics`. Layers: `http` handlers only parse, authorise and call the
//! services (`enrollment`, `fleet`); services use the [`flotilla_store::Store`] trait and the
//! pure rules of `flotilla_core`; `gateway` owns agent streams and `registry` who is connected.

pub mod artifact;
mod assess;
mod bootstrap;
mod commands;
pub mod config;
mod documents;
mod engine;
mod enrollment;
mod error;
mod events;
mod fleet;
mod gateway;
mod http;
mod inventory;
pub mod keys;
mod listener;
mod metrics;
mod output;
mod parameters;
mod pki;
mod platform;
mod registry;
mod retention;
mod secret;
pub mod vulndb;

use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context;
use flotilla_store::Store;
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;

pub use config::ServerConfig;
pub use error::ServiceError;

/// Shared state of one server process.
pub(crate) struct AppState {
    pub store: Arc<dyn Store>,
    pub artifacts: artifact::ArtifactStore,
    pub keys: keys::KeyService,
    pub output: output::OutputSpool,
    pub engine: engine::Engine,
    pub events: events::EventBus,
    pub registry: registry::Registry,
    pub pki: pki::Pki,
    pub metrics: metrics::Metrics,
    pub config: ServerConfig,
}

/// Milliseconds since the Unix epoch, now.
pub(crate) fn now_ms() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| i64::try_from(d.as_millis()).unwrap_or(i64::MAX))
        .unwrap_or(0)
}

/// A running server.
pub struct Server {
    /// The address actually bound (useful with port 0).
    pub addr: SocketAddr,
    /// `https://HOST:PORT` for clients and agents.
    pub url: String,
    pub data_dir: PathBuf,
    shutdown: CancellationToken,
    tasks: Vec<JoinHandle<()>>,
    state: Arc<AppState>,
    _lock: bootstrap::DataDirLock,
}

impl Server {
    /// Prepares the data dir (CA, certificates, master key, admin token on first start), opens
    /// the store, binds the listener and starts serving and the background workers.
    pub async fn start(config: ServerConfig) -> anyhow::Result<Server> {
        let boot = bootstrap::prepare(&config).await?;
        let store = boot.store;
        let listener = tokio::net::TcpListener::bind(config.listen).await.with_context(|| {
            format!("cannot listen on {}: is another server using it? choose another with --listen", config.listen)
        })?;
        let addr = listener.local_addr().context("cannot read the bound address")?;
        let host = match config.listen.ip() {
            ip if ip.is_unspecified() => "127.0.0.1".to_owned(),
            std::net::IpAddr::V6(ip) => format!("[{ip}]"),
            ip => ip.to_string(),
        };
        let url = format!("https://{host}:{}", addr.port());
        let shutdown = CancellationToken::new();
        let artifacts = artifact::ArtifactStore::local(&config.data_dir.join("artifacts"), boot.keys.clone())?;
        let output = output::OutputSpool::new(&config.data_dir.join("spool"), config.max_output_bytes)
            .with_context(|| format!("cannot create {}", config.data_dir.join("spool").display()))?;
        let (engine, engine_events) = engine::Engine::new();
        let state = Arc::new(AppState {
            store,
            artifacts,
            keys: boot.keys,
            output,
            engine,
            events: events::EventBus::new(),
            registry: registry::Registry::default(),
            pki: boot.pki,
            metrics: metrics::Metrics::new(),
            config: config.clone(),
        });
        documents::install_builtins(&state).await.context("cannot install the built-in documents")?;
        let tls = state.pki.server_tls_config().context("cannot build the TLS configuration")?;
        let app = http::router(state.clone());
        let tasks = vec![
            tokio::spawn(listener::serve(
                listener,
                tls,
                app,
                listener::Table::new(listener::Limits::from_config(&config), state.metrics.listener.clone()),
                shutdown.clone(),
            )),
            tokio::spawn(registry::liveness_worker(state.clone(), shutdown.clone())),
            tokio::spawn(engine::run(state.clone(), engine_events, shutdown.clone())),
            tokio::spawn(retention::retention_worker(state.clone(), shutdown.clone())),
            tokio::spawn(assess::schedule_worker(state.clone(), shutdown.clone())),
        ];
        assess::resume(&state).await.context("cannot resume unfinished assessment runs")?;
        tracing::info!(%url, store = state.store.backend(), data_dir = %config.data_dir.display(), "flotilla server started");
        Ok(Server { addr, url, data_dir: config.data_dir.clone(), shutdown, tasks, state, _lock: boot.lock })
    }

    /// Token that stops the server when cancelled.
    pub fn shutdown_token(&self) -> CancellationToken {
        self.shutdown.clone()
    }

    /// Stops accepting, closes agent streams, waits (bounded) for tasks, flushes the store.
    pub async fn stop(self) {
        self.shutdown.cancel();
        for task in self.tasks {
            let _ = tokio::time::timeout(Duration::from_secs(10), task).await;
        }
        if let Err(e) = self.state.registry.flush(self.state.store.as_ref()).await {
            tracing::warn!("last-seen flush at shutdown failed: {e}");
        }
    }
}
