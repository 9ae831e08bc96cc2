//! Where tasks come from: two small traits, split by what callers need, and one module per task manager.
//!
//! - [`Consumer`] (`consume.rs`): what a host needs. The host claims [`Delivery`]s, keeps their leases
//!   alive ([`Consumer::renew`], which says why a lease is gone: [`Revoked`]), runs them, and settles each
//!   exactly once: with a result document ([`Consumer::settle`], which stores a success or a dead letter)
//!   or by handing it back unfinished ([`Consumer::release`], on shutdown).
//! - [`Queue`] (`queue.rs`): what `submit`, `status` and the operations endpoints need.
//! - [`Source`] (`source.rs`): the enum of every adapter this build has (one variant per cargo feature),
//!   which is both, dispatched without `dyn`.
//!
//! Adapters know nothing of processes, workers or retries; the host knows nothing of SQLite, Redis or AMQP.
//! Delivery is at least once: a task leaves the queue only when its outcome has been recorded, and a task
//! whose lease expires (its host died) is delivered again.

use serde_json::{Map, Value};

#[cfg(feature = "amqp")]
pub mod amqp;
/// Without the `amqp` feature: only the settings, so that a config naming it is still checked.
#[cfg(not(feature = "amqp"))]
pub mod amqp {
    mod settings;
    pub use settings::{QueueType, Settings};
}
pub mod capabilities;
mod consume;
pub mod envelope;
/// The PrismQ TaskManager HTTP API.
#[cfg(feature = "http")]
pub mod http_api;
/// Without the `http` feature: only the settings.
#[cfg(not(feature = "http"))]
pub mod http_api {
    mod settings;
    pub use settings::Settings;
}
mod open;
pub mod ops;
#[cfg(feature = "postgres")]
pub mod postgres;
/// Without the `postgres` feature: only the settings.
#[cfg(not(feature = "postgres"))]
pub mod postgres {
    mod settings;
    pub use settings::Settings;
}
mod queue;
#[cfg(any(feature = "redis", feature = "amqp", feature = "postgres"))]
mod redact;
/// Redis streams (the module is not called `redis`, which would shadow the `redis` crate).
#[cfg(feature = "redis")]
pub mod redis_streams;
mod result;
/// Without the `redis` feature: only the settings.
#[cfg(not(feature = "redis"))]
pub mod redis_streams {
    mod settings;
    pub use settings::{MAX_BLOCK_MS, Settings};
}
pub mod settings;
mod source;
#[cfg(feature = "sqlite")]
pub mod sqlite;
/// Without the `sqlite` feature: only the settings.
#[cfg(not(feature = "sqlite"))]
pub mod sqlite {
    mod settings;
    pub use settings::Settings;
}
pub mod text;
pub mod time;

pub use capabilities::{Capabilities, TimeFlag, capabilities};
pub use consume::{
    ClaimRequest, ClaimSlot, Consumer, Delivery, Lease, Malformed, RevokeReason, Revoked, Settled,
};
pub use envelope::{
    Envelope, EnvelopeError, ResultDocument, ResultStatus, TaskState, TaskStatus, Usage,
};
pub use open::{OpenContext, open};
pub use queue::Queue;
pub use settings::TaskManagerSettings;
pub use source::Source;
pub use time::{Stamp, now_rfc3339, parse_rfc3339, rfc3339_ms, rfc3339_secs};

/// Errors every adapter can return.
#[derive(Debug, thiserror::Error)]
pub enum AdapterError {
    /// Settling or renewing was refused because another host holds the task now (our lease expired and
    /// was taken over). The outcome we hold must be dropped, never written over the new holder's.
    #[error("lease on task {id} was lost: another host took it over after the lease expired")]
    LeaseLost { id: String },
    /// The task manager refused the outcome for good (the task is gone, or it will never accept the
    /// request): retrying cannot help. The outcome is dropped and the slot freed.
    #[error("the task manager refused the outcome of task {id}: {reason}")]
    Refused { id: String, reason: String },
    #[error("a task with id {id} already exists")]
    Duplicate { id: String },
    #[error("invalid task: {0}")]
    Invalid(String),
    /// The task manager cannot be reached right now; the host retries with backoff.
    #[error("task manager unavailable: {0}")]
    Unavailable(String),
    #[error("task manager error: {0}")]
    Backend(String),
    /// The config names a task manager this build cannot open.
    #[error(
        "task manager type {kind:?} is not available in this build yet (supported: {available})"
    )]
    NotInBuild {
        kind: &'static str,
        /// The types this build can open.
        available: String,
    },
}

/// Waits between attempts to reach a task manager again: `min`, doubling, at most `max`, never giving up.
#[cfg(any(feature = "amqp", feature = "postgres"))]
pub(crate) fn backoff(
    min: std::time::Duration,
    max: std::time::Duration,
) -> backon::ExponentialBackoff {
    use backon::BackoffBuilder as _;
    backon::ExponentialBuilder::default()
        .with_min_delay(min)
        .with_max_delay(max)
        .without_max_times()
        .build()
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
