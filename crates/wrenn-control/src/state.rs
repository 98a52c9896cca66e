//! Shared state of the HTTP handlers: the core, and what only the HTTP front end needs.

use std::ops::Deref;
use std::sync::Arc;

use wrenn_host::HostApi;

use crate::config::ControlConfig;
use crate::core::Core;
use crate::limits::WsSlots;
use crate::store::Store;

/// Everything a handler needs; cheap to clone. Derefs to the [`Core`].
#[derive(Clone)]
pub struct AppState {
    /// The control-plane core.
    pub core: Core,
    /// Open WebSockets per API key.
    pub ws_slots: Arc<WsSlots>,
    /// Becomes true when the server shuts down; long-lived streams end on it.
    pub stopping: Arc<tokio::sync::watch::Sender<bool>>,
    /// What the E2B front end keeps between requests.
    pub e2b: Arc<crate::e2b::Shared>,
}

impl AppState {
    /// State over a store and a host.
    pub fn new(config: ControlConfig, store: Store, host: Arc<dyn HostApi>) -> Self {
        let ws_slots = Arc::new(WsSlots::new(config.max_websockets_per_key));
        Self {
            core: Core::new(config, store, host),
            ws_slots,
            stopping: Arc::new(tokio::sync::watch::channel(false).0),
            e2b: Arc::default(),
        }
    }

    /// Resolves when the server is shutting down.
    pub fn stopped(&self) -> impl std::future::Future<Output = ()> + Send + 'static {
        let mut rx = self.stopping.subscribe();
        async move {
            let _ = rx.wait_for(|s| *s).await;
        }
    }
}

impl Deref for AppState {
    type Target = Core;
    fn deref(&self) -> &Core {
        &self.core
    }
}
