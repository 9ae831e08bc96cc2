//! Bounds on text copied from input into reasons, headers, dead letters and logs.
//!
//! A task's type, id or raw body, and a worker's error message, come from outside the process and may be
//! any size. Whatever of them is *copied* somewhere (a dead letter's reason, an AMQP header, a log line, a
//! stored result document) is cut with [`cap`] to a documented limit, ending with a marker that says how
//! long the original was: `… [cut: 1048576 bytes]`. The task itself (its body) is never cut.

/// Longest reason, raw excerpt, header value or logged copy of input (4 KiB).
pub const REASON_MAX: usize = 4 * 1024;
/// Longest worker error message kept in a result document or a dead letter (64 KiB).
pub const ERROR_MAX: usize = 64 * 1024;

/// `s` when it fits in `max` bytes; otherwise its longest prefix (cut at a character boundary) that
/// fits in `max` bytes together with the marker `… [cut: N bytes]`, N the original length in bytes.
pub fn cap(s: &str, max: usize) -> std::borrow::Cow<'_, str> {
    if s.len() <= max {
        return s.into();
    }
    let marker = marker(s.len());
    let end = boundary(s, max.saturating_sub(marker.len()));
    format!("{}{marker}", &s[..end]).into()
}

fn marker(len: usize) -> String {
    format!("… [cut: {len} bytes]")
}

/// The largest character boundary of `s` at or below `n`.
fn boundary(s: &str, n: usize) -> usize {
    let mut end = n.min(s.len());
    while !s.is_char_boundary(end) {
        end -= 1;
    }
    end
}

/// [`cap`] for an owned string (no copy when it fits).
pub fn cap_owned(s: String, max: usize) -> String {
    if s.len() <= max {
        s
    } else {
        cap(&s, max).into_owned()
    }
}

/// A JSON value from outside, kept whole when its text fits in `max` bytes; otherwise its text
/// [`cap`]ped, as a string.
pub fn cap_value(v: serde_json::Value, max: usize) -> serde_json::Value {
    let text = v.to_string();
    if text.len() <= max {
        v
    } else {
        serde_json::Value::String(cap(&text, max).into_owned())
    }
}

/// Bytes from outside as text for a reason or excerpt: invalid UTF-8 shown as U+FFFD, then [`cap`]ped.
/// Only the first `max` bytes are looked at, so a huge body costs nothing.
pub fn excerpt(bytes: &[u8], max: usize) -> String {
    if bytes.len() <= max {
        return cap_owned(String::from_utf8_lossy(bytes).into_owned(), max);
    }
    let marker = marker(bytes.len());
    let budget = max.saturating_sub(marker.len());
    let head = String::from_utf8_lossy(&bytes[..budget]);
    format!("{}{marker}", &head[..boundary(&head, budget)])
}

/// Why bytes are not UTF-8, for a reason: `not UTF-8 (invalid byte at offset 12)`.
pub fn utf8_problem(bytes: &[u8]) -> Option<String> {
    std::str::from_utf8(bytes)
        .err()
        .map(|e| format!("not UTF-8 (invalid byte at offset {})", e.valid_up_to()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn short_text_is_kept_and_long_text_is_cut_with_its_length() {
        assert_eq!(cap("abc", 10), "abc");
        let long = "x".repeat(1_048_576);
        let c = cap(&long, REASON_MAX);
        assert!(c.len() <= REASON_MAX, "{}", c.len());
        assert!(
            c.ends_with("… [cut: 1048576 bytes]"),
            "{}",
            &c[c.len() - 40..]
        );
        assert!(c.starts_with("xxxx"));
        // never inside a character
        let multi = "é".repeat(5000);
        let c = cap(&multi, 101);
        assert!(c.len() <= 101);
        assert!(c.ends_with("… [cut: 10000 bytes]"));
        assert_eq!(cap_owned("abc".into(), 3), "abc");
        assert_eq!(cap_owned("abcd".repeat(100), 50).len(), 50);
        let v = serde_json::json!({"message": "m".repeat(100_000)});
        let c = cap_value(v, ERROR_MAX);
        assert!(
            c.as_str()
                .is_some_and(|s| s.len() <= ERROR_MAX && s.ends_with("[cut: 100014 bytes]"))
        );
        assert_eq!(
            cap_value(serde_json::json!({"a": 1}), 10),
            serde_json::json!({"a": 1})
        );
    }

    #[test]
    fn excerpts_of_bytes_are_bounded_and_name_invalid_utf8() {
        assert_eq!(excerpt(b"ok", 10), "ok");
        assert_eq!(excerpt(b"\xff\xfe", 10), "\u{fffd}\u{fffd}");
        let big = vec![b'a'; 200_000];
        let e = excerpt(&big, REASON_MAX);
        assert!(e.len() <= REASON_MAX);
        assert!(e.ends_with("… [cut: 200000 bytes]"));
        assert_eq!(utf8_problem(b"ok"), None);
        assert_eq!(
            utf8_problem(b"{\"a\":\"\xff\"}").as_deref(),
            Some("not UTF-8 (invalid byte at offset 6)")
        );
    }
}
