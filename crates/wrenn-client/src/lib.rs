//! Client of the Wrenn public API for people: [`ApiClient`] (typed REST calls with the
//! server's error code and message) and the `wrenn capsule …` / `wrenn snapshot …` commands
//! ([`run_capsule`], [`run_snapshot`]) with tables, `--json`, spinners and an interactive
//! `shell` over the PTY WebSocket.

pub mod api;
pub mod cli;
pub mod cp;
pub mod error;
pub mod events;
pub mod run;
pub mod shell;
pub mod spinner;
pub mod table;
pub mod templates;
pub mod terminal;
pub mod tls;
pub mod types;
pub mod urls;

pub use api::ApiClient;
pub use cli::{CapsuleCommand, ClientOpts, SnapshotCommand};
pub use error::ApiError;
pub use run::{run_capsule, run_events, run_snapshot, run_template};
pub use templates::TemplateCommand;
