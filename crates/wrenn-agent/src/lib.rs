//! The host agent: runs capsules on this host.
//!
//! [`CapsuleManager`] creates capsules by restoring template snapshots, pauses them to disk
//! and resumes them, publishes snapshot templates, destroys them, and re-adopts whatever it
//! finds on disk after a restart (even after `kill -9`). It implements
//! [`wrenn_host::HostApi`], the seam the control plane drives.

pub mod config;
mod create;
pub mod error;
pub mod faults;
pub mod fsutil;
mod guest;
mod hostapi;
pub mod layout;
pub mod manager;
pub mod manifest;
mod network;
mod pause;
mod recovery;
mod slots;
pub mod templates;
mod watch;

pub use config::AgentConfig;
pub use error::AgentError;
pub use manager::CapsuleManager;
