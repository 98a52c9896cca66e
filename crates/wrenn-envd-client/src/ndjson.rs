//! Incremental NDJSON decoding of envd's event streams, with bounded memory.
//!
//! The bytes come from the guest, so nothing about them is trusted: a line longer than
//! [`NDJSON_LINE_MAX`] is an error rather than a reason to buffer more, a line that is not a
//! valid event is an error, and nothing panics.

use bytes::{Buf, BytesMut};
use serde::de::DeserializeOwned;
use wrenn_protocol::NDJSON_LINE_MAX;

/// Why an NDJSON stream from envd was given up.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum NdjsonError {
    /// A line grew past the limit without a newline.
    #[error("event line from envd longer than {limit} bytes")]
    LineTooLong {
        /// The limit in force.
        limit: usize,
    },
    /// A line is not a valid event.
    #[error("bad event from envd: {0}")]
    BadEvent(String),
}

/// Splits pushed bytes into newline-terminated JSON events. Blank lines are skipped; a last
/// line without a newline is ignored (the stream was cut).
///
/// Memory: after [`NdjsonDecoder::next_event`] returned `None`, at most `max_line` bytes are
/// held (plus the last chunk pushed); past that `next_event` reports
/// [`NdjsonError::LineTooLong`].
#[derive(Debug)]
pub struct NdjsonDecoder {
    buf: BytesMut,
    /// Bytes of `buf` already searched for a newline.
    scanned: usize,
    max_line: usize,
}

impl Default for NdjsonDecoder {
    fn default() -> Self {
        Self::new(NDJSON_LINE_MAX)
    }
}

impl NdjsonDecoder {
    /// A decoder refusing lines longer than `max_line` bytes.
    pub fn new(max_line: usize) -> Self {
        Self {
            buf: BytesMut::new(),
            scanned: 0,
            max_line,
        }
    }

    /// Adds received bytes.
    pub fn push(&mut self, data: &[u8]) {
        self.buf.extend_from_slice(data);
    }

    /// Bytes held, waiting for the end of a line.
    pub fn buffered(&self) -> usize {
        self.buf.len()
    }

    /// The next complete event; `None` when more bytes are needed. After an error the
    /// decoder's state is unspecified: end the stream.
    pub fn next_event<T: DeserializeOwned>(&mut self) -> Option<Result<T, NdjsonError>> {
        loop {
            let Some(off) = self.buf[self.scanned..].iter().position(|b| *b == b'\n') else {
                self.scanned = self.buf.len();
                if self.buf.len() > self.max_line {
                    return Some(Err(NdjsonError::LineTooLong {
                        limit: self.max_line,
                    }));
                }
                return None;
            };
            let nl = self.scanned + off;
            self.scanned = 0;
            if nl > self.max_line {
                self.buf.advance(nl + 1);
                return Some(Err(NdjsonError::LineTooLong {
                    limit: self.max_line,
                }));
            }
            let line = self.buf.split_to(nl + 1);
            let line = &line[..nl];
            if line.iter().all(|b| b.is_ascii_whitespace()) {
                continue;
            }
            return Some(
                serde_json::from_slice::<T>(line).map_err(|e| NdjsonError::BadEvent(e.to_string())),
            );
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use wrenn_protocol::ProcessEvent;

    #[test]
    fn a_line_without_newline_is_bounded() {
        let mut d = NdjsonDecoder::new(1000);
        for _ in 0..10 {
            d.push(&[b'x'; 300]);
            match d.next_event::<ProcessEvent>() {
                None => assert!(d.buffered() <= 1000),
                Some(Err(NdjsonError::LineTooLong { limit: 1000 })) => return,
                other => panic!("{other:?}"),
            }
        }
        panic!("a 3000-byte line was accepted");
    }

    #[test]
    fn events_split_anywhere() {
        let wire = b"{\"type\":\"started\",\"pid\":4}\n\n{\"type\":\"stdout\",\"data\":\"aGk=\"}\n";
        for at in 0..=wire.len() {
            let mut d = NdjsonDecoder::default();
            let mut got = Vec::new();
            for part in [&wire[..at], &wire[at..]] {
                d.push(part);
                while let Some(ev) = d.next_event::<ProcessEvent>() {
                    got.push(ev.unwrap());
                }
            }
            assert_eq!(
                got,
                vec![
                    ProcessEvent::Started { pid: 4 },
                    ProcessEvent::Stdout {
                        data: b"hi".to_vec()
                    }
                ]
            );
        }
    }
}
