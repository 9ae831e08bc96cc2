//! Worker environments (section 10), as a user meets them: `workerhost setup` makes real venvs with the
//! real interpreter and pip (or uv), installing two versions of a tiny local package (`semverlike` 1.0
//! and 2.0, wheels this test writes) with `--no-index`, so no network is needed.

#[path = "../support/mod.rs"]
mod support;

use serde_json::Value;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;
use support::*;

/// Writes `semverlike-<v>-py3-none-any.whl` for 1.0 and 2.0 into `dir/wheels`; returns that folder.
fn wheels(dir: &Path) -> PathBuf {
    let out = dir.join("wheels");
    let script = r#"
import os, sys, zipfile
out = sys.argv[1]
os.makedirs(out, exist_ok=True)
for ver in ("1.0", "2.0"):
    di = "semverlike-%s.dist-info" % ver
    files = {
        "semverlike/__init__.py": "__version__ = %r\n" % ver,
        di + "/METADATA": "Metadata-Version: 2.1\nName: semverlike\nVersion: %s\n" % ver,
        di + "/WHEEL": "Wheel-Version: 1.0\nGenerator: workerhost-tests\nRoot-Is-Purelib: true\nTag: py3-none-any\n",
    }
    files[di + "/RECORD"] = "".join("%s,,\n" % n for n in list(files) + [di + "/RECORD"])
    with zipfile.ZipFile(os.path.join(out, "semverlike-%s-py3-none-any.whl" % ver), "w") as z:
        for n, t in files.items():
            z.writestr(n, t)
"#;
    let st = Command::new(real_python())
        .arg("-c")
        .arg(script)
        .arg(&out)
        .status()
        .expect("python3");
    assert!(st.success(), "making the wheels failed");
    out
}

/// A requirements file that installs `semverlike==<version>` from the local wheels only.
fn requirements(wheels: &Path, version: &str) -> String {
    format!(
        "--no-index\n--find-links {}\nsemverlike=={version}\n",
        wheels.display()
    )
}

/// A worker that reports the semverlike version it imports (and sleeps `params.sleep` seconds first).
const WORKER: &str = "import json, sys, time\nimport semverlike\n\ndef main():\n    task = json.load(sys.stdin)\n    time.sleep((task.get('params') or {}).get('sleep', 0))\n    print(json.dumps({'success': True, 'result': {'semverlike': semverlike.__version__, 'python': sys.executable}}))\n";

/// A managed worker `name` in `./<name>` (its own requirements and `.venv`).
fn entry(name: &str, task_type: &str, extra: &str) -> String {
    format!(
        "  - name: {name}\n    project_path: ./{name}\n    venv_python: ./{name}/.venv/bin/python\n    python: {}\n    requirements: requirements.txt\n    module: w\n    function: main\n    task_types: [\"{task_type}\"]\n{extra}",
        real_python().display()
    )
}

/// A project with workers `one` (semverlike 1.0) and `two` (2.0), not set up yet.
fn two_workers(host: &str) -> (Project, PathBuf) {
    let p = Project::new();
    let wheels = wheels(p.path());
    for (name, v) in [("one", "1.0"), ("two", "2.0")] {
        p.write(
            &format!("{name}/requirements.txt"),
            &requirements(&wheels, v),
        );
        p.write(&format!("{name}/w.py"), WORKER);
    }
    p.config(
        host,
        &format!("{}{}", entry("one", "T1", ""), entry("two", "T2", "")),
    );
    (p, wheels)
}

fn installed_version(venv_python: &Path) -> String {
    let out = Command::new(venv_python)
        .args(["-c", "import semverlike; print(semverlike.__version__)"])
        .output()
        .expect("venv python");
    assert!(out.status.success(), "{}", text(&out.stderr));
    text(&out.stdout).trim().to_string()
}

fn stamp(p: &Project, name: &str) -> PathBuf {
    p.file(&format!("{name}/.venv/workerhost-stamp.json"))
}

fn setup(p: &Project, args: &[&str]) -> (Option<i32>, String) {
    let mut all = vec!["setup"];
    all.extend_from_slice(args);
    let out = p.run(&all);
    let said = format!("{}{}", text(&out.stdout), text(&out.stderr));
    (out.status.code(), said)
}

fn worker_json(p: &Project, name: &str) -> Value {
    let out = p.run(&["workers", "--json"]);
    assert!(out.status.success(), "{}", text(&out.stderr));
    let list: Value = serde_json::from_slice(&out.stdout).expect("workers --json");
    list.as_array()
        .and_then(|l| l.iter().find(|w| w["name"] == name).cloned())
        .unwrap_or_else(|| panic!("no worker {name} in {list}"))
}

#[test]
fn setup_makes_each_venv_with_its_own_version_and_a_second_run_does_nothing() {
    let (p, _) = two_workers("");
    assert_eq!(worker_json(&p, "one")["dependencies"], "missing");
    let (code, said) = setup(&p, &[]);
    assert_eq!(code, Some(0), "{said}");
    assert!(
        said.contains("created  one:") && said.contains("created  two:"),
        "{said}"
    );
    assert_eq!(installed_version(&p.file("one/.venv/bin/python")), "1.0");
    assert_eq!(installed_version(&p.file("two/.venv/bin/python")), "2.0");
    let st: Value =
        serde_json::from_slice(&std::fs::read(stamp(&p, "one")).expect("stamp")).expect("json");
    assert_eq!(st["python"], real_python().display().to_string());
    assert_eq!(st["requirements_sha256"].as_str().map(str::len), Some(64));
    assert!(
        st["python_version"]
            .as_str()
            .is_some_and(|v| v.starts_with("3.")),
        "{st}"
    );
    assert!(
        st["installer"]
            .as_str()
            .is_some_and(|i| i.starts_with("pip ") || i.starts_with("uv ")),
        "{st}"
    );
    let before: Vec<_> = ["one", "two"]
        .iter()
        .map(|n| {
            let s = stamp(&p, n);
            (
                std::fs::read(&s).expect("stamp"),
                std::fs::metadata(&s)
                    .and_then(|m| m.modified())
                    .expect("mtime"),
            )
        })
        .collect();
    let (code, said) = setup(&p, &[]);
    assert_eq!(code, Some(0), "{said}");
    assert!(
        said.contains("in sync  one:") && said.contains("in sync  two:"),
        "{said}"
    );
    let after: Vec<_> = ["one", "two"]
        .iter()
        .map(|n| {
            let s = stamp(&p, n);
            (
                std::fs::read(&s).expect("stamp"),
                std::fs::metadata(&s)
                    .and_then(|m| m.modified())
                    .expect("mtime"),
            )
        })
        .collect();
    assert_eq!(before, after, "an in-sync setup touches nothing");
    for name in ["one", "two"] {
        let w = worker_json(&p, name);
        assert_eq!(w["dependencies"], "in_sync", "{w}");
    }
    // `--worker` and `--force`: only that one, made again.
    let (code, said) = setup(&p, &["--worker", "two", "--force"]);
    assert_eq!(code, Some(0), "{said}");
    assert!(
        said.contains("rebuilt  two:") && !said.contains("one:"),
        "{said}"
    );
    let (code, said) = setup(&p, &["--worker", "nobody"]);
    assert_eq!(code, Some(2), "{said}");
}

#[test]
fn drifted_requirements_turn_health_503_and_check_exit_1_until_setup_runs_again() {
    let port = free_port();
    let (p, wheels) = two_workers("");
    let (code, said) = setup(&p, &[]);
    assert_eq!(code, Some(0), "{said}");
    let out = p.run(&["check"]);
    assert_eq!(out.status.code(), Some(0), "{}", text(&out.stdout));
    let listen = format!("127.0.0.1:{port}");
    let mut host = p.spawn_host(&["run", "--listen", &listen]);
    let health = |name: &str| http_get(port, &format!("/workers/{name}/health"), &[]);
    assert!(wait_until(Duration::from_secs(20), || health("two").is_ok()));
    let h = health("two").expect("health");
    assert_eq!(h.status, 200, "{}", h.body);
    assert_eq!(h.json()["dependencies"], "in_sync");

    p.write("two/requirements.txt", &requirements(&wheels, "1.0"));
    let h = health("two").expect("health");
    assert_eq!(h.status, 503, "{}", h.body);
    assert_eq!(h.json()["dependencies"], "drifted");
    assert_eq!(health("one").expect("health").status, 200);
    let out = p.run(&["check"]);
    assert_eq!(out.status.code(), Some(1));
    let said = text(&out.stdout);
    assert!(
        said.contains("FAIL  worker two: dependencies: drifted"),
        "{said}"
    );
    assert_eq!(worker_json(&p, "two")["dependencies"], "drifted");

    let (code, said) = setup(&p, &[]);
    assert_eq!(code, Some(0), "{said}");
    assert!(
        said.contains("rebuilt  two:") && said.contains("in sync  one:"),
        "{said}"
    );
    assert_eq!(installed_version(&p.file("two/.venv/bin/python")), "1.0");
    let h = health("two").expect("health");
    assert_eq!(h.status, 200, "{}", h.body);
    assert_eq!(h.json()["dependencies"], "in_sync");
    assert_eq!(p.run(&["check"]).status.code(), Some(0));
    signal(&host, nix::sys::signal::Signal::SIGTERM);
    wait_child(&mut host, Duration::from_secs(20));
}

#[test]
fn a_failed_install_names_the_worker_shows_the_installer_tail_and_the_others_are_still_made() {
    let (p, wheels) = two_workers("");
    p.write("one/requirements.txt", &requirements(&wheels, "9.9"));
    let (code, said) = setup(&p, &[]);
    assert_eq!(code, Some(1), "{said}");
    assert!(said.contains("FAIL     worker one:"), "{said}");
    assert!(
        said.contains("| ") && said.contains("semverlike==9.9"),
        "the installer's own lines: {said}"
    );
    assert!(said.contains("created  two:"), "{said}");
    assert_eq!(installed_version(&p.file("two/.venv/bin/python")), "2.0");
    assert_eq!(worker_json(&p, "one")["dependencies"], "missing");
}

#[test]
fn config_keys_are_checked_with_file_line_and_field() {
    let p = Project::new();
    let cfg = p.config(
        "",
        "  - name: a\n    command: [/bin/true]\n    requirements: requirements.txt\n    task_types: [A]\n  - name: b\n    venv_python: ./tools/python3\n    module: m\n    requirements: requirements.txt\n    task_types: [B]\n  - name: c\n    venv_python: ./c/.venv/bin/python\n    module: m\n    python: python3\n    task_types: [C]\n  - name: d\n    venv_python: ./d/.venv/bin/python\n    module: m\n    requirements: deps.cfg\n    task_types: [D]\n",
    );
    let out = p.run(&["workers"]);
    assert_eq!(out.status.code(), Some(2));
    let err = text(&out.stderr);
    let file = cfg.display().to_string();
    for want in [
        "workers[0].requirements: `requirements` is for a Python worker",
        "workers[1].venv_python: with `requirements`, `venv_python` must be a venv's interpreter",
        "workers[2].python: `python` needs `requirements`",
        "workers[3].requirements: `deps.cfg` is neither",
    ] {
        assert!(err.contains(want), "{want}: {err}");
    }
    assert!(err.contains(&format!("{file}:")), "{err}");
}

#[test]
fn run_setup_provisions_first_and_holds_back_a_worker_whose_setup_failed() {
    let (p, wheels) = two_workers("");
    p.write("one/requirements.txt", &requirements(&wheels, "9.9"));
    p.submit("T1", "t1", "{}");
    p.submit("T2", "t2", "{}");
    let out = p.run(&["run", "--setup", "--burst"]);
    let log = text(&out.stderr);
    assert_eq!(out.status.code(), Some(0), "{log}");
    assert!(
        log.contains("setup failed, the worker is not started"),
        "{log}"
    );
    let s = p.status("t2").expect("t2");
    assert_eq!(s["status"], "succeeded", "{s}");
    assert_eq!(s["result"]["result"]["semverlike"], "2.0", "{s}");
    // The held worker's task waits in the queue (neither run nor dead-lettered).
    let s = p.status("t1").expect("t1");
    assert_eq!(s["status"], "queued", "{s}");
    // Fixed, the next `run --setup` makes it and runs the task.
    p.write("one/requirements.txt", &requirements(&wheels, "1.0"));
    let out = p.run(&["run", "--setup", "--burst"]);
    assert_eq!(out.status.code(), Some(0), "{}", text(&out.stderr));
    let s = p.status("t1").expect("t1");
    assert_eq!(s["status"], "succeeded", "{s}");
    assert_eq!(s["result"]["result"]["semverlike"], "1.0", "{s}");
}

#[test]
fn sighup_with_changed_requirements_builds_beside_and_swaps_after_the_running_task() {
    let (p, wheels) = two_workers("");
    p.config("", &entry("one", "T1", ""));
    let (code, said) = setup(&p, &[]);
    assert_eq!(code, Some(0), "{said}");
    let mut host = p.spawn_host_logged(&[], &[]);
    p.submit("T1", "slow", r#"{"sleep": 12}"#);
    let started = wait_until(Duration::from_secs(20), || {
        p.status("slow").is_some_and(|s| s["status"] == "running")
    });
    assert!(started, "{}", p.host_log());
    p.write("one/requirements.txt", &requirements(&wheels, "2.0"));
    signal(&host, nix::sys::signal::Signal::SIGHUP);
    let swapped = wait_until(Duration::from_secs(60), || {
        p.host_log().contains("new venv built and probed")
    });
    assert!(swapped, "{}", p.host_log());
    assert_eq!(
        p.status("slow").expect("slow")["status"],
        "running",
        "swapped while it runs"
    );
    p.submit("T1", "next", "{}");
    let done = wait_until(Duration::from_secs(30), || {
        ["slow", "next"]
            .iter()
            .all(|id| p.status(id).is_some_and(|s| s["status"] == "succeeded"))
    });
    assert!(done, "{}", p.host_log());
    let slow = p.status("slow").expect("slow");
    let next = p.status("next").expect("next");
    assert_eq!(
        slow["result"]["result"]["semverlike"], "1.0",
        "the running task kept its venv: {slow}"
    );
    assert_eq!(
        next["result"]["result"]["semverlike"], "2.0",
        "the next ran on the new one: {next}"
    );
    let next_python = next["result"]["result"]["python"]
        .as_str()
        .unwrap_or_default()
        .to_string();
    assert!(next_python.contains("/one/.venv."), "{next_python}");
    // Once nothing runs on it the old venv goes, and the configured path leads to the new one.
    let venv = p.file("one/.venv");
    let linked = wait_until(Duration::from_secs(10), || {
        std::fs::symlink_metadata(&venv).is_ok_and(|m| m.file_type().is_symlink())
    });
    assert!(linked, "{}", p.host_log());
    assert_eq!(installed_version(&p.file("one/.venv/bin/python")), "2.0");
    assert_eq!(worker_json(&p, "one")["dependencies"], "in_sync");
    let venvs = || -> Vec<String> {
        let mut d: Vec<String> = std::fs::read_dir(p.file("one"))
            .expect("ls")
            .flatten()
            .map(|e| e.file_name().to_string_lossy().into_owned())
            .filter(|n| n.starts_with(".venv"))
            .collect();
        d.sort();
        d
    };
    let tidy = wait_until(Duration::from_secs(10), || venvs().len() == 2);
    assert!(tidy, "the link and the new venv, no old one: {:?}", venvs());
    signal(&host, nix::sys::signal::Signal::SIGTERM);
    wait_child(&mut host, Duration::from_secs(20));
}

#[test]
fn watch_reloads_on_a_config_change_and_recycles_a_pool_worker_on_a_code_change() {
    let p = Project::new();
    p.write(
        "pooled.py",
        "import json, os, sys\n\ndef main():\n    for line in sys.stdin:\n        task = json.loads(line)\n        print(json.dumps({'id': task['id'], 'success': True, 'result': {'pid': os.getpid(), 'tag': 1}}), flush=True)\n",
    );
    let pool = "    mode: pool\n    pool_size: 1\n";
    p.config("", &py_entry("pooled", "pooled", "P", pool));
    let mut host = p.spawn_host_logged(&["run", "--watch"], &[]);
    assert!(
        wait_until(Duration::from_secs(20), || p
            .host_log()
            .contains("watching")),
        "{}",
        p.host_log()
    );
    let run = |id: &str| -> Value {
        p.submit("P", id, "{}");
        assert!(
            wait_until(Duration::from_secs(20), || p
                .status(id)
                .is_some_and(|s| s["status"] == "succeeded")),
            "{}",
            p.host_log()
        );
        p.status(id).expect("status")["result"]["result"].clone()
    };
    let _ = run("p1");
    let pid = run("p2")["pid"].clone();
    // Pool mode would normally keep the process: an edit under project_path replaces it.
    p.write(
        "pooled.py",
        &std::fs::read_to_string(p.file("pooled.py"))
            .expect("read")
            .replace("'tag'", "'tag2'"),
    );
    assert!(
        wait_until(Duration::from_secs(10), || p
            .host_log()
            .contains("watch: project_path changed")),
        "{}",
        p.host_log()
    );
    let r = run("p3");
    assert_ne!(r["pid"], pid, "a fresh process after the change: {r}");
    assert!(r.get("tag2").is_some(), "it runs the new code: {r}");
    // A config change reloads: a new worker appears and runs.
    python_worker(
        &p,
        "other",
        "print(json.dumps({'success': True, 'result': {}}))",
    );
    p.config(
        "",
        &format!(
            "{}{}",
            py_entry("pooled", "pooled", "P", pool),
            py_entry("other", "other", "Q", "")
        ),
    );
    assert!(
        wait_until(Duration::from_secs(10), || p
            .host_log()
            .contains("worker registry reloaded")),
        "{}",
        p.host_log()
    );
    p.submit("Q", "q1", "{}");
    assert!(
        wait_until(Duration::from_secs(20), || p
            .status("q1")
            .is_some_and(|s| s["status"] == "succeeded")),
        "{}",
        p.host_log()
    );
    signal(&host, nix::sys::signal::Signal::SIGTERM);
    wait_child(&mut host, Duration::from_secs(20));
}

/// A PEP 517 backend in the project itself (no build requirements, so nothing to download): its wheel
/// holds a marker module and depends on `semverlike==2.0`; it writes the names of its environment
/// variables to `build-env.txt`.
const BACKEND: &str = r#"import os, zipfile

def get_requires_for_build_wheel(config_settings=None):
    return []

def build_wheel(wheel_directory, config_settings=None, metadata_directory=None):
    with open(os.path.join(os.path.dirname(os.path.abspath(__file__)), "build-env.txt"), "w") as f:
        f.write("\n".join(sorted(os.environ)))
    di = "cworker-0.1.dist-info"
    files = {
        "cworker_marker.py": "",
        di + "/METADATA": "Metadata-Version: 2.1\nName: cworker\nVersion: 0.1\nRequires-Dist: semverlike==2.0\n",
        di + "/WHEEL": "Wheel-Version: 1.0\nGenerator: workerhost-tests\nRoot-Is-Purelib: true\nTag: py3-none-any\n",
    }
    files[di + "/RECORD"] = "".join("%s,,\n" % n for n in list(files) + [di + "/RECORD"])
    name = "cworker-0.1-py3-none-any.whl"
    with zipfile.ZipFile(os.path.join(wheel_directory, name), "w") as z:
        for n, t in files.items():
            z.writestr(n, t)
    return name
"#;

#[test]
fn a_pyproject_worker_installs_its_project_with_pip_settings_from_the_environment() {
    let p = Project::new();
    let wheels = wheels(p.path());
    p.write(
        "c/pyproject.toml",
        "[build-system]\nrequires = []\nbuild-backend = \"backend\"\nbackend-path = [\".\"]\n\n[project]\nname = \"cworker\"\nversion = \"0.1\"\ndependencies = [\"semverlike==2.0\"]\n",
    );
    p.write("c/backend.py", BACKEND);
    p.write("c/w.py", WORKER);
    p.config(
        "",
        &entry("c", "C", "").replace("requirements.txt", "pyproject.toml"),
    );
    // The index settings come from the environment only: without PIP_* passed through, pip would
    // look for semverlike on the network and not find it.
    let out = p
        .cmd(&["setup"])
        .env("PIP_NO_INDEX", "1")
        .env("PIP_FIND_LINKS", &wheels)
        .env("UV_NO_INDEX", "1")
        .env("UV_FIND_LINKS", &wheels)
        .env("WORKERHOST_TEST_HOST_SECRET", "s3cret")
        .output()
        .expect("setup");
    let said = text(&out.stdout);
    assert_eq!(out.status.code(), Some(0), "{said}{}", text(&out.stderr));
    assert!(said.contains("installed pyproject.toml"), "{said}");
    let py = p.file("c/.venv/bin/python");
    assert_eq!(installed_version(&py), "2.0");
    let st = Command::new(&py)
        .args(["-c", "import cworker_marker"])
        .status()
        .expect("python");
    assert!(st.success(), "the project itself is installed");
    let env = std::fs::read_to_string(p.file("c/build-env.txt")).unwrap_or_default();
    if !said.contains("with uv") {
        assert!(env.lines().any(|l| l == "PIP_NO_INDEX"), "{env}");
    }
    assert!(
        !env.lines().any(|l| l == "WORKERHOST_TEST_HOST_SECRET"),
        "the host's other variables stay out of the installer: {env}"
    );
    assert_eq!(worker_json(&p, "c")["dependencies"], "in_sync");
}

#[test]
fn a_failed_reload_keeps_the_old_venv_and_a_held_worker_starts_once_set_up() {
    let (p, wheels) = two_workers("");
    p.write("two/requirements.txt", &requirements(&wheels, "9.9"));
    p.submit("T2", "held", "{}");
    let port = free_port();
    let listen = format!("127.0.0.1:{port}");
    let mut host = p.spawn_host_logged(&["run", "--setup", "--listen", &listen], &[]);
    let up = wait_until(Duration::from_secs(60), || {
        p.host_log().contains("workerhost starting")
    });
    assert!(up, "{}", p.host_log());
    assert!(
        p.host_log()
            .contains("setup failed, the worker is not started")
    );
    p.submit("T1", "before", "{}");
    let ran = wait_until(Duration::from_secs(20), || {
        p.status("before")
            .is_some_and(|s| s["status"] == "succeeded")
    });
    assert!(ran, "{}", p.host_log());
    assert_eq!(p.status("held").expect("held")["status"], "queued");
    let health = |name: &str| {
        let mut last = None;
        wait_until(Duration::from_secs(10), || {
            last = http_get(port, &format!("/workers/{name}/health"), &[]).ok();
            last.is_some()
        });
        last.expect("health")
    };
    let h = health("two");
    assert_eq!(h.status, 503, "{}", h.body);
    assert_eq!(h.json()["held"], true, "{}", h.body);
    assert_eq!(h.json()["dependencies"], "missing", "{}", h.body);

    // `one` asks for a version that does not exist: its reload fails, it keeps its venv and runs on.
    // `two` is fixed: the same reload sets it up and starts it.
    p.write("one/requirements.txt", &requirements(&wheels, "9.9"));
    p.write("two/requirements.txt", &requirements(&wheels, "2.0"));
    signal(&host, nix::sys::signal::Signal::SIGHUP);
    let reloaded = wait_until(Duration::from_secs(90), || {
        p.host_log().contains("worker registry reloaded")
    });
    assert!(reloaded, "{}", p.host_log());
    assert!(
        p.host_log()
            .contains("reload: the worker keeps its current venv and config"),
        "{}",
        p.host_log()
    );
    let ran = wait_until(Duration::from_secs(20), || {
        p.status("held").is_some_and(|s| s["status"] == "succeeded")
    });
    assert!(ran, "the held worker runs once set up: {}", p.host_log());
    let h = health("two");
    assert_eq!(h.status, 200, "{}", h.body);
    assert_eq!(h.json()["held"], false, "{}", h.body);
    assert_eq!(
        p.status("held").expect("held")["result"]["result"]["semverlike"],
        "2.0"
    );
    p.submit("T1", "after", "{}");
    let ran = wait_until(Duration::from_secs(20), || {
        p.status("after")
            .is_some_and(|s| s["status"] == "succeeded")
    });
    assert!(ran, "{}", p.host_log());
    assert_eq!(
        p.status("after").expect("after")["result"]["result"]["semverlike"],
        "1.0"
    );
    assert_eq!(installed_version(&p.file("one/.venv/bin/python")), "1.0");
    assert!(!p.file("one/.venv").is_symlink(), "nothing was swapped");
    let beside: Vec<String> = std::fs::read_dir(p.file("one"))
        .expect("ls")
        .flatten()
        .map(|e| e.file_name().to_string_lossy().into_owned())
        .filter(|n| n.starts_with(".venv."))
        .collect();
    assert!(
        beside.is_empty(),
        "the failed build left nothing beside: {beside:?}"
    );
    signal(&host, nix::sys::signal::Signal::SIGTERM);
    wait_child(&mut host, Duration::from_secs(20));
}
