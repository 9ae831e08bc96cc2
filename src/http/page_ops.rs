//! The operating parts of the status page: a message after a form post, "find a task by id", the queue
//! table with pause/resume, the dead letters with a retry button (from the task manager, so they survive
//! a restart), and the cancel buttons. Every button is a plain form that POSTs to the endpoint of
//! [`super::ops`], carrying the token in its action URL as the page's links do.

use super::HttpState;
use super::page::{esc, path_segment};
use crate::depth::DepthError;
use std::fmt::Write;
use std::time::Duration;
use workerhost_adapters::ops::{DeadFilter, DeadLetter, TypeDepth};
use workerhost_adapters::{Queue, TaskState, TaskStatus};

/// How many dead letters the page shows.
const DEAD_SHOWN: usize = 20;
/// The page may show a depth sample this old (it reloads every few seconds).
const PAGE_MAX_AGE: Duration = Duration::from_secs(2);

/// What the page shows beside the host's own state, read from the task manager per request.
pub struct OpsView {
    pub depth: Result<Vec<TypeDepth>, DepthError>,
    /// `None`: this task manager keeps no dead letters the host can read (the page shows its own).
    pub dead: Option<Result<Vec<DeadLetter>, String>>,
    /// `?task=ID`: that task's status.
    pub found: Option<(String, Result<Option<TaskStatus>, String>)>,
    /// `?msg=...`: what the last form post did.
    pub message: Option<String>,
}

/// Reads what the page needs from the task manager. `query` is the page's query string.
pub async fn gather(s: &HttpState, query: Option<&str>) -> OpsView {
    let param = |name: &str| {
        query?
            .split('&')
            .find_map(|kv| kv.strip_prefix(name)?.strip_prefix('='))
            .map(super::page::percent_decode)
            .filter(|v| !v.trim().is_empty())
    };
    let depth = s.depth.get(PAGE_MAX_AGE, &s.registry().known_types()).await;
    let filter = DeadFilter {
        limit: Some(DEAD_SHOWN),
        ..DeadFilter::default()
    };
    let dead = match s.source.dead_list(&filter).await {
        Ok(d) => Some(Ok(d)),
        Err(workerhost_adapters::ops::OpsError::NotSupported { .. }) => None,
        Err(e) => Some(Err(e.to_string())),
    };
    let found = match param("task") {
        Some(id) => {
            let st = s.source.status(id.trim()).await.map_err(|e| e.to_string());
            Some((id.trim().to_string(), st))
        }
        None => None,
    };
    OpsView {
        depth,
        dead,
        found,
        message: param("msg"),
    }
}

/// A one-button form posting to `action` (the token query appended).
fn button(action: &str, label: &str, token_query: &str, class: &str) -> String {
    format!(
        "<form method=\"post\" action=\"{action}{tq}\" class=\"inline\">\
         <button type=\"submit\" class=\"{class}\">{label}</button></form>",
        tq = esc(token_query),
        label = esc(label),
    )
}

pub fn cancel_button(task_id: &str, token_query: &str) -> String {
    button(
        &format!("/tasks/{}/cancel", esc(&path_segment(task_id))),
        "cancel",
        token_query,
        "danger",
    )
}

/// The banner after a form post, and the "find a task" form with its answer.
pub fn top(h: &mut String, v: &OpsView, token_query: &str) {
    if let Some(m) = &v.message {
        let _ = write!(h, "<p id=\"message\" class=\"message\">{}</p>", esc(m));
    }
    let token_field = token_query
        .strip_prefix("?token=")
        .map(|t| {
            format!(
                "<input type=\"hidden\" name=\"token\" value=\"{}\">",
                esc(&super::page::percent_decode(t))
            )
        })
        .unwrap_or_default();
    let _ = write!(
        h,
        "<form id=\"find\" method=\"get\" action=\"/\" class=\"find\">{token_field}\
         <label>Find a task by id <input name=\"task\" size=\"40\"></label> <button type=\"submit\">find</button></form>"
    );
    let Some((id, st)) = &v.found else { return };
    h.push_str("<div id=\"found\" class=\"found\">");
    match st {
        Ok(Some(t)) => {
            let _ = write!(
                h,
                "<p>task <code>{}</code>: <b class=\"state\">{}</b> ({} deliveries)",
                esc(&t.id),
                esc(t.status.as_str()),
                t.deliveries
            );
            if matches!(
                t.status,
                TaskState::Queued | TaskState::Scheduled | TaskState::Running
            ) {
                h.push(' ');
                h.push_str(&cancel_button(&t.id, token_query));
            }
            h.push_str("</p>");
            if let (TaskState::Scheduled, Some(at)) = (t.status, t.run_at) {
                let why = match (&t.last_error, t.attempts) {
                    (Some(e), n) if n > 0 => {
                        format!(
                            "waiting to retry until {at}: attempt {n} failed: {}",
                            esc(e)
                        )
                    }
                    _ => format!("waiting until {at}"),
                };
                let _ = write!(h, "<p id=\"waiting\" class=\"muted\">{why}</p>");
            }
            if let Some(doc) = &t.result {
                let pretty = serde_json::to_string_pretty(doc).unwrap_or_default();
                let _ = write!(h, "<pre>{}</pre>", esc(&pretty));
            }
        }
        Ok(None) => {
            let _ = write!(h, "<p class=\"err\">no task with id {}</p>", esc(id));
        }
        Err(e) => {
            let _ = write!(h, "<p class=\"err\">{}</p>", esc(e));
        }
    }
    h.push_str("</div>");
}

/// The queue table with a pause or resume button per type.
pub fn queue(h: &mut String, v: &OpsView, token_query: &str) {
    h.push_str("<h2>Queue</h2>");
    let rows = match &v.depth {
        Ok(rows) => rows,
        Err(DepthError::NotSupported(m)) | Err(DepthError::Failed(m)) => {
            let _ = write!(h, "<p id=\"queue\" class=\"muted\">{}</p>", esc(m));
            return;
        }
    };
    h.push_str("<table id=\"queue\"><tr><th>type</th><th>queued</th><th>scheduled</th><th>running</th><th>dead</th><th>oldest due</th><th>state</th><th></th></tr>");
    for d in rows {
        let seg = path_segment(&d.task_type);
        let (state, action) = if d.paused {
            (
                "<span class=\"badge bad\">paused</span>",
                button(
                    &format!("/types/{}/resume", esc(&seg)),
                    "resume",
                    token_query,
                    "",
                ),
            )
        } else {
            (
                "<span class=\"badge ok\">active</span>",
                button(
                    &format!("/types/{}/pause", esc(&seg)),
                    "pause",
                    token_query,
                    "",
                ),
            )
        };
        let oldest = d
            .oldest_seconds
            .map(|s| format!("{s:.1} s"))
            .unwrap_or_else(|| "–".into());
        let _ = write!(
            h,
            "<tr data-type=\"{ty}\"><td><code>{ty}</code></td><td class=\"num\">{q}</td><td class=\"num\">{sc}</td>\
             <td class=\"num\">{r}</td><td class=\"num\">{dead}</td><td class=\"num\">{oldest}</td><td>{state}</td><td>{action}</td></tr>",
            ty = esc(&d.task_type),
            q = d.queued,
            sc = d.scheduled,
            r = d.running,
            dead = d.dead,
        );
    }
    h.push_str("</table>");
}

/// The dead letters, newest first, with a retry button each. `None` when the task manager keeps none
/// the host can read: the caller shows its own recent failures instead.
pub fn dead(h: &mut String, v: &OpsView, token_query: &str) -> Option<()> {
    let list = v.dead.as_ref()?;
    h.push_str("<h2>Dead letters</h2><table id=\"failures\"><tr><th>at</th><th>task</th><th>type</th><th>attempts</th><th>error</th><th></th></tr>");
    match list {
        Err(e) => {
            let _ = write!(
                h,
                "<tr><td colspan=\"6\" class=\"err\">{}</td></tr>",
                esc(e)
            );
        }
        Ok(list) if list.is_empty() => {
            h.push_str("<tr><td colspan=\"6\" class=\"muted\">no dead letters</td></tr>");
        }
        Ok(list) => {
            for d in list {
                let retry = button(
                    &format!("/dead/{}/retry", esc(&path_segment(&d.id))),
                    "retry",
                    token_query,
                    "",
                );
                let _ = write!(
                    h,
                    "<tr data-id=\"{id}\"><td class=\"ts\">{at}</td><td><code>{id}</code></td><td><code>{ty}</code></td>\
                     <td class=\"num\">{a}</td><td class=\"err\">{err}</td><td>{retry}</td></tr>",
                    id = esc(&d.id),
                    at = esc(d.at.as_deref().unwrap_or("")),
                    ty = esc(&d.task_type),
                    a = d.attempts,
                    err = esc(d.error.as_deref().unwrap_or("")),
                );
            }
        }
    }
    h.push_str("</table>");
    Some(())
}
