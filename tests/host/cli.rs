//! The command line as users meet it: config errors, exit codes, settings priority, JSON logs, the
//! out-of-the-box config.

use crate::support::*;
use serde_json::Value;
use std::path::Path;

#[test]
fn a_config_with_three_mistakes_reports_all_three_with_lines_and_exits_2() {
    let p = Project::new();
    let cfg = p.write(
        "workerhost_config.yaml",
        r#"version: "1.0"
host:
  concurency: 4
workers:
  - name: a
    command: ["/bin/true"]
    task_types: [T]
    timeout: -5
  - name: b
    venv_python: /usr/bin/python3
    module: "not a module!"
    task_types: [U]
"#,
    );
    for args in [
        vec!["run"],
        vec!["check"],
        vec!["workers"],
        vec!["exec", "--type", "T"],
    ] {
        let out = p.run(&args);
        assert_eq!(out.status.code(), Some(2), "{args:?}");
        let err = text(&out.stderr);
        let file = cfg.display().to_string();
        assert!(err.contains(&format!("{file}:3: host.concurency")), "{err}");
        assert!(
            err.contains(&format!("{file}:8: workers[0].timeout")),
            "{err}"
        );
        assert!(
            err.contains(&format!("{file}:11: workers[1].module")),
            "{err}"
        );
    }
}

#[test]
fn a_task_type_claimed_twice_and_a_missing_variable_are_config_errors() {
    let p = Project::new();
    p.write(
        "workerhost_config.yaml",
        "workers:\n  - name: a\n    command: [/bin/true]\n    task_types: [T]\n  - name: b\n    command: [/bin/true]\n    task_types: [T]\n    env: { KEY: \"${WORKERHOST_TEST_UNSET_VAR}\" }\n",
    );
    let out = p.run(&["workers"]);
    assert_eq!(out.status.code(), Some(2));
    let err = text(&out.stderr);
    assert!(
        err.contains("T") && err.contains("a") && err.contains("b"),
        "{err}"
    );
    assert!(err.contains("WORKERHOST_TEST_UNSET_VAR"), "{err}");
}

#[test]
fn a_missing_config_file_is_named_and_exits_2() {
    let out = std::process::Command::new(BIN)
        .args(["workers", "--config", "/nonexistent/dir/wh.yaml"])
        .output()
        .expect("run");
    assert_eq!(out.status.code(), Some(2));
    assert!(text(&out.stderr).contains("/nonexistent/dir/wh.yaml"));
}

#[test]
fn config_path_comes_from_the_flag_then_the_environment_then_the_working_directory() {
    let p = Project::new();
    p.config(
        "",
        "  - name: from-cwd\n    command: [/bin/true]\n    task_types: [T]\n",
    );
    let other = Project::new();
    other.config(
        "",
        "  - name: from-env\n    command: [/bin/true]\n    task_types: [T]\n",
    );
    let run = |cmd: &mut std::process::Command| text(&cmd.output().expect("run").stdout);
    let mut c = std::process::Command::new(BIN);
    c.arg("workers")
        .current_dir(p.path())
        .env_remove("WORKERHOST_CONFIG");
    assert!(run(&mut c).contains("from-cwd"));
    let mut c = std::process::Command::new(BIN);
    c.arg("workers")
        .current_dir(p.path())
        .env("WORKERHOST_CONFIG", other.file("workerhost_config.yaml"));
    assert!(run(&mut c).contains("from-env"));
    let mut c = std::process::Command::new(BIN);
    c.arg("workers")
        .arg("--config")
        .arg(p.file("workerhost_config.yaml"))
        .current_dir("/")
        .env("WORKERHOST_CONFIG", other.file("workerhost_config.yaml"));
    assert!(run(&mut c).contains("from-cwd"));
}

#[test]
fn bad_usage_exits_2() {
    let out = std::process::Command::new(BIN)
        .args(["--no-such-flag"])
        .output()
        .expect("run");
    assert_eq!(out.status.code(), Some(2));
    let p = Project::new();
    p.config(
        "",
        "  - name: a\n    command: [/bin/true]\n    task_types: [T]\n",
    );
    let out = p.run(&["submit", "--type", "T", "--params", "[1,2]"]);
    assert_eq!(out.status.code(), Some(2));
    assert!(text(&out.stderr).contains("--params must be a JSON object"));
    let out = p.run(&["submit", "--type", "T", "--params", "@/nonexistent.json"]);
    assert_eq!(out.status.code(), Some(2));
    p.submit("T", "dup", "{}");
    let out = p.run(&["submit", "--type", "T", "--id", "dup"]);
    assert_eq!(out.status.code(), Some(2));
    assert!(text(&out.stderr).contains("dup"));
    let out = p.run(&["status", "no-such-task"]);
    assert_eq!(out.status.code(), Some(1));
}

#[test]
fn params_can_come_from_a_file() {
    let p = Project::new();
    p.config(
        "",
        "  - name: a\n    command: [/bin/true]\n    task_types: [T]\n",
    );
    let f = p.write("params.json", "{\"video_id\": \"dQw4w9WgXcQ\"}");
    let out = p.run(&[
        "submit",
        "--type",
        "T",
        "--params",
        &format!("@{}", f.display()),
    ]);
    assert!(out.status.success(), "{}", text(&out.stderr));
    let id = text(&out.stdout).trim().to_string();
    assert_eq!(id.len(), 36, "a UUID by default: {id}");
    let s = p.status(&id).expect("status");
    assert_eq!(s["status"], "queued");
}

#[test]
fn json_logs_are_one_object_a_line_with_the_task_fields() {
    let p = Project::new();
    python_worker(
        &p,
        "w",
        "print(json.dumps({'success': True, 'result': {}}))",
    );
    p.config("", &py_entry("w", "w", "T", ""));
    p.submit("T", "j1", "{}");
    let out = p.run(&["--burst", "--log-format", "json"]);
    assert!(out.status.success());
    let docs: Vec<Value> = text(&out.stderr)
        .lines()
        .map(|l| serde_json::from_str(l).unwrap_or_else(|e| panic!("not JSON ({e}): {l}")))
        .collect();
    let done = docs
        .iter()
        .find(|d| d["event"] == "task_succeeded")
        .expect("a task_succeeded line");
    assert_eq!(done["task_id"], "j1");
    assert_eq!(done["worker"], "w");
    assert_eq!(done["attempt"], 1);
    assert_eq!(done["outcome"], "succeeded");
    assert!(done["duration_ms"].is_u64());
}

#[test]
fn flag_beats_file_beats_environment_for_concurrency() {
    let p = Project::new();
    p.config(
        "",
        "  - name: a\n    command: [/bin/true]\n    task_types: [T]\n",
    );
    let conc = |args: &[&str], env: Option<&str>| -> u64 {
        let mut c = p.cmd(args);
        c.arg("--burst").arg("--log-format").arg("json");
        match env {
            Some(v) => c.env("WORKERHOST_CONCURRENCY", v),
            None => c.env_remove("WORKERHOST_CONCURRENCY"),
        };
        let out = c.output().expect("run");
        text(&out.stderr)
            .lines()
            .filter_map(|l| serde_json::from_str::<Value>(l).ok())
            .find_map(|d| d["concurrency"].as_u64())
            .expect("start line with concurrency")
    };
    assert_eq!(conc(&[], None), 8, "default");
    assert_eq!(conc(&[], Some("3")), 3, "environment over default");
    assert_eq!(
        conc(&["--concurrency", "5"], Some("3")),
        5,
        "flag over environment"
    );
    p.config(
        "  concurrency: 6",
        "  - name: a\n    command: [/bin/true]\n    task_types: [T]\n",
    );
    assert_eq!(conc(&[], Some("3")), 6, "file over environment");
    assert_eq!(
        conc(&["--concurrency", "2"], Some("3")),
        2,
        "flag over file"
    );
}

#[test]
fn check_probes_workers_and_fails_on_a_missing_interpreter() {
    let p = Project::new();
    python_worker(&p, "w", "pass");
    p.config(
        "",
        &format!(
            "{}  - name: ghost\n    venv_python: ./missing/bin/python\n    module: m\n    task_types: [G]\n",
            py_entry("w", "w", "T", "")
        ),
    );
    let out = p.run(&["check"]);
    let o = text(&out.stdout);
    assert_eq!(out.status.code(), Some(1), "{o}");
    assert!(
        o.contains("ok    worker w: module: function main found in module w"),
        "{o}"
    );
    assert!(o.contains("FAIL  worker ghost: interpreter"), "{o}");
    assert!(o.contains("ok    task manager sqlite"), "{o}");
    // without the ghost, check passes
    p.config("", &py_entry("w", "w", "T", ""));
    assert_eq!(p.run(&["check"]).status.code(), Some(0));
}

#[test]
fn the_shipped_config_loads_and_its_python_example_runs() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    let cfg = root.join("workerhost_config.yaml");
    let out = std::process::Command::new(BIN)
        .arg("workers")
        .arg("--config")
        .arg(&cfg)
        .output()
        .expect("run");
    assert!(out.status.success(), "{}", text(&out.stderr));
    let o = text(&out.stdout);
    assert!(
        o.contains("example.python.echo") && o.contains("example.rust.reverse"),
        "{o}"
    );
    // The echo worker runs from a venv of its own, which `setup` makes (a no-op when in sync).
    let out = std::process::Command::new(BIN)
        .args(["setup", "--worker", "example.python.echo", "--config"])
        .arg(&cfg)
        .output()
        .expect("run");
    assert_eq!(out.status.code(), Some(0), "{}", text(&out.stdout));
    let out = std::process::Command::new(BIN)
        .args([
            "exec",
            "--type",
            "demo.echo",
            "--params",
            "{\"message\":\"hi\"}",
            "--config",
        ])
        .arg(&cfg)
        .output()
        .expect("run");
    assert_eq!(out.status.code(), Some(0), "{}", text(&out.stderr));
    let doc: Value = serde_json::from_slice(&out.stdout).expect("doc");
    assert_eq!(doc["result"]["echo"]["message"], "hi");
}
