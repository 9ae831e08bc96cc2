//! Recording a verdict, the one place that does: the worker's counters, the terminal events, then the
//! task manager (the outcome recorded, the retry put back due at its time, or the task handed back),
//! retrying while the task manager is unreachable. The lease is renewed meanwhile, so the task is not
//! redelivered; a lost lease is logged and counted, and the new holder's outcome wins.

use super::HostState;
use crate::observers::Observers;
use crate::registry::WorkerEntry;
use crate::verdict::{Judged, Verdict};
use backon::{ExponentialBuilder, Retryable};
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::Duration;
use tokio_util::sync::CancellationToken;
use workerhost_adapters::{AdapterError, Consumer, Envelope, Lease, Settled, Source, rfc3339_ms};

/// What settling needs of the host.
#[derive(Clone)]
pub struct Settler {
    pub source: Arc<Source>,
    pub state: Arc<HostState>,
    pub observers: Observers,
}

impl Settler {
    /// Settles `judged` with `lease`. `task` is the envelope it ran with (needed to put a retry back),
    /// `worker` its worker when one handles it. `kill` gives up at once: the task is delivered again.
    pub async fn settle(
        &self,
        lease: &Lease,
        judged: &Judged,
        task: Option<&Envelope>,
        worker: Option<&WorkerEntry>,
        kill: &CancellationToken,
    ) {
        let at = rfc3339_ms(judged.finished_ms);
        match (&judged.verdict, worker) {
            (Verdict::Succeeded { .. }, Some(w)) => w.stats.record_success(at),
            (Verdict::Dead { message, .. }, Some(w)) => w.stats.record_failure(message.clone(), at),
            _ => {}
        }
        for e in judged.events() {
            self.observers.emit(e);
        }
        let id = &lease.task_id;
        match &judged.verdict {
            Verdict::Released => match self.source.release(lease).await {
                Ok(()) => {
                    tracing::warn!(task_id = %id, "task handed back to the task manager unfinished")
                }
                Err(e) => {
                    tracing::warn!(task_id = %id, error = %e, "could not hand the task back; it returns when its lease expires")
                }
            },
            Verdict::RetryAt { at, .. } => {
                let Some(back) = task.and_then(|t| judged.retry_envelope(t)) else {
                    return;
                };
                let put_back = || self.source.requeue(lease, &back);
                if self.record(lease, "retry", put_back, kill).await.is_some() {
                    tracing::info!(task_id = %id, retry_at = %at, attempts = judged.attempts, "retry waits in the task manager");
                    self.state.queued_retries.add(id, *at);
                }
            }
            Verdict::Succeeded { .. } | Verdict::Dead { .. } | Verdict::Cancelled => {
                let Some(doc) = judged.document() else {
                    return;
                };
                let store = || self.source.settle(lease, &doc);
                match self.record(lease, doc.status.as_str(), store, kill).await {
                    Some(Settled::Recorded) => {
                        if let Some(e) = judged.dead_lettered() {
                            self.observers.emit(e);
                        }
                    }
                    Some(Settled::RerunByTaskManager) => {
                        tracing::info!(task_id = %id, attempts = judged.attempts, "failure recorded; the task manager runs the task again itself")
                    }
                    None => {}
                }
            }
        }
    }

    /// Calls `op` until it answers, backing off while the task manager is unreachable. `None`: not
    /// recorded (the lease is gone, the task manager refused for good, or `kill`).
    async fn record<T, F, Fut>(
        &self,
        lease: &Lease,
        what: &str,
        op: F,
        kill: &CancellationToken,
    ) -> Option<T>
    where
        F: FnMut() -> Fut,
        Fut: Future<Output = Result<T, AdapterError>>,
    {
        let id = &lease.task_id;
        let backoff = ExponentialBuilder::default()
            .with_min_delay(Duration::from_millis(100))
            .with_max_delay(Duration::from_secs(10))
            .without_max_times();
        let attempts = op
            .retry(backoff)
            .when(|e| matches!(e, AdapterError::Unavailable(_) | AdapterError::Backend(_)))
            .notify(|e, _| tracing::warn!(task_id = %id, error = %e, "cannot record the outcome yet; retrying"));
        // A call in progress does not outlast the kill either.
        let answer = tokio::select! {
            a = attempts => a,
            _ = kill.cancelled() => {
                tracing::warn!(task_id = %id, "stopping before the outcome was recorded; the task will be delivered again");
                return None;
            }
        };
        match answer {
            Ok(v) => Some(v),
            Err(AdapterError::LeaseLost { id }) => {
                self.state.lost_leases.fetch_add(1, Ordering::Relaxed);
                tracing::warn!(task_id = %id, status = what, "lease lost before the outcome was recorded: another host holds the task; this outcome is dropped");
                None
            }
            Err(AdapterError::Refused { id, reason }) => {
                // Final: retrying cannot help, and the slot must not stay held (counted with the lost).
                self.state.lost_leases.fetch_add(1, Ordering::Relaxed);
                tracing::error!(task_id = %id, status = what, %reason, "the task manager refused the outcome for good; it is dropped");
                None
            }
            Err(e) => {
                tracing::error!(task_id = %id, error = %e, "cannot record the outcome");
                None
            }
        }
    }
}
