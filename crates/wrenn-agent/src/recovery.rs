//! Recovery after an agent restart (even after `kill -9`): each capsule's status is decided
//! from its stored manifest, its snapshot on disk and whether its VMM still runs
//! (docs/architecture.md, "Crash safety"). Running VMMs are re-adopted, paused snapshots
//! stay paused, dead capsules become `error`, half-made ones are removed.

use std::path::Path;
use std::sync::Arc;

use wrenn_envd_client::EnvdClient;
use wrenn_host::HostStatus;
use wrenn_vmm::{Vm, VmSpec};

use crate::error::{AgentError, Result};
use crate::fsutil;
use crate::guest::sync_guest;
use crate::layout::files;
use crate::manager::Inner;
use crate::manifest::{CapsuleManifest, SnapshotManifest};
use crate::network;
use crate::slots::{lock, Slot};

impl Inner {
    /// Re-adopts every capsule directory found on disk, then sweeps the networks no running
    /// capsule uses.
    pub(crate) async fn recover(&self) -> Result<()> {
        let root = self.layout.capsules();
        let entries = std::fs::read_dir(&root).map_err(AgentError::io("reading", &root))?;
        for e in entries.flatten() {
            let dir = e.path();
            if !dir.is_dir() {
                continue;
            }
            let id = e.file_name().to_string_lossy().into_owned();
            match self.recover_one(&dir).await {
                Ok(Some(slot)) => {
                    tracing::info!(capsule = %id, status = ?slot.status(), "re-adopted");
                    self.slots.insert(id, slot);
                }
                Ok(None) => {}
                Err(e) => tracing::error!(capsule = %id, error = %e, "recovery failed"),
            }
        }
        self.sweep_networks().await;
        Ok(())
    }

    /// Removes the namespaces of this agent that no running capsule uses (left by a crash,
    /// or by capsules that are paused or gone).
    async fn sweep_networks(&self) {
        let Some(net) = self.net.host() else {
            return;
        };
        let keep = self.slots.running();
        match net.sweep(&keep).await {
            Ok(removed) if !removed.is_empty() => {
                tracing::info!(?removed, "removed capsule networks nobody uses")
            }
            Ok(_) => {}
            Err(e) => tracing::warn!(error = %e, "sweeping capsule networks"),
        }
    }

    /// Re-adopts one capsule directory after a restart. Returns `None` when the directory
    /// held a capsule that was never acknowledged (it is removed).
    async fn recover_one(&self, dir: &Path) -> Result<Option<Arc<Slot>>> {
        let manifest = match CapsuleManifest::load(&dir.join(files::MANIFEST)) {
            Ok(m) => m,
            Err(e) => {
                tracing::warn!(dir = %dir.display(), error = %e, "removing capsule directory without a usable manifest");
                self.vmm.kill_orphan(dir).await;
                let _ = std::fs::remove_dir_all(dir);
                return Ok(None);
            }
        };
        if manifest.driver != self.vmm.identity().driver {
            // Its VMM (running or not) is another driver's: neither adopt nor remove it.
            let why = format!(
                "made under the {} VMM driver; this agent runs the {} driver",
                manifest.driver,
                self.vmm.identity().driver
            );
            tracing::warn!(dir = %dir.display(), "{why}");
            let mut manifest = manifest;
            manifest.status = HostStatus::Error;
            manifest.error = Some(why);
            return Ok(Some(Arc::new(Slot::new(dir.to_owned(), manifest))));
        }
        // Capsules made by older versions may be readable by every user of the host.
        let _ = wrenn_durable::private_dir(dir);
        for f in [files::MEMORY, self.vmm.disk_name()] {
            let _ = wrenn_durable::make_private(&dir.join(f));
        }
        let status = manifest.status;
        let slot = Arc::new(Slot::new(dir.to_owned(), manifest));
        if matches!(status, HostStatus::Starting | HostStatus::Stopping) {
            // Never acknowledged, or already going away.
            self.vmm.kill_orphan(dir).await;
            let _ = std::fs::remove_dir_all(dir);
            return Ok(None);
        }
        let spec = self.spec_of(&slot);
        let alive = self.vmm.is_alive(dir);
        let snap = dir.join(files::SNAPSHOT);
        let snapshot_ok = snap.exists()
            && SnapshotManifest::verify(
                &snap,
                &dir.join(files::MEMORY),
                &dir.join(self.vmm.disk_name()),
                self.vmm.identity(),
            )
            .is_ok();
        let _ = fsutil::clear_dir(&dir.join(files::SNAPSHOT_NEW));
        let _ = std::fs::remove_dir(dir.join(files::SNAPSHOT_NEW));
        let mut vm_handle = None;
        let outcome: (HostStatus, Option<String>) = match status {
            HostStatus::Paused => {
                self.vmm.kill_orphan(dir).await;
                (HostStatus::Paused, None)
            }
            HostStatus::Pausing | HostStatus::Snapshotting if snapshot_ok => {
                self.vmm.kill_orphan(dir).await;
                (HostStatus::Paused, None)
            }
            HostStatus::Resuming if snapshot_ok => {
                // The vCPUs never ran from this snapshot: it is still the truth.
                self.vmm.kill_orphan(dir).await;
                (HostStatus::Paused, None)
            }
            _ if alive => match self.adopt(&spec, &slot.manifest()).await {
                Ok((vm, envd)) => {
                    let _ = std::fs::remove_dir_all(dir.join(files::SNAPSHOT_USED));
                    *lock(&slot.envd) = envd;
                    self.watch_vmm(&slot, vm.as_ref());
                    vm_handle = Some(vm);
                    (HostStatus::Running, None)
                }
                Err(e) => {
                    self.vmm.kill_orphan(dir).await;
                    (
                        HostStatus::Error,
                        Some(format!("could not re-adopt the VMM: {e}")),
                    )
                }
            },
            HostStatus::Error => (HostStatus::Error, lock(&slot.manifest).error.clone()),
            _ => (
                HostStatus::Error,
                Some("the VMM process ended while the agent was away".into()),
            ),
        };
        *slot.run.lock().await = vm_handle;
        slot.set_status(outcome.0, outcome.1)?;
        Ok(Some(slot))
    }

    /// Re-attaches to a live VMM: its vCPUs run again, and the guest gets the clock and fresh
    /// entropy when it answers (it may not yet: `guest()` connects lazily then).
    async fn adopt(
        &self,
        spec: &VmSpec,
        m: &CapsuleManifest,
    ) -> Result<(Box<dyn Vm>, Option<EnvdClient>)> {
        let vm = self.vmm.adopt(spec).await?;
        if let Some(net) = self.net.serves(m) {
            // The namespace outlives the agent (the VMM is in it): take its forwarder back.
            if let Err(e) = net.adopt(&m.id, &network::rules(&m.network.policy)?).await {
                tracing::warn!(capsule = %m.id, error = %e, "re-adopting the capsule network");
            }
        }
        if !vm.is_running().await {
            vm.run().await?;
        }
        let envd = match sync_guest(
            &vm.agent_socket(),
            self.cfg.envd_timeout,
            self.net.nameservers(m),
        )
        .await
        {
            Ok(e) => Some(e),
            Err(e) => {
                tracing::warn!(dir = %spec.dir.display(), error = %e, "re-adopted VMM's guest does not answer yet");
                None
            }
        };
        Ok((vm, envd))
    }
}
