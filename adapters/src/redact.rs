//! Keeping a URL's password out of everything shown (logs, errors, `check`): one place for every adapter.

use percent_encoding::percent_decode_str;
use url::Url;

/// `scheme://user:pass@host/...` → `scheme://user:***@host/...`. With `lone_user_is_password`, a user
/// part without a password (`redis://secret@host`, which some clients read as the password) is hidden
/// too: `redis://:***@host`. A URL with no password is shown as it is; one that does not parse has its
/// user part (up to the last `@`) hidden as text, in case it holds one.
pub fn shown(url: &str, lone_user_is_password: bool) -> String {
    let Ok(mut u) = Url::parse(url) else {
        return match userinfo(url) {
            Some((start, end)) => format!("{}***{}", &url[..start], &url[end..]),
            None => url.to_string(),
        };
    };
    let hide_user = lone_user_is_password && u.password().is_none() && !u.username().is_empty();
    if u.password().is_none() && !hide_user {
        return url.to_string();
    }
    if hide_user && u.set_username("").is_err() {
        return url.to_string();
    }
    if u.set_password(Some("***")).is_err() {
        return url.to_string();
    }
    u.to_string()
}

/// The password as written in `url` (percent-encoded) and, when different, percent-decoded: what to
/// scrub from a client library's error text. With `lone_user_is_password`, see [`shown`].
pub fn secrets(url: &str, lone_user_is_password: bool) -> Vec<String> {
    let Ok(u) = Url::parse(url) else {
        // The user part as written, and its password alone.
        let Some((start, end)) = userinfo(url) else {
            return Vec::new();
        };
        let all = &url[start..end];
        let mut out = vec![all.to_string()];
        if let Some((_, p)) = all.split_once(':') {
            out.push(p.to_string());
        }
        out.retain(|s| !s.is_empty());
        return out;
    };
    let raw = match u.password() {
        Some(p) => p,
        None if lone_user_is_password => u.username(),
        None => "",
    };
    if raw.is_empty() {
        return Vec::new();
    }
    let decoded = percent_decode_str(raw).decode_utf8_lossy().into_owned();
    let mut out = vec![raw.to_string()];
    if decoded != raw {
        out.push(decoded);
    }
    out
}

/// The byte range of `scheme://<this>@...` in a URL, up to its last `@`.
fn userinfo(url: &str) -> Option<(usize, usize)> {
    let start = url.find("://")? + 3;
    let at = url[start..].rfind('@')? + start;
    (at > start).then_some((start, at))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn passwords_are_hidden_and_listed_in_both_forms() {
        assert_eq!(
            shown("amqp://guest:s3cr%21t@127.0.0.1:5672/%2f", false),
            "amqp://guest:***@127.0.0.1:5672/%2f"
        );
        assert_eq!(shown("redis://only@host", true), "redis://:***@host");
        assert_eq!(shown("amqp://only@host/v", false), "amqp://only@host/v");
        assert_eq!(shown("not a url", false), "not a url");
        assert_eq!(
            secrets("redis://u:s3cret%21@h/0", false),
            ["s3cret%21", "s3cret!"]
        );
        assert!(secrets("redis://h:6379/0", true).is_empty());
        // A URL that does not parse still hides what may be a password.
        let bad = "redis://:Hunter2Secret@127.0.0.1:notaport/0";
        assert_eq!(shown(bad, true), "redis://***@127.0.0.1:notaport/0");
        assert!(secrets(bad, true).iter().any(|s| s == "Hunter2Secret"));
        assert_eq!(shown("redis://h:notaport/0", true), "redis://h:notaport/0");
    }
}
