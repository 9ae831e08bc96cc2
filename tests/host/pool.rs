//! Pool mode: long-lived processes, one JSON line each way; dead, timed-out, garbage-speaking and
//! worn-out processes are replaced.

use crate::support::*;
use serde_json::Value;
use std::collections::HashSet;

/// A pool-mode Python worker (plain stdlib, the protocol by hand) whose behaviour per task is chosen by
/// `params.do`.
fn pool_project(extra: &str) -> Project {
    let p = Project::new();
    p.write(
        "poolw.py",
        r#"import json, os, signal, subprocess, sys, time
LEAK = []

def main():
    assert os.environ.get("WORKERHOST_MODE") == "pool", "the host tells pool workers so"
    for line in sys.stdin:
        task = json.loads(line)
        params = task.get("params") or {}
        with open("runs.log", "a") as f:
            f.write("%s %s %d\n" % (task["id"], task["attempt"], os.getpid()))
        do = params.get("do")
        if do == "crash" and task["attempt"] == 1:
            os._exit(9)
        if do == "hang":
            subprocess.Popen(["sleep", "1000"])
            time.sleep(1000)
        if do == "garbage":
            print("this is not json", flush=True)
            continue
        if do == "leak":
            LEAK.append(bytearray(8 * 1024 * 1024))
        rss = 0
        with open("/proc/self/status") as s:
            for l in s:
                if l.startswith("VmRSS:"):
                    rss = int(l.split()[1])
        print(json.dumps({"id": task["id"], "success": True,
                          "result": {"pid": os.getpid(), "rss_kb": rss}}), flush=True)
"#,
    );
    p.config(
        "  concurrency: 4",
        &py_entry("pw", "poolw", "T", &format!("    mode: pool\n{extra}")),
    );
    p
}

fn exec_doc(p: &Project, id: &str, params: &str) -> (i32, Value) {
    let out = p.run(&["exec", "--type", "T", "--id", id, "--params", params]);
    let doc = serde_json::from_slice(&out.stdout)
        .unwrap_or_else(|e| panic!("{e}: {} / {}", text(&out.stdout), text(&out.stderr)));
    (out.status.code().unwrap_or(-1), doc)
}

fn pids_of(p: &Project, ids: impl Iterator<Item = String>) -> HashSet<u64> {
    ids.map(|id| {
        let s = p.status(&id).expect("status");
        assert_eq!(s["status"], "succeeded", "{s}");
        s["result"]["result"]["pid"].as_u64().expect("pid")
    })
    .collect()
}

#[test]
fn processes_are_reused_across_tasks() {
    let p = pool_project("    pool_size: 2\n");
    for i in 0..30 {
        p.submit("T", &format!("t{i}"), "{}");
    }
    let out = p.run(&["--burst"]);
    assert!(out.status.success(), "{}", text(&out.stderr));
    let pids = pids_of(&p, (0..30).map(|i| format!("t{i}")));
    assert!(
        !pids.is_empty() && pids.len() <= 2,
        "pool_size 2 but {} processes",
        pids.len()
    );
}

#[test]
fn max_tasks_per_process_replaces_a_leaking_worker() {
    let p = pool_project("    pool_size: 1\n    max_tasks_per_process: 3\n");
    for i in 0..12 {
        p.submit("T", &format!("t{i:02}"), r#"{"do": "leak"}"#);
    }
    let out = p.run(&["--burst"]);
    assert!(out.status.success(), "{}", text(&out.stderr));
    let pids = pids_of(&p, (0..12).map(|i| format!("t{i:02}")));
    assert_eq!(pids.len(), 4, "12 tasks, 3 per process");
    let rss: Vec<u64> = (0..12)
        .map(|i| {
            p.status(&format!("t{i:02}")).expect("status")["result"]["result"]["rss_kb"]
                .as_u64()
                .expect("rss")
        })
        .collect();
    // Each task leaks 8 MiB; without the limit the 12th would sit ~90 MiB above the first.
    let first = rss[0];
    let max = rss.iter().copied().max().unwrap_or(0);
    assert!(
        max < first + 3 * 8 * 1024 + 4 * 1024,
        "rss grew to {max} kB from {first} kB"
    );
}

#[test]
fn a_process_that_dies_mid_task_is_a_crash_retried_on_a_fresh_process() {
    let p = pool_project("    pool_size: 1\n");
    let (code, doc) = exec_doc(&p, "c1", r#"{"do": "crash"}"#);
    assert_eq!(code, 0, "{doc}");
    assert_eq!(doc["attempts"], 2);
    let runs = lines(&p.file("runs.log"));
    assert_eq!(runs.len(), 2);
    let pid = |l: &str| l.split_whitespace().nth(2).map(str::to_string);
    assert_ne!(
        pid(&runs[0]),
        pid(&runs[1]),
        "a fresh process for the retry"
    );
}

#[test]
fn a_timed_out_pool_process_is_killed_with_its_group() {
    let p = pool_project("    pool_size: 1\n    timeout: 1\n    max_retries: 0\n");
    let (code, doc) = exec_doc(&p, "h1", r#"{"do": "hang"}"#);
    assert_eq!(code, 3, "{doc}");
    assert_eq!(doc["error"]["outcome"], "timeout");
    let worker_pid: i32 = lines(&p.file("runs.log"))[0]
        .split_whitespace()
        .nth(2)
        .and_then(|s| s.parse().ok())
        .expect("pid");
    assert!(wait_until(
        std::time::Duration::from_secs(3),
        || !pid_alive(worker_pid)
    ));
    // its `sleep 1000` child is gone too: no process in that group is left
    // (a zombie waiting for a reaper is dead already)
    let group_left = || {
        std::fs::read_dir("/proc")
            .expect("proc")
            .flatten()
            .any(|e| {
                std::fs::read_to_string(e.path().join("stat")).is_ok_and(|s| {
                    let f: Vec<&str> = s
                        .rsplit(')')
                        .next()
                        .unwrap_or("")
                        .split_whitespace()
                        .collect();
                    f.first() != Some(&"Z") && f.get(2) == Some(&worker_pid.to_string().as_str())
                })
            })
    };
    let group_left = !wait_until(std::time::Duration::from_secs(3), || !group_left());
    assert!(!group_left, "a process of the timed-out group survived");
}

#[test]
fn a_garbage_line_is_a_protocol_error_and_the_process_is_replaced() {
    let p = pool_project("    pool_size: 1\n");
    p.submit("T", "g1", r#"{"do": "garbage"}"#);
    p.submit("T", "ok1", "{}");
    let out = p.run(&["--burst", "--concurrency", "1"]);
    assert!(out.status.success());
    let g = p.status("g1").expect("g1");
    assert_eq!(g["status"], "dead");
    assert_eq!(g["result"]["error"]["outcome"], "protocol_error");
    assert_eq!(p.status("ok1").expect("ok1")["status"], "succeeded");
    let runs = lines(&p.file("runs.log"));
    let pids: HashSet<&str> = runs
        .iter()
        .filter_map(|l| l.split_whitespace().nth(2))
        .collect();
    assert_eq!(
        pids.len(),
        2,
        "the garbage-speaking process was replaced: {runs:?}"
    );
}
