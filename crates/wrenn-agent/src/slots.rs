//! The table of capsule slots: each capsule's stored manifest, its live VMM handle and its
//! guest channel, and the vCPUs and memory the capsules with a VMM hold.

use std::collections::{HashMap, HashSet};
use std::path::PathBuf;
use std::sync::{Arc, Mutex};

use wrenn_envd_client::EnvdClient;
use wrenn_host::{Capacity, CapsuleInfo, HostStatus};
use wrenn_vmm::Vm;

use crate::error::{AgentError, Result};
use crate::layout::files;
use crate::manifest::{CapsuleManifest, VmShape};
use crate::network::Networking;

/// Live state of one capsule. Lifecycle operations on it are serialised by `run`.
pub(crate) struct Slot {
    /// The capsule's directory.
    pub dir: PathBuf,
    /// The manifest as last stored (status included). Read without waiting on `run`.
    pub manifest: Mutex<CapsuleManifest>,
    /// The guest channel while running.
    pub envd: Mutex<Option<EnvdClient>>,
    /// Held for the whole of a lifecycle operation; holds the VMM handle.
    pub run: tokio::sync::Mutex<Option<Box<dyn Vm>>>,
}

impl Slot {
    /// A slot without VMM or guest channel.
    pub(crate) fn new(dir: PathBuf, manifest: CapsuleManifest) -> Slot {
        Slot {
            dir,
            manifest: Mutex::new(manifest),
            envd: Mutex::new(None),
            run: tokio::sync::Mutex::new(None),
        }
    }

    /// The capsule id.
    pub(crate) fn id(&self) -> String {
        lock(&self.manifest).id.clone()
    }

    /// What `GET` says about the capsule.
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

    /// The stored status.
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

    /// What the capsule's snapshots record about its VM.
    pub(crate) fn shape(&self) -> VmShape {
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

    /// Whether it holds host resources: it has (or is about to have) a VMM.
    fn holds_resources(&self) -> bool {
        !matches!(self.status(), HostStatus::Paused | HostStatus::Error)
    }
}

/// The capsules of this agent by id, and the host's capacity they share.
pub(crate) struct Slots {
    table: Mutex<HashMap<String, Arc<Slot>>>,
    vcpus_total: u32,
    memory_mb_total: u64,
}

impl Slots {
    /// An empty table for a host that hands out `vcpus_total` vCPUs and `memory_mb_total`
    /// MiB.
    pub(crate) fn new(vcpus_total: u32, memory_mb_total: u64) -> Slots {
        Slots {
            table: Mutex::new(HashMap::new()),
            vcpus_total,
            memory_mb_total,
        }
    }

    /// The slot of a capsule.
    pub(crate) fn get(&self, id: &str) -> Result<Arc<Slot>> {
        lock(&self.table)
            .get(id)
            .cloned()
            .ok_or_else(|| AgentError::CapsuleNotFound(id.to_owned()))
    }

    /// Every slot.
    pub(crate) fn all(&self) -> Vec<Arc<Slot>> {
        lock(&self.table).values().cloned().collect()
    }

    /// Ids of the capsules stored as running.
    pub(crate) fn running(&self) -> HashSet<String> {
        lock(&self.table)
            .iter()
            .filter(|(_, s)| s.status() == HostStatus::Running)
            .map(|(id, _)| id.clone())
            .collect()
    }

    /// Puts a re-adopted capsule into the table.
    pub(crate) fn insert(&self, id: String, slot: Arc<Slot>) {
        lock(&self.table).insert(id, slot);
    }

    /// Forgets a capsule.
    pub(crate) fn remove(&self, id: &str) {
        lock(&self.table).remove(id);
    }

    /// Adds a new capsule (its manifest says `starting`, so it holds its shape at once) if
    /// neither its id nor its directory is taken and the host has room for it: one step
    /// under the table's lock, so concurrent creates never overbook.
    pub(crate) fn admit(&self, slot: Slot) -> Result<Arc<Slot>> {
        let mut table = lock(&self.table);
        let (id, vcpus, memory_mb) = {
            let m = lock(&slot.manifest);
            (m.id.clone(), m.vcpus, m.memory_mb)
        };
        if table.contains_key(&id) || slot.dir.exists() {
            return Err(AgentError::CapsuleExists(id));
        }
        let (c, m) = held(&table);
        if !self.fits(c, m, vcpus, memory_mb) {
            return Err(AgentError::Capacity(format!(
                "host is full: {c}/{} vCPUs and {m}/{} MiB in use, {vcpus} vCPUs and {memory_mb} MiB asked",
                self.vcpus_total, self.memory_mb_total
            )));
        }
        let slot = Arc::new(slot);
        table.insert(id, slot.clone());
        Ok(slot)
    }

    /// Makes a paused capsule hold its shape again by storing `during` (resuming), if the
    /// host has room: the check and the status that makes it count are one step under the
    /// table's lock. A paused capsule holds nothing, so it must fit again to resume.
    pub(crate) fn readmit(&self, slot: &Slot, during: HostStatus) -> Result<()> {
        let table = lock(&self.table);
        let (c, m) = held(&table);
        let shape = slot.shape();
        if !self.fits(c, m, shape.vcpus, shape.memory_mb) {
            return Err(AgentError::Capacity(format!(
                "host is full: {c}/{} vCPUs and {m}/{} MiB in use, resuming needs {} vCPUs and {} MiB",
                self.vcpus_total, self.memory_mb_total, shape.vcpus, shape.memory_mb
            )));
        }
        slot.set_status(during, None)
    }

    /// The host's capacity and what capsules with a VMM hold of it.
    pub(crate) fn capacity(&self) -> Capacity {
        let (c, m) = held(&lock(&self.table));
        Capacity {
            vcpus_total: self.vcpus_total,
            memory_mb_total: self.memory_mb_total,
            vcpus_used: c,
            memory_mb_used: m,
        }
    }

    fn fits(&self, vcpus_used: u32, memory_mb_used: u64, vcpus: u32, memory_mb: u32) -> bool {
        vcpus_used + vcpus <= self.vcpus_total
            && memory_mb_used + u64::from(memory_mb) <= self.memory_mb_total
    }
}

/// vCPUs and MiB held by the capsules that have (or are about to have) a VMM.
fn held(table: &HashMap<String, Arc<Slot>>) -> (u32, u64) {
    table
        .values()
        .filter(|s| s.holds_resources())
        .fold((0, 0), |(c, m), s| {
            let mf = lock(&s.manifest);
            (c + mf.vcpus, m + u64::from(mf.memory_mb))
        })
}

/// Locks a std mutex, recovering from poisoning (the data is plain state).
pub(crate) fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|p| p.into_inner())
}

/// Contract name of a status, for messages.
pub(crate) fn status_name(s: HostStatus) -> String {
    serde_json::to_value(s)
        .ok()
        .and_then(|v| v.as_str().map(str::to_owned))
        .unwrap_or_default()
}
