//! How one attempt runs. A runner starts the worker, feeds it the task document, collects its answer and
//! classifies what happened into an [`Outcome`]. It never retries: that is the proxy's job.

mod output;
mod pool;
mod remote;
mod spawn;

use serde_json::Value;
use std::time::Duration;
use workerhost_sdk::LogLine;

pub use pool::Pool;
pub use remote::RemoteRunner;
pub use spawn::{SpawnRunner, command_for};

/// A worker's progress report: a stderr line `{"progress": 40, "message": "..."}`.
#[derive(Debug, Clone, PartialEq)]
pub struct Progress {
    pub task_id: String,
    pub percent: f64,
    pub message: Option<String>,
}

/// Where progress lines go. Never blocks a worker's stderr: when the queue is full, the report is
/// dropped (a later one supersedes it anyway).
#[derive(Debug, Clone, Default)]
pub struct ProgressSink(Option<tokio::sync::mpsc::Sender<Progress>>);

impl ProgressSink {
    pub fn new(tx: tokio::sync::mpsc::Sender<Progress>) -> ProgressSink {
        ProgressSink(Some(tx))
    }

    /// Whether `line` is a progress line; if so it is forwarded (when a sink is connected).
    pub fn offer(&self, task_id: &str, line: &str) -> bool {
        let t = line.trim();
        if !t.starts_with('{') || !t.contains("\"progress\"") {
            return false;
        }
        let Ok(Value::Object(m)) = serde_json::from_str::<Value>(t) else {
            return false;
        };
        let Some(percent) = m.get("progress").and_then(Value::as_f64) else {
            return false;
        };
        if let Some(tx) = &self.0 {
            let _ = tx.try_send(Progress {
                task_id: task_id.to_string(),
                percent,
                message: m.get("message").and_then(Value::as_str).map(str::to_string),
            });
        }
        true
    }
}

/// What one attempt came to, as in the outcome table of the protocol.
#[derive(Debug, Clone, PartialEq)]
pub enum Outcome {
    /// Exit 0 and `success: true`.
    Succeeded { result: Value },
    /// Exit 1, exit 2, or exit 0 with `success: false`. `error` is the worker's error (string or object).
    Failed { error: Value, retriable: bool },
    /// The host's timeout elapsed (`by_host`), or the worker exited 3.
    Timeout { by_host: bool },
    /// Killed by a signal, or an exit code outside the protocol.
    Crashed {
        exit_code: Option<i32>,
        signal: Option<i32>,
    },
    /// Exit 0 without a JSON result, or stdout over `max_output_bytes`.
    ProtocolError { reason: String },
    /// The interpreter or binary could not be started.
    SpawnError { reason: String },
    /// The host is shutting down and killed the attempt; the task goes back to the queue.
    Interrupted,
}

/// The label used in metrics, logs and events.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, serde::Serialize)]
#[serde(rename_all = "snake_case")]
pub enum OutcomeKind {
    Succeeded,
    Failed,
    Fatal,
    Timeout,
    Crashed,
    ProtocolError,
    SpawnError,
    Interrupted,
}

impl OutcomeKind {
    pub fn as_str(self) -> &'static str {
        match self {
            OutcomeKind::Succeeded => "succeeded",
            OutcomeKind::Failed => "failed",
            OutcomeKind::Fatal => "fatal",
            OutcomeKind::Timeout => "timeout",
            OutcomeKind::Crashed => "crashed",
            OutcomeKind::ProtocolError => "protocol_error",
            OutcomeKind::SpawnError => "spawn_error",
            OutcomeKind::Interrupted => "interrupted",
        }
    }

    /// The protocol exit code this outcome stands for (`workerhost exec` exits with it).
    pub fn exit_code(self) -> i32 {
        use workerhost_sdk::exit;
        match self {
            OutcomeKind::Succeeded => exit::SUCCESS,
            OutcomeKind::Failed | OutcomeKind::Crashed | OutcomeKind::Interrupted => {
                exit::RETRIABLE
            }
            OutcomeKind::Fatal | OutcomeKind::ProtocolError | OutcomeKind::SpawnError => {
                exit::FATAL
            }
            OutcomeKind::Timeout => exit::TIMEOUT,
        }
    }
}

impl Outcome {
    pub fn kind(&self) -> OutcomeKind {
        match self {
            Outcome::Succeeded { .. } => OutcomeKind::Succeeded,
            Outcome::Failed {
                retriable: true, ..
            } => OutcomeKind::Failed,
            Outcome::Failed {
                retriable: false, ..
            } => OutcomeKind::Fatal,
            Outcome::Timeout { .. } => OutcomeKind::Timeout,
            Outcome::Crashed { .. } => OutcomeKind::Crashed,
            Outcome::ProtocolError { .. } => OutcomeKind::ProtocolError,
            Outcome::SpawnError { .. } => OutcomeKind::SpawnError,
            Outcome::Interrupted => OutcomeKind::Interrupted,
        }
    }

    /// Whether the proxy may run the task again.
    pub fn is_retriable(&self) -> bool {
        matches!(
            self.kind(),
            OutcomeKind::Failed | OutcomeKind::Timeout | OutcomeKind::Crashed
        )
    }

    /// A one-line description of a failure, for logs, events and dead letters.
    pub fn message(&self) -> String {
        match self {
            Outcome::Succeeded { .. } => "succeeded".into(),
            Outcome::Failed { error, .. } => error_message(error),
            Outcome::Timeout { by_host: true } => "timed out: killed by the host".into(),
            Outcome::Timeout { by_host: false } => "the worker reported a timeout (exit 3)".into(),
            Outcome::Crashed {
                signal: Some(s), ..
            } => format!("crashed: killed by signal {s}"),
            Outcome::Crashed {
                exit_code: Some(c), ..
            } => format!("crashed: exit code {c}"),
            Outcome::Crashed { .. } => "crashed".into(),
            Outcome::ProtocolError { reason } => format!("protocol error: {reason}"),
            Outcome::SpawnError { reason } => format!("spawn error: {reason}"),
            Outcome::Interrupted => "interrupted by host shutdown".into(),
        }
    }
}

/// The readable message of a worker's `error` (a string, or an object with `type` and `message`).
pub fn error_message(error: &Value) -> String {
    match serde_json::from_value::<workerhost_sdk::ErrorField>(error.clone()) {
        Ok(e) => e.message(),
        Err(_) => error.to_string(),
    }
}

/// One attempt, with what the host keeps of it.
#[derive(Debug, Clone)]
pub struct Attempt {
    pub outcome: Outcome,
    /// The last few KiB of stderr, for the dead letter.
    pub stderr_tail: String,
    /// `logs` the worker returned in its result document.
    pub logs: Vec<LogLine>,
    pub duration: Duration,
    pub exit_code: Option<i32>,
}

impl Attempt {
    /// An attempt that started at `started` and ends now.
    pub fn ended(
        outcome: Outcome,
        started: std::time::Instant,
        stderr_tail: String,
        exit_code: Option<i32>,
    ) -> Attempt {
        Attempt {
            outcome,
            stderr_tail,
            logs: Vec::new(),
            duration: started.elapsed(),
            exit_code,
        }
    }
}
