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
    if set_clock {
        write_restore_id(std::path::Path::new(RESTORE_ID_PATH))
            .map_err(|e| ApiError::io("write the restore id", e))?;
    }
    tracing::info!(set_clock, entropy = req.entropy.len(), "restore applied");
    Ok(())
}

/// A file whose content (32 hex digits) changes at every restore: a process that keeps state
/// derived from randomness (a language runtime's seeded generator, a cached UUID) compares it
/// with the value it last saw to learn that it now runs in a new clone and must re-seed.
pub const RESTORE_ID_PATH: &str = "/run/wrenn/restore-id";

/// Writes a fresh random restore id to `path` (temp file, rename).
fn write_restore_id(path: &std::path::Path) -> std::io::Result<()> {
    let mut id = [0u8; 16];
    getrandom_bytes(&mut id)?;
    let text: String = id.iter().map(|b| format!("{b:02x}")).collect();
    if let Some(dir) = path.parent() {
        std::fs::create_dir_all(dir)?;
    }
    let tmp = path.with_extension("tmp");
    std::fs::write(&tmp, format!("{text}\n"))?;
    std::fs::rename(&tmp, path)
}

/// Fills `buf` from the kernel's (just re-seeded) random pool.
fn getrandom_bytes(buf: &mut [u8]) -> std::io::Result<()> {
    use std::io::Read;
    std::fs::File::open("/dev/urandom")?.read_exact(buf)
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn each_restore_writes_a_new_id() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("run/wrenn/restore-id");
        write_restore_id(&path).unwrap();
        let first = std::fs::read_to_string(&path).unwrap();
        assert_eq!(first.trim().len(), 32, "{first:?}");
        assert!(first.trim().chars().all(|c| c.is_ascii_hexdigit()));
        write_restore_id(&path).unwrap();
        let second = std::fs::read_to_string(&path).unwrap();
        assert_ne!(first, second);
        assert!(!path.with_extension("tmp").exists());
    }
}
