//! Claiming: one statement takes a whole batch, and expired leases are put back at most every second.

use super::Shared;
use crate::{AdapterError, ClaimRequest, Delivery, Envelope, Lease, Malformed};
use serde_json::{Value, json};
use std::time::{Duration, Instant};
use tokio_postgres::Row;

/// How often a claim first looks for rows whose lease expired (their host died).
pub const RESCUE_EVERY: Duration = Duration::from_secs(1);

/// `$1` task types, `$2` the slot of each, `$3` the slot's `max` beside each; `$4` the overall limit,
/// `$5` this host's id, `$6` the lease in ms. The statement is the function of migration 4 (see
/// [`super::migrations`]: why a function, and how the claim is shaped for the planner).
pub const CLAIM: &str = "
SELECT id, type, params, correlation_id, deliveries, lease_token, priority, attempts, error, traceparent
FROM {s}.claim($1::text[], $2::int[], $3::int[], $4::bigint, $5::text, $6::bigint)";

/// Rows whose lease expired go back to the queue (their deliveries already counted); one whose cancel
/// was pending when its host died is recorded `cancelled` instead of being run again.
pub const RESCUE: &str = "
UPDATE {s}.tasks
SET status = CASE WHEN cancel_requested THEN 'cancelled'
                  WHEN run_at > now() THEN 'scheduled' ELSE 'queued' END,
    finished_at = CASE WHEN cancel_requested THEN now() END,
    result = CASE WHEN cancel_requested THEN jsonb_build_object(
        'id', id, 'type', type, 'status', 'cancelled',
        'error', jsonb_build_object('message', 'cancelled while its host was gone', 'outcome', 'cancelled'),
        'attempts', deliveries, 'host', COALESCE(lease_owner, ''),
        'started_at', to_char(now() AT TIME ZONE 'UTC', 'YYYY-MM-DD\"T\"HH24:MI:SS.MS\"Z\"'),
        'finished_at', to_char(now() AT TIME ZONE 'UTC', 'YYYY-MM-DD\"T\"HH24:MI:SS.MS\"Z\"'),
        'duration_ms', 0) END,
    lease_owner = NULL, lease_until = NULL
WHERE status = 'running' AND lease_until < now()";

/// When expired leases were last looked for.
pub struct Rescue {
    last: std::sync::Mutex<Option<Instant>>,
}

impl Default for Rescue {
    fn default() -> Rescue {
        Rescue {
            last: std::sync::Mutex::new(None),
        }
    }
}

impl Rescue {
    pub async fn run_if_due(&self, s: &Shared) -> Result<(), AdapterError> {
        let now = Instant::now();
        {
            let mut last = self.last.lock().unwrap_or_else(|p| p.into_inner());
            if last.is_some_and(|t| now.duration_since(t) < RESCUE_EVERY) {
                return Ok(());
            }
            *last = Some(now);
        }
        let c = s.client().await?;
        let back = s
            .timed(async {
                let st = c.prepare_cached(&s.sql.rescue).await?;
                c.execute(&st, &[]).await
            })
            .await?;
        if back > 0 {
            tracing::info!(
                tasks = back,
                "postgres: tasks whose lease expired are back in the queue"
            );
        }
        Ok(())
    }
}

pub async fn claim(s: &Shared, req: &ClaimRequest) -> Result<Vec<Delivery>, AdapterError> {
    let limit = req.total();
    let (mut types, mut slots, mut maxes) = (Vec::new(), Vec::new(), Vec::new());
    for (n, sl) in req.slots.iter().enumerate().filter(|(_, sl)| sl.max > 0) {
        let max = i32::try_from(sl.max.min(limit)).unwrap_or(i32::MAX);
        let slot = i32::try_from(n).unwrap_or(i32::MAX);
        for t in &sl.types {
            types.push(t.as_str());
            slots.push(slot);
            maxes.push(max);
        }
    }
    if types.is_empty() || limit == 0 {
        return Ok(Vec::new());
    }
    let limit = i64::try_from(limit).unwrap_or(i64::MAX);
    let lease_ms = i64::try_from(s.cfg.lease.as_millis()).unwrap_or(i64::MAX / 4);
    let c = s.client().await?;
    let rows = s
        .timed(async {
            let st = c.prepare_cached(&s.sql.claim).await?;
            c.query(
                &st,
                &[&types, &slots, &maxes, &limit, &s.host_id, &lease_ms],
            )
            .await
        })
        .await?;
    rows.iter().map(|r| delivery(s, r)).collect()
}

/// A claimed row as the host sees it; a row the constraints should have refused is malformed.
fn delivery(s: &Shared, r: &Row) -> Result<Delivery, AdapterError> {
    let bad = |e: tokio_postgres::Error| s.error(&e);
    let id: String = r.try_get(0).map_err(bad)?;
    let task_type: String = r.try_get(1).map_err(bad)?;
    let params: Value = r.try_get(2).map_err(bad)?;
    let correlation_id: Option<String> = r.try_get(3).map_err(bad)?;
    let deliveries: i32 = r.try_get(4).map_err(bad)?;
    let token: i64 = r.try_get(5).map_err(bad)?;
    let priority: i32 = r.try_get(6).map_err(bad)?;
    let attempts: i32 = r.try_get(7).map_err(bad)?;
    let last_error: Option<String> = r.try_get(8).map_err(bad)?;
    let traceparent: Option<String> = r.try_get(9).map_err(bad)?;
    let named = [("id", &id), ("type", &task_type)]
        .into_iter()
        .find_map(|(f, v)| crate::envelope::name_problem(v).map(|p| format!("column `{f}` {p}")));
    let envelope = match (params, named) {
        (Value::Object(_), Some(problem)) => Err(Malformed::new(
            json!({"id": id, "type": task_type}).to_string().as_bytes(),
            format!("task {id:?}: {problem}"),
        )),
        (Value::Object(params), None) => Ok(Envelope {
            correlation_id,
            traceparent,
            priority,
            // A retry that waited in the queue carries the attempts so far and the last error.
            attempts: u32::try_from(attempts).unwrap_or(0),
            last_error,
            ..Envelope::new(id.clone(), task_type, params)
        }),
        (other, _) => Err(Malformed::new(
            json!({"id": id, "type": task_type, "params": other})
                .to_string()
                .as_bytes(),
            format!("task {id}: column `params` must hold a JSON object"),
        )),
    };
    Ok(Delivery {
        lease: Lease {
            task_id: id,
            receipt: token.to_string(),
        },
        envelope,
        deliveries: u32::try_from(deliveries).unwrap_or(0),
    })
}
