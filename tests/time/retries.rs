//! Retries through the queue (section 7): a retry that waits longer than `retry.in_host_max_seconds`
//! frees its slot and lease and comes back as a scheduled task; shorter waits (and `exec`) stay in the
//! host.

use crate::Stream;
use crate::support::retries::{
    failing_and_healthy_workers, retries_wait_in_the_task_manager, run_order,
};
use crate::support::*;
use std::time::Duration;

#[test]
fn sqlite_retries_wait_in_the_queue_and_free_the_slot() {
    let p = Project::new();
    let w = failing_and_healthy_workers(&p, None);
    p.config("  concurrency: 1", &w);
    retries_wait_in_the_task_manager(&p);
}

#[test]
fn redis_retries_wait_in_the_queue_and_free_the_slot() {
    let Some(s) = Stream::shared("retries") else {
        return;
    };
    let p = Project::new();
    let w = failing_and_healthy_workers(&p, None);
    p.config_with(&s.tm(), "  concurrency: 1", &w);
    retries_wait_in_the_task_manager(&p);
}

/// With `in_host_max_seconds` above the backoff, the retries wait in the host and hold its one slot:
/// the healthy tasks run only after the failing one is dead.
#[test]
fn a_retry_shorter_than_in_host_max_waits_in_the_host() {
    let p = Project::new();
    let w = failing_and_healthy_workers(&p, Some(10.0));
    p.config("  concurrency: 1", &w);
    p.submit("F", "f1", "{}");
    let mut host = p.spawn_host(&["--burst"]);
    assert!(
        wait_until(Duration::from_secs(10), || !run_order(&p).is_empty()),
        "f1 never ran"
    );
    p.submit("T", "t1", "{}");
    assert!(wait_child(&mut host.0, Duration::from_secs(30)).success());
    let order = run_order(&p);
    let ids: Vec<(&str, u32)> = order.iter().map(|(i, a)| (i.as_str(), *a)).collect();
    assert_eq!(ids, [("f1", 1), ("f1", 2), ("f1", 3), ("t1", 1)]);
    assert_eq!(p.status("f1").expect("status")["status"], "dead");
}

/// `exec` has no queue: every retry waits in process, and the document counts all attempts.
#[test]
fn exec_keeps_every_retry_in_process() {
    let p = Project::new();
    let w = failing_and_healthy_workers(&p, None);
    p.config("", &w);
    let out = p.run(&["exec", "--type", "F", "--params", "{}"]);
    assert_eq!(out.status.code(), Some(1), "{}", text(&out.stderr));
    let doc: serde_json::Value = serde_json::from_slice(&out.stdout).expect("result document");
    assert_eq!(doc["status"], "dead", "{doc}");
    assert_eq!(doc["attempts"], 3, "{doc}");
    let attempts: Vec<u32> = run_order(&p).iter().map(|(_, a)| *a).collect();
    assert_eq!(attempts, [1, 2, 3]);
}
