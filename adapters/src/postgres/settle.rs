//! Renewal, settling (grouped) and hand-back; every statement is fenced on owner, token and status.

use super::Shared;
use crate::{AdapterError, Lease, ResultDocument, RevokeReason, Revoked};
use serde_json::Value;
use std::collections::HashSet;
use std::sync::Arc;
use tokio::sync::{mpsc, oneshot};

/// At most this many settles share one statement.
const MAX_BATCH: usize = 512;

/// `$1` ids, `$2` tokens, `$3` the lease in ms, `$4` this host's id: the ids renewed come back, each
/// with whether a cancel was asked for meanwhile.
pub const RENEW: &str = "
UPDATE {s}.tasks t SET lease_until = now() + $3::bigint * interval '1 millisecond'
FROM unnest($1::text[], $2::bigint[]) AS r(id, token)
WHERE t.id = r.id AND t.lease_token = r.token AND t.lease_owner = $4 AND t.status = 'running'
RETURNING t.id, t.cancel_requested";

/// One row per outcome: `$1` ids, `$2` tokens, `$3` statuses, `$4` result documents, `$5` errors,
/// `$6` attempts, `$7` this host's id; the ids recorded come back. The owner and token stay on the row:
/// a settle retried after its answer was lost recognises its own outcome ([`SETTLED_BEFORE`]). The
/// statement is the function of migration 4 (planned once per connection, see [`super::migrations`]).
pub const SETTLE: &str = "
SELECT id FROM {s}.settle($1::text[], $2::bigint[], $3::text[], $4::jsonb[], $5::text[], $6::int[], $7::text) AS id";

/// Of `$1` ids with `$2` tokens, those this host (`$3`) already settled.
pub const SETTLED_BEFORE: &str = "
SELECT t.id FROM {s}.tasks t JOIN unnest($1::text[], $2::bigint[]) AS r(id, token)
  ON t.id = r.id AND t.lease_token = r.token
WHERE t.lease_owner = $3 AND t.status IN ('succeeded', 'dead', 'cancelled')";

/// `$1` id, `$2` token, `$3` this host's id. The delivery is not counted: `deliveries` goes back down.
pub const RELEASE: &str = "
UPDATE {s}.tasks
SET status = CASE WHEN run_at > now() THEN 'scheduled' ELSE 'queued' END,
    deliveries = GREATEST(deliveries - 1, 0), lease_owner = NULL, lease_until = NULL
WHERE id = $1 AND lease_token = $2 AND lease_owner = $3 AND status = 'running'";

/// A retry that waits in the queue: `$1` id, `$2` token, `$3` this host's id, `$4` due time in ms since
/// the epoch, `$5` attempts so far, `$6` the last error. A recorded outcome: deliveries start again.
pub const REQUEUE: &str = "
UPDATE {s}.tasks
SET run_at = to_timestamp($4::bigint / 1000.0), attempts = $5, error = $6, deliveries = 0,
    status = CASE WHEN to_timestamp($4::bigint / 1000.0) > now() THEN 'scheduled' ELSE 'queued' END,
    lease_owner = NULL, lease_until = NULL
WHERE id = $1 AND lease_token = $2 AND lease_owner = $3 AND status = 'running'";

/// Puts the task back as a scheduled retry (see [`REQUEUE`]).
pub async fn requeue(
    s: &Shared,
    lease: &Lease,
    task: &crate::Envelope,
) -> Result<(), AdapterError> {
    let tok = token(lease).ok_or_else(|| lost(lease))?;
    let due = task.run_at.map_or_else(crate::now_ms, |t| t.0);
    let attempts = i32::try_from(task.attempts).unwrap_or(i32::MAX);
    let c = s.client().await?;
    let n = s
        .timed(async {
            let st = c.prepare_cached(&s.sql.requeue).await?;
            c.execute(
                &st,
                &[
                    &lease.task_id,
                    &tok,
                    &s.host_id,
                    &due,
                    &attempts,
                    &task.last_error,
                ],
            )
            .await
        })
        .await?;
    if n == 0 { Err(lost(lease)) } else { Ok(()) }
}

fn token(lease: &Lease) -> Option<i64> {
    lease.receipt.parse().ok()
}

fn lost(lease: &Lease) -> AdapterError {
    AdapterError::LeaseLost {
        id: lease.task_id.clone(),
    }
}

/// Extends every lease in one statement; returns the ones that were lost, and those renewed whose task
/// was cancelled meanwhile ([`RevokeReason::Cancelled`]: the host kills it and settles `cancelled`).
pub async fn renew(s: &Shared, leases: &[Lease]) -> Result<Vec<Revoked>, AdapterError> {
    let (valid, mut gone): (Vec<&Lease>, Vec<&Lease>) =
        leases.iter().partition(|l| token(l).is_some());
    if !valid.is_empty() {
        let ids: Vec<&str> = valid.iter().map(|l| l.task_id.as_str()).collect();
        let tokens: Vec<i64> = valid.iter().filter_map(|l| token(l)).collect();
        let lease_ms = i64::try_from(s.cfg.lease.as_millis()).unwrap_or(i64::MAX / 4);
        let c = s.client().await?;
        let rows = s
            .timed(async {
                let st = c.prepare_cached(&s.sql.renew).await?;
                c.query(&st, &[&ids, &tokens, &lease_ms, &s.host_id]).await
            })
            .await?;
        let mut renewed: HashSet<String> = HashSet::new();
        let mut cancelled: HashSet<String> = HashSet::new();
        for r in &rows {
            let Ok(id) = r.try_get::<_, String>(0) else {
                continue;
            };
            if r.try_get::<_, bool>(1).unwrap_or(false) {
                cancelled.insert(id.clone());
            }
            renewed.insert(id);
        }
        let (kept, lost): (Vec<&Lease>, Vec<&Lease>) = valid
            .into_iter()
            .partition(|l| renewed.contains(&l.task_id));
        gone.extend(lost);
        let mut out: Vec<Revoked> = gone.into_iter().cloned().map(Revoked::lost).collect();
        out.extend(
            kept.into_iter()
                .filter(|l| cancelled.contains(&l.task_id))
                .map(|l| Revoked {
                    lease: l.clone(),
                    reason: RevokeReason::Cancelled,
                }),
        );
        return Ok(out);
    }
    Ok(gone.into_iter().cloned().map(Revoked::lost).collect())
}

/// Hands an unfinished task back; the delivery does not count toward the limit.
pub async fn release(s: &Shared, lease: &Lease) -> Result<(), AdapterError> {
    let tok = token(lease).ok_or_else(|| lost(lease))?;
    let c = s.client().await?;
    let n = s
        .timed(async {
            let st = c.prepare_cached(&s.sql.release).await?;
            c.execute(&st, &[&lease.task_id, &tok, &s.host_id]).await
        })
        .await?;
    if n == 0 { Err(lost(lease)) } else { Ok(()) }
}

/// One outcome waiting to be written.
struct Job {
    id: String,
    token: i64,
    status: &'static str,
    doc: Value,
    error: Option<String>,
    attempts: i32,
    reply: oneshot::Sender<Result<(), AdapterError>>,
}

/// Group commit: settles queue here and one task writes them, each batch in one statement; the
/// settles that arrive while a batch is written form the next.
pub struct Settler {
    tx: mpsc::UnboundedSender<Job>,
}

impl Settler {
    pub fn spawn(s: Arc<Shared>) -> Settler {
        let (tx, rx) = mpsc::unbounded_channel();
        tokio::spawn(write_loop(s, rx));
        Settler { tx }
    }

    /// `Ok` once the outcome is committed; [`AdapterError::LeaseLost`] if another host holds the task.
    pub async fn settle(&self, lease: &Lease, doc: &ResultDocument) -> Result<(), AdapterError> {
        let token = token(lease).ok_or_else(|| lost(lease))?;
        let status = doc.status.as_str();
        let doc_json = serde_json::to_value(doc)
            .map_err(|e| AdapterError::Invalid(format!("task {}: result document: {e}", doc.id)))?;
        let (reply, answer) = oneshot::channel();
        let job = Job {
            id: lease.task_id.clone(),
            token,
            status,
            doc: doc_json,
            error: doc.error_message(),
            attempts: i32::try_from(doc.attempts).unwrap_or(i32::MAX),
            reply,
        };
        let stopped = || AdapterError::Backend("postgres: the adapter is closed".into());
        self.tx.send(job).map_err(|_| stopped())?;
        answer.await.map_err(|_| stopped())?
    }
}

async fn write_loop(s: Arc<Shared>, mut rx: mpsc::UnboundedReceiver<Job>) {
    let mut jobs = Vec::with_capacity(MAX_BATCH);
    loop {
        let n = tokio::select! {
            n = rx.recv_many(&mut jobs, MAX_BATCH) => n,
            _ = s.stop.cancelled() => 0,
        };
        if n == 0 {
            return;
        }
        let batch = std::mem::take(&mut jobs);
        match write(&s, &batch).await {
            Ok(done) => {
                for j in batch {
                    let r = if done.contains(&j.id) {
                        Ok(())
                    } else {
                        Err(AdapterError::LeaseLost { id: j.id.clone() })
                    };
                    let _ = j.reply.send(r);
                }
            }
            Err(e) => {
                for j in batch {
                    let _ = j.reply.send(Err(copy(&e)));
                }
            }
        }
    }
}

/// Writes a batch; the ids whose outcome is recorded (now, or by an earlier try of the same settle).
async fn write(s: &Shared, batch: &[Job]) -> Result<HashSet<String>, AdapterError> {
    let ids: Vec<&str> = batch.iter().map(|j| j.id.as_str()).collect();
    let tokens: Vec<i64> = batch.iter().map(|j| j.token).collect();
    let statuses: Vec<&str> = batch.iter().map(|j| j.status).collect();
    let docs: Vec<&Value> = batch.iter().map(|j| &j.doc).collect();
    let errors: Vec<Option<&str>> = batch.iter().map(|j| j.error.as_deref()).collect();
    let attempts: Vec<i32> = batch.iter().map(|j| j.attempts).collect();
    let c = s.client().await?;
    let mut done: HashSet<String> = s
        .timed(async {
            let st = c.prepare_cached(&s.sql.settle).await?;
            c.query(
                &st,
                &[
                    &ids, &tokens, &statuses, &docs, &errors, &attempts, &s.host_id,
                ],
            )
            .await
        })
        .await?
        .iter()
        .filter_map(|r| r.try_get(0).ok())
        .collect();
    if done.len() < batch.len() {
        let (ids, tokens): (Vec<&str>, Vec<i64>) = batch
            .iter()
            .filter(|j| !done.contains(&j.id))
            .map(|j| (j.id.as_str(), j.token))
            .unzip();
        let before = s
            .timed(async {
                let st = c.prepare_cached(&s.sql.settled_before).await?;
                c.query(&st, &[&ids, &tokens, &s.host_id]).await
            })
            .await?;
        done.extend(before.iter().filter_map(|r| r.try_get::<_, String>(0).ok()));
    }
    Ok(done)
}

/// The same error for every settle of a failed batch.
fn copy(e: &AdapterError) -> AdapterError {
    match e {
        AdapterError::LeaseLost { id } => AdapterError::LeaseLost { id: id.clone() },
        AdapterError::Duplicate { id } => AdapterError::Duplicate { id: id.clone() },
        AdapterError::Invalid(m) => AdapterError::Invalid(m.clone()),
        AdapterError::Unavailable(m) => AdapterError::Unavailable(m.clone()),
        AdapterError::Backend(m) => AdapterError::Backend(m.clone()),
        AdapterError::Refused { id, reason } => AdapterError::Refused {
            id: id.clone(),
            reason: reason.clone(),
        },
        AdapterError::NotInBuild { kind, available } => AdapterError::NotInBuild {
            kind,
            available: available.clone(),
        },
    }
}
