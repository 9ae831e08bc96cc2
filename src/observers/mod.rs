//! Observer hooks: everything that happens to a task is an [`Event`], fanned out to every observer.
//!
//! An observer must return at once: [`Observer::notify`] is called on the task's own path, so anything
//! slow (a webhook, a command) queues the event and does its work elsewhere. A failing observer never
//! delays or fails a task.

pub mod command;
pub mod hooks;
mod log;
pub mod status;
pub mod webhook;

pub use hooks::Hooks;
pub use log::LogObserver;
pub use status::StatusBoard;

use serde::Serialize;
use std::sync::Arc;
use workerhost_adapters::Stamp;

/// The kinds of event, named as in the spec (and, through the derive, in the config's JSON Schema).
#[derive(
    Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, serde::Deserialize, schemars::JsonSchema,
)]
#[serde(rename_all = "snake_case")]
pub enum EventKind {
    TaskReceived,
    TaskStarted,
    TaskRetrying,
    TaskSucceeded,
    TaskFailed,
    TaskTimedOut,
    TaskDeadLettered,
    TaskCancelled,
    WorkerUnhealthy,
}

impl EventKind {
    pub const ALL: [EventKind; 9] = [
        EventKind::TaskReceived,
        EventKind::TaskStarted,
        EventKind::TaskRetrying,
        EventKind::TaskSucceeded,
        EventKind::TaskFailed,
        EventKind::TaskTimedOut,
        EventKind::TaskDeadLettered,
        EventKind::TaskCancelled,
        EventKind::WorkerUnhealthy,
    ];

    /// The kind named `name` (`task_failed`), as in config `events:` lists.
    pub fn parse(name: &str) -> Option<EventKind> {
        EventKind::ALL.into_iter().find(|k| k.as_str() == name)
    }

    pub fn as_str(self) -> &'static str {
        match self {
            EventKind::TaskReceived => "task_received",
            EventKind::TaskStarted => "task_started",
            EventKind::TaskRetrying => "task_retrying",
            EventKind::TaskSucceeded => "task_succeeded",
            EventKind::TaskFailed => "task_failed",
            EventKind::TaskTimedOut => "task_timed_out",
            EventKind::TaskDeadLettered => "task_dead_lettered",
            EventKind::TaskCancelled => "task_cancelled",
            EventKind::WorkerUnhealthy => "worker_unhealthy",
        }
    }
}

/// The event document: fields that do not apply are absent.
#[derive(Debug, Clone, Serialize)]
pub struct Event {
    pub event: EventKind,
    /// When it happened; RFC 3339 UTC when shown or serialized.
    pub at: Stamp,
    pub host: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub task_id: Option<String>,
    #[serde(rename = "type", skip_serializing_if = "Option::is_none")]
    pub task_type: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub worker: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub attempt: Option<u32>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub outcome: Option<crate::runner::OutcomeKind>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub duration_ms: Option<u64>,
    /// Retry delay, on `task_retrying`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub delay_ms: Option<u64>,
    /// When the retry is due, on a `task_retrying` whose wait is in the task manager (section 7).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub retry_at: Option<Stamp>,
    /// What the attempt's process used (section 9), on the events that end an attempt.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub usage: Option<workerhost_adapters::Usage>,
}

impl Event {
    pub fn new(event: EventKind, host: &str) -> Event {
        Event {
            event,
            at: Stamp::now(),
            host: host.to_string(),
            task_id: None,
            task_type: None,
            worker: None,
            attempt: None,
            outcome: None,
            error: None,
            duration_ms: None,
            delay_ms: None,
            retry_at: None,
            usage: None,
        }
    }
}

/// Something that wants to know what happens.
pub trait Observer: Send + Sync {
    /// Must not block: queue the event and return.
    fn notify(&self, event: &Event);
}

/// Every configured observer.
#[derive(Clone, Default)]
pub struct Observers(Vec<Arc<dyn Observer>>);

impl Observers {
    pub fn new(list: Vec<Arc<dyn Observer>>) -> Observers {
        Observers(list)
    }

    pub fn emit(&self, event: Event) {
        for o in &self.0 {
            o.notify(&event);
        }
    }
}
