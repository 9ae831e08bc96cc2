//! The operations of SPEC section 8 on Redis (scripts in [`super::op_scripts`]).
//!
//! - cancel: a queued entry is deleted and a `cancelled` result stored; a pending (running) one gets its
//!   task id into `<stream>:cancel`, which renewals read (`SMISMEMBER`): the host is told
//!   [`crate::RevokeReason::Cancelled`], stops the task and settles `cancelled` through the usual fence.
//! - pause: `<stream>:paused`. A stream is read in order whatever the type, so a claim that reads an entry
//!   of a paused type parks it in `<stream>:parked` (atomically: acked and deleted from the stream only as
//!   it is added there); `resume` puts the type's parked entries back. Every host re-reads the paused set
//!   at most every [`PAUSED_EVERY`].
//! - dead letters: `<stream>:dead`, newest first (`XREVRANGE`); the entry id's time is when.
//! - depth: one script over the live entries, the parked ones and the dead letters. Its cost grows with
//!   what is queued, running and dead (finished tasks leave nothing behind but their result key);
//!   `dead purge` keeps it small.

use super::RedisSource;
use super::op_scripts::{self, CANCEL, DEAD_PURGE, DEAD_RETRY, DEPTH, PARK, RESUME};
use super::parse::{self, text};
use crate::ops::{Cancelled, DeadFilter, DeadLetter, DeadSelection, OpsError, TypeDepth, row_of};
use crate::{AdapterError, Delivery, Envelope, Queue, TaskState, TaskStatus, now_ms, rfc3339_ms};
use redis::Value;
use std::collections::HashSet;
use std::time::{Duration, Instant};

/// How often a host re-reads the paused types (pause takes effect within this plus one claim).
pub(super) const PAUSED_EVERY: Duration = Duration::from_secs(1);

/// Names derived from the stream name.
pub(super) fn key(stream: &str, suffix: &str) -> String {
    format!("{stream}:{suffix}")
}

/// The ms time of an entry id (`1700000000000-0`).
fn entry_ms(id: &str) -> Option<i64> {
    id.split('-').next()?.parse().ok()
}

impl Queue for RedisSource {
    async fn submit(&self, envelope: &Envelope) -> Result<(), AdapterError> {
        envelope.check()?;
        let json = serde_json::to_string(envelope)
            .map_err(|e| AdapterError::Invalid(format!("task {}: {e}", envelope.id)))?;
        if let Some(due) = envelope
            .run_at
            .filter(|_| envelope.is_scheduled(crate::now_ms()))
        {
            return self.submit_due(envelope, json, due).await;
        }
        let result_key = self.s.keys.result(&envelope.id);
        let keys = [
            &*self.s.keys.stream,
            &result_key,
            &self.s.keys.index,
            &self.s.keys.scheduled,
        ];
        let mut c = self.eval(&self.s.scripts.submit, &keys);
        c.arg(&envelope.id).arg(json);
        match self.query(&c).await? {
            Value::Nil => Err(AdapterError::Duplicate {
                id: envelope.id.clone(),
            }),
            _ => Ok(()),
        }
    }

    /// The result document while it is kept; else, for tasks enqueued with `submit`, `queued` or
    /// `running` (in the pending list) with the delivery count. `deliveries` is 0 for settled tasks:
    /// Redis keeps only the result document once the entry is acked.
    async fn status(&self, id: &str) -> Result<Option<TaskStatus>, AdapterError> {
        self.lookup(id).await
    }

    async fn cancel(&self, id: &str) -> Result<Cancelled, OpsError> {
        let (result, cancel, parked) = (self.s.keys.result(id), self.k("cancel"), self.k("parked"));
        let keys = [
            &*self.s.keys.stream,
            &result,
            &self.s.keys.index,
            &cancel,
            &parked,
            &self.s.keys.scheduled,
            &self.s.keys.due,
        ];
        let mut c = self.eval_op(CANCEL, &keys);
        c.arg(&self.s.group)
            .arg(id)
            .arg(self.s.cfg.result_ttl().as_millis().max(1) as u64)
            .arg(&self.s.consumer)
            .arg(rfc3339_ms(now_ms()));
        let reply: Vec<String> = parse::items(self.query(&c).await?)
            .iter()
            .filter_map(text)
            .collect();
        match reply.first().map(String::as_str) {
            Some("done") => Ok(Cancelled::Done),
            Some("requested") => Ok(Cancelled::Requested),
            Some("finished") => Err(OpsError::Finished {
                id: id.to_string(),
                status: reply.get(1).cloned().unwrap_or_default(),
            }),
            _ => Err(OpsError::NotFound { id: id.to_string() }),
        }
    }

    async fn dead_list(&self, f: &DeadFilter) -> Result<Vec<DeadLetter>, OpsError> {
        let limit = f.limit.unwrap_or(usize::MAX);
        let mut out = Vec::new();
        let mut end = "+".to_string();
        loop {
            let mut c = redis::cmd("XREVRANGE");
            c.arg(&self.s.keys.dead)
                .arg(&end)
                .arg("-")
                .arg("COUNT")
                .arg(500);
            let page = parse::items(self.query(&c).await?);
            let n = page.len();
            for e in page {
                let mut e = parse::items(e).into_iter();
                let (Some(eid), fields) = (e.next().as_ref().and_then(text), e.next()) else {
                    continue;
                };
                end = format!("({eid}");
                let fields = fields.and_then(parse::fields).unwrap_or_default();
                let get = |k: &str| parse::field_text(&fields, k);
                let d = parse::delivery(&eid, Some(fields.clone()), 1);
                let task_type = d.task_type().unwrap_or_default().to_string();
                if !f.admits(&task_type, entry_ms(&eid)) {
                    continue;
                }
                out.push(DeadLetter {
                    id: d.lease.task_id,
                    task_type,
                    attempts: get("attempts").and_then(|a| a.parse().ok()).unwrap_or(0),
                    error: get("error"),
                    at: entry_ms(&eid).map(rfc3339_ms),
                });
                if out.len() >= limit {
                    return Ok(out);
                }
            }
            if n < 500 {
                return Ok(out);
            }
        }
    }

    async fn dead_retry(&self, which: &DeadSelection) -> Result<u64, OpsError> {
        let keys = [&*self.s.keys.stream, &self.s.keys.dead, &self.s.keys.index];
        let mut c = self.eval_op(DEAD_RETRY, &keys);
        c.arg(self.s.keys.result(""));
        match which {
            DeadSelection::Ids(ids) => {
                c.arg("ids").arg("").arg(ids);
            }
            DeadSelection::All(f) => {
                c.arg("all").arg(f.task_type.as_deref().unwrap_or(""));
            }
        }
        let reply = parse::items(self.query(&c).await?);
        let t: Vec<String> = reply.iter().filter_map(text).collect();
        match t.first().map(String::as_str) {
            Some("ok") => Ok(t.get(1).and_then(|n| n.parse().ok()).unwrap_or(0)),
            Some("notdead") => Err(OpsError::NotDead {
                id: t.get(1).cloned().unwrap_or_default(),
                status: t.get(2).cloned().unwrap_or_default(),
            }),
            Some("missing") => Err(OpsError::NotFound {
                id: t.get(1).cloned().unwrap_or_default(),
            }),
            _ => Err(AdapterError::Backend(format!("dead retry: unexpected reply {t:?}")).into()),
        }
    }

    async fn dead_purge(&self, f: &DeadFilter) -> Result<u64, OpsError> {
        let mut c = self.eval_op(DEAD_PURGE, &[&self.s.keys.dead]);
        let last = match f.before_ms {
            Some(ms) => format!("{}", ms.saturating_sub(1).max(0)),
            None => "+".into(),
        };
        c.arg(self.s.keys.result(""))
            .arg(last)
            .arg(f.task_type.as_deref().unwrap_or(""));
        match self.query(&c).await? {
            Value::Int(n) => Ok(u64::try_from(n).unwrap_or(0)),
            other => {
                Err(AdapterError::Backend(format!("dead purge: unexpected reply {other:?}")).into())
            }
        }
    }

    async fn depth(&self) -> Result<Vec<TypeDepth>, OpsError> {
        let (parked, paused) = (self.k("parked"), self.k("paused"));
        let keys = [
            &*self.s.keys.stream,
            &self.s.keys.dead,
            &parked,
            &paused,
            &self.s.keys.scheduled,
        ];
        let mut c = self.eval_op(DEPTH, &keys);
        c.arg(&self.s.group);
        let now = now_ms();
        let mut out: Vec<TypeDepth> = Vec::new();
        for row in parse::items(self.query(&c).await?) {
            let r: Vec<String> = parse::items(row).iter().filter_map(text).collect();
            let [ty, state, n, first] = r.as_slice() else {
                continue;
            };
            let n: u64 = n.parse().unwrap_or(0);
            let d = row_of(&mut out, ty);
            let age = || entry_ms(first).map(|ms| (now.saturating_sub(ms).max(0) as f64) / 1000.0);
            match state.as_str() {
                "queued" | "parked" => {
                    d.queued += n;
                    d.oldest_seconds = match (d.oldest_seconds, age()) {
                        (Some(a), Some(b)) => Some(a.max(b)),
                        (a, b) => a.or(b),
                    };
                }
                "running" => d.running += n,
                "scheduled" => d.scheduled += n,
                "dead" => d.dead += n,
                "paused" => d.paused = true,
                _ => {}
            }
        }
        Ok(out)
    }

    async fn set_paused(&self, task_type: &str, paused: bool) -> Result<(), OpsError> {
        if paused {
            let mut c = redis::cmd("SADD");
            c.arg(self.k("paused")).arg(task_type);
            self.query(&c).await?;
        } else {
            let (parked, paused) = (self.k("parked"), self.k("paused"));
            let keys = [&*self.s.keys.stream, &parked, &self.s.keys.index, &paused];
            let mut c = self.eval_op(RESUME, &keys);
            c.arg(task_type);
            self.query(&c).await?;
        }
        // This process sees its own change at once.
        *self.paused_cache() = None;
        Ok(())
    }
}

impl RedisSource {
    fn eval_op(&self, script: &str, keys: &[&str]) -> redis::Cmd {
        let mut c = redis::cmd("EVAL");
        c.arg(op_scripts::body(script)).arg(keys.len()).arg(keys);
        c
    }

    fn k(&self, suffix: &str) -> String {
        key(&self.s.keys.stream, suffix)
    }

    /// The fields of entry `entry` of stream `key` (`XRANGE key entry entry`); `None` when it is gone.
    pub(super) async fn entry(
        &self,
        key: &str,
        entry: &str,
    ) -> Result<Option<parse::Fields>, AdapterError> {
        let mut range = redis::cmd("XRANGE");
        range.arg(key).arg(entry).arg(entry);
        let Some(first) = parse::items(self.query(&range).await?).into_iter().next() else {
            return Ok(None);
        };
        Ok(Some(
            parse::items(first)
                .into_iter()
                .nth(1)
                .and_then(parse::fields)
                .unwrap_or_default(),
        ))
    }

    /// The paused types, re-read at most every [`PAUSED_EVERY`].
    async fn paused(&self) -> Result<HashSet<String>, AdapterError> {
        if let Some((at, set)) = self.paused_cache().as_ref()
            && at.elapsed() < PAUSED_EVERY
        {
            return Ok(set.clone());
        }
        let mut c = redis::cmd("SMEMBERS");
        c.arg(self.k("paused"));
        let set: HashSet<String> = parse::items(self.query(&c).await?)
            .iter()
            .filter_map(text)
            .collect();
        *self.paused_cache() = Some((Instant::now(), set.clone()));
        Ok(set)
    }

    /// Takes the deliveries of paused types out of a claim's answer, parking them (see the module docs).
    pub(super) async fn park_paused(&self, claimed: Vec<Delivery>) -> Vec<Delivery> {
        let paused = match self.paused().await {
            Ok(p) if !p.is_empty() => p,
            _ => return claimed,
        };
        let mut keep = Vec::with_capacity(claimed.len());
        for d in claimed {
            let ty = d
                .envelope
                .as_ref()
                .map(|e| e.task_type.as_str())
                .unwrap_or("");
            if !paused.contains(ty) {
                keep.push(d);
                continue;
            }
            let (parked, paused_key) = (self.k("parked"), self.k("paused"));
            let keys = [
                &*self.s.keys.stream,
                &parked,
                &self.s.keys.index,
                &paused_key,
            ];
            let mut c = self.eval_op(PARK, &keys);
            c.arg(&self.s.group)
                .arg(&self.s.consumer)
                .arg(&d.lease.receipt)
                .arg(&d.lease.task_id)
                .arg(ty);
            match self.query(&c).await {
                Ok(Value::Int(2)) => {
                    *self.paused_cache() = None;
                    keep.push(d);
                }
                Ok(_) => {
                    self.inflight().remove(&d.lease.receipt);
                    tracing::debug!(task_id = %d.lease.task_id, task_type = ty, "type is paused: task parked until resume")
                }
                // Not parked: it stays pending here and comes back after the lease, when it is parked then.
                Err(e) => {
                    tracing::warn!(task_id = %d.lease.task_id, error = %e, "cannot park a task of a paused type")
                }
            }
        }
        keep
    }

    /// Which of `task_ids` have a cancel pending (`SMISMEMBER <stream>:cancel`).
    pub(super) async fn cancel_pending(
        &self,
        task_ids: &[&str],
    ) -> Result<Vec<bool>, AdapterError> {
        let mut c = redis::cmd("SMISMEMBER");
        c.arg(self.k("cancel")).arg(task_ids);
        Ok(parse::items(self.query(&c).await?)
            .iter()
            .map(|v| matches!(v, Value::Int(1)))
            .collect())
    }

    /// Forgets a settled task's pending cancel.
    pub(super) async fn cancel_done(&self, task_id: &str) {
        let mut c = redis::cmd("SREM");
        c.arg(self.k("cancel")).arg(task_id);
        if let Err(e) = self.query(&c).await {
            tracing::debug!(task_id, error = %e, "could not clear a pending cancel");
        }
    }

    /// `status` of a parked task: queued (its type is paused).
    pub(super) async fn parked_status(
        &self,
        id: &str,
        entry: &str,
    ) -> Result<Option<TaskStatus>, AdapterError> {
        let Some(fields) = self.entry(&self.k("parked"), entry).await? else {
            return Ok(None);
        };
        let d = parse::delivery(entry, Some(fields), 0);
        Ok(Some(TaskStatus {
            id: id.to_string(),
            task_type: d.task_type().unwrap_or_default().to_string(),
            status: TaskState::Queued,
            deliveries: d.deliveries.saturating_sub(1),
            result: None,
            run_at: None,
            attempts: 0,
            last_error: None,
        }))
    }
}
