//! The VMM exit watch: a capsule whose VMM ends on its own (killed, crashed, a guest that
//! powered off) becomes `error` at once, and the control plane hears of it.

use std::sync::Arc;

use wrenn_host::HostStatus;
use wrenn_vmm::Vm;

use crate::manager::Inner;
use crate::slots::{lock, Slot};

impl Inner {
    /// Watches the VMM of a running capsule: when it ends while the capsule counts as running
    /// (killed, a crash, a guest that powered off), the capsule becomes `Error` at once, its
    /// capacity and network are released and an event tells the control plane.
    /// Called wherever a VMM handle is put into a slot (create, resume, re-adoption).
    pub(crate) fn watch_vmm(&self, slot: &Arc<Slot>, vm: &dyn Vm) {
        let (watch, pid) = (vm.exit_watch(), vm.pid());
        // Weak: a manager that is dropped (an agent handing over to its successor) lets go of
        // its VMM handles and QMP connections even while their VMMs run on.
        let (inner, slot) = (self.me.clone(), Arc::downgrade(slot));
        tokio::spawn(async move {
            watch.ended().await;
            if let (Some(inner), Some(slot)) = (inner.upgrade(), slot.upgrade()) {
                inner.vmm_ended(&slot, pid).await;
            }
        });
    }

    /// The VMM `pid` of `slot` has ended. Unless a lifecycle operation ended it (it then holds
    /// another VMM, or none), the capsule is lost.
    async fn vmm_ended(&self, slot: &Slot, pid: u32) {
        let mut vm = slot.run.lock().await;
        if vm.as_ref().map(|vm| vm.pid()) != Some(pid) || slot.status() != HostStatus::Running {
            return;
        }
        vm.take();
        lock(&slot.envd).take();
        let id = slot.id();
        self.net.detach(&id).await;
        // The console log stays: it is the evidence of why the guest ended.
        let why = "the VMM process ended (the guest powered off, or the VMM was killed)";
        tracing::warn!(capsule = %id, pid, "{why}");
        if let Err(e) = slot.set_status(HostStatus::Error, Some(why.into())) {
            tracing::error!(capsule = %id, error = %e, "storing the error status");
        }
        let _ = self.events.send(wrenn_host::HostEvent {
            capsule: id,
            status: HostStatus::Error,
            error: Some(why.into()),
        });
    }
}
