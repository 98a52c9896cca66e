//! Decodes a byte stream to text without splitting multi-byte characters across chunks.

/// Keeps an incomplete trailing UTF-8 sequence for the next chunk.
#[derive(Debug, Default)]
pub struct Utf8Decoder {
    pending: Vec<u8>,
}

impl Utf8Decoder {
    /// Text of `chunk` (plus what was pending); invalid bytes become U+FFFD.
    pub fn push(&mut self, chunk: &[u8]) -> String {
        self.pending.extend_from_slice(chunk);
        let keep = match std::str::from_utf8(&self.pending) {
            Ok(_) => 0,
            Err(e) if e.error_len().is_none() => self.pending.len() - e.valid_up_to(),
            Err(_) => {
                // An invalid sequence; only a truncated tail (at most 3 bytes) is kept.
                let tail = &self.pending[self.pending.len().saturating_sub(3)..];
                match std::str::from_utf8(tail) {
                    Err(e) if e.error_len().is_none() => tail.len() - e.valid_up_to(),
                    _ => 0,
                }
            }
        };
        let rest = self.pending.split_off(self.pending.len() - keep);
        let text = String::from_utf8_lossy(&self.pending).into_owned();
        self.pending = rest;
        text
    }

    /// What is left, lossily.
    pub fn finish(&mut self) -> String {
        let text = String::from_utf8_lossy(&self.pending).into_owned();
        self.pending.clear();
        text
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn split_characters_survive() {
        let s = "héllo ✓".as_bytes();
        let mut d = Utf8Decoder::default();
        let mut out = String::new();
        for b in s {
            out.push_str(&d.push(&[*b]));
        }
        out.push_str(&d.finish());
        assert_eq!(out, "héllo ✓");
    }

    #[test]
    fn invalid_bytes_are_replaced() {
        let mut d = Utf8Decoder::default();
        assert_eq!(d.push(&[b'a', 0xff, b'b']), "a\u{fffd}b");
    }
}
