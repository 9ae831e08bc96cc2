//! The loop: claim only what can start now, run each delivery through the proxy in its own task, renew
//! leases while tasks run, settle each outcome exactly once, and stop gracefully.
//!
//! Shutdown has two tokens: `stop` (first signal: take no more tasks, let in-flight ones finish) and
//! `kill` (grace elapsed or second signal: kill in-flight process groups, hand their tasks back).

use crate::observers::{Event, EventKind, Observers};
use crate::proxy::{Final, Proxy};
use crate::registry::{Registry, WorkerEntry};
use crate::runner::ProgressSink;
pub use crate::stats::RunningTask;
use futures_util::FutureExt as _;
use serde_json::json;
use std::collections::HashMap;
use std::panic::AssertUnwindSafe;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, RwLock};
use std::time::{Duration, Instant};
use task::{TaskCtx, settle};
use tokio::sync::{Notify, Semaphore};
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;
mod held;
mod task;
use held::{Held, Reclaim};

use workerhost_adapters::{
    ClaimRequest, ClaimSlot, Consumer, Delivery, Envelope, Lease, ResultDocument, ResultStatus,
    RevokeReason, Source, Stamp, now_ms, rfc3339_ms,
};

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
    pub in_flight: AtomicU64,
    /// The tasks running here now, by task id (for the status page and the in-flight gauge).
    pub tasks: Mutex<HashMap<String, RunningTask>>,
    /// Per running task, the token that stops its process (a child of the host's kill token), and
    /// whether a renewal said it was cancelled (then it is recorded `cancelled`, not handed back).
    pub stops: Mutex<HashMap<String, (CancellationToken, bool)>>,
}

impl HostState {
    /// Marks a running task cancelled and stops its process group.
    pub fn cancel_running(&self, task_id: &str) {
        if let Ok(mut s) = self.stops.lock()
            && let Some((token, cancelled)) = s.get_mut(task_id)
        {
            *cancelled = true;
            token.cancel();
        }
    }

    /// Whether a renewal said this running task was cancelled.
    pub fn was_cancelled(&self, task_id: &str) -> bool {
        self.stops
            .lock()
            .ok()
            .and_then(|s| s.get(task_id).map(|(_, c)| *c))
            .unwrap_or(false)
    }
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
    held: Arc<Held>,
    done: Arc<Notify>,
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
        let proxy = Proxy::new(opts.host_id.clone(), observers, progress);
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
                in_flight: AtomicU64::new(0),
                tasks: Mutex::default(),
                stops: Mutex::default(),
            }),
            held: Arc::default(),
            done: Arc::default(),
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
        let mut rotate = 0usize;
        // The adapter's own waits (a 429's Retry-After) end when stopping begins, not after them.
        let watcher = {
            let (source, stop) = (self.source.clone(), stop.clone());
            tokio::spawn(async move {
                stop.cancelled().await;
                source.begin_shutdown();
            })
        };
        let mut backoff = Duration::from_millis(100);
        while !stop.is_cancelled() {
            for d in self.held.take_ready() {
                self.start(d, &kill);
            }
            let req = self.claim_request(&mut rotate);
            if req.slots.is_empty() {
                self.wait(Duration::from_secs(1), &stop).await;
                continue;
            }
            // A burst may end only on an empty answer to a claim that asked every worker and that
            // began with nothing in flight. Idleness is read before the claim, not after: a task that
            // finishes during the claim may have put work back (a failure the task manager requeues)
            // after the task manager answered, and that answer must not end the burst.
            let asked_all = req.slots.len() == self.registry().workers().len();
            let idle_before = self.state.in_flight.load(Ordering::SeqCst) == 0;
            let claimed = self.source.claim(&req).await;
            self.state
                .unreadable_answers
                .store(self.source.unreadable_answers(), Ordering::Relaxed);
            match claimed {
                Ok(ds) if ds.is_empty() => {
                    self.mark_up(true);
                    backoff = Duration::from_millis(100);
                    if self.opts.burst && idle_before && asked_all {
                        tracing::info!(
                            "burst: nothing left to claim and nothing in flight; stopping"
                        );
                        break;
                    }
                    tokio::select! {
                        _ = self.done.notified() => {}
                        _ = self.source.wait_for_tasks() => {}
                        _ = stop.cancelled() => {}
                    }
                }
                Ok(ds) => {
                    self.mark_up(true);
                    backoff = Duration::from_millis(100);
                    for d in ds {
                        self.start(d, &kill);
                    }
                }
                Err(e) => {
                    self.mark_up(false);
                    tracing::warn!(error = %e, retry_in_ms = backoff.as_millis() as u64, "cannot claim tasks");
                    self.wait(backoff, &stop).await;
                    backoff = (backoff * 2).min(Duration::from_secs(30));
                }
            }
        }
        watcher.abort();
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
        for d in self.held.take_ready() {
            if let Err(e) = self.source.release(&d.lease).await {
                tracing::warn!(task_id = %d.lease.task_id, error = %e, "could not hand the task back; it returns when its lease expires");
            }
        }
        renewer_stop.cancel();
        let _ = renewer.await;
        self.source.close().await;
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
            _ = self.done.notified() => {}
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

    /// `task_failed` then `task_dead_lettered` for a delivery the host dead-letters without running it
    /// (malformed, unknown type, delivery limit), so hooks and metrics see it like any other dead task.
    fn emit_dead(&self, id: &str, task_type: Option<&str>, worker: Option<&str>, msg: &str) {
        for k in [EventKind::TaskFailed, EventKind::TaskDeadLettered] {
            let mut e = Event::new(k, &self.opts.host_id);
            e.task_id = Some(id.to_string());
            e.task_type = task_type.map(str::to_string);
            e.worker = worker.map(str::to_string);
            e.error = Some(msg.to_string());
            self.proxy.observers.emit(e);
        }
    }

    fn start(&self, d: Delivery, kill: &CancellationToken) {
        let id = d.lease.task_id.clone();
        let d = match self.held.reclaim(d) {
            Reclaim::New(d) => d,
            Reclaim::Adopted => {
                tracing::warn!(task_id = %id, "the task manager handed over a task that is running here (its claim timed out while it ran): no second process; the running task holds the fresh claim");
                return;
            }
            Reclaim::Deferred => {
                tracing::info!(task_id = %id, "the task manager handed over a task whose outcome is being recorded here: it starts again once that is done");
                return;
            }
        };
        let reg = self.registry();
        let env = match &d.envelope {
            Err(m) => {
                self.emit_dead(&d.lease.task_id, None, None, &m.reason);
                let error = json!({"message": m.reason, "outcome": "malformed", "raw": m.raw});
                let doc = self.dead_doc(&d.lease.task_id, "", None, error, 0, None);
                self.spawn_settle(d.lease, doc, None);
                return;
            }
            Ok(env) => env.clone(),
        };
        let mut received = Event::new(EventKind::TaskReceived, &self.opts.host_id);
        received.task_id = Some(env.id.clone());
        received.task_type = Some(env.task_type.clone());
        let Some(worker) = reg.for_type(&env.task_type).cloned() else {
            self.proxy.observers.emit(received);
            let msg = format!("no worker handles type {}", env.task_type);
            self.emit_dead(&env.id, Some(&env.task_type), None, &msg);
            let error = json!({"message": msg, "outcome": "unknown_type"});
            let doc = self.dead_doc(
                &env.id,
                &env.task_type,
                None,
                error,
                0,
                env.correlation_id.clone(),
            );
            self.spawn_settle(d.lease, doc, None);
            return;
        };
        received.worker = Some(worker.config.name.clone());
        self.proxy.observers.emit(received);
        if d.deliveries > worker.config.max_deliveries {
            let msg = format!(
                "delivery limit reached: delivered {} times without an outcome (max_deliveries {})",
                d.deliveries, worker.config.max_deliveries
            );
            self.emit_dead(
                &env.id,
                Some(&env.task_type),
                Some(&worker.config.name),
                &msg,
            );
            let error = json!({"message": msg, "outcome": "delivery_limit"});
            let doc = self.dead_doc(
                &env.id,
                &env.task_type,
                Some(&worker.config.name),
                error,
                d.deliveries - 1,
                env.correlation_id.clone(),
            );
            self.spawn_settle(d.lease, doc, Some(worker));
            return;
        }
        // Earlier deliveries count as attempts: one each, or a whole round each where the task manager
        // reruns failures itself (numbers then go on across rounds instead of repeating).
        let deliveries = d.deliveries.max(1);
        let first_attempt = if self.source.reruns_failures() {
            (deliveries - 1)
                .saturating_mul(worker.config.max_retries.saturating_add(1))
                .saturating_add(1)
        } else {
            deliveries
        };
        // Permits are taken here, before the next claim looks at what is free.
        let global = self.global.clone().try_acquire_owned().ok();
        let local = worker.permits.clone().try_acquire_owned().ok();
        self.state.in_flight.fetch_add(1, Ordering::SeqCst);
        worker.stats.in_flight.fetch_add(1, Ordering::Relaxed);
        self.held.insert(d.lease.clone());
        if let Ok(mut t) = self.state.tasks.lock() {
            let task = RunningTask {
                task_id: env.id.clone(),
                task_type: env.task_type.clone(),
                worker: worker.config.name.clone(),
                started_at: Stamp::now(),
                started: Instant::now(),
                attempt: first_attempt,
            };
            t.insert(env.id.clone(), task);
        }
        let ctx = TaskCtx {
            source: self.source.clone(),
            proxy: self.proxy.clone(),
            global_sem: self.global.clone(),
            settling: self.settling.clone(),
            held: self.held.clone(),
            done: self.done.clone(),
            state: self.state.clone(),
        };
        // The task's own stop: the host's kill, or a cancel its renewal reports.
        let kill = kill.child_token();
        if let Ok(mut s) = self.state.stops.lock() {
            s.insert(env.id.clone(), (kill.clone(), false));
        }
        self.tracker.spawn(async move {
            // A panic below (a bug) must not leave the task in limbo, held and renewed forever by a host
            // that forgot it, nor keep its capacity. The lease is let go (no longer renewed): the task
            // returns when it expires, as after a crash, and that counts as a delivery, so a task that
            // makes the host panic every time ends dead-lettered by `max_deliveries`, not in a loop.
            let body = ctx.run(&worker, &env, &d.lease, first_attempt, global, local, &kill);
            let permits = match AssertUnwindSafe(body).catch_unwind().await {
                Ok(permits) => permits,
                Err(_) => {
                    tracing::error!(task_id = %env.id, "internal error (a panic) while running the task; it returns to the queue when its lease expires");
                    None
                }
            };
            ctx.held.remove(&d.lease.task_id);
            if let Ok(mut t) = ctx.state.tasks.lock() {
                t.remove(&env.id);
            }
            if let Ok(mut s) = ctx.state.stops.lock() {
                s.remove(&env.id);
            }
            // Capacity first, then the count: whoever sees `in_flight` drop sees the capacity free.
            drop(permits);
            worker.stats.in_flight.fetch_sub(1, Ordering::Relaxed);
            ctx.state.in_flight.fetch_sub(1, Ordering::SeqCst);
            ctx.done.notify_one();
        });
    }

    fn dead_doc(
        &self,
        id: &str,
        task_type: &str,
        worker: Option<&str>,
        error: serde_json::Value,
        attempts: u32,
        correlation_id: Option<String>,
    ) -> ResultDocument {
        let now = rfc3339_ms(now_ms());
        ResultDocument {
            id: id.to_string(),
            task_type: task_type.to_string(),
            status: ResultStatus::Dead,
            result: None,
            error: Some(error),
            attempts,
            worker: worker.map(str::to_string),
            host: self.opts.host_id.clone(),
            started_at: now.clone(),
            finished_at: now,
            duration_ms: 0,
            correlation_id,
            usage: None,
        }
    }

    /// Dead-letters a delivery that never ran (malformed, unknown type, delivery limit).
    fn spawn_settle(&self, lease: Lease, doc: ResultDocument, worker: Option<Arc<WorkerEntry>>) {
        let source = self.source.clone();
        let state = self.state.clone();
        if let Some(w) = &worker {
            let msg = doc.error_message().unwrap_or_else(|| "dead".into());
            w.stats.record_failure(msg, doc.finished_at.clone());
        }
        tracing::warn!(task_id = %doc.id, error = %doc.error.clone().unwrap_or_default(), "dead-lettering a task that cannot run");
        self.tracker.spawn(async move {
            settle(&source, &lease, &doc, &state, &CancellationToken::new()).await;
        });
    }

    /// Renews every in-flight lease every third of the lease.
    fn renew_loop(
        &self,
        stop: CancellationToken,
    ) -> impl std::future::Future<Output = ()> + Send + 'static {
        let source = self.source.clone();
        let claims = self.held.clone();
        let state = self.state.clone();
        let every = (self.opts.lease / 3).max(Duration::from_millis(50));
        async move {
            loop {
                tokio::select! {
                    _ = tokio::time::sleep(every) => {}
                    _ = stop.cancelled() => return,
                }
                let held: Vec<Lease> = claims.leases();
                if held.is_empty() {
                    continue;
                }
                match source.renew(&held).await {
                    Ok(revoked) => {
                        // Only what concerns a task still running on that claim: one that settled
                        // while this renewal was on its way is simply no longer pending.
                        for r in revoked.into_iter().filter(|r| claims.runs_with(&r.lease)) {
                            match r.reason {
                                RevokeReason::Lost => {
                                    tracing::warn!(task_id = %r.lease.task_id, "lease lost while the task runs: another host may run it too; its outcome will not be recorded by this host")
                                }
                                RevokeReason::Cancelled => {
                                    tracing::info!(task_id = %r.lease.task_id, "task cancelled while it runs: stopping its process");
                                    state.cancel_running(&r.lease.task_id);
                                }
                            }
                        }
                    }
                    Err(e) => tracing::warn!(error = %e, "cannot renew leases"),
                }
            }
        }
    }
}

/// Used by `workerhost exec`: run one task through the proxy without a queue.
pub async fn exec_once(
    proxy: &Proxy,
    worker: &WorkerEntry,
    env: &Envelope,
    kill: &CancellationToken,
) -> Final {
    proxy.run(worker, env, 1, kill).await
}
