//! A HostApi for tests: lifecycle in memory; guest calls go to a real `envd --listen-unix`
//! process per capsule when the envd binary and client work, else `InvalidState`.

use std::collections::HashMap;
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use wrenn_envd_client::EnvdClient;
use wrenn_host::{
    Capacity, CapsuleInfo, CreateCapsule, HostApi, HostError, HostStatus, SharedChannel,
    TemplateInfo, TemplateKind,
};

/// One capsule of the fake.
struct Held {
    info: CapsuleInfo,
    envd: Option<(tokio::process::Child, EnvdClient)>,
}

/// In-memory host.
pub struct FakeHost {
    caps: Mutex<HashMap<String, Held>>,
    templates: Mutex<Vec<TemplateInfo>>,
    /// vCPUs the host offers.
    pub vcpus_total: u32,
    /// MiB the host offers.
    pub memory_mb_total: u64,
    /// How long a create takes.
    pub create_delay: Duration,
    /// How long pause, resume, destroy and snapshot take (before they act).
    pub op_delay: Duration,
    /// Fail the next pause.
    pub fail_pause: AtomicBool,
    /// Path of the envd binary, when guest calls should work.
    pub envd_bin: Option<PathBuf>,
    dir: tempfile::TempDir,
    /// Host template names creates were asked for.
    pub created_from: Mutex<Vec<String>>,
}

fn base(name: &str) -> TemplateInfo {
    TemplateInfo {
        name: name.into(),
        kind: TemplateKind::Base,
        vcpus: 1,
        memory_mb: 512,
        size_bytes: 1 << 20,
        created_at: 1_700_000_000,
    }
}

impl FakeHost {
    /// A host with `vcpus_total` vCPUs and plenty of memory.
    pub fn new(vcpus_total: u32) -> Self {
        Self {
            caps: Mutex::default(),
            templates: Mutex::new(vec![base("minimal"), base("python")]),
            vcpus_total,
            memory_mb_total: 1 << 20,
            create_delay: Duration::from_millis(0),
            op_delay: Duration::from_millis(0),
            fail_pause: AtomicBool::new(false),
            envd_bin: None,
            dir: tempfile::tempdir().expect("tempdir"),
            created_from: Mutex::default(),
        }
    }

    /// Drops a capsule as if its VM vanished.
    pub fn forget(&self, id: &str) {
        self.caps.lock().unwrap().remove(id);
    }

    /// Marks a capsule's VM as dead, as the agent sees a VMM that exited: status `Error`,
    /// and pause or resume fail with an internal error.
    pub fn crash(&self, id: &str) {
        if let Some(h) = self.caps.lock().unwrap().get_mut(id) {
            h.info.status = HostStatus::Error;
            h.info.error = Some("VMM exited unexpectedly".into());
        }
    }

    /// Status the host holds for `id`.
    pub fn status(&self, id: &str) -> Option<HostStatus> {
        self.caps.lock().unwrap().get(id).map(|h| h.info.status)
    }

    async fn start_envd(&self, id: &str) -> Result<(tokio::process::Child, EnvdClient), HostError> {
        let bin = self
            .envd_bin
            .as_ref()
            .ok_or_else(|| HostError::InvalidState("fake host has no guest agent".into()))?;
        let sock = self.dir.path().join(format!("{id}.sock"));
        let root = self.dir.path().join(id);
        std::fs::create_dir_all(&root).map_err(|e| HostError::Internal(e.to_string()))?;
        let child = tokio::process::Command::new(bin)
            .arg("--listen-unix")
            .arg(&sock)
            .kill_on_drop(true)
            .spawn()
            .map_err(|e| HostError::Internal(format!("spawn envd: {e}")))?;
        let client = EnvdClient::connect(&sock, Duration::from_secs(60))
            .await
            .map_err(|e| HostError::Agent(e.to_string()))?;
        Ok((child, client))
    }
}

#[async_trait::async_trait]
impl HostApi for FakeHost {
    async fn create(&self, req: CreateCapsule) -> Result<CapsuleInfo, HostError> {
        if !self
            .templates
            .lock()
            .unwrap()
            .iter()
            .any(|t| t.name == req.template)
        {
            return Err(HostError::NotFound(format!("template {}", req.template)));
        }
        {
            let caps = self.caps.lock().unwrap();
            let used: u32 = caps
                .values()
                .filter(|h| h.info.status != HostStatus::Paused)
                .map(|h| h.info.vcpus)
                .sum();
            if used + req.vcpus > self.vcpus_total {
                return Err(HostError::Capacity("fake host full".into()));
            }
        }
        let info = CapsuleInfo {
            id: req.id.clone(),
            status: HostStatus::Running,
            template: req.template.clone(),
            vcpus: req.vcpus,
            memory_mb: req.memory_mb,
            error: None,
            network: wrenn_host::NetworkInfo {
                enabled: true,
                reason: None,
                policy: req.network.clone(),
            },
        };
        self.caps.lock().unwrap().insert(
            req.id.clone(),
            Held {
                info: CapsuleInfo {
                    status: HostStatus::Starting,
                    ..info.clone()
                },
                envd: None,
            },
        );
        tokio::time::sleep(self.create_delay).await;
        self.created_from.lock().unwrap().push(req.template.clone());
        let envd = if self.envd_bin.is_some() {
            Some(self.start_envd(&req.id).await?)
        } else {
            None
        };
        let mut caps = self.caps.lock().unwrap();
        let held = caps
            .get_mut(&req.id)
            .ok_or_else(|| HostError::NotFound(req.id.clone()))?;
        held.info.status = HostStatus::Running;
        held.envd = envd;
        Ok(info)
    }

    async fn get(&self, id: &str) -> Result<CapsuleInfo, HostError> {
        self.caps
            .lock()
            .unwrap()
            .get(id)
            .map(|h| h.info.clone())
            .ok_or_else(|| HostError::NotFound(id.into()))
    }

    async fn list(&self) -> Result<Vec<CapsuleInfo>, HostError> {
        Ok(self
            .caps
            .lock()
            .unwrap()
            .values()
            .map(|h| h.info.clone())
            .collect())
    }

    async fn destroy(&self, id: &str) -> Result<(), HostError> {
        tokio::time::sleep(self.op_delay).await;
        match self.caps.lock().unwrap().remove(id) {
            Some(_) => Ok(()),
            None => Err(HostError::NotFound(id.into())),
        }
    }

    async fn pause(&self, id: &str) -> Result<CapsuleInfo, HostError> {
        tokio::time::sleep(self.op_delay).await;
        if self.fail_pause.swap(false, Ordering::SeqCst) {
            return Err(HostError::Internal("injected pause failure".into()));
        }
        let mut caps = self.caps.lock().unwrap();
        let h = caps
            .get_mut(id)
            .ok_or_else(|| HostError::NotFound(id.into()))?;
        if h.info.status == HostStatus::Error {
            return Err(HostError::Internal("qmp: connection reset by peer".into()));
        }
        if h.info.status != HostStatus::Running {
            return Err(HostError::InvalidState("not running".into()));
        }
        h.info.status = HostStatus::Paused;
        Ok(h.info.clone())
    }

    async fn resume(&self, id: &str) -> Result<CapsuleInfo, HostError> {
        tokio::time::sleep(self.op_delay).await;
        let mut caps = self.caps.lock().unwrap();
        let h = caps
            .get_mut(id)
            .ok_or_else(|| HostError::NotFound(id.into()))?;
        if h.info.status != HostStatus::Paused {
            return Err(HostError::InvalidState("not paused".into()));
        }
        h.info.status = HostStatus::Running;
        Ok(h.info.clone())
    }

    async fn set_network(
        &self,
        id: &str,
        policy: wrenn_host::NetworkPolicy,
    ) -> Result<CapsuleInfo, HostError> {
        policy.rules().map_err(HostError::InvalidRequest)?;
        let mut caps = self.caps.lock().unwrap();
        let held = caps
            .get_mut(id)
            .ok_or_else(|| HostError::NotFound(format!("capsule {id}")))?;
        held.info.network.policy = policy;
        Ok(held.info.clone())
    }

    async fn guest(&self, id: &str) -> Result<SharedChannel, HostError> {
        let caps = self.caps.lock().unwrap();
        let h = caps.get(id).ok_or_else(|| HostError::NotFound(id.into()))?;
        if h.info.status != HostStatus::Running {
            return Err(HostError::InvalidState(format!("{id} is not running")));
        }
        h.envd
            .as_ref()
            .map(|(_, c)| c.channel())
            .ok_or_else(|| HostError::InvalidState("fake host has no guest agent".into()))
    }

    async fn snapshot(
        &self,
        id: &str,
        name: &str,
        overwrite: bool,
    ) -> Result<TemplateInfo, HostError> {
        tokio::time::sleep(self.op_delay).await;
        let info = self.get(id).await?;
        let mut ts = self.templates.lock().unwrap();
        if ts.iter().any(|t| t.name == name) {
            if !overwrite {
                return Err(HostError::Conflict(format!("template {name} exists")));
            }
            ts.retain(|t| t.name != name);
        }
        let t = TemplateInfo {
            name: name.into(),
            kind: TemplateKind::Snapshot,
            vcpus: info.vcpus,
            memory_mb: info.memory_mb,
            size_bytes: 4096,
            created_at: 1_700_000_100,
        };
        ts.push(t.clone());
        Ok(t)
    }

    async fn delete_template(&self, name: &str) -> Result<(), HostError> {
        let mut ts = self.templates.lock().unwrap();
        let before = ts.len();
        ts.retain(|t| t.name != name || t.kind == TemplateKind::Base);
        if ts.len() == before {
            return Err(HostError::NotFound(format!("template {name}")));
        }
        Ok(())
    }

    async fn templates(&self) -> Result<Vec<TemplateInfo>, HostError> {
        Ok(self.templates.lock().unwrap().clone())
    }

    async fn capacity(&self) -> Result<Capacity, HostError> {
        let caps = self.caps.lock().unwrap();
        let live = caps
            .values()
            .filter(|h| h.info.status != HostStatus::Paused);
        let (v, m) = live.fold((0u32, 0u64), |(v, m), h| {
            (v + h.info.vcpus, m + u64::from(h.info.memory_mb))
        });
        Ok(Capacity {
            vcpus_total: self.vcpus_total,
            memory_mb_total: self.memory_mb_total,
            vcpus_used: v,
            memory_mb_used: m,
        })
    }
}

/// Shares a FakeHost between the server and the test.
pub type SharedHost = Arc<FakeHost>;

impl FakeHost {
    /// Number of capsules held.
    pub fn list_len(&self) -> usize {
        self.caps.lock().unwrap().len()
    }
}
