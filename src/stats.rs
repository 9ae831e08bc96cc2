//! Per-worker counters the host keeps for `/workers`, `/workers/<name>/health` and `workerhost check`,
//! and the host's list of the tasks running now (the status page, the in-flight gauge).

use std::sync::Mutex;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::Instant;

#[derive(Debug)]
pub struct WorkerStats {
    pub in_flight: AtomicU64,
    pub succeeded: AtomicU64,
    /// Tasks that ended dead (not attempts).
    pub failed: AtomicU64,
    /// False after a spawn error, true again after the next successful start.
    pub healthy: AtomicBool,
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

/// One task in flight on this host.
#[derive(Debug, Clone, serde::Serialize)]
pub struct RunningTask {
    pub task_id: String,
    #[serde(rename = "type")]
    pub task_type: String,
    pub worker: String,
    /// When this delivery started here (RFC 3339 UTC when shown).
    pub started_at: workerhost_adapters::Stamp,
    #[serde(skip)]
    pub started: Instant,
    /// The attempt running now (updated by the status observer on `task_started`).
    pub attempt: u32,
}

impl crate::host::HostState {
    /// The tasks in flight now, oldest first.
    pub fn running_tasks(&self) -> Vec<RunningTask> {
        let mut v: Vec<RunningTask> = match self.tasks.lock() {
            Ok(t) => t.values().cloned().collect(),
            Err(p) => p.into_inner().values().cloned().collect(),
        };
        v.sort_by_key(|t| t.started);
        v
    }

    /// Records the attempt a running task is on.
    pub fn set_attempt(&self, task_id: &str, attempt: u32) {
        if let Ok(mut t) = self.tasks.lock()
            && let Some(task) = t.get_mut(task_id)
        {
            task.attempt = attempt;
        }
    }
}
