//! [`Source`]: every adapter this build has, as one enum that is both a [`Consumer`] and a [`Queue`],
//! dispatched without `dyn` (the traits' futures are not object safe). Each variant exists only with its
//! cargo feature.

use crate::{
    AdapterError, ClaimRequest, Consumer, Delivery, Envelope, Lease, Queue, ResultDocument,
    Revoked, Settled, TaskStatus, ops,
};
use std::time::Duration;

#[cfg(not(any(
    feature = "sqlite",
    feature = "redis",
    feature = "amqp",
    feature = "http",
    feature = "postgres"
)))]
compile_error!("enable at least one task manager feature: sqlite, redis, amqp, http or postgres");

/// The task manager the host was configured with.
pub enum Source {
    #[cfg(feature = "sqlite")]
    Sqlite(crate::sqlite::SqliteSource),
    #[cfg(feature = "redis")]
    Redis(crate::redis_streams::RedisSource),
    #[cfg(feature = "amqp")]
    Amqp(crate::amqp::AmqpSource),
    #[cfg(feature = "http")]
    Http(crate::http_api::HttpSource),
    #[cfg(feature = "postgres")]
    Postgres(crate::postgres::PostgresSource),
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
            #[cfg(feature = "postgres")]
            Source::Postgres($s) => $e,
        }
    };
}

/// The calls made for every task (claim, renew, settle, release, requeue) box the adapter's future: an
/// `async` call through this enum is otherwise as large as the largest adapter's future (PostgreSQL's
/// and AMQP's are kilobytes), and every task's own future, which holds it, is moved when it is spawned.
impl Consumer for Source {
    fn kind(&self) -> &'static str {
        dispatch!(self, s => s.kind())
    }
    async fn claim(&self, req: &ClaimRequest) -> Result<Vec<Delivery>, AdapterError> {
        dispatch!(self, s => Box::pin(s.claim(req)).await)
    }
    async fn renew(&self, leases: &[Lease]) -> Result<Vec<Revoked>, AdapterError> {
        dispatch!(self, s => Box::pin(s.renew(leases)).await)
    }
    async fn settle(&self, lease: &Lease, doc: &ResultDocument) -> Result<Settled, AdapterError> {
        dispatch!(self, s => Box::pin(s.settle(lease, doc)).await)
    }
    async fn release(&self, lease: &Lease) -> Result<(), AdapterError> {
        dispatch!(self, s => Box::pin(s.release(lease)).await)
    }
    async fn requeue(&self, lease: &Lease, task: &Envelope) -> Result<(), AdapterError> {
        dispatch!(self, s => Box::pin(s.requeue(lease, task)).await)
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
    fn wants_progress(&self) -> bool {
        dispatch!(self, s => s.wants_progress())
    }
    fn reruns_failures(&self) -> bool {
        dispatch!(self, s => s.reruns_failures())
    }
    fn progress(&self, task_id: &str, percent: f64, message: Option<&str>) {
        dispatch!(self, s => s.progress(task_id, percent, message))
    }
    fn begin_shutdown(&self) {
        dispatch!(self, s => s.begin_shutdown())
    }
    fn unreadable_answers(&self) -> u64 {
        dispatch!(self, s => s.unreadable_answers())
    }
    async fn stop_consuming(&self) {
        dispatch!(self, s => s.stop_consuming().await)
    }
    async fn close(&self) {
        dispatch!(self, s => s.close().await)
    }
}

impl Queue for Source {
    async fn submit(&self, envelope: &Envelope) -> Result<(), AdapterError> {
        dispatch!(self, s => s.submit(envelope).await)
    }
    async fn enqueue(&self, envelope: &Envelope) -> Result<String, AdapterError> {
        dispatch!(self, s => s.enqueue(envelope).await)
    }
    async fn status(&self, id: &str) -> Result<Option<TaskStatus>, AdapterError> {
        dispatch!(self, s => s.status(id).await)
    }
    async fn cancel(&self, id: &str) -> Result<ops::Cancelled, ops::OpsError> {
        dispatch!(self, s => s.cancel(id).await)
    }
    async fn dead_list(&self, f: &ops::DeadFilter) -> Result<Vec<ops::DeadLetter>, ops::OpsError> {
        dispatch!(self, s => s.dead_list(f).await)
    }
    async fn dead_retry(&self, which: &ops::DeadSelection) -> Result<u64, ops::OpsError> {
        dispatch!(self, s => s.dead_retry(which).await)
    }
    async fn dead_purge(&self, f: &ops::DeadFilter) -> Result<u64, ops::OpsError> {
        dispatch!(self, s => s.dead_purge(f).await)
    }
    async fn depth(&self) -> Result<Vec<ops::TypeDepth>, ops::OpsError> {
        dispatch!(self, s => s.depth().await)
    }
    async fn set_paused(&self, task_type: &str, paused: bool) -> Result<(), ops::OpsError> {
        dispatch!(self, s => s.set_paused(task_type, paused).await)
    }
}
