//! `ApiClient`: typed calls of the public REST API.

use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use reqwest::{Method, RequestBuilder};
use serde::de::DeserializeOwned;
use serde::Serialize;
use serde_json::Value;

use crate::error::{ApiError, Result};
use crate::types::{
    BackgroundExec, Build, Capsule, CreateBuild, CreateCapsule, CreateSnapshot, ExecRequest,
    ExecResult, FileEntry, Metrics, Process, Template,
};
use crate::urls::{segment, BaseUrl};

/// Header carrying the API key.
pub const API_KEY_HEADER: &str = "X-API-Key";

/// A client of one Wrenn server with one API key.
#[derive(Debug, Clone)]
pub struct ApiClient {
    http: reqwest::Client,
    base: BaseUrl,
    key: String,
    ws_tls: Arc<rustls::ClientConfig>,
}

/// Turns an error answer into [`ApiError::Api`]; a non-JSON body becomes `internal_error`.
pub fn error_from_body(status: u16, body: &[u8]) -> ApiError {
    let parsed: Option<(String, String)> =
        serde_json::from_slice::<Value>(body).ok().and_then(|v| {
            let e = v.get("error")?;
            Some((
                e.get("code")?.as_str()?.to_string(),
                e.get("message")
                    .and_then(|m| m.as_str())
                    .unwrap_or_default()
                    .to_string(),
            ))
        });
    let (code, message) = parsed.unwrap_or_else(|| {
        let text = String::from_utf8_lossy(body);
        let text = text.trim();
        let message = if text.is_empty() {
            format!("HTTP {status} without an error body")
        } else {
            format!(
                "HTTP {status}: {}",
                text.chars().take(200).collect::<String>()
            )
        };
        ("internal_error".to_string(), message)
    });
    ApiError::Api {
        status,
        code,
        message,
    }
}

impl ApiClient {
    /// A client of the server at `base_url` (with or without `/api`) using `api_key`.
    pub fn new(base_url: &str, api_key: Option<&str>) -> Result<Self> {
        Self::with_ca_cert(base_url, api_key, None)
    }

    /// Like [`ApiClient::new`], trusting the PEM certificates in `ca_cert` besides the
    /// webpki roots for `https://` and `wss://`.
    pub fn with_ca_cert(
        base_url: &str,
        api_key: Option<&str>,
        ca_cert: Option<&Path>,
    ) -> Result<Self> {
        let base = BaseUrl::parse(base_url)?;
        let key = match api_key.map(str::trim) {
            Some(k) if !k.is_empty() => k.to_string(),
            _ => return Err(ApiError::NoApiKey),
        };
        let rest_tls = crate::tls::client_config(ca_cert, &[b"http/1.1"])?;
        let ws_tls = crate::tls::client_config(ca_cert, &[])?;
        let http = reqwest::Client::builder()
            .connect_timeout(Duration::from_secs(30))
            .use_preconfigured_tls((*rest_tls).clone())
            .build()
            .map_err(|source| ApiError::Transport {
                url: base.as_str().to_string(),
                source,
            })?;
        Ok(Self {
            http,
            base,
            key,
            ws_tls,
        })
    }

    /// The TLS configuration of `wss://` connections.
    pub fn ws_tls(&self) -> Arc<rustls::ClientConfig> {
        self.ws_tls.clone()
    }

    /// The normalised base URL.
    pub fn base(&self) -> &BaseUrl {
        &self.base
    }

    /// The API key.
    pub fn api_key(&self) -> &str {
        &self.key
    }

    fn request(&self, method: Method, path: &str) -> (String, RequestBuilder) {
        let url = self.base.api(path);
        let rb = self
            .http
            .request(method, &url)
            .header(API_KEY_HEADER, &self.key);
        (url, rb)
    }

    /// Sends the request; an error answer becomes [`ApiError::Api`], a success is returned
    /// unread (for streaming bodies).
    async fn send_streaming(url: &str, rb: RequestBuilder) -> Result<reqwest::Response> {
        let resp = rb.send().await.map_err(|e| ApiError::Transport {
            url: url.to_string(),
            source: e.without_url(),
        })?;
        let status = resp.status();
        if status.as_u16() >= 400 {
            let body = resp.bytes().await.map_err(|e| ApiError::Transport {
                url: url.to_string(),
                source: e.without_url(),
            })?;
            return Err(error_from_body(status.as_u16(), &body));
        }
        tracing::debug!(%url, status = status.as_u16(), "API answered");
        Ok(resp)
    }

    async fn send(url: &str, rb: RequestBuilder) -> Result<Vec<u8>> {
        let resp = Self::send_streaming(url, rb).await?;
        let body = resp.bytes().await.map_err(|e| ApiError::Transport {
            url: url.to_string(),
            source: e.without_url(),
        })?;
        Ok(body.to_vec())
    }

    async fn json<T: DeserializeOwned>(
        &self,
        method: Method,
        path: &str,
        body: Option<&impl Serialize>,
    ) -> Result<T> {
        let (url, mut rb) = self.request(method, path);
        if let Some(b) = body {
            rb = rb.json(b);
        }
        let body = Self::send(&url, rb).await?;
        serde_json::from_slice(&body).map_err(|source| ApiError::Decode { url, source })
    }

    async fn no_content(&self, method: Method, path: &str) -> Result<()> {
        let (url, rb) = self.request(method, path);
        Self::send(&url, rb).await.map(|_| ())
    }

    /// `POST /v1/capsules`.
    pub async fn create_capsule(&self, req: &CreateCapsule) -> Result<Capsule> {
        self.json(Method::POST, "/capsules", Some(req)).await
    }

    /// `GET /v1/capsules`.
    pub async fn list_capsules(&self) -> Result<Vec<Capsule>> {
        self.json(Method::GET, "/capsules", None::<&()>).await
    }

    /// `GET /v1/capsules/{id}`.
    pub async fn get_capsule(&self, id: &str) -> Result<Capsule> {
        self.json(
            Method::GET,
            &format!("/capsules/{}", segment(id)),
            None::<&()>,
        )
        .await
    }

    /// `DELETE /v1/capsules/{id}`.
    pub async fn destroy_capsule(&self, id: &str) -> Result<()> {
        self.no_content(Method::DELETE, &format!("/capsules/{}", segment(id)))
            .await
    }

    /// `POST /v1/capsules/{id}/pause`.
    pub async fn pause_capsule(&self, id: &str) -> Result<Capsule> {
        self.json(
            Method::POST,
            &format!("/capsules/{}/pause", segment(id)),
            None::<&()>,
        )
        .await
    }

    /// `POST /v1/capsules/{id}/resume`.
    pub async fn resume_capsule(&self, id: &str) -> Result<Capsule> {
        self.json(
            Method::POST,
            &format!("/capsules/{}/resume", segment(id)),
            None::<&()>,
        )
        .await
    }

    /// `POST /v1/capsules/{id}/ping`.
    pub async fn ping_capsule(&self, id: &str) -> Result<()> {
        self.no_content(Method::POST, &format!("/capsules/{}/ping", segment(id)))
            .await
    }

    /// `POST /v1/capsules/{id}/exec` in the foreground.
    pub async fn exec(&self, id: &str, req: &ExecRequest) -> Result<ExecResult> {
        self.json(
            Method::POST,
            &format!("/capsules/{}/exec", segment(id)),
            Some(req),
        )
        .await
    }

    /// `POST /v1/capsules/{id}/exec` with `background: true`.
    pub async fn exec_background(&self, id: &str, req: &ExecRequest) -> Result<BackgroundExec> {
        let mut body = serde_json::to_value(req).map_err(|source| ApiError::Decode {
            url: self.base.api("/capsules"),
            source,
        })?;
        body["background"] = Value::Bool(true);
        self.json(
            Method::POST,
            &format!("/capsules/{}/exec", segment(id)),
            Some(&body),
        )
        .await
    }

    /// `GET /v1/capsules/{id}/processes`.
    pub async fn list_processes(&self, id: &str) -> Result<Vec<Process>> {
        #[derive(serde::Deserialize)]
        struct List {
            processes: Vec<Process>,
        }
        let list: List = self
            .json(
                Method::GET,
                &format!("/capsules/{}/processes", segment(id)),
                None::<&()>,
            )
            .await?;
        Ok(list.processes)
    }

    /// `DELETE /v1/capsules/{id}/processes/{pid or tag}[?signal=]`.
    pub async fn kill_process(&self, id: &str, selector: &str, signal: Option<&str>) -> Result<()> {
        let mut path = format!("/capsules/{}/processes/{}", segment(id), segment(selector));
        if let Some(sig) = signal {
            path.push_str(&format!("?signal={}", segment(sig)));
        }
        self.no_content(Method::DELETE, &path).await
    }

    /// `GET /v1/capsules/{id}/metrics?range=`.
    pub async fn metrics(&self, id: &str, range: &str) -> Result<Metrics> {
        self.json(
            Method::GET,
            &format!("/capsules/{}/metrics?range={}", segment(id), segment(range)),
            None::<&()>,
        )
        .await
    }

    /// `POST /v1/capsules/{id}/files/list` down to `depth` levels (1..=32).
    pub async fn list_files(&self, id: &str, path: &str, depth: u32) -> Result<Vec<FileEntry>> {
        #[derive(serde::Deserialize)]
        struct List {
            entries: Vec<FileEntry>,
        }
        let list: List = self
            .json(
                Method::POST,
                &format!("/capsules/{}/files/list", segment(id)),
                Some(&serde_json::json!({"path": path, "depth": depth})),
            )
            .await?;
        Ok(list.entries)
    }

    /// `POST /v1/capsules/{id}/files/mkdir` (parents too); an existing directory is `conflict`.
    pub async fn mkdir(&self, id: &str, path: &str) -> Result<()> {
        let (url, rb) = self.request(
            Method::POST,
            &format!("/capsules/{}/files/mkdir", segment(id)),
        );
        Self::send(&url, rb.json(&serde_json::json!({ "path": path })))
            .await
            .map(|_| ())
    }

    /// `POST /v1/capsules/{id}/files/stream/write`: streams `body` (`len` bytes) to `path`.
    pub async fn write_file_stream(
        &self,
        id: &str,
        path: &str,
        body: reqwest::Body,
        len: u64,
    ) -> Result<()> {
        let form = reqwest::multipart::Form::new()
            .text("path", path.to_string())
            .part(
                "file",
                reqwest::multipart::Part::stream_with_length(body, len)
                    .file_name("file")
                    .mime_str("application/octet-stream")
                    .map_err(|source| ApiError::Transport {
                        url: self.base.api("/files/stream/write"),
                        source,
                    })?,
            );
        let (url, rb) = self.request(
            Method::POST,
            &format!("/capsules/{}/files/stream/write", segment(id)),
        );
        Self::send(&url, rb.multipart(form)).await.map(|_| ())
    }

    /// `POST /v1/capsules/{id}/files/stream/read`: the answer, its body not yet read.
    pub async fn read_file_stream(&self, id: &str, path: &str) -> Result<reqwest::Response> {
        let (url, rb) = self.request(
            Method::POST,
            &format!("/capsules/{}/files/stream/read", segment(id)),
        );
        Self::send_streaming(&url, rb.json(&serde_json::json!({ "path": path }))).await
    }

    /// `GET /v1/events/stream`: the Server-Sent Events answer, its body not yet read.
    pub async fn events_stream(&self) -> Result<reqwest::Response> {
        let (url, rb) = self.request(Method::GET, "/events/stream");
        Self::send_streaming(&url, rb.header("Accept", "text/event-stream")).await
    }

    /// `POST /v1/snapshots[?overwrite=true]`.
    pub async fn create_snapshot(&self, req: &CreateSnapshot, overwrite: bool) -> Result<Template> {
        let path = if overwrite {
            "/snapshots?overwrite=true"
        } else {
            "/snapshots"
        };
        self.json(Method::POST, path, Some(req)).await
    }

    /// `GET /v1/snapshots[?type=base|snapshot]`.
    pub async fn list_snapshots(&self, kind: Option<&str>) -> Result<Vec<Template>> {
        let path = match kind {
            Some(k) => format!("/snapshots?type={}", segment(k)),
            None => "/snapshots".to_string(),
        };
        self.json(Method::GET, &path, None::<&()>).await
    }

    /// `DELETE /v1/snapshots/{name}`.
    pub async fn delete_snapshot(&self, name: &str) -> Result<()> {
        self.no_content(Method::DELETE, &format!("/snapshots/{}", segment(name)))
            .await
    }

    /// `POST /v1/admin/templates/builds` (admin team only).
    pub async fn create_build(&self, req: &CreateBuild) -> Result<Build> {
        self.json(Method::POST, "/admin/templates/builds", Some(req))
            .await
    }

    /// `GET /v1/admin/templates/builds`.
    pub async fn list_builds(&self) -> Result<Vec<Build>> {
        self.json(Method::GET, "/admin/templates/builds", None::<&()>)
            .await
    }

    /// `GET /v1/admin/templates/builds/{id}`.
    pub async fn get_build(&self, id: &str) -> Result<Build> {
        let path = format!("/admin/templates/builds/{}", segment(id));
        self.json(Method::GET, &path, None::<&()>).await
    }

    /// `POST /v1/admin/templates/builds/{id}/cancel`.
    pub async fn cancel_build(&self, id: &str) -> Result<Build> {
        let path = format!("/admin/templates/builds/{}/cancel", segment(id));
        self.json(Method::POST, &path, None::<&()>).await
    }

    /// `GET /v1/admin/templates/builds/{id}/logs`: the Server-Sent Events answer, its body not
    /// yet read.
    pub async fn build_logs(&self, id: &str) -> Result<reqwest::Response> {
        let path = format!("/admin/templates/builds/{}/logs", segment(id));
        let (url, rb) = self.request(Method::GET, &path);
        Self::send_streaming(&url, rb.header("Accept", "text/event-stream")).await
    }

    /// `DELETE /v1/admin/templates/{name}`: removes a built template.
    pub async fn delete_built_template(&self, name: &str) -> Result<()> {
        let path = format!("/admin/templates/{}", segment(name));
        self.no_content(Method::DELETE, &path).await
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn error_body_gives_code_and_message() {
        let e = error_from_body(
            409,
            br#"{"error":{"code":"invalid_state","message":"capsule is paused"}}"#,
        );
        assert_eq!(e.to_string(), "invalid_state: capsule is paused");
    }

    #[test]
    fn non_json_error_is_internal_error() {
        let e = error_from_body(502, b"Bad Gateway");
        assert_eq!(e.code(), Some("internal_error"));
        assert_eq!(e.to_string(), "internal_error: HTTP 502: Bad Gateway");
        let e = error_from_body(500, b"");
        assert_eq!(
            e.to_string(),
            "internal_error: HTTP 500 without an error body"
        );
    }

    #[test]
    fn missing_key_is_refused_before_any_request() {
        assert!(matches!(
            ApiClient::new("http://127.0.0.1:1", None),
            Err(ApiError::NoApiKey)
        ));
        assert!(matches!(
            ApiClient::new("http://127.0.0.1:1", Some("  ")),
            Err(ApiError::NoApiKey)
        ));
    }

    #[tokio::test]
    async fn unreachable_server_is_a_connection_error() {
        // Bind then drop a listener to get a port nothing listens on.
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap()
            .port();
        let c = ApiClient::new(&format!("http://127.0.0.1:{port}"), Some("wrn_x")).unwrap();
        let err = c.list_capsules().await.unwrap_err();
        assert!(matches!(err, ApiError::Transport { .. }), "{err:?}");
        assert!(crate::error::chain(&err).starts_with(&format!(
            "connection: request to http://127.0.0.1:{port}/v1/capsules failed"
        )));
    }
}
