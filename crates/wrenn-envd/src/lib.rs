//! envd, the guest agent of a Wrenn capsule.
//!
//! As the guest's PID 1 it prepares the system ([`init`]), reaps every process ([`reaper`])
//! and serves an HTTP/2 API ([`api`]) over the link layer on the virtio-serial port
//! ([`port`], [`serve`]). With `--listen-unix PATH` it serves the same stack on a Unix socket
//! on the host, for tests. See docs/envd-protocol.md.

pub mod api;
pub mod error;
pub mod exec;
pub mod files;
pub mod filestream;
pub mod init;
pub mod launch;
pub mod metrics;
pub mod net;
pub mod port;
pub mod procs;
pub mod pty;
pub mod reaper;
pub mod restore;
pub mod ring;
pub mod serve;
pub mod spawn;
pub mod tunnel;
pub mod users;
pub mod watch;
