//! Shared helpers of the benchmarks.

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use anyhow::{bail, Context};
use wrenn_agent::{AgentConfig, CapsuleManager};
use wrenn_envd_client::EnvdClient;
use wrenn_host::{CreateCapsule, HostApi};
use wrenn_protocol::ExecRequest;

/// The static envd binary.
pub fn envd_binary(given: Option<PathBuf>) -> anyhow::Result<PathBuf> {
    let p = given.unwrap_or_else(|| {
        Path::new(env!("CARGO_MANIFEST_DIR"))
            .join("../target/x86_64-unknown-linux-gnu/release/envd")
    });
    if !p.is_file() {
        bail!("no static envd at {} (run scripts/build-envd)", p.display());
    }
    Ok(p)
}

/// Opens a capsule manager on the benchmark's data dir (handing out `vcpus_total` vCPUs when
/// given).
pub async fn open(
    dir: &Path,
    envd: &Path,
    vcpus_total: Option<u32>,
) -> anyhow::Result<CapsuleManager> {
    std::fs::create_dir_all(dir)?;
    let mut cfg = AgentConfig::new(dir, envd);
    if let Some(v) = vcpus_total {
        cfg.vcpus_total = v;
    }
    CapsuleManager::open(cfg)
        .await
        .context("opening the host agent")
}

/// A second manager over the same images and templates with networking off (its data dir is
/// `<data dir>-nonet`). Capsules it makes have no network backend, so baselines can restore
/// their state with QEMU alone.
pub async fn open_without_network(data_dir: &Path, envd: &Path) -> anyhow::Result<CapsuleManager> {
    let dir = data_dir.with_file_name(format!(
        "{}-nonet",
        data_dir
            .file_name()
            .and_then(|n| n.to_str())
            .unwrap_or("bench")
    ));
    std::fs::create_dir_all(&dir)?;
    for sub in ["images", "templates"] {
        let link = dir.join(sub);
        if !link.exists() {
            std::os::unix::fs::symlink(data_dir.join(sub), &link)
                .with_context(|| format!("linking {}", link.display()))?;
        }
    }
    let mut cfg = AgentConfig::new(&dir, envd);
    cfg.network = None;
    CapsuleManager::open(cfg)
        .await
        .context("opening the agent without networking")
}

/// A fresh capsule id.
pub fn new_id() -> String {
    let s: String = (0..25)
        .map(|_| {
            let c = rand::random::<u8>() % 36;
            (if c < 10 { b'0' + c } else { b'a' + c - 10 }) as char
        })
        .collect();
    format!("cl-{s}")
}

/// Creates a `minimal` capsule of `memory_mb`.
pub async fn create(mgr: &CapsuleManager, memory_mb: u32) -> anyhow::Result<(String, Duration)> {
    let id = new_id();
    let t = Instant::now();
    mgr.create(CreateCapsule {
        id: id.clone(),
        template: "minimal".into(),
        vcpus: 1,
        memory_mb,
        network: Default::default(),
    })
    .await?;
    Ok((id, t.elapsed()))
}

/// Runs `sh -c script`, failing on a non-zero exit.
pub async fn sh(envd: &EnvdClient, script: &str) -> anyhow::Result<String> {
    let out = envd
        .exec(ExecRequest {
            cmd: "/bin/sh".into(),
            args: vec!["-c".into(), script.into()],
            ..Default::default()
        })
        .await?;
    if out.exit_code != 0 {
        bail!(
            "{script}: exit {}: {}",
            out.exit_code,
            String::from_utf8_lossy(&out.stderr)
        );
    }
    Ok(String::from_utf8_lossy(&out.stdout).trim().to_owned())
}

/// Median of durations.
pub fn median(mut v: Vec<Duration>) -> Duration {
    v.sort();
    v.get(v.len() / 2).copied().unwrap_or_default()
}

/// Milliseconds with one decimal.
pub fn ms(d: Duration) -> String {
    format!("{:.1} ms", d.as_secs_f64() * 1000.0)
}

/// MiB with one decimal.
pub fn mib(bytes: u64) -> String {
    format!("{:.1} MiB", bytes as f64 / (1 << 20) as f64)
}

/// The `p` quantile (0.0–1.0) of durations, nearest rank.
pub fn percentile(v: &[Duration], p: f64) -> Duration {
    let mut v = v.to_vec();
    v.sort();
    let i = ((v.len() as f64 - 1.0) * p).round() as usize;
    v.get(i).copied().unwrap_or_default()
}

/// The memory file and disk of the `minimal` base template snapshot of `memory_mb` (1 vCPU):
/// what every create from it copies or clones.
pub fn base_template_files(
    mgr: &CapsuleManager,
    data_dir: &Path,
    memory_mb: u32,
) -> anyhow::Result<[PathBuf; 2]> {
    let shape = format!("-1c{memory_mb}m");
    let dir = std::fs::read_dir(data_dir.join("templates/.base"))?
        .filter_map(|e| e.ok())
        .map(|e| e.path())
        .find(|p| {
            p.file_name()
                .is_some_and(|n| n.to_string_lossy().ends_with(&shape))
        })
        .with_context(|| format!("no base template of shape {shape}"))?;
    Ok([dir.join("memory"), dir.join(mgr.vmm().disk_name())])
}

/// Copies (or clones, where the file system shares extents) `files` into `into`, the way a
/// create does; returns whether the extents were cloned.
pub fn copy_like_create(files: &[PathBuf], into: &Path) -> anyhow::Result<bool> {
    let mut cloned = false;
    for f in files {
        let to = into.join(f.file_name().unwrap_or_default());
        if wrenn_durable::clone_or_copy(f, &to)? == wrenn_durable::CopyHow::Cloned {
            cloned = true;
        }
    }
    Ok(cloned)
}

/// Host memory of one VMM process, from `/proc/PID/status` and `/proc/PID/smaps_rollup`.
#[derive(Debug, Default, Clone, Copy)]
pub struct VmmMemory {
    /// Resident set size.
    pub rss: u64,
    /// Resident anonymous memory: QEMU itself, its TCG translation cache included.
    pub anon: u64,
    /// Resident file-backed and shared memory: the guest's RAM pages of its memory file in
    /// the page cache, and QEMU's binaries.
    pub file: u64,
    /// Proportional set size: pages shared with other processes (binaries, shared page
    /// cache) divided among them.
    pub pss: u64,
}

impl VmmMemory {
    /// Reads the figures of process `pid`.
    pub fn of(pid: u32) -> anyhow::Result<VmmMemory> {
        let status = std::fs::read_to_string(format!("/proc/{pid}/status"))?;
        let rollup = std::fs::read_to_string(format!("/proc/{pid}/smaps_rollup"))?;
        let field = |text: &str, name: &str| -> u64 {
            text.lines()
                .find(|l| l.starts_with(name))
                .and_then(|l| l.split_whitespace().nth(1))
                .and_then(|v| v.parse::<u64>().ok())
                .unwrap_or(0)
                * 1024
        };
        Ok(VmmMemory {
            rss: field(&status, "VmRSS:"),
            anon: field(&status, "RssAnon:"),
            file: field(&status, "RssFile:") + field(&status, "RssShmem:"),
            pss: field(&rollup, "Pss:"),
        })
    }

    /// The sum of two readings.
    pub fn plus(self, o: VmmMemory) -> VmmMemory {
        VmmMemory {
            rss: self.rss + o.rss,
            anon: self.anon + o.anon,
            file: self.file + o.file,
            pss: self.pss + o.pss,
        }
    }
}
