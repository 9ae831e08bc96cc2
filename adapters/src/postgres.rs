//! The `postgres` task manager (section 4b): one table, `<schema>.tasks`, shared by every host and by any
//! application that enqueues in its own transaction.
//!
//! - Claims take due rows (`run_at <= now()`, status `queued` or `scheduled`) of the types whose workers
//!   have room and that are not paused, highest `priority` first, then oldest, with `FOR UPDATE SKIP
//!   LOCKED`: one statement for the whole batch (see [`claim`]). Each claim stamps the row with this
//!   host start's id (`lease_owner`), a deadline (`lease_until`, the database's clock) and a new fencing
//!   token (`lease_token`, the lease's receipt); `deliveries` counts up.
//! - Renewal, settling and hand-back touch a row only while owner and token still match, so a host whose
//!   lease expired and was taken over cannot write over the new holder's outcome. Renewal is one
//!   statement per round for every in-flight task; settles are grouped: the settles waiting while one
//!   batch is written go in the next, one statement and one commit for all of them (see [`settle`]).
//! - A row whose lease expired (its host died) is put back by the next claim that finds it, at most
//!   every second ([`claim::RESCUE_EVERY`]).
//! - Idle hosts LISTEN on `<schema>_tasks`; a trigger NOTIFYs at the commit of every enqueue, and the
//!   fallback poll (`poll_interval_ms`) covers lost notifications and `notify: false` (see [`listen`]).
//! - Finished rows stay in the table with their result document (`result`) and `error`; nothing
//!   deletes them but an operator (`workerhost dead purge`, or a `DELETE` by age).

mod claim;
mod conn;
mod listen;
pub mod migrations;
mod ops;
mod queue;
mod settings;
mod settle;
#[cfg(test)]
mod tests;
mod tls;

use crate::ops::{Cancelled, DeadFilter, DeadLetter, DeadSelection, OpsError, TypeDepth};
use crate::{
    AdapterError, ClaimRequest, Consumer, Delivery, Envelope, Lease, Queue, ResultDocument,
    Revoked, Settled, TaskStatus,
};
use deadpool_postgres::{Manager, ManagerConfig, Pool, RecyclingMethod};
use migrations::{MigrateReport, SchemaState};

use conn::Conn;
pub use settings::Settings;
use std::sync::Arc;
use std::time::Duration;
use tokio_postgres::error::SqlState;
use tokio_util::sync::CancellationToken;

/// Every statement's answer is awaited at most this long: a server that stops answering (a partition,
/// not a restart, which closes the socket) makes the call fail with [`AdapterError::Unavailable`].
const OP_TIMEOUT: Duration = Duration::from_secs(10);

/// How the adapter is opened.
#[derive(Debug, Clone)]
pub struct Options {
    /// This host start's unique id; written as `lease_owner`.
    pub host_id: String,
    pub settings: Settings,
    /// Whether [`PostgresSource::open`] creates or upgrades the schema (`false` for `workerhost check`
    /// and `workerhost migrate`, which report or migrate themselves).
    pub migrate: bool,
}

/// The `postgres` task manager; see the module docs.
pub struct PostgresSource {
    s: Arc<Shared>,
    settler: settle::Settler,
    rescue: claim::Rescue,
    listener: listen::Listener,
}

/// What every part of the adapter reads.
struct Shared {
    cfg: Conn,
    pool: Pool,
    host_id: String,
    /// The statements, with the schema written in.
    sql: Statements,
    /// Stops the settle batcher and the listener at [`Consumer::close`].
    stop: CancellationToken,
}

/// The SQL of the hot paths, formatted once.
struct Statements {
    claim: String,
    rescue: String,
    renew: String,
    settle: String,
    settled_before: String,
    release: String,
    requeue: String,
    insert: String,
    status: String,
}

impl Statements {
    fn new(schema: &str) -> Statements {
        let f = |s: &str| s.replace("{s}", schema);
        Statements {
            claim: f(claim::CLAIM),
            rescue: f(claim::RESCUE),
            renew: f(settle::RENEW),
            settle: f(settle::SETTLE),
            settled_before: f(settle::SETTLED_BEFORE),
            release: f(settle::RELEASE),
            requeue: f(settle::REQUEUE),
            insert: f(queue::INSERT),
            status: f(queue::STATUS),
        }
    }
}

impl PostgresSource {
    /// Makes the pool (connections are opened on demand), checks that the database answers and, with
    /// `opts.migrate`, creates or upgrades the schema.
    pub async fn open(opts: Options) -> Result<PostgresSource, AdapterError> {
        let cfg = Conn::new(&opts.settings)?;
        let tls = tls::Tls::for_settings(&cfg)?;
        let mc = || ManagerConfig {
            recycling_method: RecyclingMethod::Fast,
        };
        let manager = match &tls {
            tls::Tls::Plain => Manager::from_config(cfg.pg.clone(), tokio_postgres::NoTls, mc()),
            tls::Tls::Rustls(t) => Manager::from_config(cfg.pg.clone(), t.clone(), mc()),
        };
        let pool = Pool::builder(manager)
            .max_size(cfg.max_connections)
            .wait_timeout(Some(OP_TIMEOUT))
            .create_timeout(Some(OP_TIMEOUT))
            .recycle_timeout(Some(OP_TIMEOUT))
            .runtime(deadpool_postgres::Runtime::Tokio1)
            .build()
            .map_err(|e| AdapterError::Invalid(format!("postgres pool for {}: {e}", cfg.shown)))?;
        let stop = CancellationToken::new();
        let s = Arc::new(Shared {
            sql: Statements::new(&cfg.schema),
            cfg,
            pool,
            host_id: opts.host_id,
            stop: stop.clone(),
        });
        if opts.migrate {
            let report = s.migrate().await?;
            if !report.applied.is_empty() {
                tracing::info!(schema = %s.cfg.schema, from = report.from, to = report.to, "postgres schema migrated");
            }
        } else {
            drop(s.client().await?);
        }
        Ok(PostgresSource {
            settler: settle::Settler::spawn(s.clone()),
            rescue: claim::Rescue::default(),
            listener: listen::Listener::new(s.clone(), tls),
            s,
        })
    }

    /// Creates or upgrades the schema (what `workerhost migrate` runs).
    pub async fn migrate(&self) -> Result<MigrateReport, AdapterError> {
        self.s.migrate().await
    }

    /// Where the database's schema stands against this build (what `workerhost check` reports).
    pub async fn schema_state(&self) -> Result<SchemaState, AdapterError> {
        let c = self.s.client().await?;
        let schema = self.s.cfg.schema.clone();
        self.s
            .timed(async { migrations::state(&**c, &schema).await })
            .await
    }

    /// The schema every object lives in.
    pub fn schema(&self) -> &str {
        &self.s.cfg.schema
    }

    /// The URL as logs show it (password `***`).
    pub fn shown_url(&self) -> &str {
        &self.s.cfg.shown
    }
}

impl Shared {
    /// A pooled connection, or why there is none.
    async fn client(&self) -> Result<deadpool_postgres::Object, AdapterError> {
        self.pool.get().await.map_err(|e| {
            let msg = match &e {
                deadpool_postgres::PoolError::Backend(pg) => self.describe(pg),
                other => other.to_string(),
            };
            AdapterError::Unavailable(format!(
                "postgres {}: {}",
                self.cfg.shown,
                self.cfg.scrub(&msg)
            ))
        })
    }

    /// Runs `f` within [`OP_TIMEOUT`], mapping its error.
    async fn timed<T>(
        &self,
        f: impl Future<Output = Result<T, tokio_postgres::Error>>,
    ) -> Result<T, AdapterError> {
        match tokio::time::timeout(OP_TIMEOUT, f).await {
            Ok(r) => r.map_err(|e| self.error(&e)),
            Err(_) => Err(AdapterError::Unavailable(format!(
                "postgres {}: no answer within {} s",
                self.cfg.shown,
                OP_TIMEOUT.as_secs()
            ))),
        }
    }

    /// A server error's message (with detail), or the client's own.
    fn describe(&self, e: &tokio_postgres::Error) -> String {
        match e.as_db_error() {
            Some(db) => match db.detail() {
                Some(d) => format!("{}: {d}", db.message()),
                None => db.message().to_string(),
            },
            None => conn::error_chain(e),
        }
    }

    /// Connection trouble is [`AdapterError::Unavailable`] (the host backs off and reports /health
    /// degraded); anything the server refused is [`AdapterError::Backend`].
    fn error(&self, e: &tokio_postgres::Error) -> AdapterError {
        let msg = format!(
            "postgres {}: {}",
            self.cfg.shown,
            self.cfg.scrub(&self.describe(e))
        );
        let unavailable = match e.code() {
            None => true,
            Some(c) => {
                c.code().starts_with("08")
                    || [
                        SqlState::ADMIN_SHUTDOWN,
                        SqlState::CRASH_SHUTDOWN,
                        SqlState::CANNOT_CONNECT_NOW,
                        SqlState::TOO_MANY_CONNECTIONS,
                        SqlState::T_R_SERIALIZATION_FAILURE,
                        SqlState::T_R_DEADLOCK_DETECTED,
                        SqlState::QUERY_CANCELED,
                    ]
                    .contains(c)
            }
        };
        if unavailable {
            AdapterError::Unavailable(msg)
        } else {
            AdapterError::Backend(msg)
        }
    }

    async fn migrate(&self) -> Result<MigrateReport, AdapterError> {
        let mut c = self.client().await?;
        let schema = self.cfg.schema.clone();
        let client: &mut tokio_postgres::Client = &mut c;
        match tokio::time::timeout(OP_TIMEOUT * 6, migrations::migrate(client, &schema)).await {
            Ok(Ok(r)) => Ok(r),
            Ok(Err(migrations::MigrateError::Db(e))) => Err(match self.error(&e) {
                AdapterError::Backend(m) => {
                    AdapterError::Backend(format!("{m} (while migrating schema {schema})"))
                }
                other => other,
            }),
            Ok(Err(e @ migrations::MigrateError::Newer { .. })) => Err(AdapterError::Backend(
                format!("postgres {} schema {schema}: {e}", self.cfg.shown),
            )),
            Err(_) => Err(AdapterError::Unavailable(format!(
                "postgres {}: migrating schema {schema} did not finish in time",
                self.cfg.shown
            ))),
        }
    }
}

impl Consumer for PostgresSource {
    fn kind(&self) -> &'static str {
        "postgres"
    }

    async fn claim(&self, req: &ClaimRequest) -> Result<Vec<Delivery>, AdapterError> {
        self.rescue.run_if_due(&self.s).await?;
        claim::claim(&self.s, req).await
    }

    async fn renew(&self, leases: &[Lease]) -> Result<Vec<Revoked>, AdapterError> {
        settle::renew(&self.s, leases).await
    }

    async fn settle(&self, lease: &Lease, doc: &ResultDocument) -> Result<Settled, AdapterError> {
        self.record(lease, doc).await.map(|()| Settled::Recorded)
    }

    async fn release(&self, lease: &Lease) -> Result<(), AdapterError> {
        settle::release(&self.s, lease).await
    }

    async fn requeue(&self, lease: &Lease, task: &Envelope) -> Result<(), AdapterError> {
        settle::requeue(&self.s, lease, task).await
    }

    async fn ping(&self) -> Result<(), AdapterError> {
        let c = self.s.client().await?;
        self.s.timed(c.simple_query("SELECT 1")).await.map(|_| ())
    }

    fn idle_wait(&self) -> Duration {
        self.s.cfg.poll_interval
    }

    async fn wait_for_tasks(&self) {
        self.listener.wait(self.s.cfg.poll_interval).await;
    }

    async fn close(&self) {
        self.s.stop.cancel();
        self.s.pool.close();
    }
}

impl Queue for PostgresSource {
    async fn submit(&self, envelope: &Envelope) -> Result<(), AdapterError> {
        queue::submit(&self.s, envelope).await
    }

    async fn status(&self, id: &str) -> Result<Option<TaskStatus>, AdapterError> {
        queue::status(&self.s, id).await
    }

    async fn cancel(&self, id: &str) -> Result<Cancelled, OpsError> {
        ops::cancel(&self.s, id).await
    }

    async fn dead_list(&self, f: &DeadFilter) -> Result<Vec<DeadLetter>, OpsError> {
        ops::dead_list(&self.s, f).await
    }

    async fn dead_retry(&self, which: &DeadSelection) -> Result<u64, OpsError> {
        ops::dead_retry(&self.s, which).await
    }

    async fn dead_purge(&self, f: &DeadFilter) -> Result<u64, OpsError> {
        ops::dead_purge(&self.s, f).await
    }

    async fn depth(&self) -> Result<Vec<TypeDepth>, OpsError> {
        ops::depth(&self.s).await
    }

    async fn set_paused(&self, task_type: &str, paused: bool) -> Result<(), OpsError> {
        ops::set_paused(&self.s, task_type, paused).await
    }
}

impl Drop for PostgresSource {
    fn drop(&mut self) {
        self.s.stop.cancel();
    }
}

impl PostgresSource {
    /// Records the outcome (see [`Consumer::settle`]).
    async fn record(&self, lease: &Lease, doc: &ResultDocument) -> Result<(), AdapterError> {
        self.settler.settle(lease, doc).await
    }
}
