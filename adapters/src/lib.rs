//! Where tasks come from: one small trait ([`TaskSource`]) and one module per task manager.
//!
//! Adapters know nothing of processes, workers or retries; the host knows nothing of SQLite, Redis or AMQP.
//! The host claims [`Delivery`]s, runs them, and settles each exactly once: with a result document
//! ([`TaskSource::settle`], which stores a success or a dead letter) or by handing it back unfinished
//! ([`TaskSource::release`], on shutdown). Delivery is at least once: a task leaves the queue only when its
//! outcome has been recorded, and a task whose lease expires (its host died) is delivered again.

use serde_json::{Map, Value};
use std::future::Future;
use std::time::Duration;

#[cfg(feature = "amqp")]
pub mod amqp;
pub mod envelope;
/// The PrismQ TaskManager HTTP API.
#[cfg(feature = "http")]
pub mod http_api;
/// Redis streams (the module is not called `redis`, which would shadow the `redis` crate).
#[cfg(feature = "redis")]
pub mod redis_streams;
#[cfg(feature = "sqlite")]
pub mod sqlite;
pub mod time;

pub use envelope::{Envelope, ResultDocument, TaskStatus};
pub use time::{Stamp, now_rfc3339, rfc3339_ms};

/// Errors every adapter can return.
#[derive(Debug, thiserror::Error)]
pub enum AdapterError {
    /// Settling or renewing was refused because another host holds the task now (our lease expired and
    /// was taken over). The outcome we hold must be dropped, never written over the new holder's.
    #[error("lease on task {id} was lost: another host took it over after the lease expired")]
    LeaseLost { id: String },
    #[error("a task with id {id} already exists")]
    Duplicate { id: String },
    #[error("invalid task: {0}")]
    Invalid(String),
    /// The task manager cannot be reached right now; the host retries with backoff.
    #[error("task manager unavailable: {0}")]
    Unavailable(String),
    #[error("task manager error: {0}")]
    Backend(String),
}

/// What the host can start right now: a claim never returns more than it asks for.
#[derive(Debug, Clone, Default)]
pub struct ClaimRequest {
    /// One slot per worker with free capacity: at most `max` tasks whose type is one of `types`.
    pub slots: Vec<ClaimSlot>,
    /// Every task type some worker of this host handles. Adapters that can see a task's type before
    /// claiming it may dead-letter tasks of other types ("no worker handles type ...").
    pub known_types: Vec<String>,
    /// At most this many in all (the host's free capacity); `None`: the sum of the slots. Every worker
    /// with room gets a slot, so every type is asked for, while the total stays within capacity.
    pub limit: Option<usize>,
}

#[derive(Debug, Clone)]
pub struct ClaimSlot {
    pub types: Vec<String>,
    pub max: usize,
}

impl ClaimRequest {
    pub fn total(&self) -> usize {
        let sum = self.slots.iter().map(|s| s.max).sum();
        self.limit.map_or(sum, |l| l.min(sum))
    }
}

/// A claimed task: the envelope (or why it is not one) and the lease that lets the host settle it.
#[derive(Debug, Clone)]
pub struct Delivery {
    pub lease: Lease,
    /// The parsed envelope, or the reason the message is not a valid one (the host dead-letters it).
    pub envelope: Result<Envelope, Malformed>,
    /// How many times this task has been delivered, this delivery included (1 on the first).
    pub deliveries: u32,
}

#[derive(Debug, Clone)]
pub struct Malformed {
    /// The raw message as text, kept in the dead letter.
    pub raw: String,
    pub reason: String,
}

/// The right to settle one delivery. `receipt` is adapter-specific (a fencing token, a stream entry id,
/// a delivery tag) and opaque to the host.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct Lease {
    pub task_id: String,
    pub receipt: String,
}

/// The seam between the host and a task manager.
///
/// Implementations must be cheap to share (`&self` everywhere) and must never block the async runtime.
pub trait TaskSource: Send + Sync {
    /// The adapter's name as in `task_manager.type`.
    fn kind(&self) -> &'static str;

    /// Claims up to `req.total()` tasks in all, respecting each slot's `max`. Returns promptly, possibly with none;
    /// the host waits [`TaskSource::idle_wait`] before asking again after an empty answer.
    fn claim(
        &self,
        req: &ClaimRequest,
    ) -> impl Future<Output = Result<Vec<Delivery>, AdapterError>> + Send;

    /// Extends the leases of tasks still running. Returns the leases that could not be renewed because
    /// they were lost.
    fn renew(
        &self,
        leases: &[Lease],
    ) -> impl Future<Output = Result<Vec<Lease>, AdapterError>> + Send;

    /// Records the outcome (success stored, or dead-lettered) and only then removes the task from the
    /// queue. Fenced: returns [`AdapterError::LeaseLost`] if another host holds the task now.
    fn settle(
        &self,
        lease: &Lease,
        doc: &ResultDocument,
    ) -> impl Future<Output = Result<(), AdapterError>> + Send;

    /// Hands an unfinished task back to the queue for redelivery (shutdown). Where the task manager can
    /// tell, this delivery does not count toward `max_deliveries`.
    fn release(&self, lease: &Lease) -> impl Future<Output = Result<(), AdapterError>> + Send;

    /// Enqueues a task.
    fn submit(&self, envelope: &Envelope) -> impl Future<Output = Result<(), AdapterError>> + Send;

    /// A task's state and result, where the task manager keeps them.
    fn status(
        &self,
        id: &str,
    ) -> impl Future<Output = Result<Option<TaskStatus>, AdapterError>> + Send;

    /// Checks the connection.
    fn ping(&self) -> impl Future<Output = Result<(), AdapterError>> + Send;

    /// How long to wait before claiming again after a claim that returned nothing.
    fn idle_wait(&self) -> Duration;

    /// The wait after a claim that returned nothing: [`TaskSource::idle_wait`], or less when the adapter
    /// learns that tasks may have arrived (so an idle host starts a new task at once, not at its next poll).
    fn wait_for_tasks(&self) -> impl Future<Output = ()> + Send {
        tokio::time::sleep(self.idle_wait())
    }

    /// Enqueues a task and returns the id the task manager knows it by (some assign their own).
    fn enqueue(
        &self,
        envelope: &Envelope,
    ) -> impl Future<Output = Result<String, AdapterError>> + Send {
        async move { self.submit(envelope).await.map(|_| envelope.id.clone()) }
    }

    /// Whether [`TaskSource::progress`] goes anywhere (the host forwards workers' progress lines only then).
    fn wants_progress(&self) -> bool {
        false
    }

    /// Records a running task's progress (0..100) where the task manager supports it.
    fn progress(
        &self,
        _task_id: &str,
        _percent: f64,
        _message: Option<&str>,
    ) -> impl Future<Output = Result<(), AdapterError>> + Send {
        async { Ok(()) }
    }

    /// The host will claim no more (shutdown began). Push-based adapters stop consuming and hand back
    /// whatever they buffered but never handed out. In-flight deliveries are still settled or released.
    fn stop_consuming(&self) -> impl Future<Output = ()> + Send {
        async {}
    }

    /// Everything is settled or released; close connections.
    fn close(&self) -> impl Future<Output = ()> + Send {
        async {}
    }
}

/// Every adapter this build has, dispatched without `dyn` (the trait's futures are not object safe).
pub enum Source {
    #[cfg(feature = "sqlite")]
    Sqlite(sqlite::SqliteSource),
    #[cfg(feature = "redis")]
    Redis(redis_streams::RedisSource),
    #[cfg(feature = "amqp")]
    Amqp(amqp::AmqpSource),
    #[cfg(feature = "http")]
    Http(http_api::HttpSource),
}

macro_rules! dispatch {
    ($self:ident, $s:ident => $e:expr) => {
        match $self {
            #[cfg(feature = "sqlite")]
            Source::Sqlite($s) => $e,
            #[cfg(feature = "redis")]
            Source::Redis($s) => $e,
            #[cfg(feature = "amqp")]
            Source::Amqp($s) => $e,
            #[cfg(feature = "http")]
            Source::Http($s) => $e,
        }
    };
}

impl TaskSource for Source {
    fn kind(&self) -> &'static str {
        dispatch!(self, s => s.kind())
    }
    async fn claim(&self, req: &ClaimRequest) -> Result<Vec<Delivery>, AdapterError> {
        dispatch!(self, s => s.claim(req).await)
    }
    async fn renew(&self, leases: &[Lease]) -> Result<Vec<Lease>, AdapterError> {
        dispatch!(self, s => s.renew(leases).await)
    }
    async fn settle(&self, lease: &Lease, doc: &ResultDocument) -> Result<(), AdapterError> {
        dispatch!(self, s => s.settle(lease, doc).await)
    }
    async fn release(&self, lease: &Lease) -> Result<(), AdapterError> {
        dispatch!(self, s => s.release(lease).await)
    }
    async fn submit(&self, envelope: &Envelope) -> Result<(), AdapterError> {
        dispatch!(self, s => s.submit(envelope).await)
    }
    async fn status(&self, id: &str) -> Result<Option<TaskStatus>, AdapterError> {
        dispatch!(self, s => s.status(id).await)
    }
    async fn ping(&self) -> Result<(), AdapterError> {
        dispatch!(self, s => s.ping().await)
    }
    fn idle_wait(&self) -> Duration {
        dispatch!(self, s => s.idle_wait())
    }
    async fn wait_for_tasks(&self) {
        dispatch!(self, s => s.wait_for_tasks().await)
    }
    async fn stop_consuming(&self) {
        dispatch!(self, s => s.stop_consuming().await)
    }
    async fn enqueue(&self, envelope: &Envelope) -> Result<String, AdapterError> {
        dispatch!(self, s => s.enqueue(envelope).await)
    }
    fn wants_progress(&self) -> bool {
        dispatch!(self, s => s.wants_progress())
    }
    async fn progress(
        &self,
        task_id: &str,
        percent: f64,
        message: Option<&str>,
    ) -> Result<(), AdapterError> {
        dispatch!(self, s => s.progress(task_id, percent, message).await)
    }
    async fn close(&self) {
        dispatch!(self, s => s.close().await)
    }
}

/// Turns a JSON object into a map, for adapters that store params as text.
pub fn as_object(v: Value) -> Option<Map<String, Value>> {
    match v {
        Value::Object(m) => Some(m),
        _ => None,
    }
}

/// Milliseconds since the Unix epoch; leases are wall-clock instants so that several processes agree.
pub fn now_ms() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_millis() as i64)
        .unwrap_or(0)
}
