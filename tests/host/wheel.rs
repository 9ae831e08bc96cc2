//! The `workerhost` wheel (maturin `bin` bindings, as ruff and uv ship theirs): scripts/build-wheel
//! builds it, a fresh venv installs it with pip from the file alone, and the binary it puts on the venv's
//! PATH answers `--version` and runs a task.

use crate::support::{Project, real_python, text};
use std::path::Path;
use std::process::Command;

#[test]
fn the_built_wheel_installs_into_a_fresh_venv_and_runs_a_task() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    let p = Project::new();
    let out_dir = p.file("dist");
    let build = Command::new(root.join("scripts/build-wheel"))
        .args(["--profile", "dev"])
        .env("WHEEL_OUT", &out_dir)
        .env("PYTHON", real_python())
        .output()
        .expect("scripts/build-wheel");
    assert!(
        build.status.success(),
        "{}{}",
        text(&build.stdout),
        text(&build.stderr)
    );
    let wheel = std::fs::read_dir(&out_dir)
        .expect("dist")
        .filter_map(Result::ok)
        .map(|e| e.path())
        .find(|f| f.extension().is_some_and(|x| x == "whl"))
        .expect("a .whl in dist");
    let name = wheel
        .file_name()
        .map(|n| n.to_string_lossy().to_string())
        .unwrap_or_default();
    assert!(name.starts_with("workerhost-"), "{name}");

    let venv = p.file("venv");
    let made = Command::new(real_python())
        .args(["-m", "venv"])
        .arg(&venv)
        .status()
        .expect("venv");
    assert!(made.success());
    let pip = Command::new(venv.join("bin/pip"))
        .args(["install", "-q", "--no-index", "--no-deps"])
        .arg(&wheel)
        .output()
        .expect("pip");
    assert!(pip.status.success(), "{}", text(&pip.stderr));

    let bin = venv.join("bin/workerhost");
    let v = Command::new(&bin).arg("--version").output().expect("run");
    assert!(v.status.success());
    assert!(
        text(&v.stdout).starts_with("workerhost "),
        "{}",
        text(&v.stdout)
    );

    p.write(
        "workerhost_config.yaml",
        "version: \"1.0\"\ntask_manager: { type: sqlite, path: ./q.db }\nworkers:\n  - name: cat\n    command: [\"/bin/sh\", \"-c\", \"cat >/dev/null; echo '{\\\"success\\\": true, \\\"result\\\": {\\\"from\\\": \\\"wheel\\\"}}'\"]\n    task_types: [W.T]\n",
    );
    let run = Command::new(&bin)
        .args(["exec", "--type", "W.T", "--id", "w1"])
        .current_dir(p.path())
        .output()
        .expect("exec");
    assert!(run.status.success(), "{}", text(&run.stderr));
    let doc: serde_json::Value = serde_json::from_slice(&run.stdout).expect("result JSON");
    assert_eq!(doc["status"], "succeeded");
    assert_eq!(doc["result"]["from"], "wheel");
}
