//! The Connect protocol's framing, as E2B's SDK speaks it to envd: JSON messages, unary
//! (`application/json` both ways, errors as a non-2xx status with `{"code","message"}`) and
//! streaming (`application/connect+json`, each message in an envelope of a flag byte and a
//! 4-byte big-endian length; the last envelope has flag [`END_STREAM`] and carries `{}` or
//! `{"error":{…}}`).
//!
//! Bytes from a client are untrusted: [`EnvelopeDecoder`] bounds every message and answers
//! an error, never a panic, for any input.

use axum::body::Body;
use axum::http::{header, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use bytes::{Buf, BufMut, Bytes, BytesMut};
use serde::Serialize;
use serde_json::json;

/// Envelope flag: the message is compressed (we never negotiate compression).
pub const COMPRESSED: u8 = 0x01;
/// Envelope flag: the end-of-stream message.
pub const END_STREAM: u8 = 0x02;
/// Largest message we accept from a client (a stdin chunk, a request).
pub const MAX_MESSAGE: usize = 8 << 20;
/// Content type of a streaming call with the JSON codec.
pub const STREAM_JSON: &str = "application/connect+json";
/// Content type of a unary call with the JSON codec.
pub const UNARY_JSON: &str = "application/json";

/// A Connect error code (the protocol's names; each has an HTTP status for unary answers).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Code {
    /// The call was cancelled.
    Canceled,
    /// The request is malformed.
    InvalidArgument,
    /// The deadline passed.
    DeadlineExceeded,
    /// No such process, file or directory.
    NotFound,
    /// It exists already.
    AlreadyExists,
    /// Refused.
    PermissionDenied,
    /// A bound was reached.
    ResourceExhausted,
    /// The target is in the wrong state.
    FailedPrecondition,
    /// Not implemented by this server.
    Unimplemented,
    /// A failure of the server.
    Internal,
    /// The capsule or its guest cannot be reached.
    Unavailable,
    /// No valid credential.
    Unauthenticated,
}

impl Code {
    /// The protocol's name.
    pub fn as_str(self) -> &'static str {
        match self {
            Code::Canceled => "canceled",
            Code::InvalidArgument => "invalid_argument",
            Code::DeadlineExceeded => "deadline_exceeded",
            Code::NotFound => "not_found",
            Code::AlreadyExists => "already_exists",
            Code::PermissionDenied => "permission_denied",
            Code::ResourceExhausted => "resource_exhausted",
            Code::FailedPrecondition => "failed_precondition",
            Code::Unimplemented => "unimplemented",
            Code::Internal => "internal",
            Code::Unavailable => "unavailable",
            Code::Unauthenticated => "unauthenticated",
        }
    }

    /// The HTTP status of a unary error answer (the protocol's table).
    pub fn status(self) -> StatusCode {
        match self {
            Code::Canceled => StatusCode::from_u16(499).unwrap_or(StatusCode::BAD_REQUEST),
            Code::InvalidArgument => StatusCode::BAD_REQUEST,
            Code::DeadlineExceeded => StatusCode::GATEWAY_TIMEOUT,
            Code::NotFound => StatusCode::NOT_FOUND,
            Code::AlreadyExists | Code::FailedPrecondition => StatusCode::CONFLICT,
            Code::PermissionDenied => StatusCode::FORBIDDEN,
            Code::ResourceExhausted => StatusCode::TOO_MANY_REQUESTS,
            Code::Unimplemented => StatusCode::NOT_IMPLEMENTED,
            Code::Internal => StatusCode::INTERNAL_SERVER_ERROR,
            Code::Unavailable => StatusCode::SERVICE_UNAVAILABLE,
            Code::Unauthenticated => StatusCode::UNAUTHORIZED,
        }
    }
}

/// An error of a Connect call.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{}: {message}", code.as_str())]
pub struct RpcError {
    /// Its code.
    pub code: Code,
    /// Human text.
    pub message: String,
}

impl RpcError {
    /// An error with a code and a message.
    pub fn new(code: Code, message: impl Into<String>) -> Self {
        Self {
            code,
            message: message.into(),
        }
    }

    /// `invalid_argument`.
    pub fn invalid(message: impl Into<String>) -> Self {
        Self::new(Code::InvalidArgument, message)
    }

    /// The JSON of the error (`{"code","message"}`).
    pub fn body(&self) -> serde_json::Value {
        json!({"code": self.code.as_str(), "message": self.message})
    }

    /// The end-of-stream envelope that ends a stream with this error.
    pub fn end_stream(&self) -> Bytes {
        envelope(END_STREAM, &json!({"error": self.body()}))
    }
}

impl IntoResponse for RpcError {
    /// The unary error answer.
    fn into_response(self) -> Response {
        let mut resp = (self.code.status(), axum::Json(self.body())).into_response();
        resp.headers_mut()
            .insert(header::CONTENT_TYPE, HeaderValue::from_static(UNARY_JSON));
        resp
    }
}

/// One decoded envelope.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Envelope {
    /// Flag byte.
    pub flags: u8,
    /// The message bytes.
    pub data: Bytes,
}

/// Frames one message (`flags` 0 for a message, [`END_STREAM`] for the end).
pub fn envelope(flags: u8, message: &impl Serialize) -> Bytes {
    // Our own message types always encode.
    let data = serde_json::to_vec(message).unwrap_or_else(|_| b"{}".to_vec());
    let mut out = BytesMut::with_capacity(5 + data.len());
    out.put_u8(flags);
    out.put_u32(u32::try_from(data.len()).unwrap_or(u32::MAX));
    out.put_slice(&data);
    out.freeze()
}

/// The end-of-stream envelope of a stream that ended well.
pub fn end_ok() -> Bytes {
    envelope(END_STREAM, &json!({}))
}

/// Splits a byte stream into envelopes, bounding each message by `max`.
#[derive(Debug)]
pub struct EnvelopeDecoder {
    buf: BytesMut,
    max: usize,
}

impl EnvelopeDecoder {
    /// A decoder accepting messages up to `max` bytes.
    pub fn new(max: usize) -> Self {
        Self {
            buf: BytesMut::new(),
            max,
        }
    }

    /// Adds bytes read from the client.
    pub fn push(&mut self, data: &[u8]) {
        self.buf.extend_from_slice(data);
    }

    /// The next whole envelope, `Ok(None)` when more bytes are needed. A compressed message
    /// or one over the bound is an error (the stream cannot go on after it).
    pub fn next_envelope(&mut self) -> Result<Option<Envelope>, RpcError> {
        if self.buf.len() < 5 {
            return Ok(None);
        }
        let flags = self.buf[0];
        let len = u32::from_be_bytes([self.buf[1], self.buf[2], self.buf[3], self.buf[4]]) as usize;
        if flags & COMPRESSED != 0 {
            return Err(RpcError::invalid(
                "compressed messages are not accepted (no encoding was negotiated)",
            ));
        }
        if len > self.max {
            return Err(RpcError::new(
                Code::ResourceExhausted,
                format!("message of {len} bytes is over the {} byte limit", self.max),
            ));
        }
        if self.buf.len() < 5 + len {
            return Ok(None);
        }
        self.buf.advance(5);
        let data = self.buf.split_to(len).freeze();
        Ok(Some(Envelope { flags, data }))
    }

    /// Bytes left that do not make a whole envelope.
    pub fn remaining(&self) -> usize {
        self.buf.len()
    }
}

/// Decodes a message of type `T` (unknown fields ignored, as proto3 JSON readers do).
pub fn decode<T: serde::de::DeserializeOwned>(data: &[u8]) -> Result<T, RpcError> {
    let data = if data.iter().all(u8::is_ascii_whitespace) {
        b"{}".as_slice()
    } else {
        data
    };
    serde_json::from_slice(data).map_err(|e| RpcError::invalid(format!("request message: {e}")))
}

/// The one request message of a server-streaming call's body.
pub fn single_request<T: serde::de::DeserializeOwned>(body: &[u8]) -> Result<T, RpcError> {
    let mut d = EnvelopeDecoder::new(MAX_MESSAGE);
    d.push(body);
    let first = d
        .next_envelope()?
        .ok_or_else(|| RpcError::invalid("the request holds no whole message envelope"))?;
    if d.remaining() != 0 || d.next_envelope()?.is_some() {
        return Err(RpcError::invalid(
            "a server-streaming request holds exactly one message",
        ));
    }
    decode(&first.data)
}

/// A unary answer.
pub fn unary(message: &impl Serialize) -> Response {
    let mut resp = axum::Json(message).into_response();
    resp.headers_mut()
        .insert(header::CONTENT_TYPE, HeaderValue::from_static(UNARY_JSON));
    resp
}

/// A streaming answer from a stream of envelopes (the last one should be the end of
/// stream). Each envelope goes out as its own chunk, so a client sees it at once.
pub fn streaming(envelopes: impl futures::Stream<Item = Bytes> + Send + 'static) -> Response {
    use futures::StreamExt;
    let body = Body::from_stream(envelopes.map(Ok::<_, std::convert::Infallible>));
    let mut resp = Response::new(body);
    resp.headers_mut()
        .insert(header::CONTENT_TYPE, HeaderValue::from_static(STREAM_JSON));
    resp
}

/// Streams framed envelopes to the client with `keepalive` between them whenever `ping`
/// passes without one, until `envelopes` ends (its last should be the end of stream) or the
/// client goes away. `hold` lives as long as the stream (an activity guard).
pub fn streaming_with_keepalive(
    envelopes: futures::stream::BoxStream<'static, Bytes>,
    keepalive: Bytes,
    ping: std::time::Duration,
    hold: impl Send + 'static,
) -> Response {
    use futures::StreamExt;
    let (tx, rx) = tokio::sync::mpsc::channel::<Bytes>(16);
    tokio::spawn(async move {
        let _hold = hold;
        let mut envelopes = envelopes;
        let start = tokio::time::Instant::now() + ping;
        let mut ticker = tokio::time::interval_at(start, ping);
        loop {
            tokio::select! {
                next = envelopes.next() => match next {
                    Some(env) => {
                        if tx.send(env).await.is_err() {
                            return;
                        }
                        ticker.reset();
                    }
                    None => return,
                },
                _ = ticker.tick() => {
                    if tx.send(keepalive.clone()).await.is_err() {
                        return;
                    }
                }
            }
        }
    });
    streaming(tokio_stream::wrappers::ReceiverStream::new(rx))
}

/// A stream that fails before its first message: a 200 with only the end of stream
/// carrying the error, as the protocol answers a streaming call.
pub fn stream_error(e: RpcError) -> Response {
    streaming(futures::stream::iter([e.end_stream()]))
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn round_trips_and_waits_for_whole_envelopes() {
        let a = envelope(0, &json!({"a": 1}));
        let b = end_ok();
        let mut all = a.to_vec();
        all.extend_from_slice(&b);
        let mut d = EnvelopeDecoder::new(MAX_MESSAGE);
        for (i, byte) in all.iter().enumerate() {
            d.push(&[*byte]);
            let got = d.next_envelope().unwrap();
            if i == a.len() - 1 {
                assert_eq!(got.unwrap().data.as_ref(), br#"{"a":1}"#);
            } else if i == all.len() - 1 {
                let e = got.unwrap();
                assert_eq!((e.flags, e.data.as_ref()), (END_STREAM, b"{}".as_slice()));
            } else {
                assert!(got.is_none(), "at byte {i}");
            }
        }
    }

    #[test]
    fn refuses_compressed_and_oversized_messages() {
        let mut d = EnvelopeDecoder::new(4);
        d.push(&[COMPRESSED, 0, 0, 0, 1, b'x']);
        assert_eq!(d.next_envelope().unwrap_err().code, Code::InvalidArgument);
        let mut d = EnvelopeDecoder::new(4);
        d.push(&[0, 0xff, 0xff, 0xff, 0xff]);
        assert_eq!(d.next_envelope().unwrap_err().code, Code::ResourceExhausted);
    }

    #[test]
    fn a_streaming_request_has_one_message() {
        #[derive(serde::Deserialize)]
        struct M {
            x: u32,
        }
        let one = envelope(0, &json!({"x": 7, "unknown": true}));
        assert_eq!(single_request::<M>(&one).unwrap().x, 7);
        let mut two = one.to_vec();
        two.extend_from_slice(&one);
        assert!(single_request::<M>(&two).is_err());
        assert!(single_request::<M>(&one[..3]).is_err());
        assert!(single_request::<M>(b"").is_err());
    }

    #[test]
    fn errors_end_the_stream_in_the_protocol_shape() {
        let e = RpcError::new(Code::NotFound, "no such process");
        let bytes = e.end_stream();
        let mut d = EnvelopeDecoder::new(MAX_MESSAGE);
        d.push(&bytes);
        let env = d.next_envelope().unwrap().unwrap();
        assert_eq!(env.flags, END_STREAM);
        let v: serde_json::Value = serde_json::from_slice(&env.data).unwrap();
        assert_eq!(v["error"]["code"], "not_found");
        assert_eq!(Code::NotFound.status(), StatusCode::NOT_FOUND);
    }

    proptest! {
        /// Any bytes, cut anywhere: the decoder answers envelopes or an error, never panics,
        /// and never hands out a message over its bound.
        #[test]
        fn arbitrary_bytes_never_panic(
            data in proptest::collection::vec(any::<u8>(), 0..2048),
            cuts in proptest::collection::vec(0usize..2048, 0..8),
            max in 0usize..512,
        ) {
            let mut d = EnvelopeDecoder::new(max);
            let mut points: Vec<usize> = cuts.into_iter().map(|c| c.min(data.len())).collect();
            points.push(data.len());
            points.sort_unstable();
            let mut at = 0;
            'outer: for p in points {
                d.push(&data[at..p]);
                at = p;
                loop {
                    match d.next_envelope() {
                        Ok(Some(env)) => prop_assert!(env.data.len() <= max),
                        Ok(None) => break,
                        Err(_) => break 'outer,
                    }
                }
            }
            let _ = single_request::<serde_json::Value>(&data);
            let _ = decode::<serde_json::Value>(&data);
        }

        /// What we frame, we read back whole, however it is cut.
        #[test]
        fn framed_messages_read_back(
            texts in proptest::collection::vec(".{0,64}", 1..6),
            cut in 0usize..64,
        ) {
            let mut all = Vec::new();
            for t in &texts {
                all.extend_from_slice(&envelope(0, &json!({"t": t})));
            }
            let mut d = EnvelopeDecoder::new(MAX_MESSAGE);
            let cut = cut.min(all.len());
            d.push(&all[..cut]);
            let mut got = Vec::new();
            while let Some(e) = d.next_envelope().unwrap() { got.push(e); }
            d.push(&all[cut..]);
            while let Some(e) = d.next_envelope().unwrap() { got.push(e); }
            prop_assert_eq!(got.len(), texts.len());
            for (e, t) in got.iter().zip(&texts) {
                let v: serde_json::Value = serde_json::from_slice(&e.data).unwrap();
                prop_assert_eq!(v["t"].as_str(), Some(t.as_str()));
            }
        }
    }
}
