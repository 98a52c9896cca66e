//! Host programs this crate runs: finding them, and running them with useful errors.

use std::collections::VecDeque;
use std::io::{BufRead, BufReader, Read};
use std::path::PathBuf;
use std::process::{Command, Stdio};

use crate::error::{ImageError, Result};
use crate::progress::Step;

/// A host program and the Debian package that provides it.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Tool {
    /// Program name.
    pub name: &'static str,
    /// Debian package providing it.
    pub package: &'static str,
}

pub(crate) const APT_GET: Tool = Tool {
    name: "apt-get",
    package: "apt",
};
pub(crate) const DPKG_DEB: Tool = Tool {
    name: "dpkg-deb",
    package: "dpkg",
};
pub(crate) const MMDEBSTRAP: Tool = Tool {
    name: "mmdebstrap",
    package: "mmdebstrap",
};
pub(crate) const MKE2FS: Tool = Tool {
    name: "mke2fs",
    package: "e2fsprogs",
};
pub(crate) const XZ: Tool = Tool {
    name: "xz",
    package: "xz-utils",
};
pub(crate) const ZSTD: Tool = Tool {
    name: "zstd",
    package: "zstd",
};
pub(crate) const CP: Tool = Tool {
    name: "cp",
    package: "coreutils",
};

/// Directories searched besides `$PATH` (a non-login root shell may lack the sbin ones).
const EXTRA_DIRS: &[&str] = &[
    "/usr/local/sbin",
    "/usr/local/bin",
    "/usr/sbin",
    "/usr/bin",
    "/sbin",
    "/bin",
];

impl Tool {
    /// Full path of the program, or [`ImageError::MissingTool`].
    pub fn find(&self) -> Result<PathBuf> {
        let path_var = std::env::var_os("PATH").unwrap_or_default();
        std::env::split_paths(&path_var)
            .chain(EXTRA_DIRS.iter().map(PathBuf::from))
            .map(|dir| dir.join(self.name))
            .find(|p| is_executable(p))
            .ok_or_else(|| ImageError::MissingTool {
                tool: self.name.to_string(),
                package: self.package.to_string(),
            })
    }

    /// A [`Command`] for the program, after checking it exists.
    pub fn command(&self) -> Result<Command> {
        let mut cmd = Command::new(self.find()?);
        cmd.env("LC_ALL", "C.UTF-8");
        Ok(cmd)
    }
}

fn is_executable(path: &std::path::Path) -> bool {
    use std::os::unix::fs::PermissionsExt;
    std::fs::metadata(path)
        .map(|m| m.is_file() && m.permissions().mode() & 0o111 != 0)
        .unwrap_or(false)
}

/// A command line as text, for messages.
pub(crate) fn describe(cmd: &Command) -> String {
    let mut s = cmd.get_program().to_string_lossy().into_owned();
    for a in cmd.get_args() {
        s.push(' ');
        s.push_str(&a.to_string_lossy());
    }
    s
}

/// What a finished command printed.
pub(crate) struct Output {
    /// Standard output.
    pub stdout: Vec<u8>,
}

/// Runs `cmd` to completion, capturing its output; non-zero exit is an error naming `what`.
pub(crate) fn run(cmd: &mut Command, what: &str) -> Result<Output> {
    let command = describe(cmd);
    tracing::debug!(%command, "running");
    let out = cmd
        .stdin(Stdio::null())
        .output()
        .map_err(|source| ImageError::Spawn {
            command: command.clone(),
            source,
        })?;
    let stderr = String::from_utf8_lossy(&out.stderr).into_owned();
    if !out.status.success() {
        return Err(ImageError::CommandFailed {
            what: what.to_string(),
            command,
            status: out.status.to_string(),
            output: last_lines(
                &format!("{}{}", String::from_utf8_lossy(&out.stdout), stderr),
                30,
            ),
        });
    }
    Ok(Output { stdout: out.stdout })
}

/// Runs `cmd`, showing each line it prints on stderr/stdout as the step's message.
pub(crate) fn run_with_progress(cmd: &mut Command, what: &str, step: &Step) -> Result<()> {
    let command = describe(cmd);
    tracing::debug!(%command, "running");
    let mut child = cmd
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .map_err(|source| ImageError::Spawn {
            command: command.clone(),
            source,
        })?;
    let stdout = child.stdout.take();
    let out_thread = std::thread::spawn(move || {
        let mut buf = String::new();
        if let Some(mut s) = stdout {
            let _ = s.read_to_string(&mut buf);
        }
        buf
    });
    let mut tail: VecDeque<String> = VecDeque::new();
    if let Some(stderr) = child.stderr.take() {
        for line in BufReader::new(stderr).lines() {
            let Ok(line) = line else { break };
            step.message(&line);
            if tail.len() == 40 {
                tail.pop_front();
            }
            tail.push_back(line);
        }
    }
    let status = child.wait().map_err(|source| ImageError::Spawn {
        command: command.clone(),
        source,
    })?;
    let stdout = out_thread.join().unwrap_or_default();
    if !status.success() {
        let mut output = last_lines(&stdout, 10);
        output.push_str(&tail.into_iter().collect::<Vec<_>>().join("\n"));
        return Err(ImageError::CommandFailed {
            what: what.to_string(),
            command,
            status: status.to_string(),
            output,
        });
    }
    Ok(())
}

fn last_lines(text: &str, n: usize) -> String {
    let lines: Vec<&str> = text.lines().collect();
    let start = lines.len().saturating_sub(n);
    let mut s = lines[start..].join("\n");
    if !s.is_empty() {
        s.push('\n');
    }
    s
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn missing_tool_names_the_package() {
        let t = Tool {
            name: "wrenn-no-such-tool",
            package: "wrenn-pkg",
        };
        let err = t.find().unwrap_err();
        assert!(
            matches!(err, ImageError::MissingTool { ref package, .. } if package == "wrenn-pkg")
        );
        assert!(err.to_string().contains("wrenn-pkg"));
    }

    #[test]
    fn failing_command_reports_its_output() {
        let mut cmd = Command::new("sh");
        cmd.args(["-c", "echo boom >&2; exit 3"]);
        let err = match run(&mut cmd, "exploding") {
            Err(e) => e,
            Ok(_) => panic!("command should fail"),
        };
        let msg = err.to_string();
        assert!(msg.contains("exploding failed"), "{msg}");
        assert!(msg.contains("boom"), "{msg}");
    }
}
