//! Pause to snapshot and resume.
//!
//! Pause: status `pausing` is stored, the VMM saves the device state into `snapshot.new/`,
//! a manifest is written, `snapshot.new` becomes `snapshot`, and only then does the VMM end
//! and `paused` get stored; any failure before the rename leaves the capsule running.
//! Resume: the snapshot is verified, restored with vCPUs stopped, marked used, the vCPUs run
//! and envd gets the clock; a snapshot that cannot be loaded leaves the capsule paused.

use std::sync::Arc;

use wrenn_host::{CapsuleInfo, HostStatus};
use wrenn_vmm::Vm;

use crate::error::{AgentError, Result};
use crate::faults::FaultPoint;
use crate::fsutil;
use crate::guest::sync_guest;
use crate::layout::files;
use crate::manager::Inner;
use crate::manifest::SnapshotManifest;
use crate::slots::{lock, status_name, Slot};

impl Inner {
    /// Pause: save the device state into `snapshot.new`, write its manifest, rename it to
    /// `snapshot`, end the VMM. Any failure before the rename leaves the VM running.
    pub(crate) async fn pause_locked(
        &self,
        slot: &Slot,
        vm_slot: &mut Option<Box<dyn Vm>>,
        during: HostStatus,
    ) -> Result<()> {
        let id = slot.id();
        let status = slot.status();
        if status != HostStatus::Running {
            return Err(AgentError::InvalidState {
                id,
                status: status_name(status),
                op: "pause",
                needs: "running",
            });
        }
        let Some(vm) = vm_slot.as_ref() else {
            return Err(AgentError::InvalidState {
                id,
                status: "without a VMM".into(),
                op: "pause",
                needs: "running",
            });
        };
        slot.set_status(during, None)?;
        self.cfg.faults.hit(FaultPoint::PauseStarted);
        let new = slot.dir.join(files::SNAPSHOT_NEW);
        let saved = async {
            std::fs::create_dir_all(&new).map_err(AgentError::io("creating", &new))?;
            fsutil::clear_dir(&new).map_err(AgentError::io("clearing", &new))?;
            vm.save(&new.join(SnapshotManifest::STATE)).await?;
            let written = SnapshotManifest::write(
                &new,
                &slot.dir,
                self.vmm.disk_name(),
                &slot.shape(),
                self.vmm.identity(),
            )
            .and_then(|_| {
                let snap = slot.dir.join(files::SNAPSHOT);
                if snap.exists() {
                    std::fs::remove_dir_all(&snap).map_err(AgentError::io("removing", &snap))?;
                }
                std::fs::rename(&new, &snap).map_err(AgentError::io("renaming", &new))?;
                wrenn_durable::sync_dir(&slot.dir).map_err(AgentError::io("syncing", &slot.dir))
            });
            if written.is_err() {
                // The state was saved but the snapshot is not in place: keep running.
                let _ = vm.run().await;
            }
            written
        }
        .await;
        if let Err(e) = saved {
            let _ = fsutil::clear_dir(&new);
            let _ = std::fs::remove_dir(&new);
            if self.vmm.is_alive(&slot.dir) {
                slot.set_status(HostStatus::Running, None)?;
            } else {
                lock(&slot.envd).take();
                vm_slot.take();
                slot.set_status(
                    HostStatus::Error,
                    Some(format!("the VMM ended during pause: {e}")),
                )?;
            }
            return Err(e);
        }
        self.cfg.faults.hit(FaultPoint::PauseSaved);
        lock(&slot.envd).take();
        if let Some(vm) = vm_slot.take() {
            vm.stop().await?;
        }
        self.net.detach(&id).await;
        self.vmm.remove_runtime_files(&slot.dir);
        self.cfg.faults.hit(FaultPoint::PauseVmmEnded);
        slot.set_status(HostStatus::Paused, None)?;
        Ok(())
    }

    /// Resume: verify the snapshot, restore it with vCPUs stopped, mark it used, start the
    /// vCPUs, sync the guest. A snapshot that cannot be loaded leaves the capsule paused.
    pub(crate) async fn resume_locked(
        &self,
        slot: &Arc<Slot>,
        vm_slot: &mut Option<Box<dyn Vm>>,
        during: HostStatus,
    ) -> Result<()> {
        let id = slot.id();
        let status = slot.status();
        if status != HostStatus::Paused {
            return Err(AgentError::InvalidState {
                id,
                status: status_name(status),
                op: "resume",
                needs: "paused",
            });
        }
        let snap = slot.dir.join(files::SNAPSHOT);
        SnapshotManifest::verify(
            &snap,
            &slot.dir.join(files::MEMORY),
            &slot.dir.join(self.vmm.disk_name()),
            self.vmm.identity(),
        )?;
        self.slots.readmit(slot, during)?;
        self.cfg.faults.hit(FaultPoint::ResumeStarted);
        if let Err(e) = self.net.attach(&slot.manifest()).await {
            slot.set_status(HostStatus::Paused, None)?;
            return Err(e);
        }
        let spec = self.spec_of(slot);
        let vm = match self
            .vmm
            .restore(&spec, &snap.join(SnapshotManifest::STATE))
            .await
        {
            Ok(vm) => vm,
            Err(e) => {
                self.vmm.kill_orphan(&slot.dir).await;
                self.net.detach(&id).await;
                slot.set_status(HostStatus::Paused, None)?;
                return Err(e.into());
            }
        };
        self.cfg.faults.hit(FaultPoint::ResumeRestored);
        // From here on the memory file changes: the snapshot is no longer restorable.
        let used = slot.dir.join(files::SNAPSHOT_USED);
        let started = async {
            std::fs::rename(&snap, &used).map_err(AgentError::io("renaming", &snap))?;
            wrenn_durable::sync_dir(&slot.dir).map_err(AgentError::io("syncing", &slot.dir))?;
            vm.run().await?;
            Ok::<_, AgentError>(())
        }
        .await;
        if let Err(e) = started {
            let _ = vm.stop().await;
            self.net.detach(&id).await;
            if used.exists() && !snap.exists() {
                let _ = std::fs::rename(&used, &snap);
            }
            slot.set_status(HostStatus::Paused, None)?;
            return Err(e);
        }
        self.cfg.faults.hit(FaultPoint::ResumeRunning);
        match sync_guest(
            &vm.agent_socket(),
            self.cfg.envd_timeout,
            self.net.nameservers(&slot.manifest()),
        )
        .await
        {
            Ok(envd) => {
                *lock(&slot.envd) = Some(envd);
                self.watch_vmm(slot, vm.as_ref());
                *vm_slot = Some(vm);
                let _ = std::fs::remove_dir_all(&used);
                slot.set_status(HostStatus::Running, None)?;
                Ok(())
            }
            Err(e) => {
                let _ = std::fs::remove_dir_all(&used);
                if self.vmm.is_alive(&slot.dir) {
                    // The guest runs but does not answer: keep it, report the failure.
                    self.watch_vmm(slot, vm.as_ref());
                    *vm_slot = Some(vm);
                    slot.set_status(HostStatus::Running, None)?;
                } else {
                    self.net.detach(&id).await;
                    slot.set_status(
                        HostStatus::Error,
                        Some(format!("the VMM ended during resume: {e}")),
                    )?;
                }
                Err(e)
            }
        }
    }

    /// Pauses (`pause`) or resumes a capsule under its lifecycle lock.
    pub(crate) async fn pause_or_resume(
        self: Arc<Self>,
        id: String,
        pause: bool,
    ) -> Result<CapsuleInfo> {
        let slot = self.slot(&id)?;
        let mut vm = slot.run.lock().await;
        if pause {
            self.pause_locked(&slot, &mut vm, HostStatus::Pausing)
                .await?;
        } else {
            self.resume_locked(&slot, &mut vm, HostStatus::Resuming)
                .await?;
        }
        Ok(slot.info(&self.net))
    }
}
