//! Frame format: `"WRN1"` · kind u8 · session u64 LE · length u32 LE · payload · CRC-32 u32 LE
//! (the CRC covers kind, session, length and payload).

use bytes::{Buf, BufMut, Bytes, BytesMut};

/// Start of every frame.
pub const MAGIC: &[u8; 4] = b"WRN1";
/// Header bytes before the payload.
pub const HEADER: usize = 4 + 1 + 8 + 4;
/// Largest payload of one frame.
pub const MAX_PAYLOAD: usize = 256 * 1024;

/// What a frame is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[repr(u8)]
pub enum FrameKind {
    /// Host → guest: start a new session with this id.
    Hello = 1,
    /// Guest → host: the session is open.
    Ack = 2,
    /// Bytes of the session's HTTP/2 stream.
    Data = 3,
    /// Host → guest: send the payload back (raw channel round trip).
    Echo = 4,
    /// Guest → host: the echoed payload.
    EchoReply = 5,
}

impl FrameKind {
    fn from_u8(b: u8) -> Option<Self> {
        Some(match b {
            1 => Self::Hello,
            2 => Self::Ack,
            3 => Self::Data,
            4 => Self::Echo,
            5 => Self::EchoReply,
            _ => return None,
        })
    }
}

/// One frame.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Frame {
    /// Kind.
    pub kind: FrameKind,
    /// Session id.
    pub session: u64,
    /// Payload.
    pub payload: Bytes,
}

impl Frame {
    /// A frame without payload.
    pub fn control(kind: FrameKind, session: u64) -> Self {
        Self {
            kind,
            session,
            payload: Bytes::new(),
        }
    }

    /// Appends the encoded frame to `out`.
    pub fn encode(&self, out: &mut BytesMut) {
        debug_assert!(self.payload.len() <= MAX_PAYLOAD);
        out.reserve(HEADER + self.payload.len() + 4);
        out.put_slice(MAGIC);
        let start = out.len();
        out.put_u8(self.kind as u8);
        out.put_u64_le(self.session);
        out.put_u32_le(self.payload.len() as u32);
        out.put_slice(&self.payload);
        let crc = crc32fast::hash(&out[start..]);
        out.put_u32_le(crc);
    }

    /// Encodes into a fresh buffer.
    pub fn to_bytes(&self) -> Bytes {
        let mut b = BytesMut::new();
        self.encode(&mut b);
        b.freeze()
    }
}

/// Incremental decoder: feed bytes, take frames. Skips garbage and corrupt frames by
/// searching for the next magic.
#[derive(Debug, Default)]
pub struct FrameDecoder {
    buf: BytesMut,
    skipped: u64,
}

impl FrameDecoder {
    /// A new decoder.
    pub fn new() -> Self {
        Self::default()
    }

    /// Adds received bytes.
    pub fn push(&mut self, data: &[u8]) {
        self.buf.extend_from_slice(data);
    }

    /// Bytes skipped as garbage so far.
    pub fn skipped(&self) -> u64 {
        self.skipped
    }

    /// The next complete, valid frame, if any.
    pub fn next_frame(&mut self) -> Option<Frame> {
        loop {
            // Align on the magic.
            match find_magic(&self.buf) {
                Some(0) => {}
                Some(i) => {
                    self.skipped += i as u64;
                    self.buf.advance(i);
                }
                None => {
                    // Keep a possible partial magic at the end.
                    let keep = partial_magic_suffix(&self.buf);
                    let drop = self.buf.len() - keep;
                    self.skipped += drop as u64;
                    self.buf.advance(drop);
                    return None;
                }
            }
            if self.buf.len() < HEADER {
                return None;
            }
            let kind = self.buf[4];
            let session = u64::from_le_bytes(self.buf[5..13].try_into().unwrap_or_default());
            let len = u32::from_le_bytes(self.buf[13..17].try_into().unwrap_or_default()) as usize;
            let Some(kind) = FrameKind::from_u8(kind).filter(|_| len <= MAX_PAYLOAD) else {
                self.skip_one();
                continue;
            };
            if self.buf.len() < HEADER + len + 4 {
                return None;
            }
            let crc_at = HEADER + len;
            let want =
                u32::from_le_bytes(self.buf[crc_at..crc_at + 4].try_into().unwrap_or_default());
            if crc32fast::hash(&self.buf[4..crc_at]) != want {
                self.skip_one();
                continue;
            }
            let mut whole = self.buf.split_to(crc_at + 4);
            whole.advance(HEADER);
            whole.truncate(len);
            return Some(Frame {
                kind,
                session,
                payload: whole.freeze(),
            });
        }
    }

    fn skip_one(&mut self) {
        self.skipped += 1;
        self.buf.advance(1);
    }
}

fn find_magic(buf: &[u8]) -> Option<usize> {
    buf.windows(MAGIC.len()).position(|w| w == MAGIC)
}

fn partial_magic_suffix(buf: &[u8]) -> usize {
    (1..MAGIC.len())
        .rev()
        .find(|&n| buf.len() >= n && buf[buf.len() - n..] == MAGIC[..n])
        .unwrap_or(0)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn frames() -> Vec<Frame> {
        vec![
            Frame::control(FrameKind::Hello, 7),
            Frame {
                kind: FrameKind::Data,
                session: 7,
                payload: Bytes::from_static(b"hello WRN1 world"),
            },
            Frame {
                kind: FrameKind::Data,
                session: 7,
                payload: Bytes::from(vec![0xab; 70_000]),
            },
            Frame::control(FrameKind::Ack, u64::MAX),
        ]
    }

    #[test]
    fn round_trip_split_at_every_byte() {
        let mut wire = BytesMut::new();
        for f in frames() {
            f.encode(&mut wire);
        }
        for split in [1usize, 2, 3, 5, 17, 4096] {
            let mut d = FrameDecoder::new();
            let mut got = Vec::new();
            for chunk in wire.chunks(split) {
                d.push(chunk);
                while let Some(f) = d.next_frame() {
                    got.push(f);
                }
            }
            assert_eq!(got, frames(), "split {split}");
            assert_eq!(d.skipped(), 0);
        }
    }

    #[test]
    fn resyncs_after_garbage_fake_magic_and_corruption() {
        let mut wire = BytesMut::from(&b"garbage WRN1\x03 more garbage WR"[..]);
        let mut corrupt = Frame {
            kind: FrameKind::Data,
            session: 1,
            payload: Bytes::from_static(b"bad"),
        }
        .to_bytes()
        .to_vec();
        let n = corrupt.len();
        corrupt[n - 6] ^= 1;
        wire.extend_from_slice(&corrupt);
        for f in frames() {
            f.encode(&mut wire);
        }
        let mut d = FrameDecoder::new();
        d.push(&wire);
        let mut got = Vec::new();
        while let Some(f) = d.next_frame() {
            got.push(f);
        }
        assert_eq!(got, frames());
        assert!(d.skipped() > 0);
    }

    #[test]
    fn keeps_a_partial_magic_at_the_end() {
        let wire = Frame::control(FrameKind::Hello, 3).to_bytes();
        let mut d = FrameDecoder::new();
        d.push(b"xxxWR");
        assert!(d.next_frame().is_none());
        d.push(&wire[2..]);
        assert_eq!(d.next_frame(), Some(Frame::control(FrameKind::Hello, 3)));
    }
}
