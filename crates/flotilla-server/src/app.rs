//! The application state: the platform plus each capability's own shared parts. Capabilities
//! take `&AppState`; the platform never sees it (its handlers and workers take `Platform`).

use std::ops::Deref;
use std::sync::Arc;

use axum::extract::FromRef;

use crate::notifications::Dispatcher;
use crate::platform::{Platform, PlatformState};
use crate::runcommand::RunState;
use crate::statemanager::Reconciler;

pub(crate) struct AppState {
    pub platform: Arc<Platform>,
    pub run: RunState,
    /// Wakes State Manager's reconciler.
    pub associations: Reconciler,
    /// Wakes the notification sender.
    pub notifications: Dispatcher,
    /// The sessions open in this process.
    pub sessions: crate::sessions::SessionState,
}

impl Deref for AppState {
    type Target = Platform;

    fn deref(&self) -> &Platform {
        &self.platform
    }
}

impl FromRef<Arc<AppState>> for PlatformState {
    fn from_ref(state: &Arc<AppState>) -> PlatformState {
        PlatformState(state.platform.clone())
    }
}
