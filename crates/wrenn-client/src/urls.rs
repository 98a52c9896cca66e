//! Building API and WebSocket URLs from a base URL given with or without `/api`.

use crate::error::{ApiError, Result};

/// A normalised base URL: no trailing slash, no trailing `/v1`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BaseUrl(String);

impl BaseUrl {
    /// Checks and normalises `raw` (`http://host:port`, `http://host:port/api/`, …).
    pub fn parse(raw: &str) -> Result<Self> {
        let trimmed = raw.trim();
        if !(trimmed.starts_with("http://") || trimmed.starts_with("https://")) {
            return Err(ApiError::BadBaseUrl { url: raw.into() });
        }
        let mut s = trimmed.trim_end_matches('/').to_string();
        if let Some(stripped) = s.strip_suffix("/v1") {
            s = stripped.trim_end_matches('/').to_string();
        }
        if s.ends_with(':') || s.ends_with("//") {
            return Err(ApiError::BadBaseUrl { url: raw.into() });
        }
        Ok(BaseUrl(s))
    }

    /// `<base>/v1<path>`; `path` starts with `/`.
    pub fn api(&self, path: &str) -> String {
        format!("{}/v1{}", self.0, path)
    }

    /// The WebSocket URL of an API path (`ws://` for `http://`, `wss://` for `https://`).
    pub fn ws(&self, path: &str) -> String {
        let http = self.api(path);
        if let Some(rest) = http.strip_prefix("https://") {
            format!("wss://{rest}")
        } else if let Some(rest) = http.strip_prefix("http://") {
            format!("ws://{rest}")
        } else {
            http
        }
    }

    /// The base as normalised.
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

/// Percent-encodes one path segment (everything but RFC 3986 unreserved characters).
pub fn segment(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for b in s.bytes() {
        if b.is_ascii_alphanumeric() || matches!(b, b'-' | b'.' | b'_' | b'~') {
            out.push(b as char);
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn base_without_api_appends_v1() {
        let b = BaseUrl::parse("http://127.0.0.1:8080").unwrap();
        assert_eq!(b.api("/capsules"), "http://127.0.0.1:8080/v1/capsules");
    }

    #[test]
    fn base_with_api_and_slashes_keeps_api() {
        let b = BaseUrl::parse("http://h:1/api/").unwrap();
        assert_eq!(b.api("/capsules/cl-a"), "http://h:1/api/v1/capsules/cl-a");
        let b = BaseUrl::parse("http://h:1/api//").unwrap();
        assert_eq!(b.api("/snapshots"), "http://h:1/api/v1/snapshots");
    }

    #[test]
    fn base_with_v1_is_not_doubled() {
        let b = BaseUrl::parse("http://h:1/api/v1/").unwrap();
        assert_eq!(b.api("/capsules"), "http://h:1/api/v1/capsules");
    }

    #[test]
    fn ws_url_switches_scheme() {
        let b = BaseUrl::parse("http://h:1/api").unwrap();
        assert_eq!(
            b.ws("/capsules/cl-a/pty"),
            "ws://h:1/api/v1/capsules/cl-a/pty"
        );
        let b = BaseUrl::parse("https://app.example/api").unwrap();
        assert_eq!(b.ws("/x"), "wss://app.example/api/v1/x");
    }

    #[test]
    fn non_http_base_is_refused() {
        assert!(matches!(
            BaseUrl::parse("127.0.0.1:8080"),
            Err(ApiError::BadBaseUrl { .. })
        ));
        assert!(BaseUrl::parse("http://").is_err());
    }

    #[test]
    fn segment_escapes_separators() {
        assert_eq!(segment("cl-abc_1.2~"), "cl-abc_1.2~");
        assert_eq!(segment("a/b?c d"), "a%2Fb%3Fc%20d");
    }
}
