//! JSON shapes of the contract: capsules, templates, timestamps, statuses.

use serde_json::{json, Value};
use wrenn_host::{HostStatus, NetworkInfo, NetworkPolicy, TemplateInfo, TemplateKind};

use crate::store::{CapsuleRow, TemplateRow};

/// Every capsule status of the contract.
pub const STATUSES: &[&str] = &[
    "pending",
    "starting",
    "running",
    "pausing",
    "paused",
    "snapshotting",
    "resuming",
    "stopping",
    "hibernated",
    "stopped",
    "missing",
    "error",
];

/// Unix ms as RFC 3339 with `Z`.
pub fn rfc3339(ms: i64) -> String {
    chrono::DateTime::from_timestamp_millis(ms)
        .unwrap_or_default()
        .to_rfc3339_opts(chrono::SecondsFormat::Millis, true)
}

/// Unix seconds as RFC 3339 with `Z`.
pub fn rfc3339_secs(s: i64) -> String {
    rfc3339(s.saturating_mul(1000))
}

/// The contract status of a host status.
pub fn host_status(s: HostStatus) -> &'static str {
    match s {
        HostStatus::Starting => "starting",
        HostStatus::Running => "running",
        HostStatus::Pausing => "pausing",
        HostStatus::Paused => "paused",
        HostStatus::Resuming => "resuming",
        HostStatus::Snapshotting => "snapshotting",
        HostStatus::Stopping => "stopping",
        HostStatus::Error => "error",
    }
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
        "status": row.status,
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
    json!({
        "name": t.name,
        "type": "base",
        "vcpus": t.vcpus,
        "memory_mb": t.memory_mb,
        "size_bytes": t.size_bytes,
        "created_at": rfc3339_secs(t.created_at),
        "platform": true,
        "protected": true,
        "metadata": {},
    })
}

/// True for a base template of the host.
pub fn is_base(t: &TemplateInfo) -> bool {
    t.kind == TemplateKind::Base
}
