//! Time on the sqlite queue (section 7): `run_at` (ms), `priority`, and what a retry that waits in the
//! task manager carries (`attempts`, `last_error`).
//!
//! - A task not due yet is `scheduled`, in the partial index `tasks_due (run_at) WHERE status =
//!   'scheduled'`. Each claim first turns the due ones `queued` ([`PROMOTE`]): one range of that index,
//!   a single seek when nothing is due, so a claim never reads the rows of tasks that are not due, however
//!   many there are.
//! - Queued tasks are claimed highest `priority` first, then oldest, through the partial index
//!   `tasks_ready (type, priority DESC, seq) WHERE status = 'queued'`, which gives that order without a
//!   sort.
//! - A retry that waits here ([`crate::Consumer::requeue`]) settles the attempt through the lease fence
//!   and makes the row `scheduled` again with `deliveries = 0`: a recorded outcome, not a delivery.

use super::SqliteSource;
use crate::{AdapterError, Envelope, Lease, now_ms};
use rusqlite::types::Value as SqlValue;

/// Schema version 2 to 3: the time columns and their indexes (the indexes are created by the schema
/// itself, which runs after this).
pub(super) const MIGRATE_2_TO_3: &str = "
ALTER TABLE tasks ADD COLUMN run_at INTEGER;
ALTER TABLE tasks ADD COLUMN priority INTEGER NOT NULL DEFAULT 0;
ALTER TABLE tasks ADD COLUMN attempts INTEGER NOT NULL DEFAULT 0;
ALTER TABLE tasks ADD COLUMN last_error TEXT;
";

/// Scheduled tasks due by `?1` (ms) become queued. `INDEXED BY`: without statistics the planner would
/// rather take the `status` prefix of another index and read every scheduled row.
pub(super) const PROMOTE: &str = "UPDATE tasks INDEXED BY tasks_due SET status = 'queued'
     WHERE status = 'scheduled' AND run_at <= ?1";

/// The status a new or requeued task starts in.
pub(super) fn initial_status(task: &Envelope, now: i64) -> &'static str {
    if task.is_scheduled(now) {
        "scheduled"
    } else {
        "queued"
    }
}

impl SqliteSource {
    /// See [`crate::Consumer::requeue`].
    pub(super) async fn requeue_at(
        &self,
        lease: &Lease,
        task: &Envelope,
    ) -> Result<(), AdapterError> {
        let now = now_ms();
        let set = "status = ?4, run_at = ?5, attempts = ?6, last_error = ?7, deliveries = 0,
             lease_owner = NULL, lease_until = NULL";
        let extra = vec![
            SqlValue::Text(initial_status(task, now).into()),
            task.run_at
                .map_or(SqlValue::Null, |t| SqlValue::Integer(t.0)),
            i64::from(task.attempts).into(),
            task.last_error
                .clone()
                .map_or(SqlValue::Null, SqlValue::Text),
        ];
        self.fenced(lease, set, extra).await
    }
}
