//! Where envd listens: the virtio-serial port inside a VM, or a Unix socket in tests.

use std::io::{Read, Write};
use std::path::{Path, PathBuf};
use std::time::Duration;

use bytes::Bytes;
use tokio::io::AsyncReadExt;
use tokio::sync::mpsc;
use wrenn_protocol::link::guest;

/// Finds the agent port's device node via sysfs (there is no udev in the guest).
pub fn find_port() -> Option<PathBuf> {
    let entries = std::fs::read_dir("/sys/class/virtio-ports").ok()?;
    for e in entries.flatten() {
        let name = std::fs::read_to_string(e.path().join("name")).unwrap_or_default();
        if name.trim() == wrenn_protocol::AGENT_PORT_NAME {
            return Some(Path::new("/dev").join(e.file_name()));
        }
    }
    None
}

/// Serves HTTP/2 sessions on `stream`s handed over by the link layer.
fn start_server(router: axum::Router) -> impl FnMut(u64, tokio::io::DuplexStream) -> tokio::task::AbortHandle {
    move |_session, stream| {
        let router = router.clone();
        tokio::spawn(async move {
            let service = hyper_util::service::TowerToHyperService::new(router);
            let mut builder = hyper::server::conn::http2::Builder::new(hyper_util::rt::TokioExecutor::new());
            builder
                .initial_stream_window_size(8 << 20)
                .initial_connection_window_size(16 << 20)
                .max_frame_size((1 << 20) - 1)
                .max_concurrent_streams(1024);
            if let Err(e) = builder.serve_connection(hyper_util::rt::TokioIo::new(stream), service).await {
                tracing::debug!(error = %e, "session ended");
            }
        })
        .abort_handle()
    }
}

/// Serves the link on the virtio-serial port, forever. Blocking reads and writes run on
/// their own threads: a read returns 0 while no host is connected (we poll), a write blocks
/// until one is.
pub async fn serve_port(port: &Path, router: axum::Router) -> std::io::Result<()> {
    let file = std::fs::OpenOptions::new().read(true).write(true).open(port)?;
    let mut reader = file.try_clone()?;
    let mut writer = file;
    let (in_tx, in_rx) = mpsc::channel::<Bytes>(64);
    let (out_tx, mut out_rx) = mpsc::channel::<Bytes>(64);
    std::thread::spawn(move || {
        let mut buf = vec![0u8; 256 * 1024];
        loop {
            match reader.read(&mut buf) {
                Ok(0) => std::thread::sleep(Duration::from_millis(10)),
                Ok(n) => {
                    if in_tx.blocking_send(Bytes::copy_from_slice(&buf[..n])).is_err() {
                        return;
                    }
                }
                Err(e) => {
                    tracing::debug!(error = %e, "port read");
                    std::thread::sleep(Duration::from_millis(50));
                }
            }
        }
    });
    std::thread::spawn(move || {
        while let Some(first) = out_rx.blocking_recv() {
            let mut batch = first.to_vec();
            while batch.len() < 1 << 20 {
                match out_rx.try_recv() {
                    Ok(more) => batch.extend_from_slice(&more),
                    Err(_) => break,
                }
            }
            if let Err(e) = writer.write_all(&batch) {
                tracing::debug!(error = %e, "port write");
            }
        }
    });
    // The link reads and writes a byte stream; bridge the threads' channels to one.
    let (transport, bridge) = tokio::io::duplex(1 << 20);
    let (mut bridge_rd, mut bridge_wr) = tokio::io::split(bridge);
    let mut in_rx = in_rx;
    tokio::spawn(async move {
        use tokio::io::AsyncWriteExt;
        while let Some(chunk) = in_rx.recv().await {
            if bridge_wr.write_all(&chunk).await.is_err() {
                return;
            }
        }
    });
    tokio::spawn(async move {
        let mut buf = vec![0u8; 256 * 1024];
        loop {
            match bridge_rd.read(&mut buf).await {
                Ok(0) | Err(_) => return,
                Ok(n) => {
                    if out_tx.send(Bytes::copy_from_slice(&buf[..n])).await.is_err() {
                        return;
                    }
                }
            }
        }
    });
    guest::serve(transport, start_server(router))
        .await
        .map_err(|e| std::io::Error::other(e.to_string()))
}

/// Serves the link on every connection to a Unix socket (test mode).
pub async fn serve_unix(path: &Path, router: axum::Router) -> std::io::Result<()> {
    let _ = std::fs::remove_file(path);
    let listener = tokio::net::UnixListener::bind(path)?;
    loop {
        let (conn, _) = listener.accept().await?;
        let router = router.clone();
        tokio::spawn(async move {
            if let Err(e) = guest::serve(conn, start_server(router)).await {
                tracing::debug!(error = %e, "link ended");
            }
        });
    }
}
