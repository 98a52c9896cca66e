//! Shared setup of the agent's tests: a private data dir whose `images/` and `templates/`
//! are the shared test cache (so base images and template snapshots are built once), real
//! QEMU, the real static envd.
#![allow(dead_code)]

use std::path::{Path, PathBuf};
use std::time::Duration;

use wrenn_agent::{AgentConfig, CapsuleManager};
use wrenn_envd_client::EnvdClient;
use wrenn_host::{CapsuleInfo, CreateCapsule, HostApi};
use wrenn_protocol::{ExecOutput, ExecRequest};

/// The shared cache of built images and template snapshots.
pub fn shared_dir() -> PathBuf {
    let dir = PathBuf::from(
        std::env::var("WRENN_TEST_DATA_DIR").unwrap_or_else(|_| "/var/tmp/wrenn-test".into()),
    );
    std::fs::create_dir_all(dir.join("images")).unwrap();
    std::fs::create_dir_all(dir.join("templates")).unwrap();
    dir
}

/// The static envd (built by scripts/build-envd).
pub fn envd_binary() -> PathBuf {
    if let Ok(p) = std::env::var("WRENN_ENVD") {
        return p.into();
    }
    let p = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../../target/x86_64-unknown-linux-gnu/release/envd");
    assert!(
        p.is_file(),
        "build the static envd first: bash scripts/build-envd"
    );
    p
}

/// A test's own data dir.
pub struct TestHost {
    pub dir: tempfile::TempDir,
}

impl TestHost {
    pub fn new() -> Self {
        let _ = tracing_subscriber::fmt()
            .with_test_writer()
            .with_env_filter("info")
            .try_init();
        let shared = shared_dir();
        let dir = tempfile::Builder::new()
            .prefix("wrenn-agent-test-")
            .tempdir_in("/var/tmp")
            .unwrap();
        std::os::unix::fs::symlink(shared.join("images"), dir.path().join("images")).unwrap();
        std::os::unix::fs::symlink(shared.join("templates"), dir.path().join("templates")).unwrap();
        Self { dir }
    }

    /// A host sharing the image cache but with templates of its own (a test that changes
    /// base templates must not touch the shared ones).
    pub fn with_own_templates() -> Self {
        let th = Self::new();
        let templates = th.dir.path().join("templates");
        std::fs::remove_file(&templates).unwrap();
        std::fs::create_dir(&templates).unwrap();
        th
    }

    pub fn config(&self) -> AgentConfig {
        AgentConfig::new(self.dir.path(), envd_binary())
    }

    pub async fn open(&self) -> CapsuleManager {
        CapsuleManager::open(self.config())
            .await
            .expect("open the capsule manager")
    }
}

impl Drop for TestHost {
    fn drop(&mut self) {
        // Never leave a VMM behind, whatever the test did.
        let capsules = self.dir.path().join("capsules");
        if let Ok(entries) = std::fs::read_dir(capsules) {
            for e in entries.flatten() {
                if let Ok(pid) = std::fs::read_to_string(e.path().join("qemu.pid")) {
                    if let Ok(pid) = pid.trim().parse::<i32>() {
                        if wrenn_vmm::qemu::process_alive(&e.path()) {
                            unsafe { libc::kill(pid, libc::SIGKILL) };
                        }
                    }
                }
            }
        }
        remove_networks(self.dir.path());
    }
}

/// Namespaces and slot files of the agent of `data_dir` (a test that fails midway leaves
/// capsules behind; their networks must not outlive it).
pub fn network_leftovers(data_dir: &Path) -> Vec<String> {
    let prefix = format!("wr-{}-", wrenn_agent::config::network_tag(data_dir));
    let mut out: Vec<String> = std::fs::read_dir(wrenn_net::NETNS_DIR)
        .into_iter()
        .flatten()
        .flatten()
        .map(|e| e.file_name().to_string_lossy().into_owned())
        .filter(|n| n.starts_with(&prefix))
        .collect();
    for e in std::fs::read_dir("/run/wrenn/net")
        .into_iter()
        .flatten()
        .flatten()
    {
        if std::fs::read_to_string(e.path()).is_ok_and(|o| o.starts_with(&prefix)) {
            out.push(e.path().display().to_string());
        }
    }
    out
}

fn remove_networks(data_dir: &Path) {
    for left in network_leftovers(data_dir) {
        if left.starts_with('/') {
            let _ = std::fs::remove_file(&left);
        } else {
            let _ = std::process::Command::new("ip")
                .args(["netns", "del", &left])
                .status();
        }
    }
}

/// Mounts a tmpfs of `size` (e.g. `16k`) on `target`: a disk that is full almost at once.
pub fn mount_tiny_fs(target: &Path, size: &str) {
    let mounted = std::process::Command::new("mount")
        .args([
            "-t",
            "tmpfs",
            "-o",
            &format!("size={size}"),
            "wrenn-test-full",
        ])
        .arg(target)
        .status()
        .unwrap();
    assert!(mounted.success(), "mounting a tiny tmpfs (needs root)");
}

/// Undoes [`mount_tiny_fs`].
pub fn unmount(target: &Path) {
    let _ = std::process::Command::new("umount").arg(target).status();
}

/// A fresh capsule id.
pub fn new_id() -> String {
    use rand::Rng;
    let mut rng = rand::thread_rng();
    let s: String = (0..25)
        .map(|_| {
            let c = rng.gen_range(0..36u8);
            (if c < 10 { b'0' + c } else { b'a' + c - 10 }) as char
        })
        .collect();
    format!("cl-{s}")
}

pub async fn create(host: &CapsuleManager, template: &str) -> CapsuleInfo {
    host.create(CreateCapsule {
        id: new_id(),
        template: template.into(),
        vcpus: 1,
        memory_mb: 512,
        network: Default::default(),
    })
    .await
    .expect("create a capsule")
}

/// Runs `sh -c script` in the capsule.
pub async fn sh(envd: &EnvdClient, script: &str) -> ExecOutput {
    envd.exec(ExecRequest {
        cmd: "/bin/sh".into(),
        args: vec!["-c".into(), script.into()],
        timeout_ms: Some(120_000),
        ..Default::default()
    })
    .await
    .expect("exec")
}

/// stdout of `sh -c script`, trimmed; panics on a non-zero exit.
pub async fn sh_ok(envd: &EnvdClient, script: &str) -> String {
    let out = sh(envd, script).await;
    assert_eq!(
        out.exit_code,
        0,
        "{script:?} failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).trim().to_owned()
}

/// Polls `f` until it returns Some, for up to `secs` seconds.
pub async fn eventually<T, F, Fut>(secs: u64, mut f: F) -> Option<T>
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = Option<T>>,
{
    let deadline = tokio::time::Instant::now() + Duration::from_secs(secs);
    loop {
        if let Some(v) = f().await {
            return Some(v);
        }
        if tokio::time::Instant::now() > deadline {
            return None;
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

/// Whether a process with this pid runs on the host (a zombie waiting to be reaped by
/// init does not count).
pub fn pid_alive(pid: u32) -> bool {
    match std::fs::read_to_string(format!("/proc/{pid}/stat")) {
        Ok(stat) => {
            stat.rsplit(')')
                .next()
                .and_then(|r| r.split_whitespace().next())
                != Some("Z")
        }
        Err(_) => false,
    }
}
