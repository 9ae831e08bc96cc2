//! Worker environments the host provisions (section 10): a managed worker (`python` + `requirements`)
//! gets its venv made with `python` (`uv venv` when `uv` is on PATH, else `python -m venv`), its
//! requirements installed (`uv pip install` or pip), and a stamp file that says what was installed.
//! [`dependencies`] compares a venv with its stamp without starting a process: `in_sync`, `drifted`,
//! `missing` or `unmanaged`.

use crate::config::{Environment, WorkerConfig, WorkerKind};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, Instant};

mod install;
mod stamp;
mod swap;
pub mod watch;
use install::{build, python_version};
pub use stamp::{Dependencies, DependencyState, Stamp, dependencies, read_stamp};
use stamp::{requirements_key, sha256_file};
pub use swap::{Environments, Prepared};

/// The stamp's file name, inside the venv.
pub const STAMP_FILE: &str = "workerhost-stamp.json";
/// How many installer lines a failure shows.
pub const TAIL_LINES: usize = 15;
/// Workers set up at once by [`setup_all`].
pub const PARALLEL: usize = 4;

/// A setup that failed: which worker, at which step, and the installer's last lines.
#[derive(Debug, Clone, thiserror::Error)]
#[error("worker {worker}: {message}{}", render_tail(.tail))]
pub struct SetupError {
    pub worker: String,
    pub message: String,
    /// The last lines the failed program printed.
    pub tail: Vec<String>,
}

fn render_tail(tail: &[String]) -> String {
    let mut out = String::new();
    for l in tail {
        out.push_str("\n    | ");
        out.push_str(l);
    }
    out
}

/// What [`setup`] did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Action {
    /// Nothing: the stamp matched.
    InSync,
    /// Made the venv where there was none.
    Created,
    /// Removed the venv and made it again (drifted, or `--force`).
    Rebuilt,
}

/// One worker's setup.
#[derive(Debug, Clone)]
pub struct Report {
    pub worker: String,
    pub action: Action,
    /// What it found (in sync) or installed.
    pub detail: String,
    pub elapsed: Duration,
    /// The venv's stamp after it.
    pub stamp: Option<Stamp>,
}

/// `python` as a program: a path, or looked up on PATH.
fn creator(w: &WorkerConfig, env: &Environment) -> Result<PathBuf, SetupError> {
    if env.python.contains('/') {
        return Ok(PathBuf::from(&env.python));
    }
    crate::probe::find_on_path(Path::new(&env.python)).ok_or_else(|| SetupError {
        worker: w.name.clone(),
        message: format!(
            "{}.python: `{}` was not found on PATH (give a path to the interpreter)",
            w.config_path, env.python
        ),
        tail: Vec::new(),
    })
}

/// Whether `w`'s venv is in sync with its requirements and with what `python` is now.
fn in_sync(w: &WorkerConfig, env: &Environment, version: &str) -> Option<Stamp> {
    if dependencies(w).state != Dependencies::InSync {
        return None;
    }
    read_stamp(&env.venv).filter(|s| s.python_version == version)
}

/// Removes a venv folder. A symlink loses its target too when that is a `<venv>.<tag>` beside it (the
/// layout a reload leaves); a link to anywhere else is only unlinked.
pub fn remove_venv(venv: &Path) -> std::io::Result<()> {
    match std::fs::symlink_metadata(venv) {
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(()),
        Err(e) => Err(e),
        Ok(m) if m.file_type().is_symlink() => {
            let target = std::fs::read_link(venv);
            std::fs::remove_file(venv)?;
            let prefix = format!(
                "{}.",
                venv.file_name().unwrap_or_default().to_string_lossy()
            );
            match target {
                Ok(t)
                    if t.components().count() == 1 && t.to_string_lossy().starts_with(&prefix) =>
                {
                    let t = venv.with_file_name(t);
                    if t.is_dir() {
                        std::fs::remove_dir_all(t)
                    } else {
                        Ok(())
                    }
                }
                _ => Ok(()),
            }
        }
        Ok(m) if m.is_dir() => std::fs::remove_dir_all(venv),
        Ok(_) => std::fs::remove_file(venv),
    }
}

/// Sets `w` up in place: nothing when it is in sync (unless `force`), else its venv is removed and made
/// again. `Ok(None)` for a worker without `requirements`.
pub async fn setup(w: &WorkerConfig, force: bool) -> Result<Option<Report>, SetupError> {
    let Some(env) = &w.environment else {
        return Ok(None);
    };
    let started = Instant::now();
    let python = creator(w, env)?;
    let version = python_version(w, &python).await?;
    if !force && let Some(stamp) = in_sync(w, env, &version) {
        return Ok(Some(Report {
            worker: w.name.clone(),
            action: Action::InSync,
            detail: format!(
                "in sync: {} unchanged since {} (python {})",
                env.requirements.display(),
                stamp.created_at,
                stamp.python_version
            ),
            elapsed: started.elapsed(),
            stamp: Some(stamp),
        }));
    }
    let existed = std::fs::symlink_metadata(&env.venv).is_ok();
    let why = match dependencies(w) {
        _ if force => "--force".to_string(),
        s if s.state == Dependencies::InSync => format!("python is now {version}"),
        s => s.detail,
    };
    remove_venv(&env.venv).map_err(|e| SetupError {
        worker: w.name.clone(),
        message: format!("cannot remove the old venv {}: {e}", env.venv.display()),
        tail: Vec::new(),
    })?;
    let stamp = build(w, env, &python, &version, &env.venv).await?;
    let action = if existed {
        Action::Rebuilt
    } else {
        Action::Created
    };
    let verb = if existed {
        format!("rebuilt {} ({why})", env.venv.display())
    } else {
        format!("created {}", env.venv.display())
    };
    let detail = format!(
        "{verb} with python {}, installed {} with {}",
        stamp.python_version,
        display_name(&env.requirements),
        stamp.installer
    );
    Ok(Some(Report {
        worker: w.name.clone(),
        action,
        detail,
        elapsed: started.elapsed(),
        stamp: Some(stamp),
    }))
}

fn display_name(p: &Path) -> String {
    p.file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_else(|| p.display().to_string())
}

/// One worker's [`setup_all`] result.
#[derive(Debug)]
pub struct Outcome {
    pub worker: String,
    pub elapsed: Duration,
    pub result: Result<Report, SetupError>,
}

/// Sets up every managed worker of `workers`, [`PARALLEL`] at a time; results in the order given
/// (workers without `requirements` are left out). One worker's failure does not stop the others.
pub async fn setup_all(workers: &[WorkerConfig], force: bool) -> Vec<Outcome> {
    let gate = Arc::new(tokio::sync::Semaphore::new(PARALLEL));
    let managed: Vec<&WorkerConfig> = workers.iter().filter(|w| w.environment.is_some()).collect();
    let mut tasks = Vec::new();
    for w in &managed {
        let (w, gate) = ((*w).clone(), gate.clone());
        tasks.push(tokio::spawn(async move {
            let _permit = gate.acquire_owned().await;
            let started = Instant::now();
            let r = setup(&w, force).await;
            (started.elapsed(), r)
        }));
    }
    let mut out = Vec::new();
    for (t, w) in tasks.into_iter().zip(managed) {
        let (elapsed, result) = match t.await {
            Ok((d, Ok(Some(r)))) => (d, Ok(r)),
            Ok((_, Ok(None))) => continue,
            Ok((d, Err(e))) => (d, Err(e)),
            Err(e) => (
                Duration::ZERO,
                Err(SetupError {
                    worker: w.name.clone(),
                    message: format!("setup panicked: {e}"),
                    tail: Vec::new(),
                }),
            ),
        };
        out.push(Outcome {
            worker: w.name.clone(),
            elapsed,
            result,
        });
    }
    out
}

/// For a reload (SIGHUP): builds `w`'s changed environment in a fresh folder beside the current venv,
/// `<venv>.<tag>`, probes it (the interpreter finds the worker's module) and returns `w` pointed at it.
/// The venv in use (`in_use`) is not touched.
pub async fn build_beside(w: &WorkerConfig, in_use: &Path) -> Result<WorkerConfig, SetupError> {
    let Some(env) = &w.environment else {
        return Ok(w.clone());
    };
    let python = creator(w, env)?;
    let version = python_version(w, &python).await?;
    let sha = sha256_file(&env.requirements).map_err(|e| SetupError {
        worker: w.name.clone(),
        message: format!("cannot read {}: {e}", env.requirements.display()),
        tail: Vec::new(),
    })?;
    let tag = Stamp {
        requirements: requirements_key(w, env),
        requirements_sha256: sha,
        python: env.python.clone(),
        python_version: version.clone(),
        installer: String::new(),
        created_at: String::new(),
    }
    .tag();
    let dir = sibling(&env.venv, &tag);
    if let (Ok(a), Ok(b)) = (std::fs::canonicalize(&dir), std::fs::canonicalize(in_use))
        && a == b
    {
        return Err(SetupError {
            worker: w.name.clone(),
            message: format!(
                "the venv in use, {}, is the one these requirements name but its stamp does not match: run `workerhost setup --force --worker {}` with the host stopped",
                in_use.display(),
                w.name
            ),
            tail: Vec::new(),
        });
    }
    let _ = remove_venv(&dir);
    let mut moved = w.clone();
    retarget(&mut moved, &dir);
    build(&moved, env, &python, &version, &dir).await?;
    if let Some(c) = crate::probe::module_check(&moved).await
        && !c.ok
    {
        let _ = std::fs::remove_dir_all(&dir);
        return Err(SetupError {
            worker: w.name.clone(),
            message: format!(
                "the new venv {} failed its probe: {}",
                dir.display(),
                c.detail
            ),
            tail: Vec::new(),
        });
    }
    Ok(moved)
}

/// `<venv>.<tag>` beside `venv`.
pub fn sibling(venv: &Path, tag: &str) -> PathBuf {
    let mut name = venv.file_name().unwrap_or_default().to_os_string();
    name.push(".");
    name.push(tag);
    venv.with_file_name(name)
}

/// Points `w`'s interpreter and environment at the venv in `dir` (same `bin/<name>`).
pub fn retarget(w: &mut WorkerConfig, dir: &Path) {
    let Some(env) = &mut w.environment else {
        return;
    };
    if let WorkerKind::Python { interpreter, .. } = &mut w.kind
        && let Ok(rel) = interpreter.strip_prefix(&env.venv)
    {
        *interpreter = dir.join(rel);
    }
    env.venv = dir.to_path_buf();
}

#[cfg(test)]
mod tests {
    use super::install::first_words;
    use super::*;

    #[test]
    fn sibling_and_tag() {
        assert_eq!(
            sibling(Path::new("/p/.venv"), "0123abcd"),
            PathBuf::from("/p/.venv.0123abcd")
        );
        let s = Stamp {
            requirements: "/r.txt".into(),
            requirements_sha256: "ab".into(),
            python: "python3".into(),
            python_version: "3.11.7".into(),
            installer: "pip 1".into(),
            created_at: "x".into(),
        };
        let t = s.tag();
        assert_eq!(t.len(), 8);
        let other = Stamp {
            installer: "uv 2".into(),
            ..s.clone()
        };
        assert_eq!(other.tag(), t, "the installer does not name the content");
        let changed = Stamp {
            requirements_sha256: "cd".into(),
            ..s
        };
        assert_ne!(changed.tag(), t);
    }

    #[test]
    fn removing_a_linked_venv_removes_a_sibling_target_only() {
        let t = tempfile::tempdir().expect("tempdir");
        let venv = t.path().join(".venv");
        let tagged = t.path().join(".venv.0123abcd");
        std::fs::create_dir_all(tagged.join("bin")).expect("mkdir");
        std::os::unix::fs::symlink(".venv.0123abcd", &venv).expect("link");
        remove_venv(&venv).expect("remove");
        assert!(!tagged.exists() && std::fs::symlink_metadata(&venv).is_err());
        // A link to a venv elsewhere (a copy of a project linking the original's) is only unlinked.
        let elsewhere = t.path().join("other/venv");
        std::fs::create_dir_all(elsewhere.join("bin")).expect("mkdir");
        std::os::unix::fs::symlink(&elsewhere, &venv).expect("link");
        remove_venv(&venv).expect("remove");
        assert!(elsewhere.join("bin").is_dir());
        assert!(std::fs::symlink_metadata(&venv).is_err());
    }

    #[test]
    fn first_words_of_versions() {
        assert_eq!(
            first_words("pip 23.2.1 from /x/pip (python 3.11)\n"),
            "pip 23.2.1"
        );
        assert_eq!(first_words("uv 0.5.4 (abc 2024-11-20)"), "uv 0.5.4");
    }
}
