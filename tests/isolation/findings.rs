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
