//! The bounded guest console log.
//!
//! The serial console (ttyS0) is a QEMU socket chardev (`<dir>/console.sock`, server,
//! `wait=off`). A task of the process holding the [`super::QemuVm`] connects to it and appends
//! what it reads to `<dir>/console.log`. When the log reaches [`MAX_LOG_BYTES`] it is renamed
//! to `console.log.1` (replacing an older one) and a new log is started: at most 2 MiB per VM.
//! While nobody is connected (agent restarting) QEMU drops console output; the guest never
//! blocks on it. After an adopt the task reconnects and appends.

use std::path::{Path, PathBuf};

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::UnixStream;
use tokio::task::JoinHandle;

/// Size at which `console.log` is rotated.
pub const MAX_LOG_BYTES: u64 = 1024 * 1024;

/// Connects to the console socket and returns the draining task.
pub async fn start(socket: &Path, log: PathBuf) -> std::io::Result<JoinHandle<()>> {
    let stream = UnixStream::connect(socket).await?;
    Ok(tokio::spawn(async move {
        if let Err(e) = drain(stream, &log).await {
            tracing::warn!(log = %log.display(), error = %e, "console log drain stopped");
        }
    }))
}

async fn open_append(log: &Path) -> std::io::Result<(tokio::fs::File, u64)> {
    let f = tokio::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(log)
        .await?;
    let len = f.metadata().await?.len();
    Ok((f, len))
}

async fn drain(mut stream: UnixStream, log: &Path) -> std::io::Result<()> {
    let (mut file, mut len) = open_append(log).await?;
    let mut buf = vec![0u8; 16 * 1024];
    loop {
        let n = stream.read(&mut buf).await?;
        if n == 0 {
            return Ok(());
        }
        if len + n as u64 > MAX_LOG_BYTES && len > 0 {
            file.flush().await?;
            let mut old = log.as_os_str().to_owned();
            old.push(".1");
            tokio::fs::rename(log, &old).await?;
            (file, len) = open_append(log).await?;
        }
        file.write_all(&buf[..n]).await?;
        // tokio writes in the background: flush so readers of the log see it now.
        file.flush().await?;
        len += n as u64;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn rotates_at_the_limit_and_keeps_one_old_log() {
        let dir = tempfile::tempdir().unwrap();
        let sock = dir.path().join("c.sock");
        let log = dir.path().join("console.log");
        let listener = tokio::net::UnixListener::bind(&sock).unwrap();
        let task = start(&sock, log.clone()).await.unwrap();
        let (mut peer, _) = listener.accept().await.unwrap();
        let chunk = vec![b'x'; 100 * 1024];
        for _ in 0..25 {
            peer.write_all(&chunk).await.unwrap();
        }
        peer.write_all(b"END").await.unwrap();
        drop(peer);
        task.await.unwrap();
        let cur = std::fs::read(&log).unwrap();
        let old = std::fs::metadata(dir.path().join("console.log.1"))
            .unwrap()
            .len();
        assert!(cur.ends_with(b"END"));
        assert!(cur.len() as u64 <= MAX_LOG_BYTES);
        assert!(old <= MAX_LOG_BYTES && old > 0);
    }
}
