//! Runs `ip` and `nft` with their batch input on stdin, optionally inside a network
//! namespace (entered with setns(2) between fork and exec).

use std::io::Write;
use std::os::fd::{AsRawFd, OwnedFd};
use std::path::Path;
use std::process::{Command, Stdio};

use crate::error::{NetError, Result};

/// Opens a namespace file (`/run/netns/<name>`) to enter it.
pub fn open_netns(path: &Path) -> Result<OwnedFd> {
    let f = std::fs::File::open(path).map_err(NetError::io("opening namespace", path))?;
    Ok(f.into())
}

/// Runs `program args…` with `input` on stdin, inside the namespace `netns` if given.
pub fn run(program: &str, args: &[&str], input: &str, netns: Option<&Path>) -> Result<String> {
    let mut cmd = Command::new(program);
    cmd.args(args)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    let _ns_fd = match netns {
        Some(path) => {
            let fd = open_netns(path)?;
            let raw = fd.as_raw_fd();
            // SAFETY: setns(2) is async-signal-safe; `raw` stays open until after spawn.
            unsafe {
                use std::os::unix::process::CommandExt;
                cmd.pre_exec(move || {
                    if libc::setns(raw, libc::CLONE_NEWNET) != 0 {
                        return Err(std::io::Error::last_os_error());
                    }
                    Ok(())
                });
            }
            Some(fd)
        }
        None => None,
    };
    let label = format!("{program} {}", args.join(" "));
    let mut child = cmd.spawn().map_err(|source| NetError::Spawn {
        tool: label.clone(),
        source,
    })?;
    if let Some(mut stdin) = child.stdin.take() {
        stdin
            .write_all(input.as_bytes())
            .map_err(|source| NetError::Spawn {
                tool: label.clone(),
                source,
            })?;
    }
    let out = child.wait_with_output().map_err(|source| NetError::Spawn {
        tool: label.clone(),
        source,
    })?;
    if !out.status.success() {
        let stderr = String::from_utf8_lossy(&out.stderr).trim().to_owned();
        return Err(NetError::Tool {
            tool: label,
            status: out.status.to_string(),
            stderr: if stderr.is_empty() {
                format!("input was:\n{input}")
            } else {
                stderr
            },
        });
    }
    Ok(String::from_utf8_lossy(&out.stdout).into_owned())
}

/// `ip -batch -` (in `netns` if given).
pub fn ip_batch(lines: &str, netns: Option<&Path>) -> Result<()> {
    run("ip", &["-batch", "-"], lines, netns).map(|_| ())
}

/// `nft -f -`: one atomic transaction (in `netns` if given).
pub fn nft(script: &str, netns: Option<&Path>) -> Result<()> {
    run("nft", &["-f", "-"], script, netns).map(|_| ())
}

/// Runs `f` on a short-lived thread that has entered the network namespace at `netns`:
/// sockets it makes belong to that namespace and stay there after it returns.
pub fn in_netns<T: Send + 'static>(
    netns: &Path,
    f: impl FnOnce() -> std::io::Result<T> + Send + 'static,
) -> Result<T> {
    let ns = open_netns(netns)?;
    let path = netns.to_owned();
    let p = path.clone();
    std::thread::spawn(move || {
        // SAFETY: setns(2) on this thread only; the fd is valid for the call.
        if unsafe { libc::setns(ns.as_raw_fd(), libc::CLONE_NEWNET) } != 0 {
            return Err(NetError::io("entering namespace", &p)(
                std::io::Error::last_os_error(),
            ));
        }
        f().map_err(NetError::io("working inside namespace", &p))
    })
    .join()
    .map_err(|_| NetError::Io {
        op: "working inside namespace",
        path,
        source: std::io::Error::other("the thread panicked"),
    })?
}
