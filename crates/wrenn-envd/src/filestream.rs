//! File bytes moved by one blocking thread per transfer, in large chunks handed over whole.
//! An async file would copy every chunk once more through its own buffer and hop to the
//! blocking pool for each one; under emulation every copy in the guest costs.
//!
//! A transfer holds its thread for as long as it lasts, so at most [`MAX_TRANSFERS`] run at
//! once (the rest wait for a turn) and the blocking pool stays free for everything else.

use std::io::{Read, Write};
use std::sync::Arc;

use bytes::{Bytes, BytesMut};
use futures::Stream;
use tokio::sync::{mpsc, OwnedSemaphorePermit, Semaphore};
use tokio::task::JoinHandle;

/// Bytes read from a file per chunk.
pub const READ_CHUNK: usize = 256 * 1024;
/// Chunks in flight between a thread and its async side (what a download reads ahead).
const QUEUE: usize = 2;
/// Transfers that may hold a thread at once.
pub const MAX_TRANSFERS: usize = 64;

/// A turn to run a transfer.
async fn turn() -> OwnedSemaphorePermit {
    static TURNS: std::sync::OnceLock<Arc<Semaphore>> = std::sync::OnceLock::new();
    let turns = TURNS.get_or_init(|| Arc::new(Semaphore::new(MAX_TRANSFERS)));
    // The semaphore is never closed.
    match turns.clone().acquire_owned().await {
        Ok(p) => p,
        Err(_) => unreachable!("the transfer semaphore is never closed"),
    }
}

/// The bytes of `file` up to the end of file the reads find, in chunks of at most
/// [`READ_CHUNK`]; a read error ends the stream with that error.
pub async fn reader(mut file: std::fs::File) -> impl Stream<Item = std::io::Result<Bytes>> {
    let permit = turn().await;
    let (tx, rx) = mpsc::channel(QUEUE);
    tokio::task::spawn_blocking(move || {
        let _permit = permit;
        loop {
            let mut buf = BytesMut::zeroed(READ_CHUNK);
            let item = match file.read(&mut buf) {
                Ok(0) => return,
                Ok(n) => {
                    buf.truncate(n);
                    Ok(buf.freeze())
                }
                Err(e) if e.kind() == std::io::ErrorKind::Interrupted => continue,
                Err(e) => Err(e),
            };
            let failed = item.is_err();
            // The receiver went away (the client stopped reading): stop.
            if tx.blocking_send(item).is_err() || failed {
                return;
            }
        }
    });
    tokio_stream::wrappers::ReceiverStream::new(rx)
}

/// Writes chunks to a file from a blocking thread, in the order they are given. After an
/// error every call answers that error again.
pub struct Writer {
    tx: Option<mpsc::Sender<Bytes>>,
    thread: Option<JoinHandle<std::io::Result<std::fs::File>>>,
    failed: Option<(std::io::ErrorKind, String)>,
}

impl Writer {
    /// Waits for a turn, then starts the thread that writes to `file`.
    pub async fn new(mut file: std::fs::File) -> Writer {
        let permit = turn().await;
        let (tx, mut rx) = mpsc::channel::<Bytes>(QUEUE);
        let thread = tokio::task::spawn_blocking(move || {
            let _permit = permit;
            while let Some(chunk) = rx.blocking_recv() {
                file.write_all(&chunk)?;
            }
            Ok(file)
        });
        Writer {
            tx: Some(tx),
            thread: Some(thread),
            failed: None,
        }
    }

    /// Queues `chunk`; fails with the thread's error once a write failed.
    pub async fn write(&mut self, chunk: Bytes) -> std::io::Result<()> {
        if let Some(tx) = &self.tx {
            if tx.send(chunk).await.is_ok() {
                return Ok(());
            }
        }
        // The thread ended early: only a failed write ends it.
        Err(self
            .end()
            .await
            .err()
            .unwrap_or_else(|| std::io::Error::other("file writer ended early")))
    }

    /// Waits until every chunk is written and gives the file back.
    pub async fn finish(mut self) -> std::io::Result<std::fs::File> {
        self.end().await
    }

    /// Closes the queue and waits for the thread (once; later calls repeat its error).
    async fn end(&mut self) -> std::io::Result<std::fs::File> {
        self.tx = None;
        if let Some(thread) = self.thread.take() {
            let ended = thread
                .await
                .map_err(|e| std::io::Error::other(format!("file writer: {e}")))
                .and_then(|r| r);
            match ended {
                Ok(file) => return Ok(file),
                Err(e) => self.failed = Some((e.kind(), e.to_string())),
            }
        }
        let (kind, msg) = self
            .failed
            .clone()
            .unwrap_or((std::io::ErrorKind::Other, "file writer ended".into()));
        Err(std::io::Error::new(kind, msg))
    }
}
