//! Delayed tasks and priorities: `scheduled` until due, never started before `run_at`, a `run_at` in the
//! past runs at once, bad values dead-lettered, due tasks moved once however many hosts move them.

use crate::support::*;
use crate::{Logs, Stream, host_logged, recording_worker, stop};
use serde_json::json;
use std::collections::HashMap;
use std::time::{Duration, Instant};

fn submit(p: &Project, id: &str, extra: &[&str]) {
    let mut args = vec!["submit", "--type", "T", "--id", id];
    args.extend_from_slice(extra);
    let out = p.run(&args);
    assert_eq!(out.status.code(), Some(0), "{}", text(&out.stderr));
}

fn runs(p: &Project) -> HashMap<String, usize> {
    let mut m = HashMap::new();
    for l in lines(&p.file("runs.log")) {
        *m.entry(l.split_whitespace().next().unwrap_or("").to_string())
            .or_insert(0) += 1;
    }
    m
}

/// A task delayed 3 s is `scheduled`, does not run before it is due, then runs once; one due an hour ago
/// runs at once.
fn a_delayed_task_waits_until_due(p: &Project) {
    let host = host_logged(p, "host.log", &[]);
    let submitted = Instant::now();
    submit(p, "later", &["--delay", "3s"]);
    submit(p, "past", &["--at", "2001-01-01T00:00:00Z"]);
    let s = p.status("later").expect("status");
    assert_eq!(s["status"], "scheduled", "{s}");
    assert!(
        s["run_at"].as_str().is_some_and(|t| t.ends_with('Z')),
        "{s}"
    );
    assert!(
        wait_until(Duration::from_secs(5), || runs(p).contains_key("past")),
        "a run_at in the past must run at once: {}",
        p.host_log_named("host.log")
    );
    while submitted.elapsed() < Duration::from_millis(2500) {
        assert!(!runs(p).contains_key("later"), "ran before its run_at");
        std::thread::sleep(Duration::from_millis(50));
    }
    assert!(
        wait_until(Duration::from_secs(8), || runs(p).contains_key("later")),
        "the delayed task never ran: {}",
        p.host_log_named("host.log")
    );
    assert!(submitted.elapsed() >= Duration::from_secs(3) - Duration::from_millis(100));
    assert!(stop(host).success());
    assert_eq!(runs(p).get("later"), Some(&1));
    assert_eq!(p.status("later").expect("status")["status"], "succeeded");
}

#[test]
fn sqlite_holds_a_delayed_task_until_due() {
    let p = Project::new();
    let w = recording_worker(&p);
    p.config("", &w);
    a_delayed_task_waits_until_due(&p);
}

#[test]
fn sqlite_runs_higher_priorities_first() {
    let p = Project::new();
    let w = recording_worker(&p);
    p.config("  concurrency: 1", &w);
    submit(&p, "low", &[]);
    submit(&p, "urgent", &["--priority", "10"]);
    submit(&p, "negative", &["--priority", "-5"]);
    submit(&p, "high", &["--priority", "3"]);
    let out = p.run(&["--burst"]);
    assert_eq!(out.status.code(), Some(0), "{}", text(&out.stderr));
    let order: Vec<String> = lines(&p.file("runs.log"))
        .iter()
        .map(|l| l.split_whitespace().next().unwrap_or("").to_string())
        .collect();
    assert_eq!(order, vec!["urgent", "high", "low", "negative"]);
}

#[test]
fn redis_holds_a_delayed_task_until_due() {
    let Some(s) = Stream::shared("delayed") else {
        return;
    };
    let p = Project::new();
    let w = recording_worker(&p);
    p.config_with(&s.tm(), "", &w);
    a_delayed_task_waits_until_due(&p);
}

#[test]
fn redis_entries_added_by_hand_with_run_at_wait_or_are_dead_lettered() {
    let Some(s) = Stream::shared("by-hand") else {
        return;
    };
    let p = Project::new();
    let w = recording_worker(&p);
    p.config_with(&s.tm(), "", &w);
    let due = workerhost_adapters::rfc3339_ms(workerhost_adapters::now_ms() + 2500);
    let xadd = |task: serde_json::Value| {
        let _: String = redis::cmd("XADD")
            .arg(&s.name)
            .arg("*")
            .arg("task")
            .arg(task.to_string())
            .query(&mut s.con())
            .expect("XADD");
    };
    xadd(json!({"id": "soon", "type": "T", "params": {}, "run_at": due}));
    xadd(json!({"id": "bad-at", "type": "T", "params": {}, "run_at": "next tuesday"}));
    xadd(json!({"id": "bad-prio", "type": "T", "params": {}, "priority": "high"}));
    let host = host_logged(&p, "host.log", &[]);
    assert!(
        wait_until(Duration::from_secs(5), || p
            .status("soon")
            .is_some_and(|st| st["status"] == "scheduled")),
        "{}",
        p.host_log_named("host.log")
    );
    assert!(!runs(&p).contains_key("soon"));
    assert!(
        wait_until(Duration::from_secs(8), || runs(&p).contains_key("soon")),
        "{}",
        p.host_log_named("host.log")
    );
    let dead: Vec<(String, Vec<(String, String)>)> = redis::cmd("XRANGE")
        .arg(format!("{}:dead", s.name))
        .arg("-")
        .arg("+")
        .query(&mut s.con())
        .expect("XRANGE dead");
    let errors: Vec<String> = dead
        .iter()
        .flat_map(|(_, f)| {
            f.iter()
                .filter(|(k, _)| k == "error")
                .map(|(_, v)| v.clone())
        })
        .collect();
    assert!(
        errors
            .iter()
            .any(|e| e.contains("bad-at") && e.contains("run_at")),
        "{errors:?}"
    );
    assert!(
        errors
            .iter()
            .any(|e| e.contains("bad-prio") && e.contains("priority")),
        "{errors:?}"
    );
    assert!(stop(host).success());
    assert!(!runs(&p).contains_key("bad-at"));
}

/// 300 tasks due in the same second, two hosts moving them: each runs exactly once.
#[test]
fn redis_due_tasks_are_moved_once_by_competing_hosts() {
    let Some(s) = Stream::shared("movers") else {
        return;
    };
    let p = Project::new();
    let w = recording_worker(&p);
    p.config_with(&s.tm(), "  concurrency: 16", &w);
    let due = workerhost_adapters::rfc3339_ms(workerhost_adapters::now_ms() + 3000);
    // Straight into the due set, as `submit --at` puts them (300 submits would take longer than 3 s).
    let mut c = s.con();
    for i in 0..300 {
        let id = format!("t{i}");
        let env = json!({"id": id, "type": "T", "params": {}, "run_at": due}).to_string();
        let _: i64 = redis::cmd("HSET")
            .arg(format!("{}:scheduled", s.name))
            .arg(&id)
            .arg(env)
            .query(&mut c)
            .expect("HSET");
        let _: i64 = redis::cmd("ZADD")
            .arg(format!("{}:due", s.name))
            .arg(workerhost_adapters::parse_rfc3339(&due).expect("due").0)
            .arg(&id)
            .query(&mut c)
            .expect("ZADD");
    }
    let a = host_logged(&p, "a.log", &[]);
    let b = host_logged(&p, "b.log", &[]);
    assert!(
        wait_until(Duration::from_secs(30), || runs(&p).len() == 300),
        "ran {} of 300",
        runs(&p).len()
    );
    std::thread::sleep(Duration::from_millis(500));
    assert!(stop(a).success());
    assert!(stop(b).success());
    let r = runs(&p);
    assert!(r.values().all(|&n| n == 1), "a task ran twice");
    let left: i64 = redis::cmd("ZCARD")
        .arg(format!("{}:due", s.name))
        .query(&mut c)
        .expect("ZCARD");
    assert_eq!(left, 0);
}
