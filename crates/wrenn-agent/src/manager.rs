//! The capsule manager: what one host agent holds, and the lifecycle calls the host API
//! makes on it. Each job lives in its own module:
//!
//! - [`crate::slots`]: the table of capsule slots and the capacity they hold,
//! - [`crate::create`]: create (a restored template snapshot),
//! - [`crate::pause`]: pause to snapshot and resume,
//! - [`crate::recovery`]: re-adoption after an agent restart,
//! - [`crate::watch`]: VMMs that end on their own,
//! - [`crate::guest`]: the guest channel,
//! - [`crate::templates`]: the template store (it knows nothing of capsules).
//!
//! Lifecycle operations on one capsule are serialised by its slot's lock and run as
//! detached tasks, so a caller that goes away never leaves one half done.

use std::path::PathBuf;
use std::sync::Arc;

use wrenn_host::HostStatus;
use wrenn_images::ImageStore;
use wrenn_vmm::{HostProbe, VmSpec, Vmm};

use crate::config::AgentConfig;
use crate::error::{AgentError, Result};
use crate::layout::{vm_spec, Layout};
use crate::network::Networking;
use crate::slots::{lock, Slot, Slots};
use crate::templates::Templates;

/// What the manager's jobs share: configuration, the VMM driver, networking, the capsule
/// slots and the template store.
pub(crate) struct Inner {
    /// The agent's configuration.
    pub cfg: AgentConfig,
    /// Paths under the data dir.
    pub layout: Layout,
    /// The VMM driver.
    pub vmm: Arc<dyn Vmm>,
    /// Host networking (on or off).
    pub net: Networking,
    /// The capsules of this agent.
    pub slots: Slots,
    /// Base and snapshot templates.
    pub templates: Templates,
    /// This manager, weakly: VMM watchers started from `&self` hold it without keeping it
    /// alive.
    pub(crate) me: std::sync::Weak<Inner>,
    /// Changes the agent makes on its own (a VMM that ended), for `HostApi::events`.
    pub events: tokio::sync::broadcast::Sender<wrenn_host::HostEvent>,
}

/// The host agent's capsule manager. Cheap to clone.
#[derive(Clone)]
pub struct CapsuleManager {
    pub(crate) inner: Arc<Inner>,
}

impl CapsuleManager {
    /// Opens the data dir: builds the kernel images if missing, prepares the VMM driver,
    /// and re-adopts every capsule found on disk (running VMs are reconnected, paused ones
    /// stay paused, dead ones are reported as `error`, half-made ones are removed).
    pub async fn open(cfg: AgentConfig) -> Result<Self> {
        let layout = Layout::new(&cfg.data_dir);
        for d in [layout.capsules(), layout.templates()] {
            wrenn_durable::private_dir(&d).map_err(AgentError::io("creating", &d))?;
        }
        let images = ImageStore::new(&cfg.data_dir);
        let kernel = {
            let images = images.clone();
            tokio::task::spawn_blocking(move || images.ensure_kernel())
                .await
                .map_err(|e| AgentError::Tool(format!("kernel build task: {e}")))??
        };
        let vmm = cfg
            .vmm
            .open(HostProbe {
                kernel: &kernel.kernel,
                initrd: &kernel.initrd,
                state_dir: &cfg.data_dir,
            })
            .await?;
        let net = Networking::start(cfg.network.clone()).await;
        let id = vmm.identity();
        tracing::info!(driver = %id.driver, accel = %id.accel, vmm = %id.version, network = net.host().is_some(), "host agent ready");
        let templates = Templates::new(
            layout.clone(),
            images,
            kernel,
            vmm.clone(),
            cfg.envd.clone(),
            cfg.boot_timeout,
        );
        templates.sweep_leftovers();
        let inner = Arc::new_cyclic(|me| Inner {
            me: me.clone(),
            net,
            events: tokio::sync::broadcast::channel(256).0,
            slots: Slots::new(cfg.vcpus_total, cfg.memory_mb_total),
            templates,
            cfg,
            layout,
            vmm,
        });
        inner.recover().await?;
        Ok(Self { inner })
    }

    /// Builds (if needed) the snapshot of a template at a shape, so that the first create
    /// from it is a restore rather than a cold boot.
    pub async fn prepare(&self, template: &str, vcpus: u32, memory_mb: u32) -> Result<()> {
        self.inner
            .templates
            .snapshot(template, vcpus, memory_mb)
            .await
            .map(|_| ())
    }

    /// The VMM driver this host uses.
    pub fn vmm(&self) -> &Arc<dyn Vmm> {
        &self.inner.vmm
    }

    /// Directory of a capsule (for tests and diagnostics).
    pub fn capsule_dir(&self, id: &str) -> PathBuf {
        self.inner.layout.capsule(id)
    }

    /// PID of a running capsule's VMM.
    pub async fn vmm_pid(&self, id: &str) -> Result<Option<u32>> {
        let slot = self.inner.slot(id)?;
        let vm = slot.run.lock().await;
        Ok(vm.as_ref().map(|vm| vm.pid()))
    }

    /// Releases the guest channel of every capsule (they keep running) so a new agent
    /// process can connect. Used before a graceful agent restart.
    pub fn release_channels(&self) {
        for slot in self.inner.slots.all() {
            lock(&slot.envd).take();
        }
    }

    /// Runs a lifecycle operation as a detached task: a caller that goes away never leaves
    /// it half done.
    pub(crate) fn spawn_op<F, T>(&self, fut: F) -> impl std::future::Future<Output = Result<T>>
    where
        F: std::future::Future<Output = Result<T>> + Send + 'static,
        T: Send + 'static,
    {
        let handle = tokio::spawn(fut);
        async move {
            handle
                .await
                .map_err(|e| AgentError::Tool(format!("lifecycle task failed: {e}")))?
        }
    }
}

impl Inner {
    /// The slot of a capsule.
    pub(crate) fn slot(&self, id: &str) -> Result<Arc<Slot>> {
        self.slots.get(id)
    }

    /// The VM spec of a capsule: its shape, its files and its network device.
    pub(crate) fn spec_of(&self, slot: &Slot) -> VmSpec {
        let nic = self.net.nic(&slot.manifest());
        vm_spec(self.vmm.as_ref(), &slot.dir, &slot.shape(), nic)
    }

    /// The host's capacity and what is in use.
    pub(crate) fn capacity(&self) -> wrenn_host::Capacity {
        self.slots.capacity()
    }

    /// Destroy: end the VMM, remove every file, forget the capsule.
    pub(crate) async fn destroy(self: Arc<Self>, id: String) -> Result<()> {
        let slot = self.slot(&id)?;
        let mut vm = slot.run.lock().await;
        let _ = slot.set_status(HostStatus::Stopping, None);
        self.cfg
            .faults
            .hit(crate::faults::FaultPoint::DestroyStarted);
        lock(&slot.envd).take();
        if let Some(vm) = vm.take() {
            if let Err(e) = vm.stop().await {
                tracing::warn!(capsule = %id, error = %e, "killing VMM");
            }
        }
        self.vmm.kill_orphan(&slot.dir).await;
        self.cfg
            .faults
            .hit(crate::faults::FaultPoint::DestroyVmmEnded);
        self.net.detach(&id).await;
        if slot.dir.exists() {
            std::fs::remove_dir_all(&slot.dir).map_err(AgentError::io("removing", &slot.dir))?;
        }
        self.slots.remove(&id);
        Ok(())
    }
}
