//! The log of one build: every entry is numbered, kept in memory until the next flush and then
//! stored, and sent to live followers. A follower replays what is stored, then what waits for
//! the flush, then the live entries, without a gap or a repeat.

use std::sync::Arc;
use std::time::Duration;

use tokio::sync::{broadcast, Mutex};

use crate::store::{now_ms, LogRow, Store, StoreError};

/// How often pending entries are written to the store.
pub const FLUSH_INTERVAL: Duration = Duration::from_millis(250);
/// Largest text one entry holds; longer output is split.
pub const MAX_ENTRY_TEXT: usize = 16 * 1024;
/// Bytes of text one build may log; past it the rest is dropped (one `info` entry says so).
pub const MAX_LOG_BYTES: usize = 32 * 1024 * 1024;
/// Entries a slow live follower may fall behind before it is cut off.
const LIVE_BUFFER: usize = 4096;

/// What a log entry holds.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LogStream {
    /// A step begins (its text is the instruction).
    Step,
    /// Output of the step's process on stdout.
    Stdout,
    /// Output on stderr.
    Stderr,
    /// Something the build itself says.
    Info,
    /// Why the build failed.
    Error,
}

impl LogStream {
    /// Name in the store and on the wire.
    pub const fn as_str(self) -> &'static str {
        match self {
            LogStream::Step => "step",
            LogStream::Stdout => "stdout",
            LogStream::Stderr => "stderr",
            LogStream::Info => "info",
            LogStream::Error => "error",
        }
    }
}

struct Pending {
    next_seq: i64,
    rows: Vec<LogRow>,
    bytes: usize,
    truncated: bool,
}

/// The log of a running build; cheap to clone.
#[derive(Clone)]
pub struct BuildLog {
    build_id: Arc<str>,
    store: Store,
    pending: Arc<Mutex<Pending>>,
    live: broadcast::Sender<LogRow>,
}

/// A follower's view: what came before (in order), then the live receiver for the rest.
pub struct Followed {
    /// Entries stored or pending when the follower joined.
    pub past: Vec<LogRow>,
    /// Later entries, each with `seq` above every past one.
    pub live: broadcast::Receiver<LogRow>,
}

impl BuildLog {
    /// An empty log of `build_id`.
    pub fn new(build_id: &str, store: Store) -> Self {
        let (live, _) = broadcast::channel(LIVE_BUFFER);
        Self {
            build_id: build_id.into(),
            store,
            pending: Arc::new(Mutex::new(Pending {
                next_seq: 0,
                rows: Vec::new(),
                bytes: 0,
                truncated: false,
            })),
            live,
        }
    }

    /// Numbers the next entry `seq` (a log that goes on after entries stored earlier).
    pub async fn resume_at(&self, seq: i64) {
        self.pending.lock().await.next_seq = seq;
    }

    /// Adds text to the log (split into entries of at most [`MAX_ENTRY_TEXT`] bytes).
    pub async fn push(&self, step: i64, stream: LogStream, text: &str) {
        let mut p = self.pending.lock().await;
        if p.truncated {
            return;
        }
        if p.bytes + text.len() > MAX_LOG_BYTES {
            p.truncated = true;
            let note =
                format!("log limit of {MAX_LOG_BYTES} bytes reached; later output is not kept");
            self.add(&mut p, step, LogStream::Info, note);
            return;
        }
        p.bytes += text.len();
        for part in split_at_char_boundaries(text, MAX_ENTRY_TEXT) {
            self.add(&mut p, step, stream, part.to_owned());
        }
    }

    fn add(&self, p: &mut Pending, step: i64, stream: LogStream, text: String) {
        let row = LogRow {
            seq: p.next_seq,
            at: now_ms(),
            step,
            stream: stream.as_str().to_owned(),
            text,
        };
        p.next_seq += 1;
        // No follower is fine: the store keeps everything.
        let _ = self.live.send(row.clone());
        p.rows.push(row);
    }

    /// Writes pending entries to the store.
    pub async fn flush(&self) -> Result<(), StoreError> {
        let mut p = self.pending.lock().await;
        if p.rows.is_empty() {
            return Ok(());
        }
        self.store.append_build_log(&self.build_id, &p.rows).await?;
        p.rows.clear();
        Ok(())
    }

    /// Joins the log: every entry so far, then the live ones.
    pub async fn follow(&self) -> Result<Followed, StoreError> {
        // The lock orders this against pushes and flushes: rows stored before it are read
        // from the store, rows pushed but not flushed are copied, later ones arrive live.
        let p = self.pending.lock().await;
        let live = self.live.subscribe();
        let first_pending = p.rows.first().map_or(p.next_seq, |r| r.seq);
        let mut past = read_stored(&self.store, &self.build_id, 0, first_pending).await?;
        past.extend(p.rows.iter().cloned());
        Ok(Followed { past, live })
    }
}

/// Stored entries of a build with `from <= seq < until`.
pub async fn read_stored(
    store: &Store,
    build_id: &str,
    from: i64,
    until: i64,
) -> Result<Vec<LogRow>, StoreError> {
    const PAGE: i64 = 5000;
    let mut out = Vec::new();
    let mut next = from;
    while next < until {
        let rows = store.build_log(build_id, next, PAGE).await?;
        let Some(last) = rows.last().map(|r| r.seq) else {
            break;
        };
        out.extend(rows.into_iter().filter(|r| r.seq < until));
        next = last + 1;
    }
    Ok(out)
}

/// Splits `text` into pieces of at most `max` bytes, never inside a character.
fn split_at_char_boundaries(text: &str, max: usize) -> Vec<&str> {
    let mut out = Vec::new();
    let mut rest = text;
    while rest.len() > max {
        let mut cut = max;
        while !rest.is_char_boundary(cut) {
            cut -= 1;
        }
        let (head, tail) = rest.split_at(cut);
        out.push(head);
        rest = tail;
    }
    if !rest.is_empty() || out.is_empty() {
        out.push(rest);
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn splits_on_character_boundaries() {
        assert_eq!(split_at_char_boundaries("", 4), vec![""]);
        assert_eq!(split_at_char_boundaries("abcdef", 4), vec!["abcd", "ef"]);
        let s = "ééé"; // 2 bytes each
        assert_eq!(split_at_char_boundaries(s, 3), vec!["é", "é", "é"]);
    }

    #[tokio::test]
    async fn a_follower_sees_every_entry_once_in_order() {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open_in(dir.path()).await.unwrap();
        let log = BuildLog::new("bld-test", store.clone());
        log.push(1, LogStream::Step, "RUN one").await;
        log.push(1, LogStream::Stdout, "a\n").await;
        log.flush().await.unwrap();
        log.push(1, LogStream::Stdout, "b\n").await;
        let mut f = log.follow().await.unwrap();
        log.push(2, LogStream::Step, "RUN two").await;
        log.flush().await.unwrap();
        let texts: Vec<_> = f.past.iter().map(|r| r.text.clone()).collect();
        assert_eq!(texts, ["RUN one", "a\n", "b\n"]);
        let next = f.live.recv().await.unwrap();
        assert_eq!((next.seq, next.text.as_str()), (3, "RUN two"));
        let stored = read_stored(&store, "bld-test", 0, i64::MAX).await.unwrap();
        assert_eq!(stored.len(), 4);
        assert!(stored.windows(2).all(|w| w[1].seq == w[0].seq + 1));
    }
}
