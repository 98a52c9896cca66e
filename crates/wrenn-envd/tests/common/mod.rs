//! Test harness: a real envd (`--listen-unix`) on the host, and helpers.
#![allow(dead_code)]

use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use wrenn_envd_client::{EnvdClient, EnvdError};
use wrenn_protocol::{ErrorKind, ExecOutput, ExecRequest};

/// Generous: tests run under heavy load.
pub const WAIT: Duration = Duration::from_secs(120);

/// A running envd; killed on drop.
pub struct Envd {
    pub child: Child,
    pub sock: PathBuf,
    pub dir: tempfile::TempDir,
}

impl Envd {
    pub fn start() -> Self {
        let dir = tempfile::tempdir().expect("temp dir");
        let sock = dir.path().join("envd.sock");
        let child = Command::new(env!("CARGO_BIN_EXE_envd"))
            .arg("--listen-unix")
            .arg(&sock)
            .env("ENVD_LOG", "warn")
            .stdin(Stdio::null())
            .spawn()
            .expect("spawn envd");
        Self { child, sock, dir }
    }

    pub async fn client(&self) -> EnvdClient {
        EnvdClient::connect(&self.sock, WAIT)
            .await
            .expect("connect to envd")
    }

    pub fn pid(&self) -> u32 {
        self.child.id()
    }
}

impl Drop for Envd {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

pub fn sh(script: &str) -> ExecRequest {
    ExecRequest {
        cmd: "/bin/sh".into(),
        args: vec!["-c".into(), script.into()],
        ..Default::default()
    }
}

pub async fn run(c: &EnvdClient, script: &str) -> ExecOutput {
    c.exec(sh(script)).await.expect("exec")
}

pub fn kind(e: EnvdError) -> ErrorKind {
    match e {
        EnvdError::Guest(b) => b.kind,
        other => panic!("expected an envd error, got {other:?}"),
    }
}

/// Polls `f` every 100 ms until it returns true or `WAIT` passes.
pub async fn eventually<F, Fut>(mut f: F) -> bool
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = bool>,
{
    let deadline = tokio::time::Instant::now() + WAIT;
    while tokio::time::Instant::now() < deadline {
        if f().await {
            return true;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    false
}

pub fn pid_alive(pid: u32) -> bool {
    // Zombies count as gone.
    match std::fs::read_to_string(format!("/proc/{pid}/stat")) {
        Ok(s) => !s
            .rsplit(')')
            .next()
            .unwrap_or("")
            .trim_start()
            .starts_with('Z'),
        Err(_) => false,
    }
}
