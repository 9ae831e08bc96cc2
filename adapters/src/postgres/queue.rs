//! `submit` and `status`.

use super::Shared;
use crate::{AdapterError, Envelope, ResultDocument, TaskState, TaskStatus};
use serde_json::Value;

/// `$1` id, `$2` type, `$3` params, `$4` correlation id, `$5` run_at in ms since the epoch (NULL: now),
/// `$6` priority, `$7` attempts so far, `$8` the last error, `$9` the traceparent; no row back means
/// the id exists.
pub const INSERT: &str = "
INSERT INTO {s}.tasks (id, type, params, correlation_id, run_at, priority, attempts, error, traceparent)
VALUES ($1, $2, $3, $4, COALESCE(to_timestamp($5::bigint / 1000.0), now()), $6, $7, $8, $9)
ON CONFLICT (id) DO NOTHING RETURNING id";

/// A scheduled task whose time has come shows as `queued`: it is claimable now.
pub const STATUS: &str = "
SELECT id, type,
       CASE WHEN status = 'scheduled' AND run_at <= now() THEN 'queued' ELSE status END,
       deliveries, result, (extract(epoch FROM run_at) * 1000)::bigint, attempts, error
FROM {s}.tasks WHERE id = $1";

pub async fn submit(s: &Shared, e: &Envelope) -> Result<(), AdapterError> {
    let params = Value::Object(e.params.clone());
    let run_at: Option<i64> = e.run_at.map(|t| t.0);
    let attempts = i32::try_from(e.attempts).unwrap_or(i32::MAX);
    let c = s.client().await?;
    let rows = s
        .timed(async {
            let st = c.prepare_cached(&s.sql.insert).await?;
            c.query(
                &st,
                &[
                    &e.id,
                    &e.task_type,
                    &params,
                    &e.correlation_id,
                    &run_at,
                    &e.priority,
                    &attempts,
                    &e.last_error,
                    &e.traceparent,
                ],
            )
            .await
        })
        .await?;
    if rows.is_empty() {
        return Err(AdapterError::Duplicate { id: e.id.clone() });
    }
    Ok(())
}

pub async fn status(s: &Shared, id: &str) -> Result<Option<TaskStatus>, AdapterError> {
    let c = s.client().await?;
    let row = s
        .timed(async {
            let st = c.prepare_cached(&s.sql.status).await?;
            c.query_opt(&st, &[&id]).await
        })
        .await?;
    let Some(r) = row else { return Ok(None) };
    let bad = |e: tokio_postgres::Error| s.error(&e);
    let result: Option<Value> = r.try_get(4).map_err(bad)?;
    let result = match result {
        None => None,
        Some(v) => Some(serde_json::from_value::<ResultDocument>(v).map_err(|e| {
            AdapterError::Backend(format!(
                "task {id}: column `result` is not a result document: {e}"
            ))
        })?),
    };
    let deliveries: i32 = r.try_get(3).map_err(bad)?;
    let id: String = r.try_get(0).map_err(bad)?;
    let status: String = r.try_get(2).map_err(bad)?;
    let status = TaskState::parse(&status).ok_or_else(|| {
        AdapterError::Backend(format!(
            "task {id}: unknown status {status:?} in the database"
        ))
    })?;
    let waiting = status == TaskState::Scheduled;
    let run_at: i64 = r.try_get(5).map_err(bad)?;
    let attempts: i32 = r.try_get(6).map_err(bad)?;
    Ok(Some(TaskStatus {
        id,
        task_type: r.try_get(1).map_err(bad)?,
        status,
        deliveries: u32::try_from(deliveries).unwrap_or(0),
        result,
        run_at: waiting.then_some(crate::Stamp(run_at)),
        attempts: u32::try_from(attempts).unwrap_or(0),
        last_error: if waiting {
            r.try_get(7).map_err(bad)?
        } else {
            None
        },
    }))
}
