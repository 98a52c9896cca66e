//! After a snapshot restore: set the wall clock from the host and re-seed the kernel's random
//! pool, so clones of one snapshot neither lag in time nor share randomness.

use std::os::fd::AsRawFd;

use wrenn_protocol::RestoreRequest;

use crate::error::{ApiError, ApiResult};

/// `RNDADDENTROPY`: `_IOW('R', 0x03, int[2])`.
const RNDADDENTROPY: libc::c_ulong = 0x4008_5203;
/// `RNDRESEEDCRNG`: `_IO('R', 0x07)`.
const RNDRESEEDCRNG: libc::c_ulong = 0x5207;
/// Largest entropy buffer accepted.
const MAX_ENTROPY: usize = 4096;

/// Applies a restore. `set_clock` is false when envd is not the guest's init (tests on the
/// host must not move the host's clock).
pub fn apply(req: &RestoreRequest, set_clock: bool) -> ApiResult<()> {
    if set_clock {
        let ts = nix::sys::time::TimeSpec::new(
            req.unix_time_ns.div_euclid(1_000_000_000),
            req.unix_time_ns.rem_euclid(1_000_000_000),
        );
        nix::time::clock_settime(nix::time::ClockId::CLOCK_REALTIME, ts)
            .map_err(|e| ApiError::internal(format!("set the clock: {e}")))?;
    }
    if !req.entropy.is_empty() {
        add_entropy(&req.entropy[..req.entropy.len().min(MAX_ENTROPY)])
            .map_err(|e| ApiError::io("credit entropy to /dev/urandom", e))?;
    }
    if set_clock && !req.nameservers.is_empty() {
        crate::net::write_resolv_conf(std::path::Path::new("/"), &req.nameservers)
            .map_err(|e| ApiError::io("write /etc/resolv.conf", e))?;
    }
    tracing::info!(set_clock, entropy = req.entropy.len(), "restore applied");
    Ok(())
}

fn add_entropy(bytes: &[u8]) -> std::io::Result<()> {
    let f = std::fs::OpenOptions::new()
        .write(true)
        .open("/dev/urandom")?;
    // struct rand_pool_info { int entropy_count; int buf_size; __u32 buf[]; }
    let mut info = Vec::with_capacity(8 + bytes.len());
    info.extend_from_slice(&((bytes.len() * 8) as i32).to_ne_bytes());
    info.extend_from_slice(&(bytes.len() as i32).to_ne_bytes());
    info.extend_from_slice(bytes);
    // Keep the buffer 4-byte aligned in length for the kernel's __u32 array.
    while info.len() % 4 != 0 {
        info.push(0);
    }
    let words: Vec<u32> = info
        .chunks(4)
        .map(|c| u32::from_ne_bytes([c[0], c[1], c[2], c[3]]))
        .collect();
    // SAFETY: the ioctl reads a rand_pool_info header followed by buf_size bytes we own.
    let r = unsafe { libc::ioctl(f.as_raw_fd(), RNDADDENTROPY as _, words.as_ptr()) };
    if r < 0 {
        return Err(std::io::Error::last_os_error());
    }
    // SAFETY: argument-less ioctl; older kernels answer EINVAL, which is fine.
    let _ = unsafe { libc::ioctl(f.as_raw_fd(), RNDRESEEDCRNG as _) };
    Ok(())
}
