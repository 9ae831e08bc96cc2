//! The status page at `/`: server-rendered HTML, no script, no build step. It reloads itself every
//! [`REFRESH_SECONDS`] seconds.

use super::page_ops::{self, OpsView};
use super::{HttpState, health_doc, worker_checks};
use crate::registry::Registry;
use std::fmt::Write;
use std::sync::atomic::Ordering;

pub const REFRESH_SECONDS: u32 = 3;

/// Escapes text for HTML element content and attribute values.
pub fn esc(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for c in s.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&#39;"),
            c => out.push(c),
        }
    }
    out
}

/// Decodes `%XX` and `+` of a query value.
pub fn percent_decode(s: &str) -> String {
    let b = s.as_bytes();
    let mut out = Vec::with_capacity(b.len());
    let mut i = 0;
    while i < b.len() {
        let hex = (b[i] == b'%')
            .then(|| b.get(i + 1..i + 3))
            .flatten()
            .and_then(|h| std::str::from_utf8(h).ok())
            .and_then(|h| u8::from_str_radix(h, 16).ok());
        match (b[i], hex) {
            (_, Some(v)) => {
                out.push(v);
                i += 3;
                continue;
            }
            (b'+', None) => out.push(b' '),
            (c, None) => out.push(c),
        }
        i += 1;
    }
    String::from_utf8_lossy(&out).into_owned()
}

/// A value in a URL query (`?msg=...`): like a path segment.
pub fn query_escape(s: &str) -> String {
    path_segment(s)
}

/// A worker name in a URL path (names may hold spaces or other reserved characters).
pub fn path_segment(s: &str) -> String {
    let mut out = String::new();
    for b in s.bytes() {
        if b.is_ascii_alphanumeric() || matches!(b, b'-' | b'.' | b'_' | b'~') {
            out.push(b as char);
        } else {
            let _ = write!(out, "%{b:02X}");
        }
    }
    out
}

const STYLE: &str = "
body{font:14px/1.4 system-ui,sans-serif;margin:0;background:#f6f7f9;color:#1d2330}
header{background:#1d2330;color:#fff;padding:12px 24px;display:flex;gap:24px;align-items:baseline;flex-wrap:wrap}
header h1{font-size:18px;margin:0}
header span{opacity:.85}
main{padding:8px 24px 24px}
h2{font-size:15px;margin:20px 0 6px}
table{border-collapse:collapse;width:100%;background:#fff;box-shadow:0 1px 2px #0002}
th,td{text-align:left;padding:5px 8px;border-bottom:1px solid #e3e6ea;vertical-align:top}
th{background:#eef0f3;font-weight:600}
td.num{text-align:right;font-variant-numeric:tabular-nums}
td.ts{white-space:nowrap}
.badge{display:inline-block;padding:1px 8px;border-radius:9px;font-size:12px;font-weight:600}
.ok{background:#d6f5dd;color:#17692b}.bad{background:#fbd9d9;color:#9b1c1c}
.err{color:#9b1c1c;font-family:ui-monospace,monospace;font-size:12px;white-space:pre-wrap;word-break:break-word}
.muted{color:#6b7280}
code{font-family:ui-monospace,monospace;font-size:12px}
td code{white-space:nowrap}
form.inline{display:inline;margin:0}
button{font:inherit;font-size:12px;padding:1px 10px;border:1px solid #9aa3af;border-radius:4px;background:#fff;cursor:pointer}
button.danger{border-color:#c24141;color:#9b1c1c}
.message{background:#fff7d6;border:1px solid #e0c35a;padding:6px 10px;margin:12px 0 0}
form.find{margin:12px 0 0}
.found pre{background:#fff;padding:8px;box-shadow:0 1px 2px #0002;white-space:pre-wrap}
";

fn badge(ok: bool, yes: &str, no: &str) -> String {
    if ok {
        format!("<span class=\"badge ok\">{}</span>", esc(yes))
    } else {
        format!("<span class=\"badge bad\">{}</span>", esc(no))
    }
}

fn opt(s: &Option<String>) -> String {
    s.as_deref()
        .map(esc)
        .unwrap_or_else(|| "<span class=\"muted\">–</span>".into())
}

/// The whole page. `token_query` (`?token=...` or empty) is kept on links.
pub fn render(s: &HttpState, reg: &Registry, token_query: &str, ops: &OpsView) -> String {
    let (_, health) = health_doc(s);
    let up = s.host.task_manager_up.load(Ordering::Relaxed);
    let mut h = String::with_capacity(8192);
    let _ = write!(
        h,
        "<!doctype html><html lang=\"en\"><head><meta charset=\"utf-8\">\
         <meta http-equiv=\"refresh\" content=\"{REFRESH_SECONDS}\">\
         <title>workerhost {host}</title><style>{STYLE}</style></head><body>\
         <header><h1>workerhost</h1><span>host <code>{host}</code></span>\
         <span>task manager {tm} {conn}</span><span>up {up_s} s</span>\
         <span id=\"in-flight-count\">{inflight} in flight</span><span>v{ver}</span>\
         <span class=\"muted\">refreshes every {REFRESH_SECONDS} s</span></header><main>",
        host = esc(&s.host_id),
        tm = esc(&s.task_manager),
        conn = badge(up, "connected", "unreachable"),
        up_s = health["uptime_seconds"],
        inflight = health["in_flight"],
        ver = env!("CARGO_PKG_VERSION"),
    );

    page_ops::top(&mut h, ops, token_query);
    page_ops::queue(&mut h, ops, token_query);
    workers(&mut h, reg, token_query);
    in_flight(&mut h, s, token_query);
    // The task manager's dead letters where it keeps them; else this host's own recent failures.
    if page_ops::dead(&mut h, ops, token_query).is_none() {
        recent_failures(&mut h, s);
    }
    h.push_str("</main></body></html>");
    h
}

/// The workers table: health, counters, last error and success.
fn workers(h: &mut String, reg: &Registry, token_query: &str) {
    h.push_str("<h2>Workers</h2><table id=\"workers\"><tr><th>name</th><th>kind</th><th>task types</th><th>health</th><th>in flight</th><th>succeeded</th><th>failed</th><th>last error</th><th>last success</th></tr>");
    for w in reg.workers() {
        let checks = worker_checks(w);
        let failing: Vec<String> = checks
            .iter()
            .filter(|c| !c.ok)
            .map(|c| c.detail.clone())
            .collect();
        let health = if failing.is_empty() {
            badge(true, "ok", "")
        } else {
            format!(
                "{}<div class=\"err\">{}</div>",
                badge(false, "", "unhealthy"),
                esc(&failing.join("; "))
            )
        };
        let st = &w.stats;
        let last = st.last();
        let _ = write!(
            h,
            "<tr><td><a href=\"/workers/{link}/health{token_query}\">{name}</a></td><td>{kind}/{mode}</td>\
             <td><code>{types}</code></td><td>{health}</td><td class=\"num\">{inf}</td>\
             <td class=\"num\">{ok}</td><td class=\"num\">{failed}</td><td class=\"err\">{err}</td><td class=\"ts\">{succ}</td></tr>",
            link = esc(&path_segment(&w.config.name)),
            name = esc(&w.config.name),
            kind = super::kind_of(w),
            mode = super::mode_of(w),
            types = esc(&w.config.task_types.join(", ")),
            inf = st.in_flight.load(Ordering::Relaxed),
            ok = st.succeeded.load(Ordering::Relaxed),
            failed = st.failed.load(Ordering::Relaxed),
            err = opt(&last.error),
            succ = opt(&last.success_at),
        );
    }
    h.push_str("</table>");
}

/// The tasks in flight here, each with a cancel button.
fn in_flight(h: &mut String, s: &HttpState, token_query: &str) {
    let running = s.host.in_flight.running_tasks();
    h.push_str("<h2>In flight</h2><table id=\"in-flight\"><tr><th>task</th><th>type</th><th>worker</th><th>attempt</th><th>started</th><th>running for</th><th></th></tr>");
    if running.is_empty() {
        h.push_str("<tr><td colspan=\"7\" class=\"muted\">nothing running</td></tr>");
    }
    for t in &running {
        let _ = write!(
            h,
            "<tr><td><code>{id}</code></td><td><code>{ty}</code></td><td>{w}</td><td class=\"num\">{a}</td><td class=\"ts\">{at}</td><td class=\"num\">{secs:.1} s</td><td>{cancel}</td></tr>",
            cancel = page_ops::cancel_button(&t.task_id, token_query),
            id = esc(&t.task_id),
            ty = esc(&t.task_type),
            w = esc(&t.worker),
            a = t.attempt,
            at = esc(&t.started_at.to_string()),
            secs = t.started.elapsed().as_secs_f64(),
        );
    }
    h.push_str("</table>");
}

/// This host's last failures (for task managers whose dead letters the host cannot read).
fn recent_failures(h: &mut String, s: &HttpState) {
    let failures = s.board.recent_failures();
    h.push_str("<h2>Recent failures</h2><table id=\"failures\"><tr><th>at</th><th>task</th><th>type</th><th>worker</th><th>attempt</th><th>outcome</th><th>error</th></tr>");
    if failures.is_empty() {
        h.push_str(
            "<tr><td colspan=\"7\" class=\"muted\">no failures since the host started</td></tr>",
        );
    }
    for e in &failures {
        let _ = write!(
            h,
            "<tr><td class=\"ts\">{at}</td><td><code>{id}</code></td><td><code>{ty}</code></td><td>{w}</td><td class=\"num\">{a}</td><td>{o}</td><td class=\"err\">{err}</td></tr>",
            at = esc(&e.at.to_string()),
            id = opt(&e.task_id),
            ty = opt(&e.task_type),
            w = opt(&e.worker),
            a = e.attempt.map(|a| a.to_string()).unwrap_or_default(),
            o = esc(e.outcome.map(|o| o.as_str()).unwrap_or("")),
            err = opt(&e.error),
        );
    }
    h.push_str("</table>");
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn escapes_and_decodes() {
        assert_eq!(
            esc("<a href=\"x\">&'"),
            "&lt;a href=&quot;x&quot;&gt;&amp;&#39;"
        );
        assert_eq!(percent_decode("a%20b+c%2"), "a b c%2");
        assert_eq!(percent_decode("%zz"), "%zz");
        assert_eq!(path_segment("A.b c/d"), "A.b%20c%2Fd");
    }
}
