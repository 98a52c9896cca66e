//! Templates are snapshots: a base template is built by booting its root filesystem once,
//! waiting for envd and snapshotting the VM; a snapshot template is copied from a paused
//! capsule. Creating a capsule restores one of them.

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::str::FromStr;
use std::sync::Arc;
use std::time::Duration;

use wrenn_envd_client::EnvdClient;
use wrenn_host::{rules, TemplateInfo, TemplateKind};
use wrenn_images::{BaseTemplate, ImageStore, KernelImages};
use wrenn_vmm::Vmm;

use crate::error::{AgentError, Result};
use crate::fsutil;
use crate::layout::{files, vm_spec, Layout};
use crate::manifest::{SnapshotManifest, VmShape};

/// A snapshot ready to be restored: the files a new capsule copies.
#[derive(Debug, Clone)]
pub struct TemplateSnapshot {
    /// Directory holding `snapshot.json`, `state`, `memory` and the disk.
    pub dir: PathBuf,
    /// Its verified manifest.
    pub manifest: SnapshotManifest,
    /// Its disk (the file name is the VMM driver's).
    disk: PathBuf,
}

impl TemplateSnapshot {
    /// Device state file.
    pub fn state(&self) -> PathBuf {
        self.dir.join(SnapshotManifest::STATE)
    }
    /// Memory file.
    pub fn memory(&self) -> PathBuf {
        self.dir.join(files::MEMORY)
    }
    /// Disk overlay.
    pub fn disk(&self) -> PathBuf {
        self.disk.clone()
    }
}

/// The template store of one data dir: base templates built on first use, snapshot
/// templates published from paused capsules.
pub(crate) struct Templates {
    layout: Layout,
    images: ImageStore,
    kernel: KernelImages,
    vmm: Arc<dyn Vmm>,
    /// The static envd baked into base images.
    envd: PathBuf,
    /// How long a base template's cold boot has to reach envd.
    boot_timeout: Duration,
    /// One lock per base template key: a template is built once even when asked for twice.
    locks: tokio::sync::Mutex<HashMap<String, Arc<tokio::sync::Mutex<()>>>>,
    /// The current root filesystem id of each base template, once asked for.
    rootfs_ids: std::sync::Mutex<HashMap<BaseTemplate, String>>,
}

impl Templates {
    /// The store under `layout`, building base images from `images` with the guest
    /// `kernel` and `envd` and booting them with `vmm`.
    pub(crate) fn new(
        layout: Layout,
        images: ImageStore,
        kernel: KernelImages,
        vmm: Arc<dyn Vmm>,
        envd: PathBuf,
        boot_timeout: Duration,
    ) -> Templates {
        Templates {
            layout,
            images,
            kernel,
            vmm,
            envd,
            boot_timeout,
            locks: tokio::sync::Mutex::new(HashMap::new()),
            rootfs_ids: std::sync::Mutex::default(),
        }
    }

    /// Verifies a template directory.
    fn verified(&self, dir: &Path) -> Result<TemplateSnapshot> {
        let manifest = SnapshotManifest::verify(
            dir,
            &dir.join(files::MEMORY),
            &dir.join(self.vmm.disk_name()),
            self.vmm.identity(),
        )?;
        Ok(TemplateSnapshot {
            dir: dir.to_owned(),
            manifest,
            disk: dir.join(self.vmm.disk_name()),
        })
    }

    /// The snapshot to restore for `template` at this shape: a snapshot template as it is,
    /// or a base template built (booted and snapshotted) on first use or when the one on disk
    /// is missing or no longer restorable.
    pub(crate) async fn snapshot(
        &self,
        template: &str,
        vcpus: u32,
        memory_mb: u32,
    ) -> Result<TemplateSnapshot> {
        if let Ok(base) = BaseTemplate::from_str(template) {
            return self.base_snapshot(base, vcpus, memory_mb).await;
        }
        if !rules::is_template_name(template) {
            return Err(AgentError::InvalidRequest(format!(
                "bad template name {template:?}"
            )));
        }
        let dir = self.layout.template(template);
        if !dir.exists() {
            return Err(AgentError::TemplateNotFound(template.to_owned()));
        }
        self.verified(&dir)
    }

    async fn base_snapshot(
        &self,
        base: BaseTemplate,
        vcpus: u32,
        memory_mb: u32,
    ) -> Result<TemplateSnapshot> {
        let images = self.images.clone();
        let envd = self.envd.clone();
        let rootfs = tokio::task::spawn_blocking(move || images.ensure_rootfs(base, &envd))
            .await
            .map_err(|e| AgentError::Tool(format!("image build task: {e}")))??;
        let key = format!("{}-{vcpus}c{memory_mb}m", rootfs.id);
        let lock = self
            .locks
            .lock()
            .await
            .entry(key.clone())
            .or_default()
            .clone();
        let _guard = lock.lock().await;
        let dir = self.layout.base_template(&key);
        if dir.exists() {
            match self.verified(&dir) {
                Ok(t) if t.manifest.nic => return Ok(t),
                Ok(_) => {
                    tracing::info!(template = %key, "rebuilding base template with a network device");
                    std::fs::remove_dir_all(&dir).map_err(AgentError::io("removing", &dir))?;
                }
                Err(e) => {
                    tracing::warn!(template = %key, error = %e, "rebuilding base template");
                    std::fs::remove_dir_all(&dir).map_err(AgentError::io("removing", &dir))?;
                }
            }
        }
        self.build_base(&key, &rootfs.path, vcpus, memory_mb)
            .await?;
        self.verified(&dir)
    }

    /// Boots a base root filesystem once, waits for envd, snapshots it into place.
    async fn build_base(&self, key: &str, rootfs: &Path, vcpus: u32, memory_mb: u32) -> Result<()> {
        let dir = self.layout.base_template(key);
        let parent = dir.parent().unwrap_or(Path::new("/"));
        let build = parent.join(build_dir_name());
        wrenn_durable::private_dir(&build).map_err(AgentError::io("creating", &build))?;
        tracing::info!(template = %key, "building base template (one cold boot)");
        let disk = build.join(self.vmm.disk_name());
        let rootfs = std::fs::canonicalize(rootfs).map_err(AgentError::io("resolving", rootfs))?;
        self.vmm.create_disk(&rootfs, &disk).await?;
        wrenn_durable::make_private(&disk).map_err(AgentError::io("restricting", &disk))?;
        // The device exists from the first boot, without a backend: each capsule restored
        // from this snapshot plugs its own tap in.
        let shape = VmShape {
            vcpus,
            memory_mb,
            kernel: self.kernel.kernel.clone(),
            initrd: self.kernel.initrd.clone(),
            nic: true,
        };
        let spec = vm_spec(
            self.vmm.as_ref(),
            &build,
            &shape,
            Some(crate::network::nic_spec(wrenn_vmm::NicBackend::None)),
        );
        let vm = self.vmm.boot(&spec).await?;
        let result = async {
            {
                let envd = EnvdClient::connect(&vm.agent_socket(), self.boot_timeout).await?;
                // Page in what every exec needs, so clones start warm.
                envd.exec(wrenn_protocol::ExecRequest {
                    cmd: "/bin/true".into(),
                    ..Default::default()
                })
                .await?;
            }
            vm.save(&build.join(SnapshotManifest::STATE)).await?;
            Ok::<_, AgentError>(())
        }
        .await;
        vm.stop().await?;
        result?;
        SnapshotManifest::write(
            &build,
            &build,
            self.vmm.disk_name(),
            &shape,
            self.vmm.identity(),
        )?;
        self.vmm.remove_runtime_files(&build);
        if let Err(e) = std::fs::rename(&build, &dir) {
            // Another process sharing this template store finished the same build first.
            let _ = std::fs::remove_dir_all(&build);
            if !dir.exists() {
                return Err(AgentError::io("renaming template into", &dir)(e));
            }
        }
        wrenn_durable::sync_dir(parent).map_err(AgentError::io("syncing", parent))?;
        tracing::info!(template = %key, "base template ready");
        Ok(())
    }

    /// The id of `base`'s current root filesystem (hashing envd once per base template).
    fn rootfs_id(&self, base: BaseTemplate) -> Option<String> {
        let mut ids = self.rootfs_ids.lock().unwrap_or_else(|e| e.into_inner());
        if let Some(id) = ids.get(&base) {
            return Some(id.clone());
        }
        let id = self.images.rootfs_id(base, &self.envd).ok()?;
        ids.insert(base, id.clone());
        Some(id)
    }

    /// A base template as listed: the create defaults as its shape; once its current root
    /// filesystem is built, the disk space of that image and of its booted snapshots (one
    /// per shape asked for) and the image's build time; before that (`python` until its
    /// first use) size 0 and time 0.
    fn base_info(&self, base: BaseTemplate) -> TemplateInfo {
        let mut info = TemplateInfo {
            name: base.name().to_owned(),
            kind: TemplateKind::Base,
            vcpus: 1,
            memory_mb: 512,
            size_bytes: 0,
            created_at: 0,
        };
        let Some(image) = self
            .rootfs_id(base)
            .and_then(|id| self.images.rootfs_by_id(&id))
        else {
            return info;
        };
        info.size_bytes = fsutil::allocated_bytes(&image.path).unwrap_or(0);
        info.created_at = std::fs::metadata(&image.path)
            .and_then(|m| m.modified())
            .ok()
            .and_then(|t| t.duration_since(std::time::UNIX_EPOCH).ok())
            .map_or(0, |d| d.as_secs() as i64);
        let prefix = format!("{}-", image.id);
        for e in std::fs::read_dir(self.layout.templates().join(".base"))
            .into_iter()
            .flatten()
            .flatten()
        {
            if e.file_name().to_string_lossy().starts_with(&prefix) {
                info.size_bytes += fsutil::dir_allocated_bytes(&e.path());
            }
        }
        info
    }

    /// Base templates (one entry per base, not per shape) and snapshot templates.
    pub(crate) fn list(&self) -> Vec<TemplateInfo> {
        let mut out: Vec<TemplateInfo> = BaseTemplate::all()
            .iter()
            .map(|b| self.base_info(*b))
            .collect();
        let Ok(entries) = std::fs::read_dir(self.layout.templates()) else {
            return out;
        };
        for e in entries.flatten() {
            let name = e.file_name().to_string_lossy().into_owned();
            if name.starts_with('.') {
                continue;
            }
            let dir = e.path();
            let Ok(m) = SnapshotManifest::read(&dir) else {
                continue;
            };
            out.push(TemplateInfo {
                name,
                kind: TemplateKind::Snapshot,
                vcpus: m.vcpus,
                memory_mb: m.memory_mb,
                size_bytes: fsutil::dir_allocated_bytes(&dir),
                created_at: m.created_at,
            });
        }
        out.sort_by(|a, b| a.name.cmp(&b.name));
        out
    }

    /// Copies a paused capsule's snapshot into `templates/<name>` (atomically replacing an
    /// existing one when `overwrite`).
    pub(crate) fn publish(
        &self,
        capsule_dir: &Path,
        name: &str,
        overwrite: bool,
    ) -> Result<TemplateInfo> {
        let final_dir = self.layout.template(name);
        if final_dir.exists() && !overwrite {
            return Err(AgentError::TemplateExists(name.to_owned()));
        }
        let root = self.layout.templates();
        wrenn_durable::private_dir(&root).map_err(AgentError::io("creating", &root))?;
        let suffix: u64 = rand::random();
        let build = root.join(build_dir_name());
        wrenn_durable::private_dir(&build).map_err(AgentError::io("creating", &build))?;
        let disk = self.vmm.disk_name();
        let result = (|| {
            let snap = capsule_dir.join(files::SNAPSHOT);
            for (from, to) in [
                (
                    snap.join(SnapshotManifest::STATE),
                    build.join(SnapshotManifest::STATE),
                ),
                (
                    snap.join(SnapshotManifest::FILE),
                    build.join(SnapshotManifest::FILE),
                ),
                (capsule_dir.join(files::MEMORY), build.join(files::MEMORY)),
                (capsule_dir.join(disk), build.join(disk)),
            ] {
                crate::fsutil::copy_template_file(&from, &to)
                    .map_err(AgentError::io("copying", &from))?;
            }
            wrenn_durable::sync_dir(&build).map_err(AgentError::io("syncing", &build))?;
            let _ = self.verified(&build)?;
            if final_dir.exists() {
                let trash = root.join(format!(".trash-{name}-{suffix:x}"));
                std::fs::rename(&final_dir, &trash)
                    .map_err(AgentError::io("renaming", &final_dir))?;
                std::fs::rename(&build, &final_dir).map_err(AgentError::io("renaming", &build))?;
                let _ = std::fs::remove_dir_all(&trash);
            } else {
                std::fs::rename(&build, &final_dir).map_err(AgentError::io("renaming", &build))?;
            }
            wrenn_durable::sync_dir(&root).map_err(AgentError::io("syncing", &root))
        })();
        if let Err(e) = result {
            let _ = std::fs::remove_dir_all(&build);
            return Err(e);
        }
        self.list()
            .into_iter()
            .find(|t| t.name == name)
            .ok_or_else(|| AgentError::TemplateNotFound(name.to_owned()))
    }

    /// Deletes a snapshot template. Capsules made from it hold their own copies.
    pub(crate) fn remove(&self, name: &str) -> Result<()> {
        if BaseTemplate::from_str(name).is_ok() {
            return Err(AgentError::InvalidRequest(format!(
                "{name} is a base template and cannot be deleted"
            )));
        }
        if !rules::is_template_name(name) {
            return Err(AgentError::InvalidRequest(format!(
                "bad template name {name:?}"
            )));
        }
        let dir = self.layout.template(name);
        if !dir.exists() {
            return Err(AgentError::TemplateNotFound(name.to_owned()));
        }
        let suffix: u64 = rand::random();
        let trash = self
            .layout
            .templates()
            .join(format!(".trash-{name}-{suffix:x}"));
        std::fs::rename(&dir, &trash).map_err(AgentError::io("renaming", &dir))?;
        std::fs::remove_dir_all(&trash).map_err(AgentError::io("removing", &trash))
    }

    /// Removes half-built templates left by a crash.
    pub(crate) fn sweep_leftovers(&self) {
        for root in [
            self.layout.templates(),
            self.layout.templates().join(".base"),
        ] {
            let Ok(entries) = std::fs::read_dir(&root) else {
                continue;
            };
            for e in entries.flatten() {
                let n = e.file_name().to_string_lossy().into_owned();
                if (n.starts_with(".build-") && !builder_alive(&n)) || n.starts_with(".trash-") {
                    let _ = std::fs::remove_dir_all(e.path());
                }
            }
        }
    }
}

/// Name of a build directory: `.build-<pid>-<random>`, so a sweep can tell whether its
/// builder still runs (several agents may share one template store). Short, because the
/// VMM's sockets live in it and Unix socket paths are limited to 107 bytes.
fn build_dir_name() -> String {
    format!(".build-{}-{:x}", std::process::id(), rand::random::<u32>())
}

/// Whether the process that made a `.build-…` directory is still alive.
fn builder_alive(dir_name: &str) -> bool {
    let mut parts = dir_name.rsplit('-');
    let _random = parts.next();
    match parts.next().and_then(|p| p.parse::<u32>().ok()) {
        Some(pid) => Path::new(&format!("/proc/{pid}")).exists(),
        None => false,
    }
}
