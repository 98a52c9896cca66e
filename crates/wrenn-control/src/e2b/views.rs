//! JSON shapes of E2B's REST API: `Sandbox` (create, connect), `SandboxDetail` (get),
//! `ListedSandbox` (list) and `SandboxMetric`.

use serde_json::{json, Value};

use super::{sandbox_id, ENVD_VERSION};
use crate::core::lifecycle::OnTimeout;
use crate::core::status::CapsuleStatus;
use crate::store::{rfc3339, CapsuleRow, MetricSample};

/// The `clientID` of every sandbox (E2B names the node; ours is one server).
const CLIENT_ID: &str = "wrenn";

/// The E2B state of a capsule: `running` or `paused`, `None` for capsules E2B would not show
/// (destroyed, missing, broken).
pub fn state(status: CapsuleStatus) -> Option<&'static str> {
    match status {
        CapsuleStatus::Starting
        | CapsuleStatus::Running
        | CapsuleStatus::Resuming
        | CapsuleStatus::Snapshotting => Some("running"),
        CapsuleStatus::Pausing | CapsuleStatus::Paused => Some("paused"),
        CapsuleStatus::Stopping
        | CapsuleStatus::Stopped
        | CapsuleStatus::Missing
        | CapsuleStatus::Error => None,
    }
}

/// When the capsule ends if nothing touches it: its last activity plus its TTL (a year from
/// now for a capsule without one).
fn end_at(row: &CapsuleRow) -> String {
    if row.timeout_sec > 0 {
        rfc3339(row.last_active_at + row.timeout_sec * 1000)
    } else {
        rfc3339(crate::store::now_ms() + 365 * 86_400_000)
    }
}

/// The tokens a `Sandbox` carries.
#[derive(Debug, Clone, Default)]
pub struct Tokens {
    /// `envdAccessToken`.
    pub envd: String,
    /// `trafficAccessToken` (sandboxes without public traffic).
    pub traffic: Option<String>,
}

/// The answer of create and connect.
pub fn sandbox(row: &CapsuleRow, tokens: &Tokens, domain: Option<&str>) -> Value {
    json!({
        "templateID": row.template,
        "sandboxID": sandbox_id(&row.id),
        "clientID": CLIENT_ID,
        "envdVersion": ENVD_VERSION,
        "envdAccessToken": tokens.envd,
        "trafficAccessToken": tokens.traffic,
        "domain": domain,
    })
}

fn listed_fields(row: &CapsuleRow, disk_mb: i64) -> Value {
    let metadata: Value = serde_json::from_str(&row.metadata).unwrap_or_else(|_| json!({}));
    json!({
        "templateID": row.template,
        "sandboxID": sandbox_id(&row.id),
        "clientID": CLIENT_ID,
        "startedAt": rfc3339(row.started_at.unwrap_or(row.created_at)),
        "endAt": end_at(row),
        "cpuCount": row.vcpus,
        "memoryMB": row.memory_mb,
        "diskSizeMB": disk_mb,
        "state": state(row.status).unwrap_or("paused"),
        "envdVersion": ENVD_VERSION,
        "metadata": metadata,
    })
}

/// A sandbox in a list.
pub fn listed(row: &CapsuleRow, disk_mb: i64) -> Value {
    listed_fields(row, disk_mb)
}

/// A sandbox as `get_info` shows it: the listed fields, its tokens, lifecycle and network.
pub fn detail(row: &CapsuleRow, tokens: &Tokens, disk_mb: i64, domain: Option<&str>) -> Value {
    let mut v = listed_fields(row, disk_mb);
    let policy: wrenn_host::NetworkPolicy =
        serde_json::from_str(&row.network_policy).unwrap_or_default();
    v["envdAccessToken"] = json!(tokens.envd);
    v["domain"] = json!(domain);
    v["allowInternetAccess"] = json!(policy.allow_internet.unwrap_or(true));
    v["network"] = json!({
        "allowOut": policy.allow_out,
        "denyOut": policy.deny_out,
        "allowPublicTraffic": tokens.traffic.is_none(),
    });
    v["lifecycle"] = json!({
        "autoResume": false,
        "onTimeout": OnTimeout::from_stored(&row.on_timeout).as_str(),
    });
    v
}

/// One metrics point.
pub fn metric(row: &CapsuleRow, s: &MetricSample) -> Value {
    let mem_total = if s.mem_total_bytes > 0 {
        s.mem_total_bytes
    } else {
        row.memory_mb << 20
    };
    json!({
        "timestamp": crate::store::rfc3339(s.ts * 1000),
        "timestampUnix": s.ts,
        "cpuCount": row.vcpus,
        "cpuUsedPct": s.cpu_pct,
        "memUsed": s.mem_bytes,
        "memTotal": mem_total,
        "memCache": 0,
        "diskUsed": s.disk_bytes,
        "diskTotal": s.disk_total_bytes,
    })
}
