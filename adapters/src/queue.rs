//! The queue side of a task manager: what `workerhost submit`, `workerhost status` and the operations
//! endpoints need ([`Queue`]). A host that only consumes never calls these.

use crate::ops::{Cancelled, DeadFilter, DeadLetter, DeadSelection, OpsError, TypeDepth};
use crate::{AdapterError, Envelope, ResultDocument, TaskStatus};
use std::future::Future;
use std::time::Duration;

/// Putting tasks in and asking about them.
///
/// Implementations must be cheap to share (`&self` everywhere) and must never block the async runtime.
pub trait Queue: Send + Sync {
    /// Enqueues a task.
    fn submit(&self, envelope: &Envelope) -> impl Future<Output = Result<(), AdapterError>> + Send;

    /// Enqueues a task and returns the id the task manager knows it by (some assign their own).
    fn enqueue(
        &self,
        envelope: &Envelope,
    ) -> impl Future<Output = Result<String, AdapterError>> + Send {
        async move { self.submit(envelope).await.map(|_| envelope.id.clone()) }
    }

    /// A task's state and result, where the task manager keeps them.
    fn status(
        &self,
        id: &str,
    ) -> impl Future<Output = Result<Option<TaskStatus>, AdapterError>> + Send;

    /// Waits for the task's result document, asking [`Queue::status`] every `poll` (an application that
    /// produces tasks and wants their outcome, without a host of its own). `Ok(None)`: none within
    /// `timeout`. Task managers that keep no status (amqp) answer their status error at once.
    fn wait_result(
        &self,
        id: &str,
        timeout: Duration,
        poll: Duration,
    ) -> impl Future<Output = Result<Option<ResultDocument>, AdapterError>> + Send {
        async move {
            let deadline = tokio::time::Instant::now() + timeout;
            loop {
                if let Some(doc) = self.status(id).await?.and_then(|s| s.result) {
                    return Ok(Some(doc));
                }
                let now = tokio::time::Instant::now();
                if now >= deadline {
                    return Ok(None);
                }
                tokio::time::sleep(poll.min(deadline - now)).await;
            }
        }
    }

    // The operations of SPEC section 8 (see [`crate::ops`]); each defaults to "not supported".

    /// Cancels a queued, scheduled or running task; a finished one is [`OpsError::Finished`].
    fn cancel(&self, _id: &str) -> impl Future<Output = Result<Cancelled, OpsError>> + Send {
        async move { Err(OpsError::not_supported("cancel")) }
    }

    /// Dead letters, newest first.
    fn dead_list(
        &self,
        _filter: &DeadFilter,
    ) -> impl Future<Output = Result<Vec<DeadLetter>, OpsError>> + Send {
        async move { Err(OpsError::not_supported("dead list")) }
    }

    /// Puts dead letters back in the queue (same id and params, attempts reset); returns how many.
    fn dead_retry(
        &self,
        _which: &DeadSelection,
    ) -> impl Future<Output = Result<u64, OpsError>> + Send {
        async move { Err(OpsError::not_supported("dead retry")) }
    }

    /// Removes dead letters; returns how many.
    fn dead_purge(
        &self,
        _filter: &DeadFilter,
    ) -> impl Future<Output = Result<u64, OpsError>> + Send {
        async move { Err(OpsError::not_supported("dead purge")) }
    }

    /// Per task type: queued, scheduled, running, dead, paused and the oldest due task's age. One cheap
    /// query: the host samples it for the gauges.
    fn depth(&self) -> impl Future<Output = Result<Vec<TypeDepth>, OpsError>> + Send {
        async move { Err(OpsError::not_supported("queue")) }
    }

    /// Pauses (`true`) or resumes a task type for every host sharing this task manager.
    fn set_paused(
        &self,
        _task_type: &str,
        paused: bool,
    ) -> impl Future<Output = Result<(), OpsError>> + Send {
        let verb = if paused { "pause" } else { "resume" };
        async move { Err(OpsError::not_supported(verb)) }
    }
}
