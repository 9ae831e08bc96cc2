//! What each task's own async task does around the proxy: take its permits, record the outcome (retrying
//! while the task manager is unreachable), and forward progress reports.

use super::HostState;
use crate::proxy::Proxy;
use crate::registry::WorkerEntry;
use crate::runner::Progress;
use std::collections::HashSet;
use std::sync::atomic::Ordering;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};
use tokio::sync::{Notify, OwnedSemaphorePermit, Semaphore};
use tokio_util::sync::CancellationToken;
use workerhost_adapters::{AdapterError, Lease, ResultDocument, Source, TaskSource};

/// What a task's own async task needs of the host.
pub(super) struct TaskCtx {
    pub(super) source: Arc<Source>,
    pub(super) proxy: Proxy,
    pub(super) global_sem: Arc<Semaphore>,
    pub(super) settling: Arc<Semaphore>,
    pub(super) leases: Arc<Mutex<HashSet<Lease>>>,
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
    ) -> (Option<OwnedSemaphorePermit>, Option<OwnedSemaphorePermit>) {
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
}

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
        match source.settle(lease, doc).await {
            Ok(()) => return,
            Err(AdapterError::LeaseLost { id }) => {
                state.lost_leases.fetch_add(1, Ordering::Relaxed);
                tracing::warn!(task_id = %id, status = %doc.status, "lease lost before the outcome was recorded: another host holds the task; this outcome is dropped");
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

/// Forwards workers' progress reports to the task manager, at most one call a second per task (the
/// newest report wins; 100% always goes through). Ends when the host drops its sender.
pub(super) async fn forward_progress(
    source: Arc<Source>,
    mut rx: tokio::sync::mpsc::Receiver<Progress>,
) {
    let mut last: std::collections::HashMap<String, Instant> = std::collections::HashMap::new();
    while let Some(p) = rx.recv().await {
        let now = Instant::now();
        let due = last
            .get(&p.task_id)
            .is_none_or(|t| now.duration_since(*t) >= Duration::from_secs(1));
        if !due && p.percent < 100.0 {
            continue;
        }
        last.insert(p.task_id.clone(), now);
        if last.len() > 10_000 {
            last.retain(|_, t| now.duration_since(*t) < Duration::from_secs(60));
        }
        if let Err(e) = source
            .progress(&p.task_id, p.percent, p.message.as_deref())
            .await
        {
            tracing::debug!(task_id = %p.task_id, error = %e, "progress not recorded");
        }
    }
}
