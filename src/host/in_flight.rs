//! The tasks in flight on this host, one entry each, kept in one place: the claim that lease renewal
//! renews and the task settles (or hands back) with, the process's stop token, what the status page and
//! the in-flight gauge show, and the count the burst's idleness reads.
//!
//! An entry lives exactly as long as its [`Guard`]: the task's own async task holds the guard, and
//! dropping it (the task ended, or panicked) removes the entry, frees the task's capacity, lowers the
//! counts and wakes the run loop. No path can forget a step, and none can leave a lease renewed forever.
//!
//! A task manager whose claims time out (the HTTP one has no heartbeat) can hand a task this host still
//! runs to this host again. Then no second process starts: while the task runs, the fresh claim replaces
//! the one it holds (it settles with the fresh one); once its process has ended and its outcome is being
//! recorded, the fresh claim waits, and is started as a new delivery after the outcome is recorded (the
//! task manager may have put the task back meanwhile, e.g. a failure it retries itself).

use crate::stats::WorkerStats;
use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Instant;
use tokio::sync::{Notify, OwnedSemaphorePermit};
use tokio_util::sync::CancellationToken;
use workerhost_adapters::{Delivery, Lease, Stamp};

/// One task in flight on this host.
#[derive(Debug, Clone, serde::Serialize)]
pub struct RunningTask {
    pub task_id: String,
    #[serde(rename = "type")]
    pub task_type: String,
    pub worker: String,
    /// When this delivery started here (RFC 3339 UTC when shown).
    pub started_at: Stamp,
    #[serde(skip)]
    pub started: Instant,
    /// The attempt running now (updated by the status observer on `task_started`).
    pub attempt: u32,
}

struct Entry {
    lease: Lease,
    /// The process has ended; the outcome is being recorded (or the task handed back).
    settling: bool,
    /// The newest claim that arrived while settling.
    deferred: Option<Delivery>,
    task: RunningTask,
    /// Stops the task's process (a child of the host's kill token).
    stop: CancellationToken,
    /// A renewal said the task was cancelled: it is recorded `cancelled`, not handed back.
    cancelled: bool,
}

/// What became of a delivery offered to [`InFlight::reclaim`].
pub enum Reclaim {
    /// Its task runs here; the running task holds this claim now.
    Adopted,
    /// Its task is settling here; it starts once that is done.
    Deferred,
    /// Not in flight here: start it.
    New(Box<Delivery>),
}

/// The host-wide and the worker's own permit of a running task.
pub type Permits = (Option<OwnedSemaphorePermit>, Option<OwnedSemaphorePermit>);

#[derive(Default)]
pub struct InFlight {
    entries: Mutex<HashMap<String, Entry>>,
    /// Deferred deliveries whose task has finished settling: the run loop starts them.
    ready: Mutex<Vec<Delivery>>,
    count: AtomicU64,
    /// A task ended or gave up its capacity early.
    changed: Notify,
}

impl std::fmt::Debug for InFlight {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("InFlight")
            .field("count", &self.count())
            .finish_non_exhaustive()
    }
}

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|poisoned| poisoned.into_inner())
}

/// A task's place in [`InFlight`]; dropping it ends the task's bookkeeping (see the module docs).
pub struct Guard {
    registry: Arc<InFlight>,
    task_id: String,
    worker: Arc<WorkerStats>,
    permits: Option<Permits>,
}

impl Guard {
    /// The task's process is done and its outcome is being recorded: its capacity goes to the next task.
    pub fn free_capacity(&mut self) {
        if self.permits.take().is_some() {
            self.registry.changed.notify_one();
        }
    }

    /// The task's capacity (its permits), held until it is freed or the guard dropped.
    pub fn hold(&mut self, permits: Permits) {
        self.permits = Some(permits);
    }
}

impl Drop for Guard {
    fn drop(&mut self) {
        // Capacity first, then the count: whoever sees the count drop sees the capacity free.
        drop(self.permits.take());
        self.registry.remove(&self.task_id);
        self.worker.in_flight.fetch_sub(1, Ordering::Relaxed);
        self.registry.count.fetch_sub(1, Ordering::SeqCst);
        self.registry.changed.notify_one();
    }
}

impl InFlight {
    /// A delivery just claimed: is its task already here?
    pub fn reclaim(&self, d: Delivery) -> Reclaim {
        let mut entries = lock(&self.entries);
        let Some(e) = entries.get_mut(&d.lease.task_id) else {
            return Reclaim::New(Box::new(d));
        };
        if e.settling {
            e.deferred = Some(d);
            Reclaim::Deferred
        } else {
            e.lease = d.lease;
            Reclaim::Adopted
        }
    }

    /// Registers a task that starts now; it stays until the guard is dropped.
    pub fn register(
        self: &Arc<Self>,
        lease: Lease,
        task: RunningTask,
        stop: CancellationToken,
        worker: Arc<WorkerStats>,
    ) -> Guard {
        let task_id = lease.task_id.clone();
        self.count.fetch_add(1, Ordering::SeqCst);
        worker.in_flight.fetch_add(1, Ordering::Relaxed);
        let entry = Entry {
            lease,
            settling: false,
            deferred: None,
            task,
            stop,
            cancelled: false,
        };
        lock(&self.entries).insert(task_id.clone(), entry);
        Guard {
            registry: self.clone(),
            task_id,
            worker,
            permits: None,
        }
    }

    fn remove(&self, task_id: &str) {
        let deferred = lock(&self.entries).remove(task_id).and_then(|e| e.deferred);
        if let Some(d) = deferred {
            lock(&self.ready).push(d);
        }
    }

    /// The task's process has ended: returns the claim to settle (or hand back) with, the newest one.
    pub fn settling(&self, task_id: &str, fallback: &Lease) -> Lease {
        match lock(&self.entries).get_mut(task_id) {
            Some(e) => {
                e.settling = true;
                e.lease.clone()
            }
            None => fallback.clone(),
        }
    }

    /// Deferred deliveries ready to start.
    pub fn take_ready(&self) -> Vec<Delivery> {
        std::mem::take(&mut *lock(&self.ready))
    }

    /// Whether what a renewal says of `lease` (lost, cancelled) still concerns a running task: the task
    /// holds that very claim and its process has not ended. A renewal that raced the task's own settle
    /// (the outcome was recorded, and the entry removed, a moment after the renewal read the claims)
    /// reports the claim gone; that is no loss, and a real one is reported by the settle itself.
    pub fn runs_with(&self, lease: &Lease) -> bool {
        lock(&self.entries)
            .get(&lease.task_id)
            .is_some_and(|e| !e.settling && e.lease == *lease)
    }

    /// The claims to renew.
    pub fn leases(&self) -> Vec<Lease> {
        lock(&self.entries)
            .values()
            .map(|e| e.lease.clone())
            .collect()
    }

    /// How many tasks are in flight.
    pub fn count(&self) -> u64 {
        self.count.load(Ordering::SeqCst)
    }

    /// Resolves when a task ends or frees its capacity (registered before the check it follows).
    pub fn changed(&self) -> tokio::sync::futures::Notified<'_> {
        self.changed.notified()
    }

    /// Marks a running task cancelled and stops its process group.
    pub fn cancel(&self, task_id: &str) {
        if let Some(e) = lock(&self.entries).get_mut(task_id) {
            e.cancelled = true;
            e.stop.cancel();
        }
    }

    /// Whether a renewal said this running task was cancelled.
    pub fn was_cancelled(&self, task_id: &str) -> bool {
        lock(&self.entries)
            .get(task_id)
            .is_some_and(|e| e.cancelled)
    }

    /// The tasks in flight now, oldest first.
    pub fn running_tasks(&self) -> Vec<RunningTask> {
        let mut v: Vec<RunningTask> = lock(&self.entries)
            .values()
            .map(|e| e.task.clone())
            .collect();
        v.sort_by_key(|t| t.started);
        v
    }

    /// Records the attempt a running task is on.
    pub fn set_attempt(&self, task_id: &str, attempt: u32) {
        if let Some(e) = lock(&self.entries).get_mut(task_id) {
            e.task.attempt = attempt;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn delivery(id: &str, receipt: &str) -> Delivery {
        Delivery {
            lease: Lease {
                task_id: id.into(),
                receipt: receipt.into(),
            },
            envelope: Err(workerhost_adapters::Malformed {
                raw: String::new(),
                reason: String::new(),
                task_type: None,
            }),
            deliveries: 1,
        }
    }

    fn task(id: &str) -> RunningTask {
        RunningTask {
            task_id: id.into(),
            task_type: "t".into(),
            worker: "w".into(),
            started_at: Stamp::now(),
            started: Instant::now(),
            attempt: 1,
        }
    }

    fn register(r: &Arc<InFlight>, d: Delivery, stats: &Arc<WorkerStats>) -> Guard {
        let id = d.lease.task_id.clone();
        let stop = CancellationToken::new();
        r.register(d.lease, task(&id), stop, stats.clone())
    }

    #[test]
    fn a_running_task_adopts_the_fresh_claim_and_a_settling_one_defers_it() {
        let h = Arc::new(InFlight::default());
        let stats = Arc::new(WorkerStats::default());
        assert!(matches!(h.reclaim(delivery("a", "1")), Reclaim::New(_)));
        let guard = register(&h, delivery("a", "1"), &stats);
        assert!(h.runs_with(&delivery("a", "1").lease));
        assert!(matches!(h.reclaim(delivery("a", "2")), Reclaim::Adopted));
        assert!(
            !h.runs_with(&delivery("a", "1").lease),
            "the old claim is gone"
        );
        assert!(h.runs_with(&delivery("a", "2").lease));
        assert_eq!(h.leases().len(), 1, "one entry per task");
        let first = delivery("a", "1").lease;
        assert_eq!(
            h.settling("a", &first).receipt,
            "2",
            "settles with the fresh claim"
        );
        assert!(matches!(h.reclaim(delivery("a", "3")), Reclaim::Deferred));
        assert!(
            h.take_ready().is_empty(),
            "not before the outcome is recorded"
        );
        assert!(
            !h.runs_with(&delivery("a", "2").lease),
            "a settling task's revocations are the settle's business"
        );
        drop(guard);
        assert!(h.leases().is_empty());
        let ready = h.take_ready();
        assert_eq!(ready.len(), 1);
        assert_eq!(ready[0].lease.receipt, "3");
        assert!(matches!(h.reclaim(delivery("a", "4")), Reclaim::New(_)));
    }

    #[test]
    fn a_guard_dropped_by_a_panic_still_removes_its_task_and_its_counts() {
        let h = Arc::new(InFlight::default());
        let stats = Arc::new(WorkerStats::default());
        let (h2, s2) = (h.clone(), stats.clone());
        let panicked = std::thread::spawn(move || {
            let _guard = register(&h2, delivery("b", "1"), &s2);
            assert_eq!(h2.count(), 1);
            assert_eq!(s2.in_flight.load(Ordering::Relaxed), 1);
            panic!("a bug while the task runs");
        })
        .join();
        assert!(panicked.is_err());
        assert_eq!(h.count(), 0);
        assert_eq!(stats.in_flight.load(Ordering::Relaxed), 0);
        assert!(h.leases().is_empty(), "no lease is renewed for it");
        assert!(h.running_tasks().is_empty());
    }

    #[test]
    fn cancel_stops_the_task_and_is_remembered_until_it_ends() {
        let h = Arc::new(InFlight::default());
        let stats = Arc::new(WorkerStats::default());
        let stop = CancellationToken::new();
        let d = delivery("c", "1");
        let guard = h.register(d.lease, task("c"), stop.clone(), stats);
        assert!(!h.was_cancelled("c"));
        h.cancel("c");
        assert!(stop.is_cancelled());
        assert!(h.was_cancelled("c"));
        h.set_attempt("c", 3);
        assert_eq!(h.running_tasks()[0].attempt, 3);
        drop(guard);
        assert!(!h.was_cancelled("c"));
    }
}
