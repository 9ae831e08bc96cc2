//! The schema, its migrations, and the statements the claim and the fence share.

/// `PRAGMA user_version` of the schema below.
pub(super) const SCHEMA_VERSION: i64 = 4;

pub(super) const SCHEMA: &str = "
CREATE TABLE IF NOT EXISTS tasks (
    seq            INTEGER PRIMARY KEY AUTOINCREMENT,
    id             TEXT UNIQUE NOT NULL,
    type           TEXT NOT NULL,
    params         TEXT NOT NULL DEFAULT '{}',
    correlation_id TEXT,
    status         TEXT NOT NULL DEFAULT 'queued'
                   CHECK (status IN ('queued', 'scheduled', 'running', 'succeeded', 'dead', 'cancelled')),
    deliveries     INTEGER NOT NULL DEFAULT 0,
    lease_owner    TEXT,
    lease_until    INTEGER,
    lease_token    INTEGER NOT NULL DEFAULT 0,
    result         TEXT,
    error          TEXT,
    enqueued_at    INTEGER DEFAULT (CAST((julianday('now') - 2440587.5) * 86400000 AS INTEGER)),
    finished_at    INTEGER,
    cancel_requested INTEGER NOT NULL DEFAULT 0,
    run_at         INTEGER,
    priority       INTEGER NOT NULL DEFAULT 0,
    attempts       INTEGER NOT NULL DEFAULT 0,
    last_error     TEXT,
    traceparent    TEXT
);
CREATE INDEX IF NOT EXISTS tasks_claim ON tasks (status, type, seq);
CREATE INDEX IF NOT EXISTS tasks_ready ON tasks (type, priority DESC, seq) WHERE status = 'queued';
CREATE INDEX IF NOT EXISTS tasks_due ON tasks (run_at) WHERE status = 'scheduled';
CREATE INDEX IF NOT EXISTS tasks_finished ON tasks (status, finished_at);
CREATE TABLE IF NOT EXISTS paused_types (
    type      TEXT PRIMARY KEY,
    paused_at INTEGER NOT NULL
);
";

/// Version 1 to 2: statuses `scheduled` and `cancelled` (the CHECK constraint cannot be altered in
/// place, so the table is copied), `cancel_requested`, the dead-letter index and `paused_types`.
pub(super) const MIGRATE_1_TO_2: &str = "
ALTER TABLE tasks RENAME TO tasks_v1;
DROP INDEX IF EXISTS tasks_claim;
";
pub(super) const COPY_1_TO_2: &str = "
INSERT INTO tasks (seq, id, type, params, correlation_id, status, deliveries, lease_owner, lease_until,
                   lease_token, result, error, enqueued_at, finished_at)
SELECT seq, id, type, params, correlation_id, status, deliveries, lease_owner, lease_until,
       lease_token, result, error, enqueued_at, finished_at FROM tasks_v1;
DROP TABLE tasks_v1;
";

/// Version 3 to 4: the task's W3C `traceparent`.
pub(super) const MIGRATE_3_TO_4: &str = "ALTER TABLE tasks ADD COLUMN traceparent TEXT;";

/// Claims skip paused types (a primary-key probe of `paused_types`). Highest priority first, then oldest
/// (see [`due`]).
pub(super) const SELECT_QUEUED: &str =
    "SELECT priority, seq FROM tasks WHERE status = 'queued' AND type = ?1
     AND NOT EXISTS (SELECT 1 FROM paused_types WHERE paused_types.type = ?1)
     ORDER BY priority DESC, seq LIMIT ?2";
/// A running task whose host died with a cancel pending is not run again (see `CANCEL_ORPHANS`).
pub(super) const SELECT_EXPIRED: &str = "SELECT priority, seq FROM tasks WHERE status = 'running' AND type = ?1
     AND (lease_until IS NULL OR lease_until < ?2) AND cancel_requested = 0
     AND NOT EXISTS (SELECT 1 FROM paused_types WHERE paused_types.type = ?1) ORDER BY seq LIMIT ?3";
pub(super) const TAKE: &str = "UPDATE tasks SET status = 'running', lease_owner = ?1, lease_until = ?2,
     deliveries = deliveries + 1, lease_token = lease_token + 1 WHERE seq = ?3
     RETURNING id, type, params, correlation_id, deliveries, lease_token, run_at, priority, attempts,
       last_error, traceparent";
/// Running tasks with a cancel pending whose lease expired (their host died before it could stop them)
/// become `cancelled` instead of running again. `?1` now (ms), `?2` now (RFC 3339), `?3` this host.
pub(super) const CANCEL_ORPHANS: &str = "UPDATE tasks SET status = 'cancelled', finished_at = ?1, lease_owner = NULL,
     lease_until = NULL, result = json_object('id', id, 'type', type, 'status', 'cancelled',
       'error', json_object('message', 'cancelled; its host was gone before it stopped the task', 'outcome', 'cancelled'),
       'attempts', deliveries, 'host', ?3, 'started_at', ?2, 'finished_at', ?2, 'duration_ms', 0)
     WHERE status = 'running' AND cancel_requested = 1 AND lease_until < ?1";
/// Every fenced statement ends with this condition on `?1` id, `?2` owner, `?3` token.
pub(super) const FENCE: &str =
    "WHERE id = ?1 AND lease_owner = ?2 AND lease_token = ?3 AND status = 'running'";
