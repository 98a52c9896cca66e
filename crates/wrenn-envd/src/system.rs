//! Guest resource use, the clock and the random pool.

use std::sync::Mutex;

use wrenn_protocol::{Metrics, RestoreRequest};

use crate::error::{ApiError, ApiResult};

static LAST_CPU: Mutex<Option<(u64, u64)>> = Mutex::new(None);

/// (busy, total) jiffies of all CPUs.
fn cpu_times() -> Option<(u64, u64)> {
    let stat = std::fs::read_to_string("/proc/stat").ok()?;
    let line = stat.lines().next()?;
    let v: Vec<u64> = line.split_whitespace().skip(1).filter_map(|x| x.parse().ok()).collect();
    let total: u64 = v.iter().take(8).sum();
    let idle = v.get(3).copied().unwrap_or(0) + v.get(4).copied().unwrap_or(0);
    Some((total - idle, total))
}

fn meminfo(field: &str) -> u64 {
    std::fs::read_to_string("/proc/meminfo")
        .ok()
        .and_then(|s| {
            s.lines()
                .find(|l| l.starts_with(field))
                .and_then(|l| l.split_whitespace().nth(1))
                .and_then(|v| v.parse::<u64>().ok())
        })
        .unwrap_or(0)
        * 1024
}

/// CPU (since the previous call, or over 100 ms on the first), memory and root disk use.
pub async fn metrics() -> Metrics {
    let prev = *LAST_CPU.lock().unwrap_or_else(|p| p.into_inner());
    let prev = match prev {
        Some(p) => Some(p),
        None => {
            let p = cpu_times();
            tokio::time::sleep(std::time::Duration::from_millis(100)).await;
            p
        }
    };
    let now = cpu_times();
    *LAST_CPU.lock().unwrap_or_else(|p| p.into_inner()) = now;
    let cpu_pct = match (prev, now) {
        (Some((b0, t0)), Some((b1, t1))) if t1 > t0 => 100.0 * (b1 - b0) as f64 / (t1 - t0) as f64,
        _ => 0.0,
    };
    let total = meminfo("MemTotal:");
    let avail = meminfo("MemAvailable:");
    let (disk_bytes, disk_total_bytes) = nix::sys::statvfs::statvfs("/")
        .map(|s| {
            let f = s.fragment_size();
            ((s.blocks() - s.blocks_free()) * f, s.blocks() * f)
        })
        .unwrap_or((0, 0));
    Metrics { cpu_pct, mem_bytes: total.saturating_sub(avail), mem_total_bytes: total, disk_bytes, disk_total_bytes }
}

/// After a restore: set the clock, mix in and credit the host's entropy, reseed the CRNG.
pub fn restore(req: &RestoreRequest) -> ApiResult<()> {
    let ts = libc::timespec {
        tv_sec: req.unix_time_ns.div_euclid(1_000_000_000),
        tv_nsec: req.unix_time_ns.rem_euclid(1_000_000_000),
    };
    // SAFETY: clock_settime with a valid timespec.
    if unsafe { libc::clock_settime(libc::CLOCK_REALTIME, &ts) } != 0 {
        let e = std::io::Error::last_os_error();
        // Not permitted outside a VM (tests run envd unprivileged-ish on the host): log only.
        tracing::warn!(error = %e, "setting the clock");
    }
    if !req.entropy.is_empty() {
        add_entropy(&req.entropy).map_err(|e| ApiError::internal(format!("re-seeding: {e}")))?;
    }
    Ok(())
}

fn add_entropy(bytes: &[u8]) -> std::io::Result<()> {
    use std::os::fd::AsRawFd;
    let f = std::fs::OpenOptions::new().write(true).open("/dev/urandom")?;
    // struct rand_pool_info { int entropy_count; int buf_size; __u32 buf[]; }
    let mut info: Vec<u8> = Vec::with_capacity(8 + bytes.len());
    info.extend_from_slice(&((bytes.len() * 8) as i32).to_ne_bytes());
    info.extend_from_slice(&(bytes.len() as i32).to_ne_bytes());
    info.extend_from_slice(bytes);
    const RNDADDENTROPY: libc::c_ulong = 0x4008_5203;
    const RNDRESEEDCRNG: libc::c_ulong = 0x5207;
    // SAFETY: ioctls on /dev/urandom with a correctly laid out rand_pool_info.
    unsafe {
        if libc::ioctl(f.as_raw_fd(), RNDADDENTROPY as _, info.as_ptr()) != 0 {
            // Without CAP_SYS_ADMIN: still mix the bytes in.
            std::io::Write::write_all(&mut &f, bytes)?;
        }
        libc::ioctl(f.as_raw_fd(), RNDRESEEDCRNG as _, 0);
    }
    Ok(())
}
