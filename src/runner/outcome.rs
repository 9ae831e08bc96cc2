//! What one attempt came to ([`Outcome`], as in the outcome table of the protocol) and what the host
//! keeps of it ([`Attempt`]).

use crate::config::{CPU_HARD_EXTRA_SECONDS, Limits};
use serde_json::Value;
use std::time::{Duration, Instant};
use workerhost_adapters::text::{ERROR_MAX, cap_owned};
use workerhost_sdk::{ErrorField, LogLine};

/// What one attempt came to, as in the outcome table of the protocol.
#[derive(Debug, Clone, PartialEq)]
pub enum Outcome {
    /// Exit 0 and `success: true`.
    Succeeded { result: Value },
    /// Exit 1, exit 2, or exit 0 with `success: false`. `error` is the worker's error (string or object).
    Failed { error: ErrorField, retriable: bool },
    /// The host's timeout elapsed (`by_host`, with `limit`: `after 4 s (workers[2].timeout)`), or the
    /// worker exited 3.
    Timeout {
        by_host: bool,
        limit: Option<String>,
    },
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
    /// Stopped by a limit of section 9 (SIGXCPU, SIGKILL at the hard CPU limit, or the SDK's
    /// `MemoryError` under `memory_mb`). Retried only with `retry_on_resource_limit: true`.
    ResourceLimit { reason: String },
}

/// Rust std's report of a failed allocation, `memory allocation of 1048576 bytes failed`.
pub(super) fn is_rust_alloc_failure(line: &str) -> bool {
    line.trim()
        .strip_prefix("memory allocation of ")
        .and_then(|r| r.strip_suffix(" bytes failed"))
        .is_some_and(|n| !n.is_empty() && n.bytes().all(|b| b.is_ascii_digit()))
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
    ResourceLimit,
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
            OutcomeKind::ResourceLimit => "resource_limit",
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
            OutcomeKind::Fatal
            | OutcomeKind::ProtocolError
            | OutcomeKind::SpawnError
            | OutcomeKind::ResourceLimit => exit::FATAL,
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
            Outcome::ResourceLimit { .. } => OutcomeKind::ResourceLimit,
        }
    }

    /// The host's timeout for `worker`, with its limit and field in the message.
    pub fn host_timeout(worker: &crate::config::WorkerConfig) -> Outcome {
        Outcome::Timeout {
            by_host: true,
            limit: Some(format!(
                "after {} s ({}.timeout)",
                worker.timeout.as_secs_f64(),
                worker.config_path
            )),
        }
    }

    /// Whether `worker` may run the task again after this outcome (`resource_limit` only with
    /// `retry_on_resource_limit: true`).
    pub fn is_retriable_for(&self, worker: &crate::config::WorkerConfig) -> bool {
        self.is_retriable()
            || (self.kind() == OutcomeKind::ResourceLimit && worker.retry_on_resource_limit)
    }

    /// This outcome seen in the light of the worker's `limits`: a death by SIGXCPU, by SIGKILL once the
    /// CPU time reached the hard limit, an SDK-reported `MemoryError` under `memory_mb`, or (under
    /// `memory_mb`) a SIGABRT whose last stderr line is Rust's own report of a failed allocation
    /// (`memory allocation of N bytes failed`: what std's default handler prints before it aborts, so a
    /// Rust worker needs no `unsafe` allocator to be recognised), is the outcome `resource_limit`.
    /// Anything else is unchanged.
    pub fn under_limits(
        self,
        limits: &Limits,
        usage: Option<&Usage>,
        last_stderr: Option<&str>,
    ) -> Outcome {
        let cpu_ms = usage.map(|u| u.cpu_user_ms + u.cpu_system_ms);
        match &self {
            Outcome::Crashed {
                signal: Some(sig), ..
            } if *sig == libc::SIGXCPU => Outcome::ResourceLimit {
                reason: match limits.cpu_seconds {
                    Some(n) => format!("CPU time limit reached (limits.cpu_seconds: {n}): SIGXCPU"),
                    None => "CPU time limit reached: SIGXCPU".into(),
                },
            },
            Outcome::Crashed {
                signal: Some(sig), ..
            } if *sig == libc::SIGKILL
                && limits
                    .cpu_seconds
                    .zip(cpu_ms)
                    .is_some_and(|(n, ms)| ms + 500 >= n * 1000) =>
            {
                Outcome::ResourceLimit {
                    reason: format!(
                        "CPU time limit reached (limits.cpu_seconds: {}, hard limit {} s): SIGKILL",
                        limits.cpu_seconds.unwrap_or(0),
                        limits.cpu_seconds.unwrap_or(0) + CPU_HARD_EXTRA_SECONDS
                    ),
                }
            }
            Outcome::Crashed {
                signal: Some(sig), ..
            } if *sig == libc::SIGABRT
                && limits.memory_mb.is_some()
                && last_stderr.is_some_and(is_rust_alloc_failure) =>
            {
                Outcome::ResourceLimit {
                    reason: format!(
                        "memory limit reached (limits.memory_mb: {}): {}",
                        limits.memory_mb.unwrap_or(0),
                        last_stderr.unwrap_or_default().trim()
                    ),
                }
            }
            Outcome::Failed {
                error: ErrorField::Detailed(d),
                ..
            } if limits.memory_mb.is_some() && d.error_type.as_deref() == Some("MemoryError") => {
                Outcome::ResourceLimit {
                    reason: format!(
                        "memory limit reached (limits.memory_mb: {}): {}",
                        limits.memory_mb.unwrap_or(0),
                        ErrorField::Detailed(d.clone()).message()
                    ),
                }
            }
            _ => self,
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
            Outcome::Failed { error, .. } => cap_owned(error.message(), ERROR_MAX),
            Outcome::Timeout {
                by_host: true,
                limit: Some(l),
            } => format!("timed out {l}: killed by the host"),
            Outcome::Timeout { by_host: true, .. } => "timed out: killed by the host".into(),
            Outcome::Timeout { by_host: false, .. } => {
                "the worker reported a timeout (exit 3)".into()
            }
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
            Outcome::ResourceLimit { reason } => format!("resource limit: {reason}"),
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
    /// What the worker's process used (spawn mode; `None` where it is not measured).
    pub usage: Option<Usage>,
}

/// An attempt's resource usage, as in the result document (`usage`).
pub type Usage = workerhost_adapters::Usage;

impl From<super::child::Rusage> for Usage {
    fn from(r: super::child::Rusage) -> Usage {
        Usage {
            cpu_user_ms: r.user_us / 1000,
            cpu_system_ms: r.system_us / 1000,
            max_rss_kb: r.max_rss_kb,
        }
    }
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
            usage: None,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rusts_own_allocation_failure_line_is_recognised_and_nothing_else() {
        assert!(is_rust_alloc_failure(
            "memory allocation of 1048576 bytes failed"
        ));
        assert!(is_rust_alloc_failure(
            "memory allocation of 8 bytes failed\n"
        ));
        assert!(!is_rust_alloc_failure(
            "memory allocation of many bytes failed"
        ));
        assert!(!is_rust_alloc_failure("memory allocation of  bytes failed"));
        assert!(!is_rust_alloc_failure(
            "the worker said: memory allocation of 8 bytes failed"
        ));
    }
}
