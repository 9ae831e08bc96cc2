//! The retries this host sent back to the task manager to wait there (section 7), so that `--burst`
//! does not end while one of its own retries is still to come.

use std::collections::HashMap;
use std::sync::Mutex;
use workerhost_adapters::{Stamp, now_ms};

/// How long after its due time a retry sent back is still waited for: any host may run it, and one
/// that is not claimed back here within this time was taken by another (or the task cancelled).
const TAKEN_ELSEWHERE_AFTER_MS: i64 = 5_000;

#[derive(Debug, Default)]
pub struct QueuedRetries(Mutex<HashMap<String, Stamp>>);

impl QueuedRetries {
    pub fn add(&self, task_id: &str, at: Stamp) {
        if let Ok(mut m) = self.0.lock() {
            m.insert(task_id.to_string(), at);
        }
    }

    /// The task came back to this host.
    pub fn claimed(&self, task_id: &str) {
        if let Ok(mut m) = self.0.lock() {
            m.remove(task_id);
        }
    }

    /// Whether a burst must wait: a retry sent back from here is not due yet, or only just.
    pub fn pending(&self) -> bool {
        let now = now_ms();
        match self.0.lock() {
            Ok(mut m) => {
                m.retain(|_, at| at.0.saturating_add(TAKEN_ELSEWHERE_AFTER_MS) > now);
                !m.is_empty()
            }
            Err(_) => false,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_retry_is_pending_until_claimed_back_or_long_past_due() {
        let q = QueuedRetries::default();
        assert!(!q.pending());
        q.add("a", Stamp(now_ms() + 60_000));
        assert!(q.pending());
        q.claimed("a");
        assert!(!q.pending());
        q.add("b", Stamp(now_ms() - TAKEN_ELSEWHERE_AFTER_MS - 1));
        assert!(!q.pending(), "taken by another host");
    }
}
