//! The `http` task manager against a test TaskManager that answers as the PrismQ service does,
//! quirks included (see server.rs). The real `workerhost` binary is driven throughout.

mod cli;
mod facts;
mod faults;
mod server;
#[path = "../support/mod.rs"]
mod support;

use serde_json::json;
use server::{KEY, TaskManager};
use std::time::Duration;
use support::*;

/// Writes the config: the test TaskManager at `url` (plus `tm_extra` lines) and `workers`. The key goes
/// through the environment (`${TM_KEY}`) as a real deployment passes it.
pub(crate) fn configure(p: &Project, url: &str, tm_extra: &str, workers: &str) {
    p.config_with(
        &format!("  type: http\n  url: \"{url}\"\n  api_key: \"${{TM_KEY}}\"\n  poll_interval: 0.05\n{tm_extra}"),
        "",
        workers,
    );
}

pub(crate) fn run_with_key(p: &Project, key: &str, args: &[&str]) -> std::process::Output {
    p.cmd(args).env("TM_KEY", key).output().expect("run")
}

/// A shell worker: echoes params back, or fails as `params.fail` says, or reports progress.
pub(crate) fn worker(p: &Project, task_type: &str, extra: &str) -> String {
    p.write(
        "w.sh",
        r#"read -r doc
case "$doc" in
  *'"slow_fail"'*) sleep 1.1; echo '{"success": false, "error": {"type": "BadInput", "message": "nope", "retry_possible": false}}'; exit 2 ;;
  *'"fail"'*) echo '{"success": false, "error": {"type": "BadInput", "message": "nope", "retry_possible": false}}'; exit 2 ;;
  *'"progress"'*) echo '{"progress": 40, "message": "halfway"}' >&2; sleep 0.3; echo '{"progress": 100}' >&2 ;;
  *'"slow"'*) sleep 2 ;;
esac
printf '{"success": true, "result": {"echo": %s}}\n' "$doc"
"#,
    );
    format!(
        "  - name: sh\n    command: [\"/bin/sh\", \"./w.sh\"]\n    project_path: .\n    task_types: [\"{task_type}\"]\n{extra}"
    )
}

#[test]
fn tasks_flow_end_to_end_and_missing_types_are_registered() {
    let tm = TaskManager::default();
    tm.add_type("Video.Scrape");
    let ids: Vec<u64> = (0..10)
        .map(|i| tm.add_task("Video.Scrape", json!({"video_id": format!("v{i}")})))
        .collect();
    let url = server::start(tm.clone());
    let p = Project::new();
    let other =
        "  - name: other\n    command: [\"/bin/true\"]\n    task_types: [\"Image.Thumb\"]\n";
    configure(
        &p,
        &url,
        "",
        &format!("{}{other}", worker(&p, "Video.Scrape", "")),
    );
    let out = run_with_key(&p, KEY, &["--burst"]);
    assert!(out.status.success(), "{}", text(&out.stderr));
    for id in ids {
        let t = tm.task(id);
        assert_eq!(
            t.status,
            server::State::Completed,
            "task {id}: {}",
            text(&out.stderr)
        );
        assert_eq!(
            t.result
                .as_ref()
                .and_then(|r| r["echo"]["params"]["video_id"].as_str()),
            Some(format!("v{}", id - 1).as_str())
        );
        assert_eq!(t.completions.len(), 1);
    }
    assert_eq!(tm.lock().registered, vec!["Image.Thumb".to_string()]);

    // submit and status through the CLI
    let out = run_with_key(
        &p,
        KEY,
        &[
            "submit",
            "--type",
            "Video.Scrape",
            "--params",
            r#"{"video_id": "cli"}"#,
        ],
    );
    assert!(out.status.success(), "{}", text(&out.stderr));
    let id = text(&out.stdout).trim().to_string();
    assert_eq!(id, "11", "the service assigns the id");
    assert!(run_with_key(&p, KEY, &["--burst"]).status.success());
    let out = run_with_key(&p, KEY, &["status", &id]);
    assert!(out.status.success(), "{}", text(&out.stderr));
    let s: serde_json::Value = serde_json::from_slice(&out.stdout).expect("status");
    assert_eq!(s["status"], "succeeded");
}

#[test]
fn failures_are_reported_as_strings_and_the_server_requeues_them() {
    let tm = TaskManager::default();
    tm.add_type("T");
    let id = tm.add_task("T", json!({"fail": true}));
    // Empty answers arrive late, so a failure's complete (which requeues the task) lands while a claim
    // that found nothing is still on its way: `--burst` must not take that answer as the end.
    tm.lock().empty_claim_delay = Duration::from_millis(300);
    let url = server::start(tm.clone());
    let p = Project::new();
    configure(&p, &url, "", &worker(&p, "T", ""));
    let out = run_with_key(&p, KEY, &["--burst"]);
    assert!(out.status.success(), "{}", text(&out.stderr));
    let t = tm.task(id);
    assert_eq!(
        t.status,
        server::State::Failed,
        "the server gave up after its own 3 attempts"
    );
    assert_eq!(t.completions.len(), 3);
    let err = t.error_message.unwrap_or_default();
    assert!(err.starts_with("BadInput: nope"), "{err}");
    // Each claim's failure is a `task_failed`; only the last one, which the service kept as failed,
    // is a `task_dead_lettered` (the earlier ones it put back itself).
    let log = text(&out.stderr);
    let count = |what: &str| log.lines().filter(|l| l.contains(what)).count();
    assert_eq!(count("task failed"), 3, "{log}");
    assert_eq!(count("task dead-lettered"), 1, "{log}");
    assert_eq!(
        count("the task manager runs the task again itself"),
        2,
        "{log}"
    );
}

#[test]
fn a_lost_claim_is_counted_and_the_host_keeps_going() {
    let tm = TaskManager::default();
    tm.add_type("T");
    let slow = tm.add_task("T", json!({"slow": true}));
    let url = server::start(tm.clone());
    let p = Project::new();
    configure(&p, &url, "", &worker(&p, "T", ""));
    let port = free_port();
    let listen = format!("127.0.0.1:{port}");
    let mut host = Running(
        p.cmd(&["--listen", &listen])
            .env("TM_KEY", KEY)
            .stderr(std::process::Stdio::piped())
            .spawn()
            .expect("host"),
    );
    assert!(wait_until(Duration::from_secs(10), || tm.task(slow).status
        == server::State::Claimed));
    // The service's claim timeout passed: another worker takes the task over.
    tm.steal(slow, "other-host");
    let fast = tm.add_task("T", json!({"n": 1}));
    assert!(
        wait_until(Duration::from_secs(10), || tm.lock().forbidden_completes()
            == 1),
        "the host's complete must be refused"
    );
    assert!(
        wait_until(Duration::from_secs(10), || tm.task(fast).status
            == server::State::Completed),
        "the host keeps going"
    );
    let metrics = http_get(port, "/metrics", &[]).expect("metrics").body;
    assert!(
        metrics
            .lines()
            .any(|l| l == "workerhost_lost_claims_total 1"),
        "{metrics}"
    );
    signal(&host, nix::sys::signal::Signal::SIGTERM);
    assert!(wait_child(&mut host, Duration::from_secs(10)).success());
    let t = tm.task(slow);
    assert_eq!(
        t.claimed_by.as_deref(),
        Some("other-host"),
        "the new holder's claim is untouched"
    );
    assert_eq!(t.status, server::State::Claimed);
    let mut err = String::new();
    if let Some(mut e) = host.stderr.take() {
        use std::io::Read;
        let _ = e.read_to_string(&mut err);
    }
    assert!(err.contains("lease lost"), "{err}");
}

#[test]
fn a_bad_key_is_named_never_printed() {
    let tm = TaskManager::default();
    tm.add_type("T");
    let url = server::start(tm.clone());
    let p = Project::new();
    configure(&p, &url, "", &worker(&p, "T", ""));
    let out = run_with_key(&p, "wrong-key-value", &["check"]);
    let all = format!("{}{}", text(&out.stdout), text(&out.stderr));
    assert_eq!(out.status.code(), Some(1), "{all}");
    assert!(all.contains("api_key") && all.contains("401"), "{all}");
    assert!(
        !all.contains("wrong-key-value"),
        "the key must never be printed: {all}"
    );
    assert_eq!(run_with_key(&p, KEY, &["check"]).status.code(), Some(0));
}

#[test]
fn retry_after_is_honoured_and_progress_is_forwarded() {
    let tm = TaskManager::default();
    tm.add_type("T");
    let id = tm.add_task("T", json!({"progress": true}));
    tm.lock().throttle = 2;
    let url = server::start(tm.clone());
    let p = Project::new();
    configure(&p, &url, "", &worker(&p, "T", ""));
    let mut host = Running(
        p.cmd(&[])
            .env("TM_KEY", KEY)
            .stderr(std::process::Stdio::null())
            .spawn()
            .expect("host"),
    );
    assert!(wait_until(Duration::from_secs(15), || tm.task(id).status
        == server::State::Completed));
    signal(&host, nix::sys::signal::Signal::SIGTERM);
    assert!(wait_child(&mut host, Duration::from_secs(10)).success());
    assert_eq!(tm.lock().throttled, 2);
    let progress = tm.task(id).progress;
    assert!(
        progress.contains(&(40, Some("halfway".to_string()))),
        "{progress:?}"
    );
    assert!(progress.iter().any(|(p, _)| *p == 100), "{progress:?}");
}

#[test]
fn check_warns_when_the_worst_case_outlives_the_claim() {
    let tm = TaskManager::default();
    tm.add_type("T");
    let url = server::start(tm);
    let p = Project::new();
    let w = worker(
        &p,
        "T",
        "    timeout: 30
    max_retries: 2
",
    );
    configure(
        &p,
        &url,
        "  claim_timeout_seconds: 60
",
        &w,
    );
    let out = run_with_key(&p, KEY, &["check"]);
    let o = text(&out.stdout);
    assert_eq!(
        out.status.code(),
        Some(0),
        "a warning does not fail check: {o}"
    );
    assert!(
        o.contains("warn  worker sh: worst case") && o.contains("claim timeout (60 s"),
        "{o}"
    );
}
