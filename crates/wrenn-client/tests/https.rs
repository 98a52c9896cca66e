//! The client speaks `https://` and `wss://`: against a local TLS server with a certificate
//! made here (rcgen), trusted through `--ca-cert`; no outside network.

use std::io::Write;
use std::sync::Arc;

use futures::{SinkExt, StreamExt};
use rustls::pki_types::{CertificateDer, PrivateKeyDer, PrivatePkcs8KeyDer};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpListener;
use tokio_rustls::TlsAcceptor;
use wrenn_client::{ApiClient, ApiError};

/// A certificate for `localhost` and a TLS acceptor serving it; the PEM is written to a file.
fn tls_server(dir: &std::path::Path) -> (TlsAcceptor, std::path::PathBuf) {
    let made = rcgen::generate_simple_self_signed(vec!["localhost".to_string()]).unwrap();
    let pem_path = dir.join("ca.pem");
    std::fs::File::create(&pem_path)
        .unwrap()
        .write_all(made.cert.pem().as_bytes())
        .unwrap();
    let cert = CertificateDer::from(made.cert.der().to_vec());
    let key = PrivateKeyDer::Pkcs8(PrivatePkcs8KeyDer::from(made.key_pair.serialize_der()));
    let config = rustls::ServerConfig::builder_with_provider(Arc::new(
        rustls::crypto::ring::default_provider(),
    ))
    .with_safe_default_protocol_versions()
    .unwrap()
    .with_no_client_auth()
    .with_single_cert(vec![cert], key)
    .unwrap();
    (TlsAcceptor::from(Arc::new(config)), pem_path)
}

/// A TLS server's parts: its temp dir (with `ca.pem`), acceptor, listener and port.
struct Local {
    _dir: tempfile::TempDir,
    ca: std::path::PathBuf,
    acceptor: TlsAcceptor,
    listener: TcpListener,
    port: u16,
}

async fn local() -> Local {
    let dir = tempfile::tempdir().unwrap();
    let (acceptor, ca) = tls_server(dir.path());
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let port = listener.local_addr().unwrap().port();
    Local {
        _dir: dir,
        ca,
        acceptor,
        listener,
        port,
    }
}

/// Serves one HTTP/1.1 request over TLS: answers `[]` and returns the request head.
async fn serve_one(listener: TcpListener, acceptor: TlsAcceptor) -> Option<String> {
    let (tcp, _) = listener.accept().await.ok()?;
    let mut tls = acceptor.accept(tcp).await.ok()?;
    let mut head = Vec::new();
    let mut buf = [0u8; 4096];
    while !head.windows(4).any(|w| w == b"\r\n\r\n") {
        let n = tls.read(&mut buf).await.ok()?;
        if n == 0 {
            return None;
        }
        head.extend_from_slice(&buf[..n]);
    }
    let answer = "HTTP/1.1 200 OK\r\ncontent-type: application/json\r\ncontent-length: 2\r\nconnection: close\r\n\r\n[]";
    tls.write_all(answer.as_bytes()).await.ok()?;
    tls.shutdown().await.ok()?;
    Some(String::from_utf8_lossy(&head).into_owned())
}

#[tokio::test]
async fn https_base_url_lists_capsules_over_tls() {
    let l = local().await;
    let server = tokio::spawn(serve_one(l.listener, l.acceptor));

    let api = ApiClient::with_ca_cert(
        &format!("https://localhost:{}/api", l.port),
        Some("wrn_test"),
        Some(&l.ca),
    )
    .unwrap();
    let list = api.list_capsules().await.unwrap();
    assert!(list.is_empty());
    let head = server.await.unwrap().expect("the server saw a TLS request");
    assert!(
        head.starts_with("GET /api/v1/capsules HTTP/1.1\r\n"),
        "{head}"
    );
    assert!(
        head.to_ascii_lowercase().contains("x-api-key: wrn_test"),
        "{head}"
    );
}

#[tokio::test]
async fn an_untrusted_certificate_is_refused() {
    let l = local().await;
    let server = tokio::spawn(serve_one(l.listener, l.acceptor));

    // Without --ca-cert only the public roots are trusted: the self-signed one is not.
    let api = ApiClient::new(&format!("https://localhost:{}", l.port), Some("wrn_test")).unwrap();
    let err = api.list_capsules().await.unwrap_err();
    assert!(matches!(err, ApiError::Transport { .. }), "{err:?}");
    let text = wrenn_client::error::chain(&err);
    assert!(
        text.starts_with("connection: request to https://localhost:"),
        "{text}"
    );
    assert!(server.await.unwrap().is_none(), "no request got through");
}

#[tokio::test]
async fn wss_uses_the_same_trust() {
    let l = local().await;
    let (listener, acceptor) = (l.listener, l.acceptor);
    let server = tokio::spawn(async move {
        let (tcp, _) = listener.accept().await.unwrap();
        let tls = acceptor.accept(tcp).await.unwrap();
        let mut ws = tokio_tungstenite::accept_async(tls).await.unwrap();
        let msg = ws.next().await.unwrap().unwrap();
        ws.send(msg).await.unwrap();
        let _ = ws.close(None).await;
    });

    let api = ApiClient::with_ca_cert(
        &format!("https://localhost:{}", l.port),
        Some("wrn_test"),
        Some(&l.ca),
    )
    .unwrap();
    let url = api.base().ws("/capsules/cl-x/pty");
    assert!(url.starts_with("wss://localhost:"), "{url}");
    let connector = tokio_tungstenite::Connector::Rustls(api.ws_tls());
    let (mut ws, _) =
        tokio_tungstenite::connect_async_tls_with_config(url, None, false, Some(connector))
            .await
            .unwrap();
    ws.send(tokio_tungstenite::tungstenite::Message::text("hello"))
        .await
        .unwrap();
    let echoed = ws.next().await.unwrap().unwrap();
    assert_eq!(echoed.into_text().unwrap().as_str(), "hello");
    server.await.unwrap();
}
