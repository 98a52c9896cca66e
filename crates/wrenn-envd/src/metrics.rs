//! CPU (from /proc/stat deltas, sampled every second), memory (/proc/meminfo) and disk
//! (statvfs /) use.

use std::sync::{Arc, Mutex};
use std::time::Duration;

use wrenn_protocol::Metrics;

/// Samples CPU use in the background and answers metric queries.
#[derive(Debug, Clone, Default)]
pub struct Sampler {
    cpu_pct: Arc<Mutex<f64>>,
}

/// (busy, total) jiffies summed over all CPUs, and the number of CPUs.
fn cpu_times() -> Option<(u64, u64, usize)> {
    let stat = std::fs::read_to_string("/proc/stat").ok()?;
    let line = stat.lines().next()?;
    let v: Vec<u64> = line
        .split_whitespace()
        .skip(1)
        .filter_map(|x| x.parse().ok())
        .collect();
    if v.len() < 4 {
        return None;
    }
    let idle = v[3] + v.get(4).copied().unwrap_or(0);
    let total: u64 = v.iter().take(8).sum();
    let cpus = stat
        .lines()
        .filter(|l| l.starts_with("cpu") && !l.starts_with("cpu "))
        .count();
    Some((total - idle, total, cpus.max(1)))
}

impl Sampler {
    /// Starts sampling (inside the runtime).
    pub fn start() -> Self {
        let s = Self::default();
        let cpu = s.cpu_pct.clone();
        tokio::spawn(async move {
            let mut last = cpu_times();
            loop {
                tokio::time::sleep(Duration::from_secs(1)).await;
                let now = cpu_times();
                if let (Some((b0, t0, _)), Some((b1, t1, n))) = (last, now) {
                    if t1 > t0 {
                        let pct =
                            (b1.saturating_sub(b0)) as f64 / (t1 - t0) as f64 * 100.0 * n as f64;
                        if let Ok(mut c) = cpu.lock() {
                            *c = pct;
                        }
                    }
                }
                last = now;
            }
        });
        s
    }

    /// Current metrics.
    pub fn read(&self) -> Metrics {
        let (mem_total, mem_avail) = meminfo();
        let (disk_total, disk_used) = disk();
        Metrics {
            cpu_pct: self.cpu_pct.lock().map(|c| *c).unwrap_or(0.0),
            mem_bytes: mem_total.saturating_sub(mem_avail),
            mem_total_bytes: mem_total,
            disk_bytes: disk_used,
            disk_total_bytes: disk_total,
        }
    }
}

fn meminfo() -> (u64, u64) {
    let text = std::fs::read_to_string("/proc/meminfo").unwrap_or_default();
    let field = |name: &str| {
        text.lines()
            .find(|l| l.starts_with(name))
            .and_then(|l| l.split_whitespace().nth(1))
            .and_then(|kb| kb.parse::<u64>().ok())
            .map_or(0, |kb| kb * 1024)
    };
    (field("MemTotal:"), field("MemAvailable:"))
}

fn disk() -> (u64, u64) {
    match nix::sys::statvfs::statvfs("/") {
        Ok(s) => {
            let f = s.fragment_size();
            let total = s.blocks() * f;
            let free = s.blocks_free() * f;
            (total, total.saturating_sub(free))
        }
        Err(_) => (0, 0),
    }
}
