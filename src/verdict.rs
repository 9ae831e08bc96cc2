//! Where a delivery ends, decided once: a [`Verdict`] with what is known of the delivery ([`Judged`]).
//! Both the proxy (after a run) and the host's screening (before one: malformed, unknown type, delivery
//! limit) make one, and only this module turns it into the result document and the terminal events, so
//! every dead task looks the same to hooks, metrics and whoever reads the dead letter.
//! `host::settle` then records it.

use crate::observers::{Event, EventKind};
use crate::runner::OutcomeKind;
use serde_json::{Value, json};
use workerhost_adapters::{Envelope, ResultDocument, ResultStatus, Stamp, Usage, rfc3339_ms};

/// Why a task is dead: the outcome of its last attempt, or why it never ran.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DeadReason {
    /// The message is not a task envelope.
    Malformed,
    /// No worker of this host handles its type.
    UnknownType,
    /// Delivered more than `max_deliveries` times without an outcome.
    DeliveryLimit,
    /// Its last attempt ended so (not retriable, or the retries are used up).
    Outcome(OutcomeKind),
}

impl DeadReason {
    /// The `outcome` of the dead letter's `error`.
    pub fn as_str(self) -> &'static str {
        match self {
            DeadReason::Malformed => "malformed",
            DeadReason::UnknownType => "unknown_type",
            DeadReason::DeliveryLimit => "delivery_limit",
            DeadReason::Outcome(o) => o.as_str(),
        }
    }
}

/// What becomes of one delivery.
#[derive(Debug, Clone)]
pub enum Verdict {
    Succeeded {
        result: Value,
    },
    /// The next attempt waits in the task manager until `at` (a retry longer than
    /// `retry.in_host_max_seconds`): this attempt is settled, slot and lease are free meanwhile.
    RetryAt {
        at: Stamp,
        delay_ms: u64,
        message: String,
    },
    /// Dead-lettered; `error` is the dead letter's `error` object (message, outcome, and what else is
    /// known: exit code, the worker's own error, the tail of stderr).
    Dead {
        reason: DeadReason,
        message: String,
        error: Value,
    },
    /// Stopped by a cancel while it ran.
    Cancelled,
    /// The host is stopping: hand the task back unfinished.
    Released,
}

/// The last attempt of a delivery, as the events that end it report it.
#[derive(Debug, Clone)]
pub struct LastAttempt {
    pub outcome: OutcomeKind,
    pub duration_ms: u64,
    pub usage: Option<Usage>,
}

/// A verdict with what is known of its delivery.
#[derive(Debug, Clone)]
pub struct Judged {
    pub verdict: Verdict,
    pub task_id: String,
    /// Empty for a malformed message.
    pub task_type: String,
    pub correlation_id: Option<String>,
    pub worker: Option<String>,
    pub host: String,
    /// Attempts made (the number of the last one), counting earlier deliveries.
    pub attempts: u32,
    pub started_ms: i64,
    pub finished_ms: i64,
    /// `None`: it never ran.
    pub last: Option<LastAttempt>,
}

impl Judged {
    /// A delivery judged before it ran (screening): nothing started, nothing took time.
    pub fn unrun(
        verdict: Verdict,
        task_id: &str,
        task: Option<&Envelope>,
        worker: Option<&str>,
        host: &str,
        attempts: u32,
    ) -> Judged {
        let now = workerhost_adapters::now_ms();
        Judged {
            verdict,
            task_id: task_id.to_string(),
            task_type: task.map(|t| t.task_type.clone()).unwrap_or_default(),
            correlation_id: task.and_then(|t| t.correlation_id.clone()),
            worker: worker.map(str::to_string),
            host: host.to_string(),
            attempts,
            started_ms: now,
            finished_ms: now,
            last: None,
        }
    }

    /// A dead verdict for a delivery that never ran.
    pub fn dead_unrun(
        reason: DeadReason,
        message: String,
        extra: Option<(&str, Value)>,
    ) -> Verdict {
        let mut error = json!({"message": message, "outcome": reason.as_str()});
        if let Some((k, v)) = extra {
            error[k] = v;
        }
        Verdict::Dead {
            reason,
            message,
            error,
        }
    }

    /// The host is stopping: the task goes back unfinished.
    pub fn released(mut self) -> Judged {
        self.verdict = Verdict::Released;
        self
    }

    /// The process was stopped by a cancel: the verdict becomes `Cancelled` whatever the attempt said.
    pub fn cancelled(mut self) -> Judged {
        self.verdict = Verdict::Cancelled;
        self
    }

    /// The result document to record, for the verdicts that end the task.
    pub fn document(&self) -> Option<ResultDocument> {
        let (status, result, error) = match &self.verdict {
            Verdict::Succeeded { result } => (ResultStatus::Succeeded, Some(result.clone()), None),
            Verdict::Dead { error, .. } => (ResultStatus::Dead, None, Some(error.clone())),
            Verdict::Cancelled => (
                ResultStatus::Cancelled,
                None,
                Some(json!({"message": "cancelled while running", "outcome": "cancelled"})),
            ),
            Verdict::RetryAt { .. } | Verdict::Released => return None,
        };
        Some(ResultDocument {
            id: self.task_id.clone(),
            task_type: self.task_type.clone(),
            status,
            result,
            error,
            attempts: self.attempts,
            worker: self.worker.clone(),
            host: self.host.clone(),
            started_at: rfc3339_ms(self.started_ms),
            finished_at: rfc3339_ms(self.finished_ms),
            duration_ms: u64::try_from(self.finished_ms - self.started_ms).unwrap_or(0),
            correlation_id: self.correlation_id.clone(),
            usage: self.last.as_ref().and_then(|l| l.usage),
        })
    }

    /// The task to put back for a [`Verdict::RetryAt`]: due at its time, carrying the attempts made so
    /// far and the last error.
    pub fn retry_envelope(&self, task: &Envelope) -> Option<Envelope> {
        let Verdict::RetryAt { at, message, .. } = &self.verdict else {
            return None;
        };
        Some(Envelope {
            run_at: Some(*at),
            attempts: self.attempts,
            last_error: Some(message.clone()),
            ..task.clone()
        })
    }

    fn event(&self, kind: EventKind) -> Event {
        let mut e = Event::new(kind, &self.host);
        e.task_id = Some(self.task_id.clone());
        e.task_type = (!self.task_type.is_empty()).then(|| self.task_type.clone());
        e.worker = self.worker.clone();
        if let Some(l) = &self.last {
            e.attempt = Some(self.attempts);
            e.outcome = Some(l.outcome);
            e.duration_ms = Some(l.duration_ms);
            e.usage = l.usage;
        }
        e
    }

    /// The events that end the delivery, emitted before its outcome is recorded. A dead task's
    /// `task_dead_lettered` is not among them: see [`Judged::dead_lettered`].
    pub fn events(&self) -> Vec<Event> {
        match &self.verdict {
            Verdict::Succeeded { .. } => vec![self.event(EventKind::TaskSucceeded)],
            Verdict::RetryAt {
                at,
                delay_ms,
                message,
            } => {
                let mut e = self.event(EventKind::TaskRetrying);
                e.error = Some(message.clone());
                e.delay_ms = Some(*delay_ms);
                e.retry_at = Some(*at);
                vec![e]
            }
            Verdict::Dead { message, .. } => {
                let mut e = self.event(EventKind::TaskFailed);
                e.error = Some(message.clone());
                vec![e]
            }
            Verdict::Cancelled => {
                let mut e = self.event(EventKind::TaskCancelled);
                e.attempt = Some(self.attempts);
                vec![e]
            }
            Verdict::Released => Vec::new(),
        }
    }

    /// `task_dead_lettered`, once the task manager has recorded the task dead (not when it puts a
    /// failure back to run again itself, nor when the outcome could not be recorded here).
    pub fn dead_lettered(&self) -> Option<Event> {
        let Verdict::Dead { message, .. } = &self.verdict else {
            return None;
        };
        let mut e = self.event(EventKind::TaskDeadLettered);
        e.error = Some(message.clone());
        Some(e)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn judged(verdict: Verdict, last: Option<LastAttempt>) -> Judged {
        Judged {
            verdict,
            task_id: "t1".into(),
            task_type: "T".into(),
            correlation_id: Some("c".into()),
            worker: Some("w".into()),
            host: "h".into(),
            attempts: 3,
            started_ms: 1_000,
            finished_ms: 1_250,
            last,
        }
    }

    #[test]
    fn a_dead_task_is_one_document_and_failed_then_dead_lettered() {
        let last = LastAttempt {
            outcome: OutcomeKind::Fatal,
            duration_ms: 40,
            usage: None,
        };
        let v = Verdict::Dead {
            reason: DeadReason::Outcome(OutcomeKind::Fatal),
            message: "bad input".into(),
            error: json!({"message": "bad input", "outcome": "fatal"}),
        };
        let j = judged(v, Some(last));
        let doc = j.document().expect("a dead task has a document");
        assert_eq!(doc.status, ResultStatus::Dead);
        assert_eq!(doc.attempts, 3);
        assert_eq!(doc.duration_ms, 250);
        assert_eq!(
            doc.error.as_ref().map(|e| e["outcome"].clone()),
            Some(json!("fatal"))
        );
        let kinds: Vec<EventKind> = j.events().iter().map(|e| e.event).collect();
        assert_eq!(kinds, vec![EventKind::TaskFailed]);
        let dead = j.dead_lettered().expect("a dead verdict is dead-lettered");
        assert_eq!(dead.outcome, Some(OutcomeKind::Fatal));
        assert_eq!(dead.attempt, Some(3));
    }

    #[test]
    fn screening_reasons_name_themselves_and_carry_no_attempt() {
        let v = Judged::dead_unrun(
            DeadReason::Malformed,
            "message is not JSON".into(),
            Some(("raw", json!("{oops"))),
        );
        let j = Judged::unrun(v, "m1", None, None, "h", 0);
        let doc = j.document().expect("document");
        let error = doc.error.expect("error");
        assert_eq!(error["outcome"], "malformed");
        assert_eq!(error["raw"], "{oops");
        assert_eq!(doc.task_type, "");
        let e = &j.events()[0];
        assert_eq!(e.attempt, None);
        assert_eq!(e.outcome, None);
        assert_eq!(e.task_type, None);
        assert_eq!(DeadReason::DeliveryLimit.as_str(), "delivery_limit");
        assert_eq!(DeadReason::UnknownType.as_str(), "unknown_type");
    }

    #[test]
    fn a_retry_at_has_no_document_and_puts_the_task_back_with_its_attempts() {
        let at = Stamp(5_000);
        let v = Verdict::RetryAt {
            at,
            delay_ms: 4_000,
            message: "worker exited 1".into(),
        };
        let j = judged(v, None);
        assert!(j.document().is_none());
        assert!(j.dead_lettered().is_none());
        let task: Envelope =
            serde_json::from_value(json!({"id": "t1", "type": "T", "priority": 2})).expect("task");
        let back = j.retry_envelope(&task).expect("a retry envelope");
        assert_eq!(back.run_at, Some(at));
        assert_eq!(back.attempts, 3);
        assert_eq!(back.priority, 2);
        assert_eq!(back.last_error.as_deref(), Some("worker exited 1"));
        let e = &j.events()[0];
        assert_eq!(e.event, EventKind::TaskRetrying);
        assert_eq!(e.retry_at, Some(at));
        assert_eq!(e.delay_ms, Some(4_000));
    }
}
