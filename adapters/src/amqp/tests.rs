//! Unit tests of the pure parts; the broker-facing behaviour is tested through the binary in tests/amqp.

use super::probe::{parse_version, supports_consumer_timeout};
use super::redact::{redact, scrub};
use super::settings::{QueueType, Settings};
use super::*;
use lapin::types::{AMQPValue, FieldTable};
use message::delivery_count;
use serde_json::{Value, json};

/// `task_manager:` keys (a JSON object) deserialized and validated, as the config loader does.
fn settings(v: Value) -> Result<Settings, String> {
    let s: Settings = serde_json::from_value(v).map_err(|e| e.to_string())?;
    match s.validate().as_slice() {
        [] => Ok(s),
        problems => Err(format!("{problems:?}")),
    }
}

#[test]
fn settings_have_defaults_and_reject_nonsense() {
    let s = settings(json!({"lease_seconds": 30.0})).expect("defaults");
    assert_eq!(s.queue, "workerhost.tasks");
    assert_eq!(s.dead_letter_queue(), "workerhost.tasks.dead");
    assert!(s.declare);
    assert_eq!(s.prefetch, None);
    assert_eq!(s.queue_type, None);
    assert_eq!(s.result_key(), "workerhost.tasks");
    let s = settings(
        json!({"queue": "q", "queue_type": "quorum", "declare": false, "prefetch": 4,
        "result_exchange": "results", "result_routing_key": "done"}),
    )
    .expect("valid");
    assert_eq!(s.dead_letter_queue(), "q.dead");
    assert_eq!(s.queue_type, Some(QueueType::Quorum));
    assert!(!s.declare);
    assert_eq!(s.prefetch, Some(4));
    assert_eq!(s.result_key(), "done");
    for bad in [
        json!({"queue_type": "stream"}),
        json!({"prefetch": 0}),
        json!({"prefetch": 70000}),
        json!({"declare": "yes"}),
        json!({"queue": ""}),
        json!({"queue": "x".repeat(256)}),
    ] {
        assert!(settings(bad.clone()).is_err(), "{bad} should be refused");
    }
}

#[test]
fn credentials_are_redacted() {
    assert_eq!(
        redact("amqp://user:pa55word@host:5672/%2f"),
        "amqp://user:***@host:5672/%2f"
    );
    assert_eq!(redact("amqps://user@host/vh"), "amqps://user@host/vh");
    assert_eq!(redact("amqp://host"), "amqp://host");
    assert_eq!(redact("amqp://u:p@ss@host/v"), "amqp://u:***@host/v");
    let url = "amqp://bob:hunter22@mq.example/vh";
    let msg = format!("cannot connect to {url}: refused for bob:hunter22@mq, password hunter22");
    let clean = scrub(&msg, url);
    assert!(!clean.contains("hunter22"), "{clean}");
    assert!(clean.contains("amqp://bob:***@mq.example/vh"), "{clean}");
}

#[test]
fn versions_compare_numerically() {
    assert_eq!(parse_version("3.10.8"), (3, 10, 8));
    assert_eq!(parse_version("3.11.15-alpha"), (3, 11, 15));
    assert!(!supports_consumer_timeout("RabbitMQ", "3.10.8"));
    assert!(!supports_consumer_timeout("RabbitMQ", "3.11.14"));
    assert!(supports_consumer_timeout("RabbitMQ", "3.11.15"));
    assert!(supports_consumer_timeout("RabbitMQ", "4.0.1"));
    assert!(!supports_consumer_timeout("LavinMQ", "4.0.0"));
}

#[test]
fn delivery_counts_come_from_the_header_or_the_redelivered_flag() {
    let plain = BasicProperties::default();
    assert_eq!(delivery_count(&plain, false), 1);
    assert_eq!(delivery_count(&plain, true), 2);
    let mut h = FieldTable::default();
    h.insert("x-delivery-count".into(), AMQPValue::LongLongInt(3));
    let quorum = BasicProperties::default().with_headers(h);
    assert_eq!(delivery_count(&quorum, true), 4);
}

#[test]
fn queue_arguments_follow_the_settings() {
    let s = settings(json!({"queue": "q", "queue_type": "quorum", "dead_letter_exchange": ""}))
        .expect("valid");
    let args = link::queue_args(&s);
    let get = |k: &str| args.inner().get(k).cloned();
    assert_eq!(
        get("x-queue-type"),
        Some(AMQPValue::LongString("quorum".into()))
    );
    assert_eq!(
        get("x-dead-letter-exchange"),
        Some(AMQPValue::LongString("".into()))
    );
    assert_eq!(
        get("x-dead-letter-routing-key"),
        Some(AMQPValue::LongString("q.dead".into()))
    );
    assert!(
        link::queue_args(&settings(json!({})).expect("valid"))
            .inner()
            .is_empty()
    );
}

fn msg(tag: u64, body: &str) -> message::Msg {
    let d =
        lapin::message::Delivery::mock(tag, "".into(), "q".into(), false, body.as_bytes().to_vec());
    message::Msg::new(1, d)
}

fn task(tag: u64, id: &str, t: &str) -> message::Msg {
    msg(
        tag,
        &format!(r#"{{"id":"{id}","type":"{t}","params":{{}}}}"#),
    )
}

#[test]
fn a_claim_takes_what_fits_its_slots_in_order() {
    use crate::ClaimSlot;
    let mut q = message::Queues::default();
    for m in [
        task(1, "b1", "B"),
        task(2, "a1", "A"),
        task(3, "a2", "A"),
        task(4, "a3", "A"),
        msg(5, "junk"),
        task(6, "u1", "Unknown"),
        task(7, "c1", "C"),
    ] {
        q.buffer.push_back(m);
    }
    // Worker A has room for 2, worker C for 3; B's worker is at its cap (no slot); 5 in all.
    let slot = |t: &str, max| ClaimSlot {
        types: vec![t.into()],
        max,
    };
    let req = ClaimRequest {
        slots: vec![slot("A", 2), slot("C", 3)],
        known_types: vec!["A".into(), "B".into(), "C".into()],
        limit: Some(5),
    };
    let ids = |ds: &[Delivery]| {
        ds.iter()
            .map(|d| d.lease.task_id.clone())
            .collect::<Vec<_>>()
    };
    let (out, unfit) = q.take(&req, 1);
    // Malformed messages and unknown types take room too: the host dead-letters them.
    assert_eq!(ids(&out), ["a1", "a2", "amqp-1-5", "u1", "c1"]);
    assert!(unfit, "b1 and a3 wait");
    let left: Vec<_> = q.buffer.iter().map(|m| m.task_id.as_str()).collect();
    assert_eq!(left, ["b1", "a3"]);
    let (out, _) = q.take(&req, 1);
    assert_eq!(ids(&out), ["a3"]);
    assert_eq!(q.held.len(), 6);
    // The limit holds even when the slots would take more.
    q.buffer.push_back(task(8, "c2", "C"));
    q.buffer.push_back(task(9, "c3", "C"));
    let one = ClaimRequest {
        limit: Some(1),
        ..req.clone()
    };
    assert_eq!(ids(&q.take(&one, 1).0), ["c2"]);
}

#[test]
fn deliveries_that_arrive_out_of_order_wait_briefly_for_the_missing_tag() {
    use crate::ClaimSlot;
    let mut q = message::Queues::default();
    q.buffer.push_back(task(2, "second", "A"));
    let req = ClaimRequest {
        slots: vec![ClaimSlot {
            types: vec!["A".into()],
            max: 2,
        }],
        known_types: vec!["A".into()],
        limit: None,
    };
    let (out, unfit) = q.take(&req, 1);
    assert!(out.is_empty() && !unfit, "tag 1 is still on its way");
    q.buffer.push_front(task(1, "first", "A"));
    let (out, _) = q.take(&req, 1);
    let ids: Vec<_> = out.iter().map(|d| d.lease.task_id.as_str()).collect();
    assert_eq!(ids, ["first", "second"]);
    // A tag that never comes holds the others back only for a moment.
    q.buffer.push_back(task(5, "late", "A"));
    std::thread::sleep(std::time::Duration::from_millis(30));
    assert_eq!(q.take(&req, 1).0.len(), 1);
}
