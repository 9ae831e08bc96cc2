//! `task_manager:` keys are the adapter's: each problem reported with its line and field, all at once.

use super::*;

#[test]
fn every_task_manager_problem_is_reported_with_line_and_field() {
    let text = r#"task_manager:
  type: redis
  stream: ""
  lease_seconds: "soon"
  block_ms: 0
  sream: typo
  result_ttl_seconds: -1
workers:
  - name: a
    command: [a]
    task_types: [A]
    timeout: 0
"#;
    let e = errors(text, &[]);
    assert_eq!(
        spots(&e),
        [
            (Some(4), "task_manager.lease_seconds"),
            (Some(5), "task_manager.block_ms"),
            (Some(6), "task_manager.sream"),
            (Some(7), "task_manager.result_ttl_seconds"),
            (Some(12), "workers[0].timeout"),
        ],
        "{e}"
    );
    let msg = |i: usize| e.problems[i].message.as_str();
    assert!(msg(0).contains("expected a number of seconds"), "{e}");
    assert!(msg(1).contains("nonzero"), "{e}");
    assert!(msg(2).contains("did you mean `stream`?"), "{e}");
    assert!(msg(3).contains("must be greater than 0"), "{e}");
    // With every key readable on its own, the adapter's own checks run: `stream` must not be empty.
    let e = errors("task_manager: { type: redis, stream: \"\" }\n", &[]);
    assert_eq!(spots(&e), [(Some(1), "task_manager.stream")], "{e}");
    let rendered = e.to_string();
    assert!(
        rendered.contains(&format!(
            "{CFG}:1: task_manager.stream: must be a non-empty string"
        )),
        "{rendered}"
    );
}

#[test]
fn task_manager_keys_belong_to_their_adapter() {
    let e = errors(
        "task_manager:\n  type: amqp\n  qeue: q\n  queue_type: stream\n  prefetch: 70000\n",
        &[],
    );
    assert_eq!(
        spots(&e),
        [
            (Some(3), "task_manager.qeue"),
            (Some(4), "task_manager.queue_type"),
            (Some(5), "task_manager.prefetch"),
        ],
        "{e}"
    );
    assert!(
        e.problems[0].message.contains("did you mean `queue`?"),
        "{e}"
    );
    assert!(e.problems[1].message.contains("classic"), "{e}");
    let e = errors("task_manager: { type: http }\n", &[]);
    assert_eq!(spots(&e), [(Some(1), "task_manager.url")], "{e}");
    assert!(e.problems[0].message.contains("`url` is required"), "{e}");
    // One file may serve several types: another adapter's key is ignored, not checked.
    let c = ok_with(
        "task_manager: { type: redis, path: ./q.db, api_key: \"\", stream: s }\n",
        &[],
    );
    let TaskManagerSettings::Redis(s) = &c.task_manager else {
        panic!("expected redis, got {:?}", c.task_manager);
    };
    assert_eq!(s.stream, "s");
    // Every type loads in every build (postgres too); opening one is what needs its cargo feature.
    let c = ok_with("task_manager: { type: postgres, schema: wh }\n", &[]);
    assert_eq!(c.task_manager.kind(), "postgres");
}

#[test]
fn expanded_task_manager_values_take_the_type_the_adapter_wants() {
    let text = "task_manager:\n  type: redis\n  lease_seconds: ${LEASE:-2.5}\n  block_ms: ${BLOCK}\n  stream: ${STREAM}\n  group: ${GROUP}\n";
    let env = [("BLOCK", "250"), ("STREAM", "007"), ("GROUP", "true")];
    let c = ok_with(text, &env);
    let TaskManagerSettings::Redis(s) = &c.task_manager else {
        panic!("expected redis, got {:?}", c.task_manager);
    };
    assert_eq!(s.lease(), Duration::from_millis(2500));
    assert_eq!(s.block_ms(), 250);
    assert_eq!((s.stream.as_str(), s.group.as_str()), ("007", "true"));
    assert_eq!(c.task_manager.lease(), Duration::from_millis(2500));
    let e = errors(text, &[("BLOCK", "soon"), ("STREAM", "s"), ("GROUP", "g")]);
    assert_eq!(spots(&e), [(Some(4), "task_manager.block_ms")], "{e}");
}

#[test]
fn the_host_reads_lease_and_claim_timeout_from_the_settings() {
    let c = ok_with(
        "task_manager: { type: http, url: \"http://127.0.0.1:1/api\", claim_timeout_seconds: 90 }\n",
        &[],
    );
    assert_eq!(
        c.task_manager.claim_timeout(),
        Some(Duration::from_secs(90))
    );
    assert_eq!(c.task_manager.lease(), Duration::from_secs(30));
    let c = ok_with(
        "task_manager: { path: q.db, lease_seconds: 4, max_deliveries: 2 }\n",
        &[],
    );
    assert_eq!(c.task_manager.kind(), "sqlite");
    assert_eq!(c.task_manager.lease(), Duration::from_secs(4));
    assert_eq!(c.task_manager.max_deliveries(), Some(2));
    assert_eq!(c.task_manager.claim_timeout(), None);
    let e = errors("task_manager: { max_deliveries: 0 }\n", &[]);
    assert_eq!(spots(&e), [(Some(1), "task_manager.max_deliveries")], "{e}");
}
