//! The link layer under HTTP/2 on the agent channel.
//!
//! The virtio-serial byte stream outlives a pause/restore inside the guest, while the host
//! side is a new connection. Frames carry a session id so that each host connection starts a
//! clean session, stale bytes are dropped, and garbage is skipped. See docs/envd-protocol.md.

pub mod frame;
pub mod guest;
pub mod host;
pub mod session;
mod writer;

pub use frame::{Frame, FrameDecoder, FrameKind};

/// Buffer size of the in-process pipes between the link and HTTP/2, and of transport reads.
pub const IO_BUF: usize = 256 * 1024;

/// What can go wrong on the link.
#[derive(Debug, thiserror::Error)]
pub enum LinkError {
    /// Reading or writing the transport failed.
    #[error("agent channel i/o: {0}")]
    Io(#[from] std::io::Error),
    /// The other side closed the transport.
    #[error("agent channel closed")]
    Closed,
    /// The guest did not acknowledge the session in time.
    #[error("guest did not acknowledge the link session within {0:?}")]
    NoAck(std::time::Duration),
    /// A FILL asking for more than the guest sends.
    #[error("a fill of {0} bytes is more than the guest sends (at most {max})", max = frame::FILL_MAX)]
    FillTooLarge(u64),
    /// A payload that does not fit in one frame.
    #[error("payload of {0} bytes does not fit in one frame (at most {max})", max = frame::MAX_PAYLOAD - ECHO_NONCE)]
    TooLarge(usize),
}

/// Bytes of an echo frame's payload taken by its nonce.
pub const ECHO_NONCE: usize = 8;
