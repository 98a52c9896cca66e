//! The event bus behind `GET /v1/events/stream`.

use serde_json::{json, Map, Value};
use tokio::sync::broadcast;

use crate::auth::Actor;

/// One event for one team.
#[derive(Debug, Clone)]
pub struct TeamEvent {
    /// Team that may see it.
    pub team_id: String,
    /// The SSE payload.
    pub payload: Value,
}

/// Fan-out of events to SSE subscribers.
#[derive(Debug, Clone)]
pub struct Events {
    tx: broadcast::Sender<TeamEvent>,
}

impl Default for Events {
    fn default() -> Self {
        Self::new()
    }
}

/// What an event is about.
#[derive(Debug, Clone, Default)]
pub struct EventBody {
    /// Event name (`capsule.create`…).
    pub event: &'static str,
    /// `success`/`error` for action events.
    pub outcome: Option<&'static str>,
    /// Resource id.
    pub resource_id: String,
    /// Resource type (`capsule`, `template`).
    pub resource_type: &'static str,
    /// Extra context.
    pub metadata: Vec<(&'static str, String)>,
    /// Failure reason.
    pub error: Option<String>,
    /// The capsule object, for capsule events.
    pub sandbox: Option<Value>,
}

impl Events {
    /// A bus with room for 1024 events per slow subscriber.
    pub fn new() -> Self {
        Self {
            tx: broadcast::channel(1024).0,
        }
    }

    /// Subscribes to all events (filter by team on the receiving side).
    pub fn subscribe(&self) -> broadcast::Receiver<TeamEvent> {
        self.tx.subscribe()
    }

    /// Publishes an event to a team's subscribers.
    pub fn emit(&self, team_id: &str, actor: &Actor, body: EventBody) {
        let payload = payload(actor, body);
        // No subscriber is fine.
        let _ = self.tx.send(TeamEvent {
            team_id: team_id.to_owned(),
            payload,
        });
    }
}

/// The SSE JSON of an event.
pub fn payload(actor: &Actor, body: EventBody) -> Value {
    let metadata: Map<String, Value> = body
        .metadata
        .into_iter()
        .map(|(k, v)| (k.to_owned(), Value::String(v)))
        .collect();
    let mut v = json!({
        "event": body.event,
        "resource": {"id": body.resource_id, "type": body.resource_type},
        "actor": {"type": actor.kind, "id": actor.id, "name": actor.name},
        "metadata": metadata,
        "sandbox": body.sandbox,
        "timestamp": crate::api::views::rfc3339(crate::store::now_ms()),
    });
    if let Some(o) = body.outcome {
        v["outcome"] = Value::String(o.to_owned());
    }
    if let Some(e) = body.error {
        v["error"] = Value::String(e);
    }
    v
}

/// The first event of every stream.
pub fn connected() -> Value {
    json!({"event": "connected", "timestamp": crate::api::views::rfc3339(crate::store::now_ms())})
}
