//! Consuming from the stream: taking over entries of dead hosts, reading new ones, renewing, settling and
//! handing back (see the module docs of [`super`]).

use super::parse::{self, text};
use super::{RedisSource, SWEEP_EVERY, SWEEP_IDLE_MS, TAKEOVER_EVERY};
use crate::{
    AdapterError, ClaimRequest, Consumer, Delivery, Envelope, Lease, ResultDocument, RevokeReason,
    Revoked, Settled,
};
use redis::{Cmd, Value};
use std::collections::HashSet;
use std::time::{Duration, Instant};

impl RedisSource {
    /// Takes over entries idle past the lease (at most `want`), unless a scan ran a moment ago.
    pub(super) async fn take_over(&self, want: usize) -> Result<Vec<Delivery>, AdapterError> {
        let mut t = self.s.takeover.lock().await;
        let now = Instant::now();
        if now >= t.next_sweep {
            t.next_sweep = now + SWEEP_EVERY;
            let idle = SWEEP_IDLE_MS.max(10 * self.s.cfg.lease().as_millis() as u64);
            let mut c = self.eval(&self.s.scripts.sweep, &[&self.s.keys.stream]);
            c.arg(&self.s.group).arg(idle);
            match self.query(&c).await {
                Ok(Value::Int(n)) if n > 0 => {
                    tracing::info!(
                        consumers = n,
                        "removed consumers of hosts long gone from the group"
                    )
                }
                Ok(_) => {}
                Err(e) => tracing::debug!(error = %e, "consumer sweep failed"),
            }
        }
        if now < t.next {
            return Ok(Vec::new());
        }
        let own: Vec<String> = self.inflight().iter().cloned().collect();
        let mut c = self.eval(&self.s.scripts.takeover, &[&self.s.keys.stream]);
        c.arg(&self.s.group)
            .arg(&self.s.consumer)
            .arg(self.s.cfg.lease().as_millis() as u64)
            .arg(&t.cursor)
            .arg(want)
            .arg(own);
        let reply = match self.query(&c).await {
            Err(AdapterError::Backend(m)) if m.contains("NOGROUP") => {
                self.ensure_group().await?;
                return Ok(Vec::new());
            }
            r => r?,
        };
        let mut parts = parse::items(reply).into_iter();
        let cursor = parts
            .next()
            .as_ref()
            .and_then(text)
            .unwrap_or_else(|| "0-0".into());
        let mut out = Vec::new();
        for e in parse::items(parts.next().unwrap_or(Value::Nil)) {
            let mut e = parse::items(e).into_iter();
            let (Some(id), fields, count) = (e.next().as_ref().and_then(text), e.next(), e.next())
            else {
                continue;
            };
            let count = count
                .as_ref()
                .and_then(text)
                .and_then(|n| n.parse().ok())
                .unwrap_or(1);
            let d = parse::delivery(&id, fields.and_then(parse::fields), count);
            tracing::info!(task_id = %d.lease.task_id, entry = %id, deliveries = d.deliveries, "took over a task whose lease expired");
            out.push(d);
        }
        let deleted: Vec<String> = parse::items(parts.next().unwrap_or(Value::Nil))
            .iter()
            .filter_map(text)
            .collect();
        if !deleted.is_empty() {
            tracing::warn!(entries = ?deleted, "pending entries deleted from the stream were dropped from the group");
        }
        // Scan on at once while there is more to scan or the page was full; otherwise rest a moment.
        let done = cursor == "0-0" && out.len() < want;
        t.cursor = cursor;
        t.next = if done {
            now + TAKEOVER_EVERY.min(self.s.cfg.lease() / 4)
        } else {
            now
        };
        Ok(out)
    }

    /// Reads up to `n` new entries, blocking up to `block_ms` when `block`.
    pub(super) async fn read_new(
        &self,
        n: usize,
        block: bool,
    ) -> Result<Vec<Delivery>, AdapterError> {
        // First without blocking, on the shared connection: while tasks are queued this read travels with
        // the settle that freed the slot (one round trip and one wake-up for both). Only a read that
        // must wait goes to the reader's own connection, so that it stalls no settle or renewal.
        let ready = self.xread(n, None).await?;
        if !block || !ready.is_empty() {
            return Ok(ready);
        }
        self.xread(n, Some(self.block_for(self.s.cfg.block_ms())))
            .await
    }

    /// `XREADGROUP ... COUNT n [BLOCK ms] STREAMS <stream> >`.
    pub(super) async fn xread(
        &self,
        n: usize,
        block_ms: Option<u64>,
    ) -> Result<Vec<Delivery>, AdapterError> {
        let mut c = redis::cmd("XREADGROUP");
        c.arg("GROUP")
            .arg(&self.s.group)
            .arg(&self.s.consumer)
            .arg("COUNT")
            .arg(n);
        if let Some(ms) = block_ms {
            c.arg("BLOCK").arg(ms);
        }
        c.arg("STREAMS").arg(&self.s.keys.stream).arg(">");
        let mut conn = match block_ms {
            Some(_) => self.s.reader.clone(),
            None => self.s.conn.clone(),
        };
        match c.query_async::<Value>(&mut conn).await {
            Ok(v) => Ok(parse::read_reply(v)
                .into_iter()
                .map(|(id, fields)| parse::delivery(&id, fields, 1))
                .collect()),
            // The stream or group is gone (deleted, or a Redis without persistence restarted).
            Err(e) if e.code() == Some("NOGROUP") => {
                self.ensure_group().await?;
                Ok(Vec::new())
            }
            Err(e) => Err(self.err(&e)),
        }
    }

    /// Runs a fenced script; `Ok(None)` means the entry is no longer ours.
    pub(super) async fn fenced(
        &self,
        lease: &Lease,
        c: Cmd,
    ) -> Result<Option<Value>, AdapterError> {
        let v = self.query(&c).await?;
        self.inflight().remove(&lease.receipt);
        Ok(match v {
            Value::Int(0) => None,
            v => Some(v),
        })
    }
    /// Records the outcome (see [`Consumer::settle`]); a `cancelled` one is stored like a success.
    pub(super) async fn settle_entry(
        &self,
        lease: &Lease,
        doc: &ResultDocument,
    ) -> Result<(), AdapterError> {
        let json = serde_json::to_string(doc)
            .map_err(|e| AdapterError::Invalid(format!("task {}: result: {e}", lease.task_id)))?;
        let result_key = self.s.keys.result(&lease.task_id);
        let keys = [
            &*self.s.keys.stream,
            &self.s.keys.dead,
            &result_key,
            &self.s.keys.index,
        ];
        let mut c = self.eval(&self.s.scripts.settle, &keys);
        c.arg(&self.s.group)
            .arg(&self.s.consumer)
            .arg(&lease.receipt)
            .arg(doc.status.as_str())
            .arg(json)
            .arg(self.s.cfg.result_ttl().as_millis().max(1) as u64)
            .arg(parse::error_message(doc))
            .arg(doc.attempts)
            .arg(parse::fallback_task(doc))
            .arg(&lease.task_id);
        match self.fenced(lease, c).await? {
            Some(Value::Int(2)) => {
                tracing::debug!(task_id = %lease.task_id, "outcome was already recorded (retry after a lost reply)");
                Ok(())
            }
            Some(Value::Int(3)) => {
                tracing::warn!(task_id = %lease.task_id, stream = %self.s.keys.stream, "outcome recorded, but its stream entry is gone without a trace (Redis restarted without persistence, or the stream was deleted?): queued tasks may have been lost with it");
                Ok(())
            }
            Some(_) => Ok(()),
            None => Err(AdapterError::LeaseLost {
                id: lease.task_id.clone(),
            }),
        }
    }
}

impl Consumer for RedisSource {
    fn kind(&self) -> &'static str {
        "redis"
    }

    async fn claim(&self, req: &ClaimRequest) -> Result<Vec<Delivery>, AdapterError> {
        let want = req.total();
        if want == 0 {
            return Ok(Vec::new());
        }
        self.move_due().await?;
        let mut out = self.take_over(want).await?;
        if out.len() < want {
            // Block only when nothing was taken over: those must start now.
            match self.read_new(want - out.len(), out.is_empty()).await {
                Ok(more) => out.extend(more),
                Err(e) if out.is_empty() => return Err(e),
                Err(e) => tracing::warn!(error = %e, "cannot read new entries"),
            }
        }
        self.inflight()
            .extend(out.iter().map(|d| d.lease.receipt.clone()));
        // An entry added by hand with a `run_at` still ahead waits in the due set, not in a slot.
        let now = crate::now_ms();
        let mut ready = Vec::with_capacity(out.len());
        for d in out {
            match &d.envelope {
                Ok(env) if env.is_scheduled(now) => {
                    let env = env.clone();
                    if let Err(e) = self.defer(&d.lease, &env).await {
                        tracing::warn!(task_id = %env.id, error = %e, "cannot move a task that is not due yet to the due set; it is delivered again later");
                    }
                }
                _ => ready.push(d),
            }
        }
        Ok(self.park_paused(ready).await)
    }

    async fn renew(&self, leases: &[Lease]) -> Result<Vec<Revoked>, AdapterError> {
        if leases.is_empty() {
            return Ok(Vec::new());
        }
        let mut c = self.eval(&self.s.scripts.renew, &[&self.s.keys.stream]);
        c.arg(&self.s.group).arg(&self.s.consumer);
        for l in leases {
            c.arg(&l.receipt);
        }
        let lost: HashSet<String> = parse::items(self.query(&c).await?)
            .iter()
            .filter_map(text)
            .collect();
        let mut revoked: Vec<Revoked> = leases
            .iter()
            .filter(|l| lost.contains(&l.receipt))
            .cloned()
            .map(Revoked::lost)
            .collect();
        // Held still: is a cancel pending for any? (Their leases stay renewed: they settle `cancelled`.)
        let held: Vec<&Lease> = leases
            .iter()
            .filter(|l| !lost.contains(&l.receipt))
            .collect();
        if !held.is_empty() {
            let ids: Vec<&str> = held.iter().map(|l| l.task_id.as_str()).collect();
            let pending = self.cancel_pending(&ids).await?;
            for (l, cancel) in held.into_iter().zip(pending) {
                if cancel {
                    self.cancelled().insert(l.task_id.clone());
                    revoked.push(Revoked {
                        lease: l.clone(),
                        reason: RevokeReason::Cancelled,
                    });
                }
            }
        }
        Ok(revoked)
    }

    /// Records the outcome; a settled task's pending cancel is cleared (unless Redis is down: the cancel
    /// then stays, and a later settle of the task clears it).
    async fn settle(&self, lease: &Lease, doc: &ResultDocument) -> Result<Settled, AdapterError> {
        let r = self.settle_entry(lease, doc).await;
        if !matches!(r, Err(AdapterError::Unavailable(_)))
            && self.cancelled().remove(&lease.task_id)
        {
            self.cancel_done(&lease.task_id).await;
        }
        r.map(|()| Settled::Recorded)
    }

    /// Hands the entry back: re-added as a new entry (so a waiting host gets it at once) carrying the
    /// deliveries before this one, then the old entry is acked and deleted. The task goes to the back of
    /// the stream.
    async fn release(&self, lease: &Lease) -> Result<(), AdapterError> {
        let keys = [&*self.s.keys.stream, &self.s.keys.index];
        let mut c = self.eval(&self.s.scripts.release, &keys);
        c.arg(&self.s.group)
            .arg(&self.s.consumer)
            .arg(&lease.receipt)
            .arg(&lease.task_id);
        match self.fenced(lease, c).await? {
            Some(_) => Ok(()),
            None => Err(AdapterError::LeaseLost {
                id: lease.task_id.clone(),
            }),
        }
    }

    /// The attempt is recorded by moving the entry to the due set (acked and deleted from the stream in
    /// the same script), carrying the attempts and the last error in the envelope.
    async fn requeue(&self, lease: &Lease, task: &Envelope) -> Result<(), AdapterError> {
        self.defer(lease, task).await
    }

    async fn ping(&self) -> Result<(), AdapterError> {
        self.query(&redis::cmd("PING")).await.map(drop)
    }

    /// The blocking read already waited `block_ms`.
    fn idle_wait(&self) -> Duration {
        Duration::from_millis(10)
    }

    async fn close(&self) {
        let mut c = self.eval(&self.s.scripts.close, &[&self.s.keys.stream]);
        c.arg(&self.s.group).arg(&self.s.consumer);
        if let Err(e) = self.query(&c).await {
            tracing::debug!(error = %e, "could not remove this host's consumer from the group");
        }
    }
}
