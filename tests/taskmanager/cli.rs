//! `submit`, `status` and `check` against the double, as the service really answers.

use crate::server::{self, KEY, TaskManager};
use crate::support::*;
use crate::{configure, run_with_key, worker};
use serde_json::{Value, json};

#[test]
fn status_of_an_unknown_task_fails_and_a_failed_task_shows_error_host_worker_and_duration() {
    let tm = TaskManager::default();
    tm.add_type("T");
    let url = server::start(tm.clone());
    let p = Project::new();
    configure(&p, &url, "", &worker(&p, "T", ""));
    let out = run_with_key(&p, KEY, &["status", "987654"]);
    assert_eq!(out.status.code(), Some(1), "{}", text(&out.stdout));
    assert!(
        text(&out.stderr).contains("no task with id 987654"),
        "{}",
        text(&out.stderr)
    );
    assert!(out.stdout.is_empty(), "{}", text(&out.stdout));

    // The worker fails non-retriably after a second; the service gives up after its own 3 attempts.
    let id = tm.add_task("T", json!({"fail": true, "slow_fail": true}));
    let out = run_with_key(&p, KEY, &["--burst", "--worker-id", "host-a"]);
    assert!(out.status.success(), "{}", text(&out.stderr));
    let out = run_with_key(&p, KEY, &["status", &id.to_string()]);
    assert!(out.status.success(), "{}", text(&out.stderr));
    let s: Value = serde_json::from_slice(&out.stdout).expect("status JSON");
    assert_eq!(s["status"], "dead", "{s}");
    let r = &s["result"];
    assert!(
        r["error"]
            .as_str()
            .is_some_and(|e| e.starts_with("BadInput: nope")),
        "{s}"
    );
    assert!(
        r["host"].as_str().is_some_and(|h| h.starts_with("host-a")),
        "the service's claimed_by: {s}"
    );
    assert_eq!(r["worker"], "sh", "the config's worker for the type: {s}");
    assert!(r["duration_ms"].as_u64().is_some_and(|d| d >= 1000), "{s}");
    assert_eq!(r["attempts"], 3, "{s}");
}

#[test]
fn submit_refuses_id_names_a_deduplicated_task_and_empty_params_are_bad_usage() {
    let tm = TaskManager::default();
    tm.add_type("T");
    let url = server::start(tm.clone());
    let p = Project::new();
    configure(&p, &url, "", &worker(&p, "T", ""));
    let out = run_with_key(
        &p,
        KEY,
        &[
            "submit",
            "--type",
            "T",
            "--id",
            "mine",
            "--params",
            r#"{"a": 1}"#,
        ],
    );
    assert_eq!(out.status.code(), Some(2));
    assert!(
        text(&out.stderr).contains("--id is not supported by the http task manager"),
        "{}",
        text(&out.stderr)
    );
    assert!(tm.lock().tasks.is_empty(), "nothing was created");

    let out = run_with_key(&p, KEY, &["submit", "--type", "T", "--params", "{}"]);
    assert_eq!(out.status.code(), Some(2), "{}", text(&out.stderr));
    assert!(
        text(&out.stderr).contains("non-empty params"),
        "{}",
        text(&out.stderr)
    );

    let first = run_with_key(
        &p,
        KEY,
        &["submit", "--type", "T", "--params", r#"{"a": 1}"#],
    );
    assert!(first.status.success(), "{}", text(&first.stderr));
    assert!(
        !text(&first.stderr).contains("already"),
        "{}",
        text(&first.stderr)
    );
    let again = run_with_key(
        &p,
        KEY,
        &["submit", "--type", "T", "--params", r#"{"a": 1}"#],
    );
    assert!(again.status.success(), "{}", text(&again.stderr));
    assert_eq!(
        text(&again.stdout),
        text(&first.stdout),
        "the existing task's id"
    );
    let err = text(&again.stderr);
    assert!(
        err.contains("already had this task") && err.contains("status pending"),
        "{err}"
    );
}

#[test]
fn check_only_reads_and_a_url_without_api_is_named() {
    let tm = TaskManager::default();
    let url = server::start(tm.clone());
    let p = Project::new();
    configure(&p, &url, "", &worker(&p, "New.Type", ""));
    let out = run_with_key(&p, KEY, &["check"]);
    let all = format!("{}{}", text(&out.stdout), text(&out.stderr));
    assert_eq!(out.status.code(), Some(0), "{all}");
    assert!(all.contains("`workerhost run` registers them"), "{all}");
    assert!(
        tm.lock().registered.is_empty(),
        "check registered {:?}",
        tm.lock().registered
    );
    assert!(
        tm.lock().requests.iter().all(|r| r.starts_with("GET ")),
        "check only reads: {:?}",
        tm.lock().requests
    );

    let bare = url.trim_end_matches("/api").to_string();
    configure(&p, &bare, "", &worker(&p, "New.Type", ""));
    for args in [
        &["check"][..],
        &["status", "1"],
        &["submit", "--type", "New.Type", "--params", r#"{"a": 1}"#],
    ] {
        let out = run_with_key(&p, KEY, args);
        let all = format!("{}{}", text(&out.stdout), text(&out.stderr));
        assert_ne!(out.status.code(), Some(0), "{args:?}: {all}");
        assert!(all.contains("missing /api"), "{args:?}: {all}");
        assert!(
            !all.contains("cannot resolve task types yet"),
            "{args:?}: {all}"
        );
    }
}
