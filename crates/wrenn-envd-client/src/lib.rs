//! Host-side client of envd, the guest agent.
//!
//! One [`EnvdClient`] holds one HTTP/2 connection over the capsule's agent channel (the
//! virtio-serial port's Unix socket on the host). It is cheap to clone; every call is a
//! separate HTTP/2 stream, so calls run concurrently.
//!
//! NOTE: the bodies below are being written; the signatures are the contract other crates
//! code against.

use std::path::Path;
use std::time::Duration;

use bytes::Bytes;
use futures::stream::BoxStream;
use wrenn_protocol::{
    EntryInfo, EnvdErrorBody, ExecOutput, ExecRequest, Health, Metrics, ProcessEvent, ProcessInfo,
    ProcessSelector, PtyEvent, PtyStart, RestoreRequest, WriteOptions,
};

/// What can go wrong talking to envd.
#[derive(Debug, thiserror::Error)]
pub enum EnvdError {
    /// envd answered with an error (not found, bad argument…).
    #[error(transparent)]
    Guest(#[from] EnvdErrorBody),
    /// The channel could not be opened or broke.
    #[error("agent channel: {0}")]
    Channel(String),
    /// No answer in time.
    #[error("envd did not answer within {0:?}")]
    Timeout(Duration),
    /// envd answered something this client does not understand.
    #[error("bad answer from envd: {0}")]
    Protocol(String),
}

/// A stream of file bytes.
pub type ByteStream = BoxStream<'static, Result<Bytes, EnvdError>>;

/// A running process's output, as a stream of events ending with `Exit` (or `Error`).
pub struct ProcessStream {
    /// Guest pid of the process.
    pub pid: u32,
    /// Its events; the first `Started` has already been consumed into `pid`.
    pub events: BoxStream<'static, ProcessEvent>,
}

/// An attached PTY session.
pub struct PtySession {
    /// Tag to reattach by.
    pub tag: String,
    /// Guest pid of the session's process.
    pub pid: u32,
    /// Terminal output, then `Exit`.
    pub output: BoxStream<'static, PtyEvent>,
}

/// Client of one envd.
#[derive(Clone)]
pub struct EnvdClient {
    _private: (),
}

#[allow(unused_variables, clippy::unused_async)]
impl EnvdClient {
    /// Connects to envd through a Unix socket (the VMM's agent-port socket, or envd's
    /// `--listen-unix` socket in tests), retrying until `timeout`, and checks its health.
    pub async fn connect(socket: &Path, timeout: Duration) -> Result<Self, EnvdError> {
        unimplemented!()
    }
    /// Health and version.
    pub async fn health(&self) -> Result<Health, EnvdError> {
        unimplemented!()
    }
    /// Runs a command to completion and collects its output.
    pub async fn exec(&self, req: ExecRequest) -> Result<ExecOutput, EnvdError> {
        unimplemented!()
    }
    /// Runs a command and streams its output; dropping the stream kills the process group.
    pub async fn exec_stream(&self, req: ExecRequest) -> Result<ProcessStream, EnvdError> {
        unimplemented!()
    }
    /// Starts a background process (output buffered in the guest for later attach).
    pub async fn start_background(&self, req: ExecRequest) -> Result<ProcessInfo, EnvdError> {
        unimplemented!()
    }
    /// Background processes and PTY sessions still running.
    pub async fn list_processes(&self) -> Result<Vec<ProcessInfo>, EnvdError> {
        unimplemented!()
    }
    /// Sends a signal (e.g. `libc::SIGTERM`) to a tracked process's group.
    pub async fn signal(&self, target: ProcessSelector, signal: i32) -> Result<(), EnvdError> {
        unimplemented!()
    }
    /// Attaches to a background process: replays buffered output, then follows it.
    /// Dropping the stream does not kill the process.
    pub async fn attach(&self, target: ProcessSelector) -> Result<ProcessStream, EnvdError> {
        unimplemented!()
    }
    /// Starts a PTY session and attaches to it.
    pub async fn pty_start(&self, req: PtyStart) -> Result<PtySession, EnvdError> {
        unimplemented!()
    }
    /// Reattaches to a PTY session by tag (recent output is replayed).
    pub async fn pty_connect(&self, tag: &str) -> Result<PtySession, EnvdError> {
        unimplemented!()
    }
    /// Sends keystrokes to a PTY session.
    pub async fn pty_input(&self, tag: &str, data: Bytes) -> Result<(), EnvdError> {
        unimplemented!()
    }
    /// Resizes a PTY session's terminal.
    pub async fn pty_resize(&self, tag: &str, cols: u16, rows: u16) -> Result<(), EnvdError> {
        unimplemented!()
    }
    /// Kills a PTY session's process.
    pub async fn pty_kill(&self, tag: &str) -> Result<(), EnvdError> {
        unimplemented!()
    }
    /// Streams a file's bytes.
    pub async fn read_file(&self, path: &str) -> Result<ByteStream, EnvdError> {
        unimplemented!()
    }
    /// Writes a file from a stream of bytes (created or truncated; parents created).
    pub async fn write_file(
        &self,
        path: &str,
        opts: WriteOptions,
        body: BoxStream<'static, Result<Bytes, std::io::Error>>,
    ) -> Result<EntryInfo, EnvdError> {
        unimplemented!()
    }
    /// Stat of one path (symlinks not followed).
    pub async fn stat(&self, path: &str) -> Result<EntryInfo, EnvdError> {
        unimplemented!()
    }
    /// Entries under a directory, down to `depth` levels (1 = direct children).
    pub async fn list(&self, path: &str, depth: u32) -> Result<Vec<EntryInfo>, EnvdError> {
        unimplemented!()
    }
    /// Creates a directory and its parents; `AlreadyExists` when it exists.
    pub async fn mkdir(&self, path: &str) -> Result<EntryInfo, EnvdError> {
        unimplemented!()
    }
    /// Removes a file or a directory tree.
    pub async fn remove(&self, path: &str) -> Result<(), EnvdError> {
        unimplemented!()
    }
    /// CPU, memory and disk use.
    pub async fn metrics(&self) -> Result<Metrics, EnvdError> {
        unimplemented!()
    }
    /// After a restore: sets the clock and re-seeds the random pool.
    pub async fn restore(&self, req: RestoreRequest) -> Result<(), EnvdError> {
        unimplemented!()
    }
}
