//! A running QEMU microVM: boot, pause-to-snapshot, restore, kill, adopt.

use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::Duration;

use serde_json::{json, Value};
use tokio::sync::Mutex;
use tokio::task::JoinHandle;

use super::cmdline::{self, StartMode, VmFiles};
use super::process::{self, QemuProcess};
use super::qmp::Qmp;
use super::{console, tsc, Qemu};
use crate::{NicBackend, NicSpec, VmSpec, VmmError};

/// How long the QEMU launcher may take to daemonize (it exits once the VM is set up).
const START_TIMEOUT: Duration = Duration::from_secs(120);
/// How long saving or loading device state may take.
const MIGRATION_TIMEOUT: Duration = Duration::from_secs(300);
/// The migration capability that skips RAM living in shared memory-backend-files.
const IGNORE_SHARED: &str = "x-ignore-shared";

/// Unix socket of the virtio-serial port `wrenn.envd` of the VM in `dir`.
pub fn agent_socket_path(dir: &Path) -> PathBuf {
    match VmFiles::new(dir) {
        Ok(f) => f.envd(),
        Err(_) => dir.join("envd.sock"),
    }
}

/// Whether the QEMU of the VM in `dir` is alive (pid file + identity check).
pub fn process_alive(dir: &Path) -> bool {
    VmFiles::new(dir).is_ok_and(|f| process::find(&f).is_ok())
}

/// SIGKILLs the QEMU of `dir` if one is alive (used when no handle exists).
pub(crate) async fn kill_orphan(dir: &Path) {
    let Ok(files) = VmFiles::new(dir) else {
        return;
    };
    let Ok(p) = process::find(&files) else {
        return;
    };
    if let Err(e) = process::kill(p).await {
        tracing::warn!(dir = %dir.display(), pid = p.pid, error = %e, "killing a VMM without a handle");
    }
}

/// Removes sockets, pid file and console log of a VM whose QEMU has ended.
pub(crate) fn remove_runtime_files(dir: &Path) {
    let Ok(entries) = std::fs::read_dir(dir) else {
        return;
    };
    for e in entries.flatten() {
        let name = e.file_name().to_string_lossy().into_owned();
        if name.ends_with(".sock") || name.ends_with(".pid") || name.starts_with("console.log") {
            let _ = std::fs::remove_file(e.path());
        }
    }
}

/// A live QEMU process we drive through QMP. Dropping the handle leaves QEMU running (see
/// [`QemuVm::adopt`]); [`QemuVm::kill`] ends it.
#[derive(Debug)]
pub struct QemuVm {
    files: VmFiles,
    memory_file: PathBuf,
    disk: PathBuf,
    process: QemuProcess,
    qmp: Mutex<Qmp>,
    console: Option<JoinHandle<()>>,
}

impl Drop for QemuVm {
    fn drop(&mut self) {
        if let Some(task) = self.console.take() {
            task.abort();
        }
    }
}

/// Absolute path (QEMU runs with `/` as its working directory).
fn absolute(p: &Path) -> Result<PathBuf, VmmError> {
    std::path::absolute(p).map_err(VmmError::io("resolving", p))
}

impl QemuVm {
    /// Starts QEMU (daemonized, in its own session, so it survives the agent's death),
    /// connects QMP and starts the vCPUs.
    pub async fn boot(qemu: &Qemu, spec: &VmSpec) -> Result<QemuVm, VmmError> {
        let vm = QemuVm::start(qemu, spec, StartMode::Boot).await?;
        if let Err(e) = vm.cont().await {
            vm.kill_quietly().await;
            return Err(e);
        }
        tracing::info!(dir = %vm.files.dir.display(), pid = vm.process.pid, "VM booted");
        Ok(vm)
    }

    /// Starts QEMU with `-incoming defer`, loads the device state from `state`, then starts
    /// the vCPUs.
    pub async fn restore(qemu: &Qemu, spec: &VmSpec, state: &Path) -> Result<QemuVm, VmmError> {
        let vm = QemuVm::restore_stopped(qemu, spec, state).await?;
        if let Err(e) = vm.cont().await {
            vm.kill_quietly().await;
            return Err(e);
        }
        Ok(vm)
    }

    /// Like [`QemuVm::restore`] but leaves the vCPUs stopped; call [`QemuVm::cont`] to run
    /// the guest.
    pub async fn restore_stopped(
        qemu: &Qemu,
        spec: &VmSpec,
        state: &Path,
    ) -> Result<QemuVm, VmmError> {
        let started = std::time::Instant::now();
        let state = absolute(state)?;
        if !state.is_file() {
            return Err(VmmError::StateMissing(state));
        }
        let vm = QemuVm::start(qemu, spec, StartMode::Incoming).await?;
        let loaded = async {
            let mut qmp = vm.qmp.lock().await;
            qmp.execute(
                "migrate-incoming",
                Some(json!({ "channels": [file_channel(&state)] })),
            )
            .await
            .map_err(VmmError::qmp("migrate-incoming"))?;
            wait_migration(&mut qmp, "loading", &state).await
        }
        .await;
        if let Err(e) = loaded {
            vm.kill_quietly().await;
            return Err(e);
        }
        tracing::info!(
            dir = %vm.files.dir.display(),
            pid = vm.process.pid,
            elapsed_ms = started.elapsed().as_millis() as u64,
            "VM restored (vCPUs stopped)"
        );
        Ok(vm)
    }

    /// Pause to snapshot: stops the vCPUs, writes the device state (RAM excluded: it lives in
    /// the shared memory file) to `<state>.tmp`, fsyncs it, the memory file and the disk,
    /// renames it to `state` and fsyncs the directory. On any failure the vCPUs are resumed
    /// and the guest keeps running. On success the VM is left stopped.
    pub async fn save(&self, state: &Path) -> Result<(), VmmError> {
        let started = std::time::Instant::now();
        let state = absolute(state)?;
        let mut tmp = state.as_os_str().to_owned();
        tmp.push(".tmp");
        let tmp = PathBuf::from(tmp);
        let mut qmp = self.qmp.lock().await;
        qmp.execute("stop", None)
            .await
            .map_err(VmmError::qmp("stop"))?;
        let saved = async {
            match std::fs::remove_file(&tmp) {
                Ok(()) => {}
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
                Err(e) => return Err(VmmError::io("removing", &tmp)(e)),
            }
            qmp.execute("migrate", Some(json!({ "channels": [file_channel(&tmp)] })))
                .await
                .map_err(VmmError::qmp("migrate"))?;
            wait_migration(&mut qmp, "saving", &tmp).await?;
            for f in [&tmp, &self.memory_file, &self.disk] {
                wrenn_durable::sync_file(f).map_err(VmmError::io("fsyncing", f))?;
            }
            wrenn_durable::rename_durable(&tmp, &state)
                .map_err(VmmError::io("renaming into place", &state))
        }
        .await;
        if let Err(e) = saved {
            tracing::warn!(dir = %self.files.dir.display(), error = %e, "save failed, resuming the guest");
            let _ = std::fs::remove_file(&tmp);
            if let Err(ce) = qmp.execute("cont", None).await {
                tracing::error!(dir = %self.files.dir.display(), error = %ce, "resuming after a failed save");
            }
            return Err(e);
        }
        tracing::info!(
            dir = %self.files.dir.display(),
            state = %state.display(),
            elapsed_ms = started.elapsed().as_millis() as u64,
            "VM saved"
        );
        Ok(())
    }

    /// Starts (or resumes) the vCPUs.
    pub async fn cont(&self) -> Result<(), VmmError> {
        self.qmp
            .lock()
            .await
            .execute("cont", None)
            .await
            .map_err(VmmError::qmp("cont"))?;
        Ok(())
    }

    /// Stops the vCPUs (the VM stays in memory; [`QemuVm::cont`] resumes it).
    pub async fn stop_vcpus(&self) -> Result<(), VmmError> {
        self.qmp
            .lock()
            .await
            .execute("stop", None)
            .await
            .map_err(VmmError::qmp("stop"))?;
        Ok(())
    }

    /// SIGKILLs the QEMU process and waits until it is gone.
    pub async fn kill(mut self) -> Result<(), VmmError> {
        if let Some(task) = self.console.take() {
            task.abort();
        }
        process::kill(self.process).await?;
        tracing::info!(dir = %self.files.dir.display(), pid = self.process.pid, "VM killed");
        Ok(())
    }

    /// Re-attaches to a running QEMU after an agent restart: checks the process of the pid
    /// file is our QEMU for this directory (command line + start time), reconnects QMP and
    /// the console log.
    pub async fn adopt(spec: &VmSpec) -> Result<QemuVm, VmmError> {
        let files = VmFiles::new(&spec.dir)?;
        let process = process::find(&files)?;
        let qmp = Qmp::connect(&files.qmp())
            .await
            .map_err(VmmError::qmp("connect"))?;
        let console = match console::start(&files.console_sock(), files.console_log()).await {
            Ok(t) => Some(t),
            Err(e) => {
                tracing::warn!(dir = %files.dir.display(), error = %e, "console log not reconnected");
                None
            }
        };
        tracing::info!(dir = %files.dir.display(), pid = process.pid, "VM adopted");
        Ok(QemuVm {
            memory_file: absolute(&spec.memory_file)?,
            disk: absolute(&spec.disk)?,
            files,
            process,
            qmp: Mutex::new(qmp),
            console,
        })
    }

    /// A future that resolves when this VMM's process ends, for whatever reason.
    pub fn exit_watch(&self) -> crate::ExitWatch {
        let (files, process) = (self.files.clone(), self.process);
        crate::ExitWatch::new(process.pid, move || {
            process::find(&files).is_ok_and(|p| p == process)
        })
    }

    /// Process id of QEMU.
    pub fn pid(&self) -> u32 {
        self.process.pid
    }

    /// Unix socket of the virtio-serial port `wrenn.envd`.
    pub fn agent_socket(&self) -> PathBuf {
        self.files.envd()
    }

    /// The guest console log (bounded; the previous one is `console.log.1`).
    pub fn console_log(&self) -> PathBuf {
        self.files.console_log()
    }

    /// The VM's directory (absolute).
    pub fn dir(&self) -> &Path {
        &self.files.dir
    }

    /// QEMU's run state (`running`, `paused`, `postmigrate`, `inmigrate`, ...).
    pub async fn status(&self) -> Result<String, VmmError> {
        let ret = self
            .qmp
            .lock()
            .await
            .execute("query-status", None)
            .await
            .map_err(VmmError::qmp("query-status"))?;
        Ok(ret
            .get("status")
            .and_then(Value::as_str)
            .unwrap_or("unknown")
            .to_owned())
    }

    /// Whether QMP `query-status` says the vCPUs are running.
    pub async fn is_running(&self) -> bool {
        matches!(self.status().await.as_deref(), Ok("running"))
    }

    async fn kill_quietly(self) {
        let dir = self.files.dir.clone();
        if let Err(e) = self.kill().await {
            tracing::error!(dir = %dir.display(), error = %e, "killing a VM that failed to start");
        }
    }

    /// Launches QEMU with vCPUs stopped, connects QMP, sets the migration capabilities and
    /// the console log.
    async fn start(qemu: &Qemu, spec: &VmSpec, mode: StartMode) -> Result<QemuVm, VmmError> {
        let files = VmFiles::new(&spec.dir)?;
        files.check_socket_paths()?;
        std::fs::create_dir_all(&files.dir).map_err(VmmError::io("creating", &files.dir))?;
        if let Ok(p) = process::find(&files) {
            return Err(VmmError::AlreadyRunning {
                dir: files.dir.clone(),
                pid: p.pid,
            });
        }
        for stale in [
            files.qmp(),
            files.console_sock(),
            files.envd(),
            files.pid(),
            files.identity(),
        ] {
            match std::fs::remove_file(&stale) {
                Ok(()) => {}
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
                Err(e) => return Err(VmmError::io("removing", &stale)(e)),
            }
        }
        let memory_file = absolute(&spec.memory_file)?;
        let disk = absolute(&spec.disk)?;
        if !disk.is_file() {
            return Err(VmmError::io("opening disk", &disk)(
                std::io::ErrorKind::NotFound.into(),
            ));
        }
        // Guest RAM: readable by the owner only.
        wrenn_durable::ensure_sparse(
            &memory_file,
            u64::from(cmdline::guest_ram_mb(spec.memory_mb)) * 1024 * 1024,
        )
        .map_err(VmmError::io("creating", &memory_file))?;
        let tsc_khz = tsc::host_tsc_khz()?;
        let mut spec_abs = spec.clone();
        spec_abs.kernel = absolute(&spec.kernel)?;
        spec_abs.initrd = absolute(&spec.initrd)?;
        let args = cmdline::qemu_args(
            &spec_abs,
            qemu.accel(),
            &files,
            &memory_file,
            &disk,
            tsc_khz,
            mode,
        );
        let netns = match &spec.nic {
            Some(NicSpec {
                backend: NicBackend::Tap { netns, .. },
                ..
            }) => Some(netns.as_path()),
            _ => None,
        };
        launch(qemu.binary(), &args, &files, netns).await?;
        let process = process::started(&files)?;
        let connected = async {
            process::record_identity(&files, process)?;
            let mut qmp = Qmp::connect(&files.qmp())
                .await
                .map_err(VmmError::qmp("connect"))?;
            qmp.execute(
                "migrate-set-capabilities",
                Some(json!({ "capabilities": [{ "capability": IGNORE_SHARED, "state": true }] })),
            )
            .await
            .map_err(VmmError::qmp("migrate-set-capabilities"))?;
            let console = console::start(&files.console_sock(), files.console_log())
                .await
                .map_err(VmmError::io("connecting console", files.console_sock()))?;
            Ok::<_, VmmError>((qmp, console))
        }
        .await;
        match connected {
            Ok((qmp, console)) => Ok(QemuVm {
                files,
                memory_file,
                disk,
                process,
                qmp: Mutex::new(qmp),
                console: Some(console),
            }),
            Err(e) => {
                if let Err(ke) = process::kill(process).await {
                    tracing::error!(dir = %files.dir.display(), error = %ke, "killing a VM that failed to start");
                }
                Err(e)
            }
        }
    }
}

/// A QMP migration channel to or from a file.
fn file_channel(path: &Path) -> Value {
    json!({
        "channel-type": "main",
        "addr": { "transport": "file", "filename": path.to_string_lossy(), "offset": 0 }
    })
}

/// Polls `query-migrate` until the migration ends; fails unless it completed.
async fn wait_migration(qmp: &mut Qmp, op: &'static str, path: &Path) -> Result<(), VmmError> {
    let deadline = tokio::time::Instant::now() + MIGRATION_TIMEOUT;
    loop {
        let info = qmp
            .execute("query-migrate", None)
            .await
            .map_err(VmmError::qmp("query-migrate"))?;
        let status = info
            .get("status")
            .and_then(Value::as_str)
            .unwrap_or("none")
            .to_owned();
        match status.as_str() {
            "completed" => return Ok(()),
            "failed" | "cancelled" => {
                let detail = info
                    .get("error-desc")
                    .and_then(Value::as_str)
                    .map(str::to_owned);
                return Err(VmmError::Migration {
                    op,
                    path: path.to_owned(),
                    status,
                    detail,
                });
            }
            _ => {}
        }
        if tokio::time::Instant::now() >= deadline {
            let _ = qmp.execute("migrate_cancel", None).await;
            return Err(VmmError::Migration {
                op,
                path: path.to_owned(),
                status,
                detail: Some(format!(
                    "not finished within {} s",
                    MIGRATION_TIMEOUT.as_secs()
                )),
            });
        }
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
}

/// Runs the QEMU launcher: it daemonizes and exits 0 once the VM is set up, or exits non-zero
/// with the reason in `qemu.log`.
async fn launch(
    qemu: &Path,
    args: &[std::ffi::OsString],
    files: &VmFiles,
    netns: Option<&Path>,
) -> Result<(), VmmError> {
    let log_path = files.qemu_log();
    let log = std::fs::File::create(&log_path).map_err(VmmError::io("creating", &log_path))?;
    let log_err = log
        .try_clone()
        .map_err(VmmError::io("duplicating", &log_path))?;
    tracing::debug!(qemu = %qemu.display(), ?args, ?netns, "launching qemu");
    let mut cmd = tokio::process::Command::new(qemu);
    // QEMU (and the daemon it forks) runs in the capsule's network namespace, where its tap
    // device is. The namespace file stays open until the launcher has been spawned.
    let _netns_fd = match netns {
        Some(path) => {
            let f = std::fs::File::open(path).map_err(VmmError::io("opening namespace", path))?;
            let raw = std::os::fd::AsRawFd::as_raw_fd(&f);
            // SAFETY: setns(2) is async-signal-safe and `raw` is open across the spawn.
            unsafe {
                cmd.pre_exec(move || {
                    if libc::setns(raw, libc::CLONE_NEWNET) != 0 {
                        return Err(std::io::Error::last_os_error());
                    }
                    Ok(())
                });
            }
            Some(f)
        }
        None => None,
    };
    let mut child = cmd
        .args(args)
        .stdin(Stdio::null())
        .stdout(log)
        .stderr(log_err)
        .kill_on_drop(true)
        .spawn()
        .map_err(|source| VmmError::Spawn {
            qemu: qemu.to_owned(),
            source,
        })?;
    let status = match tokio::time::timeout(START_TIMEOUT, child.wait()).await {
        Ok(Ok(s)) => s,
        Ok(Err(source)) => {
            return Err(VmmError::Spawn {
                qemu: qemu.to_owned(),
                source,
            })
        }
        Err(_) => {
            let _ = child.kill().await;
            if let Ok(p) = process::started(files) {
                let _ = process::kill(p).await;
            }
            return Err(VmmError::StartTimeout {
                secs: START_TIMEOUT.as_secs(),
            });
        }
    };
    if !status.success() {
        let text = std::fs::read_to_string(&log_path).unwrap_or_default();
        let tail: String = text
            .lines()
            .rev()
            .take(20)
            .collect::<Vec<_>>()
            .into_iter()
            .rev()
            .collect::<Vec<_>>()
            .join("\n");
        return Err(VmmError::QemuFailed {
            status: status.to_string(),
            log: tail,
        });
    }
    Ok(())
}

/// QEMU's classic migration, for benchmarks: every RAM page goes through the migration file
/// (`x-ignore-shared` off). This is the baseline our pause and resume are measured against.
impl QemuVm {
    /// Stops the vCPUs and migrates device state and all of RAM to `path`, fsynced.
    pub async fn save_classic(&self, path: &Path) -> Result<(), VmmError> {
        let path = absolute(path)?;
        let mut qmp = self.qmp.lock().await;
        qmp.execute("stop", None)
            .await
            .map_err(VmmError::qmp("stop"))?;
        set_ignore_shared(&mut qmp, false).await?;
        qmp.execute(
            "migrate",
            Some(json!({ "channels": [file_channel(&path)] })),
        )
        .await
        .map_err(VmmError::qmp("migrate"))?;
        wait_migration(&mut qmp, "saving (classic)", &path).await?;
        wrenn_durable::sync_file(&path).map_err(VmmError::io("fsyncing", &path))
    }

    /// Starts QEMU with `-incoming defer`, loads device state and all of RAM from a classic
    /// migration file, then starts the vCPUs.
    pub async fn restore_classic(
        qemu: &Qemu,
        spec: &VmSpec,
        path: &Path,
    ) -> Result<QemuVm, VmmError> {
        let path = absolute(path)?;
        let vm = QemuVm::start(qemu, spec, StartMode::Incoming).await?;
        let loaded = async {
            let mut qmp = vm.qmp.lock().await;
            set_ignore_shared(&mut qmp, false).await?;
            qmp.execute(
                "migrate-incoming",
                Some(json!({ "channels": [file_channel(&path)] })),
            )
            .await
            .map_err(VmmError::qmp("migrate-incoming"))?;
            wait_migration(&mut qmp, "loading (classic)", &path).await?;
            qmp.execute("cont", None)
                .await
                .map_err(VmmError::qmp("cont"))?;
            Ok::<_, VmmError>(())
        }
        .await;
        if let Err(e) = loaded {
            vm.kill_quietly().await;
            return Err(e);
        }
        Ok(vm)
    }
}

async fn set_ignore_shared(qmp: &mut Qmp, on: bool) -> Result<(), VmmError> {
    qmp.execute(
        "migrate-set-capabilities",
        Some(json!({ "capabilities": [{ "capability": IGNORE_SHARED, "state": on }] })),
    )
    .await
    .map_err(VmmError::qmp("migrate-set-capabilities"))?;
    Ok(())
}
