//! Background work: startup reconciliation, the inactivity TTL, metrics sampling.

use std::collections::HashMap;
use std::time::Duration;

use wrenn_host::HostError;

use crate::core::error::{DestroyError, TransitionError};
use crate::core::lifecycle::OnTimeout;
use crate::core::status::CapsuleStatus;
use crate::core::Core;
use crate::store::{now_ms, MetricSample, TeamSample};

/// Brings the store in line with what the host holds: a capsule the host does not know is
/// `missing`; one it knows gets the host's status; interrupted destroys are finished.
pub async fn reconcile(state: &Core) -> Result<(), crate::ControlError> {
    let held: HashMap<String, _> = state
        .host
        .list()
        .await?
        .into_iter()
        .map(|c| (c.id.clone(), c))
        .collect();
    for row in state.store.list_live_capsules().await? {
        let to = match (row.status, held.get(&row.id)) {
            (CapsuleStatus::Stopping, _) => {
                match state.host.destroy(&row.id).await {
                    Ok(()) | Err(HostError::NotFound(_)) => {}
                    Err(e) => {
                        tracing::warn!(capsule = %row.id, error = %e, "finishing destroy failed")
                    }
                }
                CapsuleStatus::Stopped
            }
            (CapsuleStatus::Error, None) => continue,
            (_, None) => CapsuleStatus::Missing,
            (_, Some(info)) => CapsuleStatus::from(info.status),
        };
        if to != row.status {
            tracing::info!(capsule = %row.id, from = %row.status, to = %to, "reconciled capsule status");
            let err = held.get(&row.id).and_then(|i| i.error.clone());
            let err = if to == CapsuleStatus::Missing {
                Some("the host does not hold this capsule".to_owned())
            } else {
                err
            };
            state.store.set_status(&row.id, to, err.as_deref()).await?;
            state.state_changed(&row, row.status, to);
        }
    }
    let known: std::collections::HashSet<String> = state
        .store
        .list_live_capsules()
        .await?
        .into_iter()
        .map(|r| r.id)
        .collect();
    for id in held.keys().filter(|id| !known.contains(*id)) {
        tracing::warn!(capsule = %id, "host holds a capsule the store does not know; leaving it alone");
    }
    // Builds cut short by the restart end failed, their capsules and half-made templates gone.
    if let Err(e) = state.recover_builds().await {
        tracing::warn!(error = %e, "could not clean up after interrupted builds");
    }
    Ok(())
}

/// One pass of the inactivity TTL: pauses (or, when their `on_timeout` says so, destroys)
/// idle running capsules without open streams.
pub async fn ttl_pass(state: &Core) {
    let now = now_ms();
    let idle = match state.store.idle_capsules(now).await {
        Ok(v) => v,
        Err(e) => {
            tracing::warn!(error = %e, "TTL check could not list capsules");
            return;
        }
    };
    for row in idle {
        if state.activity.has_open_streams(&row.id) {
            continue;
        }
        if OnTimeout::from_stored(&row.on_timeout) == OnTimeout::Kill {
            tracing::info!(capsule = %row.id, timeout_sec = row.timeout_sec, "destroying idle capsule");
            match state.destroy_idle_capsule(&row, now).await {
                Ok(()) | Err(DestroyError::NoLongerIdle(_)) => {}
                Err(e) => tracing::warn!(capsule = %row.id, error = %e, "TTL destroy failed"),
            }
            continue;
        }
        tracing::info!(capsule = %row.id, timeout_sec = row.timeout_sec, "pausing idle capsule");
        match state.pause_idle_capsule(&row, now).await {
            Ok(_) => {}
            // Became active (or changed) since the check: not idle any more.
            Err(TransitionError::InvalidState { .. }) => {}
            Err(e) => tracing::warn!(capsule = %row.id, error = %e, "TTL pause failed"),
        }
    }
}

/// Notices capsules that died under the control plane: a `running` or `paused` capsule the
/// host no longer holds becomes `missing`; one the host reports as `error` becomes `error`.
/// Changes are conditional on the status read, so in-flight transitions are never overwritten.
pub async fn health_pass(state: &Core) {
    let rows = match state.store.list_live_capsules().await {
        Ok(v) => v,
        Err(e) => {
            tracing::warn!(error = %e, "health check could not list capsules");
            return;
        }
    };
    let held: HashMap<String, _> = match state.host.list().await {
        Ok(v) => v.into_iter().map(|c| (c.id.clone(), c)).collect(),
        Err(e) => {
            tracing::warn!(error = %e, "health check could not list host capsules");
            return;
        }
    };
    for row in rows {
        if !matches!(row.status, CapsuleStatus::Running | CapsuleStatus::Paused) {
            continue;
        }
        let (to, why) = match held.get(&row.id) {
            None => (
                CapsuleStatus::Missing,
                "the host no longer holds this capsule".to_owned(),
            ),
            Some(info) if info.status == wrenn_host::HostStatus::Error => (
                CapsuleStatus::Error,
                info.error
                    .clone()
                    .unwrap_or_else(|| "the host reports an error".into()),
            ),
            Some(_) => continue,
        };
        match state
            .store
            .transition_err(&row.id, row.status, to, &why)
            .await
        {
            Ok(true) => {
                tracing::warn!(capsule = %row.id, from = %row.status, to = %to, reason = %why, "capsule lost");
                state.state_changed(&row, row.status, to);
            }
            Ok(false) => {}
            Err(e) => tracing::warn!(capsule = %row.id, error = %e, "could not store lost capsule"),
        }
    }
}

/// One sampling pass: team reservations and guest metrics of running capsules.
pub async fn sample_pass(state: &Core, interval: Duration) {
    let now = chrono::Utc::now().timestamp();
    let running = match state.store.capsules_in(CapsuleStatus::Running).await {
        Ok(v) => v,
        Err(e) => {
            tracing::warn!(error = %e, "sampler could not list capsules");
            return;
        }
    };
    let mut per_team: HashMap<String, TeamSample> = HashMap::new();
    if let Ok(teams) = state.store.team_ids().await {
        for t in teams {
            per_team.insert(
                t,
                TeamSample {
                    ts: now,
                    interval_sec: interval.as_secs().max(1) as i64,
                    running: 0,
                    vcpus: 0,
                    memory_mb: 0,
                },
            );
        }
    }
    for row in &running {
        if let Some(s) = per_team.get_mut(&row.team_id) {
            s.running += 1;
            s.vcpus += row.vcpus;
            s.memory_mb += row.memory_mb;
        }
    }
    for (team, s) in &per_team {
        if let Err(e) = state.store.insert_team_sample(team, s).await {
            tracing::warn!(team, error = %e, "could not store team sample");
        }
    }
    for row in running {
        let metrics = async {
            let guest = state.host.guest(&row.id).await.map_err(|e| e.to_string())?;
            let guest = wrenn_envd_client::EnvdClient::over(guest);
            guest.metrics().await.map_err(|e| e.to_string())
        };
        match tokio::time::timeout(Duration::from_secs(5), metrics).await {
            Ok(Ok(m)) => {
                let sample = MetricSample {
                    ts: now,
                    cpu_pct: m.cpu_pct,
                    mem_bytes: i64::try_from(m.mem_bytes).unwrap_or(i64::MAX),
                    disk_bytes: i64::try_from(m.disk_bytes).unwrap_or(i64::MAX),
                    mem_total_bytes: i64::try_from(m.mem_total_bytes).unwrap_or(i64::MAX),
                    disk_total_bytes: i64::try_from(m.disk_total_bytes).unwrap_or(i64::MAX),
                };
                if let Err(e) = state.store.insert_metric(&row.id, &sample).await {
                    tracing::warn!(capsule = %row.id, error = %e, "could not store metrics");
                }
            }
            Ok(Err(e)) => tracing::debug!(capsule = %row.id, error = %e, "no metrics"),
            Err(_) => tracing::debug!(capsule = %row.id, "metrics timed out"),
        }
    }
}

/// Runs the TTL checker and the sampler until the returned handles are aborted.
pub fn spawn(state: Core) -> Vec<tokio::task::JoinHandle<()>> {
    let ttl_state = state.clone();
    let host_state = state.clone();
    let ttl = tokio::spawn(async move {
        let mut tick = tokio::time::interval(ttl_state.config.ttl_check_interval);
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            tick.tick().await;
            ttl_pass(&ttl_state).await;
        }
    });
    let sampler = tokio::spawn(async move {
        let interval = state.config.metrics_interval;
        let mut tick = tokio::time::interval(interval);
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        let mut passes: u64 = 0;
        loop {
            tick.tick().await;
            health_pass(&state).await;
            sample_pass(&state, interval).await;
            passes += 1;
            if passes % 360 == 1 {
                let cutoff = chrono::Utc::now().timestamp() - 31 * 86400;
                if let Err(e) = state.store.prune_samples(cutoff).await {
                    tracing::warn!(error = %e, "pruning samples failed");
                }
                if let Err(e) = state.store.prune_sessions().await {
                    tracing::warn!(error = %e, "pruning sessions failed");
                }
            }
        }
    });
    let mut tasks = vec![ttl, sampler];
    if let Some(mut changes) = host_state.host.events() {
        // A change the host made on its own (a VMM that died) reaches the store and the
        // event stream at once instead of at the next health pass.
        tasks.push(tokio::spawn(async move {
            loop {
                match changes.recv().await {
                    Ok(ev) => tracing::info!(capsule = %ev.capsule, status = ?ev.status, "host reports a change"),
                    Err(tokio::sync::broadcast::error::RecvError::Lagged(n)) => {
                        tracing::debug!(missed = n, "host changes lagged")
                    }
                    Err(tokio::sync::broadcast::error::RecvError::Closed) => break,
                }
                health_pass(&host_state).await;
            }
        }));
    }
    tasks
}
