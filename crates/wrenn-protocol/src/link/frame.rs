//! Frame format: `"WRN1"` · kind u8 · session u64 LE · length u32 LE · header CRC-32 u32 LE ·
//! payload · payload CRC-32 u32 LE. The header CRC covers kind, session and length, so a
//! corrupt or stale header is rejected at once instead of swallowing `length` bytes.

use bytes::{Buf, BufMut, Bytes, BytesMut};

/// Start of every frame.
pub const MAGIC: &[u8; 4] = b"WRN1";
/// Header bytes before the payload.
pub const HEADER: usize = 4 + 1 + 8 + 4 + 4;
/// Largest payload of one frame.
pub const MAX_PAYLOAD: usize = 128 * 1024;
/// Bytes after the payload (its CRC).
pub const TRAILER: usize = 4;

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
    /// Either way: bytes the receiver drops unread (the port's raw bulk throughput, framing
    /// alone on top).
    Discard = 6,
    /// Host → guest: a nonce and a byte count ([`FILL_COUNT`] bytes); the guest sends that
    /// many bytes (at most [`FILL_MAX`]) in DISCARD frames, then an ECHO_REPLY with the nonce.
    Fill = 7,
}

/// Payload of a FILL frame: nonce u64 LE · byte count u64 LE.
pub const FILL_COUNT: usize = 16;
/// Most bytes one FILL frame may ask for.
pub const FILL_MAX: u64 = 1 << 30;

impl FrameKind {
    fn from_u8(b: u8) -> Option<Self> {
        Some(match b {
            1 => Self::Hello,
            2 => Self::Ack,
            3 => Self::Data,
            4 => Self::Echo,
            5 => Self::EchoReply,
            6 => Self::Discard,
            7 => Self::Fill,
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
        out.reserve(HEADER + self.payload.len() + TRAILER);
        out.put_slice(MAGIC);
        let start = out.len();
        out.put_u8(self.kind as u8);
        out.put_u64_le(self.session);
        out.put_u32_le(self.payload.len() as u32);
        let hcrc = crc32fast::hash(&out[start..]);
        out.put_u32_le(hcrc);
        out.put_slice(&self.payload);
        out.put_u32_le(crc32fast::hash(&self.payload));
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
///
/// A frame whose header is valid but whose payload is not is normally skipped one byte at a
/// time, so a real frame that starts inside it (a stale frame cut by a restore, then the new
/// session's HELLO) is still found. A peer could forge such headers every few bytes, each
/// claiming a full payload, and make every byte it sends cost a [`MAX_PAYLOAD`] checksum; so
/// the bytes checksummed for payloads that failed are bounded by [`WASTE_FACTOR`] times the
/// bytes received (plus two frames), and past that bound a bad frame is skipped whole.
#[derive(Debug, Default)]
pub struct FrameDecoder {
    buf: BytesMut,
    skipped: u64,
    received: u64,
    wasted: u64,
}

/// Bound on payload bytes checksummed in vain per byte received (see [`FrameDecoder`]).
pub const WASTE_FACTOR: u64 = 8;

impl FrameDecoder {
    /// A new decoder.
    pub fn new() -> Self {
        Self::default()
    }

    /// Adds received bytes.
    pub fn push(&mut self, data: &[u8]) {
        self.received += data.len() as u64;
        self.buf.extend_from_slice(data);
    }

    /// Payload bytes checksummed for frames that turned out corrupt, so far.
    pub fn wasted(&self) -> u64 {
        self.wasted
    }

    /// Bytes held waiting for the rest of a frame. After [`FrameDecoder::next_frame`] returned
    /// `None` this is below [`HEADER`] + [`MAX_PAYLOAD`] + [`TRAILER`], whatever was pushed:
    /// a peer cannot make the decoder hold more than one frame.
    pub fn buffered(&self) -> usize {
        self.buf.len()
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
            let session = le_u64(&self.buf[5..13]);
            let len = le_u32(&self.buf[13..17]) as usize;
            let hcrc = le_u32(&self.buf[17..21]);
            let valid = crc32fast::hash(&self.buf[4..17]) == hcrc && len <= MAX_PAYLOAD;
            let Some(kind) = FrameKind::from_u8(kind).filter(|_| valid) else {
                self.skip_one();
                continue;
            };
            if self.buf.len() < HEADER + len + TRAILER {
                return None;
            }
            let crc_at = HEADER + len;
            if crc32fast::hash(&self.buf[HEADER..crc_at]) != le_u32(&self.buf[crc_at..crc_at + 4]) {
                self.wasted += len as u64;
                let budget = WASTE_FACTOR * self.received + 2 * MAX_PAYLOAD as u64;
                if self.wasted > budget {
                    // Forged headers: skip the whole claimed frame.
                    let whole = crc_at + TRAILER;
                    self.skipped += whole as u64;
                    self.buf.advance(whole);
                } else {
                    self.skip_one();
                }
                continue;
            }
            let mut whole = self.buf.split_to(crc_at + TRAILER);
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

fn le_u32(b: &[u8]) -> u32 {
    let mut a = [0u8; 4];
    a.copy_from_slice(&b[..4]);
    u32::from_le_bytes(a)
}

fn le_u64(b: &[u8]) -> u64 {
    let mut a = [0u8; 8];
    a.copy_from_slice(&b[..8]);
    u64::from_le_bytes(a)
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
                payload: Bytes::from(vec![0xab; MAX_PAYLOAD]),
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
    fn split_in_two_at_every_byte() {
        let small = vec![
            Frame::control(FrameKind::Hello, 9),
            Frame {
                kind: FrameKind::Data,
                session: 9,
                payload: Bytes::from_static(b"WRN1 in a payload"),
            },
            Frame::control(FrameKind::Ack, 9),
        ];
        let mut wire = BytesMut::new();
        for f in &small {
            f.encode(&mut wire);
        }
        for at in 0..=wire.len() {
            let mut d = FrameDecoder::new();
            let mut got = Vec::new();
            for part in [&wire[..at], &wire[at..]] {
                d.push(part);
                while let Some(f) = d.next_frame() {
                    got.push(f);
                }
            }
            assert_eq!(got, small, "split at {at}");
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
        // A header whose length was corrupted must not swallow the frames after it.
        let mut bad_len = Frame::control(FrameKind::Data, 1).to_bytes().to_vec();
        bad_len[14] = 0x10;
        wire.extend_from_slice(&bad_len);
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

    /// A header with a valid header CRC claiming a full payload whose CRC is wrong.
    fn forged_header() -> Vec<u8> {
        let mut out = BytesMut::new();
        out.put_slice(MAGIC);
        out.put_u8(FrameKind::Data as u8);
        out.put_u64_le(7);
        out.put_u32_le(MAX_PAYLOAD as u32);
        let hcrc = crc32fast::hash(&out[4..]);
        out.put_u32_le(hcrc);
        out.to_vec()
    }

    #[test]
    fn forged_headers_cost_a_bounded_amount_of_checksumming() {
        // A forged header every 21 bytes for more than a payload's length: before the bound,
        // each one cost a 128 KiB checksum (about 6000 of them, ~800 MB per 256 KiB sent).
        let mut wire = Vec::new();
        while wire.len() < 2 * MAX_PAYLOAD {
            wire.extend_from_slice(&forged_header());
        }
        wire.resize(wire.len() + MAX_PAYLOAD + TRAILER + HEADER, 0);
        let mut d = FrameDecoder::new();
        for chunk in wire.chunks(4096) {
            d.push(chunk);
            while d.next_frame().is_some() {}
        }
        let budget = WASTE_FACTOR * wire.len() as u64 + 2 * MAX_PAYLOAD as u64 + MAX_PAYLOAD as u64;
        assert!(
            d.wasted() <= budget,
            "{} bytes checksummed in vain for {} received",
            d.wasted(),
            wire.len()
        );
        // Real frames after the flood still come through.
        let mut tail = BytesMut::new();
        for f in frames() {
            f.encode(&mut tail);
        }
        d.push(&tail);
        let mut got = Vec::new();
        while let Some(f) = d.next_frame() {
            got.push(f);
        }
        assert_eq!(got, frames());
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
