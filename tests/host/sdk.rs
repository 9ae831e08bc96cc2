//! The reason workerhost exists: two Python workers that need different versions of the same package,
//! each in its own venv made here by the test, running side by side under one host, one in pool mode
//! and one in spawn mode, both written with the Python SDK (workers-sdk/python).

use crate::support::*;
use std::path::{Path, PathBuf};
use std::process::Command;

/// A venv with `requirement` and the SDK installed from this repository.
fn venv_with(dir: &Path, requirement: &str) -> PathBuf {
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    let venv = dir.join(requirement.replace(['=', '.'], "_"));
    let st = Command::new(real_python())
        .args(["-m", "venv"])
        .arg(&venv)
        .status()
        .expect("venv");
    assert!(st.success());
    let py = venv.join("bin/python");
    let st = Command::new(&py)
        .args([
            "-m",
            "pip",
            "install",
            "-q",
            "--disable-pip-version-check",
            requirement,
        ])
        .arg(root.join("workers-sdk/python"))
        .status()
        .expect("pip");
    assert!(st.success(), "pip install {requirement} and the SDK failed");
    py
}

#[test]
fn two_versions_of_one_package_side_by_side_in_pool_and_spawn_mode() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    let venvs = tempfile::tempdir().expect("tempdir");
    let new_py = venv_with(venvs.path(), "semver==3.0.2");
    let old_py = venv_with(venvs.path(), "semver==2.13.0");
    let p = Project::new();
    p.config(
        "  concurrency: 4",
        &format!(
            "  - name: semver3\n    project_path: {}\n    venv_python: {}\n    module: semver_worker\n    function: handle\n    task_types: [demo.semver.bump]\n    mode: pool\n    pool_size: 2\n  - name: semver2\n    project_path: {}\n    venv_python: {}\n    module: legacy_worker\n    function: handle\n    task_types: [demo.semver.bump-legacy]\n",
            root.join("examples/python-sdk-worker").display(),
            new_py.display(),
            root.join("examples/python-sdk-worker-legacy").display(),
            old_py.display(),
        ),
    );
    for i in 0..6 {
        p.submit(
            "demo.semver.bump",
            &format!("new{i}"),
            &format!(r#"{{"version": "1.{i}.0", "part": "minor"}}"#),
        );
        p.submit(
            "demo.semver.bump-legacy",
            &format!("old{i}"),
            &format!(r#"{{"version": "1.{i}.0", "part": "minor"}}"#),
        );
    }
    p.submit("demo.semver.bump", "bad", r#"{"part": "minor"}"#);
    let out = p.run(&["--burst"]);
    assert!(out.status.success(), "{}", text(&out.stderr));
    for i in 0..6 {
        let new = p.status(&format!("new{i}")).expect("new");
        assert_eq!(new["status"], "succeeded", "{new}");
        assert_eq!(new["result"]["result"]["semver"], "3.0.2");
        assert_eq!(new["result"]["result"]["version"], format!("1.{}.0", i + 1));
        let old = p.status(&format!("old{i}")).expect("old");
        assert_eq!(old["status"], "succeeded", "{old}");
        assert_eq!(old["result"]["result"]["semver"], "2.13.0");
    }
    // A FatalError in a pool process: dead at once, and the process keeps serving.
    let bad = p.status("bad").expect("bad");
    assert_eq!(bad["status"], "dead");
    assert_eq!(bad["result"]["attempts"], 1);
    assert_eq!(bad["result"]["error"]["outcome"], "fatal");
    // The handlers' prints went to stderr (logged), never into the protocol.
    assert!(text(&out.stderr).contains("bumping the minor part"));
}
