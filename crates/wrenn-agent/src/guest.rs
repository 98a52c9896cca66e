//! The guest channel: connecting to a capsule's envd, and telling a restored guest the time
//! and fresh entropy (its clock stood still while paused; clones must not share randomness).

use std::path::Path;
use std::time::Duration;

use wrenn_envd_client::EnvdClient;
use wrenn_protocol::RestoreRequest;

use crate::error::Result;
use crate::manager::Inner;
use crate::slots::{lock, Slot};

/// Connects to a just-restored guest at `socket` and tells it to set its clock, re-seed its
/// random pool and use `nameservers`.
pub(crate) async fn sync_guest(
    socket: &Path,
    timeout: Duration,
    nameservers: Vec<String>,
) -> Result<EnvdClient> {
    let started = std::time::Instant::now();
    // The restore answers with envd's health: one request instead of a health check first
    // (so an envd of another protocol is refused after it applied the restore; it is then
    // stopped with its capsule's create or resume).
    let envd = EnvdClient::open(socket, timeout).await?;
    let connected = started.elapsed();
    let unix_time_ns = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_nanos() as i64);
    let entropy: Vec<u8> = (0..64).map(|_| rand::random::<u8>()).collect();
    // One deadline for the whole sync, as `EnvdClient::connect` has.
    let left = timeout
        .saturating_sub(connected)
        .max(Duration::from_secs(1));
    let health = tokio::time::timeout(
        left,
        envd.restore(RestoreRequest {
            unix_time_ns,
            entropy,
            nameservers,
        }),
    )
    .await
    .map_err(|_| wrenn_envd_client::EnvdError::Timeout(timeout))??;
    wrenn_envd_client::check_protocol(&health)?;
    tracing::debug!(
        connect_ms = connected.as_secs_f64() * 1000.0,
        total_ms = started.elapsed().as_secs_f64() * 1000.0,
        "guest synced after restore"
    );
    Ok(envd)
}

impl Inner {
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
