//! Guest side of the link: one session at a time. A HELLO with a new session id drops the
//! current session (its HTTP/2 server is aborted) and starts a fresh one.

use bytes::{Bytes, BytesMut};
use tokio::io::{AsyncReadExt, AsyncWriteExt, DuplexStream, WriteHalf};
use tokio::sync::mpsc;
use tokio::task::JoinHandle;

use super::frame::{Frame, FrameDecoder, FrameKind, MAX_PAYLOAD};

struct Session {
    id: u64,
    to_server: WriteHalf<DuplexStream>,
    server: JoinHandle<()>,
    pump: JoinHandle<()>,
}

impl Drop for Session {
    fn drop(&mut self) {
        self.server.abort();
        self.pump.abort();
    }
}

/// Serves the link: `input` yields bytes received from the host (it ends when the connection
/// does), `output` takes encoded frames to send. `start_server` is given each new session's
/// byte stream and returns the task serving HTTP/2 on it.
pub async fn serve<F>(
    mut input: mpsc::Receiver<Bytes>,
    output: mpsc::Sender<Bytes>,
    mut start_server: F,
) where
    F: FnMut(DuplexStream) -> JoinHandle<()>,
{
    let mut dec = FrameDecoder::new();
    let mut current: Option<Session> = None;
    while let Some(chunk) = input.recv().await {
        dec.push(&chunk);
        while let Some(f) = dec.next_frame() {
            match f.kind {
                FrameKind::Hello => {
                    if current.as_ref().map(|s| s.id) != Some(f.session) {
                        drop(current.take()); // aborts the old session
                        let (mine, theirs) = tokio::io::duplex(4 << 20);
                        let (mut from_server, to_server) = tokio::io::split(mine);
                        let server = start_server(theirs);
                        let out = output.clone();
                        let id = f.session;
                        let pump = tokio::spawn(async move {
                            let mut buf = vec![0u8; MAX_PAYLOAD];
                            loop {
                                match from_server.read(&mut buf).await {
                                    Ok(0) | Err(_) => return,
                                    Ok(n) => {
                                        let frame = Frame {
                                            kind: FrameKind::Data,
                                            session: id,
                                            payload: Bytes::copy_from_slice(&buf[..n]),
                                        };
                                        if out.send(frame.to_bytes()).await.is_err() {
                                            return;
                                        }
                                    }
                                }
                            }
                        });
                        tracing::info!(session = id, "new host session");
                        current = Some(Session {
                            id,
                            to_server,
                            server,
                            pump,
                        });
                    }
                    let _ = output
                        .send(Frame::control(FrameKind::Ack, f.session).to_bytes())
                        .await;
                }
                FrameKind::Data => {
                    if let Some(s) = current.as_mut().filter(|s| s.id == f.session) {
                        if s.to_server.write_all(&f.payload).await.is_err() {
                            current = None;
                        }
                    }
                }
                FrameKind::Echo => {
                    let reply = Frame {
                        kind: FrameKind::EchoReply,
                        session: f.session,
                        payload: f.payload,
                    };
                    let _ = output.send(reply.to_bytes()).await;
                }
                FrameKind::Ack | FrameKind::EchoReply => {}
            }
        }
    }
}

/// Drains `rx` into a writer, batching queued frames into large writes.
pub async fn write_frames<W: tokio::io::AsyncWrite + Unpin>(
    mut rx: mpsc::Receiver<Bytes>,
    mut w: W,
) {
    let mut batch = BytesMut::new();
    while let Some(first) = rx.recv().await {
        batch.extend_from_slice(&first);
        while batch.len() < 1 << 20 {
            match rx.try_recv() {
                Ok(more) => batch.extend_from_slice(&more),
                Err(_) => break,
            }
        }
        if w.write_all(&batch).await.is_err() {
            return;
        }
        batch.clear();
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    /// Runs a guest link over an in-memory connection whose server echoes bytes back
    /// upper-cased; returns the host's end.
    fn guest() -> DuplexStream {
        let (host_end, guest_end) = tokio::io::duplex(1 << 20);
        let (mut rd, wr) = tokio::io::split(guest_end);
        let (in_tx, in_rx) = mpsc::channel(16);
        let (out_tx, out_rx) = mpsc::channel(16);
        tokio::spawn(async move {
            let mut buf = vec![0u8; 4096];
            loop {
                match rd.read(&mut buf).await {
                    Ok(0) | Err(_) => return,
                    Ok(n) => {
                        if in_tx.send(Bytes::copy_from_slice(&buf[..n])).await.is_err() {
                            return;
                        }
                    }
                }
            }
        });
        tokio::spawn(write_frames(out_rx, wr));
        tokio::spawn(serve(in_rx, out_tx, |stream| {
            tokio::spawn(async move {
                let (mut r, mut w) = tokio::io::split(stream);
                let mut buf = vec![0u8; 1024];
                while let Ok(n) = r.read(&mut buf).await {
                    if n == 0 || w.write_all(&buf[..n].to_ascii_uppercase()).await.is_err() {
                        return;
                    }
                }
            })
        }));
        host_end
    }

    #[tokio::test]
    async fn sessions_echo_and_stale_data_are_handled() {
        let conn = guest();
        let (rd, mut wr) = tokio::io::split(conn);
        // Stale data of an unknown session and garbage before the HELLO are dropped.
        wr.write_all(
            &Frame {
                kind: FrameKind::Data,
                session: 99,
                payload: Bytes::from_static(b"stale"),
            }
            .to_bytes(),
        )
        .await
        .unwrap();
        wr.write_all(b"\x00garbage").await.unwrap();
        let conn = tokio::io::join(rd, wr);
        let link = super::super::host::connect(conn, Duration::from_secs(5))
            .await
            .unwrap();
        let rtt = link.echo.echo(Bytes::from_static(b"x")).await.unwrap();
        assert!(rtt < Duration::from_secs(5));
        let (mut r, mut w) = tokio::io::split(link.stream);
        w.write_all(b"hello").await.unwrap();
        let mut got = [0u8; 5];
        r.read_exact(&mut got).await.unwrap();
        assert_eq!(&got, b"HELLO");
    }
}
