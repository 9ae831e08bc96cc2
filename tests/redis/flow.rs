//! The normal flow: submit and status, many tasks through two hosts, malformed entries, hand-back.

use crate::support::*;
use crate::{Host, Stream, counts, shell_worker};
use std::collections::{HashMap, HashSet};
use std::time::Duration;

#[test]
fn submit_status_and_results_with_redis() {
    let Some(s) = Stream::shared("submit") else {
        return;
    };
    let p = Project::new();
    let w = shell_worker(&p, "0");
    p.config_with(&s.tm("  result_ttl_seconds: 600"), "", &w);
    let out = p.run(&["check"]);
    assert!(out.status.success(), "{}", text(&out.stdout));
    assert!(text(&out.stdout).contains("task manager redis: reachable"));
    p.submit("T", "one", r#"{"n": 1}"#);
    let q = p.status("one").expect("status of a queued task");
    assert_eq!(
        (q["status"].as_str(), q["type"].as_str()),
        (Some("queued"), Some("T"))
    );
    let dup = p.run(&["submit", "--type", "T", "--id", "one"]);
    assert_eq!(dup.status.code(), Some(2), "a queued id is refused");
    assert!(p.status("nope").is_none(), "unknown ids are unknown");
    let out = p.run(&["--burst"]);
    assert_eq!(out.status.code(), Some(0), "{}", text(&out.stderr));
    let done = p.status("one").expect("status of a finished task");
    assert_eq!(done["status"], "succeeded");
    assert_eq!(done["result"]["attempts"], 1);
    assert!(done["result"]["result"]["pid"].is_u64());
    let ttl: i64 = redis::cmd("PTTL")
        .arg(format!("{}:result:one", s.name))
        .query(&mut s.con())
        .expect("PTTL");
    assert!(
        ttl > 0 && ttl <= 600_000,
        "result kept with result_ttl_seconds: {ttl}"
    );
    let dup = p.run(&["submit", "--type", "T", "--id", "one"]);
    assert_eq!(dup.status.code(), Some(2), "an id with a result is refused");
    assert_eq!(s.len(""), 0, "acked entries are deleted from the stream");
    assert_eq!(s.pending(), 0);
    let consumers: Vec<redis::Value> = redis::cmd("XINFO")
        .arg("CONSUMERS")
        .arg(&s.name)
        .arg("workerhost")
        .query(&mut s.con())
        .expect("XINFO");
    assert!(
        consumers.is_empty(),
        "a host removes its consumer when it stops"
    );
}

#[test]
fn five_hundred_tasks_through_two_hosts_each_done_exactly_once() {
    let Some(s) = Stream::shared("two-hosts") else {
        return;
    };
    let p = Project::new();
    let w = shell_worker(&p, "0.01");
    p.config_with(&s.tm(""), "  concurrency: 6", &w);
    for i in 0..500 {
        s.task(&format!("t{i}"), "T");
    }
    let mut a = Host::spawn(&p, &["--burst"]);
    let mut b = Host::spawn(&p, &["--burst"]);
    for h in [&mut a, &mut b] {
        let st = wait_child(&mut h.child, Duration::from_secs(120));
        assert!(st.success(), "{}", h.log());
    }
    let c = counts(&p);
    assert_eq!(c.len(), 500, "every task ran");
    let twice: Vec<_> = c.iter().filter(|(_, n)| **n > 1).collect();
    assert!(twice.is_empty(), "tasks ran twice: {twice:?}");
    assert!(s.all_succeeded((0..500).map(|i| format!("t{i}"))));
    let hosts: HashSet<String> = lines(&p.file("runs.log"))
        .iter()
        .filter_map(|l| l.split_whitespace().nth(2).map(str::to_string))
        .collect();
    assert_eq!(hosts.len(), 2, "both hosts took tasks");
    assert_eq!(s.len(""), 0);
    assert_eq!(s.pending(), 0);
}

#[test]
fn malformed_and_unknown_entries_end_in_dead_and_the_host_goes_on() {
    let Some(s) = Stream::shared("malformed") else {
        return;
    };
    let p = Project::new();
    let w = shell_worker(&p, "0");
    p.config_with(&s.tm(""), "", &w);
    s.xadd(&[("payload", "no task field")]);
    s.xadd(&[("task", "not json")]);
    s.xadd(&[("task", r#"{"id":"nt","params":{}}"#)]);
    s.task("nobody", "Nobody");
    s.task("good", "T");
    let mut host = Host::spawn(&p, &[]);
    assert!(
        wait_until(Duration::from_secs(20), || s.result("good").is_some()
            && s.dead().len() == 4),
        "{}",
        host.log()
    );
    // The host keeps going: a task added afterwards runs too.
    s.task("later", "T");
    assert!(wait_until(Duration::from_secs(20), || s
        .result("later")
        .is_some()));
    let (code, log) = host.stop();
    assert_eq!(code, Some(0), "{log}");
    // Dead-lettered without running, but hooks and metrics see them like any dead task.
    assert_eq!(
        log.matches("task dead-lettered").count(),
        4,
        "one task_dead_lettered event each: {log}"
    );
    let dead = s.dead();
    let errors: Vec<&str> = dead.iter().map(|d| d["error"].as_str()).collect();
    for want in [
        "no `task` field",
        "not JSON",
        "missing field `type`",
        "no worker handles type Nobody",
    ] {
        assert!(
            errors.iter().any(|e| e.contains(want)),
            "{want} not in {errors:?}"
        );
    }
    assert!(
        dead.iter().any(|d| d["task"] == "not json"),
        "the raw task is kept"
    );
    assert!(dead.iter().all(|d| d.contains_key("attempts")));
    assert_eq!(
        s.result("nt").expect("dead result by the task's own id")["status"],
        "dead"
    );
    assert_eq!(p.status("nobody").expect("status")["status"], "dead");
    assert_eq!(s.len(""), 0);
    assert_eq!(s.pending(), 0);
}

/// Issue 16: bytes that are not UTF-8 reached the worker "repaired" (`"\xff\xfe"` as `"��"`); an id with
/// a NUL was blamed on the worker; a `params` string lost the readable type in the dead letter.
#[test]
fn bytes_that_are_not_utf8_and_bad_ids_are_malformed_and_keep_what_was_readable() {
    let Some(s) = Stream::shared("utf8") else {
        return;
    };
    let p = Project::new();
    let w = shell_worker(&p, "0");
    p.config_with(&s.tm(""), "", &w);
    let mut c = redis::cmd("XADD");
    c.arg(&s.name)
        .arg("*")
        .arg("task")
        .arg(&b"{\"id\":\"bin\",\"type\":\"T\",\"params\":{\"s\":\"\xff\xfe\"}}"[..]);
    let _: String = c.query(&mut s.con()).expect("XADD raw bytes");
    s.xadd(&[("task", r#"{"id":"nul\u0000id","type":"T","params":{}}"#)]);
    s.xadd(&[("task", r#"{"id":"str","type":"T","params":"a string"}"#)]);
    s.task("good", "T");
    let mut host = Host::spawn(&p, &[]);
    let dead_errors = || -> Vec<String> {
        let v: Vec<(String, HashMap<String, Vec<u8>>)> = redis::cmd("XRANGE")
            .arg(format!("{}:dead", s.name))
            .arg("-")
            .arg("+")
            .query(&mut s.con())
            .expect("XRANGE");
        v.into_iter()
            .map(|(_, m)| String::from_utf8_lossy(&m["error"]).into_owned())
            .collect()
    };
    assert!(
        wait_until(Duration::from_secs(20), || s.result("good").is_some()
            && dead_errors().len() == 3),
        "{}",
        host.log()
    );
    let (code, log) = host.stop();
    assert_eq!(code, Some(0), "{log}");
    assert_eq!(
        counts(&p).get("bin"),
        None,
        "the task with bytes that are not UTF-8 never ran"
    );
    let errors = dead_errors();
    for want in [
        "not UTF-8 (invalid byte at offset",
        "field `id` holds a control character",
        "params",
    ] {
        assert!(
            errors.iter().any(|e| e.contains(want)),
            "{want} not in {errors:?}"
        );
    }
    let bin = s.result("bin").expect("dead result by the task's id");
    assert_eq!(bin["status"], "dead");
    assert_eq!(bin["error"]["outcome"], "malformed");
    let str_doc = s.result("str").expect("dead result");
    assert_eq!(str_doc["type"], "T", "the readable type is kept: {str_doc}");
    assert!(
        !log.contains("unhealthy"),
        "a bad task never changes a worker's health: {log}"
    );
    assert_eq!(s.len(""), 0);
    assert_eq!(s.pending(), 0);
}

#[test]
fn a_forced_stop_hands_the_task_back_without_counting_a_delivery() {
    let Some(s) = Stream::shared("release") else {
        return;
    };
    let p = Project::new();
    let w = shell_worker(&p, "30");
    p.config_with(&s.tm(""), "", &format!("{w}    max_deliveries: 1\n"));
    p.submit("T", "held", "{}");
    let mut host = Host::spawn(&p, &[]);
    assert!(wait_until(Duration::from_secs(20), || counts(&p).contains_key("held")));
    signal(&host.child, nix::sys::signal::Signal::SIGTERM);
    std::thread::sleep(Duration::from_millis(200));
    signal(&host.child, nix::sys::signal::Signal::SIGTERM);
    let st = wait_child(&mut host.child, Duration::from_secs(20));
    assert_eq!(st.code(), Some(130), "{}", host.log());
    assert_eq!(s.len(""), 1, "the task is back in the stream");
    assert_eq!(s.pending(), 0, "and not held by anyone");
    let st = p.status("held").expect("status");
    assert_eq!(
        (st["status"].as_str(), st["deliveries"].as_u64()),
        (Some("queued"), Some(0))
    );
    // max_deliveries is 1: had the hand-back counted, the next delivery would be dead-lettered.
    p.write("w.sh", "read -r doc\necho \"$WORKERHOST_TASK_ID $WORKERHOST_ATTEMPT\" >> runs.log\necho '{\"success\": true}'\n");
    let out = p.run(&["--burst"]);
    assert_eq!(out.status.code(), Some(0), "{}", text(&out.stderr));
    assert_eq!(s.result("held").expect("result")["status"], "succeeded");
    assert_eq!(counts(&p)["held"], 2);
}
