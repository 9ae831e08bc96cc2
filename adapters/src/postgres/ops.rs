//! The operations of SPEC section 8 on the postgres queue (the same semantics as sqlite's).
//!
//! - cancel: a `queued` or `scheduled` row becomes `cancelled` with a result document at once; a
//!   `running` row gets `cancel_requested`, which its host's next renewal reads (the renewal answers
//!   [`crate::RevokeReason::Cancelled`]); the host kills the process and settles `cancelled` through the
//!   fence, so a task whose own outcome is recorded first keeps it. A running row whose host died with a
//!   cancel pending is made `cancelled` by the next rescue instead of being run again.
//! - pause: a row in `paused_types`, which every claim excludes; a resume NOTIFYs idle hosts.
//! - depth: one statement over the `tasks_depth (status, type)` index: per state and type a count and
//!   the age of the oldest due queued row. Finished rows other than dead ones are outside it.
//! - dead letters: `status = 'dead'` through the `tasks_finished (status, finished_at)` index, newest
//!   first; a retry puts the row back `queued` (same id and params, attempts reset), which NOTIFYs.

use super::Shared;
use crate::ops::{Cancelled, DeadFilter, DeadLetter, DeadSelection, OpsError, TypeDepth, row_of};
use crate::{AdapterError, ResultDocument, rfc3339_ms};
use serde_json::Value;

/// `$1` type (NULL: any), `$2` dead-lettered before this many ms since the epoch (NULL: any age).
const DEAD_WHERE: &str = "status = 'dead' AND ($1::text IS NULL OR type = $1)
    AND ($2::bigint IS NULL OR finished_at < to_timestamp($2::bigint / 1000.0))";

/// Puts dead rows back: queued, attempts and deliveries reset, result and error cleared, due now.
const REQUEUE_SET: &str = "SET status = 'queued', deliveries = 0, attempts = 0, error = NULL,
    result = NULL, finished_at = NULL, lease_owner = NULL, lease_until = NULL, cancel_requested = false,
    run_at = now()";

/// A scheduled row whose time has come counts as queued; its wait starts at its `run_at`.
const DEPTH: &str = "
SELECT type, CASE WHEN status = 'scheduled' AND run_at <= now() THEN 'queued' ELSE status END AS st,
       count(*),
       (extract(epoch FROM now() - min(run_at)) * 1000)::bigint
FROM {s}.tasks WHERE status IN ('queued', 'scheduled', 'running', 'dead')
GROUP BY 1, 2";

fn q(s: &Shared, sql: &str) -> String {
    sql.replace("{s}", &s.cfg.schema)
}

/// A cancelled row's result document (the task never ran).
fn cancelled_doc(s: &Shared, id: &str, task_type: &str, attempts: i32) -> Value {
    let attempts = u32::try_from(attempts).unwrap_or(0);
    let why = "cancelled before it ran";
    let doc = ResultDocument::cancelled_unrun(id, task_type, attempts, &s.host_id, why);
    serde_json::to_value(doc).unwrap_or(Value::Null)
}

enum CancelRow {
    Missing,
    Done,
    Requested,
    Finished(String),
}

pub async fn cancel(s: &Shared, id: &str) -> Result<Cancelled, OpsError> {
    let mut c = s.client().await?;
    let select = q(
        s,
        "SELECT status, type, deliveries FROM {s}.tasks WHERE id = $1 FOR UPDATE",
    );
    let done = q(
        s,
        "UPDATE {s}.tasks SET status = 'cancelled', result = $2, error = NULL, finished_at = now(),
         lease_owner = NULL, lease_until = NULL WHERE id = $1",
    );
    let request = q(
        s,
        "UPDATE {s}.tasks SET cancel_requested = true WHERE id = $1",
    );
    let row = s
        .timed(async {
            let tx = c.transaction().await?;
            let Some(r) = tx.query_opt(&select, &[&id]).await? else {
                return Ok(CancelRow::Missing);
            };
            let status: String = r.try_get(0)?;
            let task_type: String = r.try_get(1)?;
            let deliveries: i32 = r.try_get(2)?;
            let out = match status.as_str() {
                "queued" | "scheduled" => {
                    let doc = cancelled_doc(s, id, &task_type, deliveries);
                    tx.execute(&done, &[&id, &doc]).await?;
                    CancelRow::Done
                }
                "running" => {
                    tx.execute(&request, &[&id]).await?;
                    CancelRow::Requested
                }
                _ => CancelRow::Finished(status),
            };
            tx.commit().await?;
            Ok(out)
        })
        .await?;
    let id = id.to_string();
    match row {
        CancelRow::Missing => Err(OpsError::NotFound { id }),
        CancelRow::Done => Ok(Cancelled::Done),
        CancelRow::Requested => Ok(Cancelled::Requested),
        CancelRow::Finished(status) => Err(OpsError::Finished { id, status }),
    }
}

pub async fn dead_list(s: &Shared, f: &DeadFilter) -> Result<Vec<DeadLetter>, OpsError> {
    let sql = q(
        s,
        &format!(
            "SELECT id, type, COALESCE((result->>'attempts')::int, deliveries), error,
                    (extract(epoch FROM finished_at) * 1000)::bigint
             FROM {{s}}.tasks WHERE {DEAD_WHERE} ORDER BY finished_at DESC, seq DESC LIMIT $3"
        ),
    );
    let limit = f
        .limit
        .map_or(i64::MAX, |l| i64::try_from(l).unwrap_or(i64::MAX));
    let c = s.client().await?;
    let rows = s
        .timed(async {
            let st = c.prepare_cached(&sql).await?;
            c.query(&st, &[&f.task_type, &f.before_ms, &limit]).await
        })
        .await?;
    let bad = |e: tokio_postgres::Error| OpsError::Adapter(s.error(&e));
    let mut out = Vec::with_capacity(rows.len());
    for r in rows {
        let attempts: i32 = r.try_get(2).map_err(bad)?;
        let at: Option<i64> = r.try_get(4).map_err(bad)?;
        out.push(DeadLetter {
            id: r.try_get(0).map_err(bad)?,
            task_type: r.try_get(1).map_err(bad)?,
            attempts: u32::try_from(attempts).unwrap_or(0),
            error: r.try_get(3).map_err(bad)?,
            at: at.map(rfc3339_ms),
        });
    }
    Ok(out)
}

/// What a retry by ids found: the count put back, or the first id that is unknown or not dead.
enum Retry {
    Done(u64),
    Refused(String, Option<String>),
}

pub async fn dead_retry(s: &Shared, which: &DeadSelection) -> Result<u64, OpsError> {
    let mut c = s.client().await?;
    let out = match which {
        DeadSelection::Ids(ids) => {
            let select = q(
                s,
                "SELECT id, status FROM {s}.tasks WHERE id = ANY($1) FOR UPDATE",
            );
            let update = q(
                s,
                &format!("UPDATE {{s}}.tasks {REQUEUE_SET} WHERE id = ANY($1) AND status = 'dead'"),
            );
            s.timed(async {
                let tx = c.transaction().await?;
                let rows = tx.query(&select, &[ids]).await?;
                let mut found = std::collections::HashMap::new();
                for r in rows {
                    found.insert(r.try_get::<_, String>(0)?, r.try_get::<_, String>(1)?);
                }
                // All or nothing: one id that is not dead changes nothing.
                for id in ids {
                    match found.get(id) {
                        Some(st) if st == "dead" => {}
                        other => return Ok(Retry::Refused(id.clone(), other.cloned())),
                    }
                }
                let n = tx.execute(&update, &[ids]).await?;
                tx.commit().await?;
                Ok(Retry::Done(n))
            })
            .await?
        }
        DeadSelection::All(f) => {
            let update = q(
                s,
                &format!("UPDATE {{s}}.tasks {REQUEUE_SET} WHERE {DEAD_WHERE}"),
            );
            let n = s
                .timed(c.execute(&update, &[&f.task_type, &f.before_ms]))
                .await?;
            Retry::Done(n)
        }
    };
    match out {
        Retry::Done(n) => Ok(n),
        Retry::Refused(id, None) => Err(OpsError::NotFound { id }),
        Retry::Refused(id, Some(status)) => Err(OpsError::NotDead { id, status }),
    }
}

pub async fn dead_purge(s: &Shared, f: &DeadFilter) -> Result<u64, OpsError> {
    let sql = q(s, &format!("DELETE FROM {{s}}.tasks WHERE {DEAD_WHERE}"));
    let c = s.client().await?;
    Ok(s.timed(c.execute(&sql, &[&f.task_type, &f.before_ms]))
        .await?)
}

pub async fn depth(s: &Shared) -> Result<Vec<TypeDepth>, OpsError> {
    let (depth, paused) = (q(s, DEPTH), q(s, "SELECT type FROM {s}.paused_types"));
    let c = s.client().await?;
    let (rows, paused) = s
        .timed(async {
            let rows = c.query(&depth, &[]).await?;
            let paused = c.query(&paused, &[]).await?;
            Ok((rows, paused))
        })
        .await?;
    let bad = |e: tokio_postgres::Error| OpsError::Adapter(s.error(&e));
    let mut out: Vec<TypeDepth> = Vec::new();
    for r in rows {
        let t: String = r.try_get(0).map_err(bad)?;
        let status: String = r.try_get(1).map_err(bad)?;
        let n = u64::try_from(r.try_get::<_, i64>(2).map_err(bad)?).unwrap_or(0);
        let age: Option<i64> = r.try_get(3).map_err(bad)?;
        let d = row_of(&mut out, &t);
        match status.as_str() {
            "queued" => {
                d.queued = n;
                d.oldest_seconds = age.map(|ms| (ms.max(0) as f64) / 1000.0);
            }
            "scheduled" => d.scheduled = n,
            "running" => d.running = n,
            _ => d.dead = n,
        }
    }
    for r in paused {
        let t: String = r.try_get(0).map_err(bad)?;
        row_of(&mut out, &t).paused = true;
    }
    Ok(out)
}

pub async fn set_paused(s: &Shared, task_type: &str, paused: bool) -> Result<(), OpsError> {
    if task_type.is_empty() {
        return Err(OpsError::Adapter(AdapterError::Invalid(
            "pause/resume: the task type is empty".into(),
        )));
    }
    let sql = if paused {
        q(
            s,
            "INSERT INTO {s}.paused_types (type) VALUES ($1) ON CONFLICT (type) DO NOTHING",
        )
    } else {
        // Idle hosts wake at once to claim the type's waiting tasks.
        q(
            s,
            &format!(
                "WITH d AS (DELETE FROM {{s}}.paused_types WHERE type = $1 RETURNING type)
                 SELECT pg_notify('{}_tasks', '') FROM d",
                s.cfg.schema
            ),
        )
    };
    let c = s.client().await?;
    s.timed(c.execute(&sql, &[&task_type])).await?;
    Ok(())
}
