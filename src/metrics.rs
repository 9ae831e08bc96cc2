//! Prometheus metrics: the built-in metrics observer (counters and the duration histogram are fed by task
//! events) plus gauges read from the host's state when `/metrics` is scraped.
//!
//! Per event the work is one label lookup and an atomic add; nothing is formatted or allocated beyond
//! what the prometheus crate does to find a label set it has seen before.

use crate::host::HostState;
use crate::observers::{Event, EventKind, Observer};
use crate::registry::Registry;
use crate::runner::OutcomeKind;
use prometheus::{
    CounterVec, Encoder, GaugeVec, HistogramOpts, HistogramVec, IntCounter, IntCounterVec,
    IntGauge, IntGaugeVec, Opts, TextEncoder,
};
use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, OnceLock};
use workerhost_adapters::ops::TypeDepth;
use workerhost_adapters::{ResultStatus, TaskState};

/// Buckets of `workerhost_task_duration_seconds`: 5 ms to an hour.
pub const DURATION_BUCKETS: &[f64] = &[
    0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0, 120.0, 300.0, 600.0,
    1200.0, 1800.0, 3600.0,
];

/// Counters an observer hook keeps about itself (webhook, command), exported per hook.
#[derive(Debug, Default)]
pub struct HookCounters {
    /// Events delivered (the POST answered 2xx, the command exited 0).
    pub delivered: AtomicU64,
    /// Events given up on after the last retry (or a command that failed or timed out).
    pub failed: AtomicU64,
    /// Events dropped because the hook's queue was full.
    pub dropped: AtomicU64,
}

pub struct Metrics {
    registry: prometheus::Registry,
    tasks: IntCounterVec,
    attempts: IntCounterVec,
    duration: HistogramVec,
    in_flight: IntGaugeVec,
    task_manager_up: IntGauge,
    restarts: IntCounterVec,
    lost_leases: IntCounter,
    /// The same count under the name the HTTP task manager's users know it by (a lost claim).
    lost_claims: IntCounter,
    /// Claim answers the adapter could not read as tasks.
    unreadable: IntCounter,
    hook_events: IntCounterVec,
    schedule_ticks: IntCounterVec,
    hooks: Vec<(String, Arc<HookCounters>)>,
    queue_tasks: IntGaugeVec,
    queue_oldest: GaugeVec,
    cpu: CounterVec,
    max_rss: HistogramVec,
}

/// Buckets of `workerhost_task_max_rss_bytes`: 1 MiB to 16 GiB, by powers of 4.
const RSS_BUCKETS: [f64; 8] = [
    1048576.0,
    4194304.0,
    16777216.0,
    67108864.0,
    268435456.0,
    1073741824.0,
    4294967296.0,
    17179869184.0,
];

impl std::fmt::Debug for Metrics {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Metrics").finish_non_exhaustive()
    }
}

fn counter_vec(name: &str, help: &str, labels: &[&str]) -> prometheus::Result<IntCounterVec> {
    IntCounterVec::new(Opts::new(name, help), labels)
}

impl Metrics {
    /// The metrics of one host; `hooks` are the configured observer hooks by label (`webhook[0]`).
    /// Long on purpose: one declaration per metric (name, help, labels) and its registration, the
    /// list a reader looks for in one place.
    pub fn new(hooks: Vec<(String, Arc<HookCounters>)>) -> prometheus::Result<Metrics> {
        let m = Metrics {
            registry: prometheus::Registry::new(),
            tasks: counter_vec(
                "workerhost_tasks_total",
                "Tasks that ended here, by worker and final status (succeeded, dead).",
                &["worker", "status"],
            )?,
            attempts: counter_vec(
                "workerhost_task_attempts_total",
                "Attempts run, by worker and outcome (succeeded, failed, fatal, timeout, crashed, protocol_error, spawn_error).",
                &["worker", "outcome"],
            )?,
            duration: HistogramVec::new(
                HistogramOpts::new(
                    "workerhost_task_duration_seconds",
                    "How long each attempt's worker ran, by worker.",
                )
                .buckets(DURATION_BUCKETS.to_vec()),
                &["worker"],
            )?,
            in_flight: IntGaugeVec::new(
                Opts::new(
                    "workerhost_tasks_in_flight",
                    "Tasks running on this host now, by worker.",
                ),
                &["worker"],
            )?,
            task_manager_up: IntGauge::new(
                "workerhost_task_manager_up",
                "1 while the task manager answers, 0 while it is unreachable.",
            )?,
            restarts: counter_vec(
                "workerhost_worker_restarts_total",
                "Pool-mode worker processes replaced (died, timed out, served their task limit).",
                &["worker"],
            )?,
            lost_leases: IntCounter::new(
                "workerhost_lost_leases_total",
                "Outcomes dropped because the task manager would not take them: another host had taken the task over, or it refused for good (e.g. HTTP 404: the task was deleted).",
            )?,
            lost_claims: IntCounter::new(
                "workerhost_lost_claims_total",
                "Same as workerhost_lost_leases_total, under the HTTP task manager's name: results dropped because the claim was gone (HTTP 403, 400 \"not in claimed state\" or 404 on complete).",
            )?,
            unreadable: IntCounter::new(
                "workerhost_task_manager_unreadable_answers_total",
                "Answers of the task manager that were not what they should be (a claim answer that is not a task: HTML, empty, no id); each is logged as an error.",
            )?,
            hook_events: counter_vec(
                "workerhost_observer_events_total",
                "Events handled by the configured observer hooks, by hook and result (delivered, failed, dropped).",
                &["observer", "result"],
            )?,
            schedule_ticks: counter_vec(
                "workerhost_schedule_ticks_total",
                "Schedule ticks this host handled, by schedule and result (enqueued; already_enqueued: another host had; failed).",
                &["schedule", "result"],
            )?,
            hooks,
            queue_tasks: IntGaugeVec::new(
                Opts::new(
                    "workerhost_queue_tasks",
                    "Tasks in the task manager by type and state (queued, scheduled, running, dead), sampled at most every 5 s.",
                ),
                &["type", "state"],
            )?,
            queue_oldest: GaugeVec::new(
                Opts::new(
                    "workerhost_queue_oldest_seconds",
                    "Age of the oldest due queued task by type (0 when none is queued), sampled at most every 5 s.",
                ),
                &["type"],
            )?,
            cpu: CounterVec::new(
                Opts::new(
                    "workerhost_task_cpu_seconds_total",
                    "CPU time used by attempts' worker processes (spawn mode), by worker and mode (user, system).",
                ),
                &["worker", "mode"],
            )?,
            max_rss: HistogramVec::new(
                HistogramOpts::new(
                    "workerhost_task_max_rss_bytes",
                    "Peak resident memory of each attempt's worker process (spawn mode), by worker.",
                )
                .buckets(RSS_BUCKETS.to_vec()),
                &["worker"],
            )?,
        };
        let build = IntGaugeVec::new(
            Opts::new(
                "workerhost_build_info",
                "Always 1; the version of this build is the label.",
            ),
            &["version"],
        )?;
        build.with_label_values(&[env!("CARGO_PKG_VERSION")]).set(1);
        let r = &m.registry;
        r.register(Box::new(m.tasks.clone()))?;
        r.register(Box::new(m.attempts.clone()))?;
        r.register(Box::new(m.duration.clone()))?;
        r.register(Box::new(m.in_flight.clone()))?;
        r.register(Box::new(m.task_manager_up.clone()))?;
        r.register(Box::new(m.restarts.clone()))?;
        r.register(Box::new(m.lost_leases.clone()))?;
        r.register(Box::new(m.lost_claims.clone()))?;
        r.register(Box::new(m.unreadable.clone()))?;
        r.register(Box::new(m.hook_events.clone()))?;
        r.register(Box::new(m.schedule_ticks.clone()))?;
        r.register(Box::new(m.queue_tasks.clone()))?;
        r.register(Box::new(m.queue_oldest.clone()))?;
        r.register(Box::new(m.cpu.clone()))?;
        r.register(Box::new(m.max_rss.clone()))?;
        r.register(Box::new(build))?;
        // The standard `process_*` family (CPU seconds, resident memory, open fds, start time) that
        // dashboards and alerts expect from any exporter; read from /proc at scrape time.
        r.register(Box::new(
            prometheus::process_collector::ProcessCollector::for_self(),
        ))?;
        Ok(m)
    }

    /// Counts one schedule tick this host handled.
    pub fn schedule_tick(&self, schedule: &str, result: crate::schedule::TickResult) {
        self.schedule_ticks
            .with_label_values(&[schedule, result.as_str()])
            .inc();
    }

    /// Sets the queue gauges from a depth sample (types gone from the sample are dropped).
    pub fn set_queue(&self, depth: &[TypeDepth]) {
        self.queue_tasks.reset();
        self.queue_oldest.reset();
        for d in depth {
            let t = d.task_type.as_str();
            for (state, n) in [
                (TaskState::Queued, d.queued),
                (TaskState::Scheduled, d.scheduled),
                (TaskState::Running, d.running),
                (TaskState::Dead, d.dead),
            ] {
                let n = i64::try_from(n).unwrap_or(i64::MAX);
                self.queue_tasks
                    .with_label_values(&[t, state.as_str()])
                    .set(n);
            }
            self.queue_oldest
                .with_label_values(&[t])
                .set(d.oldest_seconds.unwrap_or(0.0));
        }
    }

    /// The text exposition, with the gauges brought up to date from the host's state.
    pub fn render(&self, state: &HostState, registry: &Registry) -> Result<String, String> {
        self.task_manager_up
            .set(i64::from(state.task_manager_up.load(Ordering::Relaxed)));
        catch_up(&self.lost_leases, state.lost_leases.load(Ordering::Relaxed));
        catch_up(&self.lost_claims, state.lost_leases.load(Ordering::Relaxed));
        catch_up(
            &self.unreadable,
            state.unreadable_answers.load(Ordering::Relaxed),
        );
        let mut running: HashMap<String, i64> = HashMap::new();
        for w in registry.workers() {
            let name = w.config.name.as_str();
            running.insert(name.to_string(), 0);
            // Every worker shows up with zeros before its first task.
            for status in [ResultStatus::Succeeded, ResultStatus::Dead] {
                self.tasks.with_label_values(&[name, status.as_str()]);
            }
            let restarts = self.restarts.with_label_values(&[name]);
            catch_up(&restarts, w.stats.restarts.load(Ordering::Relaxed));
        }
        // From the host's own list, so a worker removed by a reload is counted while it drains.
        for t in state.in_flight.running_tasks() {
            *running.entry(t.worker).or_insert(0) += 1;
        }
        self.in_flight.reset();
        for (worker, n) in &running {
            self.in_flight.with_label_values(&[worker.as_str()]).set(*n);
        }
        for (label, c) in &self.hooks {
            for (result, n) in [
                ("delivered", &c.delivered),
                ("failed", &c.failed),
                ("dropped", &c.dropped),
            ] {
                let counter = self
                    .hook_events
                    .with_label_values(&[label.as_str(), result]);
                catch_up(&counter, n.load(Ordering::Relaxed));
            }
        }
        let mut out = Vec::new();
        TextEncoder::new()
            .encode(&self.registry.gather(), &mut out)
            .map_err(|e| e.to_string())?;
        String::from_utf8(out).map_err(|e| e.to_string())
    }
}

/// Raises a counter to a value kept elsewhere (counters only go up).
fn catch_up(c: &IntCounter, value: u64) {
    let have = c.get();
    if value > have {
        c.inc_by(value - have);
    }
}

impl Observer for Metrics {
    fn notify(&self, e: &Event) {
        let worker = e.worker.as_deref().unwrap_or("");
        let attempt = |outcome: Option<OutcomeKind>| {
            if let Some(o) = outcome {
                self.attempts.with_label_values(&[worker, o.as_str()]).inc();
                if let Some(ms) = e.duration_ms {
                    self.duration
                        .with_label_values(&[worker])
                        .observe(ms as f64 / 1000.0);
                }
                if let Some(u) = &e.usage {
                    let cpu = |mode: &str, ms: u64| {
                        self.cpu
                            .with_label_values(&[worker, mode])
                            .inc_by(ms as f64 / 1000.0)
                    };
                    cpu("user", u.cpu_user_ms);
                    cpu("system", u.cpu_system_ms);
                    self.max_rss
                        .with_label_values(&[worker])
                        .observe(u.max_rss_kb as f64 * 1024.0);
                }
            }
        };
        match e.event {
            EventKind::TaskSucceeded => {
                self.tasks
                    .with_label_values(&[worker, ResultStatus::Succeeded.as_str()])
                    .inc();
                attempt(e.outcome.or(Some(OutcomeKind::Succeeded)));
            }
            // Each failed attempt ends in exactly one of these two (a timed-out attempt also fires
            // task_timed_out, which is not counted again). A task_failed without an outcome never ran
            // (delivery limit).
            EventKind::TaskRetrying | EventKind::TaskFailed => attempt(e.outcome),
            EventKind::TaskCancelled => {
                self.tasks
                    .with_label_values(&[worker, ResultStatus::Cancelled.as_str()])
                    .inc();
            }
            EventKind::TaskDeadLettered => {
                self.tasks
                    .with_label_values(&[worker, ResultStatus::Dead.as_str()])
                    .inc();
            }
            _ => {}
        }
    }
}

static GLOBAL: OnceLock<Arc<Metrics>> = OnceLock::new();

/// Makes `metrics` reachable from code that has no handle on it (pool mode); once per process.
pub fn install(metrics: Arc<Metrics>) {
    let _ = GLOBAL.set(metrics);
}

/// The installed metrics, if any.
pub fn global() -> Option<&'static Arc<Metrics>> {
    GLOBAL.get()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn event(kind: EventKind, outcome: Option<OutcomeKind>, ms: u64) -> Event {
        let mut e = Event::new(kind, "h");
        e.worker = Some("w.one".into());
        e.outcome = outcome;
        e.duration_ms = Some(ms);
        e
    }

    #[test]
    fn events_feed_counters_and_the_histogram() {
        let m = Metrics::new(Vec::new()).expect("metrics");
        m.notify(&event(EventKind::TaskStarted, None, 0));
        m.notify(&event(
            EventKind::TaskTimedOut,
            Some(OutcomeKind::Timeout),
            1500,
        ));
        m.notify(&event(
            EventKind::TaskRetrying,
            Some(OutcomeKind::Timeout),
            1500,
        ));
        m.notify(&event(
            EventKind::TaskSucceeded,
            Some(OutcomeKind::Succeeded),
            20,
        ));
        m.notify(&event(EventKind::TaskFailed, Some(OutcomeKind::Fatal), 3));
        m.notify(&event(
            EventKind::TaskDeadLettered,
            Some(OutcomeKind::Fatal),
            3,
        ));
        let get = |v: &IntCounterVec, l: &[&str]| v.with_label_values(l).get();
        assert_eq!(get(&m.tasks, &["w.one", "succeeded"]), 1);
        assert_eq!(get(&m.tasks, &["w.one", "dead"]), 1);
        assert_eq!(get(&m.attempts, &["w.one", "timeout"]), 1);
        assert_eq!(get(&m.attempts, &["w.one", "fatal"]), 1);
        let h = m.duration.with_label_values(&["w.one"]);
        assert_eq!(h.get_sample_count(), 3);
        assert!((h.get_sample_sum() - 1.523).abs() < 1e-9);
    }

    #[test]
    fn buckets_span_milliseconds_to_an_hour() {
        assert!(DURATION_BUCKETS.windows(2).all(|w| w[0] < w[1]));
        assert!(DURATION_BUCKETS[0] <= 0.005);
        assert_eq!(DURATION_BUCKETS.last(), Some(&3600.0));
    }
}
