//! The virtio-serial port `wrenn.envd` as an async byte stream. Two threads do blocking I/O on
//! the port (a read returns 0 while the host side is disconnected, a write blocks until it
//! reconnects) and bridge it to an in-process pipe.

use std::io::{Read, Write};
use std::path::PathBuf;
use std::time::Duration;

use tokio::io::DuplexStream;
use tokio_util::io::SyncIoBridge;
use wrenn_protocol::link::IO_BUF;

/// What can go wrong opening the port.
#[derive(Debug, thiserror::Error)]
pub enum PortError {
    /// No virtio port of that name (yet).
    #[error("no virtio-serial port named {0} under /sys/class/virtio-ports")]
    Missing(String),
    /// Opening the device failed.
    #[error("open {0}: {1}")]
    Open(PathBuf, std::io::Error),
    /// Starting an I/O thread failed.
    #[error("start port thread: {0}")]
    Thread(std::io::Error),
}

/// Finds `/dev/vportNpM` whose name is `name`.
pub fn find(name: &str) -> Result<PathBuf, PortError> {
    let rd = std::fs::read_dir("/sys/class/virtio-ports")
        .map_err(|_| PortError::Missing(name.into()))?;
    for ent in rd.flatten() {
        let n = std::fs::read_to_string(ent.path().join("name")).unwrap_or_default();
        if n.trim() == name {
            return Ok(PathBuf::from("/dev").join(ent.file_name()));
        }
    }
    Err(PortError::Missing(name.into()))
}

/// Opens the port (waiting for it to appear) and returns the async end of the bridge.
pub async fn open(name: &str) -> Result<DuplexStream, PortError> {
    let mut waited = 0u32;
    let dev = loop {
        match find(name) {
            Ok(d) if d.exists() => break d,
            Ok(_) | Err(_) if waited < 600 => {
                waited += 1;
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
            Ok(d) => return Err(PortError::Open(d, std::io::ErrorKind::NotFound.into())),
            Err(e) => return Err(e),
        }
    };
    let file = std::fs::OpenOptions::new()
        .read(true)
        .write(true)
        .open(&dev)
        .map_err(|e| PortError::Open(dev.clone(), e))?;
    let reader = file
        .try_clone()
        .map_err(|e| PortError::Open(dev.clone(), e))?;
    let (ours, theirs) = tokio::io::duplex(IO_BUF);
    let (bridge_rd, bridge_wr) = tokio::io::split(theirs);
    let mut to_link = SyncIoBridge::new(bridge_wr);
    let mut from_link = SyncIoBridge::new(bridge_rd);
    std::thread::Builder::new()
        .name("port-read".into())
        .spawn(move || {
            let mut port = reader;
            let mut buf = vec![0u8; IO_BUF];
            loop {
                match port.read(&mut buf) {
                    // The host side is not connected: wait for it.
                    Ok(0) => std::thread::sleep(Duration::from_millis(10)),
                    Ok(n) => {
                        if to_link
                            .write_all(&buf[..n])
                            .and_then(|_| to_link.flush())
                            .is_err()
                        {
                            return;
                        }
                    }
                    Err(e) if e.kind() == std::io::ErrorKind::Interrupted => {}
                    Err(e) => {
                        tracing::warn!("read agent port: {e}");
                        std::thread::sleep(Duration::from_millis(100));
                    }
                }
            }
        })
        .map_err(PortError::Thread)?;
    std::thread::Builder::new()
        .name("port-write".into())
        .spawn(move || {
            let mut port = file;
            let mut buf = vec![0u8; IO_BUF];
            loop {
                let n = match from_link.read(&mut buf) {
                    Ok(0) | Err(_) => return,
                    Ok(n) => n,
                };
                if let Err(e) = port.write_all(&buf[..n]) {
                    tracing::warn!("write agent port: {e}");
                }
            }
        })
        .map_err(PortError::Thread)?;
    tracing::info!(port = %dev.display(), "agent port open");
    Ok(ours)
}
