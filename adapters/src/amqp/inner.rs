//! The adapter's shared state: the current link, reconnecting, the consumer callback, recording outcomes.

use super::link::Link;
use super::message::{Msg, Queues};
use super::probe;
use super::redact::scrub;
use super::settings::Settings;
use crate::AdapterError;
use lapin::Acker;
use lapin::message::DeliveryResult;
use lapin::options::BasicNackOptions;
use std::sync::atomic::{AtomicBool, AtomicU16, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::time::{Duration, Instant};
use tokio::sync::Notify;

const CONNECT_TIMEOUT: Duration = Duration::from_secs(10);
pub const RECONNECT_MIN: Duration = Duration::from_millis(250);
const RECONNECT_MAX: Duration = Duration::from_secs(10);

pub struct Retry {
    pub next: Option<Instant>,
    pub backoff: backon::ExponentialBackoff,
    pub last_error: String,
}

impl Retry {
    fn fresh() -> Retry {
        Retry {
            next: None,
            backoff: crate::backoff(RECONNECT_MIN, RECONNECT_MAX),
            last_error: String::new(),
        }
    }
}

pub struct Inner {
    pub url: String,
    pub shown: String,
    pub host_id: String,
    pub s: Settings,
    pub link: Mutex<Option<Arc<Link>>>,
    /// Held while (re)connecting or starting the consumer.
    pub reconnect: tokio::sync::Mutex<Retry>,
    pub generation: AtomicU64,
    /// 0 until the first claim starts consuming.
    pub prefetch: AtomicU16,
    pub stopped: AtomicBool,
    pub q: Mutex<Queues>,
    pub arrived: Notify,
    pub probed: AtomicBool,
}

pub fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(PoisonError::into_inner)
}

impl Inner {
    pub fn new(url: String, shown: String, host_id: String, s: Settings) -> Arc<Inner> {
        Arc::new(Inner {
            url,
            shown,
            host_id,
            s,
            link: Mutex::new(None),
            reconnect: tokio::sync::Mutex::new(Retry::fresh()),
            generation: AtomicU64::new(0),
            prefetch: AtomicU16::new(0),
            stopped: AtomicBool::new(false),
            q: Mutex::new(Queues::default()),
            arrived: Notify::new(),
            probed: AtomicBool::new(false),
        })
    }

    pub fn current(&self) -> Option<Arc<Link>> {
        lock(&self.link).clone()
    }

    pub fn healthy_link(&self) -> Option<Arc<Link>> {
        self.current().filter(|l| l.healthy())
    }

    /// The live link, reconnecting (with backoff) when it is gone.
    pub async fn link(self: &Arc<Self>) -> Result<Arc<Link>, AdapterError> {
        if let Some(l) = self.healthy_link() {
            return Ok(l);
        }
        let Ok(mut retry) = self.reconnect.try_lock() else {
            return Err(AdapterError::Unavailable(format!(
                "reconnecting to {}",
                self.shown
            )));
        };
        if let Some(l) = self.healthy_link() {
            return Ok(l);
        }
        if let Some(next) = retry.next.filter(|n| Instant::now() < *n) {
            let wait = next.saturating_duration_since(Instant::now()).as_millis();
            return Err(AdapterError::Unavailable(format!(
                "{} (next attempt in {wait} ms)",
                retry.last_error
            )));
        }
        self.open_with(&mut retry)
            .await
            .map_err(|(msg, _)| AdapterError::Unavailable(msg))
    }

    /// Opens the next generation's link (and consumer, once consuming began). The error says whether
    /// it is a configuration problem (the broker refused something) rather than an outage.
    pub async fn open(self: &Arc<Self>) -> Result<Arc<Link>, (String, bool)> {
        let mut retry = self.reconnect.lock().await;
        self.open_with(&mut retry).await
    }

    pub async fn open_with(
        self: &Arc<Self>,
        retry: &mut Retry,
    ) -> Result<Arc<Link>, (String, bool)> {
        if let Some(old) = lock(&self.link).take() {
            old.mark_broken();
            tokio::spawn(async move { old.close().await });
        }
        let generation = self.generation.fetch_add(1, Ordering::SeqCst) + 1;
        let opened = tokio::time::timeout(
            CONNECT_TIMEOUT,
            Link::open(&self.url, &self.s, &self.host_id, generation),
        )
        .await;
        let result = match opened {
            Ok(Ok(l)) => {
                let l = Arc::new(l);
                match self.start_consuming(&l).await {
                    Ok(()) => Ok(l),
                    Err(e) => {
                        l.close().await;
                        Err(self.describe(&e))
                    }
                }
            }
            Ok(Err(e)) => Err(self.describe(&e)),
            Err(_) => Err((
                format!(
                    "cannot connect to {}: no answer within {CONNECT_TIMEOUT:?}",
                    self.shown
                ),
                false,
            )),
        };
        match result {
            Ok(l) => {
                *lock(&self.link) = Some(l.clone());
                if generation > 1 {
                    tracing::info!(broker = %self.shown, generation, "reconnected to the broker; consuming again");
                }
                *retry = Retry::fresh();
                Ok(l)
            }
            Err((msg, permanent)) => {
                let wait = retry.backoff.next().unwrap_or(RECONNECT_MAX);
                retry.next = Some(Instant::now() + wait);
                retry.last_error = msg.clone();
                Err((msg, permanent))
            }
        }
    }

    /// A lapin error as a message without credentials, and whether the broker refused (configuration).
    pub fn describe(&self, e: &lapin::Error) -> (String, bool) {
        use lapin::protocol::{AMQPErrorKind, AMQPSoftError};
        let text = scrub(&e.to_string(), &self.url);
        let (hint, permanent) = match e.kind() {
            lapin::ErrorKind::ProtocolError(p) => match p.kind() {
                AMQPErrorKind::Soft(AMQPSoftError::NOTFOUND) if !self.s.declare => (
                    format!(" (queue {} must exist with `declare: false`)", self.s.queue),
                    true,
                ),
                AMQPErrorKind::Soft(AMQPSoftError::PRECONDITIONFAILED) => (
                    format!(
                        " (queue {} exists with other arguments: match `queue_type`, or set `declare: false` to use it as declared)",
                        self.s.queue
                    ),
                    true,
                ),
                _ => (String::new(), true),
            },
            _ => (String::new(), false),
        };
        (format!("broker {}: {text}{hint}", self.shown), permanent)
    }

    /// Starts the consumer on `l` once the first claim set the prefetch (and not after a stop).
    pub async fn start_consuming(self: &Arc<Self>, l: &Arc<Link>) -> lapin::Result<()> {
        let prefetch = self.prefetch.load(Ordering::SeqCst);
        if prefetch == 0 || self.stopped.load(Ordering::SeqCst) || lock(&l.consumer).is_some() {
            return Ok(());
        }
        let tag = format!("workerhost {} g{}", self.host_id, l.generation);
        let consumer = l
            .consume(&self.s, prefetch, &tag, self.s.consumer_timeout_ms)
            .await?;
        let weak = Arc::downgrade(self);
        let generation = l.generation;
        consumer.set_delegate(move |d: DeliveryResult| {
            let weak = weak.clone();
            async move {
                if let Some(inner) = weak.upgrade() {
                    inner.on_delivery(generation, d).await;
                }
            }
        });
        *lock(&l.consumer) = Some(consumer);
        if !self.probed.swap(true, Ordering::SeqCst) {
            let (url, shown, ms) = (
                self.url.clone(),
                self.shown.clone(),
                self.s.consumer_timeout_ms,
            );
            tokio::spawn(async move { warn_consumer_timeout(&url, &shown, ms).await });
        }
        Ok(())
    }

    pub async fn on_delivery(&self, generation: u64, d: DeliveryResult) {
        match d {
            Ok(Some(d)) => {
                let m = Msg::new(generation, d);
                let mut q = lock(&self.q);
                if self.stopped.load(Ordering::SeqCst) {
                    drop(q);
                    requeue(&m.acker).await;
                    return;
                }
                // Deliveries are dispatched as separate tasks: keep the channel's order (tag order).
                let at = q
                    .buffer
                    .iter()
                    .rposition(|b| (b.generation, b.tag) < (m.generation, m.tag))
                    .map_or(0, |i| i + 1);
                q.buffer.insert(at, m);
                drop(q);
                self.arrived.notify_waiters();
            }
            Ok(None) => {
                if !self.stopped.load(Ordering::SeqCst) {
                    tracing::warn!(queue = %self.s.queue, "the broker cancelled the consumer (queue deleted?); reconnecting");
                    self.break_generation(generation);
                }
            }
            Err(e) => {
                tracing::warn!(broker = %self.shown, error = %scrub(&e.to_string(), &self.url), "connection to the broker lost; reconnecting");
                self.break_generation(generation);
            }
        }
    }

    pub fn break_generation(&self, generation: u64) {
        if let Some(l) = self.current().filter(|l| l.generation == generation) {
            l.mark_broken();
        }
        self.arrived.notify_waiters();
    }

    pub fn hold(&self, receipt: String, m: Msg) {
        lock(&self.q).held.insert(receipt, m);
    }
}

pub async fn requeue(acker: &Acker) {
    let _ = acker
        .nack(BasicNackOptions {
            multiple: false,
            requeue: true,
        })
        .await;
}

/// Logs at start whether the broker honours `x-consumer-timeout`, and what to raise if not.
async fn warn_consumer_timeout(url: &str, shown: &str, wanted_ms: Option<u64>) {
    let (product, version) = match probe::server_version(url).await {
        Ok(v) => v,
        Err(e) => {
            tracing::warn!(broker = %shown, error = %scrub(&e, url), "cannot read the broker's version; if tasks may run longer than its consumer_timeout (30 min by default), raise consumer_timeout in rabbitmq.conf");
            return;
        }
    };
    let need = wanted_ms.map_or_else(
        || "the longest task's run time".into(),
        |ms| format!("{ms} ms"),
    );
    if probe::supports_consumer_timeout(&product, &version) {
        tracing::info!(broker = %shown, version = %version, consumer_timeout_ms = ?wanted_ms, "the broker honours the consumer argument x-consumer-timeout");
    } else {
        tracing::warn!(
            broker = %shown, product = %product, version = %version,
            default_ms = probe::DEFAULT_BROKER_TIMEOUT_MS,
            "this broker ignores the consumer argument x-consumer-timeout (RabbitMQ 3.11.15+ honours it): a task left unacknowledged longer than the broker's `consumer_timeout` (rabbitmq.conf; 30 min by default) gets its channel closed and is redelivered; raise consumer_timeout to at least {need}"
        );
    }
}
