//! Processes envd runs: foreground commands, background commands with a tag, and the
//! processes of PTY sessions. Each has an output log (bounded, replayed on attach) and a
//! broadcast of new events; none is tied to the host connection.

use std::collections::{HashMap, VecDeque};
use std::os::fd::OwnedFd;
use std::os::unix::process::CommandExt;
use std::process::{Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use futures::Stream;
use tokio::io::AsyncReadExt;
use tokio::sync::broadcast;
use wrenn_protocol::{ErrorKind, ExecRequest, ProcessEvent, ProcessInfo, ProcessSelector};

use crate::error::{ApiError, ApiResult};
use crate::{reaper, users};

/// Output kept per process for replay on attach.
const LOG_CAP: usize = 1 << 20;
/// How long an exited process stays attachable.
const KEEP_EXITED: Duration = Duration::from_secs(300);

/// The output log of a process.
pub struct OutputLog {
    events: VecDeque<ProcessEvent>,
    bytes: usize,
    cap: usize,
    /// Exit code once ended.
    pub exit: Option<i32>,
    exited_at: Option<Instant>,
    tx: broadcast::Sender<ProcessEvent>,
}

impl OutputLog {
    fn new(cap: usize) -> Self {
        Self { events: VecDeque::new(), bytes: 0, cap, exit: None, exited_at: None, tx: broadcast::channel(4096).0 }
    }

    /// Records an event and sends it to followers.
    pub fn push(&mut self, ev: ProcessEvent) {
        if let ProcessEvent::Exit { exit_code } = ev {
            self.exit = Some(exit_code);
            self.exited_at = Some(Instant::now());
        }
        let size = event_size(&ev);
        self.bytes += size;
        self.events.push_back(ev.clone());
        while self.bytes > self.cap {
            match self.events.pop_front() {
                Some(old) => self.bytes -= event_size(&old),
                None => break,
            }
        }
        let _ = self.tx.send(ev);
    }
}

fn event_size(ev: &ProcessEvent) -> usize {
    match ev {
        ProcessEvent::Stdout { data } | ProcessEvent::Stderr { data } => data.len(),
        _ => 16,
    }
}

/// A process envd tracks.
pub struct Tracked {
    /// pid (also its process group id: every process gets its own session).
    pub pid: u32,
    /// Tag.
    pub tag: String,
    /// Program.
    pub cmd: String,
    /// Arguments.
    pub args: Vec<String>,
    /// Shown in the process list.
    pub listed: bool,
    /// PTY master, for PTY sessions.
    pub pty: Option<crate::pty::PtyMaster>,
    /// Output so far.
    pub log: Mutex<OutputLog>,
}

impl Tracked {
    fn log(&self) -> std::sync::MutexGuard<'_, OutputLog> {
        self.log.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Exit code once ended.
    pub fn exit_code(&self) -> Option<i32> {
        self.log().exit
    }

    /// Sends a signal to the process group.
    pub fn signal(&self, sig: i32) -> ApiResult<()> {
        if self.exit_code().is_some() {
            return Err(ApiError::not_found(format!("process {} has exited", self.pid)));
        }
        // SAFETY: kill(2) of our own child's process group.
        let rc = unsafe { libc::kill(-(self.pid as i32), sig) };
        if rc != 0 {
            // SAFETY: as above, the process itself.
            unsafe { libc::kill(self.pid as i32, sig) };
        }
        Ok(())
    }

    /// Replays the log, then follows new events until the exit.
    pub fn attach(self: &Arc<Self>) -> impl Stream<Item = ProcessEvent> + Send + 'static {
        let (replay, rx, exited) = {
            let log = self.log();
            (log.events.clone(), log.tx.subscribe(), log.exit.is_some())
        };
        futures::stream::unfold((replay, rx, exited, false), |(mut replay, mut rx, exited, done)| async move {
            if done {
                return None;
            }
            if let Some(ev) = replay.pop_front() {
                let end = matches!(ev, ProcessEvent::Exit { .. });
                return Some((ev, (replay, rx, exited, end)));
            }
            if exited {
                return None;
            }
            loop {
                match rx.recv().await {
                    Ok(ev) => {
                        let end = matches!(ev, ProcessEvent::Exit { .. });
                        return Some((ev, (replay, rx, exited, end)));
                    }
                    Err(broadcast::error::RecvError::Lagged(_)) => continue,
                    Err(broadcast::error::RecvError::Closed) => return None,
                }
            }
        })
    }

    /// The info shown in lists.
    pub fn info(&self) -> ProcessInfo {
        ProcessInfo { pid: self.pid, tag: self.tag.clone(), cmd: self.cmd.clone(), args: self.args.clone(), pty: self.pty.is_some() }
    }
}

/// Every tracked process.
#[derive(Default)]
pub struct Processes {
    by_pid: Mutex<HashMap<u32, Arc<Tracked>>>,
}

/// Where a new process's stdio goes.
pub enum Stdio3 {
    /// Pipes read into the output log.
    Pipes,
    /// A PTY slave (the master is kept in the tracked process).
    Pty(OwnedFd, crate::pty::PtyMaster),
}

/// A random tag with a prefix.
pub fn new_tag(prefix: &str) -> String {
    format!("{prefix}-{:08x}", rand::random::<u32>())
}

impl Processes {
    fn map(&self) -> std::sync::MutexGuard<'_, HashMap<u32, Arc<Tracked>>> {
        self.by_pid.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Starts a process as described by `req`.
    pub fn spawn(&self, req: &ExecRequest, listed: bool, tag: String, stdio: Stdio3) -> ApiResult<Arc<Tracked>> {
        if req.cmd.is_empty() {
            return Err(ApiError::invalid("cmd is empty"));
        }
        if listed && self.find_live_tag(&tag).is_some() {
            return Err(ApiError::new(ErrorKind::AlreadyExists, format!("a process with tag {tag} is running")));
        }
        let user = users::lookup(req.user.as_deref())
            .ok_or_else(|| ApiError::invalid(format!("no such user {:?}", req.user.as_deref().unwrap_or(""))))?;
        let cwd = match &req.cwd {
            Some(c) => c.clone(),
            None if std::path::Path::new(&user.home).is_dir() => user.home.clone(),
            None => "/".into(),
        };
        if !std::path::Path::new(&cwd).is_dir() {
            return Err(ApiError::invalid(format!("cwd {cwd} is not an existing directory")));
        }
        let mut cmd = Command::new(&req.cmd);
        cmd.args(&req.args).current_dir(&cwd).env_clear();
        cmd.env("PATH", "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin")
            .env("HOME", &user.home)
            .env("USER", &user.name)
            .env("LOGNAME", &user.name)
            .env("SHELL", &user.shell)
            .env("LANG", "C.UTF-8");
        if matches!(stdio, Stdio3::Pty(..)) {
            cmd.env("TERM", "xterm-256color");
        }
        cmd.envs(&req.envs);
        let (uid, gid, groups) = (user.uid, user.gid, users::groups_of(&user.name));
        let is_pty = matches!(stdio, Stdio3::Pty(..));
        // SAFETY: only async-signal-safe calls between fork and exec.
        unsafe {
            cmd.pre_exec(move || {
                if libc::setsid() < 0 {
                    return Err(std::io::Error::last_os_error());
                }
                if is_pty && libc::ioctl(0, libc::TIOCSCTTY as _, 0) < 0 {
                    return Err(std::io::Error::last_os_error());
                }
                if uid != 0 || gid != 0 {
                    if libc::setgroups(groups.len(), groups.as_ptr()) < 0
                        || libc::setgid(gid) < 0
                        || libc::setuid(uid) < 0
                    {
                        return Err(std::io::Error::last_os_error());
                    }
                }
                Ok(())
            });
        }
        let pty_master = match stdio {
            Stdio3::Pipes => {
                cmd.stdin(Stdio::null()).stdout(Stdio::piped()).stderr(Stdio::piped());
                None
            }
            Stdio3::Pty(slave, master) => {
                let clone = |fd: &OwnedFd| fd.try_clone().map_err(|e| ApiError::internal(format!("pty: {e}")));
                cmd.stdin(Stdio::from(clone(&slave)?)).stdout(Stdio::from(clone(&slave)?)).stderr(Stdio::from(slave));
                Some(master)
            }
        };
        let (mut child, exit_rx) = reaper::spawn(&mut cmd).map_err(|e| {
            let kind = if e.kind() == std::io::ErrorKind::NotFound { ErrorKind::InvalidArgument } else { ErrorKind::Internal };
            ApiError::new(kind, format!("cannot start {}: {e}", req.cmd))
        })?;
        let cap = if pty_master.is_some() { 64 * 1024 } else { LOG_CAP };
        let tracked = Arc::new(Tracked {
            pid: child.id(),
            tag,
            cmd: req.cmd.clone(),
            args: req.args.clone(),
            listed,
            pty: pty_master,
            log: Mutex::new(OutputLog::new(cap)),
        });
        tracked.log().push(ProcessEvent::Started { pid: child.id() });
        let mut readers = Vec::new();
        if let Some(out) = child.stdout.take() {
            readers.push(pump_pipe(tracked.clone(), OwnedFd::from(out), false));
        }
        if let Some(err) = child.stderr.take() {
            readers.push(pump_pipe(tracked.clone(), OwnedFd::from(err), true));
        }
        if let Some(master) = &tracked.pty {
            readers.push(crate::pty::pump(tracked.clone(), master.clone()));
        }
        let t = tracked.clone();
        tokio::spawn(async move {
            let code = exit_rx.await.unwrap_or(-1);
            // Let the readers drain what the process wrote; a grandchild holding the pipe
            // open must not hold the exit back for long.
            let drain = futures::future::join_all(readers.iter_mut());
            let _ = tokio::time::timeout(Duration::from_millis(300), drain).await;
            for r in &readers {
                r.abort();
            }
            t.log().push(ProcessEvent::Exit { exit_code: code });
        });
        self.sweep();
        self.map().insert(tracked.pid, tracked.clone());
        Ok(tracked)
    }

    fn find_live_tag(&self, tag: &str) -> Option<Arc<Tracked>> {
        self.map().values().find(|t| t.tag == tag && t.exit_code().is_none()).cloned()
    }

    /// A process by pid or tag (the live one when a tag was reused).
    pub fn find(&self, sel: &ProcessSelector) -> ApiResult<Arc<Tracked>> {
        let found = match sel {
            ProcessSelector::Pid(pid) => self.map().get(pid).cloned(),
            ProcessSelector::Tag(tag) => self.find_live_tag(tag).or_else(|| {
                self.map().values().filter(|t| &t.tag == tag).max_by_key(|t| t.pid).cloned()
            }),
        };
        found.ok_or_else(|| ApiError::not_found(format!("no process {}", describe(sel))))
    }

    /// Running background processes and PTY sessions.
    pub fn list(&self) -> Vec<ProcessInfo> {
        self.sweep();
        let mut v: Vec<ProcessInfo> =
            self.map().values().filter(|t| t.listed && t.exit_code().is_none()).map(|t| t.info()).collect();
        v.sort_by_key(|p| p.pid);
        v
    }

    fn sweep(&self) {
        self.map().retain(|_, t| t.log().exited_at.is_none_or(|at| at.elapsed() < KEEP_EXITED));
    }
}

fn describe(sel: &ProcessSelector) -> String {
    match sel {
        ProcessSelector::Pid(p) => format!("with pid {p}"),
        ProcessSelector::Tag(t) => format!("with tag {t}"),
    }
}

fn pump_pipe(t: Arc<Tracked>, fd: OwnedFd, stderr: bool) -> tokio::task::JoinHandle<()> {
    tokio::spawn(async move {
        let Ok(mut rx) = tokio::net::unix::pipe::Receiver::from_owned_fd(fd) else { return };
        let mut buf = vec![0u8; 64 * 1024];
        loop {
            match rx.read(&mut buf).await {
                Ok(0) | Err(_) => return,
                Ok(n) => {
                    let data = buf[..n].to_vec();
                    let ev = if stderr { ProcessEvent::Stderr { data } } else { ProcessEvent::Stdout { data } };
                    t.log().push(ev);
                }
            }
        }
    })
}
