//! Per-worker counters the host keeps for `/workers`, `/workers/<name>/health` and `workerhost check`.

use std::sync::Mutex;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};

#[derive(Debug)]
pub struct WorkerStats {
    pub in_flight: AtomicU64,
    pub succeeded: AtomicU64,
    /// Tasks that ended dead (not attempts).
    pub failed: AtomicU64,
    /// False after a spawn error, true again after the next successful start.
    pub healthy: AtomicBool,
    /// Held back (its environment could not be set up, `run --setup`): it takes no tasks, and a burst
    /// does not wait for it.
    pub held: AtomicBool,
    /// Pool mode: processes retired and replaced (died, timed out, task limit).
    pub restarts: std::sync::Arc<AtomicU64>,
    last: Mutex<Last>,
}

#[derive(Debug, Default, Clone)]
pub struct Last {
    pub error: Option<String>,
    pub error_at: Option<String>,
    pub success_at: Option<String>,
}

impl Default for WorkerStats {
    fn default() -> Self {
        WorkerStats {
            in_flight: AtomicU64::new(0),
            succeeded: AtomicU64::new(0),
            failed: AtomicU64::new(0),
            healthy: AtomicBool::new(true),
            held: AtomicBool::new(false),
            restarts: std::sync::Arc::default(),
            last: Mutex::new(Last::default()),
        }
    }
}

impl WorkerStats {
    pub fn record_success(&self, at: String) {
        self.succeeded.fetch_add(1, Ordering::Relaxed);
        if let Ok(mut l) = self.last.lock() {
            l.success_at = Some(at);
        }
    }

    pub fn record_failure(&self, error: String, at: String) {
        self.failed.fetch_add(1, Ordering::Relaxed);
        if let Ok(mut l) = self.last.lock() {
            l.error = Some(error);
            l.error_at = Some(at);
        }
    }

    pub fn last(&self) -> Last {
        self.last.lock().map(|l| l.clone()).unwrap_or_default()
    }
}
