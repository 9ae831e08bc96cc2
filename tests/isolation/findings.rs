//! Findings of the fault-injection run fixed with section 9, host side: each test failed before its fix.

use crate::support::*;
use serde_json::Value;

fn exec(p: &Project, extra: &[&str]) -> (i32, Value, String) {
    let mut args = vec!["exec", "--type", "T", "--id", "t1"];
    args.extend_from_slice(extra);
    let out = p.run(&args);
    let doc = serde_json::from_slice(&out.stdout).unwrap_or_else(|e| {
        panic!(
            "not a result ({e}): {} / {}",
            text(&out.stdout),
            text(&out.stderr)
        )
    });
    (out.status.code().unwrap_or(-1), doc, text(&out.stderr))
}

/// `function: handel` (a typo) was retried as an ordinary failure and the worker stayed healthy.
#[test]
fn a_function_that_cannot_be_imported_is_a_spawn_error_and_check_finds_it() {
    let p = Project::new();
    python_worker(&p, "w", "print(json.dumps({'success': True}))");
    let entry = py_entry("w", "w", "T", "    max_retries: 3\n")
        .replace("function: main", "function: handel");
    p.config("", &entry);
    let (code, doc, _) = exec(&p, &[]);
    assert_eq!(code, 2, "{doc}");
    assert_eq!(doc["error"]["outcome"], "spawn_error", "{doc}");
    let msg = doc["error"]["message"].as_str().unwrap_or("");
    assert!(
        msg.contains("handel") && msg.contains("cannot import"),
        "{msg}"
    );
    assert_eq!(doc["attempts"], 1, "not retried");

    let out = p.run(&["check"]);
    assert_eq!(out.status.code(), Some(1), "{}", text(&out.stdout));
    let all = format!("{}{}", text(&out.stdout), text(&out.stderr));
    assert!(all.contains("has no function handel"), "{all}");
}

/// `check` imported the module with the host's environment: a worker whose module needs its `env:`
/// (here a variable its import reads) was reported FAIL although it runs.
#[test]
fn check_imports_the_module_with_the_workers_own_environment() {
    let p = Project::new();
    python_worker(&p, "w", "print(json.dumps({'success': True}))");
    let src = std::fs::read_to_string(p.file("w.py")).expect("w.py");
    p.write(
        "w.py",
        &format!("import os\nif os.environ.get('NEEDED') != '1':\n    raise RuntimeError('NEEDED is not set')\n{src}"),
    );
    p.config("", &py_entry("w", "w", "T", "    env: { NEEDED: \"1\" }\n"));
    let out = p.run(&["check"]);
    let all = format!("{}{}", text(&out.stdout), text(&out.stderr));
    assert_eq!(out.status.code(), Some(0), "{all}");
    let (code, doc, _) = exec(&p, &[]);
    assert_eq!(code, 0, "{doc}");
    // Without the variable, the failed import is named as such, not as a module not found.
    p.config("", &py_entry("w", "w", "T", ""));
    let out = p.run(&["check"]);
    let all = format!("{}{}", text(&out.stdout), text(&out.stderr));
    assert_eq!(out.status.code(), Some(1), "{all}");
    assert!(
        all.contains("cannot import module w") && all.contains("NEEDED is not set"),
        "{all}"
    );
}

/// A worker's `logs` message of 5 MB was logged whole, one 5 MB line.
#[test]
fn a_huge_log_message_from_a_worker_is_cut_in_the_hosts_log() {
    let p = Project::new();
    python_worker(
        &p,
        "w",
        "print(json.dumps({'success': True, 'result': {}, 'logs': [{'level': 'warning', 'message': 'L' * 5000000}]}))",
    );
    p.config("", &py_entry("w", "w", "T", ""));
    let (code, doc, err) = exec(&p, &[]);
    assert_eq!(code, 0, "{doc}");
    assert!(err.contains("LLLL"), "the message is logged: {err}");
    assert!(
        err.contains("[cut: 5000000 bytes]"),
        "{}",
        &err[..err.len().min(500)]
    );
    assert!(err.len() < 50_000, "the host logged {} bytes", err.len());
}

/// `exec --id` took ids that `submit` refuses; one of 128 KiB reached the worker's command line and
/// was blamed on the worker (`spawn_error`, worker unhealthy).
#[test]
fn exec_refuses_an_id_no_task_manager_would_take() {
    let p = Project::new();
    python_worker(&p, "w", "print(json.dumps({'success': True}))");
    p.config("", &py_entry("w", "w", "T", ""));
    let long = "i".repeat(131_060);
    for id in [long.as_str(), "a\u{1}b"] {
        let out = p.run(&["exec", "--type", "T", "--id", id]);
        let err = text(&out.stderr);
        assert_eq!(out.status.code(), Some(2), "{err}");
        assert!(err.contains("id"), "{err}");
        assert!(
            err.len() < 2_000,
            "the error quotes the whole id: {} bytes",
            err.len()
        );
        assert!(
            !p.file("runs.log").exists(),
            "the worker ran for a refused id"
        );
    }
}

#[test]
fn a_module_that_cannot_be_found_is_a_spawn_error_in_pool_mode_too() {
    let p = Project::new();
    python_worker(&p, "w", "print(json.dumps({'success': True}))");
    let entry = py_entry(
        "w",
        "nosuchmodule",
        "T",
        "    max_retries: 3\n    mode: pool\n",
    );
    p.config("", &entry);
    let (code, doc, _) = exec(&p, &[]);
    assert_eq!(code, 2, "{doc}");
    assert_eq!(doc["error"]["outcome"], "spawn_error", "{doc}");
    assert!(
        doc["error"]["message"]
            .as_str()
            .unwrap_or("")
            .contains("nosuchmodule"),
        "{doc}"
    );
}

#[test]
fn stdout_that_is_not_utf8_is_a_protocol_error() {
    let p = Project::new();
    python_worker(
        &p,
        "w",
        "sys.stdout.buffer.write(b'{\"success\": true, \"result\": \"\\xff\\xfe\"}')",
    );
    p.config("", &py_entry("w", "w", "T", ""));
    let (code, doc, _) = exec(&p, &[]);
    assert_eq!(code, 2, "{doc}");
    assert_eq!(doc["error"]["outcome"], "protocol_error", "{doc}");
    assert!(
        doc["error"]["message"]
            .as_str()
            .unwrap_or("")
            .contains("UTF-8"),
        "{doc}"
    );
}

#[test]
fn prints_before_the_result_are_logged_with_the_task_id() {
    let p = Project::new();
    python_worker(
        &p,
        "w",
        "print('stray debug line')\nprint(json.dumps({'success': True, 'result': 1}))",
    );
    p.config("", &py_entry("w", "w", "T", ""));
    let out = p
        .cmd(&["exec", "--type", "T", "--id", "t1"])
        .env("WORKERHOST_LOG_LEVEL", "debug")
        .output()
        .expect("exec");
    assert_eq!(out.status.code(), Some(0), "{}", text(&out.stderr));
    let log = text(&out.stderr);
    let line = log
        .lines()
        .find(|l| l.contains("stray debug line"))
        .unwrap_or_else(|| panic!("not logged: {log}"));
    assert!(
        line.contains("t1") && line.contains("debug output belongs on stderr"),
        "{line}"
    );
}

#[test]
fn a_missing_config_file_names_the_folder_searched() {
    let dir = tempfile::tempdir().expect("tempdir");
    let out = std::process::Command::new(BIN)
        .arg("workers")
        .current_dir(dir.path())
        .env_remove("WORKERHOST_CONFIG")
        .output()
        .expect("run");
    assert_eq!(out.status.code(), Some(2));
    let err = text(&out.stderr);
    let folder = dir.path().canonicalize().expect("canonical");
    assert!(
        err.contains(&folder.display().to_string())
            || err.contains(&dir.path().display().to_string()),
        "{err}"
    );
}
