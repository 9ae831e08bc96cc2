//! Keeping credentials out of logs and errors.

/// `amqp://user:pass@host/vhost` → `amqp://user:***@host/vhost`: what logs and errors show.
pub fn redact(url: &str) -> String {
    crate::redact::shown(url, false)
}

/// The password of `url`, as written in it (percent-encoded), when it has one.
fn password(url: &str) -> Option<String> {
    crate::redact::secrets(url, false).into_iter().next()
}

/// Removes the URL and its password from a message that may quote them (a client library's error).
pub fn scrub(msg: &str, url: &str) -> String {
    let mut out = msg.replace(url, &redact(url));
    if let Some(p) = password(url) {
        out = out.replace(&format!(":{p}@"), ":***@");
        if p.len() >= 6 {
            out = out.replace(&p, "***");
        }
    }
    out
}
