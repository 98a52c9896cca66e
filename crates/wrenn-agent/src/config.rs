//! Configuration of the host agent.

use std::path::PathBuf;

/// Where the agent keeps its state and which tools it uses.
#[derive(Debug, Clone)]
pub struct AgentConfig {
    /// Data dir: `images/`, `templates/`, `capsules/` live under it.
    pub data_dir: PathBuf,
    /// `qemu-system-x86_64`.
    pub qemu: PathBuf,
    /// The static envd binary baked into the base images.
    pub envd: PathBuf,
    /// vCPUs the host hands out in all (default: 4 per host core).
    pub vcpus_total: u32,
    /// Memory in MiB the host hands out in all (default: 80 % of host memory).
    pub memory_mb_total: u64,
    /// How long a restored guest has to answer before the operation fails.
    pub envd_timeout: std::time::Duration,
    /// How long a cold boot (template build) has to reach envd.
    pub boot_timeout: std::time::Duration,
    /// Test-only fault injection.
    pub faults: crate::faults::Faults,
}

impl AgentConfig {
    /// Defaults for a data dir and an envd binary; QEMU from `PATH`.
    pub fn new(data_dir: impl Into<PathBuf>, envd: impl Into<PathBuf>) -> Self {
        let cores = std::thread::available_parallelism().map_or(1, |n| n.get()) as u32;
        Self {
            data_dir: data_dir.into(),
            qemu: PathBuf::from("qemu-system-x86_64"),
            envd: envd.into(),
            vcpus_total: cores * 4,
            memory_mb_total: host_memory_mb() * 4 / 5,
            envd_timeout: std::time::Duration::from_secs(60),
            boot_timeout: std::time::Duration::from_secs(180),
            faults: crate::faults::Faults::default(),
        }
    }
}

/// Host memory in MiB from /proc/meminfo (1 GiB if it cannot be read).
fn host_memory_mb() -> u64 {
    std::fs::read_to_string("/proc/meminfo")
        .ok()
        .and_then(|s| {
            s.lines()
                .find(|l| l.starts_with("MemTotal:"))
                .and_then(|l| l.split_whitespace().nth(1))
                .and_then(|kb| kb.parse::<u64>().ok())
        })
        .map_or(1024, |kb| kb / 1024)
}
