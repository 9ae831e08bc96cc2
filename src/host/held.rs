//! The claims this host holds for the tasks in flight here, by task id: what lease renewal renews, what a
//! task settles or hands back with, and how a claim of a task that is already here is recognised.
//!
//! A task manager whose claims time out (the HTTP one has no heartbeat) can hand a task this host still
//! runs to this host again. Then no second process starts: while the task runs, the fresh claim replaces
//! the one it holds (it settles with the fresh one); once its process has ended and its outcome is being
//! recorded, the fresh claim waits, and is started as a new delivery after the outcome is recorded (the
//! task manager may have put the task back meanwhile, e.g. a failure it retries itself).

use std::collections::HashMap;
use std::sync::{Mutex, MutexGuard};
use workerhost_adapters::{Delivery, Lease};

struct Claim {
    lease: Lease,
    /// The process has ended; the outcome is being recorded (or the task handed back).
    settling: bool,
    /// The newest claim that arrived while settling.
    deferred: Option<Delivery>,
}

/// What became of a delivery offered to [`Held::reclaim`].
pub(super) enum Reclaim {
    /// Its task runs here; the running task holds this claim now.
    Adopted,
    /// Its task is settling here; it starts once that is done.
    Deferred,
    /// Not held here: start it.
    New(Delivery),
}

#[derive(Default)]
pub(super) struct Held {
    claims: Mutex<HashMap<String, Claim>>,
    /// Deferred deliveries whose task has finished settling: the run loop starts them.
    ready: Mutex<Vec<Delivery>>,
}

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|poisoned| poisoned.into_inner())
}

impl Held {
    /// A delivery just claimed: is its task already here?
    pub fn reclaim(&self, d: Delivery) -> Reclaim {
        let mut claims = lock(&self.claims);
        let Some(c) = claims.get_mut(&d.lease.task_id) else {
            return Reclaim::New(d);
        };
        if c.settling {
            c.deferred = Some(d);
            Reclaim::Deferred
        } else {
            c.lease = d.lease;
            Reclaim::Adopted
        }
    }

    pub fn insert(&self, lease: Lease) {
        let claim = Claim {
            lease: lease.clone(),
            settling: false,
            deferred: None,
        };
        lock(&self.claims).insert(lease.task_id, claim);
    }

    /// The task's process has ended: returns the claim to settle (or hand back) with, the newest one.
    pub fn settling(&self, task_id: &str, fallback: &Lease) -> Lease {
        match lock(&self.claims).get_mut(task_id) {
            Some(c) => {
                c.settling = true;
                c.lease.clone()
            }
            None => fallback.clone(),
        }
    }

    /// The task is done here; a claim deferred meanwhile becomes ready to start.
    pub fn remove(&self, task_id: &str) {
        let deferred = lock(&self.claims).remove(task_id).and_then(|c| c.deferred);
        if let Some(d) = deferred {
            lock(&self.ready).push(d);
        }
    }

    /// Deferred deliveries ready to start.
    pub fn take_ready(&self) -> Vec<Delivery> {
        std::mem::take(&mut *lock(&self.ready))
    }

    /// Whether what a renewal says of `lease` (lost, cancelled) still concerns a running task: the task
    /// holds that very claim and its process has not ended. A renewal that raced the task's own settle
    /// (the outcome was recorded, and the entry removed, a moment after the renewal read the claims)
    /// reports the claim gone; that is no loss, and a real one is reported by the settle itself.
    pub fn runs_with(&self, lease: &Lease) -> bool {
        lock(&self.claims)
            .get(&lease.task_id)
            .is_some_and(|c| !c.settling && c.lease == *lease)
    }

    /// The claims to renew.
    pub fn leases(&self) -> Vec<Lease> {
        lock(&self.claims)
            .values()
            .map(|c| c.lease.clone())
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn delivery(id: &str, receipt: &str) -> Delivery {
        Delivery {
            lease: Lease {
                task_id: id.into(),
                receipt: receipt.into(),
            },
            envelope: Err(workerhost_adapters::Malformed {
                raw: String::new(),
                reason: String::new(),
            }),
            deliveries: 1,
        }
    }

    #[test]
    fn a_running_task_adopts_the_fresh_claim_and_a_settling_one_defers_it() {
        let h = Held::default();
        assert!(matches!(h.reclaim(delivery("a", "1")), Reclaim::New(_)));
        h.insert(delivery("a", "1").lease);
        assert!(h.runs_with(&delivery("a", "1").lease));
        assert!(matches!(h.reclaim(delivery("a", "2")), Reclaim::Adopted));
        assert!(
            !h.runs_with(&delivery("a", "1").lease),
            "the old claim is gone"
        );
        assert!(h.runs_with(&delivery("a", "2").lease));
        assert_eq!(h.leases().len(), 1, "one entry per task");
        let first = delivery("a", "1").lease;
        assert_eq!(
            h.settling("a", &first).receipt,
            "2",
            "settles with the fresh claim"
        );
        assert!(matches!(h.reclaim(delivery("a", "3")), Reclaim::Deferred));
        assert!(
            h.take_ready().is_empty(),
            "not before the outcome is recorded"
        );
        assert!(
            !h.runs_with(&delivery("a", "2").lease),
            "a settling task's revocations are the settle's business"
        );
        h.remove("a");
        assert!(h.leases().is_empty());
        let ready = h.take_ready();
        assert_eq!(ready.len(), 1);
        assert_eq!(ready[0].lease.receipt, "3");
        assert!(matches!(h.reclaim(delivery("a", "4")), Reclaim::New(_)));
    }
}
