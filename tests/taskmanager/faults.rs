//! The host against the double's faults: a claim that times out while its task runs (and comes back to
//! this host), completes refused with 400 or 404, a long `Retry-After` at SIGTERM, hostile `Retry-After`
//! values, claim answers that are not tasks, and progress that must end at the worker's last value.

use crate::server::{self, Hostile, KEY, State, TaskManager};
use crate::support::*;
use crate::{configure, run_with_key};
use serde_json::json;
use std::path::PathBuf;
use std::time::{Duration, Instant};

/// A host with its stderr in a file (read while it runs) and its HTTP server on a free port.
struct Host {
    child: Running,
    log: PathBuf,
    port: u16,
}

impl Host {
    fn start(p: &Project, extra: &[&str]) -> Host {
        let port = free_port();
        let log = p.file("host.log");
        let file = std::fs::File::create(&log).expect("log file");
        let listen = format!("127.0.0.1:{port}");
        let mut args = vec!["--listen", listen.as_str()];
        args.extend_from_slice(extra);
        let child = p
            .cmd(&args)
            .env("TM_KEY", KEY)
            .env("RUST_LOG", "info")
            .stdout(std::process::Stdio::null())
            .stderr(file)
            .spawn()
            .expect("host");
        let host = Host {
            child: Running(child),
            log,
            port,
        };
        assert!(
            wait_until(Duration::from_secs(10), || http_get(port, "/health", &[])
                .is_ok()),
            "the host's /health never answered"
        );
        host
    }

    fn log(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }

    fn metric(&self, line_start: &str) -> Option<f64> {
        let m = http_get(self.port, "/metrics", &[]).ok()?.body;
        m.lines()
            .find(|l| l.starts_with(line_start))
            .and_then(|l| l.rsplit(' ').next())
            .and_then(|v| v.parse().ok())
    }

    fn in_flight(&self) -> Option<u64> {
        http_get(self.port, "/health", &[]).ok()?.json()["in_flight"].as_u64()
    }

    /// SIGTERM, then the exit status within `limit`.
    fn stop(mut self, limit: Duration) -> (std::process::ExitStatus, String) {
        signal(&self.child, nix::sys::signal::Signal::SIGTERM);
        let st = wait_child(&mut self.child, limit);
        (st, self.log())
    }
}

/// A worker that appends one line per run to `runs.txt`, then sleeps `params.sleep` seconds and echoes.
fn counting_worker(p: &Project, concurrency: &str) -> String {
    p.write(
        "count.sh",
        r#"read -r doc
echo run >> runs.txt
s=$(printf '%s' "$doc" | sed -n 's/.*"sleep": *\([0-9.]*\).*/\1/p')
[ -n "$s" ] && sleep "$s"
printf '{"success": true, "result": {"ok": 1}}\n'
"#,
    );
    format!(
        "  - name: counted\n    command: [\"/bin/sh\", \"./count.sh\"]\n    project_path: .\n    task_types: [\"T\"]\n{concurrency}"
    )
}

#[test]
fn a_task_that_outlives_the_claim_timeout_never_runs_twice_here() {
    let tm = TaskManager::default();
    tm.add_type("T");
    tm.lock().claim_timeout = Duration::from_millis(700);
    let id = tm.add_task("T", json!({"sleep": 3}));
    let url = server::start(tm.clone());
    let p = Project::new();
    configure(&p, &url, "", &counting_worker(&p, ""));
    let host = Host::start(&p, &["--concurrency", "2"]);
    assert!(wait_until(Duration::from_secs(15), || tm.task(id).status
        == State::Completed));
    let t = tm.task(id);
    assert!(
        t.claims.len() >= 2,
        "the service handed the task to this host again while it ran: {:?}",
        t.claims
    );
    assert!(t.claims.iter().all(|c| c == &t.claims[0]), "{:?}", t.claims);
    assert_eq!(
        std::fs::read_to_string(p.file("runs.txt"))
            .unwrap_or_default()
            .lines()
            .count(),
        1,
        "one process"
    );
    assert_eq!(t.completions.len(), 1);
    assert!(
        tm.lock().refused_completes.is_empty(),
        "{:?}",
        tm.lock().refused_completes
    );
    assert!(
        wait_until(Duration::from_secs(5), || host.in_flight() == Some(0)),
        "the slot is free again"
    );
    assert_eq!(
        host.metric("workerhost_tasks_total{status=\"succeeded\",worker=\"counted\"}"),
        Some(1.0)
    );
    // Capacity is whole again: two tasks run side by side.
    let a = tm.add_task("T", json!({"sleep": 1, "n": 1}));
    let b = tm.add_task("T", json!({"sleep": 1, "n": 2}));
    assert!(wait_until(Duration::from_secs(10), || {
        tm.task(a).status == State::Completed && tm.task(b).status == State::Completed
    }));
    let (st, log) = host.stop(Duration::from_secs(10));
    assert!(st.success(), "{log}");
    assert!(log.contains("no second process"), "{log}");
    assert!(!log.contains("will be delivered again"), "{log}");
}

#[test]
fn completes_refused_with_400_or_404_are_final_and_free_the_slot() {
    let tm = TaskManager::default();
    tm.add_type("T");
    let gone = tm.add_task("T", json!({"sleep": 1, "n": "gone"}));
    let p = Project::new();
    let url = server::start(tm.clone());
    configure(&p, &url, "", &counting_worker(&p, ""));
    let host = Host::start(&p, &["--concurrency", "1"]);
    assert!(wait_until(Duration::from_secs(10), || tm.task(gone).status
        == State::Claimed));
    // Deleted on the service while it runs: complete answers 404.
    tm.delete(gone);
    let taken = tm.add_task("T", json!({"sleep": 1, "n": "taken"}));
    assert!(wait_until(Duration::from_secs(10), || tm
        .task(taken)
        .status
        == State::Claimed));
    // Finished by someone else meanwhile: complete answers 400 "Task is not in claimed state".
    tm.lock()
        .tasks
        .iter_mut()
        .filter(|t| t.id == taken)
        .for_each(|t| t.status = State::Completed);
    let later: Vec<u64> = (0..5)
        .map(|i| tm.add_task("T", json!({"later": i})))
        .collect();
    assert!(
        wait_until(Duration::from_secs(20), || later
            .iter()
            .all(|id| tm.task(*id).status == State::Completed)),
        "claiming went on: {:?}",
        later
            .iter()
            .map(|id| tm.task(*id).status)
            .collect::<Vec<_>>()
    );
    assert_eq!(
        tm.lock().refused_completes,
        vec![404, 400],
        "each refused once, never retried"
    );
    assert_eq!(host.metric("workerhost_lost_claims_total"), Some(2.0));
    assert!(wait_until(Duration::from_secs(5), || host.in_flight() == Some(0)));
    let started = Instant::now();
    let (st, log) = host.stop(Duration::from_secs(20));
    assert!(st.success(), "{log}");
    assert!(
        started.elapsed() < Duration::from_secs(10),
        "nothing held the shutdown: {log}"
    );
    assert!(
        log.contains("no longer has the task") && log.contains("no longer claimed"),
        "{log}"
    );
}

#[test]
fn sigterm_during_a_long_retry_after_stops_at_once() {
    let tm = TaskManager::default();
    tm.add_type("T");
    {
        let mut s = tm.lock();
        s.throttle = 1000;
        s.retry_after = "51".into();
    }
    let url = server::start(tm.clone());
    let p = Project::new();
    configure(&p, &url, "", &counting_worker(&p, ""));
    let host = Host::start(&p, &[]);
    assert!(wait_until(Duration::from_secs(10), || tm.lock().throttled >= 1));
    std::thread::sleep(Duration::from_millis(300));
    assert_eq!(
        tm.lock().throttled,
        1,
        "Retry-After is honoured: no request before it passes"
    );
    let asked = Instant::now();
    let (st, log) = host.stop(Duration::from_secs(40));
    assert!(st.success(), "{log}");
    assert!(
        asked.elapsed() < Duration::from_secs(10),
        "SIGTERM waited out the Retry-After: {log}"
    );
}

/// One task behind one 429 carrying `value`; returns (the task completed within `limit`, the host's
/// log, how long SIGTERM took).
fn behind_one_429(value: &str, limit: Duration) -> (bool, String, Duration) {
    let tm = TaskManager::default();
    tm.add_type("T");
    let id = tm.add_task("T", json!({"v": value}));
    {
        let mut s = tm.lock();
        s.throttle = 1;
        s.retry_after = value.into();
    }
    let url = server::start(tm.clone());
    let p = Project::new();
    configure(&p, &url, "", &counting_worker(&p, ""));
    let host = Host::start(&p, &[]);
    let done = wait_until(limit, || tm.task(id).status == State::Completed);
    let asked = Instant::now();
    let (st, log) = host.stop(Duration::from_secs(20));
    assert!(st.success(), "Retry-After {value:?}: {log}");
    assert!(!log.contains("panicked"), "Retry-After {value:?}: {log}");
    (done, log, asked.elapsed())
}

#[test]
fn hostile_retry_after_values_are_clamped_never_a_panic() {
    // "Now": negative, a date in the past; not a value at all: the poll interval.
    for value in ["-1", "0", "NaN", "soon", "Wed, 21 Oct 2015 07:28:00 GMT"] {
        let (done, log, _) = behind_one_429(value, Duration::from_secs(10));
        assert!(done, "Retry-After {value:?}: {log}");
    }
    // "Very long": clamped (to 5 minutes), and the wait still ends at SIGTERM.
    for value in ["inf", "99999999999999999999999", "1e300"] {
        let (done, log, stopping) = behind_one_429(value, Duration::from_secs(2));
        assert!(
            !done,
            "Retry-After {value:?} is a long wait, honoured: {log}"
        );
        assert!(log.contains("no request for 300000 ms"), "clamped: {log}");
        assert!(
            stopping < Duration::from_secs(10),
            "Retry-After {value:?}: {log}"
        );
    }
    // An HTTP-date a few seconds ahead is honoured, then the task runs.
    let started = Instant::now();
    let (done, log, _) = behind_one_429(
        &httpdate_in(Duration::from_secs(3)),
        Duration::from_secs(15),
    );
    assert!(done, "{log}");
    assert!(
        started.elapsed() >= Duration::from_millis(1500),
        "the date was honoured: {log}"
    );
}

/// An HTTP-date `d` from now.
fn httpdate_in(d: Duration) -> String {
    let t = std::time::SystemTime::now() + d;
    let secs = t
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0) as i64;
    // Format by hand (IMF-fixdate) to keep the test free of the adapter's parser.
    let days = secs.div_euclid(86_400);
    let rem = secs.rem_euclid(86_400);
    let weekday = ["Thu", "Fri", "Sat", "Sun", "Mon", "Tue", "Wed"][days.rem_euclid(7) as usize];
    let iso = workerhost_adapters::rfc3339_ms(secs * 1000);
    let (y, m, dd) = (&iso[0..4], &iso[5..7], &iso[8..10]);
    let month = [
        "Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec",
    ][m.parse::<usize>().unwrap_or(1) - 1];
    format!(
        "{weekday}, {dd} {month} {y} {:02}:{:02}:{:02} GMT",
        rem / 3600,
        rem / 60 % 60,
        rem % 60
    )
}

#[test]
fn claim_answers_that_are_not_tasks_are_logged_counted_and_do_not_cycle() {
    let tm = TaskManager::default();
    tm.add_type("T");
    tm.lock().claim_timeout = Duration::from_millis(800);
    let ids: Vec<u64> = (0..5).map(|i| tm.add_task("T", json!({"i": i}))).collect();
    tm.lock().hostile = [
        Hostile::Html,
        Hostile::Empty,
        Hostile::NoId,
        Hostile::Deep,
        Hostile::BadParams,
    ]
    .into();
    let url = server::start(tm.clone());
    let p = Project::new();
    configure(&p, &url, "", &counting_worker(&p, ""));
    let host = Host::start(&p, &[]);
    assert!(
        wait_until(Duration::from_secs(20), || ids
            .iter()
            .all(|id| tm.task(*id).status == State::Completed)),
        "every task completes once its claim is answered readably: {:?}",
        ids.iter().map(|id| tm.task(*id).status).collect::<Vec<_>>()
    );
    assert_eq!(
        host.metric("workerhost_task_manager_unreadable_answers_total"),
        Some(5.0)
    );
    // The one whose id could be read was reported failed at once (not left to the claim timeout).
    let reported = ids
        .iter()
        .map(|id| tm.task(*id))
        .find(|t| t.completions.len() == 2);
    assert!(
        reported.is_some(),
        "{:?}",
        ids.iter()
            .map(|id| tm.task(*id).completions)
            .collect::<Vec<_>>()
    );
    let (st, log) = host.stop(Duration::from_secs(10));
    assert!(st.success(), "{log}");
    let errors: Vec<&str> = log
        .lines()
        .filter(|l| l.contains("ERROR") && l.contains("not a task"))
        .collect();
    assert_eq!(errors.len(), 5, "{log}");
    assert!(
        log.contains("MySQL server has gone away") && log.contains("(empty body)"),
        "{log}"
    );
}

#[test]
fn progress_ends_at_the_workers_last_value() {
    let tm = TaskManager::default();
    tm.add_type("T");
    let id = tm.add_task("T", json!({"p": 1}));
    let url = server::start(tm.clone());
    let p = Project::new();
    p.write(
        "prog.sh",
        r#"read -r doc
for v in 10 20 33 50 66 83; do echo "{\"progress\": $v, \"message\": \"at $v\"}" >&2; sleep 0.1; done
printf '{"success": true, "result": {"ok": 1}}\n'
"#,
    );
    let w = "  - name: prog\n    command: [\"/bin/sh\", \"./prog.sh\"]\n    project_path: .\n    task_types: [\"T\"]\n";
    configure(&p, &url, "", w);
    let out = run_with_key(&p, KEY, &["--burst"]);
    assert!(out.status.success(), "{}", text(&out.stderr));
    let t = tm.task(id);
    assert_eq!(t.status, State::Completed);
    assert_eq!(t.progress_value, 83, "{:?}", t.progress);
    assert_eq!(t.progress.last(), Some(&(83, Some("at 83".to_string()))));
    assert!(
        t.progress.len() < 6,
        "throttled to one a second: {:?}",
        t.progress
    );
}

#[test]
fn failures_the_service_reruns_number_attempts_across_its_claims() {
    let tm = TaskManager::default();
    tm.add_type("T");
    let id = tm.add_task("T", json!({"a": 1}));
    let url = server::start(tm.clone());
    let p = Project::new();
    p.write(
        "fail.sh",
        r#"read -r doc
printf '%s\n' "$doc" | sed -n 's/.*"attempt": *\([0-9]*\).*/\1/p' >> attempts.txt
exit 1
"#,
    );
    let w = "  - name: failing\n    command: [\"/bin/sh\", \"./fail.sh\"]\n    project_path: .\n    task_types: [\"T\"]\n    max_retries: 1\n";
    configure(&p, &url, "", w);
    let out = run_with_key(&p, KEY, &["--burst"]);
    assert!(out.status.success(), "{}", text(&out.stderr));
    assert_eq!(
        tm.task(id).status,
        State::Failed,
        "the service gave up after its 3 claims"
    );
    let seen: Vec<u32> = std::fs::read_to_string(p.file("attempts.txt"))
        .unwrap_or_default()
        .lines()
        .filter_map(|l| l.trim().parse().ok())
        .collect();
    // max_retries: 1 is 2 runs a claim, and the service claims 3 times: 6 runs, numbered 1..=6.
    assert_eq!(seen, vec![1, 2, 3, 4, 5, 6]);
}
