//! The state-changing endpoints of SPEC section 8 and `GET /queue`:
//! `POST /tasks/{id}/cancel`, `POST /dead/{id}/retry`, `POST /types/{type}/pause|resume`.
//!
//! Each POST answers JSON, or, for a browser's form post (`application/x-www-form-urlencoded`), a `303`
//! back to the status page with a message, so the page works without script. Unknown ids are 404 and
//! refusals (not dead, already finished) 409, both with a JSON `error`. "Not supported by this task
//! manager" is 501.
//!
//! Safety: with a token, every one needs it (the auth layer). Without one, they are served only on a
//! loopback listener, and a browser's cross-site post (an `Origin` that is not this host) is refused,
//! so a web page the operator visits cannot post to a host on their machine.

use super::{Shared, error, page};
use crate::depth::DepthError;
use axum::Json;
use axum::extract::{Path, Request, State};
use axum::http::{HeaderMap, StatusCode, header};
use axum::middleware::Next;
use axum::response::{IntoResponse, Redirect, Response};
use serde_json::json;
use std::time::Duration;
use workerhost_adapters::Queue;
use workerhost_adapters::ops::{Cancelled, DeadSelection, OpsError};

/// Refuses state-changing requests that the token rules do not allow (see the module docs).
pub(super) async fn guard(State(s): State<Shared>, req: Request, next: Next) -> Response {
    if s.token.is_none() {
        if !s.loopback {
            return error(
                StatusCode::FORBIDDEN,
                "state-changing requests need host.http.token on a listener beyond loopback",
            );
        }
        if cross_site(req.headers()) {
            return error(
                StatusCode::FORBIDDEN,
                "cross-site request refused: post from this host's own status page",
            );
        }
    }
    next.run(req).await
}

/// A browser says where a post comes from in `Origin`; it must name the host it posts to.
fn cross_site(h: &HeaderMap) -> bool {
    let Some(origin) = h.get(header::ORIGIN).and_then(|v| v.to_str().ok()) else {
        return false;
    };
    let host = h.get(header::HOST).and_then(|v| v.to_str().ok());
    let origin_host = origin
        .split_once("://")
        .map(|(_, rest)| rest)
        .unwrap_or(origin);
    host.is_none_or(|h| h != origin_host)
}

/// A browser's form post (answered with a redirect to the page) rather than an API call (JSON).
fn from_form(h: &HeaderMap) -> bool {
    h.get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.starts_with("application/x-www-form-urlencoded"))
}

/// The token query of the request (`token=...`), kept on the redirect back to the page.
fn token_of(s: &Shared, req_query: Option<&str>) -> Option<String> {
    s.token.as_ref()?;
    req_query?
        .split('&')
        .find(|kv| kv.starts_with("token="))
        .map(str::to_string)
}

/// The answer to an operation: JSON for API calls, a redirect with a message for the page's forms.
fn answer(
    s: &Shared,
    headers: &HeaderMap,
    query: Option<&str>,
    result: Result<serde_json::Value, OpsError>,
) -> Response {
    if from_form(headers) {
        let message = match &result {
            Ok(v) => v["message"].as_str().unwrap_or("done").to_string(),
            Err(e) => e.to_string(),
        };
        let mut to = format!("/?msg={}", page::query_escape(&message));
        if let Some(t) = token_of(s, query) {
            to.push('&');
            to.push_str(&t);
        }
        return Redirect::to(&to).into_response();
    }
    match result {
        Ok(v) => Json(v).into_response(),
        Err(e) => {
            let code = match &e {
                OpsError::NotFound { .. } => StatusCode::NOT_FOUND,
                OpsError::NotDead { .. } | OpsError::Finished { .. } => StatusCode::CONFLICT,
                OpsError::NotSupported { .. } => StatusCode::NOT_IMPLEMENTED,
                OpsError::Adapter(_) => StatusCode::SERVICE_UNAVAILABLE,
            };
            error(code, &e.to_string())
        }
    }
}

pub(super) async fn cancel(
    State(s): State<Shared>,
    Path(id): Path<String>,
    headers: HeaderMap,
    uri: axum::http::Uri,
) -> Response {
    let r = s.source.cancel(&id).await.map(|c| {
        let message = match c {
            Cancelled::Done => format!("cancelled {id}"),
            Cancelled::Requested => {
                format!("{id} is running: its host stops it at its next lease renewal")
            }
        };
        json!({"id": id, "cancel": c, "message": message})
    });
    answer(&s, &headers, uri.query(), r)
}

pub(super) async fn retry(
    State(s): State<Shared>,
    Path(id): Path<String>,
    headers: HeaderMap,
    uri: axum::http::Uri,
) -> Response {
    let r = s
        .source
        .dead_retry(&DeadSelection::Ids(vec![id.clone()]))
        .await
        .map(|n| json!({"id": id, "retried": n, "message": format!("{id} is queued again")}));
    answer(&s, &headers, uri.query(), r)
}

async fn set_paused(
    s: Shared,
    task_type: String,
    paused: bool,
    h: HeaderMap,
    q: Option<&str>,
) -> Response {
    let r = s.source.set_paused(&task_type, paused).await.map(|()| {
        let verb = if paused { "paused" } else { "resumed" };
        json!({"type": task_type, "paused": paused, "message": format!("{verb} {task_type}")})
    });
    answer(&s, &h, q, r)
}

pub(super) async fn pause(
    State(s): State<Shared>,
    Path(t): Path<String>,
    headers: HeaderMap,
    uri: axum::http::Uri,
) -> Response {
    set_paused(s, t, true, headers, uri.query()).await
}

pub(super) async fn resume(
    State(s): State<Shared>,
    Path(t): Path<String>,
    headers: HeaderMap,
    uri: axum::http::Uri,
) -> Response {
    set_paused(s, t, false, headers, uri.query()).await
}

/// `GET /queue`: the JSON of `workerhost queue --json` (a fresh sample).
pub(super) async fn queue(State(s): State<Shared>) -> Response {
    match s
        .depth
        .get(Duration::ZERO, &s.registry().known_types())
        .await
    {
        Ok(d) => Json(d).into_response(),
        Err(DepthError::NotSupported(m)) => error(StatusCode::NOT_IMPLEMENTED, &m),
        Err(DepthError::Failed(m)) => error(StatusCode::SERVICE_UNAVAILABLE, &m),
    }
}
