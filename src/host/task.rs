//! What each task's own async task does: hold its capacity, run the task through the proxy, and hand
//! the verdict to the settler (as a cancel when a renewal said the task was cancelled).

use super::in_flight::{Guard, InFlight, Permits};
use super::settle::Settler;
use crate::proxy::Proxy;
use crate::registry::WorkerEntry;
use crate::verdict::Verdict;
use std::sync::Arc;
use tokio::sync::{OwnedSemaphorePermit, Semaphore};
use tokio_util::sync::CancellationToken;
use workerhost_adapters::{Envelope, Lease};

/// What a task's own async task needs of the host.
pub(super) struct TaskCtx {
    pub(super) proxy: Proxy,
    pub(super) settler: Settler,
    pub(super) global_sem: Arc<Semaphore>,
    /// Outcomes being recorded after their process ended, at most `concurrency`.
    pub(super) settling: Arc<Semaphore>,
    pub(super) in_flight: Arc<InFlight>,
    /// The host's kill (the task's own `stop` is a child of it, also cancelled by a cancel).
    pub(super) kill: CancellationToken,
}

/// A task ready to run: its claim, envelope, worker and first attempt number.
pub(super) struct Start {
    pub(super) lease: Lease,
    pub(super) task: Envelope,
    pub(super) worker: Arc<WorkerEntry>,
    pub(super) first_attempt: u32,
}

impl TaskCtx {
    /// The permits taken at claim time, or (if an adapter handed over more than was asked) waits for them.
    async fn permits(
        &self,
        global: Option<OwnedSemaphorePermit>,
        local: Option<OwnedSemaphorePermit>,
        worker: &WorkerEntry,
    ) -> Permits {
        let g = match global {
            Some(p) => Some(p),
            None => self.global_sem.clone().acquire_owned().await.ok(),
        };
        let l = match local {
            Some(p) => Some(p),
            None => worker.permits.clone().acquire_owned().await.ok(),
        };
        (g, l)
    }

    /// Runs the task and settles its verdict. `guard` holds its place in flight (and its capacity,
    /// which goes to the next task as soon as the process is done, while the outcome is recorded).
    pub(super) async fn run(
        &self,
        s: &Start,
        permits: (Option<OwnedSemaphorePermit>, Option<OwnedSemaphorePermit>),
        guard: &mut Guard,
        stop: &CancellationToken,
    ) {
        guard.hold(self.permits(permits.0, permits.1, &s.worker).await);
        let mut judged = self
            .proxy
            .run(&s.worker, &s.task, s.first_attempt, stop)
            .await;
        // The newest claim of the task (the task manager may have handed it over again meanwhile).
        let lease = self.in_flight.settling(&s.task.id, &s.lease);
        if matches!(judged.verdict, Verdict::Released) && self.in_flight.was_cancelled(&s.task.id) {
            judged = judged.cancelled();
        }
        let records = matches!(
            judged.verdict,
            Verdict::Succeeded { .. } | Verdict::Dead { .. } | Verdict::RetryAt { .. }
        );
        // The process is done: its capacity goes to the next task while the outcome is recorded (one
        // broker round trip), unless `concurrency` outcomes are being recorded already: a task manager
        // that hands out tasks but takes no outcomes must not make the host run ever more of them.
        let settling = if records {
            self.settling.clone().try_acquire_owned().ok()
        } else {
            None
        };
        if settling.is_some() {
            guard.free_capacity();
        }
        self.settler
            .settle(&lease, &judged, Some(&s.task), Some(&s.worker), &self.kill)
            .await;
        drop(settling);
    }
}
