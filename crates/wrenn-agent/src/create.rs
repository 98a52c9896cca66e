//! Create: a capsule is a restored template snapshot. Its memory file and disk are copied
//! sparsely from the template, its VMM restores them, and envd gets the clock and fresh
//! entropy. A create that fails leaves nothing behind.

use std::path::PathBuf;
use std::sync::Arc;

use wrenn_envd_client::EnvdClient;
use wrenn_host::{rules, CapsuleInfo, HostStatus};
use wrenn_vmm::Vm;

use crate::error::{AgentError, Result};
use crate::faults::FaultPoint;
use crate::guest::sync_guest;
use crate::layout::files;
use crate::manager::Inner;
use crate::manifest::{now_unix, CapsuleManifest, CapsuleNetwork, CAPSULE_FORMAT};
use crate::network;
use crate::slots::{lock, Slot};

impl Inner {
    /// Create: copy the template snapshot's memory and disk, restore, sync the guest.
    pub(crate) async fn create(
        self: Arc<Self>,
        id: String,
        template: String,
        vcpus: u32,
        memory_mb: u32,
        policy: wrenn_host::NetworkPolicy,
    ) -> Result<CapsuleInfo> {
        network::rules(&policy)?;
        if !rules::is_capsule_id(&id) {
            return Err(AgentError::InvalidRequest(format!("bad capsule id {id:?}")));
        }
        rules::check_shape(i64::from(vcpus), i64::from(memory_mb))
            .map_err(AgentError::InvalidRequest)?;
        // A snapshot template fixes the shape.
        let (vcpus, memory_mb) = match self
            .templates
            .list()
            .into_iter()
            .find(|t| t.name == template)
        {
            Some(t) if t.kind == wrenn_host::TemplateKind::Snapshot => (t.vcpus, t.memory_mb),
            _ => (vcpus, memory_mb),
        };
        let dir = self.layout.capsule(&id);
        let manifest = CapsuleManifest {
            format: CAPSULE_FORMAT,
            id: id.clone(),
            template: template.clone(),
            driver: self.vmm.identity().driver.clone(),
            vcpus,
            memory_mb,
            status: HostStatus::Starting,
            error: None,
            created_at: now_unix(),
            kernel: PathBuf::new(),
            initrd: PathBuf::new(),
            network: CapsuleNetwork { policy, nic: false },
        };
        let slot = self.slots.admit(Slot::new(dir.clone(), manifest))?;
        let mut run = slot.run.lock().await;
        match self.create_in(&slot, &template, vcpus, memory_mb).await {
            Ok((vm, envd)) => {
                self.cfg.faults.hit(FaultPoint::CreateRestored);
                self.watch_vmm(&slot, vm.as_ref());
                *run = Some(vm);
                *lock(&slot.envd) = Some(envd);
                slot.set_status(HostStatus::Running, None)?;
                Ok(slot.info(&self.net))
            }
            Err(e) => {
                tracing::warn!(capsule = %id, error = %e, "create failed; removing what was made");
                self.slots.remove(&id);
                if dir.exists() {
                    self.vmm.kill_orphan(&dir).await;
                    let _ = std::fs::remove_dir_all(&dir);
                }
                self.net.detach(&id).await;
                Err(e)
            }
        }
    }

    /// The steps of a create after its slot is admitted: copy, restore, run, sync.
    async fn create_in(
        &self,
        slot: &Slot,
        template: &str,
        vcpus: u32,
        memory_mb: u32,
    ) -> Result<(Box<dyn Vm>, EnvdClient)> {
        let snap = self.templates.snapshot(template, vcpus, memory_mb).await?;
        let dir = slot.dir.clone();
        wrenn_durable::private_dir(&dir).map_err(AgentError::io("creating", &dir))?;
        slot.update(|m| {
            m.kernel = snap.manifest.kernel.clone();
            m.initrd = snap.manifest.initrd.clone();
            m.network.nic = snap.manifest.nic;
        })?;
        let (src_mem, src_disk, d) = (snap.memory(), snap.disk(), dir.clone());
        let disk_name = self.vmm.disk_name();
        tokio::task::spawn_blocking(move || -> Result<()> {
            crate::fsutil::copy_template_file(&src_mem, &d.join(files::MEMORY))
                .map_err(AgentError::io("copying", &src_mem))?;
            crate::fsutil::copy_template_file(&src_disk, &d.join(disk_name))
                .map_err(AgentError::io("copying", &src_disk))?;
            Ok(())
        })
        .await
        .map_err(|e| AgentError::Tool(format!("copy task: {e}")))??;
        self.cfg.faults.hit(FaultPoint::CreateCopied);
        self.net.attach(&slot.manifest()).await?;
        let spec = self.spec_of(slot);
        let vm = self.vmm.restore(&spec, &snap.state()).await?;
        if let Err(e) = vm.run().await {
            let _ = vm.stop().await;
            return Err(e.into());
        }
        match sync_guest(
            &vm.agent_socket(),
            self.cfg.envd_timeout,
            self.net.nameservers(&slot.manifest()),
        )
        .await
        {
            Ok(envd) => Ok((vm, envd)),
            Err(e) => {
                let _ = vm.stop().await;
                Err(e)
            }
        }
    }
}
