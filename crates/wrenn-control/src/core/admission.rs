//! Admission of creates: host capacity plus reservations in flight, and a bound on how many
//! creates talk to the host at once.
//!
//! A reservation covers a create from admission until it ends. Once the host lists the
//! capsule, the host's own `capacity()` counts it, so the reservation is not added twice.

use std::collections::{HashMap, HashSet};
use std::sync::Arc;
use std::time::Duration;

use tokio::sync::{Mutex, OwnedSemaphorePermit, Semaphore};
use wrenn_host::HostApi;

use crate::core::error::AdmissionError;

/// Reserved (vCPUs, MiB) of creates in flight, by capsule id.
type Reserved = HashMap<String, (u64, u64)>;

/// Decides whether a create may proceed.
pub struct Admission {
    slots: Arc<Semaphore>,
    queue_timeout: Duration,
    reserved: Arc<Mutex<Reserved>>,
}

/// Resources held for one create; released on drop.
pub struct Reservation {
    reserved: Arc<Mutex<Reserved>>,
    id: String,
    _slot: OwnedSemaphorePermit,
}

impl Drop for Reservation {
    fn drop(&mut self) {
        // try_lock first so dropping outside a runtime still releases in the common case.
        let released = match self.reserved.try_lock() {
            Ok(mut r) => {
                r.remove(&self.id);
                true
            }
            Err(_) => false,
        };
        if !released {
            if let Ok(rt) = tokio::runtime::Handle::try_current() {
                let reserved = self.reserved.clone();
                let id = std::mem::take(&mut self.id);
                rt.spawn(async move {
                    reserved.lock().await.remove(&id);
                });
            }
        }
    }
}

impl Admission {
    /// At most `slots` concurrent creates; a create waits at most `queue_timeout` for one.
    pub fn new(slots: usize, queue_timeout: Duration) -> Self {
        Self {
            slots: Arc::new(Semaphore::new(slots.max(1))),
            queue_timeout,
            reserved: Arc::default(),
        }
    }

    /// Waits for a create slot, then reserves `vcpus`/`memory_mb` for capsule `id` if the
    /// host has room for them on top of everything reserved.
    pub async fn admit(
        &self,
        host: &dyn HostApi,
        id: &str,
        vcpus: u32,
        memory_mb: u32,
    ) -> Result<Reservation, AdmissionError> {
        let slot = tokio::time::timeout(self.queue_timeout, self.slots.clone().acquire_owned())
            .await
            .map_err(|_| AdmissionError::Busy)?
            .map_err(|_| AdmissionError::Busy)?;
        let mut reserved = self.reserved.lock().await;
        let cap = host.capacity().await?;
        let known: HashSet<String> = host.list().await?.into_iter().map(|c| c.id).collect();
        let (res_vcpus, res_mem) = reserved
            .iter()
            .filter(|(id, _)| !known.contains(*id))
            .fold((0u64, 0u64), |(v, m), (_, (rv, rm))| (v + rv, m + rm));
        let used_vcpus = u64::from(cap.vcpus_used) + res_vcpus;
        let used_mem = cap.memory_mb_used + res_mem;
        if used_vcpus + u64::from(vcpus) > u64::from(cap.vcpus_total) {
            return Err(AdmissionError::NoRoom(format!(
                "host has no room for {vcpus} more vCPUs ({used_vcpus} of {} in use or reserved)",
                cap.vcpus_total
            )));
        }
        if used_mem + u64::from(memory_mb) > cap.memory_mb_total {
            return Err(AdmissionError::NoRoom(format!(
                "host has no room for {memory_mb} MiB more memory ({used_mem} of {} MiB in use or reserved)",
                cap.memory_mb_total
            )));
        }
        reserved.insert(id.to_owned(), (u64::from(vcpus), u64::from(memory_mb)));
        Ok(Reservation {
            reserved: self.reserved.clone(),
            id: id.to_owned(),
            _slot: slot,
        })
    }
}
