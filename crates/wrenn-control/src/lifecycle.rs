//! Capsule lifecycle: create, pause, resume, destroy. Every transition is stored before it
//! is acknowledged, and a failure stores what the host reports.

use std::collections::BTreeMap;
use std::time::Instant;

use wrenn_host::{CapsuleInfo, CreateCapsule, HostError, NetworkInfo, NetworkPolicy};

use crate::access::PortsMode;
use crate::api::views;
use crate::auth::Actor;
use crate::error::ApiError;
use crate::events::EventBody;
use crate::ids;
use crate::state::AppState;
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
    /// Egress policy (checked by [`check_policy`] at create).
    pub network: NetworkPolicy,
    /// Access mode of its port URLs.
    pub ports: PortsMode,
}

/// A created capsule, and the access token of its private port URLs (shown only this once).
#[derive(Debug, Clone)]
pub struct Created {
    /// The stored capsule.
    pub row: CapsuleRow,
    /// The plain access token when the ports are private.
    pub access_token: Option<String>,
}

/// Checks an egress policy: 400 `invalid_request` naming the offending field and value.
pub fn check_policy(policy: &NetworkPolicy) -> Result<(), ApiError> {
    policy
        .rules()
        .map(|_| ())
        .map_err(|m| ApiError::invalid(format!("network: {m}")))
}

/// How long a GET waits for the host's view of a capsule's network.
const NETWORK_LOOKUP_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(2);

impl AppState {
    /// Records a status change and announces it.
    pub(crate) async fn set_status(
        &self,
        row: &CapsuleRow,
        to: &str,
        error: Option<&str>,
    ) -> Result<CapsuleRow, ApiError> {
        self.store.set_status(&row.id, to, error).await?;
        let new = self.reload(row).await?;
        self.state_changed(&new, &row.status, to);
        Ok(new)
    }

    pub(crate) fn state_changed(&self, row: &CapsuleRow, from: &str, to: &str) {
        if from == to {
            return;
        }
        self.events.emit(
            &row.team_id,
            &Actor::system("lifecycle"),
            EventBody {
                event: "capsule.state.changed",
                resource_id: row.id.clone(),
                resource_type: "capsule",
                metadata: vec![("from", from.to_owned()), ("to", to.to_owned())],
                sandbox: Some(views::capsule(row)),
                ..Default::default()
            },
        );
    }

    pub(crate) async fn reload(&self, row: &CapsuleRow) -> Result<CapsuleRow, ApiError> {
        self.store
            .capsule(&row.id)
            .await?
            .ok_or_else(|| ApiError::not_found(format!("capsule {} not found", row.id)))
    }

    fn action_event(
        &self,
        row: &CapsuleRow,
        actor: &Actor,
        event: &'static str,
        result: &Result<CapsuleRow, ApiError>,
        metadata: Vec<(&'static str, String)>,
    ) {
        let (outcome, error, sandbox) = match result {
            Ok(r) => ("success", None, Some(views::capsule(r))),
            Err(e) => ("error", Some(e.message.clone()), Some(views::capsule(row))),
        };
        self.events.emit(
            &row.team_id,
            actor,
            EventBody {
                event,
                outcome: Some(outcome),
                resource_id: row.id.clone(),
                resource_type: "capsule",
                metadata,
                error,
                sandbox,
            },
        );
    }

    /// After a failed host call, stores what the host says the capsule is; returns that
    /// status.
    async fn settle_after_failure(&self, row: &CapsuleRow, err: &HostError) -> &'static str {
        let (status, msg) = match self.host.get(&row.id).await {
            Ok(info) => (views::host_status(info.status), info.error),
            Err(HostError::NotFound(_)) => ("missing", Some(err.to_string())),
            Err(e) => ("error", Some(format!("{err}; host status unknown: {e}"))),
        };
        if let Err(e) = self.store.set_status(&row.id, status, msg.as_deref()).await {
            tracing::error!(capsule = %row.id, error = %e, "could not store status after failure");
        }
        self.state_changed(row, &row.status, status);
        status
    }

    /// The answer to a failed pause or resume: when the capsule turned out to be dead (its
    /// VM gone or broken), 409 `invalid_state` naming its status, as for any capsule that is
    /// not running; otherwise the host's error.
    async fn failed_transition(&self, row: &CapsuleRow, err: HostError, op: &str) -> ApiError {
        let status = self.settle_after_failure(row, &err).await;
        if matches!(status, "error" | "missing" | "stopped") {
            ApiError::invalid_state(format!(
                "cannot {op} capsule {}: it is {status} ({err})",
                row.id
            ))
        } else {
            ApiError::from(err)
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
        if matches!(row.status.as_str(), "stopped" | "missing" | "error") {
            return None;
        }
        match tokio::time::timeout(NETWORK_LOOKUP_TIMEOUT, self.host.get(&row.id)).await {
            Ok(Ok(info)) => Some(info.network),
            _ => None,
        }
    }

    /// Replaces the egress policy of a running or paused capsule (a paused one gets it at
    /// resume); 409 `invalid_state` in other statuses. The policy is stored once the host
    /// has taken it.
    pub async fn set_network(
        &self,
        row: &CapsuleRow,
        policy: NetworkPolicy,
    ) -> Result<CapsuleRow, ApiError> {
        check_policy(&policy)?;
        if !matches!(row.status.as_str(), "running" | "paused") {
            return Err(ApiError::invalid_state(format!(
                "capsule {} is {}; its network policy can change while it is running or paused",
                row.id, row.status
            )));
        }
        let json = serde_json::to_string(&policy)
            .map_err(|e| ApiError::internal(format!("encode network policy: {e}")))?;
        let info = match tokio::time::timeout(
            self.config.host_op_timeout,
            self.host.set_network(&row.id, policy),
        )
        .await
        {
            Ok(r) => r?,
            Err(_) => {
                return Err(ApiError::unavailable(format!(
                    "host did not apply the network policy of {} within {:?}",
                    row.id, self.config.host_op_timeout
                )))
            }
        };
        self.store
            .set_network_policy(
                &row.id,
                &json,
                info.network.enabled,
                info.network.reason.as_deref(),
            )
            .await?;
        self.reload(row).await
    }

    /// Creates a capsule for a team.
    pub async fn create_capsule(
        &self,
        team_id: &str,
        actor: &Actor,
        mut spec: CreateSpec,
    ) -> Result<Created, ApiError> {
        let started = Instant::now();
        check_policy(&spec.network)?;
        let network_policy = serde_json::to_string(&spec.network)
            .map_err(|e| ApiError::internal(format!("encode network policy: {e}")))?;
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
            None => {
                let templates = self.host.templates().await?;
                if !templates
                    .iter()
                    .any(|t| views::is_base(t) && t.name == spec.template)
                {
                    return Err(ApiError::not_found(format!(
                        "template {} not found",
                        spec.template
                    )));
                }
                spec.template.clone()
            }
        };
        let id = ids::new_capsule_id();
        let reservation = self
            .admission
            .admit(self.host.as_ref(), &id, spec.vcpus, spec.memory_mb)
            .await?;
        let metadata = serde_json::to_string(&spec.metadata)
            .map_err(|e| ApiError::internal(format!("encode metadata: {e}")))?;
        let row = self
            .store
            .insert_capsule(&NewCapsule {
                id,
                team_id: team_id.to_owned(),
                status: "starting".into(),
                template: spec.template.clone(),
                host_template: host_template.clone(),
                vcpus: i64::from(spec.vcpus),
                memory_mb: i64::from(spec.memory_mb),
                timeout_sec: i64::from(spec.timeout_sec),
                metadata,
                network_policy,
                ports: spec.ports.as_str().to_owned(),
                access_token_hash: access_token.as_deref().map(ids::hash_key),
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
            let state = self.clone();
            let row = row.clone();
            let actor = actor.clone();
            tokio::spawn(async move {
                let result = state.finish_create(&row, req, reservation).await;
                state.telemetry.observe_lifecycle(
                    LifecycleOp::Create,
                    result.is_ok(),
                    started.elapsed(),
                );
                state.action_event(&row, &actor, "capsule.create", &result, Vec::new());
                result
            })
        };
        let row = match tokio::time::timeout(self.config.create_wait, task).await {
            Ok(Ok(result)) => result,
            Ok(Err(e)) => Err(ApiError::internal(format!("create task failed: {e}"))),
            Err(_) => {
                tracing::info!(capsule = %row.id, "create still running; answering starting");
                self.reload(&row).await
            }
        }?;
        Ok(Created { row, access_token })
    }

    async fn finish_create(
        &self,
        row: &CapsuleRow,
        req: CreateCapsule,
        reservation: crate::admission::Reservation,
    ) -> Result<CapsuleRow, ApiError> {
        let created =
            tokio::time::timeout(self.config.host_op_timeout, self.host.create(req)).await;
        drop(reservation);
        match created {
            Ok(Ok(info)) => {
                self.store_network_state(&info).await;
                if self.store.start_if_starting(&row.id).await? {
                    let new = self.reload(row).await?;
                    self.state_changed(&new, "starting", "running");
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
                    Err(ApiError::invalid_state(format!(
                        "capsule {} was {} before it finished starting",
                        row.id, now.status
                    )))
                }
            }
            Ok(Err(e)) => {
                self.abandon_create(row, &e.to_string()).await;
                Err(ApiError::from(e))
            }
            Err(_) => {
                let msg = format!(
                    "host did not create the capsule within {:?}",
                    self.config.host_op_timeout
                );
                self.abandon_create(row, &msg).await;
                Err(ApiError::unavailable(msg))
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
            .transition_err(&row.id, "starting", "error", why)
            .await
        {
            tracing::error!(capsule = %row.id, error = %e, "could not store failed create");
        }
    }

    /// Pauses a running capsule (409 unless running).
    pub async fn pause_capsule(
        &self,
        row: &CapsuleRow,
        actor: &Actor,
        reason: Option<&str>,
    ) -> Result<CapsuleRow, ApiError> {
        self.pause_inner(row, actor, reason, None).await
    }

    /// Pauses a capsule for the inactivity TTL, only if it is still idle at `now` (unix ms).
    pub async fn pause_idle_capsule(
        &self,
        row: &CapsuleRow,
        now: i64,
    ) -> Result<CapsuleRow, ApiError> {
        self.pause_inner(row, &Actor::system("ttl"), Some("ttl_expired"), Some(now))
            .await
    }

    async fn pause_inner(
        &self,
        row: &CapsuleRow,
        actor: &Actor,
        reason: Option<&str>,
        idle_at: Option<i64>,
    ) -> Result<CapsuleRow, ApiError> {
        let started = Instant::now();
        let moved = match idle_at {
            None => self.store.transition(&row.id, "running", "pausing").await?,
            Some(now) => self.store.pause_if_idle(&row.id, now).await?,
        };
        if !moved {
            let now = self.reload(row).await?;
            return Err(ApiError::invalid_state(format!(
                "capsule {} is {}, not running",
                row.id, now.status
            )));
        }
        self.state_changed(row, &row.status, "pausing");
        let pausing = self.reload(row).await?;
        let result =
            match tokio::time::timeout(self.config.host_op_timeout, self.host.pause(&row.id)).await
            {
                Ok(Ok(_)) => self.set_status(&pausing, "paused", None).await,
                Ok(Err(e)) => Err(self.failed_transition(&pausing, e, "pause").await),
                Err(_) => {
                    let e = HostError::Internal(format!(
                        "pause did not finish within {:?}",
                        self.config.host_op_timeout
                    ));
                    self.settle_after_failure(&pausing, &e).await;
                    Err(ApiError::from(e))
                }
            };
        self.telemetry
            .observe_lifecycle(LifecycleOp::Pause, result.is_ok(), started.elapsed());
        let meta = reason
            .map(|r| vec![("reason", r.to_owned())])
            .unwrap_or_default();
        self.action_event(row, actor, "capsule.pause", &result, meta);
        result
    }

    /// Resumes a paused capsule (409 unless paused).
    pub async fn resume_capsule(
        &self,
        row: &CapsuleRow,
        actor: &Actor,
    ) -> Result<CapsuleRow, ApiError> {
        let started = Instant::now();
        if !self.store.transition(&row.id, "paused", "resuming").await? {
            let now = self.reload(row).await?;
            return Err(ApiError::invalid_state(format!(
                "capsule {} is {}, not paused",
                row.id, now.status
            )));
        }
        self.state_changed(row, &row.status, "resuming");
        let resuming = self.reload(row).await?;
        let result = match tokio::time::timeout(
            self.config.host_op_timeout,
            self.host.resume(&row.id),
        )
        .await
        {
            Ok(Ok(info)) => {
                self.store_network_state(&info).await;
                self.store.mark_running(&row.id).await?;
                let new = self.reload(row).await?;
                self.state_changed(&new, "resuming", "running");
                Ok(new)
            }
            Ok(Err(e)) => Err(self.failed_transition(&resuming, e, "resume").await),
            Err(_) => {
                let e = HostError::Internal(format!(
                    "resume did not finish within {:?}",
                    self.config.host_op_timeout
                ));
                self.settle_after_failure(&resuming, &e).await;
                Err(ApiError::from(e))
            }
        };
        self.telemetry
            .observe_lifecycle(LifecycleOp::Resume, result.is_ok(), started.elapsed());
        self.action_event(row, actor, "capsule.resume", &result, Vec::new());
        result
    }

    /// Destroys a capsule in any state; the row stays as `stopped`.
    pub async fn destroy_capsule(&self, row: &CapsuleRow, actor: &Actor) -> Result<(), ApiError> {
        if row.status == "stopped" {
            return Ok(());
        }
        let stopping = self.set_status(row, "stopping", None).await?;
        let result = match self.host.destroy(&row.id).await {
            Ok(()) | Err(HostError::NotFound(_)) => {
                self.set_status(&stopping, "stopped", None).await
            }
            Err(e) => {
                self.settle_after_failure(&stopping, &e).await;
                Err(ApiError::from(e))
            }
        };
        self.action_event(row, actor, "capsule.destroy", &result, Vec::new());
        result.map(|_| ())
    }
}
