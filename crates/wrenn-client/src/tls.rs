//! TLS for `https://` and `wss://` base URLs: rustls with the ring provider, trusting the
//! Mozilla roots (webpki-roots) plus the PEM certificates of `--ca-cert`, if given (a
//! self-hosted server behind a private CA).

use std::path::{Path, PathBuf};
use std::sync::Arc;

use rustls::pki_types::pem::PemObject;
use rustls::pki_types::CertificateDer;

/// Why the TLS configuration could not be made.
#[derive(Debug, thiserror::Error)]
pub enum TlsError {
    /// The `--ca-cert` file cannot be read or holds no certificate.
    #[error("tls: CA certificate file {path}: {reason}")]
    CaFile {
        /// The file as given.
        path: PathBuf,
        /// What is wrong with it.
        reason: String,
    },
    /// rustls refused the configuration.
    #[error("tls: setting up TLS failed")]
    Config(#[source] rustls::Error),
}

/// The certificates of a PEM file; an error when it has none.
pub fn load_pem_certs(path: &Path) -> Result<Vec<CertificateDer<'static>>, TlsError> {
    let bad = |reason: String| TlsError::CaFile {
        path: path.to_path_buf(),
        reason,
    };
    let certs = CertificateDer::pem_file_iter(path)
        .map_err(|e| bad(e.to_string()))?
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| bad(e.to_string()))?;
    if certs.is_empty() {
        return Err(bad("no PEM certificate in it".into()));
    }
    Ok(certs)
}

/// A client configuration trusting the webpki roots and the certificates of `ca_cert`.
/// `alpn` names the application protocols offered (`http/1.1` for the REST client; none
/// for WebSockets, which always speak HTTP/1.1).
pub fn client_config(
    ca_cert: Option<&Path>,
    alpn: &[&[u8]],
) -> Result<Arc<rustls::ClientConfig>, TlsError> {
    let mut roots = rustls::RootCertStore::empty();
    roots.extend(webpki_roots::TLS_SERVER_ROOTS.iter().cloned());
    if let Some(path) = ca_cert {
        for cert in load_pem_certs(path)? {
            roots.add(cert).map_err(|e| TlsError::CaFile {
                path: path.to_path_buf(),
                reason: e.to_string(),
            })?;
        }
    }
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let mut config = rustls::ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .map_err(TlsError::Config)?
        .with_root_certificates(roots)
        .with_no_client_auth();
    config.alpn_protocols = alpn.iter().map(|p| p.to_vec()).collect();
    Ok(Arc::new(config))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_file_without_certificates_is_refused() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("empty.pem");
        std::fs::write(&p, "not a certificate\n").unwrap();
        let err = client_config(Some(&p), &[]).unwrap_err();
        assert!(err.to_string().contains("no PEM certificate"), "{err}");
        let missing = dir.path().join("missing.pem");
        let err = client_config(Some(&missing), &[]).unwrap_err();
        assert!(
            err.to_string().starts_with("tls: CA certificate file "),
            "{err}"
        );
    }
}
