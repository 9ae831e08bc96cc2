//! Progress throttling: at most one `POST /tasks/{id}/progress` a second per task, and never a value
//! lost. A report that arrives within the second is kept as the task's newest; when the second is up, the
//! newest is sent (so the service ends at the worker's last line, not at whatever got through the gate);
//! 100% goes at once. The complete of a task first sends what is still pending, then completes while no
//! progress of that task can be in flight (a progress landing after its complete would be refused with
//! 400 "not in claimed state").

use super::HttpSource;
use super::client::{Api, urlencode};
use serde_json::json;
use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};
use tokio::sync::OwnedMutexGuard;

/// One progress report as the service wants it: an integer 0..=100 and an optional message.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) struct Report {
    pub percent: i64,
    pub message: Option<String>,
}

impl Report {
    /// A worker's percentage as the service's integer, or None for a value that is not a number.
    pub fn new(percent: f64, message: Option<&str>) -> Option<Report> {
        percent.is_finite().then(|| Report {
            percent: percent.clamp(0.0, 100.0).round() as i64,
            message: message.map(str::to_string),
        })
    }
}

/// What the caller should do after [`Throttle::offer`].
#[derive(Debug, PartialEq, Eq)]
pub(super) enum Plan {
    /// Send the newest value now.
    Now,
    /// Send the newest value at this instant (a timer is armed for it).
    At(Instant),
    /// A send is already planned; it will carry this value.
    Nothing,
}

#[derive(Default)]
struct Slot {
    /// The newest report and its sequence number.
    latest: Option<(u64, Report)>,
    next_seq: u64,
    /// The sequence number of the newest report sent (or being sent).
    sent_seq: u64,
    last_sent: Option<Instant>,
    /// A timer will send the newest value.
    armed: bool,
    /// Held while a report of this task is being sent, and by its complete.
    gate: Arc<tokio::sync::Mutex<()>>,
}

impl Slot {
    fn take_unsent(&mut self) -> Option<Report> {
        let (seq, r) = self.latest.as_ref()?;
        (*seq > self.sent_seq).then(|| {
            self.sent_seq = *seq;
            r.clone()
        })
    }
}

pub(super) struct Throttle {
    every: Duration,
    slots: Mutex<HashMap<String, Slot>>,
}

impl Throttle {
    pub fn new(every: Duration) -> Throttle {
        Throttle {
            every,
            slots: Mutex::default(),
        }
    }

    fn with<T>(&self, f: impl FnOnce(&mut HashMap<String, Slot>) -> T) -> T {
        match self.slots.lock() {
            Ok(mut m) => f(&mut m),
            Err(poisoned) => f(&mut poisoned.into_inner()),
        }
    }

    /// Records a report as the task's newest and says when to send.
    pub fn offer(&self, task_id: &str, report: Report, now: Instant) -> Plan {
        let every = self.every;
        self.with(|m| {
            let slot = m.entry(task_id.to_string()).or_default();
            slot.next_seq += 1;
            let final_value = report.percent >= 100;
            slot.latest = Some((slot.next_seq, report));
            let due_at = slot.last_sent.map(|t| t + every);
            match due_at {
                _ if final_value => {
                    slot.last_sent = Some(now);
                    Plan::Now
                }
                None => {
                    slot.last_sent = Some(now);
                    Plan::Now
                }
                Some(at) if at <= now && !slot.armed => {
                    slot.last_sent = Some(now);
                    Plan::Now
                }
                Some(_) if slot.armed => Plan::Nothing,
                Some(at) => {
                    slot.armed = true;
                    Plan::At(at)
                }
            }
        })
    }

    /// The armed timer fired: the send it makes counts as this second's.
    pub fn fired(&self, task_id: &str, now: Instant) {
        self.with(|m| {
            if let Some(s) = m.get_mut(task_id) {
                s.armed = false;
                s.last_sent = Some(now);
            }
        });
    }

    /// Waits until no other report of the task is being sent, then takes the newest value not yet sent.
    /// Sending happens while the returned guard is held, so reports arrive in order.
    pub async fn take(&self, task_id: &str) -> Option<(OwnedMutexGuard<()>, Report)> {
        let gate = self.with(|m| m.get(task_id).map(|s| s.gate.clone()))?;
        let guard = gate.lock_owned().await;
        let report = self.with(|m| m.get_mut(task_id).and_then(Slot::take_unsent))?;
        Some((guard, report))
    }

    /// The task is being completed (or handed back): waits for any send of its progress, forgets the task,
    /// and returns the newest value not yet sent. Hold the guard until the complete is answered.
    pub async fn finish(&self, task_id: &str) -> (Option<OwnedMutexGuard<()>>, Option<Report>) {
        let Some(gate) = self.with(|m| m.get(task_id).map(|s| s.gate.clone())) else {
            return (None, None);
        };
        let guard = gate.lock_owned().await;
        let unsent = self.with(|m| m.remove(task_id).and_then(|mut s| s.take_unsent()));
        (Some(guard), unsent)
    }

    #[cfg(test)]
    fn tracked(&self) -> usize {
        self.with(|m| m.len())
    }
}

/// Sends one report. A refusal is only logged (at debug): progress is advisory, and a task whose claim
/// was lost hears about it from its complete.
pub(super) async fn send(api: &Api, task_id: &str, r: &Report) {
    let mut body = json!({"worker_id": api.host_id, "progress": r.percent});
    if let Some(m) = &r.message {
        body["message"] = json!(m);
    }
    let path = format!("/tasks/{}/progress", urlencode(task_id));
    match api.call(reqwest::Method::POST, &path, Some(&body)).await {
        Ok(a) if a.ok() => {}
        Ok(a) => {
            tracing::debug!(task_id, status = a.status, error = %a.error_text(), "progress not recorded")
        }
        Err(e) => tracing::debug!(task_id, error = %e, "progress not recorded"),
    }
}

/// Sends the task's newest report not sent yet, in order with its other reports.
async fn send_newest(api: Arc<Api>, throttle: Arc<Throttle>, task_id: String) {
    if let Some((_gate, r)) = throttle.take(&task_id).await {
        send(&api, &task_id, &r).await;
    }
}

impl HttpSource {
    /// Takes a worker's progress report without waiting: it is sent in the background, now or when the
    /// task's second is up (see the module's comment).
    pub(super) fn offer_progress(&self, task_id: &str, percent: f64, message: Option<&str>) {
        let Some(report) = Report::new(percent, message) else {
            return;
        };
        let plan = self.throttle.offer(task_id, report, Instant::now());
        let Ok(rt) = tokio::runtime::Handle::try_current() else {
            return;
        };
        let (api, throttle, id) = (self.api.clone(), self.throttle.clone(), task_id.to_string());
        match plan {
            Plan::Nothing => {}
            Plan::Now => {
                rt.spawn(send_newest(api, throttle, id));
            }
            Plan::At(at) => {
                rt.spawn(async move {
                    tokio::select! {
                        _ = tokio::time::sleep_until(at.into()) => {}
                        _ = api.shutdown.cancelled() => {}
                    }
                    throttle.fired(&id, Instant::now());
                    send_newest(api, throttle, id).await;
                });
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn r(p: i64) -> Report {
        Report {
            percent: p,
            message: None,
        }
    }

    #[test]
    fn reports_are_integers_and_nan_is_not_one() {
        assert_eq!(Report::new(83.4, Some("m")).map(|r| r.percent), Some(83));
        assert_eq!(Report::new(150.0, None).map(|r| r.percent), Some(100));
        assert_eq!(Report::new(-3.0, None).map(|r| r.percent), Some(0));
        assert_eq!(Report::new(f64::NAN, None), None);
        assert_eq!(Report::new(f64::INFINITY, None), None);
    }

    #[tokio::test]
    async fn the_newest_value_is_sent_when_the_second_is_up() {
        let t = Throttle::new(Duration::from_secs(1));
        let t0 = Instant::now();
        assert_eq!(t.offer("a", r(33), t0), Plan::Now);
        assert_eq!(t.take("a").await.map(|(_, r)| r.percent), Some(33));
        // Within the second: the first arms the timer, the next ride on it.
        let at = t0 + Duration::from_secs(1);
        assert_eq!(
            t.offer("a", r(50), t0 + Duration::from_millis(200)),
            Plan::At(at)
        );
        assert_eq!(
            t.offer("a", r(66), t0 + Duration::from_millis(400)),
            Plan::Nothing
        );
        assert_eq!(
            t.offer("a", r(83), t0 + Duration::from_millis(600)),
            Plan::Nothing
        );
        t.fired("a", at);
        assert_eq!(
            t.take("a").await.map(|(_, r)| r.percent),
            Some(83),
            "the newest, not 50"
        );
        assert!(t.take("a").await.is_none(), "nothing new to send");
        // Another second later, a report goes at once.
        assert_eq!(t.offer("a", r(90), at + Duration::from_secs(1)), Plan::Now);
    }

    #[tokio::test]
    async fn one_hundred_goes_at_once_and_other_tasks_are_not_held_back() {
        let t = Throttle::new(Duration::from_secs(1));
        let t0 = Instant::now();
        assert_eq!(t.offer("a", r(10), t0), Plan::Now);
        assert_eq!(t.offer("b", r(10), t0), Plan::Now);
        assert!(matches!(t.offer("a", r(20), t0), Plan::At(_)));
        assert_eq!(t.offer("a", r(100), t0), Plan::Now);
        assert_eq!(t.take("a").await.map(|(_, r)| r.percent), Some(100));
    }

    #[tokio::test]
    async fn finish_returns_what_is_pending_and_forgets_the_task() {
        let t = Throttle::new(Duration::from_secs(1));
        let t0 = Instant::now();
        t.offer("a", r(10), t0);
        let _ = t.take("a").await;
        t.offer("a", r(66), t0);
        let (guard, unsent) = t.finish("a").await;
        assert!(guard.is_some());
        assert_eq!(unsent.map(|r| r.percent), Some(66));
        assert_eq!(t.tracked(), 0);
        assert!(
            t.take("a").await.is_none(),
            "a timer firing after the complete sends nothing"
        );
        let (guard, unsent) = t.finish("never-reported").await;
        assert!(guard.is_none() && unsent.is_none());
    }

    #[tokio::test]
    async fn finish_waits_for_a_send_in_flight() {
        let t = Arc::new(Throttle::new(Duration::from_secs(1)));
        t.offer("a", r(10), Instant::now());
        let (guard, _) = t.take("a").await.expect("report");
        let t2 = t.clone();
        let finishing = tokio::spawn(async move { t2.finish("a").await.1 });
        tokio::task::yield_now().await;
        assert!(
            !finishing.is_finished(),
            "the complete waits for the progress being sent"
        );
        drop(guard);
        assert_eq!(finishing.await.ok().flatten(), None);
    }
}
