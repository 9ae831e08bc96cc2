//! What one attempt came to ([`Outcome`], as in the outcome table of the protocol) and what the host
//! keeps of it ([`Attempt`]).

use serde_json::Value;
use std::time::{Duration, Instant};
use workerhost_sdk::{ErrorField, LogLine};

/// What one attempt came to, as in the outcome table of the protocol.
#[derive(Debug, Clone, PartialEq)]
pub enum Outcome {
    /// Exit 0 and `success: true`.
    Succeeded { result: Value },
    /// Exit 1, exit 2, or exit 0 with `success: false`. `error` is the worker's error (string or object).
    Failed { error: ErrorField, retriable: bool },
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

/// The label used in metrics, logs, events and dead letters.
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
    /// The label as serialized (`protocol_error`).
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

impl std::fmt::Display for OutcomeKind {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
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

    /// Whether the task may run again.
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
            Outcome::Failed { error, .. } => error.message(),
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
        started: Instant,
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
