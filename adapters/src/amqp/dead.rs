//! The dead-letter verbs on AMQP (SPEC section 8): they work on the dead-letter queue
//! (`dead_letter_queue`, default `<queue>.dead`), on a channel of their own.
//!
//! Messages are taken with `basic.get` (unacked); those a verb does not act on are nacked back with
//! requeue, and if this process dies first the broker requeues them itself. A retry publishes the message
//! to the task queue **with a publisher confirm** and acks the dead letter only after the broker
//! confirmed it: a crash in between leaves the message in both queues (delivered at least once), never in
//! neither.

use super::inner::Inner;
use crate::ops::{DeadFilter, DeadLetter, DeadSelection, OpsError};
use crate::{AdapterError, Envelope};
use lapin::options::{BasicAckOptions, BasicGetOptions, BasicNackOptions, BasicPublishOptions};
use lapin::types::{AMQPValue, FieldTable, ShortString};
use lapin::{BasicProperties, Channel, Confirmation};
use std::sync::Arc;

/// At most this many dead letters are looked at by one verb (the rest stay where they are).
const MAX_SCAN: usize = 100_000;
/// The headers the host adds when it dead-letters (see `Inner::dead_props`), dropped on retry.
const DEAD_HEADERS: [&str; 9] = [
    "x-error",
    "x-error-detail",
    "x-outcome",
    "x-attempts",
    "x-deliveries",
    "x-task-id",
    "x-host",
    "x-original-queue",
    "x-dead-lettered-at",
];

struct Taken {
    delivery: lapin::message::Delivery,
    letter: DeadLetter,
    /// When it was dead-lettered, ms since the epoch, if known.
    at_ms: Option<i64>,
}

fn unavailable(inner: &Inner, e: impl std::fmt::Display) -> OpsError {
    OpsError::Adapter(AdapterError::Unavailable(format!(
        "broker {}: {}",
        inner.shown,
        super::redact::scrub(&e.to_string(), &inner.url)
    )))
}

fn header_text(h: &FieldTable, k: &str) -> Option<String> {
    match h.inner().get(k)? {
        AMQPValue::LongString(s) => Some(s.to_string()),
        AMQPValue::ShortString(s) => Some(s.to_string()),
        AMQPValue::LongLongInt(n) => Some(n.to_string()),
        AMQPValue::LongInt(n) => Some(n.to_string()),
        AMQPValue::Timestamp(t) => Some(t.to_string()),
        _ => None,
    }
}

/// A dead letter's id, type, attempts, error and time, from its body and headers.
fn letter(d: &lapin::message::Delivery) -> (DeadLetter, Option<i64>) {
    let env = Envelope::parse(&d.data).ok();
    let h = d.properties.headers().clone().unwrap_or_default();
    let at = header_text(&h, "x-dead-lettered-at");
    let at_ms = at
        .as_deref()
        .and_then(|a| crate::time::parse_rfc3339(a).ok())
        .map(|s| s.0);
    // A malformed body may still show its id and type.
    let (id, task_type) = match env {
        Some(e) => (Some(e.id), Some(e.task_type)),
        None => crate::envelope::salvage(&d.data),
    };
    let letter = DeadLetter {
        id: id
            .or_else(|| header_text(&h, "x-task-id"))
            .unwrap_or_default(),
        task_type: task_type.unwrap_or_default(),
        attempts: header_text(&h, "x-attempts")
            .and_then(|a| a.parse().ok())
            .unwrap_or(0),
        error: header_text(&h, "x-error"),
        at,
    };
    (letter, at_ms)
}

async fn channel(inner: &Arc<Inner>) -> Result<Channel, OpsError> {
    let link = inner.link().await?;
    link.op_channel().await.map_err(|e| unavailable(inner, e))
}

/// Takes every dead letter (up to [`MAX_SCAN`]), unacked, oldest first.
async fn take_all(inner: &Inner, ch: &Channel) -> Result<Vec<Taken>, OpsError> {
    let queue = ShortString::from(inner.s.dead_letter_queue().as_str());
    let mut out = Vec::new();
    while out.len() < MAX_SCAN {
        let got = ch
            .basic_get(queue.clone(), BasicGetOptions { no_ack: false })
            .await
            .map_err(|e| unavailable(inner, e))?;
        let Some(m) = got else { break };
        let (letter, at_ms) = letter(&m.delivery);
        out.push(Taken {
            delivery: m.delivery,
            letter,
            at_ms,
        });
    }
    Ok(out)
}

/// Acks a dead letter acted on (it leaves the dead-letter queue).
async fn ack(inner: &Inner, t: &Taken) -> Result<(), OpsError> {
    t.delivery
        .acker
        .ack(BasicAckOptions::default())
        .await
        .map(drop)
        .map_err(|e| unavailable(inner, e))
}

/// Puts back what was taken and not acted on.
async fn give_back(inner: &Inner, rest: Vec<Taken>) -> Result<(), OpsError> {
    for t in rest {
        t.delivery
            .acker
            .nack(BasicNackOptions {
                multiple: false,
                requeue: true,
            })
            .await
            .map_err(|e| unavailable(inner, e))?;
    }
    Ok(())
}

pub(super) async fn list(inner: &Arc<Inner>, f: &DeadFilter) -> Result<Vec<DeadLetter>, OpsError> {
    let ch = channel(inner).await?;
    let taken = take_all(inner, &ch).await?;
    let mut out: Vec<DeadLetter> = taken
        .iter()
        .rev()
        .filter(|t| f.admits(&t.letter.task_type, t.at_ms))
        .map(|t| t.letter.clone())
        .collect();
    out.truncate(f.limit.unwrap_or(usize::MAX));
    give_back(inner, taken).await?;
    let _ = ch.close(200, "done".into()).await;
    Ok(out)
}

/// The message as it goes back to the task queue: its own properties without the dead-letter headers
/// (and the broker's `x-death`), so attempts start over.
fn fresh_props(p: &BasicProperties) -> BasicProperties {
    let broker = [
        "x-death",
        "x-first-death-queue",
        "x-first-death-reason",
        "x-first-death-exchange",
    ];
    let mut h = FieldTable::default();
    for (k, v) in p.headers().clone().unwrap_or_default().inner() {
        let key = k.as_str();
        if !DEAD_HEADERS.contains(&key) && !broker.contains(&key) {
            h.insert(k.clone(), v.clone());
        }
    }
    p.clone().with_headers(h)
}

pub(super) async fn retry(inner: &Arc<Inner>, which: &DeadSelection) -> Result<u64, OpsError> {
    let ch = channel(inner).await?;
    let taken = take_all(inner, &ch).await?;
    let wanted = |t: &Taken| match which {
        DeadSelection::Ids(ids) => ids.contains(&t.letter.id),
        DeadSelection::All(f) => f.admits(&t.letter.task_type, t.at_ms),
    };
    if let DeadSelection::Ids(ids) = which
        && let Some(missing) = ids
            .iter()
            .find(|id| !taken.iter().any(|t| &t.letter.id == *id))
    {
        // All or nothing: AMQP keeps no state of other tasks, so "not dead" reads as "not found".
        let id = missing.clone();
        give_back(inner, taken).await?;
        let _ = ch.close(200, "done".into()).await;
        return Err(OpsError::NotFound { id });
    }
    let (go, rest): (Vec<Taken>, Vec<Taken>) = taken.into_iter().partition(|t| wanted(t));
    give_back(inner, rest).await?;
    let queue = ShortString::from(inner.s.queue.as_str());
    let mut n = 0;
    for t in go {
        let confirm = ch
            .basic_publish(
                "".into(),
                queue.clone(),
                BasicPublishOptions {
                    mandatory: true,
                    ..Default::default()
                },
                &t.delivery.data,
                fresh_props(&t.delivery.properties),
            )
            .await
            .map_err(|e| unavailable(inner, e))?
            .await
            .map_err(|e| unavailable(inner, e))?;
        match confirm {
            Confirmation::Ack(None) | Confirmation::NotRequested => {}
            _ => {
                return Err(OpsError::Adapter(AdapterError::Backend(format!(
                    "the broker did not take task {} back into queue {} (it stays dead)",
                    t.letter.id, inner.s.queue
                ))));
            }
        }
        // Only now that the broker has it in the task queue does the dead letter go.
        ack(inner, &t).await?;
        n += 1;
    }
    let _ = ch.close(200, "done".into()).await;
    Ok(n)
}

pub(super) async fn purge(inner: &Arc<Inner>, f: &DeadFilter) -> Result<u64, OpsError> {
    let ch = channel(inner).await?;
    let taken = take_all(inner, &ch).await?;
    let (go, rest): (Vec<Taken>, Vec<Taken>) = taken
        .into_iter()
        .partition(|t| f.admits(&t.letter.task_type, t.at_ms));
    give_back(inner, rest).await?;
    let mut n = 0;
    for t in go {
        ack(inner, &t).await?;
        n += 1;
    }
    let _ = ch.close(200, "done".into()).await;
    Ok(n)
}
