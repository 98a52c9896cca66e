//! Admission of creates: host capacity plus reservations in flight, and a bound on how many
//! creates talk to the host at once.

use std::sync::Arc;
use std::time::Duration;

use tokio::sync::{Mutex, OwnedSemaphorePermit, Semaphore};
use wrenn_host::HostApi;

use crate::error::ApiError;

/// Reserved resources of creates in flight.
#[derive(Debug, Default, Clone, Copy)]
struct Reserved {
    vcpus: u64,
    memory_mb: u64,
}

/// Decides whether a create may proceed.
pub struct Admission {
    slots: Arc<Semaphore>,
    queue_timeout: Duration,
    reserved: Arc<Mutex<Reserved>>,
}

/// Resources held for one create; released on drop.
pub struct Reservation {
    reserved: Arc<Mutex<Reserved>>,
    vcpus: u64,
    memory_mb: u64,
    _slot: OwnedSemaphorePermit,
}

impl Drop for Reservation {
    fn drop(&mut self) {
        let (v, m) = (self.vcpus, self.memory_mb);
        // try_lock first so dropping outside a runtime still releases in the common case.
        let released = match self.reserved.try_lock() {
            Ok(mut r) => {
                r.vcpus = r.vcpus.saturating_sub(v);
                r.memory_mb = r.memory_mb.saturating_sub(m);
                true
            }
            Err(_) => false,
        };
        if !released {
            if let Ok(rt) = tokio::runtime::Handle::try_current() {
                let reserved = self.reserved.clone();
                rt.spawn(async move {
                    let mut r = reserved.lock().await;
                    r.vcpus = r.vcpus.saturating_sub(v);
                    r.memory_mb = r.memory_mb.saturating_sub(m);
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

    /// Waits for a create slot, then reserves `vcpus`/`memory_mb` if the host has room for
    /// them on top of everything reserved; 503 `host_unavailable` otherwise.
    pub async fn admit(
        &self,
        host: &dyn HostApi,
        vcpus: u32,
        memory_mb: u32,
    ) -> Result<Reservation, ApiError> {
        let slot = tokio::time::timeout(self.queue_timeout, self.slots.clone().acquire_owned())
            .await
            .map_err(|_| {
                ApiError::unavailable("too many capsule creates in progress; retry later")
            })?
            .map_err(|_| ApiError::unavailable("create admission closed"))?;
        let mut reserved = self.reserved.lock().await;
        let cap = host.capacity().await?;
        let want_vcpus = u64::from(cap.vcpus_used) + reserved.vcpus + u64::from(vcpus);
        let want_mem = cap.memory_mb_used + reserved.memory_mb + u64::from(memory_mb);
        if want_vcpus > u64::from(cap.vcpus_total) {
            return Err(ApiError::unavailable(format!(
                "host has no room for {vcpus} more vCPUs ({} of {} in use or reserved)",
                u64::from(cap.vcpus_used) + reserved.vcpus,
                cap.vcpus_total
            )));
        }
        if want_mem > cap.memory_mb_total {
            return Err(ApiError::unavailable(format!(
                "host has no room for {memory_mb} MiB more memory ({} of {} MiB in use or reserved)",
                cap.memory_mb_used + reserved.memory_mb,
                cap.memory_mb_total
            )));
        }
        reserved.vcpus += u64::from(vcpus);
        reserved.memory_mb += u64::from(memory_mb);
        Ok(Reservation {
            reserved: self.reserved.clone(),
            vcpus: u64::from(vcpus),
            memory_mb: u64::from(memory_mb),
            _slot: slot,
        })
    }
}
