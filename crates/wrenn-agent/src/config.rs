//! Configuration of the host agent.

use std::path::PathBuf;

/// Where the agent keeps its state and which tools it uses.
#[derive(Debug, Clone)]
pub struct AgentConfig {
    /// Data dir: `images/`, `templates/`, `capsules/` live under it.
    pub data_dir: PathBuf,
    /// The VMM driver and its binary (default: QEMU from `PATH`).
    pub vmm: wrenn_vmm::VmmConfig,
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
    /// Capsule networking; `None` turns it off (capsules get a network device without a
    /// backend). A host where it cannot be set up runs without it too, and says so.
    pub network: Option<wrenn_net::NetConfig>,
    /// Test-only fault injection.
    pub faults: crate::faults::Faults,
}

impl AgentConfig {
    /// Defaults for a data dir and an envd binary; the default VMM driver.
    pub fn new(data_dir: impl Into<PathBuf>, envd: impl Into<PathBuf>) -> Self {
        let cores = std::thread::available_parallelism().map_or(1, |n| n.get()) as u32;
        let data_dir: PathBuf = data_dir.into();
        let network = Some(wrenn_net::NetConfig::new(network_tag(&data_dir)));
        Self {
            network,
            data_dir,
            vmm: wrenn_vmm::VmmConfig::default(),
            envd: envd.into(),
            vcpus_total: cores * 4,
            memory_mb_total: host_memory_mb() * 4 / 5,
            envd_timeout: std::time::Duration::from_secs(60),
            boot_timeout: std::time::Duration::from_secs(180),
            faults: crate::faults::Faults::default(),
        }
    }
}

/// A short tag naming the network namespaces of the agent of `data_dir`: several agents on
/// one host (each with its own data dir) only ever sweep their own.
pub fn network_tag(data_dir: &std::path::Path) -> String {
    use sha2::Digest;
    let canon = std::path::absolute(data_dir).unwrap_or_else(|_| data_dir.to_owned());
    let digest = sha2::Sha256::digest(canon.as_os_str().as_encoded_bytes());
    hex::encode(&digest[..3])
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
