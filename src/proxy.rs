//! The policy around a runner: retries with exponential backoff and full jitter, and the judgement of a
//! delivery's last attempt (a [`Judged`] verdict; see [`crate::verdict`]). Short retry waits stay here;
//! longer ones go back to the task manager as a scheduled task, so that no slot or lease is held while
//! they wait. One call handles one delivery of a task.

use crate::config::{RetryPolicy, WorkerConfig};
use crate::observers::{Event, EventKind, Observers};
use crate::registry::WorkerEntry;
use crate::runner::{Attempt, Job, Outcome, OutcomeKind, ProgressSink};
use crate::verdict::{DeadReason, Judged, LastAttempt, Verdict};
use serde_json::{Map, Value, json};
use std::sync::atomic::Ordering;
use std::time::Duration;
use tokio_util::sync::CancellationToken;
use workerhost_adapters::{Envelope, Stamp, now_ms, text};
use workerhost_sdk::ErrorField;
use workerhost_sdk::TaskDocument;

/// Runs deliveries through each worker's runner with the retry policy.
#[derive(Clone)]
pub struct Proxy {
    pub host_id: String,
    pub observers: Observers,
    /// Where workers' progress lines go (the task manager, when it keeps progress).
    pub progress: ProgressSink,
    /// Whether a retry longer than `retry.in_host_max_seconds` may wait in the task manager (it can hold
    /// a due time, and does not rerun failures itself). `exec` keeps every retry in process.
    pub queue_retries: bool,
}

impl Proxy {
    /// The proxy of host `host_id` (`workerhost run` and `workerhost exec` alike); every retry waits in
    /// process until [`Proxy::with_queue_retries`].
    pub fn new(host_id: String, observers: Observers, progress: ProgressSink) -> Proxy {
        Proxy {
            host_id,
            observers,
            progress,
            queue_retries: false,
        }
    }

    /// Lets long retry waits go back to the task manager.
    pub fn with_queue_retries(mut self, yes: bool) -> Proxy {
        self.queue_retries = yes;
        self
    }
}

/// What follows an attempt.
enum Next {
    Done(Verdict),
    /// Retry after this wait, in the host.
    RetryHere(Duration),
}

/// The wait before retry number `retry` (1 for the first retry): `base * multiplier^(retry-1)`, capped at
/// `max_delay`; with jitter, uniform in `[0, that]` ("full jitter", which spreads a thundering herd best).
pub fn retry_delay(policy: &RetryPolicy, retry: u32) -> Duration {
    let exp = policy
        .multiplier
        .powi(i32::try_from(retry.saturating_sub(1)).unwrap_or(i32::MAX));
    let capped = (policy.base_delay.as_secs_f64() * exp).min(policy.max_delay.as_secs_f64());
    let secs = if policy.jitter {
        capped * rand::random::<f64>()
    } else {
        capped
    };
    Duration::from_secs_f64(secs.max(0.0))
}

impl Proxy {
    fn event(&self, kind: EventKind, worker: &WorkerConfig, task: &Envelope) -> Event {
        let mut e = Event::new(kind, &self.host_id);
        e.task_id = Some(task.id.clone());
        e.task_type = Some(task.task_type.clone());
        e.worker = Some(worker.name.clone());
        e
    }

    /// Runs one delivery: attempts numbered from `first_attempt` (earlier deliveries count as attempts),
    /// at most `max_retries` retries in all (those already recorded, `task.attempts`, included). `kill`
    /// ends it at once with [`Verdict::Released`].
    pub async fn run(
        &self,
        entry: &WorkerEntry,
        task: &Envelope,
        first_attempt: u32,
        kill: &CancellationToken,
    ) -> Judged {
        let worker = &entry.config;
        let mut judged = Judged {
            verdict: Verdict::Released,
            task_id: task.id.clone(),
            task_type: task.task_type.clone(),
            correlation_id: task.correlation_id.clone(),
            worker: Some(worker.name.clone()),
            host: self.host_id.clone(),
            attempts: first_attempt,
            started_ms: now_ms(),
            finished_ms: now_ms(),
            last: None,
        };
        let mut doc = TaskDocument {
            id: task.id.clone(),
            task_type: task.task_type.clone(),
            params: task.params.clone(),
            attempt: first_attempt,
            correlation_id: task.correlation_id.clone(),
            traceparent: None,
        };
        let span = crate::telemetry::task(task, &worker.name);
        // Retries made: those recorded in the task manager, then those of this delivery.
        let mut retries = task.attempts;
        loop {
            let mut e = self.event(EventKind::TaskStarted, worker, task);
            e.attempt = Some(doc.attempt);
            self.observers.emit(e);

            let attempt = span.attempt(doc.attempt);
            doc.traceparent = attempt.traceparent();
            let job = Job {
                worker,
                doc: &doc,
                kill,
                progress: &self.progress,
            };
            let a = entry.runner.run(job).await;
            attempt.end(a.outcome.kind().as_str());
            forward_logs(&a, &task.id, &worker.name);
            self.attempt_health(entry, task, &doc, &a);
            judged.attempts = doc.attempt;
            judged.finished_ms = now_ms();
            judged.last = Some(LastAttempt {
                outcome: a.outcome.kind(),
                duration_ms: a.duration.as_millis() as u64,
                usage: a.usage,
            });
            let delay = match self.judge(worker, &a, &mut retries) {
                Next::Done(v) => {
                    judged.verdict = v;
                    span.end(&judged.verdict);
                    return judged;
                }
                Next::RetryHere(delay) => delay,
            };
            let mut e = self.attempt_event(EventKind::TaskRetrying, worker, task, &doc, &a);
            e.error = Some(a.outcome.message());
            e.delay_ms = Some(delay.as_millis() as u64);
            self.observers.emit(e);
            tokio::select! {
                _ = tokio::time::sleep(delay) => {}
                _ = kill.cancelled() => {
                    span.end(&Verdict::Released);
                    return judged.released();
                }
            }
            doc.attempt += 1;
        }
    }

    /// What follows an attempt: a verdict, or another attempt after a wait here. `retries` counts the
    /// retries made (those recorded in the task manager included) and is raised for the one decided.
    fn judge(&self, worker: &WorkerConfig, a: &Attempt, retries: &mut u32) -> Next {
        let o = &a.outcome;
        match o {
            Outcome::Interrupted => Next::Done(Verdict::Released),
            Outcome::Succeeded { result } => Next::Done(Verdict::Succeeded {
                result: result.clone(),
            }),
            o if o.is_retriable_for(worker) && *retries < worker.max_retries => {
                *retries += 1;
                let delay = retry_delay(&worker.retry, *retries);
                if !(self.queue_retries && delay > worker.retry.in_host_max) {
                    return Next::RetryHere(delay);
                }
                let delay_ms = delay.as_millis() as u64;
                Next::Done(Verdict::RetryAt {
                    at: Stamp(now_ms().saturating_add(delay_ms as i64)),
                    delay_ms,
                    message: o.message(),
                })
            }
            o => {
                let message = o.message();
                Next::Done(Verdict::Dead {
                    reason: DeadReason::Outcome(o.kind()),
                    error: dead_letter_error(a, message.clone()),
                    message,
                })
            }
        }
    }

    /// A spawn error marks the worker unhealthy (and says so); any other outcome healthy again. A
    /// timeout is announced as it happens.
    fn attempt_health(
        &self,
        entry: &WorkerEntry,
        task: &Envelope,
        doc: &TaskDocument,
        a: &Attempt,
    ) {
        let worker = &entry.config;
        match &a.outcome {
            Outcome::SpawnError { .. } => {
                entry.stats.healthy.store(false, Ordering::Relaxed);
                let mut e = self.event(EventKind::WorkerUnhealthy, worker, task);
                e.error = Some(a.outcome.message());
                self.observers.emit(e);
            }
            _ => entry.stats.healthy.store(true, Ordering::Relaxed),
        }
        if a.outcome.kind() == OutcomeKind::Timeout {
            let mut e = self.attempt_event(EventKind::TaskTimedOut, worker, task, doc, a);
            e.error = Some(a.outcome.message());
            self.observers.emit(e);
        }
    }

    fn attempt_event(
        &self,
        kind: EventKind,
        worker: &WorkerConfig,
        task: &Envelope,
        doc: &TaskDocument,
        a: &Attempt,
    ) -> Event {
        let mut e = self.event(kind, worker, task);
        e.attempt = Some(doc.attempt);
        e.outcome = Some(a.outcome.kind());
        e.duration_ms = Some(a.duration.as_millis() as u64);
        e.usage = a.usage;
        e
    }
}

/// The `error` of a dead letter: the message, the outcome, the exit code, the worker's own error and the
/// tail of stderr, so that whoever reads the dead letter does not need the host's logs.
fn dead_letter_error(a: &Attempt, message: String) -> Value {
    let mut m = Map::new();
    m.insert("message".into(), Value::String(message));
    m.insert("outcome".into(), json!(a.outcome.kind()));
    if let Some(c) = a.exit_code {
        m.insert("exit_code".into(), json!(c));
    }
    if let Outcome::Failed {
        error: ErrorField::Detailed(d),
        ..
    } = &a.outcome
        && let Ok(v) = serde_json::to_value(d)
    {
        m.insert("worker_error".into(), text::cap_value(v, text::ERROR_MAX));
    }
    if !a.stderr_tail.is_empty() {
        m.insert("stderr_tail".into(), Value::String(a.stderr_tail.clone()));
    }
    Value::Object(m)
}

/// `logs` from the worker's result document go to the host's log with the task id, each message cut
/// at [`REASON_MAX`](workerhost_adapters::text::REASON_MAX) (a worker's message is input of any size).
fn forward_logs(a: &Attempt, task_id: &str, worker: &str) {
    for l in &a.logs {
        let msg = workerhost_adapters::text::cap(&l.message, workerhost_adapters::text::REASON_MAX);
        match l.level.to_ascii_lowercase().as_str() {
            "error" | "critical" => {
                tracing::error!(target: "workerhost::worker", task_id, worker, "{msg}")
            }
            "warning" | "warn" => {
                tracing::warn!(target: "workerhost::worker", task_id, worker, "{msg}")
            }
            "debug" | "trace" => {
                tracing::debug!(target: "workerhost::worker", task_id, worker, "{msg}")
            }
            _ => tracing::info!(target: "workerhost::worker", task_id, worker, "{msg}"),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn backoff_grows_and_is_capped() {
        let p = RetryPolicy {
            base_delay: Duration::from_secs(5),
            multiplier: 2.0,
            max_delay: Duration::from_secs(30),
            jitter: false,
            ..RetryPolicy::default()
        };
        let d: Vec<u64> = (1..=5).map(|r| retry_delay(&p, r).as_secs()).collect();
        assert_eq!(d, vec![5, 10, 20, 30, 30]);
    }

    #[test]
    fn full_jitter_stays_within_zero_and_the_capped_delay() {
        let p = RetryPolicy {
            base_delay: Duration::from_millis(100),
            multiplier: 2.0,
            max_delay: Duration::from_secs(1),
            jitter: true,
            ..RetryPolicy::default()
        };
        let samples: Vec<Duration> = (0..200).map(|_| retry_delay(&p, 3)).collect();
        assert!(samples.iter().all(|d| *d <= Duration::from_millis(400)));
        // full jitter really spreads: not all samples in the top half
        assert!(samples.iter().any(|d| *d < Duration::from_millis(200)));
        assert!(samples.iter().any(|d| *d > Duration::from_millis(200)));
    }
}
