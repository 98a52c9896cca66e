//! Port tunnels: a TCP connection to a port where envd runs, carried over the channel.

mod common;

use common::*;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use wrenn_protocol::ErrorKind;

#[tokio::test(flavor = "multi_thread")]
async fn a_tunnel_carries_bytes_both_ways_and_a_closed_port_is_not_found() {
    let envd = Envd::start();
    let c = envd.client().await;
    // An echo server that upper-cases, on a free port.
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let port = listener.local_addr().unwrap().port();
    tokio::spawn(async move {
        let (mut s, _) = listener.accept().await.unwrap();
        let mut buf = vec![0u8; 4096];
        loop {
            let n = s.read(&mut buf).await.unwrap();
            if n == 0 {
                return;
            }
            s.write_all(&buf[..n].to_ascii_uppercase()).await.unwrap();
        }
    });
    let mut tunnel = c.connect_port(port).await.unwrap();
    tunnel
        .write_all(b"hello through the capsule")
        .await
        .unwrap();
    let mut got = vec![0u8; 25];
    tunnel.read_exact(&mut got).await.unwrap();
    assert_eq!(got, b"HELLO THROUGH THE CAPSULE");

    // Nothing listens on this one.
    let closed = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let closed_port = closed.local_addr().unwrap().port();
    drop(closed);
    let e = c.connect_port(closed_port).await.unwrap_err();
    assert_eq!(kind(e), ErrorKind::NotFound);
}
