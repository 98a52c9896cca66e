//! Request and response bodies of envd's API, as JSON.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

/// `GET /health`: what the guest agent is.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Health {
    /// envd's crate version.
    pub version: String,
    /// [`crate::PROTOCOL_VERSION`] of the running envd.
    pub protocol: u32,
}

/// A command to run in the guest.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default)]
pub struct ExecRequest {
    /// Program to run (looked up in `PATH` when it has no slash).
    pub cmd: String,
    /// Arguments after the program name.
    pub args: Vec<String>,
    /// Extra environment variables (on top of a default `PATH`, `HOME`, `USER`, `LANG`).
    pub envs: BTreeMap<String, String>,
    /// Working directory; the user's home when absent.
    pub cwd: Option<String>,
    /// User name or numeric uid to run as; root when absent.
    pub user: Option<String>,
    /// Kill the whole process group after this many milliseconds.
    pub timeout_ms: Option<u64>,
    /// Tag of a background process (generated when absent).
    pub tag: Option<String>,
    /// Give a background process a stdin pipe (written with [`crate::routes::PROCESS_STDIN`],
    /// closed with [`crate::routes::PROCESS_STDIN_CLOSE`]); otherwise, and for foreground
    /// commands always, stdin is `/dev/null`. Left out when false, so older envds accept it.
    #[serde(skip_serializing_if = "is_false")]
    pub stdin: bool,
}

/// Result of a foreground command, output collected.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct ExecOutput {
    /// Everything the command wrote to stdout (bytes, maybe not UTF-8).
    #[serde(with = "crate::b64")]
    pub stdout: Vec<u8>,
    /// Everything the command wrote to stderr.
    #[serde(with = "crate::b64")]
    pub stderr: Vec<u8>,
    /// Exit code; `128 + signal` when killed by a signal.
    pub exit_code: i32,
    /// Wall time from start to exit.
    pub duration_ms: u64,
    /// True when the timeout killed the process group.
    pub timed_out: bool,
    /// True when stdout went past [`EXEC_OUTPUT_LIMIT`]: `stdout` holds the first
    /// [`EXEC_OUTPUT_LIMIT`] bytes and the rest was read and discarded. Use the exec stream
    /// (`POST /exec/stream`) to get everything. Absent (false) from envds that predate it.
    #[serde(default, skip_serializing_if = "is_false")]
    pub stdout_truncated: bool,
    /// Like `stdout_truncated`, for stderr.
    #[serde(default, skip_serializing_if = "is_false")]
    pub stderr_truncated: bool,
}

fn is_false(b: &bool) -> bool {
    !*b
}

/// Largest output `POST /exec` keeps per stream (stdout and stderr each): 32 MiB. envd keeps
/// reading the process's output past it (the process never blocks on a full pipe), discards
/// the excess and sets [`ExecOutput::stdout_truncated`] / [`ExecOutput::stderr_truncated`].
/// It also bounds what a host holds for one collected exec answer.
pub const EXEC_OUTPUT_LIMIT: usize = 32 << 20;

/// Largest `data` of one output event (`ProcessEvent::Stdout`/`Stderr`, `PtyEvent::Output`)
/// envd sends in its NDJSON streams.
pub const EVENT_DATA_MAX: usize = 64 * 1024;

/// Longest NDJSON line a host accepts from envd (an event with [`EVENT_DATA_MAX`] bytes of
/// base64 data is about 88 KiB). A longer line ends the stream with an error instead of being
/// buffered without bound.
pub const NDJSON_LINE_MAX: usize = 1 << 20;

/// Longest process tag ([`check_tag`]).
pub const TAG_MAX_LEN: usize = 64;

/// Why a process tag is refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum TagError {
    /// The tag is empty.
    #[error("a tag must not be empty")]
    Empty,
    /// Longer than [`TAG_MAX_LEN`] bytes.
    #[error("a tag is at most {TAG_MAX_LEN} characters, this one has {0}")]
    TooLong(usize),
    /// A character outside `A-Z a-z 0-9 . _ -`.
    #[error("a tag may contain only letters, digits, '.', '_' and '-' (found {0:?})")]
    BadChar(char),
    /// Starts with something other than a letter or digit (`.`, `..`, `-x` are refused).
    #[error("a tag must start with a letter or a digit")]
    BadStart,
    /// All digits: that names a pid, not a tag.
    #[error("a tag cannot be all digits (that names a pid)")]
    AllDigits,
}

/// Checks a process tag (background process or PTY session): 1 to [`TAG_MAX_LEN`] characters
/// of `A-Z a-z 0-9 . _ -`, starting with a letter or digit, not all digits (an all-digit
/// selector names a pid). Tags travel in URL path segments and logs, so nothing else is
/// allowed; envd enforces this and the control plane can check early with the same function.
pub fn check_tag(tag: &str) -> Result<(), TagError> {
    if tag.is_empty() {
        return Err(TagError::Empty);
    }
    if let Some(c) = tag
        .chars()
        .find(|c| !(c.is_ascii_alphanumeric() || matches!(c, '.' | '_' | '-')))
    {
        return Err(TagError::BadChar(c));
    }
    if tag.len() > TAG_MAX_LEN {
        return Err(TagError::TooLong(tag.len()));
    }
    if !tag.as_bytes()[0].is_ascii_alphanumeric() {
        return Err(TagError::BadStart);
    }
    if tag.bytes().all(|b| b.is_ascii_digit()) {
        return Err(TagError::AllDigits);
    }
    Ok(())
}

/// One event of a running process's output stream.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "type", rename_all = "snake_case")]
pub enum ProcessEvent {
    /// The process started with this pid.
    Started {
        /// Guest pid.
        pid: u32,
    },
    /// Bytes written to stdout.
    Stdout {
        /// Raw bytes.
        #[serde(with = "crate::b64")]
        data: Vec<u8>,
    },
    /// Bytes written to stderr.
    Stderr {
        /// Raw bytes.
        #[serde(with = "crate::b64")]
        data: Vec<u8>,
    },
    /// The process ended.
    Exit {
        /// Exit code; `128 + signal` when killed by a signal.
        exit_code: i32,
    },
    /// The stream failed (the process may still run).
    Error {
        /// What went wrong.
        message: String,
    },
}

/// A process envd tracks (background commands and PTY sessions).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ProcessInfo {
    /// Guest pid.
    pub pid: u32,
    /// Tag given at start (or generated).
    pub tag: String,
    /// Program.
    pub cmd: String,
    /// Arguments.
    pub args: Vec<String>,
    /// True for a PTY session.
    pub pty: bool,
}

/// How a request names a process: by pid or by tag.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(untagged)]
pub enum ProcessSelector {
    /// By guest pid.
    Pid(u32),
    /// By tag.
    Tag(String),
}

impl ProcessSelector {
    /// Parses a path segment: all digits is a pid, anything else a tag.
    pub fn parse(s: &str) -> Self {
        match s.parse::<u32>() {
            Ok(pid) if !s.is_empty() && s.bytes().all(|b| b.is_ascii_digit()) => Self::Pid(pid),
            _ => Self::Tag(s.to_owned()),
        }
    }
}

/// `POST /files/move`: rename a file or directory.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct MoveRequest {
    /// Absolute path of the entry.
    pub source: String,
    /// Absolute path it gets; an existing file there is replaced, a non-empty directory is
    /// not.
    pub destination: String,
}

/// Watch a directory (`POST /files/watchers`, `GET /files/watch?path=&recursive=`).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct WatchRequest {
    /// Absolute path of the directory.
    pub path: String,
    /// Its subdirectories too (and those made later).
    #[serde(default)]
    pub recursive: bool,
}

/// A watcher envd keeps for later polls.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct WatcherInfo {
    /// Its id.
    pub id: String,
}

/// What happened to an entry of a watched directory.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum FsEventKind {
    /// Made (or moved in).
    Create,
    /// Written to.
    Write,
    /// Removed.
    Remove,
    /// Moved away (renamed).
    Rename,
    /// Its mode, owner or times changed.
    Chmod,
}

/// One event of a watched directory.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct FsEvent {
    /// Path of the entry relative to the watched directory.
    pub name: String,
    /// What happened.
    pub kind: FsEventKind,
}

/// Start a PTY session.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default)]
pub struct PtyStart {
    /// Program (default `/bin/bash`, else `/bin/sh`).
    pub cmd: Option<String>,
    /// Arguments.
    pub args: Vec<String>,
    /// Extra environment (TERM defaults to `xterm-256color`).
    pub envs: BTreeMap<String, String>,
    /// Working directory.
    pub cwd: Option<String>,
    /// User to run as.
    pub user: Option<String>,
    /// Terminal columns.
    pub cols: u16,
    /// Terminal rows.
    pub rows: u16,
    /// Tag to reattach by later (generated when absent).
    pub tag: Option<String>,
}

/// What a PTY session's output stream carries.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "type", rename_all = "snake_case")]
pub enum PtyEvent {
    /// Terminal output bytes.
    Output {
        /// Raw bytes.
        #[serde(with = "crate::b64")]
        data: Vec<u8>,
    },
    /// The session's process ended.
    Exit {
        /// Exit code.
        exit_code: i32,
    },
}

/// Kind of a file system entry.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum EntryKind {
    /// Regular file (and anything that is not a directory or symlink).
    File,
    /// Directory.
    Directory,
    /// Symbolic link.
    Symlink,
}

/// A file system entry, as the contract's `files/list` shows it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct EntryInfo {
    /// Last path component.
    pub name: String,
    /// Absolute path.
    pub path: String,
    /// File, directory or symlink.
    #[serde(rename = "type")]
    pub kind: EntryKind,
    /// Size in bytes.
    pub size: u64,
    /// Permission bits (`st_mode & 0o7777`).
    pub mode: u32,
    /// `ls -l` style string, e.g. `-rw-r--r--`.
    pub permissions: String,
    /// Owner name (or uid as text).
    pub owner: String,
    /// Group name (or gid as text).
    pub group: String,
    /// Modification time, unix seconds.
    pub modified_at: i64,
    /// Target of a symlink.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub symlink_target: Option<String>,
}

/// Options for writing a file.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default)]
pub struct WriteOptions {
    /// Permission bits for a new file (default 0o644).
    pub mode: Option<u32>,
    /// Owner (user name or uid) to chown to.
    pub owner: Option<String>,
    /// Modification time to set, unix seconds.
    pub modified_at: Option<i64>,
    /// Create missing parent directories (default true in envd).
    pub create_parents: Option<bool>,
}

/// Guest resource use.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct Metrics {
    /// CPU use over the last sampling interval, percent of all vCPUs (0..=100·vcpus).
    pub cpu_pct: f64,
    /// Memory in use (total - available).
    pub mem_bytes: u64,
    /// Total memory the guest sees.
    pub mem_total_bytes: u64,
    /// Bytes used on the root file system.
    pub disk_bytes: u64,
    /// Size of the root file system.
    pub disk_total_bytes: u64,
}

/// Sent by the host after every restore: set the clock, re-seed the random pool.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct RestoreRequest {
    /// Host wall clock, nanoseconds since the epoch.
    pub unix_time_ns: i64,
    /// Fresh random bytes from the host to mix into (and credit to) the guest's pool.
    #[serde(with = "crate::b64")]
    pub entropy: Vec<u8>,
    /// Name servers for `/etc/resolv.conf`; empty leaves it as it is (a guest without
    /// network). Older guests ignore the field.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub nameservers: Vec<String>,
}

/// Machine-readable kind of an envd error.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ErrorKind {
    /// No such file, process, tag or session.
    NotFound,
    /// The request is malformed or names something unusable (bad cwd, relative path…).
    InvalidArgument,
    /// The thing to create exists already.
    AlreadyExists,
    /// A file was expected, a directory found.
    IsADirectory,
    /// A directory was expected, something else found.
    NotADirectory,
    /// The guest refused access.
    PermissionDenied,
    /// Anything else.
    Internal,
}

/// The JSON body of every envd error response.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, thiserror::Error)]
#[error("{message}")]
pub struct EnvdErrorBody {
    /// Kind of error.
    pub kind: ErrorKind,
    /// Human text naming what failed.
    pub message: String,
}

/// `POST /processes/{pid or tag}/signal`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct SignalRequest {
    /// Signal number, e.g. 15 for SIGTERM.
    pub signal: i32,
}

/// `POST /pty/{tag}/resize`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct PtyResize {
    /// Terminal columns.
    pub cols: u16,
    /// Terminal rows.
    pub rows: u16,
}

/// Response header carrying a PTY session's tag (on `POST /pty` and `GET /pty/{tag}`).
pub const HEADER_TAG: &str = "x-wrenn-tag";
/// Response header carrying a PTY session's pid.
pub const HEADER_PID: &str = "x-wrenn-pid";

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tags() {
        for ok in [
            "worker",
            "proc-0a1b2c3d",
            "a",
            "A.b_c-9",
            "1x",
            &"t".repeat(64),
        ] {
            assert_eq!(check_tag(ok), Ok(()), "{ok:?}");
        }
        assert_eq!(check_tag(""), Err(TagError::Empty));
        assert_eq!(check_tag("a/b"), Err(TagError::BadChar('/')));
        assert_eq!(check_tag("a\0b"), Err(TagError::BadChar('\0')));
        assert_eq!(check_tag("a b"), Err(TagError::BadChar(' ')));
        assert_eq!(check_tag("é"), Err(TagError::BadChar('é')));
        assert_eq!(check_tag(&"t".repeat(65)), Err(TagError::TooLong(65)));
        assert_eq!(
            check_tag(&"x".repeat(10_000)),
            Err(TagError::TooLong(10_000))
        );
        assert_eq!(check_tag(".."), Err(TagError::BadStart));
        assert_eq!(check_tag("-rf"), Err(TagError::BadStart));
        assert_eq!(check_tag("123"), Err(TagError::AllDigits));
    }

    #[test]
    fn truncation_flags_are_optional_on_the_wire() {
        let old =
            r#"{"stdout":"aGk=","stderr":"","exit_code":0,"duration_ms":1,"timed_out":false}"#;
        let out: ExecOutput = serde_json::from_str(old).unwrap();
        assert!(!out.stdout_truncated && !out.stderr_truncated);
        assert_eq!(out.stdout, b"hi");
        let plain = serde_json::to_value(&out).unwrap();
        assert!(plain.get("stdout_truncated").is_none());
        let cut = ExecOutput {
            stderr_truncated: true,
            ..out
        };
        let v = serde_json::to_value(&cut).unwrap();
        assert_eq!(v["stderr_truncated"], true);
        assert!(v.get("stdout_truncated").is_none());
        assert_eq!(serde_json::from_value::<ExecOutput>(v).unwrap(), cut);
    }
}
