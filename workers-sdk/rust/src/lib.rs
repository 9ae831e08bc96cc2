//! The workerhost worker protocol, shared by the host and by workers written in Rust.
//!
//! The host depends on this crate for the wire types, so host and SDK can never disagree on what a task
//! document or a result document looks like.
//!
//! A worker is a process that reads one [`TaskDocument`] as JSON on stdin, writes one [`WorkerResult`] as
//! JSON on stdout (debug output goes to stderr) and exits with one of the [`exit`] codes. [`run`] does all of
//! that around a plain function:
//!
//! ```no_run
//! use workerhost_sdk::{run, WorkerError};
//! run(|task| {
//!     let name = task.params.get("name").and_then(|v| v.as_str())
//!         .ok_or_else(|| WorkerError::fatal("params.name is required"))?;
//!     Ok(serde_json::json!({ "greeting": format!("hello {name}") }))
//! });
//! ```

use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};
use std::io::{BufRead, Read, Write};

/// Exit codes of the protocol.
pub mod exit {
    /// The task succeeded (and stdout holds `{"success": true, ...}`).
    pub const SUCCESS: i32 = 0;
    /// A failure worth retrying.
    pub const RETRIABLE: i32 = 1;
    /// A failure that will fail again: never retried.
    pub const FATAL: i32 = 2;
    /// The worker gave up on its own deadline; retried like a host timeout.
    pub const TIMEOUT: i32 = 3;
    /// Interrupted (SIGINT); the host counts it as a crash.
    pub const INTERRUPTED: i32 = 130;
}

/// The document the host writes to a worker's stdin.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct TaskDocument {
    pub id: String,
    #[serde(rename = "type")]
    pub task_type: String,
    #[serde(default)]
    pub params: Map<String, Value>,
    #[serde(default = "one")]
    pub attempt: u32,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub correlation_id: Option<String>,
    /// The W3C trace context of this attempt (its span, when the host exports traces): a worker that
    /// traces makes its spans children of it. Spawned workers also find it in `TRACEPARENT`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub traceparent: Option<String>,
}

fn one() -> u32 {
    1
}

/// The document a worker writes to stdout.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct WorkerResult {
    pub success: bool,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub result: Option<Value>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub error: Option<ErrorField>,
    /// Log lines the host forwards to its own log with the task id.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub logs: Vec<LogLine>,
    /// `false` makes a failure non-retriable (same meaning as `error.retry_possible: false`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub retriable: Option<bool>,
    /// Pool mode: the id of the task this line answers.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub id: Option<String>,
}

impl WorkerResult {
    pub fn ok(result: Value) -> Self {
        WorkerResult {
            success: true,
            result: Some(result),
            error: None,
            logs: Vec::new(),
            retriable: None,
            id: None,
        }
    }

    pub fn failed(error: ErrorField, retriable: bool) -> Self {
        WorkerResult {
            success: false,
            result: None,
            error: Some(error),
            logs: Vec::new(),
            retriable: if retriable { None } else { Some(false) },
            id: None,
        }
    }

    /// Whether a failure may be retried: both `retriable: false` and `error.retry_possible: false` say no.
    pub fn is_retriable(&self) -> bool {
        if self.retriable == Some(false) {
            return false;
        }
        !matches!(
            &self.error,
            Some(ErrorField::Detailed(d)) if d.retry_possible == Some(false)
        )
    }
}

/// `error` is either a plain string or an object with details.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(untagged)]
pub enum ErrorField {
    Message(String),
    Detailed(ErrorDetail),
}

impl ErrorField {
    /// A one-line human readable message.
    pub fn message(&self) -> String {
        match self {
            ErrorField::Message(m) => m.clone(),
            ErrorField::Detailed(d) => match (&d.error_type, &d.message) {
                (Some(t), Some(m)) => format!("{t}: {m}"),
                (None, Some(m)) => m.clone(),
                (Some(t), None) => t.clone(),
                (None, None) => Value::Object(d.extra.clone()).to_string(),
            },
        }
    }
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, Default)]
pub struct ErrorDetail {
    #[serde(rename = "type", default, skip_serializing_if = "Option::is_none")]
    pub error_type: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub message: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub traceback: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub retry_possible: Option<bool>,
    #[serde(flatten)]
    pub extra: Map<String, Value>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct LogLine {
    #[serde(default = "info")]
    pub level: String,
    pub message: String,
}

fn info() -> String {
    "info".to_string()
}

/// A failure raised by a worker function; decides the exit code.
#[derive(Debug, Clone, PartialEq)]
pub enum WorkerError {
    /// Exit 1: the host retries.
    Retriable(String),
    /// Exit 2: the host dead-letters at once.
    Fatal(String),
}

impl WorkerError {
    pub fn retriable(msg: impl Into<String>) -> Self {
        WorkerError::Retriable(msg.into())
    }
    pub fn fatal(msg: impl Into<String>) -> Self {
        WorkerError::Fatal(msg.into())
    }
}

/// Runs a worker around `handler` and never returns.
///
/// Spawn mode (the default, `WORKERHOST_MODE` unset or `spawn`): reads one task document from stdin,
/// writes one result document to stdout and exits with the protocol's code. Pool mode
/// (`WORKERHOST_MODE=pool`, set by the host): reads one task per line and answers one result per line,
/// carrying the task's `id`, until stdin closes. A panic in the handler is a retriable failure.
pub fn run<F>(handler: F) -> !
where
    F: Fn(&TaskDocument) -> Result<Value, WorkerError>,
{
    if std::env::var("WORKERHOST_MODE").as_deref() == Ok("pool") {
        run_pool(&handler);
        std::process::exit(exit::SUCCESS)
    }
    let mut input = String::new();
    let (doc, code) = match std::io::stdin().read_to_string(&mut input) {
        Err(e) => (
            WorkerResult::failed(
                ErrorField::Message(format!("cannot read stdin: {e}")),
                false,
            ),
            exit::FATAL,
        ),
        Ok(_) => match serde_json::from_str::<TaskDocument>(&input) {
            Err(e) => (
                WorkerResult::failed(
                    ErrorField::Message(format!("stdin is not a task document: {e}")),
                    false,
                ),
                exit::FATAL,
            ),
            Ok(task) => outcome_of(call(&handler, &task)),
        },
    };
    let mut out = std::io::stdout().lock();
    if let Err(e) = write_line(&mut out, &doc) {
        eprintln!("workerhost-sdk: cannot write the result: {e}");
        std::process::exit(exit::RETRIABLE);
    }
    std::process::exit(code)
}

/// Pool mode on stdin and stdout.
pub fn run_pool<F>(handler: &F)
where
    F: Fn(&TaskDocument) -> Result<Value, WorkerError>,
{
    serve_lines(std::io::stdin().lock(), std::io::stdout(), handler);
}

/// Pool mode: one task per input line, one result per output line (carrying the task's `id`), until
/// the input ends. A line that is not a task gets a non-retriable answer with `"id": null`.
pub fn serve_lines<F>(input: impl BufRead, mut out: impl Write, handler: &F)
where
    F: Fn(&TaskDocument) -> Result<Value, WorkerError>,
{
    for line in input.lines() {
        let Ok(line) = line else { return };
        if line.trim().is_empty() {
            continue;
        }
        let doc = match serde_json::from_str::<TaskDocument>(&line) {
            Ok(task) => {
                let mut doc = outcome_of(call(handler, &task)).0;
                doc.id = Some(task.id.clone());
                doc
            }
            Err(e) => WorkerResult::failed(
                ErrorField::Message(format!("line is not a task document: {e}")),
                false,
            ),
        };
        if write_line(&mut out, &doc).is_err() {
            return;
        }
    }
}

fn call<F>(handler: &F, task: &TaskDocument) -> Result<Value, WorkerError>
where
    F: Fn(&TaskDocument) -> Result<Value, WorkerError>,
{
    match std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| handler(task))) {
        Ok(r) => r,
        Err(p) => {
            let msg = p
                .downcast_ref::<&str>()
                .map(|s| s.to_string())
                .or_else(|| p.downcast_ref::<String>().cloned())
                .unwrap_or_else(|| "panic".into());
            Err(WorkerError::Retriable(format!("worker panicked: {msg}")))
        }
    }
}

fn write_line(out: &mut impl Write, doc: &WorkerResult) -> std::io::Result<()> {
    serde_json::to_writer(&mut *out, doc).map_err(std::io::Error::other)?;
    out.write_all(b"\n")?;
    out.flush()
}

/// Maps a handler's return value to the result document and exit code.
pub fn outcome_of(result: Result<Value, WorkerError>) -> (WorkerResult, i32) {
    match result {
        Ok(v) => (WorkerResult::ok(v), exit::SUCCESS),
        Err(WorkerError::Retriable(m)) => (
            WorkerResult::failed(ErrorField::Message(m), true),
            exit::RETRIABLE,
        ),
        Err(WorkerError::Fatal(m)) => (
            WorkerResult::failed(ErrorField::Message(m), false),
            exit::FATAL,
        ),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn task_document_round_trips_with_the_spec_example() {
        let text = r#"{"id": "task-123", "type": "PrismQ.YouTube.VideoScrape", "params": {"video_id": "dQw4w9WgXcQ"},
 "attempt": 1, "correlation_id": "c0ffee"}"#;
        let doc: TaskDocument = serde_json::from_str(text).expect("parses");
        assert_eq!(doc.task_type, "PrismQ.YouTube.VideoScrape");
        assert_eq!(doc.correlation_id.as_deref(), Some("c0ffee"));
        let back = serde_json::to_value(&doc).expect("serializes");
        assert_eq!(back["type"], "PrismQ.YouTube.VideoScrape");
    }

    #[test]
    fn retry_possible_false_and_retriable_false_mean_the_same() {
        let a: WorkerResult = serde_json::from_str(
            r#"{"success": false, "error": {"type": "QuotaError", "message": "quota exceeded", "retry_possible": false}}"#,
        )
        .expect("parses");
        assert!(!a.is_retriable());
        assert_eq!(
            a.error.as_ref().map(|e| e.message()).as_deref(),
            Some("QuotaError: quota exceeded")
        );
        let b: WorkerResult =
            serde_json::from_str(r#"{"success": false, "error": "x", "retriable": false}"#)
                .expect("parses");
        assert!(!b.is_retriable());
        let c: WorkerResult =
            serde_json::from_str(r#"{"success": false, "error": "quota exceeded"}"#)
                .expect("parses");
        assert!(c.is_retriable());
    }

    #[test]
    fn pool_mode_answers_each_line_with_its_id_and_survives_panics() {
        let input = b"{\"id\":\"a\",\"type\":\"T\",\"params\":{\"n\":1}}\nnot json\n\n{\"id\":\"b\",\"type\":\"T\",\"params\":{}}\n{\"id\":\"c\",\"type\":\"T\",\"params\":{\"fatal\":true}}\n";
        let mut out = Vec::new();
        serve_lines(&input[..], &mut out, &|t: &TaskDocument| {
            if t.params.contains_key("fatal") {
                return Err(WorkerError::fatal("no"));
            }
            match t.params.get("n") {
                Some(n) => Ok(n.clone()),
                None => panic!("boom"),
            }
        });
        let lines: Vec<WorkerResult> = String::from_utf8_lossy(&out)
            .lines()
            .map(|l| serde_json::from_str(l).expect("a result per line"))
            .collect();
        assert_eq!(lines.len(), 4);
        assert_eq!(lines[0].id.as_deref(), Some("a"));
        assert_eq!(lines[0].result, Some(serde_json::json!(1)));
        assert_eq!(lines[1].id, None);
        assert!(!lines[1].is_retriable());
        assert_eq!(lines[2].id.as_deref(), Some("b"));
        assert!(
            !lines[2].success && lines[2].is_retriable(),
            "a panic is retriable"
        );
        assert!(
            lines[2]
                .error
                .as_ref()
                .is_some_and(|e| e.message().contains("boom"))
        );
        assert_eq!(lines[3].id.as_deref(), Some("c"));
        assert!(!lines[3].is_retriable());
    }

    #[test]
    fn handler_errors_map_to_exit_codes() {
        assert_eq!(outcome_of(Ok(Value::Null)).1, exit::SUCCESS);
        assert_eq!(
            outcome_of(Err(WorkerError::retriable("x"))).1,
            exit::RETRIABLE
        );
        let (doc, code) = outcome_of(Err(WorkerError::fatal("bad")));
        assert_eq!(code, exit::FATAL);
        assert!(!doc.is_retriable());
    }
}
