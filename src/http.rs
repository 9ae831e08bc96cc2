//! The HTTP endpoints (axum): `/health`, `/workers`, `/workers/{name}/health`, `/metrics` and a small
//! status page at `/`. Read-only views of the host's state. With a token, everything but `/health` wants
//! `Authorization: Bearer <token>` (or `?token=<token>`, for the status page in a browser).

mod ops;
mod page;
mod page_ops;

use crate::host::HostState;
use crate::metrics::Metrics;
use crate::observers::StatusBoard;
use crate::probe::{self, Check};
use crate::registry::{Registry, WorkerEntry};
use axum::extract::{Path, Request, State};
use axum::http::{HeaderValue, StatusCode, header};
use axum::middleware::{self, Next};
use axum::response::{Html, IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Json, Router};
use serde_json::{Value, json};
use std::sync::atomic::Ordering;
use std::sync::{Arc, RwLock};
use tokio_util::sync::CancellationToken;

/// What the endpoints read.
pub struct HttpState {
    pub host: Arc<HostState>,
    pub registry: Arc<RwLock<Arc<Registry>>>,
    pub metrics: Arc<Metrics>,
    pub board: Arc<StatusBoard>,
    /// This start's host id.
    pub host_id: String,
    /// The task manager's type (`sqlite`, `redis`, ...).
    pub task_manager: String,
    /// Bearer token for everything but `/health`.
    pub token: Option<String>,
    /// The task manager, for the operations (cancel, retry, pause) and the page's queue views.
    pub source: Arc<workerhost_adapters::Source>,
    pub depth: Arc<crate::depth::DepthSampler>,
    /// Whether the listener is on a loopback address (without a token, the POSTs are served only then).
    pub loopback: bool,
}

impl HttpState {
    fn registry(&self) -> Arc<Registry> {
        match self.registry.read() {
            Ok(r) => r.clone(),
            Err(p) => p.into_inner().clone(),
        }
    }
}

type Shared = Arc<HttpState>;

/// Binds the listen address (`127.0.0.1:8080`, `0.0.0.0:8080`, `[::1]:8080`, `localhost:8080`).
pub async fn bind(addr: &str) -> std::io::Result<tokio::net::TcpListener> {
    tokio::net::TcpListener::bind(addr).await
}

/// Serves until `stop`.
pub async fn serve(
    listener: tokio::net::TcpListener,
    state: Shared,
    stop: CancellationToken,
) -> std::io::Result<()> {
    axum::serve(listener, router(state))
        .with_graceful_shutdown(stop.cancelled_owned())
        .await
}

pub fn router(state: Shared) -> Router {
    let protected = Router::new()
        .route("/", get(status_page))
        .route("/workers", get(workers))
        .route("/workers/{name}/health", get(worker_health))
        .route("/metrics", get(metrics))
        .route("/queue", get(ops::queue))
        .merge(
            Router::new()
                .route("/tasks/{id}/cancel", post(ops::cancel))
                .route("/dead/{id}/retry", post(ops::retry))
                .route("/types/{type}/pause", post(ops::pause))
                .route("/types/{type}/resume", post(ops::resume))
                .route_layer(middleware::from_fn_with_state(state.clone(), ops::guard)),
        )
        .route_layer(middleware::from_fn_with_state(state.clone(), auth));
    Router::new()
        .route("/health", get(health))
        .merge(protected)
        .fallback(not_found)
        .with_state(state)
}

fn error(status: StatusCode, message: &str) -> Response {
    (status, Json(json!({"error": message}))).into_response()
}

async fn not_found() -> Response {
    error(StatusCode::NOT_FOUND, "not found")
}

/// Compares without an early exit, so timing does not tell how much of a guess was right.
fn same(a: &[u8], b: &[u8]) -> bool {
    a.len() == b.len() && a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

async fn auth(State(s): State<Shared>, req: Request, next: Next) -> Response {
    let Some(token) = s.token.as_deref() else {
        return next.run(req).await;
    };
    let bearer = req
        .headers()
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.strip_prefix("Bearer "))
        .map(str::trim);
    let query = req.uri().query().and_then(|q| {
        q.split('&')
            .find_map(|kv| kv.strip_prefix("token="))
            .map(page::percent_decode)
    });
    let ok = bearer.is_some_and(|b| same(b.as_bytes(), token.as_bytes()))
        || query.is_some_and(|q| same(q.as_bytes(), token.as_bytes()));
    if ok {
        return next.run(req).await;
    }
    let mut r = error(
        StatusCode::UNAUTHORIZED,
        "missing or wrong token: send Authorization: Bearer <host.http.token>",
    );
    r.headers_mut()
        .insert(header::WWW_AUTHENTICATE, HeaderValue::from_static("Bearer"));
    r
}

/// The health document; 503 while the task manager is unreachable.
pub fn health_doc(s: &HttpState) -> (StatusCode, Value) {
    let up = s.host.task_manager_up.load(Ordering::Relaxed);
    let doc = json!({
        "status": if up { "ok" } else { "degraded" },
        "uptime_seconds": s.host.started.elapsed().as_secs(),
        "task_manager": {"type": s.task_manager, "connected": up},
        "workers": s.registry().workers().len(),
        // Their names; the code stays 200 (a worker's trouble is its own `/workers/{name}/health`).
        "unhealthy_workers": s
            .registry()
            .workers()
            .iter()
            .filter(|w| !worker_healthy(w))
            .map(|w| w.config.name.clone())
            .collect::<Vec<_>>(),
        "in_flight": s.host.in_flight.count(),
        "host": s.host_id,
        "version": env!("CARGO_PKG_VERSION"),
    });
    let code = if up {
        StatusCode::OK
    } else {
        StatusCode::SERVICE_UNAVAILABLE
    };
    (code, doc)
}

async fn health(State(s): State<Shared>) -> Response {
    let (code, doc) = health_doc(&s);
    (code, Json(doc)).into_response()
}

fn kind_of(w: &WorkerEntry) -> &'static str {
    match w.config.kind {
        crate::config::WorkerKind::Python { .. } => "python",
        crate::config::WorkerKind::Command { .. } => "command",
        crate::config::WorkerKind::Remote { .. } => "remote",
    }
}

fn mode_of(w: &WorkerEntry) -> &'static str {
    match w.config.mode {
        crate::config::Mode::Spawn => "spawn",
        crate::config::Mode::Pool => "pool",
    }
}

/// Whether all of `w`'s checks pass: what `healthy` means everywhere it is shown.
fn worker_healthy(w: &WorkerEntry) -> bool {
    worker_checks(w).iter().all(|c| c.ok)
}

/// A worker's counters, as `/workers` and `/workers/{name}/health` show them, with the limits in force.
pub fn worker_doc(w: &WorkerEntry) -> Value {
    let st = &w.stats;
    let last = st.last();
    json!({
        "name": w.config.name,
        "kind": kind_of(w),
        "mode": mode_of(w),
        "task_types": w.config.task_types,
        "concurrency": w.config.concurrency,
        "timeout_seconds": w.config.timeout.as_secs_f64(),
        "max_retries": w.config.max_retries,
        "in_flight": st.in_flight.load(Ordering::Relaxed),
        "succeeded": st.succeeded.load(Ordering::Relaxed),
        "failed": st.failed.load(Ordering::Relaxed),
        "restarts": st.restarts.load(Ordering::Relaxed),
        "healthy": worker_healthy(w),
        "dependencies": crate::setup::dependencies(&w.config).state.as_str(),
        // Held back: `run --setup` (or a reload) could not make its environment; it takes no tasks.
        "held": w.stats.held.load(Ordering::Relaxed),
        "limits": w.config.limits,
        "retry_on_resource_limit": w.config.retry_on_resource_limit,
        "user": w.config.user.as_ref().map(|u| u.name.as_str()),
        "last_error": last.error,
        "last_error_at": last.error_at,
        "last_success_at": last.success_at,
        "description": w.config.description,
        "metadata": w.config.metadata,
    })
}

async fn workers(State(s): State<Shared>) -> Response {
    let reg = s.registry();
    let list: Vec<Value> = reg.workers().iter().map(|w| worker_doc(w)).collect();
    Json(Value::Array(list)).into_response()
}

/// The file-system probes plus whether the last start worked.
pub fn worker_checks(w: &WorkerEntry) -> Vec<Check> {
    let mut checks = probe::static_checks(&w.config);
    let started = w.stats.healthy.load(Ordering::Relaxed);
    checks.push(Check {
        check: "last_start",
        ok: started,
        detail: if started {
            "no spawn error since the last successful start".into()
        } else {
            "the last start failed (spawn error)".into()
        },
    });
    checks
}

async fn worker_health(State(s): State<Shared>, Path(name): Path<String>) -> Response {
    let reg = s.registry();
    let Some(w) = reg.by_name(&name) else {
        return error(StatusCode::NOT_FOUND, &format!("no worker named {name:?}"));
    };
    let checks = worker_checks(w);
    let ok = checks.iter().all(|c| c.ok);
    let mut doc = worker_doc(w);
    if let Value::Object(m) = &mut doc {
        m.insert("status".into(), json!(if ok { "ok" } else { "unhealthy" }));
        m.insert("checks".into(), json!(checks));
    }
    let code = if ok {
        StatusCode::OK
    } else {
        StatusCode::SERVICE_UNAVAILABLE
    };
    (code, Json(doc)).into_response()
}

async fn metrics(State(s): State<Shared>) -> Response {
    let known = s.registry().known_types();
    match s.depth.get(crate::depth::METRICS_MAX_AGE, &known).await {
        Ok(d) => s.metrics.set_queue(&d),
        Err(crate::depth::DepthError::NotSupported(_)) => {}
        Err(crate::depth::DepthError::Failed(e)) => {
            tracing::debug!(error = %e, "queue depth not sampled; the queue gauges keep their last values")
        }
    }
    match s.metrics.render(&s.host, &s.registry()) {
        Ok(text) => (
            [(
                header::CONTENT_TYPE,
                HeaderValue::from_static("text/plain; version=0.0.4; charset=utf-8"),
            )],
            text,
        )
            .into_response(),
        Err(e) => error(StatusCode::INTERNAL_SERVER_ERROR, &e),
    }
}

async fn status_page(State(s): State<Shared>, req: Request) -> Html<String> {
    let token_query = s
        .token
        .as_ref()
        .and_then(|_| req.uri().query())
        .and_then(|q| q.split('&').find(|kv| kv.starts_with("token=")))
        .map(|kv| format!("?{kv}"))
        .unwrap_or_default();
    let view = page_ops::gather(&s, req.uri().query()).await;
    Html(page::render(&s, &s.registry(), &token_query, &view))
}
