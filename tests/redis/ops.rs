//! Operating a Redis queue (SPEC section 8) through the CLI: dead letters listed, retried and purged,
//! the depth, cancel of a queued task, pause (entries parked while a host runs) and resume.

use crate::support::*;
use crate::{Host, Stream};
use serde_json::Value;
use std::time::Duration;

/// Fails (non-retriable) while the file `broken` exists, else succeeds.
fn breakable_worker(p: &Project) -> String {
    p.write(
        "w.sh",
        "read -r doc\necho \"$WORKERHOST_TASK_ID\" >> runs.log\nif [ -e broken ]; then echo '{\"success\": false, \"error\": {\"message\": \"broken on purpose\", \"retry_possible\": false}}'; exit 2; fi\necho '{\"success\": true, \"result\": 1}'\n",
    );
    "  - name: sh\n    command: [\"/bin/sh\", \"./w.sh\"]\n    project_path: .\n    task_types: [T]\n    max_retries: 0\n".to_string()
}

fn json_of(p: &Project, args: &[&str]) -> Value {
    let out = p.run(args);
    assert!(out.status.success(), "{args:?}: {}", text(&out.stderr));
    serde_json::from_slice(&out.stdout)
        .unwrap_or_else(|e| panic!("{args:?}: {e}: {}", text(&out.stdout)))
}

fn depth_of(p: &Project, ty: &str) -> Value {
    let q = json_of(p, &["queue", "--json"]);
    q.as_array()
        .and_then(|a| a.iter().find(|d| d["type"] == ty).cloned())
        .unwrap_or_else(|| panic!("no row for {ty}: {q}"))
}

/// Runs a verb that must fail with `code`, saying `says`.
fn refused(p: &Project, args: &[&str], code: i32, says: &str) {
    let out = p.run(args);
    let err = text(&out.stderr);
    assert_eq!(out.status.code(), Some(code), "{args:?}: {err}");
    assert!(err.contains(says), "{args:?} should say {says:?}: {err}");
}

#[test]
fn dead_letters_depth_cancel_and_pause_on_redis() {
    let Some(s) = Stream::shared("ops") else {
        return;
    };
    let p = Project::new();
    let w = breakable_worker(&p);
    p.config_with(&s.tm(""), "", &w);
    p.write("broken", "");
    p.submit("T", "d1", "{\"n\": 1}");
    p.submit("T", "d2", "{\"n\": 2}");
    let out = p.run(&["--burst"]);
    assert_eq!(out.status.code(), Some(0), "{}", text(&out.stderr));
    let dead = json_of(&p, &["dead", "list", "--json"]);
    let mut ids: Vec<&str> = dead
        .as_array()
        .expect("list")
        .iter()
        .filter_map(|d| d["id"].as_str())
        .collect();
    ids.sort();
    assert_eq!(ids, ["d1", "d2"], "{dead}");
    assert_eq!(dead[0]["error"], "broken on purpose");
    assert_eq!(dead[0]["attempts"], 1);
    assert!(dead[0]["at"].as_str().is_some_and(|a| a.ends_with('Z')));
    assert_eq!(
        json_of(&p, &["dead", "list", "--json", "--limit", "1"])
            .as_array()
            .map(Vec::len),
        Some(1)
    );
    assert_eq!(depth_of(&p, "T")["dead"], 2);

    // Bad input changes nothing.
    refused(&p, &["dead", "retry", "nope"], 1, "no task with id nope");
    refused(
        &p,
        &["dead", "retry", "d1", "nope"],
        1,
        "no task with id nope",
    );
    p.submit("T", "q1", "{}");
    refused(&p, &["dead", "retry", "q1"], 1, "not dead");
    refused(
        &p,
        &["dead", "purge", "--older-than", "soon"],
        2,
        "--older-than",
    );
    assert_eq!(s.dead().len(), 2);

    // Cancel a queued task: it never runs; a second cancel is refused.
    let out = p.run(&["cancel", "q1"]);
    assert!(out.status.success(), "{}", text(&out.stderr));
    assert_eq!(p.status("q1").expect("q1")["status"], "cancelled");
    refused(&p, &["cancel", "q1"], 1, "already finished");
    refused(&p, &["cancel", "ghost"], 1, "no task with id ghost");

    // Paused while a host runs: nothing of the type starts, not even the retried ones.
    assert!(p.run(&["pause", "T"]).status.success());
    let mut host = Host::spawn(&p, &["run", "--listen", "off"]);
    p.submit("T", "p1", "{}");
    std::fs::remove_file(p.file("broken")).expect("fix the worker");
    let out = p.run(&["dead", "retry", "--all"]);
    assert_eq!(
        text(&out.stdout).trim(),
        "retried 2",
        "{}",
        text(&out.stderr)
    );
    assert!(s.dead().is_empty());
    std::thread::sleep(Duration::from_secs(3));
    let d = depth_of(&p, "T");
    assert_eq!(
        (d["queued"].as_u64(), d["paused"].as_bool()),
        (Some(3), Some(true)),
        "{d}"
    );
    assert!(
        d["oldest_seconds"].as_f64().is_some_and(|s| s >= 2.0),
        "{d}"
    );
    assert_eq!(p.status("p1").expect("p1")["status"], "queued");
    let runs = lines(&p.file("runs.log"));
    assert_eq!(runs.len(), 2, "nothing ran while paused: {runs:?}");

    assert!(p.run(&["resume", "T"]).status.success());
    let all_done = wait_until(Duration::from_secs(20), || {
        ["d1", "d2", "p1"]
            .iter()
            .all(|id| s.result(id).is_some_and(|r| r["status"] == "succeeded"))
    });
    assert!(all_done, "resumed tasks run: {}", host.log());
    assert_eq!(
        s.result("d1").expect("d1")["attempts"],
        1,
        "attempts start over"
    );
    let d = depth_of(&p, "T");
    assert_eq!(
        (
            d["queued"].as_u64(),
            d["dead"].as_u64(),
            d["paused"].as_bool()
        ),
        (Some(0), Some(0), Some(false))
    );
    let (code, log) = host.stop();
    assert_eq!(code, Some(0), "{log}");
    let out = p.run(&["dead", "purge"]);
    assert_eq!(text(&out.stdout).trim(), "purged 0");
}

#[test]
fn purge_filters_by_age_and_type() {
    let Some(s) = Stream::shared("purge") else {
        return;
    };
    let p = Project::new();
    let w = breakable_worker(&p);
    p.config_with(&s.tm(""), "", &w);
    p.write("broken", "");
    for id in ["a", "b"] {
        p.submit("T", id, "{}");
    }
    assert_eq!(p.run(&["--burst"]).status.code(), Some(0));
    let out = p.run(&["dead", "purge", "--older-than", "1h"]);
    assert_eq!(
        text(&out.stdout).trim(),
        "purged 0",
        "{}",
        text(&out.stderr)
    );
    let out = p.run(&["dead", "purge", "--type", "Other"]);
    assert_eq!(text(&out.stdout).trim(), "purged 0");
    std::thread::sleep(Duration::from_millis(1100));
    let out = p.run(&["dead", "purge", "--older-than", "1s", "--type", "T"]);
    assert_eq!(
        text(&out.stdout).trim(),
        "purged 2",
        "{}",
        text(&out.stderr)
    );
    assert!(s.dead().is_empty());
    assert!(p.status("a").is_none(), "a purged task is gone");
}

#[test]
fn a_scheduled_task_counts_as_scheduled_and_cancels() {
    let Some(s) = Stream::shared("ops-sched") else {
        return;
    };
    let p = Project::new();
    let w = breakable_worker(&p);
    p.config_with(&s.tm(""), "", &w);
    let out = p.run(&["submit", "--type", "T", "--id", "later", "--delay", "1h"]);
    assert!(out.status.success(), "{}", text(&out.stderr));
    assert_eq!(depth_of(&p, "T")["scheduled"], 1);
    let out = p.run(&["cancel", "later"]);
    assert!(out.status.success(), "{}", text(&out.stderr));
    assert_eq!(p.status("later").expect("later")["status"], "cancelled");
    assert_eq!(depth_of(&p, "T")["scheduled"], 0);
}
