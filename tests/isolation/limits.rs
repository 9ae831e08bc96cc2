//! `limits:` are set in the worker before it executes; hitting one is the outcome `resource_limit`,
//! not retried unless `retry_on_resource_limit: true`; each attempt's usage is in the result.

use crate::support::*;
use serde_json::Value;

fn exec(p: &Project) -> (i32, Value) {
    let out = p.run(&["exec", "--type", "T", "--id", "t1"]);
    let doc = serde_json::from_slice(&out.stdout).unwrap_or_else(|e| {
        panic!(
            "not a result ({e}): {} / {}",
            text(&out.stdout),
            text(&out.stderr)
        )
    });
    (out.status.code().unwrap_or(-1), doc)
}

#[test]
fn limits_hold_in_the_worker() {
    let p = Project::new();
    python_worker(
        &p,
        "w",
        "import resource\nr = {n: list(resource.getrlimit(getattr(resource, 'RLIMIT_' + n))) for n in ['AS', 'CPU', 'NOFILE', 'NPROC']}\nprint(json.dumps({'success': True, 'result': r}))",
    );
    let limits = "    limits: { memory_mb: 900, cpu_seconds: 30, open_files: 64 }\n";
    let text = format!(
        "version: \"1.0\"\nhost:\n  http: {{ listen: \"off\" }}\ntask_manager:\n  type: sqlite\n  path: ./q.db\ndefaults:\n  limits: {{ processes: 500, open_files: 128 }}\nworkers:\n{}",
        py_entry("w", "w", "T", limits)
    );
    p.write("workerhost_config.yaml", &text);
    let (code, doc) = exec(&p);
    assert_eq!(code, 0, "{doc}");
    let r = &doc["result"];
    let mb = 900 * 1024 * 1024;
    assert_eq!(r["AS"], serde_json::json!([mb, mb]), "{doc}");
    assert_eq!(r["CPU"], serde_json::json!([30, 35]), "hard = soft + 5 s");
    assert_eq!(
        r["NOFILE"],
        serde_json::json!([64, 64]),
        "the worker's over the default"
    );
    assert_eq!(
        r["NPROC"],
        serde_json::json!([500, 500]),
        "inherited from defaults"
    );
}

#[test]
fn a_busy_loop_under_cpu_seconds_is_a_resource_limit_and_not_retried() {
    let p = Project::new();
    python_worker(&p, "w", "while True:\n    pass");
    p.config(
        "",
        &py_entry(
            "w",
            "w",
            "T",
            "    max_retries: 3\n    limits: { cpu_seconds: 1 }\n",
        ),
    );
    let (code, doc) = exec(&p);
    assert_eq!(code, 2, "{doc}");
    assert_eq!(doc["status"], "dead");
    assert_eq!(doc["error"]["outcome"], "resource_limit", "{doc}");
    assert!(
        doc["error"]["message"]
            .as_str()
            .is_some_and(|m| m.contains("cpu_seconds")),
        "{doc}"
    );
    assert_eq!(doc["attempts"], 1);
    assert_eq!(lines(&p.file("runs.log")).len(), 1);
    let cpu = doc["usage"]["cpu_user_ms"].as_u64().unwrap_or(0)
        + doc["usage"]["cpu_system_ms"].as_u64().unwrap_or(0);
    // The kernel counts CPU time in ticks: about the limit, a little under is normal.
    assert!(cpu >= 800, "{doc}");
}

#[test]
fn retry_on_resource_limit_retries_it() {
    let p = Project::new();
    python_worker(&p, "w", "while True:\n    pass");
    p.config(
        "",
        &py_entry(
            "w",
            "w",
            "T",
            "    max_retries: 1\n    limits: { cpu_seconds: 1 }\n    retry_on_resource_limit: true\n",
        ),
    );
    let (_, doc) = exec(&p);
    assert_eq!(doc["error"]["outcome"], "resource_limit", "{doc}");
    assert_eq!(lines(&p.file("runs.log")).len(), 2);
}

#[test]
fn a_memory_error_under_memory_mb_is_a_resource_limit() {
    let p = Project::new();
    // What the Python SDK reports for a MemoryError.
    python_worker(
        &p,
        "w",
        "try:\n    b = bytearray(1024 * 1024 * 1024)\n    print(json.dumps({'success': True}))\nexcept MemoryError as e:\n    print(json.dumps({'success': False, 'error': {'type': 'MemoryError', 'message': str(e)}}))\n    sys.exit(1)",
    );
    p.config(
        "",
        &py_entry(
            "w",
            "w",
            "T",
            "    max_retries: 2\n    limits: { memory_mb: 200 }\n",
        ),
    );
    let (code, doc) = exec(&p);
    assert_eq!(code, 2, "{doc}");
    assert_eq!(doc["error"]["outcome"], "resource_limit", "{doc}");
    assert!(
        doc["error"]["message"]
            .as_str()
            .is_some_and(|m| m.contains("memory_mb"))
    );
    assert_eq!(lines(&p.file("runs.log")).len(), 1);
}

#[test]
fn usage_is_in_the_result_document() {
    let p = Project::new();
    python_worker(
        &p,
        "w",
        "b = b'x' * (50 * 1024 * 1024)\nprint(json.dumps({'success': True, 'result': len(b)}))",
    );
    p.config("", &py_entry("w", "w", "T", ""));
    let (code, doc) = exec(&p);
    assert_eq!(code, 0, "{doc}");
    let u = &doc["usage"];
    assert!(
        u["max_rss_kb"].as_u64().is_some_and(|kb| kb > 50_000),
        "{doc}"
    );
    assert!(
        u["cpu_user_ms"].is_u64() && u["cpu_system_ms"].is_u64(),
        "{doc}"
    );
}

#[test]
fn user_runs_the_worker_as_another_user() {
    if !nix::unistd::geteuid().is_root() {
        eprintln!("skipped: needs root");
        return;
    }
    let p = Project::new();
    p.config(
        "",
        "  - name: w\n    command: [\"/bin/sh\", \"-c\", \"printf '{\\\"success\\\": true, \\\"result\\\": {\\\"uid\\\": %s, \\\"home\\\": \\\"%s\\\"}}' $(id -u) $HOME\"]\n    task_types: [T]\n    user: nobody\n",
    );
    let (code, doc) = exec(&p);
    assert_eq!(code, 0, "{doc}");
    assert_eq!(doc["result"]["uid"], 65534, "{doc}");
}

#[test]
fn a_missing_project_path_is_named_as_the_cause() {
    let p = Project::new();
    python_worker(&p, "w", "print(json.dumps({'success': True}))");
    let entry = py_entry("w", "w", "T", "").replace("project_path: .", "project_path: ./gone");
    p.config("", &entry);
    let (code, doc) = exec(&p);
    assert_eq!(code, 2, "{doc}");
    let msg = doc["error"]["message"].as_str().unwrap_or("").to_string();
    assert!(
        msg.contains("project_path") && msg.contains("gone"),
        "{msg}"
    );
    assert!(!msg.contains("python"), "blames the interpreter: {msg}");
}

/// The working directory is entered as the worker's user, not as root: a `project_path` that user
/// cannot reach (here below the test's 0700 temp folder) is a spawn error naming it, never a worker
/// running where its user could not go.
#[test]
fn user_enters_its_project_path_as_that_user() {
    if !nix::unistd::geteuid().is_root() {
        eprintln!("skipped: needs root");
        return;
    }
    let p = Project::new();
    std::fs::create_dir(p.file("proj")).expect("proj");
    use std::os::unix::fs::PermissionsExt as _;
    std::fs::set_permissions(p.path(), std::fs::Permissions::from_mode(0o700)).expect("chmod");
    std::fs::set_permissions(p.file("proj"), std::fs::Permissions::from_mode(0o755))
        .expect("chmod");
    p.config(
        "",
        "  - name: w\n    command: [\"/bin/sh\", \"-c\", \"pwd; printf '{\\\"success\\\": true}'\"]\n    project_path: ./proj\n    task_types: [T]\n    user: nobody\n",
    );
    let (code, doc) = exec(&p);
    assert_eq!(code, 2, "{doc}");
    let msg = doc["error"]["message"].as_str().unwrap_or("").to_string();
    assert!(msg.contains("proj"), "{msg}");
    assert_eq!(doc["error"]["outcome"], "spawn_error", "{doc}");
}

/// A Rust worker whose allocation fails under `memory_mb` aborts after std's own report
/// (`memory allocation of N bytes failed`): that is `resource_limit`, not retried; the same abort
/// without `memory_mb`, or an abort with other last words, is an ordinary crash. (A process that prints
/// std's line and aborts, as the Rust runtime does.)
#[test]
fn a_rust_allocation_failure_under_memory_mb_is_a_resource_limit() {
    let abort_with = |line: &str| {
        format!(
            "import os, sys; sys.stdin.read(); sys.stderr.write({line:?} + '\\n'); sys.stderr.flush(); os.abort()"
        )
    };
    let run = |line: &str, limits: &str| {
        let p = Project::new();
        let py = real_python();
        let code = abort_with(line);
        p.config(
            "",
            &format!(
                "  - name: w\n    command: [{py:?}, \"-c\", {code:?}]\n    task_types: [T]\n    max_retries: 2\n{limits}"
            ),
        );
        let (_, doc) = exec(&p);
        doc
    };
    let doc = run(
        "memory allocation of 1073741824 bytes failed",
        "    limits: { memory_mb: 512 }\n",
    );
    assert_eq!(doc["error"]["outcome"], "resource_limit", "{doc}");
    assert_eq!(doc["attempts"], 1, "not retried: {doc}");
    assert!(
        doc["error"]["message"]
            .as_str()
            .is_some_and(|m| m.contains("memory_mb: 512")),
        "{doc}"
    );
    // What a real Rust worker printed (rust-echo-worker, `memory_mb: 8`, 3 MB of params): std's line,
    // then the panic machinery's note; the report is still found.
    let doc = run(
        "memory allocation of 3000000 bytes failed\nnote: run with `RUST_BACKTRACE=1` environment variable to display a backtrace",
        "    limits: { memory_mb: 512 }\n",
    );
    assert_eq!(doc["error"]["outcome"], "resource_limit", "{doc}");
    let doc = run("memory allocation of 1073741824 bytes failed", "");
    assert_eq!(doc["error"]["outcome"], "crashed", "no memory_mb: {doc}");
    let doc = run(
        "something else went wrong",
        "    limits: { memory_mb: 512 }\n",
    );
    assert_eq!(
        doc["error"]["outcome"], "crashed",
        "other last words: {doc}"
    );
}
