//! The built-in log observer: one tracing event per task event, with the task's fields as structured
//! fields, so `--log-format json` gives one JSON object a line with task id, worker, attempt, outcome and
//! duration.

use super::{Event, EventKind, Observer};

#[derive(Debug, Default, Clone, Copy)]
pub struct LogObserver;

macro_rules! log_event {
    ($level:ident, $e:expr, $msg:expr) => {
        tracing::$level!(
            target: "workerhost::task",
            event = $e.event.as_str(),
            // Fields that do not apply to an event are left out, not logged empty.
            task_id = $e.task_id.as_deref(),
            task_type = $e.task_type.as_deref(),
            worker = $e.worker.as_deref(),
            attempt = $e.attempt,
            outcome = $e.outcome.map(|o| o.as_str()),
            duration_ms = $e.duration_ms,
            error = $e.error.as_deref(),
            "{}",
            $msg
        )
    };
}

impl Observer for LogObserver {
    fn notify(&self, e: &Event) {
        match e.event {
            EventKind::TaskReceived => log_event!(debug, e, "task received"),
            EventKind::TaskStarted => log_event!(debug, e, "task started"),
            EventKind::TaskSucceeded => log_event!(info, e, "task succeeded"),
            EventKind::TaskRetrying => {
                let msg = match e.retry_at {
                    Some(at) => format!(
                        "task will be retried in {} ms, at {at}, from the task manager",
                        e.delay_ms.unwrap_or(0)
                    ),
                    None => format!("task will be retried in {} ms", e.delay_ms.unwrap_or(0)),
                };
                log_event!(warn, e, msg)
            }
            EventKind::TaskTimedOut => log_event!(warn, e, "task attempt timed out"),
            EventKind::TaskFailed => log_event!(error, e, "task failed"),
            EventKind::TaskDeadLettered => log_event!(warn, e, "task dead-lettered"),
            EventKind::TaskCancelled => log_event!(info, e, "task cancelled"),
            EventKind::WorkerUnhealthy => log_event!(error, e, "worker unhealthy"),
        }
    }
}
