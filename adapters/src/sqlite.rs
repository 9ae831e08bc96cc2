//! The embedded task manager: one SQLite file shared by the host, `workerhost submit` and `workerhost status`.
//!
//! Every task is a row of `tasks`, kept after it is settled so that its result can be read back. A claim
//! takes the oldest `queued` rows (or `running` rows whose lease expired: their host died) and stamps them
//! with this host's id, a lease deadline and a new fencing token (`lease_token`, the lease's receipt).
//! Renewing, settling and releasing only touch a row whose owner and token still match, so a host whose
//! lease was taken over cannot write over the new holder's outcome.
//!
//! Several processes may share the file (WAL journal, busy timeout). Each [`SqliteSource`] has one
//! connection behind a mutex, used only from `spawn_blocking`.

use crate::{
    AdapterError, ClaimRequest, Consumer, Delivery, Envelope, Lease, ResultDocument, ResultStatus,
    RevokeReason, Revoked, Settled, now_ms,
};
use rows::claim_tx;
use rusqlite::types::Value as SqlValue;
use rusqlite::{Connection, ErrorCode, OptionalExtension, TransactionBehavior, params};
use sql::*;
use std::path::PathBuf;
use std::sync::atomic::{AtomicI64, Ordering};
use std::sync::{Arc, OnceLock};
use std::time::Duration;

mod due;
mod ops;
mod rows;
mod serial;
mod settings;
mod sql;
#[cfg(test)]
mod tests;
mod wake;

pub use settings::Settings;

const BUSY_TIMEOUT: Duration = Duration::from_secs(5);
/// Unknown task types are looked for at most this often.
const SWEEP_EVERY_MS: i64 = 2_000;
/// At most this many tasks of unknown types are handed to the host by one sweep (the next takes more).
const SWEEP_LIMIT: i64 = 200;

/// Where the file is and how this host leases tasks from it.
#[derive(Debug, Clone)]
pub struct SqliteOptions {
    pub path: PathBuf,
    /// This host start's unique id; written as `lease_owner`.
    pub host_id: String,
    /// How long a claim or a renewal holds a task.
    pub lease: Duration,
    /// What [`Consumer::idle_wait`] answers.
    pub poll_interval: Duration,
}

/// The `sqlite` task manager; see the module docs.
pub struct SqliteSource {
    conn: serial::Serial,
    /// The path as shown in error messages.
    path: Arc<str>,
    host_id: Arc<str>,
    lease_ms: i64,
    poll_interval: Duration,
    /// When queued tasks of unknown types were last looked for (ms since the epoch).
    last_sweep: AtomicI64,
    /// The file as opened, for the change watch.
    file: PathBuf,
    /// Wakes an idle host when the file changes; made by the first idle wait (only hosts wait).
    watch: OnceLock<Option<wake::Watch>>,
    /// `PRAGMA data_version` after the last claim: it changes when another connection commits.
    version: AtomicI64,
}

fn db_error(path: &str, e: rusqlite::Error) -> AdapterError {
    match e.sqlite_error_code() {
        Some(ErrorCode::DatabaseBusy | ErrorCode::DatabaseLocked) => {
            AdapterError::Unavailable(format!("sqlite database {path} is busy: {e}"))
        }
        _ => AdapterError::Backend(format!("sqlite database {path}: {e}")),
    }
}

impl SqliteSource {
    /// Opens (creating if missing) the file and its schema. Blocks briefly: call it at start-up.
    ///
    /// Two processes opening a new file at once (a host starting while `submit` creates the file) can
    /// meet in SQLite's deadlock avoidance: switching to WAL or upgrading a read lock answers BUSY at once,
    /// without waiting on the busy timeout. The open is then tried again, for as long as the busy timeout.
    pub fn open(opts: SqliteOptions) -> Result<SqliteSource, AdapterError> {
        let deadline = std::time::Instant::now() + BUSY_TIMEOUT;
        loop {
            match Self::open_once(&opts) {
                Err(AdapterError::Unavailable(_)) if std::time::Instant::now() < deadline => {
                    std::thread::sleep(Duration::from_millis(20));
                }
                other => return other,
            }
        }
    }

    fn open_once(opts: &SqliteOptions) -> Result<SqliteSource, AdapterError> {
        let shown = opts.path.display().to_string();
        let db = |e| db_error(&shown, e);
        if let Some(dir) = opts.path.parent().filter(|d| !d.as_os_str().is_empty()) {
            std::fs::create_dir_all(dir).map_err(|e| {
                AdapterError::Backend(format!(
                    "cannot create the folder of sqlite database {shown}: {e}"
                ))
            })?;
        }
        let mut conn = Connection::open(&opts.path).map_err(db)?;
        conn.busy_timeout(BUSY_TIMEOUT).map_err(db)?;
        // Every statement here stays prepared (claims, settles, renewals, the queue's own BEGIN/SAVEPOINT/
        // COMMIT): the default cache of 16 would evict and compile some again on every task.
        conn.set_prepared_statement_cache_capacity(64);
        // The bundled SQLite has STAT4: without the query planner stability guarantee, a cached statement
        // whose bound values changed (every claim's `now`) is compiled again at each step (measured: ~10%
        // of the host's CPU in spawn mode). The plans here never depend on the values.
        conn.set_db_config(
            rusqlite::config::DbConfig::SQLITE_DBCONFIG_ENABLE_QPSG,
            true,
        )
        .map_err(db)?;
        let mode: String = conn
            .query_row("PRAGMA journal_mode = WAL", [], |r| r.get(0))
            .map_err(db)?;
        if !mode.eq_ignore_ascii_case("wal") {
            tracing::warn!(path = %shown, journal_mode = %mode, "sqlite database is not in WAL mode");
        }
        // In WAL mode NORMAL never corrupts; a power cut may forget the last commits (tasks come back).
        conn.pragma_update(None, "synchronous", "NORMAL")
            .map_err(db)?;
        let tx = conn
            .transaction_with_behavior(TransactionBehavior::Immediate)
            .map_err(db)?;
        migrate(&tx, &shown)?;
        tx.commit().map_err(db)?;
        Ok(SqliteSource {
            conn: serial::Serial::new(conn),
            path: shown.into(),
            host_id: opts.host_id.clone().into(),
            lease_ms: i64::try_from(opts.lease.as_millis()).unwrap_or(i64::MAX / 4),
            poll_interval: opts.poll_interval,
            last_sweep: AtomicI64::new(0),
            file: opts.path.clone(),
            watch: OnceLock::new(),
            version: AtomicI64::new(0),
        })
    }

    fn watch(&self) -> Option<&wake::Watch> {
        // Made on first use: only a host waits for tasks (not `submit` or `status`).
        self.watch
            .get_or_init(|| wake::Watch::new(&self.file))
            .as_ref()
    }

    /// Runs `f` on the connection in the blocking pool, after the calls queued before it.
    async fn run<T, F>(&self, f: F) -> Result<T, AdapterError>
    where
        T: Send + 'static,
        F: FnOnce(&mut Connection) -> rusqlite::Result<T> + Send + 'static,
    {
        self.outcome(self.conn.run(f).await)
    }

    /// Runs the write `f` in the blocking pool, after the calls queued before it, in a transaction it
    /// shares with the writes queued next to it; `Ok` once that transaction has committed.
    async fn write<T, F>(&self, f: F) -> Result<T, AdapterError>
    where
        T: Send + 'static,
        F: FnOnce(&Connection) -> rusqlite::Result<T> + Send + 'static,
    {
        self.outcome(self.conn.write(f).await)
    }

    /// A queued call's result as the adapter reports it (`None`: the call panicked).
    fn outcome<T>(&self, out: Option<rusqlite::Result<T>>) -> Result<T, AdapterError> {
        match out {
            Some(out) => out.map_err(|e| db_error(&self.path, e)),
            None => Err(AdapterError::Backend(format!(
                "sqlite database {}: the call panicked",
                self.path
            ))),
        }
    }

    /// A fenced single-row update; 0 rows changed means the lease was lost.
    async fn fenced(
        &self,
        lease: &Lease,
        set: &'static str,
        extra: Vec<SqlValue>,
    ) -> Result<(), AdapterError> {
        let lost = || AdapterError::LeaseLost {
            id: lease.task_id.clone(),
        };
        let token: i64 = lease.receipt.parse().map_err(|_| lost())?;
        let mut args = vec![
            lease.task_id.clone().into(),
            self.host_id.to_string().into(),
            token.into(),
        ];
        args.extend(extra);
        let changed = self
            .write(move |c| {
                let sql = format!("UPDATE tasks SET {set} {FENCE}");
                c.prepare_cached(&sql)?
                    .execute(rusqlite::params_from_iter(args))
            })
            .await?;
        if changed == 0 { Err(lost()) } else { Ok(()) }
    }
}

/// Creates the schema in a new file, or upgrades an older one with its rows, in the open transaction.
fn migrate(tx: &rusqlite::Transaction, shown: &str) -> Result<(), AdapterError> {
    let db = |e| db_error(shown, e);
    let version: i64 = tx
        .pragma_query_value(None, "user_version", |r| r.get(0))
        .map_err(db)?;
    match version {
        0 => {
            tx.execute_batch(SCHEMA).map_err(db)?;
            tx.pragma_update(None, "user_version", SCHEMA_VERSION)
                .map_err(db)?;
        }
        1 => {
            tracing::info!(path = %shown, "upgrading the sqlite schema from version 1 to {SCHEMA_VERSION}");
            tx.execute_batch(MIGRATE_1_TO_2).map_err(db)?;
            tx.execute_batch(SCHEMA).map_err(db)?;
            tx.execute_batch(COPY_1_TO_2).map_err(db)?;
            tx.pragma_update(None, "user_version", SCHEMA_VERSION)
                .map_err(db)?;
        }
        2 | 3 => {
            tracing::info!(path = %shown, "upgrading the sqlite schema from version {version} to {SCHEMA_VERSION} (run_at, priority, traceparent)");
            if version == 2 {
                tx.execute_batch(due::MIGRATE_2_TO_3).map_err(db)?;
            }
            tx.execute_batch(MIGRATE_3_TO_4).map_err(db)?;
            tx.execute_batch(SCHEMA).map_err(db)?;
            tx.pragma_update(None, "user_version", SCHEMA_VERSION)
                .map_err(db)?;
        }
        SCHEMA_VERSION => {}
        v => {
            return Err(AdapterError::Backend(format!(
                "sqlite database {shown} has schema version {v}; this workerhost knows {SCHEMA_VERSION}"
            )));
        }
    }
    Ok(())
}

/// Changes when another connection commits (never for this connection's own commits).
fn data_version(c: &Connection) -> rusqlite::Result<i64> {
    c.prepare_cached("PRAGMA data_version")?
        .query_row([], |r| r.get(0))
}

impl Consumer for SqliteSource {
    fn kind(&self) -> &'static str {
        "sqlite"
    }

    async fn claim(&self, req: &ClaimRequest) -> Result<Vec<Delivery>, AdapterError> {
        let now = now_ms();
        let last = self.last_sweep.load(Ordering::Relaxed);
        let sweep = !req.known_types.is_empty()
            && now.saturating_sub(last) >= SWEEP_EVERY_MS
            && self
                .last_sweep
                .compare_exchange(last, now, Ordering::Relaxed, Ordering::Relaxed)
                .is_ok();
        if req.total() == 0 && !sweep {
            return Ok(Vec::new());
        }
        let (host, lease_ms) = (Arc::clone(&self.host_id), self.lease_ms);
        let (slots, total) = (req.slots.clone(), req.total());
        let known = sweep.then(|| req.known_types.clone());
        let (claimed, version) = self
            .write(move |c| {
                let claimed = claim_tx(c, &host, lease_ms, &slots, total, known.as_deref())?;
                Ok((claimed, data_version(c)?))
            })
            .await?;
        self.version.store(version, Ordering::SeqCst);
        Ok(claimed)
    }

    async fn renew(&self, leases: &[Lease]) -> Result<Vec<Revoked>, AdapterError> {
        if leases.is_empty() {
            return Ok(Vec::new());
        }
        let (host, lease_ms, leases) = (Arc::clone(&self.host_id), self.lease_ms, leases.to_vec());
        self.write(move |c| {
            let until = now_ms().saturating_add(lease_ms);
            let mut lost = Vec::new();
            // A cancelled task's lease is renewed too: its host still settles it (as `cancelled`).
            let sql =
                format!("UPDATE tasks SET lease_until = ?4 {FENCE} RETURNING cancel_requested");
            let mut stmt = c.prepare_cached(&sql)?;
            for lease in leases {
                let renewed: Option<i64> = match lease.receipt.parse::<i64>() {
                    Ok(token) => stmt
                        .query_row(params![lease.task_id, &*host, token, until], |r| r.get(0))
                        .optional()?,
                    Err(_) => None,
                };
                match renewed {
                    None => lost.push(Revoked::lost(lease)),
                    Some(0) => {}
                    Some(_) => lost.push(Revoked {
                        lease,
                        reason: RevokeReason::Cancelled,
                    }),
                }
            }
            Ok(lost)
        })
        .await
    }

    async fn settle(&self, lease: &Lease, doc: &ResultDocument) -> Result<Settled, AdapterError> {
        self.record(lease, doc).await.map(|()| Settled::Recorded)
    }

    async fn release(&self, lease: &Lease) -> Result<(), AdapterError> {
        let set = "status = 'queued', lease_owner = NULL, lease_until = NULL, deliveries = MAX(deliveries - 1, 0)";
        self.fenced(lease, set, Vec::new()).await
    }

    async fn requeue(&self, lease: &Lease, task: &Envelope) -> Result<(), AdapterError> {
        self.requeue_at(lease, task).await
    }

    async fn ping(&self) -> Result<(), AdapterError> {
        self.run(|c| c.query_row("SELECT 1", [], |r| r.get::<_, i64>(0)))
            .await
            .map(drop)
    }

    fn idle_wait(&self) -> Duration {
        self.poll_interval
    }

    /// Until another process commits to the file (a task may have been enqueued), at most the poll interval.
    async fn wait_for_tasks(&self) {
        let Some(armed) = self.watch().and_then(wake::Watch::arm) else {
            return tokio::time::sleep(self.poll_interval).await;
        };
        // A commit between the last claim and the watch shows in the connection's data_version.
        let before = self.version.load(Ordering::SeqCst);
        if self
            .run(|c| data_version(c))
            .await
            .is_ok_and(|v| v != before)
        {
            return;
        }
        armed.changed(self.poll_interval).await;
    }
}

impl SqliteSource {
    /// Records the outcome (see [`Consumer::settle`]).
    async fn record(&self, lease: &Lease, doc: &ResultDocument) -> Result<(), AdapterError> {
        let error = if doc.status != ResultStatus::Dead {
            None
        } else {
            doc.error_message()
        };
        let json = serde_json::to_string(doc)
            .map_err(|e| AdapterError::Invalid(format!("task {}: result: {e}", lease.task_id)))?;
        let set = "status = ?4, result = ?5, error = ?6, finished_at = ?7, lease_owner = NULL, lease_until = NULL";
        let extra = vec![
            SqlValue::Text(doc.status.as_str().into()),
            json.into(),
            error.map_or(SqlValue::Null, SqlValue::Text),
            now_ms().into(),
        ];
        self.fenced(lease, set, extra).await
    }
}
