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
