//! JSON shapes of the contract: capsules, templates, events, timestamps.

use serde_json::{json, Map, Value};
use wrenn_host::{NetworkInfo, NetworkPolicy, TemplateInfo, TemplateKind};

use crate::core::events::{CapsuleAction, Event, EventKind};
use crate::store::{BuiltTemplateRow, CapsuleRow, TemplateRow};

pub use crate::store::rfc3339;

/// Unix seconds as RFC 3339 with `Z`.
pub fn rfc3339_secs(s: i64) -> String {
    rfc3339(s.saturating_mul(1000))
}

/// The capsule object, its network as last stored.
pub fn capsule(row: &CapsuleRow) -> Value {
    capsule_with_network(row, None)
}

/// The extension field `network`: the stored policy, and whether the capsule has a network
/// (from `live`, the host's current answer, else what the host last reported).
pub fn network(row: &CapsuleRow, live: Option<&NetworkInfo>) -> Value {
    let policy: NetworkPolicy = serde_json::from_str(&row.network_policy).unwrap_or_default();
    let (enabled, reason) = match (live, row.network_enabled) {
        (Some(info), _) => (info.enabled, info.reason.clone()),
        (None, Some(e)) => (e != 0, row.network_reason.clone()),
        (None, None) => (false, Some("not reported by the host yet".to_owned())),
    };
    let mut v = json!({"enabled": enabled, "policy": policy});
    if let Some(r) = reason {
        v["reason"] = Value::String(r);
    }
    v
}

/// The capsule object with the extension fields `network` (see [`network`]), `ports` and
/// `error` (why it is `error` or `missing`; null otherwise).
/// Clients of the contract ignore fields they do not know.
pub fn capsule_with_network(row: &CapsuleRow, live: Option<&NetworkInfo>) -> Value {
    let metadata: Value = serde_json::from_str(&row.metadata).unwrap_or_else(|_| json!({}));
    json!({
        "id": row.id,
        "status": row.status.as_str(),
        "template": row.template,
        "vcpus": row.vcpus,
        "memory_mb": row.memory_mb,
        "timeout_sec": row.timeout_sec,
        "created_at": rfc3339(row.created_at),
        "started_at": row.started_at.map(rfc3339),
        "last_active_at": rfc3339(row.last_active_at),
        "last_updated": rfc3339(row.last_updated),
        "metadata": metadata,
        "network": network(row, live),
        "ports": row.ports,
        "error": row.error,
    })
}

/// A team snapshot template.
pub fn snapshot_template(t: &TemplateRow) -> Value {
    json!({
        "name": t.name,
        "type": "snapshot",
        "vcpus": t.vcpus,
        "memory_mb": t.memory_mb,
        "size_bytes": t.size_bytes,
        "created_at": rfc3339(t.created_at),
        "platform": false,
        "protected": false,
        "metadata": {},
    })
}

/// A base template of the host.
pub fn base_template(t: &TemplateInfo) -> Value {
    platform_template(
        &t.name,
        (i64::from(t.vcpus), i64::from(t.memory_mb)),
        t.size_bytes,
        rfc3339_secs(t.created_at),
        json!({}),
    )
}

/// A template made by a build: a base template to every team.
pub fn built_template(t: &BuiltTemplateRow) -> Value {
    platform_template(
        &t.name,
        (t.vcpus, t.memory_mb),
        u64::try_from(t.size_bytes).unwrap_or(0),
        rfc3339(t.created_at),
        json!({"build_id": t.build_id}),
    )
}

/// The template object of a base template (every team's, protected).
fn platform_template(
    name: &str,
    (vcpus, memory_mb): (i64, i64),
    size_bytes: u64,
    created_at: String,
    metadata: Value,
) -> Value {
    json!({
        "name": name,
        "type": "base",
        "vcpus": vcpus,
        "memory_mb": memory_mb,
        "size_bytes": size_bytes,
        "created_at": created_at,
        "platform": true,
        "protected": true,
        "metadata": metadata,
    })
}

/// True for a base template of the host.
pub fn is_base(t: &TemplateInfo) -> bool {
    t.kind == TemplateKind::Base
}

/// The event name of an action.
fn action_name(a: CapsuleAction) -> &'static str {
    match a {
        CapsuleAction::Create => "capsule.create",
        CapsuleAction::Pause => "capsule.pause",
        CapsuleAction::Resume => "capsule.resume",
        CapsuleAction::Destroy => "capsule.destroy",
    }
}

/// The SSE JSON of an event: `event`, `resource`, `actor`, `metadata`, `sandbox`,
/// `timestamp`, and for actions `outcome` (and `error` when it failed).
pub fn event(ev: &Event) -> Value {
    let mut metadata = Map::new();
    let (name, resource_id, resource_type, sandbox) = match &ev.kind {
        EventKind::StateChanged { capsule, from, to } => {
            metadata.insert("from".into(), Value::String(from.as_str().into()));
            metadata.insert("to".into(), Value::String(to.as_str().into()));
            (
                "capsule.state.changed",
                capsule.id.clone(),
                "capsule",
                Some(self::capsule(capsule)),
            )
        }
        EventKind::Capsule {
            action,
            capsule,
            reason,
        } => {
            if let Some(r) = reason {
                metadata.insert("reason".into(), Value::String(r.clone()));
            }
            (
                action_name(*action),
                capsule.id.clone(),
                "capsule",
                Some(self::capsule(capsule)),
            )
        }
        EventKind::SnapshotCreated { name, capsule_id } => {
            metadata.insert("sandbox_id".into(), Value::String(capsule_id.clone()));
            ("template.snapshot.create", name.clone(), "template", None)
        }
        EventKind::SnapshotDeleted { name } => {
            ("template.snapshot.delete", name.clone(), "template", None)
        }
    };
    let mut v = json!({
        "event": name,
        "resource": {"id": resource_id, "type": resource_type},
        "actor": {"type": ev.actor.kind, "id": ev.actor.id, "name": ev.actor.name},
        "metadata": metadata,
        "sandbox": sandbox,
        "timestamp": rfc3339(ev.at_ms),
    });
    match &ev.outcome {
        Some(Ok(())) => v["outcome"] = Value::String("success".into()),
        Some(Err(e)) => {
            v["outcome"] = Value::String("error".into());
            v["error"] = Value::String(e.clone());
        }
        None => {}
    }
    v
}

/// The first event of every stream.
pub fn connected() -> Value {
    json!({"event": "connected", "timestamp": rfc3339(crate::store::now_ms())})
}
