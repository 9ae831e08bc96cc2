//! Reading rows into deliveries, and the claim transaction (with the sweep of unknown types).

use super::{CANCEL_ORPHANS, SELECT_EXPIRED, SELECT_QUEUED, SWEEP_LIMIT, TAKE, due};
use crate::{ClaimSlot, Delivery, Envelope, Lease, Malformed, Stamp, now_ms, rfc3339_ms};
use rusqlite::types::ValueRef;
use rusqlite::{Connection, OptionalExtension, Row, params};
use serde_json::{Value, json};

/// A text column as a string, whatever `sqlite3` stored there by hand.
pub(super) fn text(v: ValueRef<'_>) -> Option<String> {
    match v {
        ValueRef::Null => None,
        ValueRef::Integer(i) => Some(i.to_string()),
        ValueRef::Real(f) => Some(f.to_string()),
        ValueRef::Text(t) | ValueRef::Blob(t) => Some(String::from_utf8_lossy(t).into_owned()),
    }
}

pub(super) fn col(row: &Row<'_>, i: usize) -> rusqlite::Result<String> {
    Ok(text(row.get_ref(i)?).unwrap_or_default())
}

pub(super) fn count(row: &Row<'_>, i: usize) -> rusqlite::Result<u32> {
    Ok(match row.get_ref(i)? {
        ValueRef::Integer(n) => u32::try_from(n.max(0)).unwrap_or(u32::MAX),
        _ => 0,
    })
}

/// A text column's bytes as stored (`sqlite3` stores whatever it is given, UTF-8 or not).
fn bytes(v: ValueRef<'_>) -> Vec<u8> {
    match v {
        ValueRef::Null => Vec::new(),
        ValueRef::Integer(i) => i.to_string().into_bytes(),
        ValueRef::Real(f) => f.to_string().into_bytes(),
        ValueRef::Text(t) | ValueRef::Blob(t) => t.to_vec(),
    }
}

/// Reads a row of [`TAKE`]'s `RETURNING` clause.
pub(super) fn delivery(row: &Row<'_>) -> rusqlite::Result<Delivery> {
    let id = col(row, 0)?;
    let task_type = bytes(row.get_ref(1)?);
    let params = bytes(row.get_ref(2)?);
    let correlation_id = text(row.get_ref(3)?);
    let deliveries = count(row, 4)?;
    let token: i64 = row.get(5)?;
    let lease = Lease {
        task_id: id.clone(),
        receipt: token.to_string(),
    };
    let run_at = row.get::<_, Option<i64>>(6).ok().flatten().map(Stamp);
    let priority = row
        .get::<_, i64>(7)
        .ok()
        .and_then(|p| i32::try_from(p).ok())
        .unwrap_or(0);
    let (attempts, last_error) = (count(row, 8)?, text(row.get_ref(9)?));
    let traceparent = text(row.get_ref(10)?);
    let id_bytes = bytes(row.get_ref(0)?);
    let envelope = envelope(&id_bytes, &task_type, &params, correlation_id).map(|e| Envelope {
        run_at,
        priority,
        attempts,
        last_error,
        traceparent,
        ..e
    });
    Ok(Delivery {
        lease,
        envelope,
        deliveries,
    })
}

/// The envelope of a row, or why it is not one (rows inserted by hand with `sqlite3`): columns that
/// are not UTF-8, an id or type that cannot be one (see [`crate::envelope::name_problem`]), params that
/// are not a JSON object.
pub(super) fn envelope(
    id: &[u8],
    task_type: &[u8],
    params: &[u8],
    correlation_id: Option<String>,
) -> Result<Envelope, Malformed> {
    let lossy = |b: &[u8]| String::from_utf8_lossy(b).into_owned();
    let (id_text, type_text) = (lossy(id), lossy(task_type));
    let raw = |params: Value| {
        json!({"id": id_text, "type": type_text, "params": params, "correlation_id": correlation_id})
            .to_string()
    };
    let column = [("id", id), ("type", task_type), ("params", params)]
        .into_iter()
        .find_map(|(name, b)| crate::text::utf8_problem(b).map(|p| (name, p)));
    if let Some((name, problem)) = column {
        let reason = format!("task {id_text}: column `{name}` is {problem}");
        return Err(Malformed::new(
            raw(Value::String(lossy(params))).as_bytes(),
            reason,
        ));
    }
    let named = [("id", &id_text), ("type", &type_text)]
        .into_iter()
        .find_map(|(f, v)| crate::envelope::name_problem(v).map(|p| format!("`{f}` {p}")));
    let parsed = serde_json::from_slice::<Value>(params);
    let (reason, shown) = match (parsed, named) {
        (Ok(Value::Object(params)), None) => {
            return Ok(Envelope {
                correlation_id,
                ..Envelope::new(id_text, type_text, params)
            });
        }
        (Ok(Value::Object(p)), Some(problem)) => {
            return Err(Malformed::new(
                raw(Value::Object(p)).as_bytes(),
                format!("task {id_text:?}: {problem}"),
            ));
        }
        (Ok(p), _) => (format!("task {id_text}: params is not a JSON object"), p),
        (Err(e), _) => (
            format!("task {id_text}: params is not JSON: {e}"),
            Value::String(lossy(params)),
        ),
    };
    Err(Malformed::new(raw(shown).as_bytes(), reason))
}

/// Claims (inside the write transaction the caller runs it in): each slot takes the oldest claimable
/// tasks of its types, `total` at most in all.
pub(super) fn claim_tx(
    tx: &Connection,
    host: &str,
    lease_ms: i64,
    slots: &[ClaimSlot],
    total: usize,
    sweep: Option<&[String]>,
) -> rusqlite::Result<Vec<Delivery>> {
    let now = now_ms();
    tx.prepare_cached(CANCEL_ORPHANS)?
        .execute(params![now, rfc3339_ms(now), host])?;
    tx.prepare_cached(due::PROMOTE)?.execute([now])?;
    let mut out = Vec::new();
    let mut unknown = match sweep {
        Some(known) => sweep_unknown(tx, host, now.saturating_add(lease_ms), known)?,
        None => Vec::new(),
    };
    {
        let mut queued = tx.prepare_cached(SELECT_QUEUED)?;
        let mut expired = tx.prepare_cached(SELECT_EXPIRED)?;
        let mut take = tx.prepare_cached(TAKE)?;
        for slot in slots.iter().filter(|s| s.max > 0) {
            let room = slot.max.min(total.saturating_sub(out.len()));
            if room == 0 {
                break;
            }
            let max = i64::try_from(room).unwrap_or(i64::MAX);
            // One index range per type and state; merged by priority, then seq, so the order holds
            // across the slot's types.
            let mut seqs: Vec<(i64, i64)> = Vec::new();
            let pair = |r: &Row<'_>| Ok((-r.get::<_, i64>(0)?, r.get::<_, i64>(1)?));
            for t in &slot.types {
                for s in queued.query_map(params![t, max], pair)? {
                    seqs.push(s?);
                }
                for s in expired.query_map(params![t, now, max], pair)? {
                    seqs.push(s?);
                }
            }
            seqs.sort_unstable();
            seqs.dedup();
            seqs.truncate(room);
            for (_, seq) in seqs {
                out.push(
                    take.query_row(params![host, now.saturating_add(lease_ms), seq], delivery)?,
                );
            }
        }
    }
    out.append(&mut unknown);
    Ok(out)
}

/// Leases queued tasks whose type no worker of this host handles, at most [`SWEEP_LIMIT`], so that the
/// host dead-letters them as it does any unknown type on other task managers (with `task_failed` and
/// `task_dead_lettered` for observers and metrics). The queued types are walked through the claim
/// index one distinct type at a time (a seek each, never a scan of the queue), so a sweep costs the
/// same with ten queued tasks or a million.
pub(super) fn sweep_unknown(
    tx: &Connection,
    host: &str,
    until: i64,
    known: &[String],
) -> rusqlite::Result<Vec<Delivery>> {
    let mut first = tx.prepare_cached(
        "SELECT type FROM tasks WHERE status = 'queued' AND type >= '' ORDER BY type LIMIT 1",
    )?;
    let mut next = tx.prepare_cached(
        "SELECT type FROM tasks WHERE status = 'queued' AND type > ?1 ORDER BY type LIMIT 1",
    )?;
    let mut queued = tx.prepare_cached(SELECT_QUEUED)?;
    let mut take = tx.prepare_cached(TAKE)?;
    let mut out = Vec::new();
    let mut current: Option<String> = first.query_row([], |r| r.get(0)).optional()?;
    while let Some(t) = current {
        let room = SWEEP_LIMIT.saturating_sub(i64::try_from(out.len()).unwrap_or(i64::MAX));
        if room <= 0 {
            break;
        }
        if !known.contains(&t) {
            let seqs = queued
                .query_map(params![t, room], |r| r.get::<_, i64>(1))?
                .collect::<rusqlite::Result<Vec<_>>>()?;
            for seq in seqs {
                out.push(take.query_row(params![host, until, seq], delivery)?);
            }
        }
        current = next.query_row([&t], |r| r.get(0)).optional()?;
    }
    Ok(out)
}
