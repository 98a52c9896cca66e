//! Errors of the API client: what the server said, or why we could not hear it.

/// An error of an [`crate::ApiClient`] call.
#[derive(Debug, thiserror::Error)]
pub enum ApiError {
    /// The server answered with an error body `{"error":{"code","message"}}`.
    #[error("{code}: {message}")]
    Api {
        /// HTTP status of the answer.
        status: u16,
        /// The contract's snake_case error code (`not_found`, `invalid_state`, …).
        code: String,
        /// The server's human message.
        message: String,
    },
    /// No API key was given.
    #[error("unauthorized: no API key (set WRENN_API_KEY or pass --api-key)")]
    NoApiKey,
    /// The base URL cannot be used.
    #[error("invalid_request: base URL {url:?} must start with http:// or https://")]
    BadBaseUrl {
        /// The URL as given.
        url: String,
    },
    /// The request did not reach the server or its answer was cut off.
    #[error("connection: request to {url} failed")]
    Transport {
        /// The URL requested.
        url: String,
        /// What went wrong underneath.
        #[source]
        source: reqwest::Error,
    },
    /// The server's answer is not what the contract says.
    #[error("invalid_response: {url} answered something unexpected")]
    Decode {
        /// The URL requested.
        url: String,
        /// The parse failure.
        #[source]
        source: serde_json::Error,
    },
    /// TLS for an `https://` base URL could not be set up.
    #[error(transparent)]
    Tls(#[from] crate::tls::TlsError),
    /// A stream of the answer broke while it was read.
    #[error("connection: reading the answer of {url} failed")]
    Stream {
        /// The URL requested.
        url: String,
        /// What went wrong underneath.
        #[source]
        source: reqwest::Error,
    },
    /// The WebSocket could not be opened or broke.
    #[error("connection: WebSocket {url} failed")]
    WebSocket {
        /// The URL of the socket.
        url: String,
        /// What went wrong underneath.
        #[source]
        source: Box<tokio_tungstenite::tungstenite::Error>,
    },
}

impl ApiError {
    /// The contract's error code when the server sent one.
    pub fn code(&self) -> Option<&str> {
        match self {
            ApiError::Api { code, .. } => Some(code),
            _ => None,
        }
    }
}

/// Result of API client calls.
pub type Result<T> = std::result::Result<T, ApiError>;

/// The error and its sources as one line: `a: b: c`.
pub fn chain(err: &(dyn std::error::Error + 'static)) -> String {
    let mut out = err.to_string();
    let mut cur = err.source();
    while let Some(e) = cur {
        let s = e.to_string();
        if !out.ends_with(&s) {
            out.push_str(": ");
            out.push_str(&s);
        }
        cur = e.source();
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn api_error_displays_code_and_message() {
        let e = ApiError::Api {
            status: 404,
            code: "not_found".into(),
            message: "capsule cl-x not found".into(),
        };
        assert_eq!(e.to_string(), "not_found: capsule cl-x not found");
        assert_eq!(e.code(), Some("not_found"));
    }

    #[test]
    fn chain_joins_sources() {
        let inner = std::io::Error::other("connection refused");
        #[derive(Debug, thiserror::Error)]
        #[error("could not reach it")]
        struct Outer(#[source] std::io::Error);
        assert_eq!(
            chain(&Outer(inner)),
            "could not reach it: connection refused"
        );
    }
}
