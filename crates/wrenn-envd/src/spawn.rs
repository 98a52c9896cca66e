//! Turning a request (program, args, env, cwd, user) into a `Command` that starts in its own
//! session and process group, as the requested user.

use std::collections::BTreeMap;
use std::os::unix::process::CommandExt;
use std::process::Command;

use crate::error::{ApiError, ApiResult};
use crate::users::{self, User};

pub use wrenn_protocol::DEFAULT_PATH;

/// What to start.
#[derive(Debug, Clone, Default)]
pub struct Spec {
    /// Program.
    pub cmd: String,
    /// Arguments.
    pub args: Vec<String>,
    /// Extra environment.
    pub envs: BTreeMap<String, String>,
    /// Working directory (home when absent).
    pub cwd: Option<String>,
    /// User name or uid (root when absent).
    pub user: Option<String>,
}

/// A request resolved: who runs what, where, with which environment.
#[derive(Debug, Clone)]
pub struct Prepared {
    /// Program as requested (looked up in the environment's `PATH` when it has no slash).
    pub cmd: String,
    /// Arguments after the program name.
    pub args: Vec<String>,
    /// The whole environment, each name once.
    pub env: BTreeMap<String, String>,
    /// Working directory.
    pub cwd: String,
    /// The user it runs as.
    pub user: User,
    /// True when that user is not envd's own (uid and groups must be switched).
    pub switch_user: bool,
}

/// Resolves `spec`: the user, the working directory and the environment (defaults, then the
/// template's, then the request's; a later value wins).
pub fn prepare(spec: &Spec) -> ApiResult<Prepared> {
    if spec.cmd.is_empty() {
        return Err(ApiError::invalid("cmd is empty"));
    }
    let user = match &spec.user {
        Some(u) if !u.is_empty() => users::resolve(u)?,
        _ => users::root(),
    };
    let cwd = working_dir(spec.cwd.as_deref(), &user)?;
    let mut env = BTreeMap::new();
    for (k, v) in [
        ("PATH", DEFAULT_PATH),
        ("HOME", &user.home),
        ("USER", &user.name),
        ("LOGNAME", &user.name),
        ("SHELL", &user.shell),
        ("LANG", "C.UTF-8"),
    ] {
        env.insert(k.to_owned(), v.to_owned());
    }
    env.extend(template_env(std::path::Path::new(
        wrenn_protocol::TEMPLATE_ENV_PATH,
    )));
    env.extend(spec.envs.iter().map(|(k, v)| (k.clone(), v.clone())));
    Ok(Prepared {
        cmd: spec.cmd.clone(),
        args: spec.args.clone(),
        env,
        cwd,
        switch_user: user.uid != nix::unistd::geteuid().as_raw(),
        user,
    })
}

/// Builds the command (a fork, then exec). `ctty` makes fd 0 (a PTY slave) the controlling
/// terminal.
pub fn command(spec: &Spec, ctty: bool) -> ApiResult<Command> {
    Ok(command_of(prepare(spec)?, ctty))
}

/// [`command`] for a request already resolved.
pub fn command_of(p: Prepared, ctty: bool) -> Command {
    let mut cmd = Command::new(&p.cmd);
    cmd.args(&p.args)
        .current_dir(&p.cwd)
        .env_clear()
        .envs(&p.env);
    let switch = p.switch_user;
    let User {
        uid, gid, groups, ..
    } = p.user;
    // SAFETY: the closure runs between fork and exec and calls only async-signal-safe
    // functions (setsid, ioctl, setgroups, setgid, setuid) on data prepared before the fork.
    unsafe {
        cmd.pre_exec(move || {
            if libc::setsid() < 0 {
                return Err(std::io::Error::last_os_error());
            }
            if ctty && libc::ioctl(0, libc::TIOCSCTTY as _, 0) < 0 {
                return Err(std::io::Error::last_os_error());
            }
            if switch
                && (libc::setgroups(groups.len() as _, groups.as_ptr()) < 0
                    || libc::setgid(gid) < 0
                    || libc::setuid(uid) < 0)
            {
                return Err(std::io::Error::last_os_error());
            }
            Ok(())
        });
    }
    cmd
}

/// The template's environment ([`wrenn_protocol::TEMPLATE_ENV_PATH`]): `KEY=VALUE` lines; a
/// missing, unreadable or oversized file, blank lines and lines that are not a pair with a
/// valid name give nothing.
pub fn template_env(path: &std::path::Path) -> Vec<(String, String)> {
    let Ok(meta) = std::fs::metadata(path) else {
        return Vec::new();
    };
    if !meta.is_file() || meta.len() > wrenn_protocol::TEMPLATE_ENV_MAX_BYTES {
        return Vec::new();
    }
    let Ok(text) = std::fs::read_to_string(path) else {
        return Vec::new();
    };
    text.lines()
        .filter_map(|line| {
            let (key, value) = line.split_once('=')?;
            let mut chars = key.chars();
            let first = chars.next()?;
            let valid = (first.is_ascii_alphabetic() || first == '_')
                && chars.all(|c| c.is_ascii_alphanumeric() || c == '_');
            valid.then(|| (key.to_owned(), value.to_owned()))
        })
        .collect()
}

/// The working directory: the requested one (absolute, an existing directory) or the user's
/// home (or `/` when the home does not exist).
fn working_dir(cwd: Option<&str>, user: &User) -> ApiResult<String> {
    match cwd {
        Some(c) if !c.is_empty() => {
            if !c.starts_with('/') {
                return Err(ApiError::invalid(format!("cwd {c}: not an absolute path")));
            }
            match std::fs::metadata(c) {
                Ok(m) if m.is_dir() => Ok(c.to_owned()),
                Ok(_) => Err(ApiError::invalid(format!("cwd {c}: not a directory"))),
                Err(e) => Err(ApiError::invalid(format!("cwd {c}: {e}"))),
            }
        }
        _ if std::path::Path::new(&user.home).is_dir() => Ok(user.home.clone()),
        _ => Ok("/".into()),
    }
}

/// Maps a spawn failure to an API error naming the program.
pub fn spawn_error(cmd: &str, e: std::io::Error) -> ApiError {
    ApiError::io(format!("start {cmd}"), e)
}

/// Sends `sig` to the process group `pgid` (ignoring a group that is already gone).
pub fn kill_group(pgid: u32, sig: i32) {
    // SAFETY: plain syscall with integer arguments.
    let _ = unsafe { libc::kill(-(pgid as i32), sig) };
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn template_env_takes_valid_pairs_only() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("environment");
        assert!(template_env(&path).is_empty(), "missing file");
        std::fs::write(
            &path,
            "A=1\nPATH=/opt/bin:/usr/bin\n\nnot a pair\n1X=bad\nB=x=y\nC=\n",
        )
        .unwrap();
        assert_eq!(
            template_env(&path),
            [
                ("A".to_owned(), "1".to_owned()),
                ("PATH".to_owned(), "/opt/bin:/usr/bin".to_owned()),
                ("B".to_owned(), "x=y".to_owned()),
                ("C".to_owned(), String::new()),
            ]
        );
        let big = "A=".to_owned() + &"x".repeat(wrenn_protocol::TEMPLATE_ENV_MAX_BYTES as usize);
        std::fs::write(&path, big).unwrap();
        assert!(template_env(&path).is_empty(), "oversized file");
    }
}
