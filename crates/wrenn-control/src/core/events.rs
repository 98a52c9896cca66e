//! Typed events of the control plane, and the bus that fans them out. The API renders them
//! (the SSE stream of `GET /v1/events/stream`); the core only says what happened.

use tokio::sync::broadcast;

use crate::core::status::CapsuleStatus;
use crate::store::CapsuleRow;

/// Who did something, as events show it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Actor {
    /// `api_key` or `system`.
    pub kind: &'static str,
    /// Key id, or `system`.
    pub id: String,
    /// Key name, or what the system did.
    pub name: String,
}

impl Actor {
    /// The system itself (TTL pauses, reconciliation).
    pub fn system(name: &str) -> Self {
        Self {
            kind: "system",
            id: "system".into(),
            name: name.into(),
        }
    }
}

/// A lifecycle action on a capsule.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CapsuleAction {
    /// Create.
    Create,
    /// Pause.
    Pause,
    /// Resume.
    Resume,
    /// Destroy.
    Destroy,
}

/// What an event is about.
#[derive(Debug, Clone, PartialEq)]
pub enum EventKind {
    /// A capsule's status changed (the row as it is now).
    StateChanged {
        /// The capsule after the change.
        capsule: CapsuleRow,
        /// Status before.
        from: CapsuleStatus,
        /// Status now.
        to: CapsuleStatus,
    },
    /// A lifecycle action ended (the row after a success, before a failure).
    Capsule {
        /// Which action.
        action: CapsuleAction,
        /// The capsule.
        capsule: CapsuleRow,
        /// Why the system did it (`ttl_expired`), when it was not asked.
        reason: Option<String>,
    },
    /// A snapshot template was made (or making it failed).
    SnapshotCreated {
        /// Template name.
        name: String,
        /// The capsule it was made from.
        capsule_id: String,
    },
    /// A snapshot template was deleted.
    SnapshotDeleted {
        /// Template name.
        name: String,
    },
}

/// One event, for one team.
#[derive(Debug, Clone, PartialEq)]
pub struct Event {
    /// The team that may see it.
    pub team_id: String,
    /// Who caused it.
    pub actor: Actor,
    /// When, unix ms.
    pub at_ms: i64,
    /// What happened.
    pub kind: EventKind,
    /// For actions: `Ok` on success, `Err(message)` on failure. `None` for state changes.
    pub outcome: Option<Result<(), String>>,
}

/// Fan-out of events to subscribers.
#[derive(Debug, Clone)]
pub struct Events {
    tx: broadcast::Sender<Event>,
}

impl Default for Events {
    fn default() -> Self {
        Self::new()
    }
}

impl Events {
    /// A bus with room for 1024 events per slow subscriber.
    pub fn new() -> Self {
        Self {
            tx: broadcast::channel(1024).0,
        }
    }

    /// Subscribes to all events (filter by team on the receiving side).
    pub fn subscribe(&self) -> broadcast::Receiver<Event> {
        self.tx.subscribe()
    }

    /// Publishes an event.
    pub fn emit(
        &self,
        team_id: &str,
        actor: &Actor,
        kind: EventKind,
        outcome: Option<Result<(), String>>,
    ) {
        // No subscriber is fine.
        let _ = self.tx.send(Event {
            team_id: team_id.to_owned(),
            actor: actor.clone(),
            at_ms: crate::store::now_ms(),
            kind,
            outcome,
        });
    }
}
