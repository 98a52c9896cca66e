//! Shared state of the HTTP handlers and background tasks.

use std::ops::Deref;
use std::sync::Arc;

use wrenn_host::HostApi;

use crate::activity::Activity;
use crate::admission::Admission;
use crate::config::ControlConfig;
use crate::events::Events;
use crate::limits::WsSlots;
use crate::store::Store;
use crate::telemetry::Telemetry;

/// Everything a handler needs; cheap to clone.
#[derive(Clone)]
pub struct AppState(Arc<Inner>);

/// The parts of [`AppState`].
pub struct Inner {
    /// Settings.
    pub config: ControlConfig,
    /// Durable state.
    pub store: Store,
    /// The host agent.
    pub host: Arc<dyn HostApi>,
    /// Event bus.
    pub events: Events,
    /// Prometheus metrics.
    pub telemetry: Telemetry,
    /// Open streams and activity stamps.
    pub activity: Activity,
    /// Create admission (capacity, concurrency).
    pub admission: Admission,
    /// Open WebSockets per API key.
    pub ws_slots: WsSlots,
    /// Becomes true when the server shuts down; long-lived streams end on it.
    pub stopping: tokio::sync::watch::Sender<bool>,
}

impl AppState {
    /// State over a store and a host.
    pub fn new(config: ControlConfig, store: Store, host: Arc<dyn HostApi>) -> Self {
        let admission = Admission::new(config.max_concurrent_creates, config.create_queue_timeout);
        let ws_slots = WsSlots::new(config.max_websockets_per_key);
        Self(Arc::new(Inner {
            ws_slots,
            activity: Activity::new(store.clone()),
            config,
            store,
            host,
            events: Events::new(),
            telemetry: Telemetry::new(),
            admission,
            stopping: tokio::sync::watch::channel(false).0,
        }))
    }
}

impl AppState {
    /// Resolves when the server is shutting down.
    pub fn stopped(&self) -> impl std::future::Future<Output = ()> + Send + 'static {
        let mut rx = self.stopping.subscribe();
        async move {
            let _ = rx.wait_for(|s| *s).await;
        }
    }
}

impl Deref for AppState {
    type Target = Inner;
    fn deref(&self) -> &Inner {
        &self.0
    }
}
