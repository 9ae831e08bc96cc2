//! The queue side of a task manager: what `workerhost submit`, `workerhost status` and the operations
//! endpoints need ([`Queue`]). A host that only consumes never calls these.

use crate::{AdapterError, Envelope, TaskStatus};
use std::future::Future;

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
}
