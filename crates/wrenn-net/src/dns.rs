//! A DNS forwarder on the gateway address inside a capsule's namespace.
//!
//! The guest's `/etc/resolv.conf` names the gateway. The agent holds a UDP socket bound to
//! `gateway:53` inside the namespace and relays each query to the host's upstream resolvers
//! from the root namespace (so a host resolver on loopback, such as systemd-resolved, works
//! too). Queries are relayed as bytes: only the length and the 12-byte header are checked,
//! and a reply is passed back only when its id matches the query's. Concurrency per capsule
//! is bounded; TCP DNS is not served.

use std::net::{SocketAddr, UdpSocket as StdUdpSocket};
use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use tokio::net::UdpSocket;
use tokio::sync::Semaphore;

use crate::cmd::in_netns;
use crate::error::Result;

/// Largest query relayed (EDNS0 payloads beyond this are not needed by stub resolvers).
const MAX_PACKET: usize = 4096;
/// Size of a DNS header.
const HEADER: usize = 12;
/// Queries in flight per capsule.
const MAX_IN_FLIGHT: usize = 64;
/// How long one upstream may take before the next is tried.
const UPSTREAM_TIMEOUT: Duration = Duration::from_secs(2);

/// Binds a UDP socket to `addr` inside the namespace at `netns`.
pub fn bind_udp_in(netns: &Path, addr: SocketAddr) -> Result<StdUdpSocket> {
    in_netns(netns, move || StdUdpSocket::bind(addr))
}

/// Whether `buf` looks like a DNS query worth relaying.
pub fn is_query(buf: &[u8]) -> bool {
    // QR bit (0x80 of byte 2) is 0 in a query.
    buf.len() >= HEADER && buf.len() <= MAX_PACKET && buf[2] & 0x80 == 0
}

/// Whether `reply` answers `query`: same id, QR set.
pub fn answers(query: &[u8], reply: &[u8]) -> bool {
    reply.len() >= HEADER && reply[..2] == query[..2] && reply[2] & 0x80 != 0
}

/// Serves DNS on `socket` until the task is aborted.
pub async fn serve(socket: StdUdpSocket, upstreams: Arc<Vec<SocketAddr>>) {
    if let Err(e) = socket.set_nonblocking(true) {
        tracing::warn!(error = %e, "DNS forwarder socket");
        return;
    }
    let socket = match UdpSocket::from_std(socket) {
        Ok(s) => Arc::new(s),
        Err(e) => {
            tracing::warn!(error = %e, "DNS forwarder socket");
            return;
        }
    };
    let slots = Arc::new(Semaphore::new(MAX_IN_FLIGHT));
    let mut buf = vec![0u8; MAX_PACKET + 1];
    loop {
        let (n, from) = match socket.recv_from(&mut buf).await {
            Ok(x) => x,
            Err(e) => {
                tracing::debug!(error = %e, "DNS forwarder receive");
                tokio::time::sleep(Duration::from_millis(10)).await;
                continue;
            }
        };
        if !is_query(&buf[..n]) {
            continue;
        }
        let Ok(permit) = slots.clone().try_acquire_owned() else {
            continue; // too many in flight: drop, the stub resolver retries
        };
        let query = buf[..n].to_vec();
        let (socket, upstreams) = (socket.clone(), upstreams.clone());
        tokio::spawn(async move {
            if let Some(reply) = relay(&query, &upstreams).await {
                let _ = socket.send_to(&reply, from).await;
            }
            drop(permit);
        });
    }
}

async fn relay(query: &[u8], upstreams: &[SocketAddr]) -> Option<Vec<u8>> {
    for up in upstreams {
        let bind: SocketAddr = if up.is_ipv4() {
            "0.0.0.0:0".parse().ok()?
        } else {
            "[::]:0".parse().ok()?
        };
        let Ok(sock) = UdpSocket::bind(bind).await else {
            continue;
        };
        if sock.connect(up).await.is_err() || sock.send(query).await.is_err() {
            continue;
        }
        let mut buf = vec![0u8; MAX_PACKET];
        let deadline = tokio::time::Instant::now() + UPSTREAM_TIMEOUT;
        while let Ok(Ok(n)) = tokio::time::timeout_at(deadline, sock.recv(&mut buf)).await {
            if answers(query, &buf[..n]) {
                buf.truncate(n);
                return Some(buf);
            }
        }
    }
    None
}

/// Name servers of a resolv.conf text, as `ip:53`.
pub fn parse_resolv_conf(text: &str) -> Vec<SocketAddr> {
    text.lines()
        .filter_map(|l| {
            let mut w = l.split_whitespace();
            (w.next() == Some("nameserver")).then(|| w.next()).flatten()
        })
        .filter_map(|ip| ip.parse::<std::net::IpAddr>().ok())
        .map(|ip| SocketAddr::new(ip, 53))
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn resolv_conf_servers() {
        let s = parse_resolv_conf(
            "# c\nsearch x\nnameserver 127.0.0.53\nnameserver fd00::1\nnameserver bogus\n",
        );
        assert_eq!(
            s,
            vec![
                "127.0.0.53:53".parse().unwrap(),
                "[fd00::1]:53".parse().unwrap()
            ]
        );
    }

    #[test]
    fn hostile_packets_are_not_relayed() {
        assert!(!is_query(&[]));
        assert!(!is_query(&[0; 11]));
        assert!(!is_query(&[0; MAX_PACKET + 1]));
        let mut reply = [0u8; 12];
        reply[2] = 0x80;
        assert!(!is_query(&reply), "a response is not relayed as a query");
        let q = [1u8, 2, 1, 0, 0, 1, 0, 0, 0, 0, 0, 0];
        assert!(is_query(&q));
        let mut r = q;
        r[2] |= 0x80;
        assert!(answers(&q, &r));
        r[0] = 9;
        assert!(!answers(&q, &r));
        assert!(!answers(&q, &q), "a query is not an answer");
    }

    #[tokio::test]
    async fn relays_to_an_upstream_and_back() {
        // Upstream: answers every query with its id and QR set.
        let up = UdpSocket::bind("127.0.0.1:0").await.unwrap();
        let up_addr = up.local_addr().unwrap();
        tokio::spawn(async move {
            let mut b = [0u8; 512];
            loop {
                let (n, from) = up.recv_from(&mut b).await.unwrap();
                b[2] |= 0x80;
                up.send_to(&b[..n], from).await.unwrap();
            }
        });
        let fwd = StdUdpSocket::bind("127.0.0.1:0").unwrap();
        let fwd_addr = fwd.local_addr().unwrap();
        let task = tokio::spawn(serve(fwd, Arc::new(vec![up_addr])));
        let client = UdpSocket::bind("127.0.0.1:0").await.unwrap();
        let q = [7u8, 7, 1, 0, 0, 1, 0, 0, 0, 0, 0, 0];
        client.send_to(&[1, 2, 3], fwd_addr).await.unwrap(); // garbage first: ignored
        client.send_to(&q, fwd_addr).await.unwrap();
        let mut b = [0u8; 64];
        let (n, _) = tokio::time::timeout(Duration::from_secs(5), client.recv_from(&mut b))
            .await
            .unwrap()
            .unwrap();
        assert_eq!(&b[..2], &[7, 7]);
        assert_eq!(n, q.len());
        task.abort();
    }
}
