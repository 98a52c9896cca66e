//! wrenn-control: the control plane. Serves the public Wrenn API (REST, WebSocket, SSE) over
//! a SQL store (SQLite or PostgreSQL) and drives capsules through [`wrenn_host::HostApi`].
//!
//! Entry points for the `wrenn` binary: [`Store::open`], [`bootstrap_admin`], the key
//! functions ([`create_key`], [`list_keys`], [`remove_key`]), the team functions
//! ([`create_team`], [`list_teams`], [`remove_team`]) and [`serve`].

pub mod access;
pub mod api;
pub mod auth;
pub mod config;
pub mod conn;
pub mod core;
pub mod e2b;
pub mod error;
pub mod ids;
pub mod keys;
pub mod limits;
pub mod state;
pub mod store;
pub mod telemetry;

use std::future::Future;
use std::sync::Arc;

use wrenn_host::HostApi;

pub use api::error::ApiError;
pub use config::{ControlConfig, DEFAULT_MAX_WRITE_BYTES};
pub use error::ControlError;
pub use keys::{
    bootstrap_admin, create_key, create_team, create_team_key, existing_team_keys, list_keys,
    list_team_keys, list_teams, remove_key, remove_team, remove_team_key, KeyError, ADMIN_TEAM,
};
pub use state::AppState;
pub use store::{KeyInfo, Store, StoreError, Team};

/// Binds `config.listen` and serves until `shutdown` resolves.
pub async fn serve(
    config: ControlConfig,
    store: Store,
    host: Arc<dyn HostApi>,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> Result<(), ControlError> {
    let listener = tokio::net::TcpListener::bind(config.listen)
        .await
        .map_err(|source| ControlError::Bind {
            addr: config.listen,
            source,
        })?;
    serve_on(listener, config, store, host, shutdown).await
}

/// Serves on an already bound listener (tests bind `127.0.0.1:0`) until `shutdown` resolves.
/// Reconciles the store with the host first; `/health` answers once this is done.
pub async fn serve_on(
    listener: tokio::net::TcpListener,
    config: ControlConfig,
    store: Store,
    host: Arc<dyn HostApi>,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> Result<(), ControlError> {
    let state = AppState::new(config, store, host);
    core::background::reconcile(&state.core).await?;
    let tasks = core::background::spawn(state.core.clone());
    let stopping = state.stopping.clone();
    let app = api::router(state.clone());
    tracing::info!(addr = ?listener.local_addr().ok(), "control plane listening");
    let signal = {
        let stopping = stopping.clone();
        async move {
            shutdown.await;
            tracing::info!("shutting down: ending streams, draining requests");
            let _ = stopping.send(true);
        }
    };
    tokio::spawn(signal);
    let limits = conn::ConnLimits {
        header_read_timeout: state.config.header_read_timeout,
        idle_timeout: state.config.idle_timeout,
        max_connections: state.config.max_connections,
    };
    let serve = conn::run(listener, app, limits, stopping.subscribe());
    // Long-lived streams end on the signal; anything still open after a grace period is cut.
    let mut stopped = stopping.subscribe();
    let grace = async move {
        let _ = stopped.wait_for(|s| *s).await;
        tokio::time::sleep(std::time::Duration::from_secs(10)).await;
    };
    let result = tokio::select! {
        () = serve => Ok(()),
        _ = grace => {
            tracing::warn!("connections still open after the grace period; closing them");
            Ok(())
        }
    };
    for t in tasks {
        t.abort();
    }
    result
}
