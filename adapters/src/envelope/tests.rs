//! The envelope's parsing and validation.

use super::*;

#[test]
fn parses_valid_and_names_what_is_wrong() {
    let e = Envelope::parse(br#"{"id":"1","type":"T","params":{"a":1}}"#).expect("valid");
    assert_eq!(e.task_type, "T");
    assert_eq!(e.params["a"], 1);
    assert!(
        Envelope::parse(b"nope")
            .expect_err("invalid")
            .to_string()
            .contains("not JSON")
    );
    assert!(
        Envelope::parse(br#"{"type":"T"}"#)
            .expect_err("invalid")
            .to_string()
            .contains("missing field `id`")
    );
    assert!(
        Envelope::parse(br#"{"id":"7","params":{}}"#)
            .expect_err("invalid")
            .to_string()
            .contains("task 7: missing field `type`")
    );
    assert!(
        Envelope::parse(br#"{"id":"7","type":"T","params":[1]}"#)
            .expect_err("invalid")
            .to_string()
            .contains("params")
    );
    // ids arrive as numbers from some task managers
    assert_eq!(
        Envelope::parse(br#"{"id":42,"type":"T"}"#)
            .expect("valid")
            .id,
        "42"
    );
}

/// Issue 16: ids with a NUL or of 128 KiB were blamed on the worker; invalid UTF-8 was "repaired".
#[test]
fn ids_types_and_bytes_that_cannot_be_a_task_are_malformed() {
    let long = "i".repeat(NAME_MAX + 1);
    let cases = [
        (
            format!(r#"{{"id":"{long}","type":"T"}}"#),
            "field `id` is 1025 bytes long (at most 1024)",
        ),
        (
            r#"{"id":"a\u0000b","type":"T"}"#.to_string(),
            "field `id` holds a control character ('\\0' at byte 1)",
        ),
        (
            r#"{"id":"a\nb","type":"T"}"#.to_string(),
            "control character",
        ),
        (
            format!(r#"{{"id":"7","type":"{long}"}}"#),
            "task 7: field `type` is 1025 bytes long",
        ),
        (
            r#"{"id":"7","type":"T\u0007"}"#.to_string(),
            "task 7: field `type` holds a control character",
        ),
    ];
    for (raw, want) in &cases {
        let err = Envelope::parse(raw.as_bytes()).expect_err(want).to_string();
        assert!(err.contains(want), "{err}");
        assert!(err.len() < 200, "the reason does not copy the value: {err}");
    }
    let at_limit = format!(r#"{{"id":"{}","type":"T"}}"#, "i".repeat(NAME_MAX));
    assert_eq!(
        Envelope::parse(at_limit.as_bytes())
            .expect("1024 bytes is fine")
            .id
            .len(),
        NAME_MAX
    );
    // Non-ASCII text is fine; bytes that are not UTF-8 are not.
    assert_eq!(
        Envelope::parse("{\"id\":\"é\",\"type\":\"T\"}".as_bytes())
            .expect("utf-8")
            .id,
        "é"
    );
    let err = Envelope::parse(b"{\"id\":\"1\",\"type\":\"T\",\"params\":{\"s\":\"\xff\xfe\"}}")
        .expect_err("not UTF-8")
        .to_string();
    assert_eq!(err, "message is not UTF-8 (invalid byte at offset 36)");
}

#[test]
fn salvage_reads_a_usable_id_and_type_only() {
    assert_eq!(
        salvage(br#"{"id":"p1","type":"T","params":"a string"}"#),
        (Some("p1".into()), Some("T".into()))
    );
    assert_eq!(salvage(br#"{"id":3}"#), (Some("3".into()), None));
    assert_eq!(salvage(br#"{"id":"a\u0000","type":7}"#), (None, None));
    assert_eq!(salvage(b"not json"), (None, None));
    let m = crate::Malformed::new(
        br#"{"id":"p1","type":"T","params":"x"}"#,
        "r".repeat(10_000),
    );
    assert_eq!(m.task_type.as_deref(), Some("T"));
    assert!(m.reason.len() <= crate::text::REASON_MAX);
    let m = crate::Malformed::new(&vec![b'x'; 100_000], "reason");
    assert!(m.raw.len() <= crate::text::REASON_MAX && m.raw.ends_with("… [cut: 100000 bytes]"));
}

#[test]
fn run_at_and_priority_are_validated_by_name() {
    let e =
        Envelope::parse(br#"{"id":"1","type":"T","run_at":"2026-12-01T10:00:00Z","priority":5}"#)
            .expect("valid");
    assert_eq!(e.run_at, Some(Stamp(1_796_119_200_000)));
    assert_eq!(e.priority, 5);
    assert!(e.is_scheduled(0));
    assert!(!e.is_scheduled(1_796_119_200_000));
    let back = serde_json::to_value(&e).expect("serializes");
    assert_eq!(back["run_at"], "2026-12-01T10:00:00.000Z");
    assert_eq!(Envelope::from_value(back).expect("round trip"), e);
    for (raw, field) in [
        (r#"{"id":"1","type":"T","run_at":"soon"}"#, "`run_at`"),
        (r#"{"id":"1","type":"T","run_at":17}"#, "`run_at`"),
        (r#"{"id":"1","type":"T","priority":"high"}"#, "`priority`"),
        (r#"{"id":"1","type":"T","priority":1.5}"#, "`priority`"),
        (
            r#"{"id":"1","type":"T","priority":99999999999}"#,
            "`priority`",
        ),
        (r#"{"id":"1","type":"T","attempts":-1}"#, "`attempts`"),
    ] {
        let err = Envelope::parse(raw.as_bytes()).expect_err(raw).to_string();
        assert!(
            err.contains(field) && err.contains("task 1"),
            "{raw}: {err}"
        );
    }
    // a plain envelope serializes as before: no new fields appear
    let plain = Envelope::new("2", "T", Map::new());
    assert_eq!(
        serde_json::to_string(&plain).expect("serializes"),
        r#"{"id":"2","type":"T","params":{}}"#
    );
}

#[test]
fn a_traceparent_is_kept_through_a_round_trip() {
    let tp = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01";
    let raw = format!(r#"{{"id":"1","type":"T","traceparent":"{tp}"}}"#);
    let e = Envelope::parse(raw.as_bytes()).expect("valid");
    assert_eq!(e.traceparent.as_deref(), Some(tp));
    let back = serde_json::to_value(&e).expect("serializes");
    assert_eq!(back["traceparent"], tp);
    assert_eq!(Envelope::from_value(back).expect("round trip"), e);
    let none = serde_json::to_value(Envelope::new("2", "T", Map::new())).expect("serializes");
    assert!(none.get("traceparent").is_none(), "absent when not set");
    let err = Envelope::parse(br#"{"id":"1","type":"T","traceparent":5}"#).expect_err("a number");
    assert!(err.to_string().contains("`traceparent`"), "{err}");
}
