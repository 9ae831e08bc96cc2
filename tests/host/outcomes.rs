//! Every row of the outcome table (SPEC section 3), through `workerhost exec`.

use crate::support::*;
use serde_json::Value;
use std::time::{Duration, Instant};

/// Runs `exec` for a one-worker project and returns (exit code, result document, runs recorded).
fn exec(body: &str, worker_extra: &str) -> (i32, Value, Vec<String>, Project) {
    let p = Project::new();
    python_worker(&p, "w", body);
    p.config("", &py_entry("w", "w", "T", worker_extra));
    let out = p.run(&["exec", "--type", "T", "--id", "t1", "--params", "{\"x\":1}"]);
    let code = out.status.code().expect("exit code");
    let doc: Value = serde_json::from_slice(&out.stdout).unwrap_or_else(|e| {
        panic!(
            "exec stdout is not a result document ({e}): {}\nstderr: {}",
            text(&out.stdout),
            text(&out.stderr)
        )
    });
    let runs = lines(&p.file("runs.log"));
    (code, doc, runs, p)
}

#[test]
fn success_is_exit_0_with_the_result() {
    let (code, doc, runs, _p) = exec(
        "print(json.dumps({'success': True, 'result': {'got': params['x'], 'attempt': task['attempt']}}))",
        "",
    );
    assert_eq!(code, 0);
    assert_eq!(doc["status"], "succeeded");
    assert_eq!(doc["result"]["got"], 1);
    assert_eq!(doc["result"]["attempt"], 1);
    assert_eq!(doc["attempts"], 1);
    assert_eq!(doc["id"], "t1");
    assert_eq!(doc["type"], "T");
    assert_eq!(doc["worker"], "w");
    assert!(doc["started_at"].as_str().is_some_and(|s| s.ends_with('Z')));
    assert!(doc["duration_ms"].is_u64());
    assert_eq!(runs.len(), 1);
}

#[test]
fn exit_1_is_retried_up_to_max_retries_then_dead() {
    let (code, doc, runs, _p) = exec(
        "print('about to fail', file=sys.stderr)\nprint(json.dumps({'success': False, 'error': 'quota exceeded'}))\nsys.exit(1)",
        "    max_retries: 3\n",
    );
    assert_eq!(code, 1);
    assert_eq!(doc["status"], "dead");
    assert_eq!(
        runs,
        vec!["t1 1", "t1 2", "t1 3", "t1 4"],
        "max_retries + 1 runs, attempts numbered"
    );
    assert_eq!(doc["attempts"], 4);
    assert_eq!(doc["error"]["message"], "quota exceeded");
    assert_eq!(doc["error"]["outcome"], "failed");
    assert!(
        doc["error"]["stderr_tail"]
            .as_str()
            .is_some_and(|s| s.contains("about to fail"))
    );
}

#[test]
fn success_false_with_exit_0_is_a_retriable_failure() {
    let (code, doc, runs, _p) = exec(
        "print(json.dumps({'success': False, 'error': {'type': 'Flaky', 'message': 'try again'}}))",
        "",
    );
    assert_eq!(code, 1);
    assert_eq!(runs.len(), 3);
    assert_eq!(doc["error"]["message"], "Flaky: try again");
    assert_eq!(doc["error"]["worker_error"]["type"], "Flaky");
}

#[test]
fn retry_possible_false_and_retriable_false_are_not_retried() {
    for body in [
        "print(json.dumps({'success': False, 'error': {'message': 'bad input', 'retry_possible': False}}))",
        "print(json.dumps({'success': False, 'error': 'bad input', 'retriable': False}))",
    ] {
        let (code, doc, runs, _p) = exec(body, "");
        assert_eq!(code, 2, "{body}");
        assert_eq!(runs.len(), 1, "{body}");
        assert_eq!(doc["error"]["outcome"], "fatal");
    }
}

#[test]
fn exit_2_is_not_retried() {
    let (code, doc, runs, _p) = exec(
        "print('invalid video id', file=sys.stderr)\nsys.exit(2)",
        "",
    );
    assert_eq!(code, 2);
    assert_eq!(runs.len(), 1);
    assert_eq!(doc["status"], "dead");
    // without a result document the last stderr line is the error
    assert_eq!(doc["error"]["message"], "invalid video id");
}

#[test]
fn exit_3_is_a_timeout_and_retried() {
    let (code, doc, runs, _p) = exec("sys.exit(3)", "    max_retries: 1\n");
    assert_eq!(code, 3);
    assert_eq!(runs.len(), 2);
    assert_eq!(doc["error"]["outcome"], "timeout");
}

#[test]
fn other_exit_codes_and_signals_are_crashes_and_retried() {
    let (code, doc, runs, _p) = exec("sys.exit(7)", "    max_retries: 1\n");
    assert_eq!(code, 1);
    assert_eq!(runs.len(), 2);
    assert_eq!(doc["error"]["outcome"], "crashed");
    assert_eq!(doc["error"]["message"], "crashed: exit code 7");

    let (code, doc, runs, _p) = exec(
        "os.kill(os.getpid(), signal.SIGKILL)",
        "    max_retries: 1\n",
    );
    assert_eq!(code, 1);
    assert_eq!(runs.len(), 2);
    assert_eq!(doc["error"]["message"], "crashed: killed by signal 9");

    // 130 (interrupted) counts as crashed
    let (code, doc, _, _p) = exec("sys.exit(130)", "    max_retries: 0\n");
    assert_eq!(code, 1);
    assert_eq!(doc["error"]["outcome"], "crashed");
}

#[test]
fn garbage_stdout_is_a_protocol_error_and_not_retried() {
    let (code, doc, runs, _p) = exec("print('hello, I am not JSON')", "");
    assert_eq!(code, 2);
    assert_eq!(runs.len(), 1);
    assert_eq!(doc["error"]["outcome"], "protocol_error");
    assert!(
        doc["error"]["message"]
            .as_str()
            .is_some_and(|m| m.contains("not a JSON result"))
    );
}

#[test]
fn huge_stdout_is_a_protocol_error_and_the_process_is_killed() {
    let started = Instant::now();
    let (code, doc, runs, _p) = exec(
        "sys.stdout.write('x' * 100000)\nsys.stdout.flush()\ntime.sleep(60)",
        "    max_output_bytes: 1000\n",
    );
    assert_eq!(code, 2);
    assert_eq!(runs.len(), 1);
    assert_eq!(doc["error"]["outcome"], "protocol_error");
    assert!(
        doc["error"]["message"]
            .as_str()
            .is_some_and(|m| m.contains("max_output_bytes"))
    );
    assert!(
        started.elapsed() < Duration::from_secs(15),
        "killed, not waited for"
    );
}

#[test]
fn host_timeout_kills_the_whole_process_group_and_is_retried() {
    // The worker starts a grandchild that ignores nothing and would live for 1000 s; both must die.
    let (code, doc, runs, p) = exec(
        "child = subprocess.Popen(['sleep', '1000'])\nwith open('grandchild.pid', 'a') as f:\n    f.write(str(child.pid) + '\\n')\ntime.sleep(1000)",
        "    timeout: 1\n    max_retries: 1\n",
    );
    assert_eq!(code, 3);
    assert_eq!(runs.len(), 2, "a timeout is retried");
    assert_eq!(doc["error"]["outcome"], "timeout");
    // The limit and the field it comes from (the finding: the message said neither).
    assert_eq!(
        doc["error"]["message"],
        "timed out after 1 s (workers[0].timeout): killed by the host"
    );
    let pids = lines(&p.file("grandchild.pid"));
    assert_eq!(pids.len(), 2);
    for pid in pids {
        let pid: i32 = pid.parse().expect("pid");
        assert!(
            wait_until(Duration::from_secs(2), || !pid_alive(pid)),
            "grandchild {pid} survived"
        );
    }
}

#[test]
fn sigterm_ignoring_worker_gets_sigkill_after_the_grace() {
    let p = Project::new();
    python_worker(
        &p,
        "w",
        "signal.signal(signal.SIGTERM, signal.SIG_IGN)\ntime.sleep(1000)",
    );
    p.config(
        "  kill_grace_seconds: 0.5",
        &py_entry("w", "w", "T", "    timeout: 0.5\n    max_retries: 0\n"),
    );
    let started = Instant::now();
    let out = p.run(&["exec", "--type", "T"]);
    assert_eq!(out.status.code(), Some(3), "{}", text(&out.stderr));
    assert!(started.elapsed() < Duration::from_secs(10));
}

#[test]
fn a_missing_interpreter_is_a_spawn_error() {
    let p = Project::new();
    p.config(
        "",
        "  - name: ghost\n    venv_python: ./nope/bin/python\n    module: m\n    task_types: [T]\n",
    );
    let out = p.run(&["exec", "--type", "T"]);
    assert_eq!(out.status.code(), Some(2));
    let doc: Value = serde_json::from_slice(&out.stdout).expect("doc");
    assert_eq!(doc["error"]["outcome"], "spawn_error");
    assert_eq!(doc["attempts"], 1, "spawn errors are not retried");
    assert!(
        doc["error"]["message"]
            .as_str()
            .is_some_and(|m| m.contains("nope/bin/python"))
    );
    assert!(text(&out.stderr).contains("worker unhealthy"));
}

#[test]
fn command_workers_run_an_argv_without_a_shell_in_project_path() {
    let p = Project::new();
    std::fs::create_dir_all(p.file("wd")).expect("mkdir");
    p.write(
        "echo.sh",
        "read -r doc\nprintf '{\"success\": true, \"result\": {\"cwd\": \"%s\", \"arg\": \"%s\", \"doc\": %s}}\\n' \"$(pwd)\" \"$1\" \"$doc\"\n",
    );
    // `$HOME; rm` would be a shell injection if argv went through a shell.
    p.config(
        "",
        "  - name: sh\n    command: [\"/bin/sh\", \"../echo.sh\", \"$HOME; rm -rf x\"]\n    project_path: ./wd\n    task_types: [T]\n",
    );
    let out = p.run(&[
        "exec",
        "--type",
        "T",
        "--id",
        "c1",
        "--params",
        "{\"k\":\"v\"}",
    ]);
    assert_eq!(out.status.code(), Some(0), "{}", text(&out.stderr));
    let doc: Value = serde_json::from_slice(&out.stdout).expect("doc");
    assert_eq!(doc["result"]["arg"], "$HOME; rm -rf x");
    assert!(
        doc["result"]["cwd"]
            .as_str()
            .is_some_and(|c| c.ends_with("/wd"))
    );
    assert_eq!(doc["result"]["doc"]["params"]["k"], "v");
    assert_eq!(doc["result"]["doc"]["attempt"], 1);
}

#[test]
fn workers_get_a_minimal_environment() {
    let p = Project::new();
    python_worker(
        &p,
        "w",
        "print(json.dumps({'success': True, 'result': dict(os.environ)}))",
    );
    p.config(
        "",
        &py_entry(
            "w",
            "w",
            "T",
            "    env: { API_BASE: \"${TEST_API_BASE}\", FIXED: \"1\" }\n    env_passthrough: [PASSED_THROUGH]\n",
        ),
    );
    let out = p
        .cmd(&["exec", "--type", "T", "--id", "env1"])
        .env("SECRET_TOKEN", "hunter2")
        .env("PASSED_THROUGH", "yes")
        .env("TEST_API_BASE", "https://api.example")
        .output()
        .expect("exec");
    assert_eq!(out.status.code(), Some(0), "{}", text(&out.stderr));
    let doc: Value = serde_json::from_slice(&out.stdout).expect("doc");
    let env = doc["result"].as_object().expect("env object");
    assert!(
        !env.contains_key("SECRET_TOKEN"),
        "host secrets must not leak: {env:?}"
    );
    assert_eq!(env["PASSED_THROUGH"], "yes");
    assert_eq!(env["API_BASE"], "https://api.example");
    assert_eq!(env["FIXED"], "1");
    assert_eq!(env["WORKERHOST_TASK_ID"], "env1");
    assert_eq!(env["WORKERHOST_TASK_TYPE"], "T");
    assert_eq!(env["WORKERHOST_ATTEMPT"], "1");
    assert_eq!(env["WORKERHOST_WORKER"], "w");
    assert!(env.contains_key("PATH"));
}

#[test]
fn function_less_python_workers_run_as_modules() {
    let p = Project::new();
    p.write("pkg/__init__.py", "");
    p.write(
        "pkg/__main__.py",
        "import json, sys\ntask = json.load(sys.stdin)\nprint(json.dumps({'success': True, 'result': {'name': __name__}}))\n",
    );
    p.config(
        "",
        &format!(
            "  - name: m\n    project_path: .\n    venv_python: {}\n    module: pkg\n    task_types: [T]\n",
            venv_python().display()
        ),
    );
    let out = p.run(&["exec", "--type", "T"]);
    assert_eq!(out.status.code(), Some(0), "{}", text(&out.stderr));
    let doc: Value = serde_json::from_slice(&out.stdout).expect("doc");
    assert_eq!(doc["result"]["name"], "__main__");
}
