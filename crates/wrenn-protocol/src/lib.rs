//! Types shared by the host side and the guest agent (envd).
//!
//! This crate is the only thing both sides of the host↔guest channel share. The request and
//! response bodies of envd's HTTP API live in [`types`]; the framing that carries HTTP/2 over
//! one persistent virtio-serial byte stream lives in `link` (see docs/envd-protocol.md).

pub mod b64;
pub mod link;
pub mod net;
pub mod routes;
pub mod types;

pub use types::*;

/// Version of the envd HTTP API. Bumped on any incompatible change; the host refuses a guest
/// whose major protocol differs.
pub const PROTOCOL_VERSION: u32 = 1;

/// Name of the virtio-serial port that carries the envd channel.
pub const AGENT_PORT_NAME: &str = "wrenn.envd";

/// `PATH` of every process envd starts, unless the request or the template says otherwise.
pub const DEFAULT_PATH: &str = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin";

/// The template's environment inside the guest: `KEY=VALUE` lines a recipe build writes from
/// its `ENV` steps. envd reads it at every start of a process and sets it over its defaults;
/// the variables of the request go over it.
pub const TEMPLATE_ENV_PATH: &str = "/etc/wrenn/environment";

/// Largest template environment file envd reads (a longer one is ignored whole).
pub const TEMPLATE_ENV_MAX_BYTES: u64 = 64 * 1024;
