//! Snapshot templates: a team's names mapped to unique host template names. Making one runs
//! as a task of the core, so a caller that goes away never leaves a host template that no
//! row names.

use wrenn_host::{HostError, TemplateInfo, TemplateKind};

use crate::core::error::{DeleteSnapshotError, ListTemplatesError, SnapshotError};
use crate::core::events::{Actor, EventKind};
use crate::core::status::CapsuleStatus;
use crate::core::Core;
use crate::ids;
use crate::store::{BuiltTemplateRow, TemplateRow};

/// A request to make a snapshot template from a running capsule.
#[derive(Debug, Clone)]
pub struct SnapshotRequest {
    /// The capsule (`cl-…`), which keeps running.
    pub capsule_id: String,
    /// The template's name; a generated one when absent.
    pub name: Option<String>,
    /// Replace the team's snapshot of that name.
    pub overwrite: bool,
}

/// Which templates to list.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct TemplateFilter {
    /// The host's base templates.
    pub base: bool,
    /// The team's snapshot templates.
    pub snapshots: bool,
}

/// Templates a team can create capsules from.
#[derive(Debug, Clone, Default)]
pub struct Templates {
    /// The host's base templates.
    pub base: Vec<TemplateInfo>,
    /// Templates made by builds (base templates to every team).
    pub built: Vec<BuiltTemplateRow>,
    /// The team's snapshot templates.
    pub snapshots: Vec<TemplateRow>,
}

impl Core {
    /// Makes a snapshot template of a team's running capsule.
    pub async fn create_snapshot(
        &self,
        team_id: &str,
        actor: &Actor,
        req: SnapshotRequest,
    ) -> Result<TemplateRow, SnapshotError> {
        if !ids::is_capsule_id(&req.capsule_id) {
            return Err(SnapshotError::InvalidId(req.capsule_id));
        }
        let name = req.name.clone().unwrap_or_else(ids::new_snapshot_name);
        if !ids::is_template_name(&name) {
            return Err(SnapshotError::InvalidName(name));
        }
        let row = self.capsule_of(team_id, &req.capsule_id).await?;
        if self.is_base_template(&name).await? {
            return Err(SnapshotError::BaseName(name));
        }
        let existing = self.store.template(team_id, &name).await?;
        if existing.is_some() && !req.overwrite {
            return Err(SnapshotError::Exists(name));
        }
        if !self
            .store
            .transition(&row.id, CapsuleStatus::Running, CapsuleStatus::Snapshotting)
            .await?
        {
            let now = self.reload(&row).await?;
            return Err(SnapshotError::NotRunning {
                id: row.id.clone(),
                status: now.status,
            });
        }
        self.state_changed(&row, CapsuleStatus::Running, CapsuleStatus::Snapshotting);
        let core = self.clone();
        let (team, actor) = (team_id.to_owned(), actor.clone());
        let op = async move {
            let host_name = ids::new_host_template_name();
            let made = core.host.snapshot(&row.id, &host_name, false).await;
            let snap_row = core.reload(&row).await?;
            let result = match made {
                Ok(info) => {
                    core.set_status(&snap_row, CapsuleStatus::Running, None)
                        .await?;
                    let t = TemplateRow {
                        team_id: team.clone(),
                        name: name.clone(),
                        host_name,
                        vcpus: i64::from(info.vcpus),
                        memory_mb: i64::from(info.memory_mb),
                        size_bytes: i64::try_from(info.size_bytes).unwrap_or(i64::MAX),
                        created_at: crate::store::now_ms(),
                    };
                    core.store.upsert_template(&t).await?;
                    if let Some(old) = existing {
                        match core.host.delete_template(&old.host_name).await {
                            Ok(()) | Err(HostError::NotFound(_)) => {}
                            Err(e) => {
                                tracing::warn!(template = %old.host_name, error = %e, "could not delete replaced snapshot")
                            }
                        }
                    }
                    Ok(t)
                }
                Err(e) => {
                    let status = match core.host.get(&row.id).await {
                        Ok(info) => CapsuleStatus::from(info.status),
                        Err(_) => CapsuleStatus::Error,
                    };
                    core.set_status(&snap_row, status, None).await?;
                    Err(SnapshotError::Host(e))
                }
            };
            core.events.emit(
                &team,
                &actor,
                EventKind::SnapshotCreated {
                    name,
                    capsule_id: row.id.clone(),
                },
                Some(result.as_ref().map(|_| ()).map_err(|e| e.to_string())),
            );
            result
        };
        self.owned(op, SnapshotError::Task).await
    }

    /// Deletes a team's snapshot template; base templates are protected.
    pub async fn delete_snapshot(
        &self,
        team_id: &str,
        actor: &Actor,
        name: &str,
    ) -> Result<(), DeleteSnapshotError> {
        if !ids::is_template_name(name) {
            return Err(DeleteSnapshotError::InvalidName(name.to_owned()));
        }
        let Some(t) = self.store.template(team_id, name).await? else {
            if self.is_base_template(name).await? {
                return Err(DeleteSnapshotError::Protected(name.to_owned()));
            }
            return Err(DeleteSnapshotError::NotFound(name.to_owned()));
        };
        match self.host.delete_template(&t.host_name).await {
            Ok(()) | Err(HostError::NotFound(_)) => {}
            Err(e) => return Err(e.into()),
        }
        self.store.delete_template(team_id, name).await?;
        self.events.emit(
            team_id,
            actor,
            EventKind::SnapshotDeleted {
                name: name.to_owned(),
            },
            Some(Ok(())),
        );
        Ok(())
    }

    /// The templates a team may create capsules from.
    pub async fn templates(
        &self,
        team_id: &str,
        filter: TemplateFilter,
    ) -> Result<Templates, ListTemplatesError> {
        let mut out = Templates::default();
        if filter.base {
            out.base = self
                .host
                .templates()
                .await?
                .into_iter()
                .filter(|t| t.kind == TemplateKind::Base)
                .collect();
            out.built = self.store.list_built_templates().await?;
        }
        if filter.snapshots {
            out.snapshots = self.store.list_templates(team_id).await?;
        }
        Ok(out)
    }
}
