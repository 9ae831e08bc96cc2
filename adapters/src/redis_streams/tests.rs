//! Unit tests that need no server: settings, redaction, reading entries. The behaviour against a real
//! Redis is tested by `tests/redis` (the built binary).

use super::parse::{self, Redactor};
use super::{MAX_BLOCK_MS, Settings};
use redis::Value;
use serde_json::json;
use std::time::Duration;

/// `task_manager:` keys (a JSON object) deserialized and validated, as the config loader does.
fn settings(v: &serde_json::Value) -> Result<Settings, String> {
    let s: Settings = serde_json::from_value(v.clone()).map_err(|e| e.to_string())?;
    match s.validate().as_slice() {
        [] => Ok(s),
        problems => Err(format!("{problems:?}")),
    }
}

#[test]
fn settings_default_and_check() {
    let s = settings(&json!({})).expect("defaults");
    assert_eq!(s.stream, "workerhost:tasks");
    assert_eq!(s.group, "workerhost");
    assert_eq!(s.lease(), Duration::from_secs(30));
    assert_eq!(s.result_ttl(), Duration::from_secs(86_400));
    assert_eq!(s.block_ms(), 1000);
    let m = json!({"stream": "s", "group": "g", "lease_seconds": 2.5, "block_ms": 99999});
    let s = settings(&m).expect("valid");
    assert_eq!((s.stream.as_str(), s.group.as_str()), ("s", "g"));
    assert_eq!(s.lease(), Duration::from_millis(2500));
    assert_eq!(s.block_ms(), MAX_BLOCK_MS);
    for bad in [
        json!({"stream": ""}),
        json!({"lease_seconds": 0}),
        json!({"block_ms": "x"}),
    ] {
        assert!(settings(&bad).is_err(), "{bad}");
    }
}

#[test]
fn passwords_never_show() {
    let r = Redactor::new("redis://user:s3cret%21@127.0.0.1:6379/0");
    assert_eq!(r.shown, "redis://user:***@127.0.0.1:6379/0");
    assert_eq!(
        r.scrub("AUTH failed for s3cret! and s3cret%21"),
        "AUTH failed for *** and ***"
    );
    let r = Redactor::new("rediss://:pw123@host/1?x=y");
    assert_eq!(r.shown, "rediss://:***@host/1?x=y");
    let r = Redactor::new("redis://onlysecret@host");
    assert_eq!(r.shown, "redis://:***@host");
    let r = Redactor::new("redis://127.0.0.1:6379/0");
    assert_eq!(r.shown, "redis://127.0.0.1:6379/0");
    assert_eq!(r.scrub("text"), "text");
}

fn bulk(s: &str) -> Value {
    Value::BulkString(s.as_bytes().to_vec())
}

#[test]
fn entries_become_deliveries_or_malformed() {
    let reply = Value::Array(vec![Value::Array(vec![
        bulk("s"),
        Value::Array(vec![
            Value::Array(vec![
                bulk("1-0"),
                Value::Array(vec![
                    bulk("task"),
                    bulk(r#"{"id":"a","type":"T","params":{}}"#),
                ]),
            ]),
            Value::Array(vec![
                bulk("2-0"),
                Value::Array(vec![bulk("other"), bulk("x")]),
            ]),
            Value::Array(vec![
                bulk("3-0"),
                Value::Array(vec![
                    bulk("task"),
                    bulk(r#"{"id":"b"}"#),
                    bulk("deliveries"),
                    bulk("2"),
                ]),
            ]),
            Value::Array(vec![
                bulk("4-0"),
                Value::Array(vec![bulk("task"), bulk("not json")]),
            ]),
        ]),
    ])]);
    let ds: Vec<_> = parse::read_reply(reply)
        .into_iter()
        .map(|(id, f)| parse::delivery(&id, f, 1))
        .collect();
    assert_eq!(ds.len(), 4);
    assert_eq!(ds[0].lease.task_id, "a");
    assert_eq!(ds[0].lease.receipt, "1-0");
    assert_eq!(ds[0].deliveries, 1);
    assert!(ds[0].envelope.is_ok());
    let m = ds[1].envelope.as_ref().expect_err("no task field");
    assert!(m.reason.contains("no `task` field"), "{}", m.reason);
    assert_eq!(ds[1].lease.task_id, "2-0");
    let m = ds[2].envelope.as_ref().expect_err("no type");
    assert!(m.reason.contains("missing field `type`"), "{}", m.reason);
    assert_eq!(ds[2].lease.task_id, "b", "the task's own id is kept");
    assert_eq!(ds[2].deliveries, 3, "deliveries before a hand-back count");
    let m = ds[3].envelope.as_ref().expect_err("not json");
    assert!(m.reason.contains("not JSON"));
    assert_eq!(m.raw, "not json");
    assert!(parse::read_reply(Value::Nil).is_empty());
}

/// Issue 16: `"\xff\xfe"` in params reached the worker as `"��"`; a string `params` lost the readable type.
#[test]
fn entries_that_are_not_utf8_are_malformed_and_a_readable_type_is_kept() {
    let entry = |task: &[u8]| Value::Array(vec![bulk("task"), Value::BulkString(task.to_vec())]);
    let d = parse::delivery(
        "1-0",
        parse::fields(entry(
            b"{\"id\":\"b\",\"type\":\"T\",\"params\":{\"s\":\"\xff\xfe\"}}",
        )),
        1,
    );
    let m = d.envelope.as_ref().expect_err("not UTF-8");
    assert!(
        m.reason.contains("not UTF-8 (invalid byte at offset 36)"),
        "{}",
        m.reason
    );
    assert_eq!(d.lease.task_id, "b", "the readable id is kept");
    let d = parse::delivery(
        "2-0",
        parse::fields(entry(br#"{"id":"p","type":"T","params":"x"}"#)),
        1,
    );
    let m = d.envelope.as_ref().expect_err("params is a string");
    assert_eq!(m.task_type.as_deref(), Some("T"));
    assert_eq!((d.lease.task_id.as_str(), d.task_type()), ("p", Some("T")));
}
