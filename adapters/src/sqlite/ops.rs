//! The operations of SPEC section 8 on the sqlite queue.
//!
//! - cancel: a `queued` or `scheduled` row becomes `cancelled` with a result document at once; a
//!   `running` row gets `cancel_requested = 1`, which its host's next renewal reads (the renewal answers
//!   [`crate::RevokeReason::Cancelled`]); the host kills the process and settles `cancelled` through the
//!   fence, so a task whose own outcome is recorded first keeps it. A running row whose host died with a
//!   cancel pending is made `cancelled` by the next claim instead of being run again.
//! - pause: a row in `paused_types`, which every claim's statements exclude (a primary-key probe per type).
//! - depth: one statement over the claim index (`status, type, seq`): per state and type a count and the
//!   first queued seq, whose `enqueued_at` is read by primary key. Finished rows (`succeeded`,
//!   `cancelled`) are outside every range it reads, however many there are.
//! - dead letters: `status = 'dead'` through the `tasks_finished (status, finished_at)` index, newest first.

use super::rows::{col, count, text};
use super::{SqliteSource, due};
use crate::ops::{Cancelled, DeadFilter, DeadLetter, DeadSelection, OpsError, TypeDepth, row_of};
use crate::{
    AdapterError, Envelope, Queue, ResultDocument, TaskState, TaskStatus, now_ms, rfc3339_ms,
};
use rusqlite::types::Value as SqlValue;
use rusqlite::{Connection, OptionalExtension, params, params_from_iter};
use serde_json::Value;

/// The depth statement (see the module docs); `EXPLAIN QUERY PLAN` of it is checked in the tests.
pub(super) const DEPTH: &str = "
SELECT g.type, g.status, g.n, t.enqueued_at
FROM (SELECT type, status, COUNT(*) AS n, MIN(seq) AS first FROM tasks
      WHERE status IN ('queued', 'scheduled', 'running', 'dead') GROUP BY status, type) AS g
LEFT JOIN tasks AS t ON t.seq = g.first AND g.status = 'queued'";

/// A cancelled row's result document (the task never ran, or its host is gone).
pub(super) fn cancelled_doc(
    id: &str,
    task_type: &str,
    attempts: u32,
    host: &str,
    why: &str,
) -> String {
    let doc = ResultDocument::cancelled_unrun(id, task_type, attempts, host, why);
    serde_json::to_string(&doc).unwrap_or_default()
}

enum CancelRow {
    Missing,
    Done,
    Requested,
    Finished(String),
}

fn cancel_tx(c: &Connection, id: &str, host: &str) -> rusqlite::Result<CancelRow> {
    let row = c
        .prepare_cached("SELECT status, type, deliveries FROM tasks WHERE id = ?1")?
        .query_row([id], |r| Ok((col(r, 0)?, col(r, 1)?, count(r, 2)?)))
        .optional()?;
    let Some((status, task_type, deliveries)) = row else {
        return Ok(CancelRow::Missing);
    };
    match status.as_str() {
        "queued" | "scheduled" => {
            let doc = cancelled_doc(id, &task_type, deliveries, host, "cancelled before it ran");
            c.prepare_cached(
                "UPDATE tasks SET status = 'cancelled', result = ?2, error = NULL, finished_at = ?3,
                 lease_owner = NULL, lease_until = NULL WHERE id = ?1",
            )?
            .execute(params![id, doc, now_ms()])?;
            Ok(CancelRow::Done)
        }
        "running" => {
            c.prepare_cached("UPDATE tasks SET cancel_requested = 1 WHERE id = ?1")?
                .execute([id])?;
            Ok(CancelRow::Requested)
        }
        _ => Ok(CancelRow::Finished(status)),
    }
}

/// The ids of `ids` that are not dead, with their status (`None`: unknown).
fn not_dead(c: &Connection, ids: &[String]) -> rusqlite::Result<Option<(String, Option<String>)>> {
    let mut stmt = c.prepare_cached("SELECT status FROM tasks WHERE id = ?1")?;
    for id in ids {
        let status: Option<String> = stmt.query_row([id], |r| col(r, 0)).optional()?;
        if status.as_deref() != Some("dead") {
            return Ok(Some((id.clone(), status)));
        }
    }
    Ok(None)
}

/// Puts dead rows back: queued, attempts (deliveries) reset, result and error cleared, due now (`?1`).
const REQUEUE: &str = "UPDATE tasks SET status = 'queued', deliveries = 0, attempts = 0, last_error = NULL,
     run_at = NULL, result = NULL, error = NULL,
     finished_at = NULL, lease_owner = NULL, lease_until = NULL, cancel_requested = 0, enqueued_at = ?1
     WHERE ";

/// `status = 'dead'` plus the filter's type and age, with their values (after `first` placeholders).
fn dead_where(f: &DeadFilter, first: usize) -> (String, Vec<SqlValue>) {
    let mut sql = String::from("status = 'dead'");
    let mut args = Vec::new();
    if let Some(t) = &f.task_type {
        args.push(SqlValue::Text(t.clone()));
        sql.push_str(&format!(" AND type = ?{}", first + args.len()));
    }
    if let Some(b) = f.before_ms {
        args.push(SqlValue::Integer(b));
        sql.push_str(&format!(" AND finished_at < ?{}", first + args.len()));
    }
    (sql, args)
}

impl Queue for SqliteSource {
    async fn cancel(&self, id: &str) -> Result<Cancelled, OpsError> {
        let (id, host) = (id.to_string(), self.host_id.to_string());
        let i = id.clone();
        match self.write(move |c| cancel_tx(c, &i, &host)).await? {
            CancelRow::Missing => Err(OpsError::NotFound { id }),
            CancelRow::Done => Ok(Cancelled::Done),
            CancelRow::Requested => Ok(Cancelled::Requested),
            CancelRow::Finished(status) => Err(OpsError::Finished { id, status }),
        }
    }

    async fn dead_list(&self, f: &DeadFilter) -> Result<Vec<DeadLetter>, OpsError> {
        let (cond, mut args) = dead_where(f, 0);
        args.push(SqlValue::Integer(
            f.limit
                .map_or(i64::MAX, |l| i64::try_from(l).unwrap_or(i64::MAX)),
        ));
        let sql = format!(
            "SELECT id, type, COALESCE(json_extract(result, '$.attempts'), deliveries), error, finished_at
             FROM tasks WHERE {cond} ORDER BY finished_at DESC, seq DESC LIMIT ?{}",
            args.len()
        );
        let rows = self
            .run(move |c| {
                let mut stmt = c.prepare(&sql)?;
                let rows = stmt.query_map(params_from_iter(args), |r| {
                    Ok(DeadLetter {
                        id: col(r, 0)?,
                        task_type: col(r, 1)?,
                        attempts: count(r, 2)?,
                        error: text(r.get_ref(3)?),
                        at: r.get::<_, Option<i64>>(4).ok().flatten().map(rfc3339_ms),
                    })
                })?;
                rows.collect::<rusqlite::Result<Vec<_>>>()
            })
            .await?;
        Ok(rows)
    }

    async fn dead_retry(&self, which: &DeadSelection) -> Result<u64, OpsError> {
        let which = which.clone();
        let out = self
            .write(
                move |c| -> rusqlite::Result<Result<u64, (String, Option<String>)>> {
                    let now = now_ms();
                    match which {
                        DeadSelection::Ids(ids) => {
                            // All or nothing: one id that is not dead changes nothing.
                            if let Some(bad) = not_dead(c, &ids)? {
                                return Ok(Err(bad));
                            }
                            let sql = format!("{REQUEUE}status = 'dead' AND id = ?2");
                            let mut stmt = c.prepare_cached(&sql)?;
                            let mut n = 0;
                            for id in ids {
                                n += stmt.execute(params![now, id])? as u64;
                            }
                            Ok(Ok(n))
                        }
                        DeadSelection::All(f) => {
                            let (cond, args) = dead_where(&f, 1);
                            let mut all = vec![SqlValue::Integer(now)];
                            all.extend(args);
                            let sql = format!("{REQUEUE}{cond}");
                            Ok(Ok(c.execute(&sql, params_from_iter(all))? as u64))
                        }
                    }
                },
            )
            .await?;
        out.map_err(|(id, status)| match status {
            None => OpsError::NotFound { id },
            Some(status) => OpsError::NotDead { id, status },
        })
    }

    async fn dead_purge(&self, f: &DeadFilter) -> Result<u64, OpsError> {
        let (cond, args) = dead_where(f, 0);
        let sql = format!("DELETE FROM tasks WHERE {cond}");
        Ok(self
            .write(move |c| c.execute(&sql, params_from_iter(args)))
            .await? as u64)
    }

    async fn depth(&self) -> Result<Vec<TypeDepth>, OpsError> {
        let (rows, paused) = self
            .run(|c| {
                let rows = c
                    .prepare_cached(DEPTH)?
                    .query_map([], |r| {
                        Ok((
                            col(r, 0)?,
                            col(r, 1)?,
                            r.get::<_, i64>(2)?,
                            r.get::<_, Option<i64>>(3)?,
                        ))
                    })?
                    .collect::<rusqlite::Result<Vec<_>>>()?;
                let paused = c
                    .prepare_cached("SELECT type FROM paused_types")?
                    .query_map([], |r| col(r, 0))?
                    .collect::<rusqlite::Result<Vec<_>>>()?;
                Ok((rows, paused))
            })
            .await?;
        let now = now_ms();
        let mut out: Vec<TypeDepth> = Vec::new();
        for (t, status, n, first_at) in rows {
            let n = u64::try_from(n).unwrap_or(0);
            let d = row_of(&mut out, &t);
            match status.as_str() {
                "queued" => {
                    d.queued = n;
                    d.oldest_seconds =
                        first_at.map(|at| (now.saturating_sub(at).max(0) as f64) / 1000.0);
                }
                "scheduled" => d.scheduled = n,
                "running" => d.running = n,
                _ => d.dead = n,
            }
        }
        for t in paused {
            row_of(&mut out, &t).paused = true;
        }
        Ok(out)
    }

    async fn set_paused(&self, task_type: &str, paused: bool) -> Result<(), OpsError> {
        let t = task_type.to_string();
        self.write(move |c| {
            if paused {
                c.execute(
                    "INSERT INTO paused_types (type, paused_at) VALUES (?1, ?2) ON CONFLICT (type) DO NOTHING",
                    params![t, now_ms()],
                )
            } else {
                c.execute("DELETE FROM paused_types WHERE type = ?1", [t])
            }
        })
        .await?;
        Ok(())
    }

    async fn submit(&self, envelope: &Envelope) -> Result<(), AdapterError> {
        envelope.check()?;
        let e = envelope.clone();
        let now = now_ms();
        let status = due::initial_status(&e, now);
        let params = Value::Object(e.params).to_string();
        let inserted = self
            .write(move |c| {
                c.prepare_cached(
                    "INSERT INTO tasks (id, type, params, correlation_id, status, enqueued_at, run_at,
                                        priority, attempts, last_error, traceparent)
                     VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11) ON CONFLICT (id) DO NOTHING",
                )?
                .execute(params![
                    e.id,
                    e.task_type,
                    params,
                    e.correlation_id,
                    status,
                    now,
                    e.run_at.map(|t| t.0),
                    e.priority,
                    e.attempts,
                    e.last_error,
                    e.traceparent,
                ])
            })
            .await?;
        if inserted == 0 {
            return Err(AdapterError::Duplicate {
                id: envelope.id.clone(),
            });
        }
        Ok(())
    }

    async fn status(&self, id: &str) -> Result<Option<TaskStatus>, AdapterError> {
        let id = id.to_string();
        let row = self
            .run(move |c| {
                c.prepare_cached(
                    "SELECT id, type, status, deliveries, result, run_at, attempts, last_error
                     FROM tasks WHERE id = ?1",
                )?
                .query_row([id], |r| {
                    let time = (
                        r.get::<_, Option<i64>>(5).ok().flatten(),
                        count(r, 6)?,
                        text(r.get_ref(7)?),
                    );
                    Ok((
                        (
                            col(r, 0)?,
                            col(r, 1)?,
                            col(r, 2)?,
                            count(r, 3)?,
                            text(r.get_ref(4)?),
                        ),
                        time,
                    ))
                })
                .optional()
            })
            .await?;
        let Some(((id, task_type, status, deliveries, result), (run_at, attempts, last_error))) =
            row
        else {
            return Ok(None);
        };
        let status = TaskState::parse(&status).ok_or_else(|| {
            AdapterError::Backend(format!(
                "task {id}: unknown status {status:?} in the database"
            ))
        })?;
        // Due but not yet turned `queued` by a claim: it is queued as far as anyone can tell.
        let due = run_at.is_none_or(|t| t <= now_ms());
        let status = if status == TaskState::Scheduled && due {
            TaskState::Queued
        } else {
            status
        };
        Ok(Some({
            let settled = status.is_final();
            let result = result.filter(|_| settled).and_then(|raw| {
                serde_json::from_str::<ResultDocument>(&raw)
                    .inspect_err(|e| tracing::warn!(task_id = %id, "stored result is not a result document: {e}"))
                    .ok()
            });
            TaskStatus {
                id,
                task_type,
                status,
                deliveries,
                result,
                run_at: run_at.map(crate::Stamp),
                attempts,
                last_error,
            }
        }))
    }
}
