//! The control-plane core: capsule lifecycle, snapshot templates, reconciliation, health and
//! the inactivity TTL, over a [`Store`] and a [`HostApi`]. No HTTP here: the `api` module
//! parses requests into the typed requests of this module, calls it and renders its results
//! and errors.
//!
//! Every operation that touches a host runs as a task the core owns ([`Core::owned`]): a
//! caller that goes away (a client that disconnects) never leaves a capsule in a transitional
//! status or a template half made.

pub mod activity;
pub mod admission;
pub mod background;
pub mod builds;
pub mod error;
pub mod events;
pub mod lifecycle;
pub mod snapshots;
pub mod status;

use std::future::Future;
use std::ops::Deref;
use std::sync::Arc;

use wrenn_host::HostApi;

use crate::config::ControlConfig;
use crate::store::{CapsuleRow, Store};
use crate::telemetry::Telemetry;
use activity::Activity;
use admission::Admission;
use error::LookupError;
use events::Events;

/// The core; cheap to clone.
#[derive(Clone)]
pub struct Core(Arc<CoreParts>);

/// The parts of [`Core`].
pub struct CoreParts {
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
    /// Template builds in progress.
    pub builds: builds::Builds,
}

impl Core {
    /// A core over a store and a host.
    pub fn new(config: ControlConfig, store: Store, host: Arc<dyn HostApi>) -> Self {
        let admission = Admission::new(config.max_concurrent_creates, config.create_queue_timeout);
        Self(Arc::new(CoreParts {
            activity: Activity::new(store.clone()),
            config,
            store,
            host,
            events: Events::new(),
            telemetry: Telemetry::new(),
            admission,
            builds: builds::Builds::new(),
        }))
    }

    /// Runs `op` as a task of its own and waits for it. Dropping the returned future (the
    /// caller went away) does not stop the task; a task that panics becomes `task_failed`.
    pub async fn owned<T, E>(
        &self,
        op: impl Future<Output = Result<T, E>> + Send + 'static,
        task_failed: fn(String) -> E,
    ) -> Result<T, E>
    where
        T: Send + 'static,
        E: Send + 'static,
    {
        match tokio::spawn(op).await {
            Ok(result) => result,
            Err(e) => Err(task_failed(e.to_string())),
        }
    }

    /// A team's capsule (`NotFound` for another team's).
    pub async fn capsule_of(&self, team_id: &str, id: &str) -> Result<CapsuleRow, LookupError> {
        self.store
            .team_capsule(team_id, id)
            .await?
            .ok_or_else(|| LookupError::NotFound(id.to_owned()))
    }

    /// The capsule's row as stored now.
    pub async fn reload(&self, row: &CapsuleRow) -> Result<CapsuleRow, LookupError> {
        self.store
            .capsule(&row.id)
            .await?
            .ok_or_else(|| LookupError::NotFound(row.id.clone()))
    }
}

impl Deref for Core {
    type Target = CoreParts;
    fn deref(&self) -> &CoreParts {
        &self.0
    }
}
