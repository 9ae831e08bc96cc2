//! The scenario of section 7's retries through the queue, run against each task manager that can hold a
//! due time: a failing worker with a 1.5 s backoff next to a healthy one on a host that runs one task at
//! a time. The failing task's waits are in the task manager, so the healthy tasks run meanwhile.

use super::*;

/// Two workers: `fail` (type `F`, exits 1 every time, backoff 1.5 s then 3 s, 2 retries) and `ok` (type
/// `T`). Both record `<task id> <attempt>` in `runs.log`. `in_host_max` sets
/// `retry.in_host_max_seconds` of the failing worker.
pub fn failing_and_healthy_workers(p: &Project, in_host_max: Option<f64>) -> String {
    p.write(
        "fail.sh",
        "read -r doc\necho \"$WORKERHOST_TASK_ID $WORKERHOST_ATTEMPT\" >> runs.log\necho 'upstream said no' >&2\nexit 1\n",
    );
    p.write(
        "ok.sh",
        "read -r doc\necho \"$WORKERHOST_TASK_ID $WORKERHOST_ATTEMPT\" >> runs.log\nprintf '{\"success\": true, \"result\": {}}\\n'\n",
    );
    let in_host = in_host_max
        .map(|s| format!(", in_host_max_seconds: {s}"))
        .unwrap_or_default();
    format!(
        "  - name: fail\n    command: [\"/bin/sh\", \"./fail.sh\"]\n    project_path: .\n    task_types: [F]\n    max_retries: 2\n    retry: {{ base_delay_seconds: 1.5, backoff_multiplier: 2.0, max_delay_seconds: 10, jitter: false{in_host} }}\n  - name: ok\n    command: [\"/bin/sh\", \"./ok.sh\"]\n    project_path: .\n    task_types: [T]\n"
    )
}

/// The run order in `runs.log`: `(task id, attempt)`.
pub fn run_order(p: &Project) -> Vec<(String, u32)> {
    lines(&p.file("runs.log"))
        .iter()
        .filter_map(|l| {
            let (id, a) = l.split_once(' ')?;
            Some((id.to_string(), a.trim().parse().ok()?))
        })
        .collect()
}

/// Submits `f1`, runs a `--burst` host (concurrency 1) to the end, and submits `t1`..`t5` once `f1`'s first
/// attempt failed. With retries in
/// the task manager: the healthy tasks all run between the failing task's attempts, `f1` is
/// `scheduled` with its attempts and last error while it waits, the burst waits for it, and it ends dead
/// after 3 attempts numbered 1, 2, 3.
pub fn retries_wait_in_the_task_manager(p: &Project) {
    p.submit("F", "f1", "{}");
    let log = std::fs::File::create(p.file("host.log")).expect("log file");
    let mut host = Running(
        p.cmd(&["--burst"])
            .stdout(Stdio::null())
            .stderr(log)
            .spawn()
            .expect("spawn host"),
    );
    let log = || std::fs::read_to_string(p.file("host.log")).unwrap_or_default();
    assert!(
        wait_until(Duration::from_secs(10), || {
            p.status("f1").is_some_and(|s| s["status"] == "scheduled")
        }),
        "f1 never became scheduled: {:?}\n{}",
        p.status("f1"),
        log()
    );
    for i in 1..=5 {
        p.submit("T", &format!("t{i}"), "{}");
    }
    let s = p.status("f1").expect("status");
    assert_eq!(s["attempts"], 1, "{s}");
    assert!(
        s["last_error"].as_str().is_some_and(|e| !e.is_empty()),
        "the last error is kept while the retry waits: {s}"
    );
    let status = wait_child(&mut host.0, Duration::from_secs(30));
    assert!(status.success(), "burst host: {status:?}\n{}", log());
    assert!(
        log().contains("retry waits in the task manager"),
        "{}",
        log()
    );
    let order = run_order(p);
    let attempts: Vec<u32> = order
        .iter()
        .filter(|(id, _)| id == "f1")
        .map(|(_, a)| *a)
        .collect();
    assert_eq!(attempts, [1, 2, 3], "{order:?}");
    let second = order
        .iter()
        .position(|(id, a)| id == "f1" && *a == 2)
        .expect("second attempt");
    let healthy_before: usize = order[..second]
        .iter()
        .filter(|(id, _)| id.starts_with('t'))
        .count();
    assert_eq!(
        healthy_before, 5,
        "the healthy tasks run while the retry waits (order {order:?})"
    );
    let s = p.status("f1").expect("status");
    assert_eq!(
        s["status"], "dead",
        "the burst waited for its own retries: {s}"
    );
    assert_eq!(s["result"]["attempts"], 3, "{s}");
    for i in 1..=5 {
        assert_eq!(
            p.status(&format!("t{i}")).expect("t")["status"],
            "succeeded"
        );
    }
}
