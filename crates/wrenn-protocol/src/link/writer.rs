//! The task that owns the transport's write half: encodes queued frames, coalescing them into
//! large writes, and drops DATA and DISCARD of sessions that are no longer current.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

use bytes::{Bytes, BytesMut};
use tokio::io::{AsyncWrite, AsyncWriteExt};
use tokio::sync::mpsc;

use super::frame::{Frame, FrameKind, MAX_PAYLOAD};

/// Something to put on the wire.
#[derive(Debug)]
pub(crate) enum Outgoing {
    /// An encoded frame.
    Frame(Frame),
    /// Raw bytes (resynchronisation padding).
    Raw(Bytes),
}

/// Queues `bytes` zero bytes in DISCARD frames of session `session` (the raw bulk of the
/// throughput measurement); false once the queue is closed.
pub(crate) async fn queue_discard(tx: &mpsc::Sender<Outgoing>, session: u64, bytes: usize) -> bool {
    let chunk = Bytes::from(vec![0u8; MAX_PAYLOAD]);
    let mut left = bytes;
    while left > 0 {
        let n = left.min(MAX_PAYLOAD);
        let frame = Frame {
            kind: FrameKind::Discard,
            session,
            payload: chunk.slice(..n),
        };
        if tx.send(Outgoing::Frame(frame)).await.is_err() {
            return false;
        }
        left -= n;
    }
    true
}

/// Largest write the loop assembles from queued frames.
const BATCH: usize = 512 * 1024;

/// Writes queued frames until the queue closes or the transport fails.
pub(crate) async fn write_loop<W: AsyncWrite + Unpin>(
    mut wr: W,
    mut rx: mpsc::Receiver<Outgoing>,
    current: Arc<AtomicU64>,
) {
    let mut buf = BytesMut::with_capacity(BATCH);
    while let Some(first) = rx.recv().await {
        push(&mut buf, first, &current);
        while buf.len() < BATCH {
            match rx.try_recv() {
                Ok(next) => push(&mut buf, next, &current),
                Err(_) => break,
            }
        }
        if buf.is_empty() {
            continue;
        }
        let res = async {
            wr.write_all(&buf).await?;
            wr.flush().await
        }
        .await;
        buf.clear();
        if let Err(e) = res {
            tracing::debug!("link write failed: {e}");
            return;
        }
    }
}

fn push(buf: &mut BytesMut, out: Outgoing, current: &AtomicU64) {
    match out {
        Outgoing::Frame(f) => {
            let bulk = matches!(f.kind, FrameKind::Data | FrameKind::Discard);
            if bulk && f.session != current.load(Ordering::SeqCst) {
                return;
            }
            f.encode(buf);
        }
        Outgoing::Raw(b) => buf.extend_from_slice(&b),
    }
}
