//! The capsule manager: creates capsules from template snapshots, pauses and resumes them,
//! snapshots them into templates, destroys them, and re-adopts them after a restart.
//!
//! Each capsule has a slot: its manifest (the stored status), the live VMM handle and the
//! envd client. Lifecycle operations on one capsule are serialised by the slot's lock and
//! run as detached tasks, so a caller that goes away never leaves one half done.

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};

use wrenn_envd_client::EnvdClient;
use wrenn_host::{CapsuleInfo, HostStatus};
use wrenn_images::{ImageStore, KernelImages};
use wrenn_protocol::RestoreRequest;
use wrenn_vmm::{HostProbe, Vm, VmSpec, Vmm};

use crate::config::AgentConfig;
use crate::error::{AgentError, Result};
use crate::faults::FaultPoint;
use crate::fsutil;
use crate::layout::{files, Layout};
use crate::manifest::{now_unix, CapsuleManifest, SnapshotManifest, VmShape, CAPSULE_FORMAT};
use crate::network::{self, Networking};

/// Live state of one capsule.
pub(crate) struct Slot {
    pub dir: PathBuf,
    /// The manifest as last stored (status included). Read without waiting on `run`.
    pub manifest: Mutex<CapsuleManifest>,
    /// The guest channel while running.
    pub envd: Mutex<Option<EnvdClient>>,
    /// Held for the whole of a lifecycle operation; holds the VMM handle.
    pub run: tokio::sync::Mutex<Option<Box<dyn Vm>>>,
}

impl Slot {
    pub(crate) fn id(&self) -> String {
        lock(&self.manifest).id.clone()
    }

    pub(crate) fn info(&self, net: &Networking) -> CapsuleInfo {
        let m = lock(&self.manifest);
        CapsuleInfo {
            id: m.id.clone(),
            status: m.status,
            template: m.template.clone(),
            vcpus: m.vcpus,
            memory_mb: m.memory_mb,
            error: m.error.clone(),
            network: net.info(&m),
        }
    }

    pub(crate) fn status(&self) -> HostStatus {
        lock(&self.manifest).status
    }

    /// Stores a new status durably before anyone is told about it.
    pub(crate) fn set_status(&self, status: HostStatus, error: Option<String>) -> Result<()> {
        self.update(|m| {
            m.status = status;
            m.error = error;
        })
    }

    fn shape(&self) -> VmShape {
        let m = lock(&self.manifest);
        VmShape {
            vcpus: m.vcpus,
            memory_mb: m.memory_mb,
            kernel: m.kernel.clone(),
            initrd: m.initrd.clone(),
            nic: m.network.nic,
        }
    }

    /// A copy of the stored manifest.
    pub(crate) fn manifest(&self) -> CapsuleManifest {
        lock(&self.manifest).clone()
    }

    /// Changes the stored manifest durably (temp file, fsync, rename) before memory.
    pub(crate) fn update(&self, f: impl FnOnce(&mut CapsuleManifest)) -> Result<()> {
        let mut m = lock(&self.manifest);
        let mut next = m.clone();
        f(&mut next);
        next.store(&self.dir.join(files::MANIFEST))?;
        *m = next;
        Ok(())
    }
}

/// Locks a std mutex, recovering from poisoning (the data is plain state).
pub(crate) fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|p| p.into_inner())
}

/// Shared state of the manager.
pub(crate) struct Inner {
    pub cfg: AgentConfig,
    pub layout: Layout,
    pub images: ImageStore,
    pub kernel: KernelImages,
    /// The VMM driver.
    pub vmm: Arc<dyn Vmm>,
    pub net: Networking,
    /// This manager, weakly: VMM watchers started from `&self` hold it without keeping it alive.
    me: std::sync::Weak<Inner>,
    /// Changes the agent makes on its own (a VMM that ended), for [`HostApi::events`].
    pub events: tokio::sync::broadcast::Sender<wrenn_host::HostEvent>,
    pub slots: Mutex<HashMap<String, Arc<Slot>>>,
    template_locks: tokio::sync::Mutex<HashMap<String, Arc<tokio::sync::Mutex<()>>>>,
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
        let inner = Arc::new_cyclic(|me| Inner {
            me: me.clone(),
            net,
            events: tokio::sync::broadcast::channel(256).0,
            cfg,
            layout,
            images,
            kernel,
            vmm,
            slots: Mutex::new(HashMap::new()),
            template_locks: tokio::sync::Mutex::new(HashMap::new()),
        });
        inner.sweep_template_leftovers();
        let mgr = Self { inner };
        mgr.recover().await?;
        Ok(mgr)
    }

    /// Builds (if needed) the snapshot of a template at a shape, so that the first create
    /// from it is a restore rather than a cold boot.
    pub async fn prepare(&self, template: &str, vcpus: u32, memory_mb: u32) -> Result<()> {
        self.inner
            .template_snapshot(template, vcpus, memory_mb)
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
        for slot in lock(&self.inner.slots).values() {
            lock(&slot.envd).take();
        }
    }

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

/// Checks a capsule id: 1–64 chars of `[a-z0-9-]`, not starting with `.` or `-`.
fn valid_capsule_id(id: &str) -> bool {
    !id.is_empty()
        && id.len() <= 64
        && !id.starts_with('-')
        && id
            .bytes()
            .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == b'-')
}

impl Inner {
    pub(crate) fn slot(&self, id: &str) -> Result<Arc<Slot>> {
        lock(&self.slots)
            .get(id)
            .cloned()
            .ok_or_else(|| AgentError::CapsuleNotFound(id.to_owned()))
    }

    pub(crate) async fn template_lock(&self, key: &str) -> Arc<tokio::sync::Mutex<()>> {
        self.template_locks
            .lock()
            .await
            .entry(key.to_owned())
            .or_default()
            .clone()
    }

    fn spec_of(&self, slot: &Slot) -> VmSpec {
        let s = slot.shape();
        let nic = self.net.nic(&slot.manifest());
        self.vm_spec(&slot.dir, s.vcpus, s.memory_mb, &s.kernel, &s.initrd, nic)
    }

    /// Makes the network of a capsule about to get a VMM (create, resume), if it has one.
    async fn attach_network(&self, slot: &Slot) -> Result<()> {
        let m = slot.manifest();
        if let Some(net) = self.net.serves(&m) {
            net.create(&m.id, &network::rules(&m.network.policy)?)
                .await?;
        }
        Ok(())
    }

    /// Removes the network of a capsule whose VMM has ended (pause, destroy, failures).
    async fn detach_network(&self, id: &str) {
        if let Some(net) = self.net.host() {
            if let Err(e) = net.remove(id).await {
                tracing::warn!(capsule = %id, error = %e, "removing the capsule network");
            }
        }
    }

    /// Connects to a just-restored guest and tells it to set its clock and re-seed its
    /// random pool.
    async fn sync_guest(&self, vm: &dyn Vm, nameservers: Vec<String>) -> Result<EnvdClient> {
        let envd = EnvdClient::connect(&vm.agent_socket(), self.cfg.envd_timeout).await?;
        let unix_time_ns = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| d.as_nanos() as i64);
        let entropy: Vec<u8> = (0..64).map(|_| rand::random::<u8>()).collect();
        envd.restore(RestoreRequest {
            unix_time_ns,
            entropy,
            nameservers,
        })
        .await?;
        Ok(envd)
    }

    /// Memory and vCPUs held by capsules that have (or are about to have) a VMM.
    fn reserved(&self) -> (u32, u64) {
        held_by_vmms(&lock(&self.slots))
    }

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
        if !valid_capsule_id(&id) {
            return Err(AgentError::InvalidRequest(format!("bad capsule id {id:?}")));
        }
        if !(1..=32).contains(&vcpus) || !(128..=65536).contains(&memory_mb) {
            return Err(AgentError::InvalidRequest(format!(
                "vcpus must be 1..=32 and memory_mb 128..=65536 (got {vcpus} and {memory_mb})"
            )));
        }
        // A snapshot template fixes the shape.
        let (vcpus, memory_mb) = match self
            .list_templates()
            .into_iter()
            .find(|t| t.name == template)
        {
            Some(t) if t.kind == wrenn_host::TemplateKind::Snapshot => (t.vcpus, t.memory_mb),
            _ => (vcpus, memory_mb),
        };
        let dir = self.layout.capsule(&id);
        let slot = {
            let mut slots = lock(&self.slots);
            if slots.contains_key(&id) || dir.exists() {
                return Err(AgentError::CapsuleExists(id));
            }
            let (c, m) = held_by_vmms(&slots);
            if c + vcpus > self.cfg.vcpus_total
                || m + u64::from(memory_mb) > self.cfg.memory_mb_total
            {
                return Err(AgentError::Capacity(format!(
                    "host is full: {c}/{} vCPUs and {m}/{} MiB in use, {vcpus} vCPUs and {memory_mb} MiB asked",
                    self.cfg.vcpus_total, self.cfg.memory_mb_total
                )));
            }
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
                network: crate::manifest::CapsuleNetwork { policy, nic: false },
            };
            let slot = Arc::new(Slot {
                dir: dir.clone(),
                manifest: Mutex::new(manifest),
                envd: Mutex::new(None),
                run: tokio::sync::Mutex::new(None),
            });
            slots.insert(id.clone(), slot.clone());
            slot
        };
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
                lock(&self.slots).remove(&id);
                if dir.exists() {
                    self.vmm.kill_orphan(&dir).await;
                    let _ = std::fs::remove_dir_all(&dir);
                }
                self.detach_network(&id).await;
                Err(e)
            }
        }
    }

    async fn create_in(
        &self,
        slot: &Slot,
        template: &str,
        vcpus: u32,
        memory_mb: u32,
    ) -> Result<(Box<dyn Vm>, EnvdClient)> {
        let snap = self.template_snapshot(template, vcpus, memory_mb).await?;
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
            wrenn_durable::copy_sparse(&src_mem, &d.join(files::MEMORY))
                .map_err(AgentError::io("copying", &src_mem))?;
            wrenn_durable::copy_sparse(&src_disk, &d.join(disk_name))
                .map_err(AgentError::io("copying", &src_disk))?;
            Ok(())
        })
        .await
        .map_err(|e| AgentError::Tool(format!("copy task: {e}")))??;
        self.cfg.faults.hit(FaultPoint::CreateCopied);
        self.attach_network(slot).await?;
        let spec = self.spec_of(slot);
        let vm = self.vmm.restore(&spec, &snap.state()).await?;
        if let Err(e) = vm.run().await {
            let _ = vm.stop().await;
            return Err(e.into());
        }
        match self
            .sync_guest(vm.as_ref(), self.net.nameservers(&slot.manifest()))
            .await
        {
            Ok(envd) => Ok((vm, envd)),
            Err(e) => {
                let _ = vm.stop().await;
                Err(e)
            }
        }
    }

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
            let written = self
                .write_snapshot_manifest(&new, &slot.dir, &slot.shape())
                .and_then(|_| {
                    let snap = slot.dir.join(files::SNAPSHOT);
                    if snap.exists() {
                        std::fs::remove_dir_all(&snap)
                            .map_err(AgentError::io("removing", &snap))?;
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
        self.detach_network(&id).await;
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
        {
            // A paused capsule holds no vCPUs or memory: it must fit again to resume. The
            // check and the status that makes it count are one step under the slots lock.
            let slots = lock(&self.slots);
            let (c, m) = held_by_vmms(&slots);
            let shape = slot.shape();
            if c + shape.vcpus > self.cfg.vcpus_total
                || m + u64::from(shape.memory_mb) > self.cfg.memory_mb_total
            {
                return Err(AgentError::Capacity(format!(
                    "host is full: {c}/{} vCPUs and {m}/{} MiB in use, resuming needs {} vCPUs and {} MiB",
                    self.cfg.vcpus_total, self.cfg.memory_mb_total, shape.vcpus, shape.memory_mb
                )));
            }
            slot.set_status(during, None)?;
        }
        self.cfg.faults.hit(FaultPoint::ResumeStarted);
        if let Err(e) = self.attach_network(slot).await {
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
                self.detach_network(&id).await;
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
            self.detach_network(&id).await;
            if used.exists() && !snap.exists() {
                let _ = std::fs::rename(&used, &snap);
            }
            slot.set_status(HostStatus::Paused, None)?;
            return Err(e);
        }
        self.cfg.faults.hit(FaultPoint::ResumeRunning);
        match self
            .sync_guest(vm.as_ref(), self.net.nameservers(&slot.manifest()))
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
                    self.detach_network(&id).await;
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

    /// Destroy: end the VMM, remove every file, forget the capsule.
    pub(crate) async fn destroy(self: Arc<Self>, id: String) -> Result<()> {
        let slot = self.slot(&id)?;
        let mut vm = slot.run.lock().await;
        let _ = slot.set_status(HostStatus::Stopping, None);
        lock(&slot.envd).take();
        if let Some(vm) = vm.take() {
            if let Err(e) = vm.stop().await {
                tracing::warn!(capsule = %id, error = %e, "killing VMM");
            }
        }
        self.vmm.kill_orphan(&slot.dir).await;
        self.detach_network(&id).await;
        if slot.dir.exists() {
            std::fs::remove_dir_all(&slot.dir).map_err(AgentError::io("removing", &slot.dir))?;
        }
        lock(&self.slots).remove(&id);
        Ok(())
    }

    pub(crate) fn capacity(&self) -> wrenn_host::Capacity {
        let (c, m) = self.reserved();
        wrenn_host::Capacity {
            vcpus_total: self.cfg.vcpus_total,
            memory_mb_total: self.cfg.memory_mb_total,
            vcpus_used: c,
            memory_mb_used: m,
        }
    }

    /// Re-adopts one capsule directory after a restart. Returns `None` when the directory
    /// held a capsule that was never acknowledged (it is removed).
    pub(crate) async fn recover_one(&self, dir: &Path) -> Result<Option<Arc<Slot>>> {
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
            return Ok(Some(Arc::new(Slot {
                dir: dir.to_owned(),
                manifest: Mutex::new(manifest),
                envd: Mutex::new(None),
                run: tokio::sync::Mutex::new(None),
            })));
        }
        // Capsules made by older versions may be readable by every user of the host.
        let _ = wrenn_durable::private_dir(dir);
        for f in [files::MEMORY, self.vmm.disk_name()] {
            let _ = wrenn_durable::make_private(&dir.join(f));
        }
        let status = manifest.status;
        let slot = Arc::new(Slot {
            dir: dir.to_owned(),
            manifest: Mutex::new(manifest),
            envd: Mutex::new(None),
            run: tokio::sync::Mutex::new(None),
        });
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
            // The namespace outlives the agent (QEMU is in it): take its forwarder back.
            if let Err(e) = net.adopt(&m.id, &network::rules(&m.network.policy)?).await {
                tracing::warn!(capsule = %m.id, error = %e, "re-adopting the capsule network");
            }
        }
        if !vm.is_running().await {
            vm.run().await?;
        }
        let envd = match self.sync_guest(vm.as_ref(), self.net.nameservers(m)).await {
            Ok(e) => Some(e),
            Err(e) => {
                tracing::warn!(dir = %spec.dir.display(), error = %e, "re-adopted VMM's guest does not answer yet");
                None
            }
        };
        Ok((vm, envd))
    }

    /// Watches the VMM of a running capsule: when it ends while the capsule counts as running
    /// (killed, a crash, a guest that powered off), the capsule becomes `Error` at once, its
    /// capacity and network are released and an event tells the control plane.
    /// Called wherever a VMM handle is put into a slot (create, resume, re-adoption).
    fn watch_vmm(&self, slot: &Arc<Slot>, vm: &dyn Vm) {
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
        self.detach_network(&id).await;
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

    /// The guest channel of a running capsule, connecting if there is none yet.
    pub(crate) async fn guest_of(&self, slot: &Slot) -> Result<EnvdClient> {
        let existing = lock(&slot.envd).clone();
        if let Some(e) = existing.filter(|e| !e.is_closed()) {
            return Ok(e);
        }
        let socket = self.vmm.agent_socket(&slot.dir);
        let envd = EnvdClient::connect(&socket, self.cfg.envd_timeout).await?;
        *lock(&slot.envd) = Some(envd.clone());
        Ok(envd)
    }
}

impl CapsuleManager {
    async fn recover(&self) -> Result<()> {
        let root = self.inner.layout.capsules();
        let entries = std::fs::read_dir(&root).map_err(AgentError::io("reading", &root))?;
        for e in entries.flatten() {
            let dir = e.path();
            if !dir.is_dir() {
                continue;
            }
            let id = e.file_name().to_string_lossy().into_owned();
            match self.inner.recover_one(&dir).await {
                Ok(Some(slot)) => {
                    tracing::info!(capsule = %id, status = ?slot.status(), "re-adopted");
                    lock(&self.inner.slots).insert(id, slot);
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
        let Some(net) = self.inner.net.host() else {
            return;
        };
        let keep: std::collections::HashSet<String> = lock(&self.inner.slots)
            .iter()
            .filter(|(_, s)| s.status() == HostStatus::Running)
            .map(|(id, _)| id.clone())
            .collect();
        match net.sweep(&keep).await {
            Ok(removed) if !removed.is_empty() => {
                tracing::info!(?removed, "removed capsule networks nobody uses")
            }
            Ok(_) => {}
            Err(e) => tracing::warn!(error = %e, "sweeping capsule networks"),
        }
    }
}

/// vCPUs and MiB held by the capsules that have (or are about to have) a VMM.
fn held_by_vmms(slots: &HashMap<String, Arc<Slot>>) -> (u32, u64) {
    slots
        .values()
        .filter(|s| !matches!(s.status(), HostStatus::Paused | HostStatus::Error))
        .fold((0, 0), |(c, m), s| {
            let mf = lock(&s.manifest);
            (c + mf.vcpus, m + u64::from(mf.memory_mb))
        })
}

/// Contract name of a status, for messages.
pub(crate) fn status_name(s: HostStatus) -> String {
    serde_json::to_value(s)
        .ok()
        .and_then(|v| v.as_str().map(str::to_owned))
        .unwrap_or_default()
}
