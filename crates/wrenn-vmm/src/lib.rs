//! The QEMU driver of Wrenn: boots `microvm` guests, pauses them to a snapshot (device state
//! only: guest RAM is a shared file), restores them, kills them and re-adopts them after an
//! agent restart.
//!
//! Files in a VM's directory: `qmp.sock` (monitor), `envd.sock` (virtio-serial port
//! `wrenn.envd`), `console.sock` + `console.log`/`console.log.1` (bounded serial console),
//! `qemu.pid`, `qemu.id` (pid + start time, for identity checks), `qemu.log` (QEMU's own
//! messages while starting). The QEMU command line is documented in [`cmdline`].

mod accel;
pub mod cmdline;
mod console;
mod error;
mod exit;
mod fsutil;
mod process;
pub mod qmp;
pub mod tsc;
mod vm;

pub use accel::{detect_accel, Accel, ACCEL_ENV, PROBE_TIMEOUT};
pub use console::MAX_LOG_BYTES as CONSOLE_LOG_MAX_BYTES;
pub use error::VmmError;
pub use exit::ExitWatch;
pub use vm::{agent_socket_path, process_alive, NicBackend, NicSpec, Vm, VmSpec};
