//! The loop: claim only what can start now, run each delivery through the proxy in its own task, renew
//! leases while tasks run, settle each outcome exactly once, and stop gracefully.
//!
//! Shutdown has two tokens: `stop` (first signal: take no more tasks, let in-flight ones finish) and
//! `kill` (grace elapsed or second signal: kill in-flight process groups, hand their tasks back).

use crate::observers::Observers;
use crate::proxy::Proxy;
use crate::registry::{Registry, WorkerEntry};
use crate::runner::ProgressSink;
use crate::verdict::Judged;
use futures_util::FutureExt as _;
pub use in_flight::RunningTask;
use in_flight::{InFlight, Reclaim};
use retries::QueuedRetries;
use screen::Screened;
use settle::Settler;
use std::panic::AssertUnwindSafe;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, RwLock};
use std::time::{Duration, Instant};
use task::{Start, TaskCtx};
use tokio::sync::Semaphore;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;
use workerhost_adapters::{
    ClaimRequest, ClaimSlot, Consumer, Delivery, Envelope, Lease, Source, Stamp,
};
mod in_flight;
mod renew;
mod retries;
mod screen;
mod settle;
mod task;

/// The longest wait between claims while the task manager is unreachable.
const CLAIM_BACKOFF_MAX: Duration = Duration::from_secs(30);

/// Waits between failed claims: 100 ms, doubling, at most [`CLAIM_BACKOFF_MAX`].
fn claim_backoff() -> backon::ExponentialBackoff {
    use backon::BackoffBuilder as _;
    backon::ExponentialBuilder::default()
        .with_min_delay(Duration::from_millis(100))
        .with_max_delay(CLAIM_BACKOFF_MAX)
        .without_max_times()
        .build()
}

/// How the host runs.
#[derive(Debug, Clone)]
pub struct HostOptions {
    /// This start's unique id (lease owner).
    pub host_id: String,
    pub concurrency: usize,
    pub shutdown_grace: Duration,
    /// Leases are renewed every third of this.
    pub lease: Duration,
    /// Exit when nothing can be claimed and nothing is in flight.
    pub burst: bool,
}

/// State shared with the HTTP views and `main`.
#[derive(Debug)]
pub struct HostState {
    pub started: Instant,
    pub task_manager_up: AtomicBool,
    pub lost_leases: AtomicU64,
    /// Answers of the task manager its adapter could not read (see `Consumer::unreadable_answers`).
    pub unreadable_answers: AtomicU64,
    /// The tasks running here now: their claims, stop tokens, and what the status page shows.
    pub in_flight: Arc<InFlight>,
    /// Retries this host sent back to wait in the task manager (a burst waits for them).
    pub queued_retries: QueuedRetries,
}

pub struct Host {
    source: Arc<Source>,
    registry: Arc<RwLock<Arc<Registry>>>,
    proxy: Proxy,
    opts: HostOptions,
    pub state: Arc<HostState>,
    global: Arc<Semaphore>,
    /// Outcomes being recorded after their process ended, at most `concurrency` (see `start`).
    settling: Arc<Semaphore>,
    tracker: TaskTracker,
}

impl Host {
    pub fn new(
        source: Source,
        registry: Registry,
        observers: Observers,
        opts: HostOptions,
    ) -> Host {
        let source = Arc::new(source);
        let progress = if source.wants_progress() {
            // In line, not through a queue: the adapter has every report before the task settles.
            let to = source.clone();
            ProgressSink::new(move |p| to.progress(&p.task_id, p.percent, p.message.as_deref()))
        } else {
            ProgressSink::default()
        };
        // Long retry waits go to the task manager where it can hold a due time and does not rerun
        // failures itself (section 7); elsewhere they stay in the host.
        let queue_retries =
            workerhost_adapters::capabilities(source.kind()).run_at && !source.reruns_failures();
        let proxy =
            Proxy::new(opts.host_id.clone(), observers, progress).with_queue_retries(queue_retries);
        Host {
            source,
            registry: Arc::new(RwLock::new(Arc::new(registry))),
            proxy,
            global: Arc::new(Semaphore::new(opts.concurrency.max(1))),
            settling: Arc::new(Semaphore::new(opts.concurrency.max(1))),
            opts,
            state: Arc::new(HostState {
                started: Instant::now(),
                task_manager_up: AtomicBool::new(true),
                lost_leases: AtomicU64::new(0),
                unreadable_answers: AtomicU64::new(0),
                in_flight: Arc::default(),
                queued_retries: QueuedRetries::default(),
            }),
            tracker: TaskTracker::new(),
        }
    }

    /// The task manager, shared with the scheduler (schedule ticks) and the HTTP operations.
    pub fn source(&self) -> Arc<Source> {
        self.source.clone()
    }

    /// A handle that swaps the registry (SIGHUP). In-flight tasks keep the worker they started with.
    pub fn registry_handle(&self) -> Arc<RwLock<Arc<Registry>>> {
        self.registry.clone()
    }

    fn registry(&self) -> Arc<Registry> {
        match self.registry.read() {
            Ok(r) => r.clone(),
            Err(poisoned) => poisoned.into_inner().clone(),
        }
    }

    /// Runs until `stop` (then drains within the grace period) or, in burst mode, until idle.
    pub async fn run(&self, stop: CancellationToken, kill: CancellationToken) {
        let renewer_stop = CancellationToken::new();
        let renewer = tokio::spawn(self.renew_loop(renewer_stop.clone()));
        // The adapter's own waits (a 429's Retry-After) end when stopping begins, not after them.
        let watcher = {
            let (source, stop) = (self.source.clone(), stop.clone());
            tokio::spawn(async move {
                stop.cancelled().await;
                source.begin_shutdown();
            })
        };
        self.claim_loop(&stop, &kill).await;
        watcher.abort();
        self.drain(&kill).await;
        renewer_stop.cancel();
        let _ = renewer.await;
        self.source.close().await;
    }

    /// Claims and starts tasks until `stop`, or in burst mode until nothing is left.
    async fn claim_loop(&self, stop: &CancellationToken, kill: &CancellationToken) {
        let mut rotate = 0usize;
        let mut backoff = claim_backoff();
        while !stop.is_cancelled() {
            for d in self.state.in_flight.take_ready() {
                self.start(d, kill);
            }
            let req = self.claim_request(&mut rotate);
            // (A worker held back because its environment could not be set up is never asked.)
            let askable = self
                .registry()
                .workers()
                .iter()
                .filter(|w| !w.stats.held.load(Ordering::Relaxed))
                .count();
            if req.slots.is_empty() {
                if self.opts.burst && askable == 0 && self.state.in_flight.count() == 0 {
                    tracing::info!("burst: no worker can take tasks (none was set up); stopping");
                    break;
                }
                self.wait(Duration::from_secs(1), stop).await;
                continue;
            }
            // A burst may end only on an empty answer to a claim that asked every worker and that
            // began with nothing in flight. Idleness is read before the claim, not after: a task that
            // finishes during the claim may have put work back (a failure the task manager requeues)
            // after the task manager answered, and that answer must not end the burst.
            let asked_all = req.slots.len() >= askable;
            let idle_before = self.state.in_flight.count() == 0;
            let claimed = self.source.claim(&req).await;
            self.state
                .unreadable_answers
                .store(self.source.unreadable_answers(), Ordering::Relaxed);
            match claimed {
                Ok(ds) if ds.is_empty() => {
                    self.mark_up(true);
                    backoff = claim_backoff();
                    let retries_due = self.state.queued_retries.pending();
                    if self.opts.burst && idle_before && asked_all && !retries_due {
                        tracing::info!(
                            "burst: nothing left to claim and nothing in flight; stopping"
                        );
                        return;
                    }
                    tokio::select! {
                        _ = self.state.in_flight.changed() => {}
                        _ = self.source.wait_for_tasks() => {}
                        _ = stop.cancelled() => {}
                    }
                }
                Ok(ds) => {
                    self.mark_up(true);
                    backoff = claim_backoff();
                    for d in ds {
                        self.start(d, kill);
                    }
                }
                Err(e) => {
                    self.mark_up(false);
                    let wait = backoff.next().unwrap_or(CLAIM_BACKOFF_MAX);
                    tracing::warn!(error = %e, retry_in_ms = wait.as_millis() as u64, "cannot claim tasks");
                    self.wait(wait, stop).await;
                }
            }
        }
    }

    /// Stopping: no more claims; in-flight tasks finish within the grace period (then `kill`), and
    /// claims that never started are handed back.
    async fn drain(&self, kill: &CancellationToken) {
        self.tracker.close();
        self.source.stop_consuming().await;
        if !self.tracker.is_empty() {
            tracing::info!(
                in_flight = self.tracker.len(),
                grace_s = self.opts.shutdown_grace.as_secs_f64(),
                "stopping: waiting for in-flight tasks"
            );
            tokio::select! {
                _ = self.tracker.wait() => {}
                _ = tokio::time::sleep(self.opts.shutdown_grace) => {
                    tracing::warn!("shutdown grace elapsed: killing in-flight tasks and handing them back");
                    kill.cancel();
                }
                _ = kill.cancelled() => {}
            }
            self.tracker.wait().await;
        }
        // Claims that came back while their task was settling, never started: hand them back.
        for d in self.state.in_flight.take_ready() {
            if let Err(e) = self.source.release(&d.lease).await {
                tracing::warn!(task_id = %d.lease.task_id, error = %e, "could not hand the task back; it returns when its lease expires");
            }
        }
    }

    fn mark_up(&self, up: bool) {
        let was = self.state.task_manager_up.swap(up, Ordering::Relaxed);
        if up && !was {
            tracing::info!("task manager reachable again");
        }
    }

    /// Waits for a task to finish, `d` to pass, or `stop`.
    async fn wait(&self, d: Duration, stop: &CancellationToken) {
        tokio::select! {
            _ = self.state.in_flight.changed() => {}
            _ = tokio::time::sleep(d) => {}
            _ = stop.cancelled() => {}
        }
    }

    /// One slot per worker with free capacity (each up to the host's free capacity), and the host's free
    /// capacity as the overall limit: every type is asked for, and no more is claimed than can start.
    /// The order rotates so that a busy type cannot starve the others.
    fn claim_request(&self, rotate: &mut usize) -> ClaimRequest {
        let reg = self.registry();
        let free = self.global.available_permits();
        let ws = reg.workers();
        let mut slots = Vec::new();
        if free > 0 && !ws.is_empty() {
            *rotate = (*rotate + 1) % ws.len();
            for i in 0..ws.len() {
                let w = &ws[(*rotate + i) % ws.len()];
                let max = w.permits.available_permits().min(free);
                if max > 0 {
                    slots.push(ClaimSlot {
                        types: w.config.task_types.clone(),
                        max,
                    });
                }
            }
        }
        ClaimRequest {
            slots,
            known_types: reg.known_types(),
            limit: Some(free),
        }
    }

    fn settler(&self) -> Settler {
        Settler {
            source: self.source.clone(),
            state: self.state.clone(),
            observers: self.proxy.observers.clone(),
        }
    }

    /// Screens a claimed delivery, then runs it or dead-letters it.
    fn start(&self, d: Delivery, kill: &CancellationToken) {
        let id = d.lease.task_id.clone();
        let d = match self.state.in_flight.reclaim(d) {
            Reclaim::New(d) => *d,
            Reclaim::Adopted => {
                tracing::warn!(task_id = %id, "the task manager handed over a task that is running here (its claim timed out while it ran): no second process; the running task holds the fresh claim");
                return;
            }
            Reclaim::Deferred => {
                tracing::info!(task_id = %id, "the task manager handed over a task whose outcome is being recorded here: it starts again once that is done");
                return;
            }
        };
        self.state.queued_retries.claimed(&id);
        let reg = self.registry();
        let observers = &self.proxy.observers;
        let reruns = self.source.reruns_failures();
        match screen::screen(d, &reg, observers, &self.opts.host_id, reruns) {
            Screened::Run {
                lease,
                task,
                worker,
                first_attempt,
            } => self.spawn_run(
                Start {
                    lease,
                    task,
                    worker,
                    first_attempt,
                },
                kill,
            ),
            Screened::Dead {
                lease,
                judged,
                worker,
            } => self.spawn_dead(lease, *judged, worker),
        }
    }

    fn spawn_run(&self, s: Start, kill: &CancellationToken) {
        // Permits are taken here, before the next claim looks at what is free.
        let global = self.global.clone().try_acquire_owned().ok();
        let local = s.worker.permits.clone().try_acquire_owned().ok();
        let running = RunningTask {
            task_id: s.task.id.clone(),
            task_type: s.task.task_type.clone(),
            worker: s.worker.config.name.clone(),
            started_at: Stamp::now(),
            started: Instant::now(),
            attempt: s.first_attempt,
        };
        // The task's own stop: the host's kill, or a cancel its renewal reports.
        let stop = kill.child_token();
        let stats = s.worker.stats.clone();
        let mut guard =
            self.state
                .in_flight
                .register(s.lease.clone(), running, stop.clone(), stats);
        let ctx = TaskCtx {
            proxy: self.proxy.clone(),
            settler: self.settler(),
            global_sem: self.global.clone(),
            settling: self.settling.clone(),
            in_flight: self.state.in_flight.clone(),
            kill: kill.clone(),
        };
        self.tracker.spawn(async move {
            // A panic below (a bug) must not leave the task in limbo, held and renewed forever by a host
            // that forgot it, nor keep its capacity: the guard's drop removes it either way. The lease is
            // let go (no longer renewed): the task returns when it expires, as after a crash, and that
            // counts as a delivery, so a task that makes the host panic every time ends dead-lettered by
            // `max_deliveries`, not in a loop.
            let body = ctx.run(&s, (global, local), &mut guard, &stop);
            if AssertUnwindSafe(body).catch_unwind().await.is_err() {
                tracing::error!(task_id = %s.task.id, "internal error (a panic) while running the task; it returns to the queue when its lease expires");
            }
            drop(guard);
        });
    }

    /// Dead-letters a delivery that never ran (malformed, unknown type, delivery limit).
    fn spawn_dead(&self, lease: Lease, judged: Judged, worker: Option<Arc<WorkerEntry>>) {
        let settler = self.settler();
        if let crate::verdict::Verdict::Dead { message, .. } = &judged.verdict {
            tracing::warn!(task_id = %judged.task_id, error = %message, "dead-lettering a task that cannot run");
        }
        self.tracker.spawn(async move {
            let w = worker.as_deref();
            let never = CancellationToken::new();
            settler.settle(&lease, &judged, None, w, &never).await;
        });
    }
}

/// Used by `workerhost exec`: run one task through the proxy without a queue (every retry in process).
pub async fn exec_once(
    proxy: &Proxy,
    worker: &WorkerEntry,
    env: &Envelope,
    kill: &CancellationToken,
) -> Judged {
    proxy.run(worker, env, 1, kill).await
}
