//! Guest side of the link: answers HELLO with ACK, binds one HTTP/2 connection to the
//! current session, drops DATA of other sessions, echoes ECHO frames, drops DISCARD frames and
//! answers FILL with bulk bytes (the port's raw throughput for benchmarks).

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

use bytes::Bytes;
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite};
use tokio::sync::mpsc;
use tokio::task::AbortHandle;

use super::frame::{Frame, FrameDecoder, FrameKind, FILL_COUNT, FILL_MAX};
use super::session::{SessionIo, INBOUND_QUEUE};
use super::writer::{queue_discard, write_loop, Outgoing};
use super::{LinkError, IO_BUF};

/// The session the guest is serving.
struct Session {
    id: u64,
    inbound: mpsc::Sender<Bytes>,
    server: AbortHandle,
}

impl Session {
    fn end(self) {
        self.server.abort();
    }
}

/// Serves the link on `transport` until it ends (EOF) or fails.
///
/// For every new session, `on_session` gets the session id and the byte stream of its HTTP/2
/// connection ([`SessionIo`]); it starts a server on it and returns the handle that aborts that server when a
/// newer session replaces it (or the transport ends).
pub async fn serve<T, F>(transport: T, mut on_session: F) -> Result<(), LinkError>
where
    T: AsyncRead + AsyncWrite + Send + 'static,
    F: FnMut(u64, SessionIo) -> AbortHandle,
{
    let (mut rd, wr) = tokio::io::split(transport);
    let current = Arc::new(AtomicU64::new(0));
    let (tx, rx) = mpsc::channel::<Outgoing>(64);
    let writer = tokio::spawn(write_loop(wr, rx, current.clone()));
    let mut session: Option<Session> = None;
    let mut decoder = FrameDecoder::new();
    let mut buf = vec![0u8; IO_BUF];
    let result = loop {
        let n = match rd.read(&mut buf).await {
            Ok(0) => break Ok(()),
            Ok(n) => n,
            Err(e) => break Err(LinkError::Io(e)),
        };
        decoder.push(&buf[..n]);
        while let Some(frame) = decoder.next_frame() {
            match frame.kind {
                FrameKind::Hello => {
                    if session.as_ref().map(|s| s.id) != Some(frame.session) {
                        if let Some(old) = session.take() {
                            tracing::info!(
                                old = old.id,
                                new = frame.session,
                                "link: new session replaces the old one"
                            );
                            old.end();
                        }
                        current.store(frame.session, Ordering::SeqCst);
                        session = Some(open(frame.session, &tx, &mut on_session));
                    }
                    let _ = tx
                        .send(Outgoing::Frame(Frame::control(
                            FrameKind::Ack,
                            frame.session,
                        )))
                        .await;
                }
                FrameKind::Data => match session.as_mut() {
                    Some(s) if s.id == frame.session => {
                        if s.inbound.send(frame.payload).await.is_err() {
                            tracing::debug!("link: session {} input closed", s.id);
                        }
                    }
                    _ => tracing::trace!(session = frame.session, "link: dropped stale data"),
                },
                FrameKind::Echo => {
                    let reply = Frame {
                        kind: FrameKind::EchoReply,
                        session: frame.session,
                        payload: frame.payload,
                    };
                    let _ = tx.send(Outgoing::Frame(reply)).await;
                }
                // Bulk for the current session only: a stale request is not worth a second.
                FrameKind::Fill if session.as_ref().map(|s| s.id) == Some(frame.session) => {
                    fill(&frame, &tx).await
                }
                FrameKind::Fill => {}
                FrameKind::Ack | FrameKind::EchoReply | FrameKind::Discard => {}
            }
        }
    };
    if let Some(s) = session.take() {
        s.end();
    }
    drop(tx);
    // Let queued frames go out when the transport still works, but do not wait forever.
    let _ = tokio::time::timeout(std::time::Duration::from_secs(1), writer).await;
    result
}

/// Answers a FILL frame: the bytes it asks for (at most [`FILL_MAX`]) in DISCARD frames, then
/// an ECHO_REPLY with its nonce. A malformed request is dropped.
async fn fill(frame: &Frame, tx: &mpsc::Sender<Outgoing>) {
    let Some((nonce, count)) = frame.payload.get(..FILL_COUNT).and_then(|p| {
        Some((
            p.get(..8)?,
            u64::from_le_bytes(p.get(8..16)?.try_into().ok()?),
        ))
    }) else {
        return;
    };
    if !queue_discard(tx, frame.session, count.min(FILL_MAX) as usize).await {
        return;
    }
    let done = Frame {
        kind: FrameKind::EchoReply,
        session: frame.session,
        payload: Bytes::copy_from_slice(nonce),
    };
    let _ = tx.send(Outgoing::Frame(done)).await;
}

/// Opens session `id`: its server reads and writes the session's frames through a
/// [`SessionIo`].
fn open<F>(id: u64, tx: &mpsc::Sender<Outgoing>, on_session: &mut F) -> Session
where
    F: FnMut(u64, SessionIo) -> AbortHandle,
{
    let (inbound, payloads) = mpsc::channel(INBOUND_QUEUE);
    let server = on_session(id, SessionIo::new(id, payloads, tx.clone()));
    Session {
        id,
        inbound,
        server,
    }
}
