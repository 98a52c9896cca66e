//! Starting a command with piped output and stdin from `/dev/null` or a pipe. A command that runs as
//! envd's own user starts with `posix_spawn`, which does not copy envd's address space (the
//! C library uses `vfork`-like cloning); one that switches users needs code between fork and
//! exec, so it goes through [`crate::spawn::command`]. Under emulation a fork of envd costs
//! more than a millisecond of a command's start.

use std::ffi::CString;
use std::os::fd::{FromRawFd, OwnedFd};
use std::os::unix::ffi::OsStrExt;
use std::process::Stdio;

use crate::error::{ApiError, ApiResult};
use crate::reaper::{self, ExitRx};
use crate::spawn::{self, Prepared, Spec};

/// A started command.
pub struct Launched {
    /// Pid (and process group id: it leads its own session).
    pub pid: u32,
    /// Read end of its stdout.
    pub stdout: OwnedFd,
    /// Read end of its stderr.
    pub stderr: OwnedFd,
    /// Write end of its stdin, when it was started with a stdin pipe.
    pub stdin: Option<OwnedFd>,
    /// Its exit code, once reaped.
    pub exit: ExitRx,
}

/// Starts `spec` in its own session, stdout and stderr piped, stdin a pipe when `stdin` is
/// true and `/dev/null` otherwise.
pub fn piped(spec: &Spec, stdin: bool) -> ApiResult<Launched> {
    let prepared = spawn::prepare(spec)?;
    if prepared.switch_user {
        return forked(prepared, stdin);
    }
    let program = resolve(&prepared).map_err(|e| spawn::spawn_error(&spec.cmd, e))?;
    let (launched, exit) = reaper::register(|| {
        let l = match posix_spawn(&program, &prepared, false, stdin) {
            // Not a binary and no `#!`: run it with the shell, as execvp does.
            Err(e) if e.raw_os_error() == Some(libc::ENOEXEC) => {
                posix_spawn(&program, &prepared, true, stdin)?
            }
            other => other?,
        };
        let pid = l.pid;
        Ok((l, pid))
    })
    .map_err(|e| spawn::spawn_error(&spec.cmd, e))?;
    Ok(Launched {
        pid: launched.pid,
        stdout: launched.stdout,
        stderr: launched.stderr,
        stdin: launched.stdin,
        exit,
    })
}

/// The fork path: a std `Command` with the pre-exec steps of [`spawn::command`].
fn forked(prepared: Prepared, stdin: bool) -> ApiResult<Launched> {
    let name = prepared.cmd.clone();
    let mut cmd = spawn::command_of(prepared, false);
    cmd.stdin(if stdin { Stdio::piped() } else { Stdio::null() })
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    let (mut child, exit) = reaper::spawn(&mut cmd).map_err(|e| spawn::spawn_error(&name, e))?;
    let pid = child.id();
    let input = child.stdin.take().map(OwnedFd::from);
    if stdin && input.is_none() {
        spawn::kill_group(pid, libc::SIGKILL);
        return Err(ApiError::internal(format!("start {name}: no stdin pipe")));
    }
    match child.stdout.take().zip(child.stderr.take()) {
        Some((out, err)) => Ok(Launched {
            pid,
            stdout: out.into(),
            stderr: err.into(),
            stdin: input,
            exit,
        }),
        None => {
            spawn::kill_group(pid, libc::SIGKILL);
            Err(ApiError::internal(format!("start {name}: no output pipes")))
        }
    }
}

/// What [`posix_spawn`] started: the pid and envd's ends of the pipes.
struct Spawned {
    pid: u32,
    stdout: OwnedFd,
    stderr: OwnedFd,
    stdin: Option<OwnedFd>,
}

/// The program's path: as given when it has a slash, else the first executable file of that
/// name in the environment's `PATH`, as `execvp` finds it in the new environment (an empty
/// or relative entry is taken from the command's working directory). A file that is there
/// but not executable is "permission denied" when nothing else is found.
fn resolve(p: &Prepared) -> std::io::Result<std::path::PathBuf> {
    if p.cmd.contains('/') {
        return Ok(p.cmd.clone().into());
    }
    let path = p
        .env
        .get("PATH")
        .map_or(spawn::DEFAULT_PATH, String::as_str);
    let mut denied = false;
    for dir in path.split(':') {
        let candidate = std::path::Path::new(&p.cwd).join(dir).join(&p.cmd);
        if !candidate.is_file() {
            continue;
        }
        if nix::unistd::access(candidate.as_path(), nix::unistd::AccessFlags::X_OK).is_ok() {
            return Ok(candidate);
        }
        denied = true;
    }
    Err(std::io::Error::from_raw_os_error(if denied {
        libc::EACCES
    } else {
        libc::ENOENT
    }))
}

fn cstring(bytes: &[u8]) -> std::io::Result<CString> {
    CString::new(bytes).map_err(|_| std::io::ErrorKind::InvalidInput.into())
}

/// Makes a pipe whose ends close on exec.
fn pipe() -> std::io::Result<(OwnedFd, OwnedFd)> {
    let mut fds = [0i32; 2];
    // SAFETY: `fds` has room for the two descriptors pipe2 writes.
    if unsafe { libc::pipe2(fds.as_mut_ptr(), libc::O_CLOEXEC) } < 0 {
        return Err(std::io::Error::last_os_error());
    }
    // SAFETY: pipe2 succeeded, so both descriptors are open and owned by nobody else.
    Ok(unsafe { (OwnedFd::from_raw_fd(fds[0]), OwnedFd::from_raw_fd(fds[1])) })
}

/// Checks a posix_spawn* return value (an errno, not -1).
fn check(rc: i32) -> std::io::Result<()> {
    match rc {
        0 => Ok(()),
        e => Err(std::io::Error::from_raw_os_error(e)),
    }
}

/// The spawn attributes and file actions, each destroyed on drop if it was initialised.
struct SpawnSetup {
    attr: libc::posix_spawnattr_t,
    actions: libc::posix_spawn_file_actions_t,
    attr_ready: bool,
    actions_ready: bool,
}

impl Drop for SpawnSetup {
    fn drop(&mut self) {
        // SAFETY: each object is destroyed once, and only after its init succeeded.
        unsafe {
            if self.attr_ready {
                libc::posix_spawnattr_destroy(&mut self.attr);
            }
            if self.actions_ready {
                libc::posix_spawn_file_actions_destroy(&mut self.actions);
            }
        }
    }
}

/// Starts `program` as `p` says: its own session, signal mask empty, SIGPIPE back to its
/// default (envd ignores it), stdin `/dev/null` (a new pipe when `stdin`), stdout and stderr
/// into new pipes, in `p.cwd`. `by_shell` runs it as `/bin/sh program args…` (a script
/// without `#!`).
fn posix_spawn(
    program: &std::path::Path,
    p: &Prepared,
    by_shell: bool,
    stdin: bool,
) -> std::io::Result<Spawned> {
    let program_c = cstring(program.as_os_str().as_bytes())?;
    let (path, mut argv) = if by_shell {
        let sh = cstring(b"/bin/sh")?;
        (sh.clone(), vec![sh, program_c])
    } else {
        (program_c, vec![cstring(p.cmd.as_bytes())?])
    };
    for a in &p.args {
        argv.push(cstring(a.as_bytes())?);
    }
    let envp = p
        .env
        .iter()
        .map(|(k, v)| cstring(format!("{k}={v}").as_bytes()))
        .collect::<std::io::Result<Vec<_>>>()?;
    let mut argv_ptrs: Vec<*mut libc::c_char> = argv.iter().map(|s| s.as_ptr() as *mut _).collect();
    argv_ptrs.push(std::ptr::null_mut());
    let mut envp_ptrs: Vec<*mut libc::c_char> = envp.iter().map(|s| s.as_ptr() as *mut _).collect();
    envp_ptrs.push(std::ptr::null_mut());
    let cwd = cstring(p.cwd.as_bytes())?;
    let devnull = cstring(b"/dev/null")?;
    let (out_rd, out_wr) = pipe()?;
    let (err_rd, err_wr) = pipe()?;
    let input = if stdin { Some(pipe()?) } else { None };
    use std::os::fd::AsRawFd;
    // SAFETY: every pointer handed to the posix_spawn family points into a CString, a vector
    // or a descriptor that outlives the call; the attribute and action objects are
    // initialised before use and destroyed by `SpawnSetup`'s drop.
    unsafe {
        let mut setup = SpawnSetup {
            attr: std::mem::zeroed(),
            actions: std::mem::zeroed(),
            attr_ready: false,
            actions_ready: false,
        };
        check(libc::posix_spawnattr_init(&mut setup.attr))?;
        setup.attr_ready = true;
        check(libc::posix_spawn_file_actions_init(&mut setup.actions))?;
        setup.actions_ready = true;
        let mut none: libc::sigset_t = std::mem::zeroed();
        libc::sigemptyset(&mut none);
        let mut pipe_sig: libc::sigset_t = std::mem::zeroed();
        libc::sigemptyset(&mut pipe_sig);
        libc::sigaddset(&mut pipe_sig, libc::SIGPIPE);
        check(libc::posix_spawnattr_setsigmask(&mut setup.attr, &none))?;
        check(libc::posix_spawnattr_setsigdefault(
            &mut setup.attr,
            &pipe_sig,
        ))?;
        check(libc::posix_spawnattr_setflags(
            &mut setup.attr,
            libc::POSIX_SPAWN_SETSID
                | (libc::POSIX_SPAWN_SETSIGMASK | libc::POSIX_SPAWN_SETSIGDEF) as libc::c_short,
        ))?;
        match &input {
            Some((in_rd, _)) => check(libc::posix_spawn_file_actions_adddup2(
                &mut setup.actions,
                in_rd.as_raw_fd(),
                0,
            ))?,
            None => check(libc::posix_spawn_file_actions_addopen(
                &mut setup.actions,
                0,
                devnull.as_ptr(),
                libc::O_RDONLY,
                0,
            ))?,
        }
        check(libc::posix_spawn_file_actions_adddup2(
            &mut setup.actions,
            out_wr.as_raw_fd(),
            1,
        ))?;
        check(libc::posix_spawn_file_actions_adddup2(
            &mut setup.actions,
            err_wr.as_raw_fd(),
            2,
        ))?;
        check(libc::posix_spawn_file_actions_addchdir_np(
            &mut setup.actions,
            cwd.as_ptr(),
        ))?;
        let mut pid: libc::pid_t = 0;
        check(libc::posix_spawn(
            &mut pid,
            path.as_ptr(),
            &setup.actions,
            &setup.attr,
            argv_ptrs.as_ptr(),
            envp_ptrs.as_ptr(),
        ))?;
        // The child's ends now belong to the child alone (dropped here).
        drop((out_wr, err_wr));
        Ok(Spawned {
            pid: pid as u32,
            stdout: out_rd,
            stderr: err_rd,
            stdin: input.map(|(in_rd, in_wr)| {
                drop(in_rd);
                in_wr
            }),
        })
    }
}
