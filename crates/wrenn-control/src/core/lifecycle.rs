//! Capsule lifecycle: create, pause, resume, destroy, network policy. Every transition is
//! stored before it is acknowledged, a failure stores what the host reports, and each
//! operation runs as a task of the core so a caller that goes away cannot cut it short.

use std::collections::BTreeMap;
use std::time::Instant;

use wrenn_host::{CapsuleInfo, CreateCapsule, HostError, NetworkInfo, NetworkPolicy};

use crate::access::PortsMode;
use crate::core::admission::Reservation;
use crate::core::error::{
    CreateError, DestroyError, ListTemplatesError, LookupError, NetworkError, TransitionError,
};
use crate::core::events::{Actor, CapsuleAction, EventKind};
use crate::core::status::CapsuleStatus;
use crate::core::Core;
use crate::ids;
use crate::store::{CapsuleRow, NewCapsule};
use crate::telemetry::LifecycleOp;

/// A validated create request.
#[derive(Debug, Clone)]
pub struct CreateSpec {
    /// Template name as given (team snapshot or base template).
    pub template: String,
    /// vCPUs.
    pub vcpus: u32,
    /// MiB.
    pub memory_mb: u32,
    /// TTL seconds (already raised to 60 when positive and smaller).
    pub timeout_sec: u32,
    /// Labels.
    pub metadata: BTreeMap<String, String>,
    /// Egress policy (checked at create).
    pub network: NetworkPolicy,
    /// Access mode of its port URLs.
    pub ports: PortsMode,
    /// Environment of every command run through the E2B data plane.
    pub envs: BTreeMap<String, String>,
    /// What the inactivity TTL does.
    pub on_timeout: OnTimeout,
}

/// What happens to a capsule idle for its TTL.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub enum OnTimeout {
    /// It is paused (Wrenn's TTL).
    #[default]
    Pause,
    /// It is destroyed (E2B's timeout without auto-pause).
    Kill,
}

impl OnTimeout {
    /// The stored name.
    pub fn as_str(self) -> &'static str {
        match self {
            OnTimeout::Pause => "pause",
            OnTimeout::Kill => "kill",
        }
    }

    /// The value of a stored name (anything unknown pauses: the safe side keeps the data).
    pub fn from_stored(s: &str) -> OnTimeout {
        if s == "kill" {
            OnTimeout::Kill
        } else {
            OnTimeout::Pause
        }
    }
}

/// A created capsule, and the access token of its private port URLs (shown only this once).
#[derive(Debug, Clone)]
pub struct Created {
    /// The stored capsule.
    pub row: CapsuleRow,
    /// The plain access token when the ports are private.
    pub access_token: Option<String>,
}

/// How long a GET waits for the host's view of a capsule's network.
const NETWORK_LOOKUP_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(2);

/// Encodes a value for a JSON text column.
fn json_text(v: &impl serde::Serialize) -> String {
    // Maps of strings and the policy types always encode.
    serde_json::to_string(v).unwrap_or_else(|_| "{}".to_owned())
}

impl Core {
    /// Records a status change and announces it.
    pub(crate) async fn set_status(
        &self,
        row: &CapsuleRow,
        to: CapsuleStatus,
        error: Option<&str>,
    ) -> Result<CapsuleRow, LookupError> {
        self.store.set_status(&row.id, to, error).await?;
        let new = self.reload(row).await?;
        self.state_changed(&new, row.status, to);
        Ok(new)
    }

    /// Announces a status change of `row` (already stored).
    pub(crate) fn state_changed(&self, row: &CapsuleRow, from: CapsuleStatus, to: CapsuleStatus) {
        if from == to {
            return;
        }
        self.events.emit(
            &row.team_id,
            &Actor::system("lifecycle"),
            EventKind::StateChanged {
                capsule: row.clone(),
                from,
                to,
            },
            None,
        );
    }

    /// Announces the end of an action on `row`: the new row on success, `row` on failure.
    fn action_event<E: std::fmt::Display>(
        &self,
        row: &CapsuleRow,
        actor: &Actor,
        action: CapsuleAction,
        result: &Result<CapsuleRow, E>,
        reason: Option<&str>,
    ) {
        let (capsule, outcome) = match result {
            Ok(r) => (r.clone(), Ok(())),
            Err(e) => (row.clone(), Err(e.to_string())),
        };
        self.events.emit(
            &row.team_id,
            actor,
            EventKind::Capsule {
                action,
                capsule,
                reason: reason.map(str::to_owned),
            },
            Some(outcome),
        );
    }

    /// After a failed host call, stores what the host says the capsule is; returns that
    /// status.
    async fn settle_after_failure(&self, row: &CapsuleRow, err: &HostError) -> CapsuleStatus {
        let (status, msg) = match self.host.get(&row.id).await {
            Ok(info) => (CapsuleStatus::from(info.status), info.error),
            Err(HostError::NotFound(_)) => (CapsuleStatus::Missing, Some(err.to_string())),
            Err(e) => (
                CapsuleStatus::Error,
                Some(format!("{err}; host status unknown: {e}")),
            ),
        };
        if let Err(e) = self.store.set_status(&row.id, status, msg.as_deref()).await {
            tracing::error!(capsule = %row.id, error = %e, "could not store status after failure");
        }
        self.state_changed(row, row.status, status);
        status
    }

    /// The error of a failed pause or resume: when the capsule turned out to be dead (its VM
    /// gone or broken), `Dead` naming its status; otherwise the host's error.
    async fn failed_transition(
        &self,
        row: &CapsuleRow,
        err: HostError,
        op: &'static str,
    ) -> TransitionError {
        let status = self.settle_after_failure(row, &err).await;
        if status.is_dead() {
            TransitionError::Dead {
                op,
                id: row.id.clone(),
                status,
                cause: err,
            }
        } else {
            TransitionError::Host(err)
        }
    }

    /// Stores the network state a host answer reports (failures are logged: the state is
    /// informational and refreshed by the next host answer).
    async fn store_network_state(&self, info: &CapsuleInfo) {
        if let Err(e) = self
            .store
            .set_network_state(
                &info.id,
                info.network.enabled,
                info.network.reason.as_deref(),
            )
            .await
        {
            tracing::warn!(capsule = %info.id, error = %e, "could not store network state");
        }
    }

    /// The host's view of a capsule's network, when the host answers quickly; `None` for
    /// capsules the host no longer holds.
    pub async fn live_network(&self, row: &CapsuleRow) -> Option<NetworkInfo> {
        if row.status.is_dead() {
            return None;
        }
        match tokio::time::timeout(NETWORK_LOOKUP_TIMEOUT, self.host.get(&row.id)).await {
            Ok(Ok(info)) => Some(info.network),
            _ => None,
        }
    }

    /// Replaces the egress policy of a running or paused capsule (a paused one gets it at
    /// resume). The policy is stored once the host has taken it.
    pub async fn set_network(
        &self,
        row: &CapsuleRow,
        policy: NetworkPolicy,
    ) -> Result<CapsuleRow, NetworkError> {
        policy.rules().map_err(NetworkError::InvalidPolicy)?;
        if !matches!(row.status, CapsuleStatus::Running | CapsuleStatus::Paused) {
            return Err(NetworkError::InvalidState {
                id: row.id.clone(),
                status: row.status,
            });
        }
        let core = self.clone();
        let row = row.clone();
        let op = async move {
            let json = json_text(&policy);
            let after = core.config.host_op_timeout;
            let info = tokio::time::timeout(after, core.host.set_network(&row.id, policy))
                .await
                .map_err(|_| NetworkError::Timeout {
                    id: row.id.clone(),
                    after,
                })??;
            core.store
                .set_network_policy(
                    &row.id,
                    &json,
                    info.network.enabled,
                    info.network.reason.as_deref(),
                )
                .await?;
            Ok(core.reload(&row).await?)
        };
        self.owned(op, |e| {
            NetworkError::Host(HostError::Internal(format!("network task failed: {e}")))
        })
        .await
    }

    /// Creates a capsule for a team. Answers `starting` when the host takes longer than
    /// `create_wait`; the create goes on in the background either way.
    pub async fn create_capsule(
        &self,
        team_id: &str,
        actor: &Actor,
        mut spec: CreateSpec,
    ) -> Result<Created, CreateError> {
        let started = Instant::now();
        spec.network.rules().map_err(CreateError::InvalidPolicy)?;
        let network_policy = json_text(&spec.network);
        let access_token = match spec.ports {
            PortsMode::Private => Some(ids::new_access_token()),
            PortsMode::Public => None,
        };
        let host_template = match self.store.template(team_id, &spec.template).await? {
            Some(t) => {
                spec.vcpus = u32::try_from(t.vcpus).unwrap_or(spec.vcpus);
                spec.memory_mb = u32::try_from(t.memory_mb).unwrap_or(spec.memory_mb);
                t.host_name
            }
            None => match self.store.built_template(&spec.template).await? {
                Some(b) => {
                    spec.vcpus = u32::try_from(b.vcpus).unwrap_or(spec.vcpus);
                    spec.memory_mb = u32::try_from(b.memory_mb).unwrap_or(spec.memory_mb);
                    b.host_name
                }
                None => {
                    if !self
                        .is_host_base_template(&spec.template)
                        .await
                        .map_err(CreateError::Host)?
                    {
                        return Err(self.first_use(spec.template).await);
                    }
                    spec.template.clone()
                }
            },
        };
        let id = ids::new_capsule_id();
        let reservation = self
            .admission
            .admit(self.host.as_ref(), &id, spec.vcpus, spec.memory_mb)
            .await?;
        let row = self
            .store
            .insert_capsule(&NewCapsule {
                id,
                team_id: team_id.to_owned(),
                status: CapsuleStatus::Starting,
                template: spec.template.clone(),
                host_template: host_template.clone(),
                vcpus: i64::from(spec.vcpus),
                memory_mb: i64::from(spec.memory_mb),
                timeout_sec: i64::from(spec.timeout_sec),
                metadata: json_text(&spec.metadata),
                network_policy,
                ports: spec.ports.as_str().to_owned(),
                access_token_hash: access_token.as_deref().map(ids::hash_key),
                envs: json_text(&spec.envs),
                on_timeout: spec.on_timeout.as_str().to_owned(),
            })
            .await?;
        let req = CreateCapsule {
            id: row.id.clone(),
            template: host_template,
            vcpus: spec.vcpus,
            memory_mb: spec.memory_mb,
            network: spec.network,
        };
        // The host call runs in its own task: a client that goes away does not leave a
        // half-made capsule, and a slow create (a template boot under TCG) answers `starting`
        // after `create_wait` while it finishes in the background.
        let task = {
            let core = self.clone();
            let row = row.clone();
            let actor = actor.clone();
            tokio::spawn(async move {
                let result = core.finish_create(&row, req, reservation).await;
                core.telemetry.observe_lifecycle(
                    LifecycleOp::Create,
                    result.is_ok(),
                    started.elapsed(),
                );
                core.action_event(&row, &actor, CapsuleAction::Create, &result, None);
                result
            })
        };
        let row = match tokio::time::timeout(self.config.create_wait, task).await {
            Ok(Ok(result)) => result,
            Ok(Err(e)) => Err(CreateError::Task(e.to_string())),
            Err(_) => {
                tracing::info!(capsule = %row.id, "create still running; answering starting");
                self.reload(&row).await.map_err(CreateError::from)
            }
        }?;
        Ok(Created { row, access_token })
    }

    /// The answer to a create of a template that does not exist: its first-use build when
    /// Wrenn ships a recipe of that name, else not found.
    async fn first_use(&self, template: String) -> CreateError {
        use crate::core::builds::FirstUse;
        match self.build_on_first_use(&template).await {
            Ok(None) => CreateError::TemplateNotFound(template),
            Ok(Some(FirstUse::Building(build_id))) => {
                CreateError::TemplateBuilding { template, build_id }
            }
            Ok(Some(FirstUse::Failed { id, error })) => CreateError::TemplateBuildFailed {
                template,
                build_id: id,
                error,
            },
            Err(e) => CreateError::FirstUseBuild {
                template,
                source: Box::new(e),
            },
        }
    }

    /// True when `name` is a base template every team sees: one of the host's own or one
    /// made by a build. Team snapshots may not take these names.
    pub(crate) async fn is_base_template(&self, name: &str) -> Result<bool, ListTemplatesError> {
        Ok(self.is_host_base_template(name).await?
            || self.store.built_template(name).await?.is_some())
    }

    async fn finish_create(
        &self,
        row: &CapsuleRow,
        req: CreateCapsule,
        reservation: Reservation,
    ) -> Result<CapsuleRow, CreateError> {
        let created =
            tokio::time::timeout(self.config.host_op_timeout, self.host.create(req)).await;
        drop(reservation);
        match created {
            Ok(Ok(info)) => {
                self.store_network_state(&info).await;
                if self.store.start_if_starting(&row.id).await? {
                    let new = self.reload(row).await?;
                    self.state_changed(&new, CapsuleStatus::Starting, CapsuleStatus::Running);
                    Ok(new)
                } else {
                    // Deleted while it was being made: do not leave it on the host.
                    let now = self.reload(row).await?;
                    tracing::info!(capsule = %row.id, status = %now.status, "capsule changed during create; destroying it");
                    match self.host.destroy(&row.id).await {
                        Ok(()) | Err(HostError::NotFound(_)) => {}
                        Err(e) => {
                            tracing::warn!(capsule = %row.id, error = %e, "destroy after create failed")
                        }
                    }
                    Err(CreateError::Overtaken {
                        id: row.id.clone(),
                        status: now.status,
                    })
                }
            }
            Ok(Err(e)) => {
                self.abandon_create(row, &e.to_string()).await;
                Err(CreateError::Host(e))
            }
            Err(_) => {
                let e = CreateError::Timeout(self.config.host_op_timeout);
                self.abandon_create(row, &e.to_string()).await;
                Err(e)
            }
        }
    }

    /// A failed create leaves nothing behind: the host's parts are destroyed, the row is
    /// marked `error` (left out of lists).
    async fn abandon_create(&self, row: &CapsuleRow, why: &str) {
        tracing::warn!(capsule = %row.id, error = why, "create failed, cleaning up");
        match self.host.destroy(&row.id).await {
            Ok(()) | Err(HostError::NotFound(_)) => {}
            Err(e) => tracing::warn!(capsule = %row.id, error = %e, "cleanup destroy failed"),
        }
        // Unless it was deleted meanwhile, it ends as `error` (never listed).
        if let Err(e) = self
            .store
            .transition_err(&row.id, CapsuleStatus::Starting, CapsuleStatus::Error, why)
            .await
        {
            tracing::error!(capsule = %row.id, error = %e, "could not store failed create");
        }
    }

    /// Pauses a running capsule.
    pub async fn pause_capsule(
        &self,
        row: &CapsuleRow,
        actor: &Actor,
    ) -> Result<CapsuleRow, TransitionError> {
        let (core, row, actor) = (self.clone(), row.clone(), actor.clone());
        self.owned(
            async move { core.pause_inner(&row, &actor, None, None).await },
            TransitionError::Task,
        )
        .await
    }

    /// Pauses a capsule for the inactivity TTL, only if it is still idle at `now` (unix ms).
    pub async fn pause_idle_capsule(
        &self,
        row: &CapsuleRow,
        now: i64,
    ) -> Result<CapsuleRow, TransitionError> {
        let (core, row) = (self.clone(), row.clone());
        self.owned(
            async move {
                core.pause_inner(&row, &Actor::system("ttl"), Some("ttl_expired"), Some(now))
                    .await
            },
            TransitionError::Task,
        )
        .await
    }

    async fn pause_inner(
        &self,
        row: &CapsuleRow,
        actor: &Actor,
        reason: Option<&str>,
        idle_at: Option<i64>,
    ) -> Result<CapsuleRow, TransitionError> {
        let started = Instant::now();
        let moved = match idle_at {
            None => {
                self.store
                    .transition(&row.id, CapsuleStatus::Running, CapsuleStatus::Pausing)
                    .await?
            }
            Some(now) => {
                self.store
                    .leave_running_if_idle(&row.id, now, CapsuleStatus::Pausing)
                    .await?
            }
        };
        if !moved {
            let now = self.reload(row).await?;
            return Err(TransitionError::InvalidState {
                id: row.id.clone(),
                status: now.status,
                needs: CapsuleStatus::Running,
            });
        }
        self.state_changed(row, row.status, CapsuleStatus::Pausing);
        let pausing = self.reload(row).await?;
        let after = self.config.host_op_timeout;
        let result = match tokio::time::timeout(after, self.host.pause(&row.id)).await {
            Ok(Ok(_)) => self
                .set_status(&pausing, CapsuleStatus::Paused, None)
                .await
                .map_err(TransitionError::from),
            Ok(Err(e)) => Err(self.failed_transition(&pausing, e, "pause").await),
            Err(_) => {
                let e = TransitionError::Timeout { op: "pause", after };
                self.settle_after_failure(&pausing, &HostError::Internal(e.to_string()))
                    .await;
                Err(e)
            }
        };
        self.telemetry
            .observe_lifecycle(LifecycleOp::Pause, result.is_ok(), started.elapsed());
        self.action_event(row, actor, CapsuleAction::Pause, &result, reason);
        result
    }

    /// Resumes a paused capsule.
    pub async fn resume_capsule(
        &self,
        row: &CapsuleRow,
        actor: &Actor,
    ) -> Result<CapsuleRow, TransitionError> {
        let (core, row, actor) = (self.clone(), row.clone(), actor.clone());
        self.owned(
            async move { core.resume_inner(&row, &actor).await },
            TransitionError::Task,
        )
        .await
    }

    async fn resume_inner(
        &self,
        row: &CapsuleRow,
        actor: &Actor,
    ) -> Result<CapsuleRow, TransitionError> {
        let started = Instant::now();
        if !self
            .store
            .transition(&row.id, CapsuleStatus::Paused, CapsuleStatus::Resuming)
            .await?
        {
            let now = self.reload(row).await?;
            return Err(TransitionError::InvalidState {
                id: row.id.clone(),
                status: now.status,
                needs: CapsuleStatus::Paused,
            });
        }
        self.state_changed(row, row.status, CapsuleStatus::Resuming);
        let resuming = self.reload(row).await?;
        let after = self.config.host_op_timeout;
        let result = match tokio::time::timeout(after, self.host.resume(&row.id)).await {
            Ok(Ok(info)) => {
                self.store_network_state(&info).await;
                self.store.mark_running(&row.id).await?;
                let new = self.reload(row).await?;
                self.state_changed(&new, CapsuleStatus::Resuming, CapsuleStatus::Running);
                Ok(new)
            }
            Ok(Err(e)) => Err(self.failed_transition(&resuming, e, "resume").await),
            Err(_) => {
                let e = TransitionError::Timeout {
                    op: "resume",
                    after,
                };
                self.settle_after_failure(&resuming, &HostError::Internal(e.to_string()))
                    .await;
                Err(e)
            }
        };
        self.telemetry
            .observe_lifecycle(LifecycleOp::Resume, result.is_ok(), started.elapsed());
        self.action_event(row, actor, CapsuleAction::Resume, &result, None);
        result
    }

    /// Destroys a capsule in any status; the row stays as `stopped`. Destroying a stopped
    /// capsule does nothing.
    pub async fn destroy_capsule(
        &self,
        row: &CapsuleRow,
        actor: &Actor,
    ) -> Result<(), DestroyError> {
        if row.status == CapsuleStatus::Stopped {
            return Ok(());
        }
        let (core, row, actor) = (self.clone(), row.clone(), actor.clone());
        self.owned(
            async move { core.destroy_inner(&row, &actor, None, None).await },
            DestroyError::Task,
        )
        .await
    }

    /// Destroys a capsule for the inactivity TTL (its `on_timeout` is `kill`), only if it is
    /// still running and idle at `now` (unix ms).
    pub async fn destroy_idle_capsule(
        &self,
        row: &CapsuleRow,
        now: i64,
    ) -> Result<(), DestroyError> {
        let (core, row) = (self.clone(), row.clone());
        self.owned(
            async move {
                core.destroy_inner(&row, &Actor::system("ttl"), Some("ttl_expired"), Some(now))
                    .await
            },
            DestroyError::Task,
        )
        .await
    }

    /// Sets a capsule's inactivity TTL from now (`0` = never).
    pub async fn set_timeout(
        &self,
        row: &CapsuleRow,
        timeout_sec: u32,
    ) -> Result<CapsuleRow, LookupError> {
        self.store
            .set_timeout(&row.id, i64::from(timeout_sec))
            .await?;
        self.reload(row).await
    }

    async fn destroy_inner(
        &self,
        row: &CapsuleRow,
        actor: &Actor,
        reason: Option<&str>,
        idle_at: Option<i64>,
    ) -> Result<(), DestroyError> {
        let stopping = match idle_at {
            None => self.set_status(row, CapsuleStatus::Stopping, None).await?,
            Some(now) => {
                if !self
                    .store
                    .leave_running_if_idle(&row.id, now, CapsuleStatus::Stopping)
                    .await?
                {
                    return Err(DestroyError::NoLongerIdle(row.id.clone()));
                }
                let new = self.reload(row).await?;
                self.state_changed(&new, row.status, CapsuleStatus::Stopping);
                new
            }
        };
        let result = match self.host.destroy(&row.id).await {
            Ok(()) | Err(HostError::NotFound(_)) => self
                .set_status(&stopping, CapsuleStatus::Stopped, None)
                .await
                .map_err(DestroyError::from),
            Err(e) => {
                self.settle_after_failure(&stopping, &e).await;
                Err(DestroyError::Host(e))
            }
        };
        self.action_event(row, actor, CapsuleAction::Destroy, &result, reason);
        result.map(|_| ())
    }
}
