//! Section 8's verbs through the CLI, as one scenario every task manager that supports them passes
//! (sqlite has its own tests in tests/ops; redis and postgres run these): dead letters listed, retried
//! and purged, bad input refused without changing anything, cancel of a queued task, pause while a host
//! runs, resume; and cancel of a running task, whose process is killed and which is recorded cancelled.

use super::*;

/// Fails (non-retriable) while the file `broken` exists; `hang*` tasks write their pid to
/// `<id>.pid` and sleep 60 s; else succeeds. Records each task id in `runs.log`.
pub fn breakable_worker(p: &Project) -> String {
    p.write(
        "w.sh",
        "read -r doc\necho \"$WORKERHOST_TASK_ID\" >> runs.log\nif [ -e broken ]; then echo '{\"success\": false, \"error\": {\"message\": \"broken on purpose\", \"retry_possible\": false}}'; exit 2; fi\ncase \"$WORKERHOST_TASK_ID\" in hang*) echo $$ > \"$WORKERHOST_TASK_ID.pid\"; sleep 60 ;; esac\necho '{\"success\": true, \"result\": 1}'\n",
    );
    "  - name: sh\n    command: [\"/bin/sh\", \"./w.sh\"]\n    project_path: .\n    task_types: [T]\n    max_retries: 0\n".to_string()
}

pub fn json_of(p: &Project, args: &[&str]) -> Value {
    let out = p.run(args);
    assert!(out.status.success(), "{args:?}: {}", text(&out.stderr));
    serde_json::from_slice(&out.stdout)
        .unwrap_or_else(|e| panic!("{args:?}: {e}: {}", text(&out.stdout)))
}

pub fn depth_of(p: &Project, ty: &str) -> Value {
    let q = json_of(p, &["queue", "--json"]);
    q.as_array()
        .and_then(|a| a.iter().find(|d| d["type"] == ty).cloned())
        .unwrap_or_else(|| panic!("no row for {ty}: {q}"))
}

/// Runs a verb that must fail with `code`, saying `says`.
pub fn refused(p: &Project, args: &[&str], code: i32, says: &str) {
    let out = p.run(args);
    let err = text(&out.stderr);
    assert_eq!(out.status.code(), Some(code), "{args:?}: {err}");
    assert!(err.contains(says), "{args:?} should say {says:?}: {err}");
}

fn state(p: &Project, id: &str) -> String {
    p.status(id)
        .and_then(|s| s["status"].as_str().map(str::to_string))
        .unwrap_or_default()
}

fn dead_count(p: &Project) -> usize {
    json_of(p, &["dead", "list", "--json"])
        .as_array()
        .map_or(0, Vec::len)
}

/// A host of `p`'s config with its stderr in `host.log`.
fn host(p: &Project) -> Running {
    let log = std::fs::File::create(p.file("host.log")).expect("log file");
    Running(
        p.cmd(&["run", "--listen", "off"])
            .stdout(Stdio::null())
            .stderr(log)
            .spawn()
            .expect("spawn host"),
    )
}

fn host_log(p: &Project) -> String {
    std::fs::read_to_string(p.file("host.log")).unwrap_or_default()
}

fn stop(p: &Project, mut h: Running) {
    signal(&h.0, nix::sys::signal::Signal::SIGTERM);
    let status = wait_child(&mut h.0, Duration::from_secs(20));
    assert!(status.success(), "{status:?}: {}", host_log(p));
}

/// The dead-letter, depth, cancel and pause verbs on `p` (a config of [`breakable_worker`]).
pub fn dead_letters_depth_cancel_and_pause(p: &Project) {
    p.write("broken", "");
    p.submit("T", "d1", "{\"n\": 1}");
    p.submit("T", "d2", "{\"n\": 2}");
    let out = p.run(&["--burst"]);
    assert_eq!(out.status.code(), Some(0), "{}", text(&out.stderr));
    let dead = json_of(p, &["dead", "list", "--json"]);
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
        json_of(p, &["dead", "list", "--json", "--limit", "1"])
            .as_array()
            .map(Vec::len),
        Some(1)
    );
    assert_eq!(depth_of(p, "T")["dead"], 2);

    // Bad input changes nothing.
    refused(p, &["dead", "retry", "nope"], 1, "no task with id nope");
    refused(
        p,
        &["dead", "retry", "d1", "nope"],
        1,
        "no task with id nope",
    );
    p.submit("T", "q1", "{}");
    refused(p, &["dead", "retry", "q1"], 1, "not dead");
    refused(
        p,
        &["dead", "purge", "--older-than", "soon"],
        2,
        "--older-than",
    );
    assert_eq!(dead_count(p), 2);

    // Cancel a queued task: it never runs; a second cancel is refused.
    let out = p.run(&["cancel", "q1"]);
    assert!(out.status.success(), "{}", text(&out.stderr));
    assert_eq!(state(p, "q1"), "cancelled");
    refused(p, &["cancel", "q1"], 1, "already finished");
    refused(p, &["cancel", "ghost"], 1, "no task with id ghost");

    // Paused while a host runs: nothing of the type starts, not even the retried ones.
    assert!(p.run(&["pause", "T"]).status.success());
    let h = host(p);
    p.submit("T", "p1", "{}");
    std::fs::remove_file(p.file("broken")).expect("fix the worker");
    let out = p.run(&["dead", "retry", "--all"]);
    assert_eq!(
        text(&out.stdout).trim(),
        "retried 2",
        "{}",
        text(&out.stderr)
    );
    assert_eq!(dead_count(p), 0);
    std::thread::sleep(Duration::from_secs(3));
    let d = depth_of(p, "T");
    assert_eq!(
        (d["queued"].as_u64(), d["paused"].as_bool()),
        (Some(3), Some(true)),
        "{d}"
    );
    assert!(
        d["oldest_seconds"].as_f64().is_some_and(|s| s >= 2.0),
        "{d}"
    );
    assert_eq!(state(p, "p1"), "queued");
    let runs = lines(&p.file("runs.log"));
    assert_eq!(runs.len(), 2, "nothing ran while paused: {runs:?}");

    assert!(p.run(&["resume", "T"]).status.success());
    let all_done = wait_until(Duration::from_secs(20), || {
        ["d1", "d2", "p1"]
            .iter()
            .all(|id| state(p, id) == "succeeded")
    });
    assert!(all_done, "resumed tasks run: {}", host_log(p));
    let d1 = p.status("d1").expect("d1");
    assert_eq!(d1["result"]["attempts"], 1, "attempts start over: {d1}");
    let d = depth_of(p, "T");
    assert_eq!(
        (
            d["queued"].as_u64(),
            d["dead"].as_u64(),
            d["paused"].as_bool()
        ),
        (Some(0), Some(0), Some(false))
    );
    stop(p, h);
    let out = p.run(&["dead", "purge"]);
    assert_eq!(text(&out.stdout).trim(), "purged 0");
}

/// `cancel` of a running 60 s task: its host kills the process at its next renewal (the configs use
/// `lease_seconds: 2`) and records it `cancelled`; a second cancel is refused.
pub fn a_running_task_is_cancelled(p: &Project) {
    let h = host(p);
    p.submit("T", "hang1", "{}");
    assert!(
        wait_until(Duration::from_secs(15), || p.file("hang1.pid").exists()
            && state(p, "hang1") == "running"),
        "hang1 never ran: {:?}\n{}",
        p.status("hang1"),
        host_log(p)
    );
    let pid: i32 = std::fs::read_to_string(p.file("hang1.pid"))
        .expect("pid")
        .trim()
        .parse()
        .expect("a pid");
    let out = p.run(&["cancel", "hang1"]);
    assert_eq!(out.status.code(), Some(0), "{}", text(&out.stderr));
    assert!(
        wait_until(Duration::from_secs(10), || state(p, "hang1") == "cancelled"),
        "{:?}\n{}",
        p.status("hang1"),
        host_log(p)
    );
    let st = p.status("hang1").expect("status");
    assert_eq!(st["result"]["status"], "cancelled", "{st}");
    assert!(
        wait_until(Duration::from_secs(5), || !pid_alive(pid)),
        "the worker process is gone"
    );
    refused(p, &["cancel", "hang1"], 1, "already finished");
    assert!(host_log(p).contains("task cancelled"), "{}", host_log(p));
    stop(p, h);
}
