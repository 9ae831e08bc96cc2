//! Screening a delivery before anything runs: a message that is not a task, a type no worker here
//! handles, or a task delivered more than `max_deliveries` times without an outcome is judged dead on
//! the spot (a [`Judged`] like any attempt's); anything else is handed to its worker with the number of
//! its first attempt. `task_received` is announced here.

use crate::observers::{Event, EventKind, Observers};
use crate::registry::{Registry, WorkerEntry};
use crate::verdict::{DeadReason, Judged};
use serde_json::Value;
use std::sync::Arc;
use workerhost_adapters::{Delivery, Envelope, Lease};

/// What screening made of a delivery.
pub enum Screened {
    /// Run it.
    Run {
        lease: Lease,
        task: Envelope,
        worker: Arc<WorkerEntry>,
        first_attempt: u32,
    },
    /// Dead before it ran; `worker` when one handles its type (its counters see the failure).
    Dead {
        lease: Lease,
        judged: Box<Judged>,
        worker: Option<Arc<WorkerEntry>>,
    },
}

/// Screens `d` against the registry. `reruns_failures`: the task manager reruns a failed delivery
/// itself (see `Consumer::reruns_failures`), which changes how attempts are numbered.
pub fn screen(
    d: Delivery,
    registry: &Registry,
    observers: &Observers,
    host: &str,
    reruns_failures: bool,
) -> Screened {
    let lease = d.lease;
    let task = match d.envelope {
        Err(m) => {
            let raw = Some(("raw", Value::String(m.raw)));
            let v = Judged::dead_unrun(DeadReason::Malformed, m.reason, raw);
            let mut judged = Judged::unrun(v, &lease.task_id, None, None, host, 0);
            judged.task_type = m.task_type.unwrap_or_default();
            return dead(lease, judged, None);
        }
        Ok(task) => task,
    };
    let mut received = Event::new(EventKind::TaskReceived, host);
    received.task_id = Some(task.id.clone());
    received.task_type = Some(task.task_type.clone());
    let Some(worker) = registry.for_type(&task.task_type).cloned() else {
        observers.emit(received);
        let msg = format!("no worker handles type {}", task.task_type);
        let v = Judged::dead_unrun(DeadReason::UnknownType, msg, None);
        let judged = Judged::unrun(v, &task.id, Some(&task), None, host, task.attempts);
        return dead(lease, judged, None);
    };
    received.worker = Some(worker.config.name.clone());
    observers.emit(received);
    let max = worker.config.max_deliveries;
    if d.deliveries > max {
        let msg = format!(
            "delivery limit reached: delivered {} times without an outcome (max_deliveries {max})",
            d.deliveries
        );
        let v = Judged::dead_unrun(DeadReason::DeliveryLimit, msg, None);
        let attempts = task.attempts + d.deliveries - 1;
        let name = worker.config.name.as_str();
        let judged = Judged::unrun(v, &task.id, Some(&task), Some(name), host, attempts);
        return dead(lease, judged, Some(worker));
    }
    // Earlier deliveries count as attempts: one each, after those already recorded (a retry that waited
    // in the task manager), or a whole round each where the task manager reruns failures itself (numbers
    // then go on across rounds instead of repeating).
    let deliveries = d.deliveries.max(1);
    let first_attempt = if reruns_failures {
        (deliveries - 1)
            .saturating_mul(worker.config.max_retries.saturating_add(1))
            .saturating_add(1)
    } else {
        task.attempts.saturating_add(deliveries)
    };
    Screened::Run {
        lease,
        task,
        worker,
        first_attempt,
    }
}

fn dead(lease: Lease, judged: Judged, worker: Option<Arc<WorkerEntry>>) -> Screened {
    Screened::Dead {
        lease,
        judged: Box::new(judged),
        worker,
    }
}
