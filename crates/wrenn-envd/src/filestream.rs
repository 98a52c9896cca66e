//! File bytes moved by one blocking thread per transfer, in large chunks handed over whole.
//! An async file would copy every chunk once more through its own buffer and hop to the
//! blocking pool for each one; under emulation every copy in the guest costs.

use std::io::{Read, Write};

use bytes::{Bytes, BytesMut};
use futures::Stream;
use tokio::sync::mpsc;
use tokio::task::JoinHandle;

/// Bytes read from a file per chunk.
pub const READ_CHUNK: usize = 256 * 1024;
/// Chunks in flight between the thread and its async side.
const QUEUE: usize = 8;

/// The bytes of `file` up to the end of file the reads find, in chunks of at most
/// [`READ_CHUNK`]; a read error ends the stream with that error.
pub fn reader(mut file: std::fs::File) -> impl Stream<Item = std::io::Result<Bytes>> {
    let (tx, rx) = mpsc::channel(QUEUE);
    tokio::task::spawn_blocking(move || loop {
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
    });
    tokio_stream::wrappers::ReceiverStream::new(rx)
}

/// Writes chunks to a file from a blocking thread, in the order they are given.
pub struct Writer {
    tx: Option<mpsc::Sender<Bytes>>,
    thread: JoinHandle<std::io::Result<std::fs::File>>,
}

impl Writer {
    /// Starts the thread that writes to `file`.
    pub fn new(mut file: std::fs::File) -> Writer {
        let (tx, mut rx) = mpsc::channel::<Bytes>(QUEUE);
        let thread = tokio::task::spawn_blocking(move || {
            while let Some(chunk) = rx.blocking_recv() {
                file.write_all(&chunk)?;
            }
            Ok(file)
        });
        Writer {
            tx: Some(tx),
            thread,
        }
    }

    /// Queues `chunk`; fails with the thread's error once a write failed.
    pub async fn write(&mut self, chunk: Bytes) -> std::io::Result<()> {
        let sent = match &self.tx {
            Some(tx) => tx.send(chunk).await.is_ok(),
            None => false,
        };
        if sent {
            return Ok(());
        }
        // The thread ended early: only a failed write ends it.
        self.tx = None;
        match (&mut self.thread).await {
            Ok(Err(e)) => Err(e),
            Ok(Ok(_)) => Err(std::io::Error::other("file writer ended early")),
            Err(e) => Err(std::io::Error::other(format!("file writer: {e}"))),
        }
    }

    /// Waits until every chunk is written and gives the file back.
    pub async fn finish(mut self) -> std::io::Result<std::fs::File> {
        self.tx = None;
        self.thread
            .await
            .map_err(|e| std::io::Error::other(format!("file writer: {e}")))?
    }
}
