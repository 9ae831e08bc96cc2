//! The outcome table of the protocol, in one place: how a worker's answer (an exit code with its stdout,
//! a pool process's result line, a remote worker's HTTP answer) becomes an [`Outcome`].
//!
//! Each runner only collects the answer; what it means is decided here, so the three modes cannot drift
//! apart (the "success: false without an error" fallback, the worker's own error winning over stderr).

use super::Outcome;
use super::output::parse_result;
use std::os::unix::process::ExitStatusExt;
use std::process::ExitStatus;
use workerhost_sdk::{ErrorField, LogLine, WorkerResult, exit};

/// The error of a `success: false` document that names none.
const NO_ERROR: &str = "success: false without an error";

/// A parsed result document: `success` decides, `retriable`/`retry_possible` say whether to retry.
pub fn of_document(r: WorkerResult) -> Outcome {
    if r.success {
        return Outcome::Succeeded {
            result: r.result.unwrap_or(serde_json::Value::Null),
        };
    }
    Outcome::Failed {
        retriable: r.is_retriable(),
        error: r
            .error
            .unwrap_or_else(|| ErrorField::Message(NO_ERROR.into())),
    }
}

/// Takes the worker's `logs` out of a parsed document (the host forwards them to its log).
fn take_logs(parsed: &mut Result<WorkerResult, String>) -> Vec<LogLine> {
    parsed
        .as_mut()
        .map(|r| std::mem::take(&mut r.logs))
        .unwrap_or_default()
}

/// A spawned process that exited on its own (`None`: its status could not be read). `last_stderr` is
/// the error when a failing worker printed no result document.
pub fn of_exit(
    status: Option<ExitStatus>,
    stdout: &[u8],
    last_stderr: impl FnOnce() -> Option<String>,
) -> (Outcome, Vec<LogLine>) {
    let Some(status) = status else {
        let crashed = Outcome::Crashed {
            exit_code: None,
            signal: None,
        };
        return (crashed, Vec::new());
    };
    let mut parsed = parse_result(stdout);
    let logs = take_logs(&mut parsed);
    // The worker's own error, else the last stderr line, else a fallback.
    let reported = |parsed: Result<WorkerResult, String>, fallback: &str| -> ErrorField {
        match parsed.ok().and_then(|r| r.error) {
            Some(e) => e,
            None => ErrorField::Message(last_stderr().unwrap_or_else(|| fallback.to_string())),
        }
    };
    let outcome = match status.code() {
        Some(exit::SUCCESS) => match parsed {
            Ok(r) => of_document(r),
            Err(reason) => Outcome::ProtocolError { reason },
        },
        Some(exit::RETRIABLE) => Outcome::Failed {
            error: reported(parsed, "exit code 1"),
            retriable: true,
        },
        Some(exit::FATAL) => Outcome::Failed {
            error: reported(parsed, "exit code 2"),
            retriable: false,
        },
        Some(exit::TIMEOUT) => Outcome::Timeout {
            by_host: false,
            limit: None,
        },
        Some(code) => Outcome::Crashed {
            exit_code: Some(code),
            signal: None,
        },
        None => Outcome::Crashed {
            exit_code: None,
            signal: status.signal(),
        },
    };
    (outcome, logs)
}

/// A pool process's result line for task `serving`. The flag says whether the process may serve again
/// (it answered a well-formed document for the right task).
pub fn of_pool_line(line: &[u8], serving: &str) -> (Outcome, Vec<LogLine>, bool) {
    match parse_result(line) {
        Ok(r) if r.id.as_deref() != Some(serving) => (
            Outcome::ProtocolError {
                reason: format!(
                    "pool worker answered for task {:?} while serving {serving}",
                    r.id
                ),
            },
            Vec::new(),
            false,
        ),
        Ok(mut r) => {
            let logs = std::mem::take(&mut r.logs);
            (of_document(r), logs, true)
        }
        Err(reason) => (Outcome::ProtocolError { reason }, Vec::new(), false),
    }
}

/// A remote worker's answer: 2xx with a result document is the result, 4xx is non-retriable, 5xx is
/// retriable (with the worker's own error when the body holds one).
pub fn of_http(status: reqwest::StatusCode, body: &[u8]) -> Outcome {
    let parsed = parse_result(body);
    if !status.is_success() {
        let error = match parsed.ok().and_then(|r| r.error) {
            Some(e) => e,
            None => ErrorField::Message(format!("HTTP {status}: {}", preview(body))),
        };
        return Outcome::Failed {
            retriable: !status.is_client_error(),
            error,
        };
    }
    match parsed {
        Ok(r) => of_document(r),
        Err(reason) => Outcome::ProtocolError { reason },
    }
}

/// The start of a response body, for an error message.
fn preview(body: &[u8]) -> String {
    let text = String::from_utf8_lossy(&body[..body.len().min(300)]).into_owned();
    text.trim().to_string()
}
