//! Host side of the link: open a session over a fresh connection to the agent channel and
//! expose its HTTP/2 byte stream as an in-memory duplex stream.

use std::collections::VecDeque;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use bytes::{Bytes, BytesMut};
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt, DuplexStream};
use tokio::sync::{mpsc, oneshot};

use super::frame::{Frame, FrameDecoder, FrameKind, MAX_PAYLOAD};

/// Errors of the host side of the link.
#[derive(Debug, thiserror::Error)]
pub enum LinkError {
    /// The guest did not acknowledge a session in time.
    #[error("the guest did not open a session within {0:?}")]
    Timeout(Duration),
    /// The connection ended.
    #[error("the agent channel closed")]
    Closed,
    /// I/O on the connection failed.
    #[error("agent channel: {0}")]
    Io(#[from] std::io::Error),
}

type EchoWaiters = Arc<Mutex<VecDeque<(Instant, oneshot::Sender<Duration>)>>>;

/// Sends raw echo frames over the link, outside the HTTP/2 session.
#[derive(Clone, Debug)]
pub struct Echoer {
    tx: mpsc::Sender<Bytes>,
    waiters: EchoWaiters,
    session: u64,
}

impl Echoer {
    /// Round trip of one echo frame through the guest's link layer.
    pub async fn echo(&self, payload: Bytes) -> Result<Duration, LinkError> {
        let (done, wait) = oneshot::channel();
        let frame = Frame {
            kind: FrameKind::Echo,
            session: self.session,
            payload,
        }
        .to_bytes();
        self.waiters
            .lock()
            .map_err(|_| LinkError::Closed)?
            .push_back((Instant::now(), done));
        self.tx.send(frame).await.map_err(|_| LinkError::Closed)?;
        wait.await.map_err(|_| LinkError::Closed)
    }
}

/// An open session: the HTTP/2 byte stream and an echo handle.
pub struct HostLink {
    /// The session's byte stream (run an HTTP/2 client over it).
    pub stream: DuplexStream,
    /// Raw echo over the same link.
    pub echo: Echoer,
}

/// Opens a session over `io` (a fresh connection to the agent channel): sends HELLO until the
/// guest acknowledges it (a restored guest may need a moment), then pumps DATA frames.
pub async fn connect<S>(io: S, timeout: Duration) -> Result<HostLink, LinkError>
where
    S: AsyncRead + AsyncWrite + Send + Unpin + 'static,
{
    let (mut rd, mut wr) = tokio::io::split(io);
    let session = rand::random::<u64>() | 1;
    let hello = Frame::control(FrameKind::Hello, session).to_bytes();
    let mut dec = FrameDecoder::new();
    let started = Instant::now();
    let deadline = tokio::time::Instant::now() + timeout;
    let mut buf = vec![0u8; 64 * 1024];
    'handshake: loop {
        wr.write_all(&hello).await?;
        let resend = (tokio::time::Instant::now() + Duration::from_millis(250)).min(deadline);
        loop {
            match tokio::time::timeout_at(resend, rd.read(&mut buf)).await {
                Err(_) if tokio::time::Instant::now() >= deadline => {
                    return Err(LinkError::Timeout(started.elapsed()))
                }
                Err(_) => continue 'handshake,
                Ok(Ok(0)) => return Err(LinkError::Closed),
                Ok(Ok(n)) => {
                    dec.push(&buf[..n]);
                    while let Some(f) = dec.next_frame() {
                        if f.kind == FrameKind::Ack && f.session == session {
                            break 'handshake;
                        }
                    }
                }
                Ok(Err(e)) => return Err(e.into()),
            }
        }
    }
    let (mine, theirs) = tokio::io::duplex(4 << 20);
    let (mut theirs_rd, mut theirs_wr) = tokio::io::split(theirs);
    let (out_tx, mut out_rx) = mpsc::channel::<Bytes>(64);
    let waiters: EchoWaiters = Arc::default();

    // Connection → session: DATA payloads into the duplex, echo replies to their waiters.
    let reply_waiters = waiters.clone();
    tokio::spawn(async move {
        let mut buf = vec![0u8; 256 * 1024];
        loop {
            while let Some(f) = dec.next_frame() {
                match f.kind {
                    FrameKind::Data if f.session == session => {
                        if theirs_wr.write_all(&f.payload).await.is_err() {
                            return;
                        }
                    }
                    FrameKind::EchoReply => {
                        let w = reply_waiters.lock().ok().and_then(|mut q| q.pop_front());
                        if let Some((sent, done)) = w {
                            let _ = done.send(sent.elapsed());
                        }
                    }
                    _ => {}
                }
            }
            match rd.read(&mut buf).await {
                Ok(0) | Err(_) => {
                    let _ = theirs_wr.shutdown().await;
                    return;
                }
                Ok(n) => dec.push(&buf[..n]),
            }
        }
    });

    // Session → connection: the HTTP/2 client's bytes as DATA frames.
    let data_tx = out_tx.clone();
    tokio::spawn(async move {
        let mut buf = vec![0u8; MAX_PAYLOAD];
        loop {
            match theirs_rd.read(&mut buf).await {
                Ok(0) | Err(_) => return,
                Ok(n) => {
                    let f = Frame {
                        kind: FrameKind::Data,
                        session,
                        payload: Bytes::copy_from_slice(&buf[..n]),
                    };
                    if data_tx.send(f.to_bytes()).await.is_err() {
                        return;
                    }
                }
            }
        }
    });
    tokio::spawn(async move {
        let mut batch = BytesMut::new();
        while let Some(first) = out_rx.recv().await {
            batch.extend_from_slice(&first);
            while batch.len() < 1 << 20 {
                match out_rx.try_recv() {
                    Ok(more) => batch.extend_from_slice(&more),
                    Err(_) => break,
                }
            }
            if wr.write_all(&batch).await.is_err() {
                return;
            }
            batch.clear();
        }
        let _ = wr.shutdown().await;
    });
    Ok(HostLink {
        stream: mine,
        echo: Echoer {
            tx: out_tx,
            waiters,
            session,
        },
    })
}
