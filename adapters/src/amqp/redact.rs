//! Keeping credentials out of logs and errors.

/// `amqp://user:pass@host/vhost` → `amqp://user:***@host/vhost`: what logs and errors show.
pub fn redact(url: &str) -> String {
    let Some(scheme_end) = url.find("://").map(|i| i + 3) else {
        return url.to_string();
    };
    let rest = &url[scheme_end..];
    let authority_end = rest.find(['/', '?', '#']).unwrap_or(rest.len());
    let Some(at) = rest[..authority_end].rfind('@') else {
        return url.to_string();
    };
    let userinfo = &rest[..at];
    let shown = match userinfo.find(':') {
        Some(colon) => format!("{}:***", &userinfo[..colon]),
        None => userinfo.to_string(),
    };
    format!("{}{shown}{}", &url[..scheme_end], &rest[at..])
}

/// The password of `url`, as written in it (percent-encoded), when it has one.
fn password(url: &str) -> Option<&str> {
    let rest = &url[url.find("://")? + 3..];
    let authority = &rest[..rest.find(['/', '?', '#']).unwrap_or(rest.len())];
    let userinfo = &authority[..authority.rfind('@')?];
    Some(&userinfo[userinfo.find(':')? + 1..]).filter(|p| !p.is_empty())
}

/// Removes the URL and its password from a message that may quote them (a client library's error).
pub fn scrub(msg: &str, url: &str) -> String {
    let mut out = msg.replace(url, &redact(url));
    if let Some(p) = password(url) {
        out = out.replace(&format!(":{p}@"), ":***@");
        if p.len() >= 6 {
            out = out.replace(p, "***");
        }
    }
    out
}
