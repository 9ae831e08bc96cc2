//! A worker never outlives its host: killed with SIGKILL, the host's workers get SIGKILL from the kernel
//! (their parent-death signal), in spawn and in pool mode.

use crate::support::*;
use nix::sys::signal::Signal;
use std::time::Duration;

/// Runs a host whose one worker records its pid and sleeps 60 s, kills the host with SIGKILL, and
/// checks that the worker is gone within a second.
fn worker_dies_with_its_host(mode_lines: &str) {
    let p = Project::new();
    // Reads one task per line (pool mode never closes stdin; spawn mode sends one line, then EOF).
    p.write(
        "w.py",
        "import json, os, sys, time\n\ndef main():\n    for line in sys.stdin:\n        json.loads(line)\n        open('worker.pid', 'w').write(str(os.getpid()))\n        time.sleep(60)\n",
    );
    p.config("", &py_entry("w", "w", "T", mode_lines));
    p.submit("T", "t1", "{}");
    let mut host = p.spawn_host(&["run"]);
    let pid_file = p.file("worker.pid");
    // The file exists as soon as the worker opens it, and holds the pid once it has written it.
    let read_pid =
        || -> Option<i32> { std::fs::read_to_string(&pid_file).ok()?.trim().parse().ok() };
    assert!(
        wait_until(Duration::from_secs(20), || read_pid().is_some()),
        "the worker did not start"
    );
    let pid: i32 = read_pid().expect("a pid");
    assert!(pid_alive(pid));
    signal(&host.0, Signal::SIGKILL);
    wait_child(&mut host.0, Duration::from_secs(5));
    assert!(
        wait_until(Duration::from_secs(1), || !pid_alive(pid)),
        "worker {pid} outlived its host by more than a second"
    );
}

#[test]
fn a_spawned_worker_dies_with_its_host() {
    worker_dies_with_its_host("");
}

#[test]
fn a_pool_worker_dies_with_its_host() {
    worker_dies_with_its_host("    mode: pool\n    pool_size: 1\n");
}

/// Starts that follow each other closely are made on the spawner thread; a worker started there must
/// live past the ~10 s after which an idle tokio blocking-pool thread ends (which, with the parent-death
/// signal, would have killed it).
#[test]
fn workers_started_together_outlive_an_idle_thread_timeout() {
    let p = Project::new();
    python_worker(
        &p,
        "w",
        "time.sleep(16)\nprint(json.dumps({'success': True, 'result': {'pid': os.getpid()}}))",
    );
    p.config(
        "  concurrency: 4",
        &py_entry("w", "w", "T", "    timeout: 60\n    max_retries: 0\n"),
    );
    for i in 0..4 {
        p.submit("T", &format!("t{i}"), "{}");
    }
    let out = p.cmd(&["run", "--burst"]).output().expect("run");
    assert!(out.status.success(), "{}", text(&out.stderr));
    for i in 0..4 {
        let doc = p.status(&format!("t{i}")).expect("status");
        assert_eq!(doc["status"], "succeeded", "t{i}: {doc}");
    }
}
