//! Consuming: what a host needs to take tasks from a task manager, hold them while they run, and settle
//! each exactly once ([`Consumer`]), and the values that travel across that seam.

use crate::{AdapterError, Envelope, ResultDocument};
use std::future::Future;
use std::time::Duration;

/// What the host can start right now: a claim never returns more than it asks for.
#[derive(Debug, Clone, Default)]
pub struct ClaimRequest {
    /// One slot per worker with free capacity: at most `max` tasks whose type is one of `types`.
    pub slots: Vec<ClaimSlot>,
    /// Every task type some worker of this host handles. Adapters that can see a task's type before
    /// claiming it may dead-letter tasks of other types ("no worker handles type ...").
    pub known_types: Vec<String>,
    /// At most this many in all (the host's free capacity); `None`: the sum of the slots. Every worker
    /// with room gets a slot, so every type is asked for, while the total stays within capacity.
    pub limit: Option<usize>,
}

#[derive(Debug, Clone)]
pub struct ClaimSlot {
    pub types: Vec<String>,
    pub max: usize,
}

impl ClaimRequest {
    pub fn total(&self) -> usize {
        let sum = self.slots.iter().map(|s| s.max).sum();
        self.limit.map_or(sum, |l| l.min(sum))
    }
}

/// A claimed task: the envelope (or why it is not one) and the lease that lets the host settle it.
#[derive(Debug, Clone)]
pub struct Delivery {
    pub lease: Lease,
    /// The parsed envelope, or the reason the message is not a valid one (the host dead-letters it).
    pub envelope: Result<crate::Envelope, Malformed>,
    /// How many times this task has been delivered, this delivery included (1 on the first).
    pub deliveries: u32,
}

impl Delivery {
    /// The task's type: the envelope's, or what a malformed message still showed of it.
    pub fn task_type(&self) -> Option<&str> {
        match &self.envelope {
            Ok(e) => Some(&e.task_type),
            Err(m) => m.task_type.as_deref(),
        }
    }
}

/// A message that is not a valid task envelope, and why (the host dead-letters it as `malformed`).
#[derive(Debug, Clone)]
pub struct Malformed {
    /// The raw message as text (an excerpt of at most [`crate::text::REASON_MAX`] bytes), kept in the
    /// dead letter.
    pub raw: String,
    /// At most [`crate::text::REASON_MAX`] bytes.
    pub reason: String,
    /// The task's type where it could still be read (a readable `type` with bad `params`), for the dead
    /// letter; `None` otherwise.
    pub task_type: Option<String>,
}

impl Malformed {
    /// A malformed message from its raw bytes: the excerpt and the reason bounded, the type salvaged
    /// when the raw message is a JSON object with a usable `type`.
    pub fn new(raw: &[u8], reason: impl Into<String>) -> Malformed {
        use crate::text::{REASON_MAX, cap_owned, excerpt};
        Malformed {
            raw: excerpt(raw, REASON_MAX),
            reason: cap_owned(reason.into(), REASON_MAX),
            task_type: crate::envelope::salvage(raw).1,
        }
    }
}

/// The right to settle one delivery. `receipt` is adapter-specific (a fencing token, a stream entry id,
/// a delivery tag) and opaque to the host.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct Lease {
    pub task_id: String,
    pub receipt: String,
}

/// A lease that [`Consumer::renew`] could not extend, and why: the host stops counting on recording
/// that task's outcome.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Revoked {
    pub lease: Lease,
    pub reason: RevokeReason,
}

/// Why a lease is gone.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RevokeReason {
    /// Another host holds the task now (our lease expired and was taken over), or the task is gone.
    Lost,
    /// Someone cancelled the task while it ran.
    Cancelled,
}

impl Revoked {
    /// A lease taken over by another host (or gone).
    pub fn lost(lease: Lease) -> Revoked {
        Revoked {
            lease,
            reason: RevokeReason::Lost,
        }
    }
}

/// What a recorded outcome became in the task manager.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Settled {
    /// Kept as sent: a success stored, a failure dead-lettered, a cancel recorded.
    Recorded,
    /// A failure the task manager puts back to run again by its own retry policy (the HTTP service
    /// does, up to its own maximum): the task is not dead, so no `task_dead_lettered`.
    RerunByTaskManager,
}

/// The consuming side of a task manager: claim, hold (renew, progress), settle or hand back; plus the
/// lifecycle around it (waiting when idle, stopping, closing) and a health check.
///
/// Implementations must be cheap to share (`&self` everywhere) and must never block the async runtime.
pub trait Consumer: Send + Sync {
    /// The adapter's name as in `task_manager.type`.
    fn kind(&self) -> &'static str;

    /// Claims up to `req.total()` tasks in all, respecting each slot's `max`. Returns promptly, possibly with none;
    /// the host waits [`Consumer::wait_for_tasks`] before asking again after an empty answer.
    fn claim(
        &self,
        req: &ClaimRequest,
    ) -> impl Future<Output = Result<Vec<Delivery>, AdapterError>> + Send;

    /// Extends the leases of tasks still running. Returns the leases that could not be renewed, each
    /// with the reason it is gone.
    fn renew(
        &self,
        leases: &[Lease],
    ) -> impl Future<Output = Result<Vec<Revoked>, AdapterError>> + Send;

    /// Records the outcome (success stored, or dead-lettered) and only then removes the task from the
    /// queue. Fenced: returns [`AdapterError::LeaseLost`] if another host holds the task now. Says
    /// whether a failure was dead-lettered or put back by the task manager's own retries.
    fn settle(
        &self,
        lease: &Lease,
        doc: &ResultDocument,
    ) -> impl Future<Output = Result<Settled, AdapterError>> + Send;

    /// Hands an unfinished task back to the queue for redelivery (shutdown). Where the task manager can
    /// tell, this delivery does not count toward `max_deliveries`.
    fn release(&self, lease: &Lease) -> impl Future<Output = Result<(), AdapterError>> + Send;

    /// Settles this delivery's attempt and puts the task back as a scheduled task, due at `task.run_at`
    /// and carrying `task.attempts` and `task.last_error`: a retry that waits in the task manager, so that
    /// no slot or lease is held meanwhile and any host may run the next attempt. A recorded outcome, so
    /// the next delivery counts from 1 again (it does not count toward `max_deliveries`). Fenced like
    /// [`Consumer::settle`]. Task managers that cannot hold a due time
    /// ([`crate::capabilities`]`(kind).run_at` false) keep this default, which refuses.
    fn requeue(
        &self,
        lease: &Lease,
        _task: &Envelope,
    ) -> impl Future<Output = Result<(), AdapterError>> + Send {
        let msg = format!(
            "task {}: the {} task manager cannot hold a task until a due time",
            lease.task_id,
            self.kind()
        );
        async move { Err(AdapterError::Invalid(msg)) }
    }

    /// Checks the connection.
    fn ping(&self) -> impl Future<Output = Result<(), AdapterError>> + Send;

    /// How long to wait before claiming again after a claim that returned nothing.
    fn idle_wait(&self) -> Duration;

    /// The wait after a claim that returned nothing: [`Consumer::idle_wait`], or less when the adapter
    /// learns that tasks may have arrived (so an idle host starts a new task at once, not at its next poll).
    fn wait_for_tasks(&self) -> impl Future<Output = ()> + Send {
        tokio::time::sleep(self.idle_wait())
    }

    /// Whether the task manager itself puts a task back after a reported failure, so that each of its
    /// deliveries runs a whole round of the proxy's attempts (the HTTP service does, up to its own
    /// maximum). The host then numbers attempts across rounds: delivery `n` of a worker with
    /// `max_retries: R` starts at attempt `(n - 1) * (R + 1) + 1`, so numbers never repeat.
    fn reruns_failures(&self) -> bool {
        false
    }

    /// Whether [`Consumer::progress`] goes anywhere (the host forwards workers' progress lines only then).
    fn wants_progress(&self) -> bool {
        false
    }

    /// Records a running task's progress (0..100) where the task manager supports it. Never waits: an
    /// adapter that sends it somewhere does so in the background, in the order reported, and before the
    /// task's [`Consumer::settle`] (which must not overtake a report made before it).
    fn progress(&self, _task_id: &str, _percent: f64, _message: Option<&str>) {}

    /// The host began to stop (first signal): end the adapter's own waits now (a 429's `Retry-After`, a
    /// backoff), so that a claim in progress returns at once. Settling and releasing still work after it.
    fn begin_shutdown(&self) {}

    /// How many answers of the task manager the adapter could not read as what they should be (a claim
    /// answer that is not a task), for the host's metrics. Each was also logged as an error.
    fn unreadable_answers(&self) -> u64 {
        0
    }

    /// The host will claim no more (shutdown began). Push-based adapters stop consuming and hand back
    /// whatever they buffered but never handed out. In-flight deliveries are still settled or released.
    fn stop_consuming(&self) -> impl Future<Output = ()> + Send {
        async {}
    }

    /// Everything is settled or released; close connections.
    fn close(&self) -> impl Future<Output = ()> + Send {
        async {}
    }
}
