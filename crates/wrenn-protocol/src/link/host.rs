//! Host side of the link: opens a session with HELLO (resent until the guest answers ACK),
//! then carries the session's HTTP/2 bytes in DATA frames. Also measures raw round trips with
//! ECHO frames.

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use bytes::{BufMut, Bytes, BytesMut};
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt, DuplexStream, WriteHalf};
use tokio::sync::{mpsc, oneshot, watch};
use tokio::task::JoinHandle;

use super::frame::{Frame, FrameDecoder, FrameKind, HEADER, MAX_PAYLOAD, TRAILER};
use super::writer::{queue_discard, write_loop, Outgoing};
use super::{LinkError, IO_BUF};

/// How long to wait for an ACK before sending HELLO again.
const HELLO_RETRY: Duration = Duration::from_millis(250);

type EchoWaiters = Arc<Mutex<HashMap<u64, oneshot::Sender<Bytes>>>>;

/// An open session on the host side. Dropping it closes the link (and its transport).
pub struct HostLink {
    session: u64,
    tx: mpsc::Sender<Outgoing>,
    echoes: EchoWaiters,
    next_echo: AtomicU64,
    closed: watch::Receiver<bool>,
    tasks: Vec<JoinHandle<()>>,
}

impl std::fmt::Debug for HostLink {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("HostLink")
            .field("session", &self.session)
            .finish()
    }
}

impl Drop for HostLink {
    fn drop(&mut self) {
        for t in &self.tasks {
            t.abort();
        }
    }
}

/// Opens a new session on `transport`: sends HELLO with a fresh random id until the guest
/// answers ACK (at most `timeout`), then returns the link and the byte stream of the session
/// (for the HTTP/2 client).
pub async fn connect<T>(
    transport: T,
    timeout: Duration,
) -> Result<(HostLink, DuplexStream), LinkError>
where
    T: AsyncRead + AsyncWrite + Send + 'static,
{
    let session = loop {
        let id = rand::random::<u64>();
        if id != 0 {
            break id;
        }
    };
    let (rd, wr) = tokio::io::split(transport);
    let (tx, rx) = mpsc::channel::<Outgoing>(64);
    let writer = tokio::spawn(write_loop(wr, rx, Arc::new(AtomicU64::new(session))));
    let (ours, theirs) = tokio::io::duplex(IO_BUF);
    let (out_rd, inbound) = tokio::io::split(ours);
    let (ack_tx, mut ack_rx) = watch::channel(false);
    let (closed_tx, closed_rx) = watch::channel(false);
    let echoes: EchoWaiters = Arc::default();
    let reader = tokio::spawn(read_loop(
        rd,
        session,
        inbound,
        ack_tx,
        closed_tx,
        echoes.clone(),
    ));
    let mut link = HostLink {
        session,
        tx,
        echoes,
        next_echo: AtomicU64::new(1),
        closed: closed_rx,
        tasks: vec![writer, reader],
    };
    // Bounded as a whole: with no reader on the other end (QEMU serves one connection at a
    // time), sending HELLO and padding itself blocks once the socket buffer is full.
    tokio::time::timeout(timeout, handshake(&link, &mut ack_rx, timeout))
        .await
        .map_err(|_| LinkError::NoAck(timeout))??;
    link.tasks
        .push(tokio::spawn(pump_out(session, out_rd, link.tx.clone())));
    tracing::debug!(session, "link session open");
    Ok((link, theirs))
}

/// Moves what the HTTP/2 client writes into DATA frames.
async fn pump_out<R: AsyncRead + Unpin>(session: u64, mut rd: R, tx: mpsc::Sender<Outgoing>) {
    let mut buf = vec![0u8; MAX_PAYLOAD];
    loop {
        match rd.read(&mut buf).await {
            Ok(0) | Err(_) => return,
            Ok(n) => {
                let frame = Frame {
                    kind: FrameKind::Data,
                    session,
                    payload: Bytes::copy_from_slice(&buf[..n]),
                };
                if tx.send(Outgoing::Frame(frame)).await.is_err() {
                    return;
                }
            }
        }
    }
}

/// Sends HELLO until ACK. From the second try on, HELLO is preceded by zero padding longer
/// than any frame, so a guest decoder stuck in a stale partial frame resynchronises.
async fn handshake(
    link: &HostLink,
    ack: &mut watch::Receiver<bool>,
    timeout: Duration,
) -> Result<(), LinkError> {
    let deadline = tokio::time::Instant::now() + timeout;
    let hello = Frame::control(FrameKind::Hello, link.session);
    let mut attempt = 0u32;
    loop {
        if attempt > 0 {
            let pad = Bytes::from(vec![0u8; HEADER + MAX_PAYLOAD + TRAILER]);
            link.tx
                .send(Outgoing::Raw(pad))
                .await
                .map_err(|_| LinkError::Closed)?;
        }
        link.tx
            .send(Outgoing::Frame(hello.clone()))
            .await
            .map_err(|_| LinkError::Closed)?;
        attempt += 1;
        let wait = HELLO_RETRY.min(deadline.saturating_duration_since(tokio::time::Instant::now()));
        match tokio::time::timeout(wait, ack.wait_for(|a| *a)).await {
            Ok(Ok(_)) => return Ok(()),
            Ok(Err(_)) => return Err(LinkError::Closed),
            Err(_) if tokio::time::Instant::now() >= deadline => {
                return Err(LinkError::NoAck(timeout))
            }
            Err(_) => {
                if *link.closed.borrow() {
                    return Err(LinkError::Closed);
                }
            }
        }
    }
}

async fn read_loop<R: AsyncRead + Unpin>(
    mut rd: R,
    session: u64,
    mut inbound: WriteHalf<DuplexStream>,
    ack: watch::Sender<bool>,
    closed: watch::Sender<bool>,
    echoes: EchoWaiters,
) {
    let mut decoder = FrameDecoder::new();
    let mut buf = vec![0u8; IO_BUF];
    let mut inbound_open = true;
    loop {
        let n = match rd.read(&mut buf).await {
            Ok(0) => break,
            Ok(n) => n,
            Err(e) => {
                tracing::debug!("link read failed: {e}");
                break;
            }
        };
        decoder.push(&buf[..n]);
        while let Some(frame) = decoder.next_frame() {
            if frame.session != session {
                tracing::trace!(
                    session = frame.session,
                    "link: dropped frame of another session"
                );
                continue;
            }
            match frame.kind {
                FrameKind::Ack => {
                    ack.send_replace(true);
                }
                FrameKind::Data
                    if inbound_open && inbound.write_all(&frame.payload).await.is_err() =>
                {
                    inbound_open = false;
                }
                FrameKind::EchoReply if frame.payload.len() >= 8 => {
                    let mut nonce = [0u8; 8];
                    nonce.copy_from_slice(&frame.payload[..8]);
                    let waiter = echoes
                        .lock()
                        .ok()
                        .and_then(|mut m| m.remove(&u64::from_le_bytes(nonce)));
                    if let Some(w) = waiter {
                        let _ = w.send(frame.payload.slice(8..));
                    }
                }
                _ => {}
            }
        }
    }
    closed.send_replace(true);
    let _ = inbound.shutdown().await;
    if let Ok(mut m) = echoes.lock() {
        m.clear();
    }
}

impl HostLink {
    /// Sends `bytes` to the guest in DISCARD frames, which it drops unread, then waits for an
    /// echo behind them: the port's raw throughput towards the guest, framing alone on top.
    pub async fn discard(&self, bytes: usize) -> Result<(), LinkError> {
        if !queue_discard(&self.tx, self.session, bytes).await {
            return Err(LinkError::Closed);
        }
        self.echo(b"").await.map(|_| ())
    }

    /// Asks the guest for `bytes` (at most [`super::frame::FILL_MAX`]) in DISCARD frames and
    /// waits until they all arrived: the port's raw throughput towards the host.
    pub async fn fill(&self, bytes: u64) -> Result<(), LinkError> {
        if bytes > super::frame::FILL_MAX {
            return Err(LinkError::FillTooLarge(bytes));
        }
        let (nonce, done) = self.expect_reply();
        let mut p = BytesMut::with_capacity(super::frame::FILL_COUNT);
        p.put_u64_le(nonce);
        p.put_u64_le(bytes);
        self.send(FrameKind::Fill, p.freeze()).await?;
        done.await.map(|_| ()).map_err(|_| LinkError::Closed)
    }

    /// Queues a frame of this session.
    async fn send(&self, kind: FrameKind, payload: Bytes) -> Result<(), LinkError> {
        let frame = Frame {
            kind,
            session: self.session,
            payload,
        };
        self.tx
            .send(Outgoing::Frame(frame))
            .await
            .map_err(|_| LinkError::Closed)
    }

    /// A fresh nonce and the receiver of the ECHO_REPLY that will carry it.
    fn expect_reply(&self) -> (u64, oneshot::Receiver<Bytes>) {
        let nonce = self.next_echo.fetch_add(1, Ordering::Relaxed);
        let (w_tx, w_rx) = oneshot::channel();
        if let Ok(mut m) = self.echoes.lock() {
            m.insert(nonce, w_tx);
        }
        (nonce, w_rx)
    }

    /// The session id of this link.
    pub fn session(&self) -> u64 {
        self.session
    }

    /// True once the transport ended.
    pub fn is_closed(&self) -> bool {
        *self.closed.borrow()
    }

    /// Sends `payload` in an ECHO frame and returns what the guest sent back (a raw round
    /// trip over the channel, without HTTP/2).
    pub async fn echo(&self, payload: &[u8]) -> Result<Bytes, LinkError> {
        // A frame the guest would drop as malformed would never be answered.
        if payload.len() + super::ECHO_NONCE > super::frame::MAX_PAYLOAD {
            return Err(LinkError::TooLarge(payload.len()));
        }
        let (nonce, w_rx) = self.expect_reply();
        let mut p = BytesMut::with_capacity(super::ECHO_NONCE + payload.len());
        p.put_u64_le(nonce);
        p.put_slice(payload);
        self.send(FrameKind::Echo, p.freeze()).await?;
        w_rx.await.map_err(|_| LinkError::Closed)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::link::guest;
    use tokio::io::AsyncWriteExt;

    /// A guest link serving an echo "server" (writes back what the session receives).
    fn spawn_guest(transport: DuplexStream) -> tokio::task::JoinHandle<Result<(), LinkError>> {
        tokio::spawn(guest::serve(transport, |_session, io| {
            tokio::spawn(async move {
                let (mut r, mut w) = tokio::io::split(io);
                let _ = tokio::io::copy(&mut r, &mut w).await;
            })
            .abort_handle()
        }))
    }

    async fn round_trip(io: &mut DuplexStream, msg: &[u8]) -> Vec<u8> {
        io.write_all(msg).await.unwrap();
        let mut got = vec![0u8; msg.len()];
        tokio::time::timeout(Duration::from_secs(60), io.read_exact(&mut got))
            .await
            .unwrap()
            .unwrap();
        got
    }

    #[tokio::test]
    async fn session_carries_bytes_and_echo() {
        let (host_end, guest_end) = tokio::io::duplex(1 << 16);
        let _g = spawn_guest(guest_end);
        let (link, mut io) = connect(host_end, Duration::from_secs(60)).await.unwrap();
        let big: Vec<u8> = (0..1_000_000u32).map(|i| i as u8).collect();
        assert_eq!(round_trip(&mut io, &big).await, big);
        assert_eq!(link.echo(b"raw").await.unwrap(), Bytes::from_static(b"raw"));
        // The largest echo that fits in a frame comes back; one byte more is refused at once
        // instead of waiting forever for an answer the guest cannot give.
        let max = vec![7u8; crate::link::frame::MAX_PAYLOAD - crate::link::ECHO_NONCE];
        assert_eq!(link.echo(&max).await.unwrap(), Bytes::from(max.clone()));
        let over = vec![7u8; max.len() + 1];
        assert!(matches!(
            link.echo(&over).await,
            Err(LinkError::TooLarge(n)) if n == over.len()
        ));
    }

    #[tokio::test]
    async fn bulk_bytes_go_both_ways_without_disturbing_the_session() {
        let (host_end, guest_end) = tokio::io::duplex(1 << 16);
        let _g = spawn_guest(guest_end);
        let (link, mut io) = connect(host_end, Duration::from_secs(60)).await.unwrap();
        link.discard(3 * MAX_PAYLOAD + 5).await.unwrap();
        link.fill(3 * MAX_PAYLOAD as u64 + 5).await.unwrap();
        link.fill(0).await.unwrap();
        assert!(matches!(
            link.fill(crate::link::frame::FILL_MAX + 1).await,
            Err(LinkError::FillTooLarge(_))
        ));
        // The session's own bytes are untouched by the bulk frames around them.
        assert_eq!(round_trip(&mut io, b"after bulk").await, b"after bulk");
    }

    #[tokio::test]
    async fn a_new_hello_replaces_the_session_and_stale_data_is_dropped() {
        // One persistent guest stream, two host "connections" over it in turn.
        let (host_end, guest_end) = tokio::io::duplex(1 << 16);
        let _g = spawn_guest(guest_end);
        let (mut hr, mut hw) = tokio::io::split(host_end);
        // Session 1 by hand: HELLO, then data the guest echoes.
        hw.write_all(&Frame::control(FrameKind::Hello, 1).to_bytes())
            .await
            .unwrap();
        hw.write_all(
            &Frame {
                kind: FrameKind::Data,
                session: 1,
                payload: Bytes::from_static(b"old"),
            }
            .to_bytes(),
        )
        .await
        .unwrap();
        // Stale data of a session the guest never saw, and half a frame, then session 2.
        hw.write_all(
            &Frame {
                kind: FrameKind::Data,
                session: 9,
                payload: Bytes::from_static(b"stale"),
            }
            .to_bytes(),
        )
        .await
        .unwrap();
        let partial = Frame {
            kind: FrameKind::Data,
            session: 1,
            payload: Bytes::from(vec![7u8; 5000]),
        }
        .to_bytes();
        hw.write_all(&partial[..100]).await.unwrap();
        hw.write_all(&vec![0u8; HEADER + MAX_PAYLOAD + TRAILER])
            .await
            .unwrap();
        hw.write_all(&Frame::control(FrameKind::Hello, 2).to_bytes())
            .await
            .unwrap();
        hw.write_all(
            &Frame {
                kind: FrameKind::Data,
                session: 2,
                payload: Bytes::from_static(b"new"),
            }
            .to_bytes(),
        )
        .await
        .unwrap();
        let mut dec = FrameDecoder::new();
        let mut buf = vec![0u8; 65536];
        let mut seen: Vec<(FrameKind, u64, Bytes)> = Vec::new();
        while !seen.iter().any(|f| f.1 == 2 && f.0 == FrameKind::Data) {
            let n = tokio::time::timeout(Duration::from_secs(60), hr.read(&mut buf))
                .await
                .unwrap()
                .unwrap();
            assert!(n > 0);
            dec.push(&buf[..n]);
            while let Some(f) = dec.next_frame() {
                seen.push((f.kind, f.session, f.payload));
            }
        }
        let new_data: Vec<u8> = seen
            .iter()
            .filter(|f| f.1 == 2 && f.0 == FrameKind::Data)
            .flat_map(|f| f.2.to_vec())
            .collect();
        assert_eq!(new_data, b"new");
        assert!(seen.contains(&(FrameKind::Ack, 2, Bytes::new())));
        assert!(!seen.iter().any(|f| f.2.as_ref() == b"stale"));
    }

    #[tokio::test]
    async fn connect_resyncs_a_guest_stuck_in_a_partial_frame() {
        let (mut host_end, guest_end) = tokio::io::duplex(1 << 20);
        let _g = spawn_guest(guest_end);
        // A previous host connection died in the middle of a large frame.
        let partial = Frame {
            kind: FrameKind::Data,
            session: 3,
            payload: Bytes::from(vec![1u8; MAX_PAYLOAD]),
        }
        .to_bytes();
        host_end.write_all(&partial[..1000]).await.unwrap();
        let (_link, mut io) = connect(host_end, Duration::from_secs(60)).await.unwrap();
        assert_eq!(round_trip(&mut io, b"after resync").await, b"after resync");
    }

    #[tokio::test]
    async fn no_guest_means_no_ack() {
        let (host_end, _silent) = tokio::io::duplex(1 << 20);
        let err = connect(host_end, Duration::from_millis(600))
            .await
            .unwrap_err();
        assert!(matches!(err, LinkError::NoAck(_)), "{err:?}");
    }
}
