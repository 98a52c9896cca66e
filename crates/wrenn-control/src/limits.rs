//! Per-key bounds on long-lived connections: WebSockets (exec stream, attach, PTY).

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use crate::api::error::ApiError;

/// Counts the WebSockets each API key holds open.
#[derive(Clone)]
pub struct WsSlots {
    max: usize,
    open: Arc<Mutex<HashMap<String, usize>>>,
}

impl WsSlots {
    /// At most `max` open WebSockets per key.
    pub fn new(max: usize) -> Self {
        Self {
            max,
            open: Arc::default(),
        }
    }

    /// A slot for one more WebSocket of `key_id`, held until the returned guard drops;
    /// `429 too_many_requests` when the key holds `max` already.
    pub fn acquire(&self, key_id: &str) -> Result<WsSlot, ApiError> {
        let mut open = self
            .open
            .lock()
            .map_err(|_| ApiError::internal("WebSocket slot table poisoned"))?;
        let n = open.entry(key_id.to_owned()).or_default();
        if *n >= self.max {
            return Err(ApiError::too_many(format!(
                "this API key has {} WebSockets open, the limit; close one and retry",
                self.max
            )));
        }
        *n += 1;
        Ok(WsSlot {
            slots: self.clone(),
            key_id: key_id.to_owned(),
        })
    }

    /// WebSockets `key_id` holds open now.
    pub fn open(&self, key_id: &str) -> usize {
        self.open
            .lock()
            .map(|m| m.get(key_id).copied().unwrap_or(0))
            .unwrap_or(0)
    }
}

/// One open WebSocket of a key; frees its slot when dropped.
pub struct WsSlot {
    slots: WsSlots,
    key_id: String,
}

impl Drop for WsSlot {
    fn drop(&mut self) {
        if let Ok(mut m) = self.slots.open.lock() {
            if let Some(n) = m.get_mut(&self.key_id) {
                *n = n.saturating_sub(1);
                if *n == 0 {
                    m.remove(&self.key_id);
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::WsSlots;

    #[test]
    fn bounds_each_key_and_frees_on_drop() {
        let slots = WsSlots::new(2);
        let a1 = slots.acquire("a").unwrap();
        let _a2 = slots.acquire("a").unwrap();
        let err = slots.acquire("a").err().unwrap();
        assert_eq!((err.status.as_u16(), err.code), (429, "too_many_requests"));
        let _b = slots.acquire("b").unwrap();
        drop(a1);
        assert_eq!(slots.open("a"), 1);
        let _a3 = slots.acquire("a").unwrap();
    }
}
