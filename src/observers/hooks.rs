//! Observer hooks from config (`observers:`): each is an [`Observer`] that only filters the event and
//! pushes it into its own bounded queue (`try_send`, never waiting), and a background task that delivers
//! the queue in order: a webhook POST or a command. When a queue is full the event is dropped and
//! counted; a slow or failing hook never delays or fails a task.

use super::command::CommandSink;
use super::webhook::WebhookSink;
use super::{Event, EventKind, Observer};
use crate::config::ObserverConfig;
use crate::metrics::HookCounters;
use std::path::Path;
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::Duration;
use tokio::sync::mpsc;
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;

/// Events a hook's queue holds before it drops new ones.
pub const QUEUE_CAPACITY: usize = 1024;

/// The kinds of event one hook wants (a bit per [`EventKind`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct EventFilter(u16);

impl EventFilter {
    /// `None` (no `events:` key): every event.
    pub fn from_names(names: Option<&[String]>) -> EventFilter {
        match names {
            None => EventFilter(u16::MAX),
            Some(list) => EventFilter(
                list.iter()
                    .filter_map(|n| EventKind::parse(n))
                    .fold(0, |bits, k| bits | EventFilter::bit(k)),
            ),
        }
    }

    fn bit(k: EventKind) -> u16 {
        let i = EventKind::ALL.iter().position(|x| *x == k).unwrap_or(0);
        1 << i
    }

    pub fn allows(self, k: EventKind) -> bool {
        self.0 & EventFilter::bit(k) != 0
    }
}

/// Where a hook delivers.
pub enum Sink {
    Webhook(WebhookSink),
    Command(CommandSink),
}

impl Sink {
    async fn deliver(&self, e: &Event) -> Result<(), String> {
        match self {
            Sink::Webhook(w) => w.deliver(e).await,
            Sink::Command(c) => c.deliver(e).await,
        }
    }
}

/// The observer half of a hook: filter and enqueue.
struct Hook {
    label: String,
    filter: EventFilter,
    tx: mpsc::Sender<Event>,
    counters: Arc<HookCounters>,
}

impl Observer for Hook {
    fn notify(&self, e: &Event) {
        if !self.filter.allows(e.event) {
            return;
        }
        if let Err(mpsc::error::TrySendError::Full(_)) = self.tx.try_send(e.clone()) {
            let n = self.counters.dropped.fetch_add(1, Ordering::Relaxed) + 1;
            if n == 1 || n.is_multiple_of(100) {
                tracing::warn!(observer = %self.label, dropped = n, "observer queue full: event dropped (the hook is slower than the events)");
            }
        }
    }
}

/// The configured hooks: their observers, their counters, and their delivery tasks.
#[derive(Default)]
pub struct Hooks {
    pub observers: Vec<Arc<dyn Observer>>,
    /// By label (`webhook[0]`, `command[1]`), for metrics.
    pub counters: Vec<(String, Arc<HookCounters>)>,
    tasks: Vec<JoinHandle<()>>,
    closing: CancellationToken,
}

impl Hooks {
    /// Starts a delivery task per configured hook (needs a Tokio runtime). `base` is the config
    /// file's folder, where commands run.
    pub fn start(configs: &[ObserverConfig], base: &Path) -> Result<Hooks, String> {
        let mut hooks = Hooks::default();
        for (i, c) in configs.iter().enumerate() {
            let (label, events, sink) = match c {
                ObserverConfig::Webhook {
                    url,
                    events,
                    timeout,
                } => (
                    format!("webhook[{i}]"),
                    events,
                    Sink::Webhook(WebhookSink::new(url, *timeout)?),
                ),
                ObserverConfig::Command {
                    argv,
                    events,
                    timeout,
                } => (
                    format!("command[{i}]"),
                    events,
                    Sink::Command(CommandSink::new(argv.clone(), *timeout, base)),
                ),
            };
            hooks.add(label, EventFilter::from_names(events.as_deref()), sink);
        }
        Ok(hooks)
    }

    /// Adds one hook delivering to `sink`.
    pub fn add(&mut self, label: String, filter: EventFilter, sink: Sink) {
        let (tx, rx) = mpsc::channel(QUEUE_CAPACITY);
        let counters = Arc::new(HookCounters::default());
        self.tasks.push(tokio::spawn(consume(
            rx,
            sink,
            counters.clone(),
            self.closing.clone(),
            label.clone(),
        )));
        self.counters.push((label.clone(), counters.clone()));
        self.observers.push(Arc::new(Hook {
            label,
            filter,
            tx,
            counters,
        }));
    }

    /// At shutdown: delivers what is still queued, for at most `limit`; then gives up on the rest.
    pub async fn drain(self, limit: Duration) {
        if self.tasks.is_empty() {
            return;
        }
        self.closing.cancel();
        let aborts: Vec<_> = self.tasks.iter().map(|t| t.abort_handle()).collect();
        let all = async {
            for t in self.tasks {
                let _ = t.await;
            }
        };
        if tokio::time::timeout(limit, all).await.is_err() {
            for a in aborts {
                a.abort();
            }
            tracing::warn!(
                limit_s = limit.as_secs_f64(),
                "observer hooks did not finish delivering at shutdown; undelivered events are dropped"
            );
        }
    }
}

/// Delivers a hook's events in order until closing; then what is still queued.
async fn consume(
    mut rx: mpsc::Receiver<Event>,
    sink: Sink,
    counters: Arc<HookCounters>,
    closing: CancellationToken,
    label: String,
) {
    loop {
        let e = tokio::select! {
            biased;
            e = rx.recv() => match e {
                Some(e) => e,
                None => return,
            },
            _ = closing.cancelled() => break,
        };
        deliver(&sink, &e, &counters, &label).await;
    }
    rx.close();
    while let Some(e) = rx.recv().await {
        deliver(&sink, &e, &counters, &label).await;
    }
}

async fn deliver(sink: &Sink, e: &Event, counters: &HookCounters, label: &str) {
    match sink.deliver(e).await {
        Ok(()) => {
            counters.delivered.fetch_add(1, Ordering::Relaxed);
        }
        Err(error) => {
            counters.failed.fetch_add(1, Ordering::Relaxed);
            tracing::warn!(observer = %label, event = e.event.as_str(), task_id = e.task_id.as_deref().unwrap_or(""), %error, "observer could not deliver an event");
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn filters_by_event_name() {
        let f = EventFilter::from_names(Some(&["task_failed".into(), "worker_unhealthy".into()]));
        assert!(f.allows(EventKind::TaskFailed));
        assert!(f.allows(EventKind::WorkerUnhealthy));
        assert!(!f.allows(EventKind::TaskReceived));
        assert!(!f.allows(EventKind::TaskSucceeded));
        let all = EventFilter::from_names(None);
        assert!(EventKind::ALL.iter().all(|k| all.allows(*k)));
        assert!(!EventFilter::from_names(Some(&[])).allows(EventKind::TaskFailed));
    }

    #[tokio::test]
    async fn a_full_queue_drops_and_counts_without_waiting() {
        let mut hooks = Hooks::default();
        // A command that never finishes: the first event occupies the sink, the queue fills.
        let sink = Sink::Command(CommandSink::new(
            vec!["/bin/sleep".into(), "30".into()],
            Duration::from_secs(30),
            Path::new("/"),
        ));
        hooks.add("command[0]".into(), EventFilter::from_names(None), sink);
        let started = std::time::Instant::now();
        let e = Event::new(EventKind::TaskStarted, "h");
        for _ in 0..(QUEUE_CAPACITY + 50) {
            for o in &hooks.observers {
                o.notify(&e);
            }
        }
        assert!(started.elapsed() < Duration::from_secs(1), "notify waited");
        let dropped = hooks.counters[0].1.dropped.load(Ordering::Relaxed);
        assert!((49..=50).contains(&dropped), "dropped {dropped}");
        hooks.drain(Duration::from_millis(100)).await;
    }
}
