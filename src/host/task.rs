//! What each task's own async task does around the proxy: take its permits, record the outcome (retrying
//! while the task manager is unreachable), and forward progress reports.

use super::HostState;
use crate::proxy::{Final, Proxy};
use crate::registry::WorkerEntry;
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::Duration;
use tokio::sync::{Notify, OwnedSemaphorePermit, Semaphore};
use tokio_util::sync::CancellationToken;
use workerhost_adapters::{AdapterError, Consumer, Envelope, Lease, ResultDocument, Source};

/// What a task's own async task needs of the host.
pub(super) struct TaskCtx {
    pub(super) source: Arc<Source>,
    pub(super) proxy: Proxy,
    pub(super) global_sem: Arc<Semaphore>,
    pub(super) settling: Arc<Semaphore>,
    pub(super) held: Arc<super::Held>,
    pub(super) done: Arc<Notify>,
    pub(super) state: Arc<HostState>,
}

impl TaskCtx {
    /// The permits taken at claim time, or (if an adapter handed over more than was asked) waits for them.
    pub(super) async fn permits(
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

    /// Runs the task through the proxy and records its outcome. Returns the permits still held (the
    /// caller frees them after its bookkeeping); they were given up early if the outcome was recorded
    /// while the next task started.
    #[allow(clippy::too_many_arguments)]
    pub(super) async fn run(
        &self,
        worker: &WorkerEntry,
        env: &Envelope,
        lease: &Lease,
        first_attempt: u32,
        global: Option<OwnedSemaphorePermit>,
        local: Option<OwnedSemaphorePermit>,
        kill: &CancellationToken,
    ) -> Option<Permits> {
        let mut permits = Some(self.permits(global, local, worker).await);
        let ran = self.proxy.run(worker, env, first_attempt, kill).await;
        // The newest claim of the task (the task manager may have handed it over again meanwhile).
        let lease = &self.held.settling(&env.id, lease);
        match ran {
            Final::Done { doc, .. } => {
                let at = doc.finished_at.clone();
                if doc.succeeded() {
                    worker.stats.record_success(at);
                } else {
                    let msg = doc.error_message().unwrap_or_else(|| "failed".into());
                    worker.stats.record_failure(msg, at);
                }
                // The process is done: its capacity goes to the next task while the outcome is recorded
                // (one broker round trip), unless `concurrency` outcomes are being recorded already: a
                // task manager that hands out tasks but takes no outcomes must not make the host run
                // ever more of them.
                let settling = self.settling.clone().try_acquire_owned().ok();
                if settling.is_some() {
                    permits = None;
                    self.done.notify_one();
                }
                settle(&self.source, lease, &doc, &self.state, kill).await;
                drop(settling);
            }
            Final::Released if self.state.was_cancelled(&env.id) => {
                let doc = self.cancelled_doc(worker, env, first_attempt);
                let mut e = crate::observers::Event::new(
                    crate::observers::EventKind::TaskCancelled,
                    &doc.host,
                );
                e.task_id = Some(env.id.clone());
                e.task_type = Some(env.task_type.clone());
                e.worker = Some(worker.config.name.clone());
                e.attempt = Some(first_attempt);
                self.proxy.observers.emit(e);
                // Fenced like any outcome: if the task's own outcome was recorded first, that one stays.
                settle(
                    &self.source,
                    lease,
                    &doc,
                    &self.state,
                    &CancellationToken::new(),
                )
                .await;
            }
            Final::Released => match self.source.release(lease).await {
                Ok(()) => {
                    tracing::warn!(task_id = %env.id, "task handed back to the task manager unfinished")
                }
                Err(e) => {
                    tracing::warn!(task_id = %env.id, error = %e, "could not hand the task back; it returns when its lease expires")
                }
            },
        }
        permits
    }
}

impl TaskCtx {
    /// The result document of a task stopped by a cancel.
    fn cancelled_doc(&self, worker: &WorkerEntry, env: &Envelope, attempt: u32) -> ResultDocument {
        let now = workerhost_adapters::rfc3339_ms(workerhost_adapters::now_ms());
        ResultDocument {
            id: env.id.clone(),
            task_type: env.task_type.clone(),
            status: workerhost_adapters::ResultStatus::Cancelled,
            error: Some(
                serde_json::json!({"message": "cancelled while running", "outcome": "cancelled"}),
            ),
            attempts: attempt,
            worker: Some(worker.config.name.clone()),
            host: self.proxy.host_id.clone(),
            started_at: now.clone(),
            finished_at: now,
            correlation_id: env.correlation_id.clone(),
            result: None,
            duration_ms: 0,
            usage: None,
        }
    }
}

/// The host-wide and the worker's own permit of a running task.
pub(super) type Permits = (Option<OwnedSemaphorePermit>, Option<OwnedSemaphorePermit>);

/// Records an outcome, retrying while the task manager is unreachable (the lease is renewed meanwhile,
/// so the task is not redelivered). A lost lease is logged and counted: the new holder's outcome wins.
pub(super) async fn settle(
    source: &Source,
    lease: &Lease,
    doc: &ResultDocument,
    state: &HostState,
    kill: &CancellationToken,
) {
    let mut backoff = Duration::from_millis(100);
    loop {
        // A settle call in progress does not outlast the kill either.
        let answer = tokio::select! {
            a = source.settle(lease, doc) => a,
            _ = kill.cancelled() => {
                tracing::warn!(task_id = %lease.task_id, "stopping before the outcome was recorded; the task will be delivered again");
                return;
            }
        };
        match answer {
            Ok(()) => return,
            Err(AdapterError::LeaseLost { id }) => {
                state.lost_leases.fetch_add(1, Ordering::Relaxed);
                tracing::warn!(task_id = %id, status = %doc.status, "lease lost before the outcome was recorded: another host holds the task; this outcome is dropped");
                return;
            }
            Err(AdapterError::Refused { id, reason }) => {
                // Final: retrying cannot help, and the slot must not stay held (counted with the lost).
                state.lost_leases.fetch_add(1, Ordering::Relaxed);
                tracing::error!(task_id = %id, status = %doc.status, %reason, "the task manager refused the outcome for good; it is dropped");
                return;
            }
            Err(e) => {
                tracing::warn!(task_id = %lease.task_id, error = %e, "cannot record the outcome yet; retrying");
                tokio::select! {
                    _ = tokio::time::sleep(backoff) => {}
                    _ = kill.cancelled() => {
                        tracing::warn!(task_id = %lease.task_id, "stopping before the outcome was recorded; the task will be delivered again");
                        return;
                    }
                }
                backoff = (backoff * 2).min(Duration::from_secs(10));
            }
        }
    }
}
