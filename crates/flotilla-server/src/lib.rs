//! Flotilla's control plane.
//!
//! Entry point: [`Server::start`] binds one TLS address that serves the operator API
//! (`/api/v1`), enrollment (`/agent/v1`), the agent channel (gRPC `flotilla.agent.v1`), and
//! `/healthz`, `/readyz`, `/metrics`. Layout: `platform` (store access, keys, PKI, artifacts,
//! events, registry, listener, config, metrics) knows no capability; each capability folder
//! (`fleet`, `runcommand`, `inventory`, `assessments`, `parameters`, `statemanager`,
//! `compliance`, `windows`) owns its services, workers
//! and HTTP handlers; `app` holds the shared state and `http` assembles the routes. This file
//! wires them at start.

mod app;
mod assessments;
mod compliance;
mod fleet;
mod http;
mod inventory;
mod notifications;
mod parameters;
mod patch;
mod platform;
mod runcommand;
mod sessions;
mod statemanager;
mod windows;

use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context;
use tokio_util::sync::CancellationToken;

/// The advisory database for tools and tests that use it without a server: the CVE rule, and
/// import of records as the API carries them.
pub mod vulndb {
    pub use crate::assessments::vulndb::*;
    pub use crate::assessments::vulndb_http::import_request as import;
}
pub use config::ServerConfig;
pub use platform::error::ServiceError;
pub use platform::worker::{LastRun, WorkerContext, WorkerError, WorkerResult, WorkerSnapshot, WorkerState, Workers};
pub use platform::{artifact, config, keys};

/// How long [`Server::stop`] waits for all workers together before aborting the late ones.
pub const STOP_DEADLINE: Duration = Duration::from_secs(10);

use app::AppState;
use platform::{Platform, bootstrap, listener, metrics, registry, scheduler};
use runcommand::{documents, engine, output, retention};

/// A running server.
pub struct Server {
    /// The address actually bound (useful with port 0).
    pub addr: SocketAddr,
    /// `https://HOST:PORT` for clients and agents.
    pub url: String,
    pub data_dir: PathBuf,
    shutdown: CancellationToken,
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
        let artifacts =
            platform::artifact::ArtifactStore::local(&config.data_dir.join("artifacts"), boot.keys.clone())?;
        let output = output::OutputSpool::new(&config.data_dir.join("spool"), config.max_output_bytes)
            .with_context(|| format!("cannot create {}", config.data_dir.join("spool").display()))?;
        let (engine, engine_events) = engine::Engine::new();
        let platform = Arc::new(Platform {
            events: platform::events::EventLog::new(store.clone()),
            scheduler: Arc::new(scheduler::Scheduler::new(store.clone(), url.clone())),
            store,
            artifacts,
            keys: boot.keys,
            registry: registry::Registry::default(),
            pki: boot.pki,
            metrics: metrics::Metrics::new(),
            workers: Workers::new(shutdown.clone()),
            config: config.clone(),
        });
        let state = Arc::new(AppState {
            platform: platform.clone(),
            run: runcommand::RunState { engine, output },
            associations: statemanager::Reconciler::default(),
            notifications: notifications::Dispatcher::default(),
            sessions: sessions::SessionState::default(),
        });
        sessions::recover(&state).await.context("cannot end the sessions a stopped server left open")?;
        documents::install_builtins(&state).await.context("cannot install the built-in documents")?;
        patch::seed(&state).await.context("cannot install the predefined patch baselines")?;
        notifications::seed::install(&state)
            .await
            .context("cannot create the shipped `daily` template, topics and rules")?;
        let tls = state.pki.server_tls_config().context("cannot build the TLS configuration")?;
        let app = http::router(state.clone());
        spawn_workers(&state, listener, tls, app, engine_events).context("cannot start the background workers")?;
        assessments::resume(&state).await.context("cannot resume unfinished assessment runs")?;
        windows::driver::resume(&state).await.context("cannot resume unfinished maintenance window executions")?;
        tracing::info!(%url, store = state.store.backend(), data_dir = %config.data_dir.display(), "flotilla server started");
        Ok(Server { addr, url, data_dir: config.data_dir.clone(), shutdown, state, _lock: boot.lock })
    }

    /// The server's named workers: their status, and a way to add one (tests add a worker
    /// that panics to see the server keep serving).
    pub fn workers(&self) -> &Workers {
        &self.state.workers
    }

    /// Token that stops the server when cancelled.
    pub fn shutdown_token(&self) -> CancellationToken {
        self.shutdown.clone()
    }

    /// Stops accepting, closes agent streams, waits for every worker against one deadline
    /// ([`STOP_DEADLINE`]; the late ones are named in the log and aborted), flushes the store.
    pub async fn stop(self) {
        self.state.workers.shutdown(tokio::time::Instant::now() + STOP_DEADLINE).await;
        if let Err(e) = self.state.registry.flush(self.state.store.as_ref()).await {
            tracing::warn!("last-seen flush at shutdown failed: {e}");
        }
    }
}

/// Every long-lived background task of the server, each as a named worker (restarted with
/// backoff if it fails or panics). Not workers: each agent stream's tasks and each accepted
/// connection's task (owned by their connection, as many as there are agents, ended with it),
/// and the engine's per-invocation output persist tasks (short, reported back to the engine).
fn spawn_workers(
    state: &Arc<AppState>,
    listener: tokio::net::TcpListener,
    tls: Arc<rustls::ServerConfig>,
    app: axum::Router,
    engine_events: tokio::sync::mpsc::Receiver<engine::Event>,
) -> Result<(), WorkerError> {
    let workers = &state.workers;
    let listener = Arc::new(listener);
    let table = listener::Table::new(listener::Limits::from_config(&state.config), state.metrics.listener.clone());
    workers.spawn("listener", move |ctx| {
        let (listener, tls, app, table) = (listener.clone(), tls.clone(), app.clone(), table.clone());
        async move {
            listener::serve(listener, tls, app, table, ctx.token().clone()).await;
            Ok(())
        }
    })?;
    let platform = state.platform.clone();
    workers.spawn("liveness", move |ctx| {
        let platform = platform.clone();
        async move {
            registry::liveness_worker(platform, ctx).await;
            Ok(())
        }
    })?;
    // The queue outlives an engine that panicked; the next engine takes it over (the lock is
    // only ever held by the one running engine, for its whole life).
    let events = Arc::new(tokio::sync::Mutex::new(engine_events));
    let s = state.clone();
    workers.spawn("engine", move |ctx| {
        let (s, events) = (s.clone(), events.clone());
        async move {
            let mut events = events.lock().await;
            engine::run(s, &mut events, &ctx).await;
            Ok(())
        }
    })?;
    let s = state.clone();
    workers.spawn("retention", move |ctx| {
        let s = s.clone();
        async move {
            retention::retention_worker(s, ctx).await;
            Ok(())
        }
    })?;
    // Each capability's schedules, fired by the one scheduler.
    let schedules: Vec<Arc<dyn scheduler::ScheduleSource>> = vec![
        Arc::new(assessments::templates::TemplateSchedules::new(state.clone())),
        Arc::new(statemanager::AssociationSchedules::new(state.clone())),
        Arc::new(windows::schedules::WindowSchedules::new(state.clone())),
    ];
    let scheduler = state.scheduler.clone();
    workers.spawn("scheduler", move |ctx| {
        let (scheduler, schedules) = (scheduler.clone(), schedules.clone());
        async move {
            scheduler.run(&schedules, &ctx).await;
            Ok(())
        }
    })?;
    let s = state.clone();
    workers.spawn("associations", move |ctx| {
        let s = s.clone();
        async move { statemanager::reconciler::run(s, &ctx).await }
    })?;
    notifications::spawn(state)?;
    Ok(())
}
