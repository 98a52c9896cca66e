//! [`HostApi`] for the capsule manager: the in-process host API of `wrenn server`.

use std::sync::Arc;

use wrenn_host::{
    Capacity, CapsuleInfo, CreateCapsule, HostApi, HostError, HostStatus, SharedChannel,
    TemplateInfo,
};

use crate::error::AgentError;
use crate::manager::CapsuleManager;
use crate::slots::status_name;

#[async_trait::async_trait]
impl HostApi for CapsuleManager {
    async fn create(&self, req: CreateCapsule) -> Result<CapsuleInfo, HostError> {
        let inner = Arc::clone(&self.inner);
        let op = inner.create(req.id, req.template, req.vcpus, req.memory_mb, req.network);
        Ok(self.spawn_op(op).await?)
    }

    async fn get(&self, id: &str) -> Result<CapsuleInfo, HostError> {
        Ok(self.inner.slot(id)?.info(&self.inner.net))
    }

    async fn list(&self) -> Result<Vec<CapsuleInfo>, HostError> {
        let mut out: Vec<CapsuleInfo> = self
            .inner
            .slots
            .all()
            .iter()
            .map(|s| s.info(&self.inner.net))
            .collect();
        out.sort_by(|a, b| a.id.cmp(&b.id));
        Ok(out)
    }

    async fn destroy(&self, id: &str) -> Result<(), HostError> {
        let op = Arc::clone(&self.inner).destroy(id.to_owned());
        Ok(self.spawn_op(op).await?)
    }

    async fn pause(&self, id: &str) -> Result<CapsuleInfo, HostError> {
        let op = Arc::clone(&self.inner).pause_or_resume(id.to_owned(), true);
        Ok(self.spawn_op(op).await?)
    }

    async fn resume(&self, id: &str) -> Result<CapsuleInfo, HostError> {
        let op = Arc::clone(&self.inner).pause_or_resume(id.to_owned(), false);
        Ok(self.spawn_op(op).await?)
    }

    async fn set_network(
        &self,
        id: &str,
        policy: wrenn_host::NetworkPolicy,
    ) -> Result<CapsuleInfo, HostError> {
        let inner = Arc::clone(&self.inner);
        let id = id.to_owned();
        let op = async move {
            let rules = crate::network::rules(&policy)?;
            let slot = inner.slot(&id)?;
            // Under the lifecycle lock: a pause or resume sees the old policy or the new.
            let _run = slot.run.lock().await;
            slot.update(|m| m.network.policy = policy)?;
            if slot.status() == HostStatus::Running {
                if let Some(net) = inner.net.serves(&slot.manifest()) {
                    net.set_policy(&id, &rules).await?;
                }
            }
            Ok(slot.info(&inner.net))
        };
        Ok(self.spawn_op(op).await?)
    }

    async fn guest(&self, id: &str) -> Result<SharedChannel, HostError> {
        let slot = self.inner.slot(id)?;
        let status = slot.status();
        if status != HostStatus::Running {
            return Err(AgentError::InvalidState {
                id: id.to_owned(),
                status: status_name(status),
                op: "this call",
                needs: "running",
            }
            .into());
        }
        Ok(self.inner.guest_of(&slot).await?.channel())
    }

    async fn snapshot(
        &self,
        id: &str,
        name: &str,
        overwrite: bool,
    ) -> Result<TemplateInfo, HostError> {
        if !wrenn_host::rules::is_template_name(name)
            || wrenn_images::BaseTemplate::all()
                .iter()
                .any(|b| b.name() == name)
        {
            return Err(HostError::InvalidRequest(format!(
                "bad template name {name:?}"
            )));
        }
        if !overwrite && self.inner.layout.template(name).exists() {
            return Err(AgentError::TemplateExists(name.to_owned()).into());
        }
        let inner = Arc::clone(&self.inner);
        let (id, name) = (id.to_owned(), name.to_owned());
        let op = async move {
            let slot = inner.slot(&id)?;
            let mut vm = slot.run.lock().await;
            inner
                .pause_locked(&slot, &mut vm, HostStatus::Snapshotting)
                .await?;
            // Paused now (status stored as such): copy the snapshot, then run again.
            inner
                .cfg
                .faults
                .hit(crate::faults::FaultPoint::SnapshotPaused);
            let published = {
                let inner = Arc::clone(&inner);
                let dir = slot.dir.clone();
                let name = name.clone();
                tokio::task::spawn_blocking(move || inner.templates.publish(&dir, &name, overwrite))
                    .await
                    .map_err(|e| AgentError::Tool(format!("template copy task: {e}")))?
            };
            if published.is_ok() {
                inner
                    .cfg
                    .faults
                    .hit(crate::faults::FaultPoint::SnapshotPublished);
            }
            let resumed = inner
                .resume_locked(&slot, &mut vm, HostStatus::Resuming)
                .await;
            let template = published?;
            resumed?;
            Ok(template)
        };
        Ok(self.spawn_op(op).await?)
    }

    async fn delete_template(&self, name: &str) -> Result<(), HostError> {
        Ok(self.inner.templates.remove(name)?)
    }

    async fn templates(&self) -> Result<Vec<TemplateInfo>, HostError> {
        Ok(self.inner.templates.list())
    }

    async fn capacity(&self) -> Result<Capacity, HostError> {
        Ok(self.inner.capacity())
    }

    fn events(&self) -> Option<tokio::sync::broadcast::Receiver<wrenn_host::HostEvent>> {
        Some(self.inner.events.subscribe())
    }
}
