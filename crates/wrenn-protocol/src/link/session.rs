//! The guest's end of one session's byte stream, handed to its HTTP/2 server: reads take the
//! payloads of the session's DATA frames as they arrived, writes become DATA frames at once.
//! No in-process pipe sits between the link and HTTP/2, so every byte the guest sends or
//! receives is copied once less (under emulation each copy of the guest's costs).

use std::pin::Pin;
use std::task::{ready, Context, Poll};

use bytes::{Buf, Bytes};
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::sync::mpsc;
use tokio_util::sync::PollSender;

use super::frame::{Frame, FrameKind, MAX_PAYLOAD};
use super::writer::Outgoing;

/// Payloads queued towards a session's server before the link stops reading the transport.
pub(crate) const INBOUND_QUEUE: usize = 16;

/// One session's byte stream (see the module docs). Reading ends when the link drops the
/// sender of the session's payloads; writing fails once the link's writer is gone.
pub struct SessionIo {
    session: u64,
    inbound: mpsc::Receiver<Bytes>,
    pending: Bytes,
    outbound: PollSender<Outgoing>,
}

impl SessionIo {
    /// A stream for `session`: payloads come from `inbound`, frames go to `outbound`.
    pub(crate) fn new(
        session: u64,
        inbound: mpsc::Receiver<Bytes>,
        outbound: mpsc::Sender<Outgoing>,
    ) -> SessionIo {
        SessionIo {
            session,
            inbound,
            pending: Bytes::new(),
            outbound: PollSender::new(outbound),
        }
    }
}

impl AsyncRead for SessionIo {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<std::io::Result<()>> {
        while self.pending.is_empty() {
            match ready!(self.inbound.poll_recv(cx)) {
                Some(payload) => self.pending = payload,
                // The session ended: end of stream.
                None => return Poll::Ready(Ok(())),
            }
        }
        let n = self.pending.len().min(buf.remaining());
        buf.put_slice(&self.pending[..n]);
        self.pending.advance(n);
        Poll::Ready(Ok(()))
    }
}

impl AsyncWrite for SessionIo {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<std::io::Result<usize>> {
        self.poll_write_vectored(cx, &[std::io::IoSlice::new(buf)])
    }

    /// Gathers the slices (HTTP/2 writes a frame's header and its payload apart) into one
    /// DATA frame of at most [`MAX_PAYLOAD`] bytes.
    fn poll_write_vectored(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[std::io::IoSlice<'_>],
    ) -> Poll<std::io::Result<usize>> {
        let total: usize = bufs.iter().map(|b| b.len()).sum();
        if total == 0 {
            return Poll::Ready(Ok(0));
        }
        if ready!(self.outbound.poll_reserve(cx)).is_err() {
            return Poll::Ready(Err(std::io::ErrorKind::BrokenPipe.into()));
        }
        let mut payload = bytes::BytesMut::with_capacity(total.min(MAX_PAYLOAD));
        for b in bufs {
            let room = MAX_PAYLOAD - payload.len();
            if room == 0 {
                break;
            }
            payload.extend_from_slice(&b[..b.len().min(room)]);
        }
        let n = payload.len();
        let frame = Frame {
            kind: FrameKind::Data,
            session: self.session,
            payload: payload.freeze(),
        };
        match self.outbound.send_item(Outgoing::Frame(frame)) {
            Ok(()) => Poll::Ready(Ok(n)),
            Err(_) => Poll::Ready(Err(std::io::ErrorKind::BrokenPipe.into())),
        }
    }

    fn is_write_vectored(&self) -> bool {
        true
    }

    fn poll_flush(self: Pin<&mut Self>, _: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        // Frames are queued to the link's writer as they are made; it writes them out.
        Poll::Ready(Ok(()))
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, _: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        self.outbound.close();
        Poll::Ready(Ok(()))
    }
}
