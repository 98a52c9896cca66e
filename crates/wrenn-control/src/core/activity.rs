//! Activity tracking for the inactivity TTL: stamps in the store, open streams in memory.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use crate::store::Store;

/// Tracks open streams (WebSockets, SSE of a capsule) per capsule and records activity.
#[derive(Clone)]
pub struct Activity {
    store: Store,
    open: Arc<Mutex<HashMap<String, usize>>>,
}

impl Activity {
    /// A tracker writing stamps to `store`.
    pub fn new(store: Store) -> Self {
        Self {
            store,
            open: Arc::default(),
        }
    }

    /// Records activity on a capsule now.
    pub async fn touch(&self, id: &str) {
        if let Err(e) = self.store.touch_capsule(id).await {
            tracing::warn!(capsule = id, error = %e, "could not record capsule activity");
        }
    }

    /// True while a stream of the capsule is open.
    pub fn has_open_streams(&self, id: &str) -> bool {
        self.open
            .lock()
            .map(|m| m.get(id).copied().unwrap_or(0) > 0)
            .unwrap_or(false)
    }

    /// Marks a stream open until the guard drops (which also records activity).
    pub fn open_stream(&self, id: &str) -> StreamGuard {
        if let Ok(mut m) = self.open.lock() {
            *m.entry(id.to_owned()).or_default() += 1;
        }
        StreamGuard {
            activity: self.clone(),
            id: id.to_owned(),
        }
    }
}

/// Keeps a capsule counted as active while alive.
pub struct StreamGuard {
    activity: Activity,
    id: String,
}

impl StreamGuard {
    fn release(activity: &Activity, id: &str) {
        if let Ok(mut m) = activity.open.lock() {
            if let Some(n) = m.get_mut(id) {
                *n = n.saturating_sub(1);
                if *n == 0 {
                    m.remove(id);
                }
            }
        }
    }
}

impl Drop for StreamGuard {
    fn drop(&mut self) {
        let activity = self.activity.clone();
        let id = std::mem::take(&mut self.id);
        // The stream's end is activity. It stays counted as open until that is recorded, so
        // the TTL check never sees a closed stream with an old activity stamp.
        match tokio::runtime::Handle::try_current() {
            Ok(rt) => {
                rt.spawn(async move {
                    activity.touch(&id).await;
                    Self::release(&activity, &id);
                });
            }
            Err(_) => Self::release(&activity, &id),
        }
    }
}
