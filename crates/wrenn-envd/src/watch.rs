//! Directory watchers over inotify: a stream of a directory's events (and, when recursive,
//! of its subdirectories', those made later included), and watchers envd keeps so a client
//! can poll their events. Bounded: a watcher keeps at most [`MAX_KEPT_EVENTS`] unread events
//! (the oldest go first), envd keeps at most [`MAX_WATCHERS`] watchers, and a recursive watch
//! covers at most [`MAX_DIRS`] directories.

use std::collections::{HashMap, VecDeque};
use std::ffi::OsString;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};

use futures::{Stream, StreamExt};
use inotify::{EventMask, Inotify, WatchDescriptor, WatchMask, Watches};
use wrenn_protocol::{FsEvent, FsEventKind, WatchRequest, WatcherInfo};

use crate::error::{ApiError, ApiResult};

/// Unread events a kept watcher holds.
pub const MAX_KEPT_EVENTS: usize = 10_000;
/// Watchers envd keeps at once.
pub const MAX_WATCHERS: usize = 256;
/// Directories one recursive watch covers.
pub const MAX_DIRS: usize = 4096;

fn mask() -> WatchMask {
    WatchMask::CREATE
        | WatchMask::MODIFY
        | WatchMask::DELETE
        | WatchMask::MOVED_FROM
        | WatchMask::MOVED_TO
        | WatchMask::ATTRIB
}

/// The inotify watches of one watch: each watched directory, relative to the root.
struct Tree {
    watches: Watches,
    dirs: HashMap<WatchDescriptor, PathBuf>,
    recursive: bool,
}

impl Tree {
    /// Watches `rel` (relative to `root`), and its subdirectories when recursive.
    fn add(&mut self, root: &Path, rel: PathBuf) -> std::io::Result<()> {
        if self.dirs.len() >= MAX_DIRS {
            return Ok(());
        }
        let wd = self.watches.add(root.join(&rel), mask())?;
        self.dirs.insert(wd, rel.clone());
        if self.recursive {
            if let Ok(entries) = std::fs::read_dir(root.join(&rel)) {
                for e in entries.flatten() {
                    if e.file_type().is_ok_and(|t| t.is_dir()) {
                        // A directory that went away meanwhile is no error.
                        let _ = self.add(root, rel.join(e.file_name()));
                    }
                }
            }
        }
        Ok(())
    }
}

fn kind_of(mask: EventMask) -> Option<FsEventKind> {
    if mask.contains(EventMask::CREATE) || mask.contains(EventMask::MOVED_TO) {
        Some(FsEventKind::Create)
    } else if mask.contains(EventMask::MODIFY) {
        Some(FsEventKind::Write)
    } else if mask.contains(EventMask::DELETE) {
        Some(FsEventKind::Remove)
    } else if mask.contains(EventMask::MOVED_FROM) {
        Some(FsEventKind::Rename)
    } else if mask.contains(EventMask::ATTRIB) {
        Some(FsEventKind::Chmod)
    } else {
        None
    }
}

/// The events of the directory `req.path`, until the stream is dropped.
pub fn watch(req: &WatchRequest) -> ApiResult<impl Stream<Item = FsEvent> + Send + 'static> {
    let root = PathBuf::from(&req.path);
    if !root.is_absolute() {
        return Err(ApiError::invalid(format!(
            "watch {}: path must be absolute",
            req.path
        )));
    }
    let meta =
        std::fs::metadata(&root).map_err(|e| ApiError::io(format!("watch {}", req.path), e))?;
    if !meta.is_dir() {
        return Err(ApiError::new(
            wrenn_protocol::ErrorKind::NotADirectory,
            format!("watch {}: not a directory", req.path),
        ));
    }
    let inotify = Inotify::init().map_err(|e| ApiError::io("inotify", e))?;
    let stream = inotify
        .into_event_stream(vec![0u8; 64 * 1024])
        .map_err(|e| ApiError::io("inotify", e))?;
    let mut tree = Tree {
        watches: stream.watches(),
        dirs: HashMap::new(),
        recursive: req.recursive,
    };
    tree.add(&root, PathBuf::new())
        .map_err(|e| ApiError::io(format!("watch {}", req.path), e))?;
    let events = stream.filter_map(move |ev| {
        let out = match ev {
            Ok(ev) => {
                let name: OsString = ev.name.clone().unwrap_or_default();
                let rel = tree
                    .dirs
                    .get(&ev.wd)
                    .cloned()
                    .unwrap_or_default()
                    .join(&name);
                if ev.mask.contains(EventMask::ISDIR)
                    && (ev.mask.contains(EventMask::CREATE)
                        || ev.mask.contains(EventMask::MOVED_TO))
                    && tree.recursive
                {
                    let _ = tree.add(&root, rel.clone());
                }
                if ev.mask.contains(EventMask::IGNORED) {
                    tree.dirs.remove(&ev.wd);
                }
                kind_of(ev.mask)
                    .filter(|_| !name.is_empty())
                    .map(|kind| FsEvent {
                        name: rel.to_string_lossy().into_owned(),
                        kind,
                    })
            }
            Err(e) => {
                tracing::warn!(error = %e, "inotify read failed");
                None
            }
        };
        std::future::ready(out)
    });
    Ok(events)
}

/// A watcher envd keeps: its unread events, and the task that collects them.
struct Kept {
    events: Arc<Mutex<VecDeque<FsEvent>>>,
    task: tokio::task::JoinHandle<()>,
}

/// The watchers envd keeps, by id.
#[derive(Default)]
pub struct Watchers {
    map: Mutex<HashMap<String, Kept>>,
}

impl std::fmt::Debug for Watchers {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Watchers").finish_non_exhaustive()
    }
}

impl Watchers {
    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<String, Kept>> {
        self.map.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Starts a kept watcher.
    pub fn create(&self, req: &WatchRequest) -> ApiResult<WatcherInfo> {
        if self.lock().len() >= MAX_WATCHERS {
            return Err(ApiError::invalid(format!(
                "envd keeps at most {MAX_WATCHERS} watchers: remove one first"
            )));
        }
        let mut stream = Box::pin(watch(req)?);
        let events = Arc::new(Mutex::new(VecDeque::new()));
        let sink = events.clone();
        let task = tokio::spawn(async move {
            while let Some(ev) = stream.next().await {
                let mut q = sink.lock().unwrap_or_else(|p| p.into_inner());
                if q.len() >= MAX_KEPT_EVENTS {
                    q.pop_front();
                }
                q.push_back(ev);
            }
        });
        let id = format!("w-{:016x}", rand::random::<u64>());
        self.lock().insert(id.clone(), Kept { events, task });
        Ok(WatcherInfo { id })
    }

    /// The events of watcher `id` since the last call.
    pub fn drain(&self, id: &str) -> ApiResult<Vec<FsEvent>> {
        let map = self.lock();
        let kept = map
            .get(id)
            .ok_or_else(|| ApiError::not_found(format!("watcher {id}: not found")))?;
        let mut q = kept.events.lock().unwrap_or_else(|p| p.into_inner());
        Ok(q.drain(..).collect())
    }

    /// Stops watcher `id`.
    pub fn remove(&self, id: &str) -> ApiResult<()> {
        let kept = self
            .lock()
            .remove(id)
            .ok_or_else(|| ApiError::not_found(format!("watcher {id}: not found")))?;
        kept.task.abort();
        Ok(())
    }
}
