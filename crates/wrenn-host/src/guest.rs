//! The guest channel: how a control plane reaches the guest agent (envd) of a running
//! capsule, without knowing how the host carries the bytes.
//!
//! A channel carries HTTP requests to envd and brings back its answers. In `wrenn server` it
//! is one HTTP/2 connection over the capsule's virtio-serial link; a remote host agent can
//! serve the same trait by forwarding each request over its own connection. The typed client
//! (`wrenn_envd_client::EnvdClient`) wraps a channel; nothing here knows envd's routes.

use bytes::Bytes;
use http_body_util::combinators::UnsyncBoxBody;

/// The body of a request to envd, and of its answer.
pub type GuestBody = UnsyncBoxBody<Bytes, std::io::Error>;

/// Why a request could not be carried to envd (not an error envd answered).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ChannelError {
    /// The channel is closed or broke (the VM ended, the link dropped).
    #[error("agent channel: {0}")]
    Closed(String),
    /// The request could not be sent as built.
    #[error("request to envd: {0}")]
    Request(String),
}

/// A transport of HTTP requests to one capsule's envd. Cheap to share (`Arc`); requests run
/// concurrently.
#[async_trait::async_trait]
pub trait GuestChannel: std::fmt::Debug + Send + Sync + 'static {
    /// Sends one request (its URI's path and query name the envd route) and returns the
    /// answer as envd gave it, whatever its status.
    async fn send(
        &self,
        request: http::Request<GuestBody>,
    ) -> Result<http::Response<GuestBody>, ChannelError>;

    /// Carries `payload` to the guest's end of the transport and back, through no envd route:
    /// the channel's own round-trip latency, the baseline of every call.
    async fn echo(&self, payload: Bytes) -> Result<Bytes, ChannelError>;

    /// True once the channel can carry no more requests.
    fn is_closed(&self) -> bool;
}

/// A shared guest channel, as [`crate::HostApi::guest`] hands it out.
pub type SharedChannel = std::sync::Arc<dyn GuestChannel>;
