//! Foreground commands: run to completion (collected) or streamed as events. The process gets
//! its own process group; a timeout, or the client going away, kills the whole group.

use std::os::fd::OwnedFd;
use std::time::{Duration, Instant};

use tokio::io::AsyncReadExt;
use tokio::net::unix::pipe;
use tokio::sync::mpsc;
use wrenn_protocol::{ExecOutput, ProcessEvent};

use crate::error::{ApiError, ApiResult};
use crate::launch;
use crate::reaper::ExitRx;
use crate::spawn::{kill_group, Spec};

/// Largest output kept per stream by [`collect`]; beyond it output is read and dropped (the
/// process never blocks on a full pipe) and the answer says it was truncated.
pub const COLLECT_LIMIT: usize = wrenn_protocol::EXEC_OUTPUT_LIMIT;
/// How long to keep reading pipes after the process exited (a daemonized grandchild may hold
/// them open forever).
const DRAIN_GRACE: Duration = Duration::from_secs(2);
/// Read size of output pipes.
const CHUNK: usize = wrenn_protocol::EVENT_DATA_MAX;

/// A started process with piped output.
pub struct Running {
    /// Pid (and process group id).
    pub pid: u32,
    /// Read end of its stdout.
    pub stdout: pipe::Receiver,
    /// Read end of its stderr.
    pub stderr: pipe::Receiver,
    /// Write end of its stdin pipe, when it has one.
    pub stdin: Option<pipe::Sender>,
    /// Its exit code, once reaped.
    pub exit: ExitRx,
}

/// Starts `spec` with piped stdout/stderr, and stdin a pipe when `stdin` is true, else
/// `/dev/null`.
pub fn start(spec: &Spec, stdin: bool) -> ApiResult<Running> {
    let launch::Launched {
        pid,
        stdout,
        stderr,
        stdin,
        exit,
    } = launch::piped(spec, stdin)?;
    let rx = |fd: OwnedFd| {
        pipe::Receiver::from_owned_fd(fd).map_err(|e| ApiError::io("watch output pipe", e))
    };
    let tx = |fd: Option<OwnedFd>| {
        fd.map(pipe::Sender::from_owned_fd)
            .transpose()
            .map_err(|e| ApiError::io("watch stdin pipe", e))
    };
    let (stdout, stderr, stdin) = match (rx(stdout), rx(stderr), tx(stdin)) {
        (Ok(o), Ok(e), Ok(i)) => (o, e, i),
        (Err(e), _, _) | (_, Err(e), _) | (_, _, Err(e)) => {
            kill_group(pid, libc::SIGKILL);
            return Err(e);
        }
    };
    Ok(Running {
        pid,
        stdout,
        stderr,
        stdin,
        exit,
    })
}

/// Kills a process group when dropped, unless disarmed.
pub struct KillOnDrop {
    pgid: u32,
    armed: bool,
}

impl KillOnDrop {
    /// Arms for `pgid`.
    pub fn new(pgid: u32) -> Self {
        Self { pgid, armed: true }
    }

    /// The process ended: nothing to kill any more.
    pub fn disarm(&mut self) {
        self.armed = false;
    }
}

impl Drop for KillOnDrop {
    fn drop(&mut self) {
        if self.armed {
            tracing::debug!(pgid = self.pgid, "client went away: killing process group");
            kill_group(self.pgid, libc::SIGKILL);
        }
    }
}

/// How a foreground run ended.
#[derive(Debug, Clone, Copy)]
pub struct Ended {
    /// Exit code (`128 + signal` when signaled).
    pub exit_code: i32,
    /// True when the timeout killed the group.
    pub timed_out: bool,
}

/// Drives a running process: sends its output to `tx` and returns how it ended. Kills the
/// group at the timeout, or when `tx`'s receiver goes away (then returns `None`).
pub async fn drive(
    run: Running,
    timeout: Option<Duration>,
    tx: &mpsc::Sender<ProcessEvent>,
) -> Option<Ended> {
    let Running {
        pid,
        mut stdout,
        mut stderr,
        mut exit,
        ..
    } = run;
    let mut guard = KillOnDrop::new(pid);
    let far = tokio::time::Instant::now() + Duration::from_secs(100 * 365 * 86_400);
    let deadline = timeout.map_or(far, |t| tokio::time::Instant::now() + t);
    let mut grace = far;
    let (mut out_open, mut err_open) = (true, true);
    let mut code: Option<i32> = None;
    let mut timed_out = false;
    let (mut bo, mut be) = (vec![0u8; CHUNK], vec![0u8; CHUNK]);
    while code.is_none() || out_open || err_open {
        let ev = tokio::select! {
            r = stdout.read(&mut bo), if out_open => match r {
                Ok(n) if n > 0 => Some(ProcessEvent::Stdout { data: bo[..n].to_vec() }),
                _ => { out_open = false; None }
            },
            r = stderr.read(&mut be), if err_open => match r {
                Ok(n) if n > 0 => Some(ProcessEvent::Stderr { data: be[..n].to_vec() }),
                _ => { err_open = false; None }
            },
            c = &mut exit, if code.is_none() => {
                code = Some(c.unwrap_or(-1));
                guard.disarm();
                grace = tokio::time::Instant::now() + DRAIN_GRACE;
                None
            }
            _ = tokio::time::sleep_until(deadline), if code.is_none() && !timed_out => {
                tracing::info!(pid, "timeout: killing process group");
                kill_group(pid, libc::SIGKILL);
                timed_out = true;
                None
            }
            _ = tokio::time::sleep_until(grace), if code.is_some() => break,
            _ = tx.closed() => return None,
        };
        if let Some(ev) = ev {
            if tx.send(ev).await.is_err() {
                return None;
            }
        }
    }
    Some(Ended {
        exit_code: code.unwrap_or(-1),
        timed_out,
    })
}

/// Runs `spec` to completion and collects its output: at most [`COLLECT_LIMIT`] bytes per
/// stream, the rest drained and counted as truncated.
pub async fn collect(spec: &Spec, timeout: Option<Duration>) -> ApiResult<ExecOutput> {
    let started = Instant::now();
    let run = start(spec, false)?;
    let (tx, mut rx) = mpsc::channel(16);
    let gather = async {
        let (mut stdout, mut stderr) = (Capped::default(), Capped::default());
        while let Some(ev) = rx.recv().await {
            match ev {
                ProcessEvent::Stdout { data } => stdout.append(&data),
                ProcessEvent::Stderr { data } => stderr.append(&data),
                _ => {}
            }
        }
        (stdout, stderr)
    };
    let (ended, (stdout, stderr)) = tokio::join!(
        async move {
            let e = drive(run, timeout, &tx).await;
            drop(tx);
            e
        },
        gather
    );
    let ended = ended.ok_or_else(|| ApiError::internal("output collection ended early"))?;
    if stdout.truncated || stderr.truncated {
        tracing::info!(
            cmd = %spec.cmd,
            stdout_dropped = stdout.dropped,
            stderr_dropped = stderr.dropped,
            "exec output over {COLLECT_LIMIT} bytes per stream: truncated"
        );
    }
    Ok(ExecOutput {
        stdout: stdout.buf,
        stderr: stderr.buf,
        exit_code: ended.exit_code,
        duration_ms: started.elapsed().as_millis() as u64,
        timed_out: ended.timed_out,
        stdout_truncated: stdout.truncated,
        stderr_truncated: stderr.truncated,
    })
}

/// One stream's collected output: the first [`COLLECT_LIMIT`] bytes.
#[derive(Default)]
struct Capped {
    buf: Vec<u8>,
    truncated: bool,
    dropped: u64,
}

impl Capped {
    fn append(&mut self, data: &[u8]) {
        let room = COLLECT_LIMIT.saturating_sub(self.buf.len());
        let keep = data.len().min(room);
        self.buf.extend_from_slice(&data[..keep]);
        if keep < data.len() {
            self.truncated = true;
            self.dropped += (data.len() - keep) as u64;
        }
    }
}

/// Starts `spec` and returns its pid and its events (`Started`, output, `Exit`). Dropping the
/// receiver kills the process group.
pub fn stream(
    spec: &Spec,
    timeout: Option<Duration>,
) -> ApiResult<(u32, mpsc::Receiver<ProcessEvent>)> {
    let run = start(spec, false)?;
    let pid = run.pid;
    let (tx, rx) = mpsc::channel(16);
    tokio::spawn(async move {
        if tx.send(ProcessEvent::Started { pid }).await.is_err() {
            kill_group(pid, libc::SIGKILL);
            return;
        }
        if let Some(ended) = drive(run, timeout, &tx).await {
            let _ = tx
                .send(ProcessEvent::Exit {
                    exit_code: ended.exit_code,
                })
                .await;
        }
    });
    Ok((pid, rx))
}
