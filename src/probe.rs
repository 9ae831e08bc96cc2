//! Probes a worker without running a task: is its interpreter or binary there and executable, does its
//! `project_path` exist, can its Python module be found. Used by `workerhost check` and worker health.

use crate::config::{WorkerConfig, WorkerKind};
use serde::Serialize;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::Duration;

#[derive(Debug, Clone, Serialize)]
pub struct Check {
    pub check: &'static str,
    pub ok: bool,
    pub detail: String,
}

/// The file-system checks: cheap, no process started.
pub fn static_checks(w: &WorkerConfig) -> Vec<Check> {
    let mut checks = Vec::new();
    let (what, program) = match &w.kind {
        WorkerKind::Python { interpreter, .. } => ("interpreter", interpreter.clone()),
        WorkerKind::Command { argv } => (
            "binary",
            PathBuf::from(argv.first().map(String::as_str).unwrap_or("")),
        ),
        WorkerKind::Remote { url } => {
            checks.push(Check {
                check: "url",
                ok: true,
                detail: format!("remote worker at {url}"),
            });
            return checks;
        }
    };
    checks.push(executable_check(what, &program));
    if matches!(w.kind, WorkerKind::Python { .. }) {
        let d = crate::setup::dependencies(w);
        checks.push(Check {
            check: "dependencies",
            ok: d.state.ok(),
            detail: format!("{}: {}", d.state.as_str(), d.detail),
        });
    }
    if let Some(dir) = &w.project_path {
        let ok = dir.is_dir();
        checks.push(Check {
            check: "project_path",
            ok,
            detail: if ok {
                format!("{} exists", dir.display())
            } else {
                format!("{} is not a directory", dir.display())
            },
        });
    }
    checks
}

fn executable_check(what: &'static str, program: &Path) -> Check {
    let resolved = if program.components().count() == 1 && !program.is_absolute() {
        find_on_path(program)
    } else {
        Some(program.to_path_buf())
    };
    let (ok, detail) = match resolved {
        None => (false, format!("{} not found on PATH", program.display())),
        Some(p) => match std::fs::metadata(&p) {
            Err(e) => (false, format!("{}: {e}", p.display())),
            Ok(m) if !m.is_file() => (false, format!("{} is not a file", p.display())),
            Ok(m) if m.permissions().mode() & 0o111 == 0 => {
                (false, format!("{} is not executable", p.display()))
            }
            Ok(_) => (true, format!("{} is executable", p.display())),
        },
    };
    Check {
        check: what,
        ok,
        detail,
    }
}

/// Looks a bare program name up on the host's PATH.
pub fn find_on_path(name: &Path) -> Option<PathBuf> {
    let path = std::env::var_os("PATH")?;
    std::env::split_paths(&path)
        .map(|d| d.join(name))
        .find(|p| p.is_file())
}

/// For Python workers: asks the worker's own interpreter, in its `project_path`, whether the module can
/// be found (without importing it, so no worker code runs).
pub async fn module_check(w: &WorkerConfig) -> Option<Check> {
    let WorkerKind::Python {
        interpreter,
        module,
        function,
    } = &w.kind
    else {
        return None;
    };
    let mut cmd = tokio::process::Command::new(interpreter);
    // With a `function`, the module is imported (its top-level code runs) to see that the function is
    // there and callable; without, it is only found.
    let script = match function {
        Some(_) => {
            "import importlib, sys\ntry:\n    m = importlib.import_module(sys.argv[1])\nexcept Exception as e:\n    print('%s: %s' % (type(e).__name__, e), file=sys.stderr); sys.exit(3)\nif not callable(getattr(m, sys.argv[2], None)):\n    print('module %s has no function %s' % (sys.argv[1], sys.argv[2]), file=sys.stderr); sys.exit(4)"
        }
        None => {
            "import importlib.util, sys\ntry:\n    ok = importlib.util.find_spec(sys.argv[1]) is not None\nexcept Exception as e:\n    print(e, file=sys.stderr); ok = False\nsys.exit(0 if ok else 3)"
        }
    };
    cmd.arg("-c")
        .arg(script)
        .arg(module)
        .args(function.iter())
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .env_clear()
        // The worker's own environment (its `env:`, say a PYTHONPATH), as when it runs.
        .envs(crate::runner::launch::worker_env(w))
        .kill_on_drop(true);
    if let Some(dir) = &w.project_path {
        cmd.current_dir(dir);
    }
    let run = tokio::time::timeout(Duration::from_secs(30), cmd.output()).await;
    let (ok, detail) = match run {
        Err(_) => (false, format!("finding module {module} took over 30 s")),
        Ok(Err(e)) => (
            false,
            format!("cannot start {}: {e}", interpreter.display()),
        ),
        Ok(Ok(out)) if out.status.success() => match function {
            Some(f) => (true, format!("function {f} found in module {module}")),
            None => (true, format!("module {module} found")),
        },
        Ok(Ok(out)) if out.status.code() == Some(4) => (
            false,
            String::from_utf8_lossy(&out.stderr).trim().to_string(),
        ),
        Ok(Ok(out)) => {
            let err = String::from_utf8_lossy(&out.stderr).trim().to_string();
            let why = if err.is_empty() {
                String::new()
            } else {
                format!(": {err}")
            };
            let detail = match function {
                // The module was imported: found, perhaps, but its import failed.
                Some(_) => format!(
                    "cannot import module {module} with {}{why}",
                    interpreter.display()
                ),
                None => format!(
                    "module {module} not found by {}{why}",
                    interpreter.display()
                ),
            };
            (false, detail)
        }
    };
    Some(Check {
        check: "module",
        ok,
        detail,
    })
}
