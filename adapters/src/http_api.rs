//! The PrismQ TaskManager HTTP API, coded to how the service really answers (SPEC section 4a, "Facts
//! observed on the real service"): bodies may come as `text/html`, ids as strings or numbers, unknown
//! things are 200 with no items, an empty queue is HTTP 500 "There is no active transaction", a claim
//! that is gone is 400/403/404 on complete, 429 carries `Retry-After`.
//!
//! The service has no heartbeat and no "unclaim": renewing is a no-op, and a task handed back on
//! shutdown returns when the service's own claim timeout expires. Its claim timeout also lets it hand a
//! task this host still runs to this host again; the host recognises that (see `workerhost::host`).
//!
//! The pieces: [`client`] (one request, 401/429), [`claim`] (types and claims), [`complete`] (settling),
//! [`progress`] (the throttle), [`status`] (submit and status), [`retry_after`].

mod claim;
mod client;
mod complete;
mod progress;
mod retry_after;
mod status;

use crate::{
    AdapterError, ClaimRequest, Consumer, Delivery, Envelope, Lease, Queue, ResultDocument,
    Revoked, Settled, TaskStatus,
};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

mod settings;

pub use settings::Settings;

/// What the adapter is opened with.
#[derive(Debug, Clone)]
pub struct Options {
    /// Base URL, including `/api`.
    pub url: String,
    pub api_key: String,
    pub host_id: String,
    pub poll_interval: Duration,
    pub sort_by: Option<String>,
    pub sort_order: Option<String>,
    pub register_task_types: bool,
    /// Every task type some worker handles; resolved to the service's numeric ids.
    pub task_types: Vec<String>,
}

impl Options {
    /// The adapter's options from its settings, for host `host_id` whose workers handle `task_types`.
    pub fn new(settings: &Settings, host_id: String, task_types: Vec<String>) -> Options {
        Options {
            url: settings
                .url
                .as_deref()
                .unwrap_or_default()
                .trim()
                .trim_end_matches('/')
                .to_string(),
            api_key: settings.api_key.to_string(),
            host_id,
            poll_interval: settings.poll_interval.0,
            sort_by: settings.claim_sort_by.as_deref().map(String::from),
            sort_order: settings.claim_sort_order.as_deref().map(String::from),
            register_task_types: settings.register_task_types,
            task_types,
        }
    }
}

pub struct HttpSource {
    opts: Options,
    api: Arc<client::Api>,
    types: claim::Types,
    throttle: Arc<progress::Throttle>,
    /// Claim answers that were not a task (logged as errors, exported as a metric).
    unreadable: AtomicU64,
}

impl HttpSource {
    /// Opens the adapter. Nothing is sent yet: task types are resolved (and registered) at the first
    /// claim, so `check`, `submit` and `status` never change the service.
    pub async fn connect(opts: Options) -> Result<HttpSource, AdapterError> {
        if opts.api_key.is_empty() {
            return Err(AdapterError::Invalid(
                "task_manager.api_key is empty: the TaskManager API needs a key".into(),
            ));
        }
        let api = client::Api::new(&opts.url, &opts.api_key, &opts.host_id, opts.poll_interval)?;
        Ok(HttpSource {
            opts,
            api: Arc::new(api),
            types: claim::Types::default(),
            throttle: Arc::new(progress::Throttle::new(Duration::from_secs(1))),
            unreadable: AtomicU64::new(0),
        })
    }
}

impl Consumer for HttpSource {
    fn kind(&self) -> &'static str {
        "http"
    }

    async fn claim(&self, req: &ClaimRequest) -> Result<Vec<Delivery>, AdapterError> {
        self.claim_all(req).await
    }

    async fn renew(&self, _leases: &[Lease]) -> Result<Vec<Revoked>, AdapterError> {
        // The service has no heartbeat: a claim lasts its claim timeout (see `workerhost check`).
        Ok(Vec::new())
    }

    async fn settle(&self, lease: &Lease, doc: &ResultDocument) -> Result<Settled, AdapterError> {
        self.complete(lease, doc).await
    }

    async fn release(&self, lease: &Lease) -> Result<(), AdapterError> {
        self.hand_back(lease).await;
        Ok(())
    }

    /// Reads only: `/health`, then every task type (a 401 names the key, a 404 the missing `/api`). A
    /// type the service does not know yet is an error only when `run` would not register it.
    async fn ping(&self) -> Result<(), AdapterError> {
        let health = self.api.call(reqwest::Method::GET, "/health", None).await?;
        if health.status == 404 {
            return Err(claim::missing_api(&self.api.url, "/health"));
        }
        if health.status >= 500 {
            return Err(AdapterError::Unavailable(format!(
                "GET /health answered HTTP {}",
                health.status
            )));
        }
        let unresolved = self.resolve_types(false).await?;
        if unresolved.is_empty() {
            return Ok(());
        }
        if self.opts.register_task_types {
            tracing::warn!(
                "task types not registered with the TaskManager yet: {}; `workerhost run` registers them (register_task_types: true)",
                unresolved.join(", ")
            );
            return Ok(());
        }
        Err(AdapterError::Backend(format!(
            "task types unknown to the TaskManager: {} (register_task_types is false)",
            unresolved.join(", ")
        )))
    }

    fn idle_wait(&self) -> Duration {
        // With jitter, so many hosts do not poll in lockstep.
        self.opts
            .poll_interval
            .mul_f64(0.75 + rand_fraction() * 0.5)
    }

    fn wants_progress(&self) -> bool {
        true
    }

    /// On a reported failure the service puts the task back while its attempts are below its maximum.
    fn reruns_failures(&self) -> bool {
        true
    }

    fn progress(&self, task_id: &str, percent: f64, message: Option<&str>) {
        self.offer_progress(task_id, percent, message);
    }

    fn begin_shutdown(&self) {
        self.api.shutdown.cancel();
    }

    fn unreadable_answers(&self) -> u64 {
        self.unreadable.load(Ordering::Relaxed)
    }
}

impl Queue for HttpSource {
    async fn submit(&self, envelope: &Envelope) -> Result<(), AdapterError> {
        self.create(envelope).await.map(|_| ())
    }

    async fn enqueue(&self, envelope: &Envelope) -> Result<String, AdapterError> {
        self.create(envelope).await
    }

    async fn status(&self, id: &str) -> Result<Option<TaskStatus>, AdapterError> {
        self.read_status(id).await
    }
}

/// A fraction in [0, 1) from the clock, enough to spread polls (no rand dependency here).
fn rand_fraction() -> f64 {
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.subsec_nanos())
        .unwrap_or(0);
    f64::from(nanos % 1000) / 1000.0
}
