//! The link layer under HTTP/2 on the agent channel.
//!
//! The virtio-serial byte stream outlives a pause/restore inside the guest, while the host
//! side is a new connection. Frames carry a session id so that each host connection starts a
//! clean session, stale bytes are dropped, and garbage is skipped. See docs/envd-protocol.md.

pub mod frame;
pub mod guest;
pub mod host;

pub use frame::{Frame, FrameDecoder, FrameKind};
