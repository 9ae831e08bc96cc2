//! Signals: SIGTERM lets in-flight tasks finish; the grace period ends them; a second signal kills at once
//! and exits 130; unfinished tasks go back to the queue without counting a delivery.

use crate::support::*;
use nix::sys::signal::Signal;
use std::io::Read;
use std::time::Duration;

fn sleeper(p: &Project, secs: &str, host: &str) {
    p.write(
        "w.sh",
        &format!(
            "read -r doc\necho \"$WORKERHOST_TASK_ID $$\" >> runs.log\nsleep {secs}\necho '{{\"success\": true, \"result\": {{}}}}'\n"
        ),
    );
    p.config(
        host,
        "  - name: sh\n    command: [\"/bin/sh\", \"./w.sh\"]\n    project_path: .\n    task_types: [T]\n",
    );
}

fn started(p: &Project, n: usize) -> bool {
    wait_until(Duration::from_secs(15), || {
        lines(&p.file("runs.log")).len() >= n
    })
}

fn worker_pids(p: &Project) -> Vec<i32> {
    lines(&p.file("runs.log"))
        .iter()
        .filter_map(|l| l.split_whitespace().nth(1)?.parse().ok())
        .collect()
}

#[test]
fn sigterm_lets_in_flight_tasks_finish_and_exits_0() {
    let p = Project::new();
    sleeper(&p, "1", "  shutdown_grace_seconds: 30");
    p.submit("T", "a", "{}");
    p.submit("T", "b", "{}");
    let mut host = p.spawn_host(&["--concurrency", "1"]);
    assert!(started(&p, 1));
    signal(&host, Signal::SIGTERM);
    let st = wait_child(&mut host, Duration::from_secs(20));
    assert_eq!(st.code(), Some(0));
    assert_eq!(
        p.status("a").expect("a")["status"],
        "succeeded",
        "in-flight task finished"
    );
    let b = p.status("b").expect("b");
    assert_eq!(b["status"], "queued", "no new task after the signal");
    assert_eq!(b["deliveries"], 0);
}

#[test]
fn the_grace_period_ends_with_tasks_handed_back() {
    let p = Project::new();
    sleeper(&p, "60", "  shutdown_grace_seconds: 0.5");
    p.submit("T", "slow", "{}");
    let mut host = p.spawn_host(&[]);
    assert!(started(&p, 1));
    signal(&host, Signal::SIGTERM);
    let st = wait_child(&mut host, Duration::from_secs(15));
    assert_eq!(st.code(), Some(0));
    let s = p.status("slow").expect("slow");
    assert_eq!(s["status"], "queued", "handed back unfinished");
    assert_eq!(
        s["deliveries"], 0,
        "a hand-back does not count as a delivery"
    );
    for pid in worker_pids(&p) {
        assert!(
            wait_until(Duration::from_secs(2), || !pid_alive(pid)),
            "worker {pid} survived"
        );
    }
}

#[test]
fn a_second_signal_kills_at_once_and_exits_130() {
    let p = Project::new();
    sleeper(&p, "60", "  shutdown_grace_seconds: 60");
    p.submit("T", "x", "{}");
    let mut host = p.spawn_host(&[]);
    assert!(started(&p, 1));
    signal(&host, Signal::SIGINT);
    std::thread::sleep(Duration::from_millis(300));
    assert!(
        host.try_wait().expect("try_wait").is_none(),
        "still draining after one signal"
    );
    signal(&host, Signal::SIGINT);
    let st = wait_child(&mut host, Duration::from_secs(10));
    assert_eq!(st.code(), Some(130));
    let mut err = String::new();
    if let Some(mut e) = host.stderr.take() {
        let _ = e.read_to_string(&mut err);
    }
    assert!(err.contains("handed back"), "{err}");
    let s = p.status("x").expect("x");
    assert_eq!(s["status"], "queued");
    for pid in worker_pids(&p) {
        assert!(
            wait_until(Duration::from_secs(2), || !pid_alive(pid)),
            "worker {pid} survived"
        );
    }
}
