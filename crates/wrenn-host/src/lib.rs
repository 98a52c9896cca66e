//! The host API: what a control plane asks of a host agent.
//!
//! The control plane authenticates, keeps durable state and maps teams to capsules; a host
//! agent runs the capsules. [`HostApi`] is the seam between them. In `wrenn server` the agent's
//! capsule manager implements it in-process; every type that crosses it is plain data that
//! serialises, so the same trait can be served over the network. Guest-level calls (exec,
//! files, processes, PTY) go over the capsule's [`GuestChannel`], obtained with
//! [`HostApi::guest`], so streams are forwarded without translation.

use serde::{Deserialize, Serialize};

mod guest;
pub mod rules;
pub use guest::{ChannelError, GuestBody, GuestChannel, SharedChannel};

mod network;
pub use network::{
    parse_range, EgressRules, Ipv4Range, NetworkInfo, NetworkPolicy, MAX_POLICY_ENTRIES,
};

/// Lifecycle status of a capsule as the host sees it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum HostStatus {
    /// Being created (restoring the template snapshot).
    Starting,
    /// VMM running, envd reachable.
    Running,
    /// Pause in progress.
    Pausing,
    /// Snapshot on disk, no VMM process.
    Paused,
    /// Resume in progress.
    Resuming,
    /// Snapshot-as-template in progress.
    Snapshotting,
    /// Being destroyed.
    Stopping,
    /// Gone or broken: the VMM died, or a snapshot cannot be loaded.
    Error,
}

/// What the host knows of one capsule.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct CapsuleInfo {
    /// Capsule id (`cl-…`), chosen by the caller at create.
    pub id: String,
    /// Current status.
    pub status: HostStatus,
    /// Template it was created from.
    pub template: String,
    /// vCPUs.
    pub vcpus: u32,
    /// Guest memory in MiB.
    pub memory_mb: u32,
    /// Why it is in `Error`, if it is.
    pub error: Option<String>,
    /// Its network: whether it has one and the egress policy in force.
    #[serde(default)]
    pub network: NetworkInfo,
}

/// A change the host made on its own, not asked for by a call: a VMM that ended (killed, or
/// the guest powered off) turns its capsule to `Error`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct HostEvent {
    /// The capsule.
    pub capsule: String,
    /// Its status now.
    pub status: HostStatus,
    /// Why, for `Error`.
    pub error: Option<String>,
}

/// Create a capsule.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct CreateCapsule {
    /// Id to give it (`cl-` + 25 chars of `[0-9a-z]`).
    pub id: String,
    /// Template name: a base template (`minimal`, `python`) or a snapshot template.
    pub template: String,
    /// vCPUs (1..=host limit).
    pub vcpus: u32,
    /// Memory in MiB.
    pub memory_mb: u32,
    /// Egress policy (default: all egress allowed). Validated by the host too.
    #[serde(default)]
    pub network: NetworkPolicy,
}

/// Kind of template.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum TemplateKind {
    /// Built from Debian packages (`minimal`, `python`).
    Base,
    /// Made from a capsule with [`HostApi::snapshot`].
    Snapshot,
}

/// A template the host can create capsules from.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct TemplateInfo {
    /// Host-level template name.
    pub name: String,
    /// Base or snapshot.
    pub kind: TemplateKind,
    /// vCPUs of a snapshot template (capsules from it get these); default for a base one.
    pub vcpus: u32,
    /// Memory of a snapshot template; default for a base one.
    pub memory_mb: u32,
    /// Bytes on disk.
    pub size_bytes: u64,
    /// Creation time, unix seconds.
    pub created_at: i64,
}

/// Resources of the host, for admission.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct Capacity {
    /// vCPUs the host may hand out in all.
    pub vcpus_total: u32,
    /// Memory in MiB the host may hand out in all.
    pub memory_mb_total: u64,
    /// vCPUs held by capsules that have a VMM (running, starting, resuming…).
    pub vcpus_used: u32,
    /// Memory in MiB held by capsules that have a VMM.
    pub memory_mb_used: u64,
}

/// Errors of the host API. The variant is the error's code and carries a human message; it
/// serialises as `{"code": "not_found", "message": "..."}` so a remote host keeps its meaning.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error, Serialize, Deserialize)]
#[serde(tag = "code", content = "message", rename_all = "snake_case")]
pub enum HostError {
    /// No such capsule or template (404 `not_found`).
    #[error("{0} not found")]
    NotFound(String),
    /// The capsule's status does not allow this (409 `invalid_state`).
    #[error("{0}")]
    InvalidState(String),
    /// It exists already (409 `conflict`).
    #[error("{0}")]
    Conflict(String),
    /// Bad parameters (400 `invalid_request`).
    #[error("{0}")]
    InvalidRequest(String),
    /// Not enough memory or vCPUs on the host (503 `host_unavailable`).
    #[error("{0}")]
    Capacity(String),
    /// The guest agent failed or did not answer (502 `agent_error`).
    #[error("guest agent: {0}")]
    Agent(String),
    /// Anything else (500 `internal_error`).
    #[error("{0}")]
    Internal(String),
}

impl HostError {
    /// The error's code as it travels (`not_found`, `invalid_state`…).
    pub fn code(&self) -> &'static str {
        match self {
            HostError::NotFound(_) => "not_found",
            HostError::InvalidState(_) => "invalid_state",
            HostError::Conflict(_) => "conflict",
            HostError::InvalidRequest(_) => "invalid_request",
            HostError::Capacity(_) => "capacity",
            HostError::Agent(_) => "agent",
            HostError::Internal(_) => "internal",
        }
    }
}

/// What a control plane asks of a host agent.
#[async_trait::async_trait]
pub trait HostApi: Send + Sync + 'static {
    /// Creates a capsule by restoring the template's snapshot; returns once envd answers.
    async fn create(&self, req: CreateCapsule) -> Result<CapsuleInfo, HostError>;
    /// One capsule.
    async fn get(&self, id: &str) -> Result<CapsuleInfo, HostError>;
    /// All capsules this host holds.
    async fn list(&self) -> Result<Vec<CapsuleInfo>, HostError>;
    /// Ends the VMM and removes every file of the capsule. Idempotent for a known id.
    async fn destroy(&self, id: &str) -> Result<(), HostError>;
    /// Snapshots a running capsule to disk and ends its VMM.
    async fn pause(&self, id: &str) -> Result<CapsuleInfo, HostError>;
    /// Restores a paused capsule; returns once envd answers (clock set, pool re-seeded).
    async fn resume(&self, id: &str) -> Result<CapsuleInfo, HostError>;
    /// Replaces the egress policy of a capsule: live when it runs, at resume when paused.
    /// A policy that does not validate is `InvalidRequest`.
    async fn set_network(&self, id: &str, policy: NetworkPolicy) -> Result<CapsuleInfo, HostError>;
    /// The guest channel of a running capsule (`InvalidState` unless running).
    async fn guest(&self, id: &str) -> Result<SharedChannel, HostError>;
    /// Makes a snapshot template `name` from a running capsule, which keeps running.
    /// An existing `name` is a `Conflict` unless `overwrite`.
    async fn snapshot(
        &self,
        id: &str,
        name: &str,
        overwrite: bool,
    ) -> Result<TemplateInfo, HostError>;
    /// Deletes a snapshot template; capsules made from it are unaffected.
    async fn delete_template(&self, name: &str) -> Result<(), HostError>;
    /// Base and snapshot templates.
    async fn templates(&self) -> Result<Vec<TemplateInfo>, HostError>;
    /// Host resources, for admission.
    async fn capacity(&self) -> Result<Capacity, HostError>;
    /// Changes the host makes on its own ([`HostEvent`]), as they happen; `None` for a host
    /// that reports none (the control plane's periodic health pass still finds them).
    fn events(&self) -> Option<tokio::sync::broadcast::Receiver<HostEvent>> {
        None
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn host_errors_travel_as_code_and_message() {
        let e = HostError::InvalidState("capsule cl-x is paused".into());
        let wire = serde_json::to_value(&e).unwrap();
        assert_eq!(
            wire,
            serde_json::json!({"code": "invalid_state", "message": "capsule cl-x is paused"})
        );
        assert_eq!(wire["code"], e.code());
        let back: HostError = serde_json::from_value(wire).unwrap();
        assert_eq!(back, e);
        for e in [
            HostError::NotFound("a".into()),
            HostError::Conflict("b".into()),
            HostError::InvalidRequest("c".into()),
            HostError::Capacity("d".into()),
            HostError::Agent("e".into()),
            HostError::Internal("f".into()),
        ] {
            let wire = serde_json::to_value(&e).unwrap();
            assert_eq!(wire["code"], e.code(), "{wire}");
            assert_eq!(serde_json::from_value::<HostError>(wire).unwrap(), e);
        }
    }
}
