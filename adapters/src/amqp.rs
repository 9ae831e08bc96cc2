//! The `amqp` task manager (RabbitMQ, AMQP 0-9-1 via `lapin`).
//!
//! A consumer with manual acks fills an in-process buffer; [`Consumer::claim`] hands out at most what the
//! host can start. Prefetch (basic.qos) is the host's capacity (its first claim) or the `prefetch` setting,
//! so the broker never pushes more than can start. A lease is `<generation>:<delivery tag>`: the
//! generation counts connections, so a tag of a dead channel is never acked on a new one.
//!
//! Settling publishes the result document to the message's `reply_to` (same `correlation_id`) and to
//! `result_exchange` when set, both with publisher confirms, and only then acks. Dead letters are
//! `basic.nack(requeue=false)`ed when the queue has a dead-letter exchange (`dead_letter_exchange`),
//! otherwise published to `<queue>.dead` with headers `x-error`, `x-attempts`, ... and then acked.
//!
//! Connection loss: every call reports [`AdapterError::Unavailable`] while the adapter reconnects (with
//! backoff) and re-consumes. The broker requeues what the dead channel held. An outcome of such a
//! delivery (the task ran on through the outage) is kept by the host, which retries `settle`; once the
//! broker redelivers that message to this host, the redelivery is parked instead of run again and the
//! kept outcome is recorded on it. If the broker hands it to another host instead, the outcome here is
//! dropped ([`AdapterError::LeaseLost`]) and the task runs there again: at least once.

#[cfg(test)]
mod broker_tests;
mod dead;
mod inner;
mod link;
mod message;
mod outcome;
mod probe;
mod redact;
mod settings;
#[cfg(test)]
mod tests;

pub use redact::{redact, scrub};
pub use settings::{QueueType, Settings};

use crate::{
    AdapterError, ClaimRequest, Consumer, Delivery, Envelope, Lease, Queue, ResultDocument,
    Revoked, Settled, TaskStatus,
};
use inner::{Inner, lock, requeue};
use lapin::BasicProperties;
use lapin::options::{BasicCancelOptions, BasicNackOptions};
use message::{Msg, short};
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::Duration;

/// How long a claim waits for a message before answering "nothing".
const CLAIM_WAIT: Duration = Duration::from_millis(500);
/// How often a waiting claim looks at the connection's health.
const HEALTH_TICK: Duration = Duration::from_millis(100);
/// After a reconnect, how long an outcome of a dead channel's delivery waits for its redelivery.
const REDELIVERY_WAIT: Duration = Duration::from_secs(5);

/// What the adapter is opened with.
#[derive(Debug, Clone)]
pub struct Options {
    pub host_id: String,
    /// `consumer_timeout_ms` is used as set; [`crate::open`] fills it in from the workers when unset.
    pub settings: Settings,
}

/// The `amqp` task manager; see the module docs.
pub struct AmqpSource {
    inner: Arc<Inner>,
}

impl AmqpSource {
    /// Connects and declares (or checks) the queues. Consuming starts with the first claim, so
    /// `workerhost submit`, `check` and `status` never take messages.
    pub async fn connect(opts: Options) -> Result<AmqpSource, AdapterError> {
        let s = opts.settings;
        let url = s.url().to_string();
        let shown = redact(&url);
        if let Err(e) = url.parse::<lapin::uri::AMQPUri>() {
            return Err(AdapterError::Invalid(format!(
                "task_manager.url {shown}: {}",
                scrub(&e, &url)
            )));
        }
        let inner = Inner::new(url, shown, opts.host_id, s);
        inner.open().await.map_err(|(msg, permanent)| {
            if permanent {
                AdapterError::Backend(msg)
            } else {
                AdapterError::Unavailable(msg)
            }
        })?;
        Ok(AmqpSource { inner })
    }
}

impl Consumer for AmqpSource {
    fn kind(&self) -> &'static str {
        "amqp"
    }

    async fn claim(&self, req: &ClaimRequest) -> Result<Vec<Delivery>, AdapterError> {
        let i = &self.inner;
        if i.stopped.load(Ordering::SeqCst) {
            return Ok(Vec::new());
        }
        if i.prefetch.load(Ordering::SeqCst) == 0 {
            let p =
                i.s.prefetch
                    .unwrap_or_else(|| u16::try_from(req.total().max(1)).unwrap_or(u16::MAX));
            let _ = i
                .prefetch
                .compare_exchange(0, p, Ordering::SeqCst, Ordering::SeqCst);
        }
        let link = i.link().await?;
        if lock(&link.consumer).is_none() {
            let _guard = i.reconnect.lock().await;
            if let Err(e) = i.start_consuming(&link).await {
                link.mark_broken();
                return Err(AdapterError::Unavailable(i.describe(&e).0));
            }
        }
        if req.total() == 0 {
            return Ok(Vec::new());
        }
        let deadline = tokio::time::Instant::now() + CLAIM_WAIT;
        loop {
            let arrived = i.arrived.notified();
            tokio::pin!(arrived);
            arrived.as_mut().enable();
            let (out, unfit) = lock(&i.q).take(req, link.generation);
            if !out.is_empty() {
                return Ok(out);
            }
            if !link.healthy() {
                return Err(AdapterError::Unavailable(format!(
                    "lost the connection to {}; reconnecting",
                    i.shown
                )));
            }
            // Messages wait whose workers are busy: answer now, the host asks again when one is free.
            let now = tokio::time::Instant::now();
            if unfit || i.stopped.load(Ordering::SeqCst) || now >= deadline {
                return Ok(Vec::new());
            }
            // Wake up now and then: a connection closed by the broker is seen in its status, not here.
            let tick = (now + HEALTH_TICK).min(deadline);
            tokio::select! {
                _ = &mut arrived => {}
                _ = tokio::time::sleep_until(tick) => {}
            }
        }
    }

    /// Nothing to renew: the broker holds an unacked message for as long as the channel lives.
    async fn renew(&self, _leases: &[Lease]) -> Result<Vec<Revoked>, AdapterError> {
        Ok(Vec::new())
    }

    async fn settle(&self, lease: &Lease, doc: &ResultDocument) -> Result<Settled, AdapterError> {
        self.record(lease, doc).await.map(|()| Settled::Recorded)
    }

    async fn release(&self, lease: &Lease) -> Result<(), AdapterError> {
        let i = &self.inner;
        let Some(m) = lock(&i.q).held.remove(&lease.receipt) else {
            return Err(AdapterError::LeaseLost {
                id: lease.task_id.clone(),
            });
        };
        let Some(l) = i.healthy_link() else {
            return Ok(()); // the channel is gone: the broker requeued the message already
        };
        let target = if m.generation == l.generation {
            Some(m)
        } else {
            lock(&i.q).take_redelivery(&m.task_id, l.generation)
        };
        if let Some(t) = target {
            let opts = BasicNackOptions {
                multiple: false,
                requeue: true,
            };
            t.acker
                .nack(opts)
                .await
                .map_err(|e| AdapterError::Unavailable(scrub(&e.to_string(), &i.url)))?;
        }
        Ok(())
    }

    async fn ping(&self) -> Result<(), AdapterError> {
        self.inner.link().await.map(drop)
    }

    fn idle_wait(&self) -> Duration {
        // `claim` itself waits for messages; this is only the pause while buffered messages wait for
        // their busy workers (a finishing task ends it early).
        Duration::from_millis(50)
    }

    async fn stop_consuming(&self) {
        let i = &self.inner;
        let buffered: Vec<Msg> = {
            let mut q = lock(&i.q);
            i.stopped.store(true, Ordering::SeqCst);
            q.buffer.drain(..).collect()
        };
        i.arrived.notify_waiters();
        if let Some(l) = i.healthy_link() {
            let tag = lock(&l.consumer).as_ref().map(|c| c.tag());
            if let Some(tag) = tag {
                let cancel = l.ch.basic_cancel(tag, BasicCancelOptions::default());
                if let Err(e) = tokio::time::timeout(Duration::from_secs(5), cancel)
                    .await
                    .unwrap_or(Ok(()))
                {
                    tracing::warn!(error = %scrub(&e.to_string(), &i.url), "cannot cancel the consumer");
                }
            }
            for m in buffered.iter().filter(|m| m.generation == l.generation) {
                requeue(&m.acker).await;
            }
        }
        if !buffered.is_empty() {
            tracing::info!(
                count = buffered.len(),
                "handed back messages received but not started"
            );
        }
    }

    async fn close(&self) {
        let i = &self.inner;
        i.stopped.store(true, Ordering::SeqCst);
        let parked: Vec<Msg> = lock(&i.q).parked.drain(..).collect();
        for m in &parked {
            requeue(&m.acker).await;
        }
        let l = lock(&i.link).take();
        if let Some(l) = l {
            l.close().await;
        }
    }
}

impl Queue for AmqpSource {
    async fn dead_list(
        &self,
        f: &crate::ops::DeadFilter,
    ) -> Result<Vec<crate::ops::DeadLetter>, crate::ops::OpsError> {
        dead::list(&self.inner, f).await
    }
    async fn dead_retry(
        &self,
        which: &crate::ops::DeadSelection,
    ) -> Result<u64, crate::ops::OpsError> {
        dead::retry(&self.inner, which).await
    }
    async fn dead_purge(&self, f: &crate::ops::DeadFilter) -> Result<u64, crate::ops::OpsError> {
        dead::purge(&self.inner, f).await
    }
    async fn submit(&self, envelope: &Envelope) -> Result<(), AdapterError> {
        let i = &self.inner;
        envelope.check()?;
        let body =
            serde_json::to_vec(envelope).map_err(|e| AdapterError::Invalid(e.to_string()))?;
        let mut props = BasicProperties::default()
            .with_content_type("application/json".into())
            .with_delivery_mode(2);
        if let Some(id) = short(&envelope.id) {
            props = props.with_message_id(id);
        }
        if let Some(c) = envelope.correlation_id.as_deref().and_then(short) {
            props = props.with_correlation_id(c);
        }
        if let Some(tp) = &envelope.traceparent {
            let mut headers = lapin::types::FieldTable::default();
            headers.insert(
                "traceparent".into(),
                lapin::types::LongString::from(tp.clone()).into(),
            );
            props = props.with_headers(headers);
        }
        let l = i.link().await?;
        match l.publish("", &i.s.queue, true, &body, props).await {
            Ok(true) => Ok(()),
            Ok(false) => Err(AdapterError::Backend(format!(
                "queue {} does not exist",
                i.s.queue
            ))),
            Err(e) => Err(AdapterError::Unavailable(format!(
                "broker {}: {}",
                i.shown,
                scrub(&e, &i.url)
            ))),
        }
    }

    async fn status(&self, id: &str) -> Result<Option<TaskStatus>, AdapterError> {
        Err(AdapterError::Backend(format!(
            "the amqp task manager keeps no task status (task {id}): a message leaves the queue when it is acknowledged. Results are published to the message's reply_to queue, and to result_exchange when configured; read them there"
        )))
    }
}

impl AmqpSource {
    /// Records the outcome (see [`Consumer::settle`]).
    async fn record(&self, lease: &Lease, doc: &ResultDocument) -> Result<(), AdapterError> {
        let i = &self.inner;
        let lost = || AdapterError::LeaseLost {
            id: lease.task_id.clone(),
        };
        let Some(m) = lock(&i.q).held.remove(&lease.receipt) else {
            return Err(lost());
        };
        let l = match i.link().await {
            Ok(l) => l,
            Err(e) => {
                i.hold(lease.receipt.clone(), m);
                return Err(e);
            }
        };
        let unavailable = |e: String| {
            AdapterError::Unavailable(format!(
                "task {}: cannot record the outcome yet: {}",
                lease.task_id,
                scrub(&e, &i.url)
            ))
        };
        if m.generation == l.generation {
            return match i.finish(&l, &m, doc).await {
                Ok(()) => Ok(()),
                Err(e) => {
                    i.hold(lease.receipt.clone(), m);
                    Err(unavailable(e))
                }
            };
        }
        // Delivered on a channel that died: record the outcome on the broker's redelivery.
        let redelivery = lock(&i.q).take_redelivery(&m.task_id, l.generation);
        match redelivery {
            Some(re) => match i.finish(&l, &re, doc).await {
                Ok(()) => {
                    tracing::info!(task_id = %m.task_id, "outcome recorded on the redelivery that followed a reconnect");
                    Ok(())
                }
                Err(e) => {
                    lock(&i.q).parked.push(re);
                    i.hold(lease.receipt.clone(), m);
                    Err(unavailable(e))
                }
            },
            None if l.opened.elapsed() < REDELIVERY_WAIT => {
                i.hold(lease.receipt.clone(), m);
                Err(unavailable(
                    "waiting for the broker to redeliver it after the reconnect".into(),
                ))
            }
            None => Err(lost()),
        }
    }
}
