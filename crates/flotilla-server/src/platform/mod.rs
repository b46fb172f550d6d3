//! The platform: what every capability stands on (store access, artifact store, keys, PKI,
//! the event log, the connection registry, the listener, the named workers, configuration,
//! metrics, the HTTP error mapping). It knows no capability: nothing here imports `crate::app`, `crate::http` or a
//! capability module (checked by `tests/layout.rs`).

pub mod api_error;
pub mod artifact;
pub mod bootstrap;
pub mod config;
pub mod error;
pub mod events;
pub mod extract;
pub mod http;
pub mod keys;
pub mod listener;
pub mod metrics;
pub mod pki;
pub mod registry;
pub mod scheduler;
pub mod secret;
pub mod status;
pub mod streams;
pub mod worker;

use std::sync::Arc;

use flotilla_store::Store;

pub use config::ServerConfig;
pub use error::ServiceError;

/// What every capability shares in one server process.
pub struct Platform {
    pub store: Arc<dyn Store>,
    pub artifacts: artifact::ArtifactStore,
    pub keys: keys::KeyService,
    pub events: events::EventLog,
    pub registry: registry::Registry,
    pub pki: pki::Pki,
    pub metrics: metrics::Metrics,
    /// Every background task, by name (`GET /api/v1/server/status`).
    pub workers: worker::Workers,
    pub config: ServerConfig,
    /// The one scheduler; capabilities call `changed()` when they change a schedule.
    pub scheduler: Arc<scheduler::Scheduler>,
}

/// The platform as axum state: what platform handlers extract (`State<PlatformState>`), from
/// whatever state the router holds, without naming it.
#[derive(Clone)]
pub struct PlatformState(pub Arc<Platform>);

impl std::ops::Deref for PlatformState {
    type Target = Platform;

    fn deref(&self) -> &Platform {
        &self.0
    }
}

/// Milliseconds since the Unix epoch, now.
pub fn now_ms() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| i64::try_from(d.as_millis()).unwrap_or(i64::MAX))
        .unwrap_or(0)
}
