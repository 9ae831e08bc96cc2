//! The scheduler (section 7): every host whose config has a schedule enqueues each of its ticks as the task
//! `<name>@<tick, RFC 3339 UTC, seconds, Z>`. Hosts sharing a task manager that refuses duplicate ids
//! (sqlite, redis, postgres) thus run each tick once: the first host's enqueue wins, the others' are
//! refused as duplicates, which is the expected answer, not an error. Ticks that passed while no host ran
//! are not made up: the first tick a host looks at is the first one after it (re)started or reloaded.

use crate::config::ScheduleConfig;
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::watch;
use tokio_util::sync::CancellationToken;
use workerhost_adapters::{AdapterError, Queue, Source, now_ms, rfc3339_secs};

/// The schedules in force; SIGHUP sends a new list.
pub type Schedules = Arc<Vec<ScheduleConfig>>;

/// How one tick's enqueue ended, as the `result` label of `workerhost_schedule_ticks_total`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TickResult {
    /// This host enqueued it.
    Enqueued,
    /// Another host had (duplicate id).
    AlreadyEnqueued,
    /// The task manager did not take it (after retries).
    Failed,
}

impl TickResult {
    pub fn as_str(self) -> &'static str {
        match self {
            TickResult::Enqueued => "enqueued",
            TickResult::AlreadyEnqueued => "already_enqueued",
            TickResult::Failed => "failed",
        }
    }
}

/// Enqueues ticks until `stop`. Returns at once when there are no schedules and none can arrive.
pub async fn run(
    source: Arc<Source>,
    mut schedules: watch::Receiver<Schedules>,
    stop: CancellationToken,
) {
    loop {
        let list = schedules.borrow_and_update().clone();
        if !list.is_empty() {
            tracing::info!(schedules = list.len(), "schedules in force");
        }
        let mut next: Vec<Option<i64>> = list.iter().map(|s| s.next_after(now_ms())).collect();
        loop {
            let earliest = next.iter().flatten().min().copied();
            let wait = match earliest {
                Some(t) => Duration::from_millis(u64::try_from(t - now_ms()).unwrap_or(0)),
                None => Duration::from_secs(3600),
            };
            tokio::select! {
                _ = stop.cancelled() => return,
                changed = schedules.changed() => {
                    if changed.is_err() {
                        // No more reloads can come; go on with the list we have.
                        if list.is_empty() { return; }
                        continue;
                    }
                    break;
                }
                _ = tokio::time::sleep(wait) => {}
            }
            let now = now_ms();
            for (s, due) in list.iter().zip(next.iter_mut()) {
                let Some(tick) = due.filter(|t| *t <= now) else {
                    continue;
                };
                enqueue_tick(&source, s, tick, &stop).await;
                // Never a tick before now: one missed while this host was busy or suspended is not made up.
                *due = s.next_after(tick.max(now_ms()));
            }
        }
    }
}

/// Enqueues one tick, retrying a task manager that is briefly unreachable (at most about 3 s).
async fn enqueue_tick(source: &Source, s: &ScheduleConfig, tick: i64, stop: &CancellationToken) {
    let env = s.envelope(tick);
    let mut backoff = Duration::from_millis(250);
    let result = loop {
        match source.enqueue(&env).await {
            Ok(_) => break TickResult::Enqueued,
            Err(AdapterError::Duplicate { .. }) => break TickResult::AlreadyEnqueued,
            Err(e @ (AdapterError::Invalid(_) | AdapterError::LeaseLost { .. })) => {
                tracing::error!(schedule = %s.name, task_id = %env.id, error = %e, "schedule tick refused by the task manager");
                break TickResult::Failed;
            }
            Err(e) if backoff > Duration::from_secs(2) => {
                tracing::error!(schedule = %s.name, task_id = %env.id, error = %e, "schedule tick not enqueued: the task manager did not answer; this tick is skipped");
                break TickResult::Failed;
            }
            Err(e) => {
                tracing::warn!(schedule = %s.name, task_id = %env.id, error = %e, "cannot enqueue a schedule tick yet; retrying");
                tokio::select! {
                    _ = stop.cancelled() => return,
                    _ = tokio::time::sleep(backoff) => {}
                }
                backoff *= 2;
            }
        }
    };
    match result {
        TickResult::Enqueued => {
            tracing::info!(schedule = %s.name, task_id = %env.id, tick = %rfc3339_secs(tick), "schedule tick enqueued")
        }
        TickResult::AlreadyEnqueued => {
            tracing::debug!(schedule = %s.name, task_id = %env.id, "schedule tick already enqueued by another host")
        }
        TickResult::Failed => {}
    }
    if let Some(m) = crate::metrics::global() {
        m.schedule_tick(&s.name, result);
    }
}
