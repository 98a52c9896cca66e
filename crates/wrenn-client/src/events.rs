//! `wrenn events`: the team's live event stream (`GET /v1/events/stream`, Server-Sent
//! Events), one line per event, until Ctrl-C.

use std::io::Write;

use futures::StreamExt;
use serde_json::Value;

use crate::api::ApiClient;
use crate::error::ApiError;
use crate::table::short_time;

/// One Server-Sent Event.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct SseEvent {
    /// The `event:` field (empty when absent).
    pub event: String,
    /// The `data:` lines joined by `\n`.
    pub data: String,
}

/// Splits a byte stream into Server-Sent Events; comments and keep-alives are dropped.
#[derive(Debug, Default)]
pub struct SseParser {
    buf: Vec<u8>,
    event: String,
    data: Vec<String>,
}

impl SseParser {
    /// Feeds bytes; returns the events they complete.
    pub fn push(&mut self, bytes: &[u8]) -> Vec<SseEvent> {
        self.buf.extend_from_slice(bytes);
        let mut out = Vec::new();
        while let Some(nl) = self.buf.iter().position(|b| *b == b'\n') {
            let mut line: Vec<u8> = self.buf.drain(..=nl).collect();
            line.pop();
            if line.last() == Some(&b'\r') {
                line.pop();
            }
            let line = String::from_utf8_lossy(&line).into_owned();
            if line.is_empty() {
                if !self.data.is_empty() {
                    out.push(SseEvent {
                        event: std::mem::take(&mut self.event),
                        data: self.data.join("\n"),
                    });
                }
                self.event.clear();
                self.data.clear();
                continue;
            }
            if line.starts_with(':') {
                continue;
            }
            let (field, value) = match line.split_once(':') {
                Some((f, v)) => (f, v.strip_prefix(' ').unwrap_or(v)),
                None => (line.as_str(), ""),
            };
            match field {
                "event" => self.event = value.to_string(),
                "data" => self.data.push(value.to_string()),
                _ => {}
            }
        }
        out
    }
}

/// The human line of an event's JSON:
/// `2026-11-01 10:00:00Z  capsule.create  cl-…  success  api_key admin`.
pub fn event_line(v: &Value) -> String {
    let s = |v: &Value| v.as_str().unwrap_or_default().to_string();
    let mut cols = vec![
        short_time(&s(&v["timestamp"])),
        format!("{:<24}", s(&v["event"])),
        format!("{:<28}", s(&v["resource"]["id"])),
    ];
    let mut outcome = s(&v["outcome"]);
    if let (Some(from), Some(to)) = (v["metadata"]["from"].as_str(), v["metadata"]["to"].as_str()) {
        outcome = format!("{from} -> {to}");
    }
    if let Some(err) = v["error"].as_str() {
        outcome = format!("{outcome} ({err})");
    }
    cols.push(format!("{outcome:<20}"));
    let actor = [s(&v["actor"]["type"]), s(&v["actor"]["name"])]
        .into_iter()
        .filter(|p| !p.is_empty())
        .collect::<Vec<_>>()
        .join(" ");
    cols.push(actor);
    if let Some(reason) = v["metadata"]["reason"].as_str() {
        cols.push(format!("reason={reason}"));
    }
    cols.join("  ").trim_end().to_string()
}

/// Why the stream ended badly.
#[derive(Debug, thiserror::Error)]
pub enum EventsError {
    /// Opening or reading the stream failed.
    #[error(transparent)]
    Api(#[from] ApiError),
    /// The server ended the stream.
    #[error("connection: the server closed the event stream")]
    Closed,
    /// Writing to stdout failed.
    #[error("output: writing to the terminal failed")]
    Io(#[from] std::io::Error),
}

/// Prints the stream until Ctrl-C (exit code 0) or until it breaks.
pub async fn run(api: &ApiClient, json: bool) -> Result<i32, EventsError> {
    let resp = api.events_stream().await?;
    let mut reader = SseReader::new(resp, api.base().api("/events/stream"));
    let ctrl_c = tokio::signal::ctrl_c();
    tokio::pin!(ctrl_c);
    loop {
        let events = tokio::select! {
            _ = &mut ctrl_c => return Ok(0),
            e = reader.next() => e?,
        };
        let Some(events) = events else {
            return Err(EventsError::Closed);
        };
        for ev in events {
            let v: Value = serde_json::from_str(&ev.data).unwrap_or(Value::String(ev.data));
            let connected = v["event"] == "connected";
            let line = if json {
                v.to_string()
            } else if connected {
                eprintln!("listening for events (Ctrl-C to stop)");
                continue;
            } else {
                event_line(&v)
            };
            let mut out = std::io::stdout().lock();
            match writeln!(out, "{line}").and_then(|_| out.flush()) {
                Ok(()) => {}
                // The reader went away (`wrenn events | head`): done.
                Err(e) if e.kind() == std::io::ErrorKind::BrokenPipe => return Ok(0),
                Err(e) => return Err(e.into()),
            }
        }
    }
}

/// Server-Sent Events read from a streaming answer, chunk by chunk.
pub struct SseReader {
    body: futures::stream::BoxStream<'static, reqwest::Result<bytes::Bytes>>,
    parser: SseParser,
    url: String,
}

impl SseReader {
    /// Reads the events of `resp` (the answer of `url`).
    pub fn new(resp: reqwest::Response, url: String) -> Self {
        Self {
            body: resp.bytes_stream().boxed(),
            parser: SseParser::default(),
            url,
        }
    }

    /// The events the next chunk completes (maybe none); `None` once the server closed the
    /// stream. Cancel-safe: nothing read is lost when the future is dropped.
    pub async fn next(&mut self) -> Result<Option<Vec<SseEvent>>, ApiError> {
        match self.body.next().await {
            None => Ok(None),
            Some(Err(e)) => Err(ApiError::Stream {
                url: self.url.clone(),
                source: e.without_url(),
            }),
            Some(Ok(chunk)) => Ok(Some(self.parser.push(&chunk))),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn parser_handles_split_chunks_comments_and_crlf() {
        let mut p = SseParser::default();
        assert!(p.push(b"data: {\"event\":\"connected\"}\n").is_empty());
        let got = p.push(b"\n: keepalive\n\nevent: capsule.create\r\ndata: {\"a\"");
        assert_eq!(
            got,
            vec![SseEvent {
                event: String::new(),
                data: r#"{"event":"connected"}"#.into()
            }]
        );
        let got = p.push(b":1}\r\n\r\n");
        assert_eq!(
            got,
            vec![SseEvent {
                event: "capsule.create".into(),
                data: r#"{"a":1}"#.into()
            }]
        );
    }

    #[test]
    fn event_lines() {
        let v = json!({"event":"capsule.pause","outcome":"success",
            "resource":{"id":"cl-abc","type":"capsule"},
            "actor":{"type":"system","id":null,"name":null},
            "metadata":{"reason":"ttl_expired"},"timestamp":"2026-11-01T10:00:00.250Z"});
        let line = event_line(&v);
        assert!(
            line.starts_with("2026-11-01 10:00:00Z  capsule.pause "),
            "{line}"
        );
        assert!(line.contains(" cl-abc "), "{line}");
        assert!(
            line.ends_with(&format!("{:<20}  system  reason=ttl_expired", "success")),
            "{line}"
        );
        let failed = json!({"event":"capsule.create","outcome":"error","error":"no room",
            "resource":{"id":"cl-x"},"actor":{"type":"api_key","name":"ci"},
            "timestamp":"2026-11-01T10:00:00Z"});
        assert!(event_line(&failed).ends_with(&format!("{:<20}  api_key ci", "error (no room)")));
    }
}
