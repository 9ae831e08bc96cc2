//! The host against its embedded SQLite queue: each task once, nothing lost on `kill -9`, leases renewed
//! while a task runs, delivery limit, unknown types and malformed rows dead-lettered.

use crate::support::*;
use nix::sys::signal::Signal;
use std::collections::HashMap;
use std::time::Duration;

/// A shell worker (no interpreter start-up) that records each run and optionally sleeps.
fn shell_worker(p: &Project, sleep: &str) -> String {
    p.write(
        "w.sh",
        &format!(
            "read -r doc\necho \"$WORKERHOST_TASK_ID $WORKERHOST_ATTEMPT\" >> runs.log\nsleep {sleep}\nprintf '{{\"success\": true, \"result\": {{\"pid\": %s}}}}\\n' $$\n"
        ),
    );
    "  - name: sh\n    command: [\"/bin/sh\", \"./w.sh\"]\n    project_path: .\n    task_types: [T]\n".to_string()
}

fn submit_many(p: &Project, n: usize) {
    // `submit` is one process per task, as users run it; write the params once.
    for i in 0..n {
        p.submit("T", &format!("t{i}"), "{}");
    }
}

fn counts(p: &Project) -> HashMap<String, usize> {
    let mut m = HashMap::new();
    for l in lines(&p.file("runs.log")) {
        let id = l.split_whitespace().next().unwrap_or("").to_string();
        *m.entry(id).or_insert(0) += 1;
    }
    m
}

#[test]
fn a_thousand_tasks_each_run_exactly_once_with_concurrency_8() {
    let p = Project::new();
    let w = shell_worker(&p, "0");
    p.config("  concurrency: 8", &w);
    submit_many(&p, 1000);
    let out = p.run(&["--burst"]);
    assert_eq!(out.status.code(), Some(0), "{}", text(&out.stderr));
    // The log went to a pipe, not a terminal: plain text, no colour codes.
    let log = text(&out.stderr);
    assert!(log.contains("task succeeded"), "{log}");
    assert!(!log.contains('\u{1b}'), "colour codes in a piped log");
    let c = counts(&p);
    assert_eq!(c.len(), 1000);
    assert!(c.values().all(|&n| n == 1), "a task ran twice");
    for i in [0, 499, 999] {
        let s = p.status(&format!("t{i}")).expect("status");
        assert_eq!(s["status"], "succeeded");
        assert!(s["result"]["result"]["pid"].is_u64());
    }
}

#[test]
fn concurrency_caps_hold_globally_and_per_worker() {
    let p = Project::new();
    // Each run records start and end; overlap is computed from the log.
    p.write(
        "w.sh",
        "read -r doc\necho \"start $WORKERHOST_TASK_TYPE\" >> events.log\nsleep 0.2\necho \"end $WORKERHOST_TASK_TYPE\" >> events.log\necho '{\"success\": true}'\n",
    );
    p.config(
        "  concurrency: 3",
        "  - name: a\n    command: [\"/bin/sh\", \"./w.sh\"]\n    project_path: .\n    task_types: [A]\n    concurrency: 1\n  - name: b\n    command: [\"/bin/sh\", \"./w.sh\"]\n    project_path: .\n    task_types: [B]\n",
    );
    for i in 0..6 {
        p.submit("A", &format!("a{i}"), "{}");
        p.submit("B", &format!("b{i}"), "{}");
    }
    let out = p.run(&["--burst"]);
    assert_eq!(out.status.code(), Some(0), "{}", text(&out.stderr));
    let (mut all, mut a, mut max_all, mut max_a) = (0i32, 0i32, 0, 0);
    for l in lines(&p.file("events.log")) {
        let d = if l.starts_with("start") { 1 } else { -1 };
        all += d;
        if l.ends_with(" A") {
            a += d;
        }
        max_all = max_all.max(all);
        max_a = max_a.max(a);
    }
    assert_eq!(max_a, 1, "worker a has concurrency 1");
    assert!(max_all <= 3, "host concurrency 3, saw {max_all}");
    assert!(max_all >= 2, "b should run beside a");
}

#[test]
fn kill_9_of_the_host_loses_nothing() {
    let p = Project::new();
    let w = shell_worker(&p, "0.3");
    p.config("  concurrency: 4", &w);
    submit_many(&p, 40);
    let mut host = p.spawn_host(&[]);
    assert!(
        wait_until(Duration::from_secs(20), || counts(&p).len() >= 8),
        "host started no tasks"
    );
    signal(&host, Signal::SIGKILL);
    let _ = host.wait();
    // Restart: the dead host's leases (2 s) expire and its tasks come back.
    let out = p.run(&["--burst"]);
    assert_eq!(out.status.code(), Some(0), "{}", text(&out.stderr));
    let out2 = p.run(&["--burst"]);
    assert_eq!(out2.status.code(), Some(0));
    // --burst does not wait for other hosts' leases; poll until the expired ones are done too.
    assert!(
        wait_until(Duration::from_secs(20), || {
            let _ = p.run(&["--burst"]);
            (0..40).all(|i| {
                p.status(&format!("t{i}"))
                    .is_some_and(|s| s["status"] == "succeeded")
            })
        }),
        "some task never finished after the restart"
    );
    let c = counts(&p);
    assert_eq!(c.len(), 40);
}

#[test]
fn a_task_running_longer_than_its_lease_is_not_run_twice() {
    let p = Project::new();
    // lease_seconds is 2 in the test config: the task runs 3x that.
    let w = shell_worker(&p, "6");
    p.config("", &w);
    p.submit("T", "long", "{}");
    let mut first = p.spawn_host(&[]);
    assert!(wait_until(Duration::from_secs(10), || counts(&p).contains_key("long")));
    // A second host polls the same queue all along.
    let mut second = p.spawn_host(&[]);
    assert!(wait_until(Duration::from_secs(20), || p
        .status("long")
        .is_some_and(|s| s["status"] == "succeeded")));
    signal(&first, Signal::SIGTERM);
    signal(&second, Signal::SIGTERM);
    assert!(wait_child(&mut first, Duration::from_secs(10)).success());
    assert!(wait_child(&mut second, Duration::from_secs(10)).success());
    assert_eq!(
        counts(&p)["long"],
        1,
        "the lease was renewed; nobody took the task over"
    );
}

#[test]
fn a_task_delivered_too_often_is_dead_lettered() {
    let p = Project::new();
    let w = shell_worker(&p, "0");
    p.config("", &format!("{w}    max_deliveries: 3\n"));
    p.submit("T", "poison", "{}");
    // Simulate three hosts that died holding it.
    let conn = rusqlite::Connection::open(p.file("queue.db")).expect("open");
    conn.execute("UPDATE tasks SET deliveries = 3 WHERE id = 'poison'", [])
        .expect("update");
    drop(conn);
    let out = p.run(&["--burst"]);
    assert_eq!(out.status.code(), Some(0));
    let s = p.status("poison").expect("status");
    assert_eq!(s["status"], "dead");
    let msg = s["result"]["error"]["message"].as_str().unwrap_or("");
    assert!(msg.contains("delivery limit reached"), "{msg}");
    assert!(counts(&p).is_empty(), "the poison task must not run again");
}

#[test]
fn unknown_types_and_malformed_rows_are_dead_lettered_and_the_host_goes_on() {
    let p = Project::new();
    let w = shell_worker(&p, "0");
    p.write(
        "record.sh",
        "printf '%s ' \"$WORKERHOST_EVENT\" >> events.log\ncat >> events.log\necho >> events.log\n",
    );
    let observers = "observers:\n  - type: command\n    command: [\"/bin/sh\", \"./record.sh\"]\n    events: [task_failed, task_dead_lettered]\n";
    p.config("", &format!("{w}{observers}"));
    let out = p.run(&["submit", "--type", "Nobody", "--id", "u1"]);
    assert_eq!(out.status.code(), Some(2), "submit refuses an unknown type");
    assert!(text(&out.stderr).contains("no worker in this config handles type"));
    let out = p.run(&["submit", "--type", "Nobody", "--id", "u1", "--any-type"]);
    assert!(out.status.success());
    p.submit("T", "bad", "{}");
    p.submit("T", "good", "{}");
    let conn = rusqlite::Connection::open(p.file("queue.db")).expect("open");
    conn.execute("UPDATE tasks SET params = 'not json' WHERE id = 'bad'", [])
        .expect("update");
    drop(conn);
    let out = p.run(&["--burst"]);
    assert_eq!(out.status.code(), Some(0), "{}", text(&out.stderr));
    assert_eq!(p.status("good").expect("good")["status"], "succeeded");
    let bad = p.status("bad").expect("bad");
    assert_eq!(bad["status"], "dead");
    let u = p.status("u1").expect("u1");
    assert_eq!(u["status"], "dead");
    assert!(
        u["result"]["error"]["message"]
            .as_str()
            .is_some_and(|m| m.contains("no worker handles type Nobody"))
    );
    // Hooks hear of both, as they would on any other task manager.
    let events = lines(&p.file("events.log"));
    for (id, kind) in [
        ("u1", "task_failed"),
        ("u1", "task_dead_lettered"),
        ("bad", "task_dead_lettered"),
    ] {
        assert!(
            events
                .iter()
                .any(|l| l.starts_with(kind) && l.contains(&format!("\"task_id\":\"{id}\""))),
            "no {kind} for {id}: {events:?}"
        );
    }
}

#[test]
fn burst_asks_every_worker_even_when_capacity_is_smaller_than_the_registry() {
    // Concurrency 1 and three workers: whichever worker comes first in a claim round, the others'
    // types must still be asked for, or --burst would stop with tasks left.
    let p = Project::new();
    let _ = shell_worker(&p, "0");
    let entry = |name: &str, t: &str| {
        format!(
            "  - name: {name}\n    command: [\"/bin/sh\", \"./w.sh\"]\n    project_path: .\n    task_types: [{t}]\n"
        )
    };
    p.config(
        "  concurrency: 1",
        &format!("{}{}{}", entry("a", "A"), entry("b", "B"), entry("c", "C")),
    );
    for i in 0..3 {
        p.submit("C", &format!("c{i}"), "{}");
    }
    let out = p.run(&["--burst"]);
    assert!(out.status.success(), "{}", text(&out.stderr));
    assert_eq!(
        counts(&p).len(),
        3,
        "every C task ran before --burst stopped"
    );
}

#[test]
fn a_host_whose_log_pipe_is_gone_keeps_running_tasks() {
    // A log shipper that went away leaves the host's stderr a broken pipe. Logging must not take tasks
    // down with it (tracing's fallback report of a failed write used to panic inside each task, which
    // left the task claimed and the host waiting for it forever).
    let p = Project::new();
    let w = shell_worker(&p, "0");
    p.config("  concurrency: 4", &w);
    submit_many(&p, 20);
    let mut child = p
        .cmd(&["--burst"])
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .expect("start the host");
    drop(child.stderr.take());
    let status = wait_child(&mut child, Duration::from_secs(60));
    assert_eq!(status.code(), Some(0));
    let c = counts(&p);
    assert_eq!(c.len(), 20, "runs: {c:?}");
    assert!(c.values().all(|&n| n == 1), "a task ran twice: {c:?}");
    for i in 0..20 {
        let s = p.status(&format!("t{i}")).expect("status");
        assert_eq!(s["status"], "succeeded", "t{i}: {s}");
    }
}
