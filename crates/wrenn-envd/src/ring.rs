//! A bounded byte buffer addressed by absolute stream offsets: keeps the last `cap` bytes of
//! an output stream so late attachers can replay them.

use std::collections::VecDeque;

/// The tail of an output stream.
#[derive(Debug)]
pub struct Ring {
    start: u64,
    data: VecDeque<u8>,
    cap: usize,
}

impl Ring {
    /// An empty ring keeping at most `cap` bytes.
    pub fn new(cap: usize) -> Self {
        Self {
            start: 0,
            data: VecDeque::new(),
            cap,
        }
    }

    /// Appends bytes, forgetting the oldest beyond the capacity.
    pub fn push(&mut self, bytes: &[u8]) {
        self.data.extend(bytes);
        let excess = self.data.len().saturating_sub(self.cap);
        if excess > 0 {
            self.data.drain(..excess);
            self.start += excess as u64;
        }
    }

    /// Offset just past the newest byte.
    pub fn end(&self) -> u64 {
        self.start + self.data.len() as u64
    }

    /// Up to `max` bytes from offset `pos` (skipping forward over forgotten bytes), and the
    /// offset after them.
    pub fn read_from(&self, pos: u64, max: usize) -> (Vec<u8>, u64) {
        let from = pos.max(self.start);
        let skip = (from - self.start) as usize;
        let stop = skip.saturating_add(max).min(self.data.len());
        let out: Vec<u8> = self.data.range(skip.min(stop)..stop).copied().collect();
        let next = from + out.len() as u64;
        (out, next)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keeps_the_tail_and_skips_forgotten_bytes() {
        let mut r = Ring::new(4);
        r.push(b"abc");
        assert_eq!(r.read_from(0, 10), (b"abc".to_vec(), 3));
        r.push(b"def");
        assert_eq!(r.end(), 6);
        assert_eq!(r.read_from(0, 10), (b"cdef".to_vec(), 6));
        assert_eq!(r.read_from(4, 1), (b"e".to_vec(), 5));
        assert_eq!(r.read_from(6, 10), (Vec::new(), 6));
    }
}
