//! Background processes and PTY sessions: they belong to envd, not to a connection. Their
//! output is kept in bounded rings so a later attach replays it, then follows.

use std::collections::HashMap;
use std::process::Stdio;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use futures::Stream;
use tokio::io::AsyncReadExt;
use tokio::sync::watch;
use wrenn_protocol::{ExecRequest, ProcessEvent, ProcessInfo, ProcessSelector, PtyEvent, PtyStart};

use crate::error::{ApiError, ApiResult};
use crate::exec;
use crate::pty::{self, Master};
use crate::reaper;
use crate::ring::Ring;
use crate::spawn::{self, kill_group, Spec};

/// Output kept per stream of a background process.
pub const BACKGROUND_RING: usize = 1 << 20;
/// Output kept of a PTY session.
pub const PTY_RING: usize = 64 * 1024;
/// Exited entries kept for a late attach.
const KEEP_EXITED: usize = 64;
/// Largest event an attach stream emits.
const EVENT_MAX: usize = wrenn_protocol::EVENT_DATA_MAX;
/// How long to keep reading output after the process exited.
const DRAIN_GRACE: Duration = Duration::from_secs(2);

#[derive(Debug)]
struct State {
    out: Ring,
    err: Ring,
    exit: Option<i32>,
    done: bool,
}

/// A process envd tracks.
#[derive(Debug)]
pub struct Tracked {
    /// Pid and process group id.
    pub pid: u32,
    /// Tag.
    pub tag: String,
    /// Program.
    pub cmd: String,
    /// Arguments.
    pub args: Vec<String>,
    /// The PTY master of a PTY session.
    pub pty: Option<Master>,
    /// The stdin pipe of a background process started with one, until it is closed.
    stdin: tokio::sync::Mutex<Option<tokio::net::unix::pipe::Sender>>,
    state: Mutex<State>,
    changed: watch::Sender<u64>,
}

impl Tracked {
    fn new(pid: u32, tag: String, spec: &Spec, pty: Option<Master>) -> Self {
        let cap = if pty.is_some() {
            PTY_RING
        } else {
            BACKGROUND_RING
        };
        Self {
            pid,
            tag,
            cmd: spec.cmd.clone(),
            args: spec.args.clone(),
            pty,
            stdin: tokio::sync::Mutex::new(None),
            state: Mutex::new(State {
                out: Ring::new(cap),
                err: Ring::new(cap),
                exit: None,
                done: false,
            }),
            changed: watch::channel(0).0,
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(|p| p.into_inner())
    }

    fn push(&self, stderr: bool, data: &[u8]) {
        {
            let mut s = self.lock();
            if stderr {
                s.err.push(data)
            } else {
                s.out.push(data)
            }
        }
        self.changed.send_modify(|v| *v += 1);
    }

    fn exited(&self, code: i32) {
        self.lock().exit = Some(code);
        self.changed.send_modify(|v| *v += 1);
    }

    fn finish(&self) {
        self.lock().done = true;
        self.changed.send_modify(|v| *v += 1);
    }

    /// True until the process exits.
    pub fn running(&self) -> bool {
        self.lock().exit.is_none()
    }

    /// What `list` shows.
    pub fn info(&self) -> ProcessInfo {
        ProcessInfo {
            pid: self.pid,
            tag: self.tag.clone(),
            cmd: self.cmd.clone(),
            args: self.args.clone(),
            pty: self.pty.is_some(),
        }
    }

    /// Next chunk after the positions, or the exit code once everything is out. Waits for
    /// changes; `None` only after the exit was returned.
    async fn next_chunk(&self, rx: &mut watch::Receiver<u64>, pos: &mut (u64, u64)) -> Chunk {
        loop {
            rx.borrow_and_update();
            {
                let s = self.lock();
                let (data, next) = s.out.read_from(pos.0, EVENT_MAX);
                if !data.is_empty() {
                    pos.0 = next;
                    return Chunk::Out(data);
                }
                let (data, next) = s.err.read_from(pos.1, EVENT_MAX);
                if !data.is_empty() {
                    pos.1 = next;
                    return Chunk::Err(data);
                }
                if s.done {
                    return Chunk::Exit(s.exit.unwrap_or(-1));
                }
            }
            if rx.changed().await.is_err() {
                return Chunk::Exit(-1);
            }
        }
    }

    /// Replays the buffered output, then follows it: `Started`, output, `Exit`.
    pub fn events(self: Arc<Self>) -> impl Stream<Item = ProcessEvent> + Send + 'static {
        let rx = self.changed.subscribe();
        let first = ProcessEvent::Started { pid: self.pid };
        let rest = futures::stream::unfold(
            (self, rx, (0u64, 0u64), false),
            |(t, mut rx, mut pos, ended)| async move {
                if ended {
                    return None;
                }
                let ev = match t.next_chunk(&mut rx, &mut pos).await {
                    Chunk::Out(data) => ProcessEvent::Stdout { data },
                    Chunk::Err(data) => ProcessEvent::Stderr { data },
                    Chunk::Exit(exit_code) => {
                        return Some((ProcessEvent::Exit { exit_code }, (t, rx, pos, true)))
                    }
                };
                Some((ev, (t, rx, pos, false)))
            },
        );
        futures::StreamExt::chain(futures::stream::iter([first]), rest)
    }

    /// PTY output (replayed, then followed), then `Exit`.
    pub fn pty_events(self: Arc<Self>) -> impl Stream<Item = PtyEvent> + Send + 'static {
        let rx = self.changed.subscribe();
        futures::stream::unfold(
            (self, rx, (0u64, 0u64), false),
            |(t, mut rx, mut pos, ended)| async move {
                if ended {
                    return None;
                }
                match t.next_chunk(&mut rx, &mut pos).await {
                    Chunk::Out(data) | Chunk::Err(data) => {
                        Some((PtyEvent::Output { data }, (t, rx, pos, false)))
                    }
                    Chunk::Exit(exit_code) => {
                        Some((PtyEvent::Exit { exit_code }, (t, rx, pos, true)))
                    }
                }
            },
        )
    }
}

enum Chunk {
    Out(Vec<u8>),
    Err(Vec<u8>),
    Exit(i32),
}

/// All tracked processes, by tag.
#[derive(Debug, Default)]
pub struct Registry {
    map: Mutex<HashMap<String, Arc<Tracked>>>,
}

fn new_tag(prefix: &str) -> String {
    format!("{prefix}-{:08x}", rand::random::<u32>())
}

impl Registry {
    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<String, Arc<Tracked>>> {
        self.map.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Registers a new process under `tag` (generated when absent) using `start`, which is
    /// called under the lock so two starts cannot take the same tag.
    fn insert(
        &self,
        tag: Option<String>,
        prefix: &str,
        start: impl FnOnce(String) -> ApiResult<Arc<Tracked>>,
    ) -> ApiResult<Arc<Tracked>> {
        let mut map = self.lock();
        let tag = match tag.filter(|t| !t.is_empty()) {
            Some(t) => {
                if let Err(e) = wrenn_protocol::check_tag(&t) {
                    let shown: String = t.chars().take(wrenn_protocol::TAG_MAX_LEN).collect();
                    return Err(ApiError::invalid(format!("tag {shown:?}: {e}")));
                }
                if map.get(&t).is_some_and(|p| p.running()) {
                    return Err(ApiError::new(
                        wrenn_protocol::ErrorKind::AlreadyExists,
                        format!("tag {t}: a process with this tag is running"),
                    ));
                }
                t
            }
            None => loop {
                let t = new_tag(prefix);
                if !map.contains_key(&t) {
                    break t;
                }
            },
        };
        let tracked = start(tag.clone())?;
        map.insert(tag, tracked.clone());
        let mut exited: Vec<(u32, String)> = map
            .values()
            .filter(|p| !p.running())
            .map(|p| (p.pid, p.tag.clone()))
            .collect();
        if exited.len() > KEEP_EXITED {
            exited.sort();
            for (_, t) in exited.iter().take(exited.len() - KEEP_EXITED) {
                map.remove(t);
            }
        }
        Ok(tracked)
    }

    /// Starts a background process.
    pub fn start_background(&self, req: ExecRequest) -> ApiResult<ProcessInfo> {
        let spec = spec_of(&req);
        let timeout = req.timeout_ms.map(Duration::from_millis);
        let t = self.insert(req.tag, "proc", |tag| {
            let mut run = exec::start(&spec, req.stdin)?;
            let t = Tracked::new(run.pid, tag, &spec, None);
            *t.stdin
                .try_lock()
                .map_err(|_| ApiError::internal("stdin in use"))? = run.stdin.take();
            let t = Arc::new(t);
            tokio::spawn(follow_background(t.clone(), run, timeout));
            Ok(t)
        })?;
        tracing::info!(pid = t.pid, tag = %t.tag, cmd = %t.cmd, "background process started");
        Ok(t.info())
    }

    /// Starts a PTY session.
    pub fn start_pty(&self, req: PtyStart) -> ApiResult<Arc<Tracked>> {
        let cmd = req
            .cmd
            .clone()
            .filter(|c| !c.is_empty())
            .unwrap_or_else(|| {
                if std::path::Path::new("/bin/bash").exists() {
                    "/bin/bash".into()
                } else {
                    "/bin/sh".into()
                }
            });
        let mut envs = req.envs.clone();
        envs.entry("TERM".into())
            .or_insert_with(|| "xterm-256color".into());
        let spec = Spec {
            cmd,
            args: req.args.clone(),
            envs,
            cwd: req.cwd.clone(),
            user: req.user.clone(),
        };
        let t = self.insert(req.tag, "pty", |tag| {
            let (master, slave) =
                pty::open(req.cols, req.rows).map_err(|e| ApiError::io("open a pty", e))?;
            let mut cmd = spawn::command(&spec, true)?;
            let io = |fd: &std::os::fd::OwnedFd| {
                fd.try_clone()
                    .map(Stdio::from)
                    .map_err(|e| ApiError::io("dup pty", e))
            };
            cmd.stdin(io(&slave)?)
                .stdout(io(&slave)?)
                .stderr(io(&slave)?);
            let (child, exit) =
                reaper::spawn(&mut cmd).map_err(|e| spawn::spawn_error(&spec.cmd, e))?;
            drop(cmd);
            drop(slave);
            let t = Arc::new(Tracked::new(child.id(), tag, &spec, Some(master)));
            tokio::spawn(follow_pty(t.clone(), exit));
            Ok(t)
        })?;
        tracing::info!(pid = t.pid, tag = %t.tag, "pty session started");
        Ok(t)
    }

    /// The process `sel` names (running or recently exited).
    pub fn find(&self, sel: &ProcessSelector) -> ApiResult<Arc<Tracked>> {
        let map = self.lock();
        let found = match sel {
            ProcessSelector::Tag(t) => map.get(t).cloned(),
            ProcessSelector::Pid(pid) => {
                let mut c: Vec<&Arc<Tracked>> = map.values().filter(|p| p.pid == *pid).collect();
                c.sort_by_key(|p| !p.running());
                c.first().map(|p| (*p).clone())
            }
        };
        found.ok_or_else(|| match sel {
            ProcessSelector::Tag(t) => ApiError::not_found(format!("process tag {t}: not found")),
            ProcessSelector::Pid(p) => {
                ApiError::not_found(format!("process pid {p}: not tracked by envd"))
            }
        })
    }

    /// A PTY session by tag.
    pub fn find_pty(&self, tag: &str) -> ApiResult<Arc<Tracked>> {
        let t = self.find(&ProcessSelector::Tag(tag.to_owned()))?;
        if t.pty.is_none() {
            return Err(ApiError::invalid(format!("tag {tag}: not a pty session")));
        }
        Ok(t)
    }

    /// Running background processes and PTY sessions, by pid.
    pub fn list(&self) -> Vec<ProcessInfo> {
        let mut v: Vec<ProcessInfo> = self
            .lock()
            .values()
            .filter(|p| p.running())
            .map(|p| p.info())
            .collect();
        v.sort_by_key(|p| p.pid);
        v
    }

    /// Writes `data` to the stdin pipe of the running process `sel`.
    pub async fn write_stdin(&self, sel: &ProcessSelector, data: &[u8]) -> ApiResult<()> {
        use tokio::io::AsyncWriteExt;
        let t = self.find(sel)?;
        if !t.running() {
            return Err(ApiError::not_found(format!(
                "process {}: already exited",
                t.tag
            )));
        }
        let mut stdin = t.stdin.lock().await;
        let pipe = stdin.as_mut().ok_or_else(|| {
            ApiError::invalid(format!(
                "process {}: has no stdin (start it with stdin, and do not close it)",
                t.tag
            ))
        })?;
        pipe.write_all(data)
            .await
            .map_err(|e| ApiError::io(format!("process {}: stdin", t.tag), e))
    }

    /// Closes the stdin pipe of `sel`: the process reads end of file. Closing it again is
    /// no error.
    pub async fn close_stdin(&self, sel: &ProcessSelector) -> ApiResult<()> {
        let t = self.find(sel)?;
        if t.pty.is_some() {
            return Err(ApiError::invalid(format!(
                "process {}: a pty session has no stdin pipe (send Ctrl-D as input)",
                t.tag
            )));
        }
        t.stdin.lock().await.take();
        Ok(())
    }

    /// Sends `sig` to the process group of `sel`.
    pub fn signal(&self, sel: &ProcessSelector, sig: i32) -> ApiResult<()> {
        let t = self.find(sel)?;
        if !t.running() {
            return Err(ApiError::not_found(format!(
                "process {}: already exited",
                t.tag
            )));
        }
        if !(1..=64).contains(&sig) {
            return Err(ApiError::invalid(format!("signal {sig}: out of range")));
        }
        kill_group(t.pid, sig);
        Ok(())
    }
}

/// The spawn spec of a command request.
pub(crate) fn spec_of(req: &ExecRequest) -> Spec {
    Spec {
        cmd: req.cmd.clone(),
        args: req.args.clone(),
        envs: req.envs.clone(),
        cwd: req.cwd.clone(),
        user: req.user.clone(),
    }
}

/// Copies a background process's output into its rings until it ends.
async fn follow_background(t: Arc<Tracked>, run: exec::Running, timeout: Option<Duration>) {
    let exec::Running {
        pid,
        mut stdout,
        mut stderr,
        mut exit,
        ..
    } = run;
    let far = tokio::time::Instant::now() + Duration::from_secs(100 * 365 * 86_400);
    let deadline = timeout.map_or(far, |d| tokio::time::Instant::now() + d);
    let mut grace = far;
    let (mut out_open, mut err_open, mut code) = (true, true, None::<i32>);
    let (mut bo, mut be) = (vec![0u8; EVENT_MAX], vec![0u8; EVENT_MAX]);
    while code.is_none() || out_open || err_open {
        tokio::select! {
            r = stdout.read(&mut bo), if out_open => match r {
                Ok(n) if n > 0 => t.push(false, &bo[..n]),
                _ => out_open = false,
            },
            r = stderr.read(&mut be), if err_open => match r {
                Ok(n) if n > 0 => t.push(true, &be[..n]),
                _ => err_open = false,
            },
            c = &mut exit, if code.is_none() => {
                let c = c.unwrap_or(-1);
                code = Some(c);
                t.exited(c);
                grace = tokio::time::Instant::now() + DRAIN_GRACE;
            }
            _ = tokio::time::sleep_until(deadline), if code.is_none() => {
                kill_group(pid, libc::SIGKILL);
            }
            _ = tokio::time::sleep_until(grace), if code.is_some() => break,
        }
    }
    t.finish();
    tracing::info!(pid, tag = %t.tag, code, "background process ended");
}

/// Copies a PTY session's output into its ring until it ends.
async fn follow_pty(t: Arc<Tracked>, mut exit: reaper::ExitRx) {
    let mut buf = vec![0u8; EVENT_MAX];
    let mut code = None::<i32>;
    let mut open = true;
    let far = tokio::time::Instant::now() + Duration::from_secs(100 * 365 * 86_400);
    let mut grace = far;
    let Some(master) = t.pty.as_ref() else { return };
    while code.is_none() || open {
        tokio::select! {
            r = master.read(&mut buf), if open => match r {
                Ok(n) if n > 0 => t.push(false, &buf[..n]),
                _ => open = false,
            },
            c = &mut exit, if code.is_none() => {
                let c = c.unwrap_or(-1);
                code = Some(c);
                t.exited(c);
                grace = tokio::time::Instant::now() + DRAIN_GRACE;
            }
            _ = tokio::time::sleep_until(grace), if code.is_some() => break,
        }
    }
    t.finish();
    tracing::info!(pid = t.pid, tag = %t.tag, code, "pty session ended");
}
