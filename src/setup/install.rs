//! Making a venv and installing into it: `uv` when it is on PATH, else `python -m venv` and pip; each
//! step a process whose last lines a failure shows; the stamp written last.

use super::stamp::{Stamp, requirements_key, sha256_file};
use super::{STAMP_FILE, SetupError, TAIL_LINES};
use crate::config::{Environment, WorkerConfig};
use std::ffi::OsStr;
use std::path::{Path, PathBuf};
use std::process::Stdio;

/// How requirements get installed.
#[derive(Debug, Clone)]
pub(super) enum Installer {
    /// `uv` on PATH (absolute).
    Uv(PathBuf),
    Pip,
}

pub(super) fn find_uv() -> Option<PathBuf> {
    crate::probe::find_on_path(Path::new("uv"))
}

/// Host variables an installer gets: the basics, proxies and certificates, and every `PIP_*`, `UV_*`
/// and `PYENV_*` (a pyenv shim as `python` needs those). Nothing else of the host's (its secrets) leaks.
pub(super) fn installer_env() -> Vec<(String, String)> {
    const NAMES: &[&str] = &[
        "PATH",
        "HOME",
        "LANG",
        "LC_ALL",
        "TZ",
        "TMPDIR",
        "USER",
        "HTTP_PROXY",
        "HTTPS_PROXY",
        "NO_PROXY",
        "ALL_PROXY",
        "http_proxy",
        "https_proxy",
        "no_proxy",
        "all_proxy",
        "SSL_CERT_FILE",
        "SSL_CERT_DIR",
        "REQUESTS_CA_BUNDLE",
        "XDG_CACHE_HOME",
    ];
    std::env::vars()
        .filter(|(k, _)| {
            NAMES.contains(&k.as_str())
                || k.starts_with("PIP_")
                || k.starts_with("UV_")
                || k.starts_with("PYENV")
        })
        .collect()
}

/// Runs a step; its output is kept for the failure message.
pub(super) async fn step(
    worker: &str,
    what: &str,
    program: &Path,
    args: &[&OsStr],
    cwd: Option<&Path>,
) -> Result<String, SetupError> {
    let mut cmd = tokio::process::Command::new(program);
    cmd.args(args)
        .env_clear()
        .envs(installer_env())
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .kill_on_drop(true);
    if let Some(dir) = cwd {
        cmd.current_dir(dir);
    }
    let out = cmd.output().await.map_err(|e| SetupError {
        worker: worker.to_string(),
        message: format!("{what}: cannot start {}: {e}", program.display()),
        tail: Vec::new(),
    })?;
    let stdout = String::from_utf8_lossy(&out.stdout).into_owned();
    if out.status.success() {
        return Ok(stdout);
    }
    let mut all: Vec<String> = stdout.lines().map(str::to_string).collect();
    all.extend(
        String::from_utf8_lossy(&out.stderr)
            .lines()
            .map(str::to_string),
    );
    all.retain(|l| !l.trim().is_empty());
    let tail = all.split_off(all.len().saturating_sub(TAIL_LINES));
    let code = out
        .status
        .code()
        .map(|c| format!("exited {c}"))
        .unwrap_or_else(|| "was killed by a signal".into());
    Err(SetupError {
        worker: worker.to_string(),
        message: format!("{what} {code}"),
        tail,
    })
}

pub(super) async fn python_version(w: &WorkerConfig, python: &Path) -> Result<String, SetupError> {
    let script = "import sys; print('%d.%d.%d' % sys.version_info[:3])";
    let out = step(
        &w.name,
        "asking python its version",
        python,
        &["-c".as_ref(), script.as_ref()],
        None,
    )
    .await?;
    Ok(out.trim().to_string())
}

/// Makes a venv at `dir` (which must not exist) for `w`, installs its requirements, checks the result
/// and writes the stamp. On failure, `dir` is removed again.
pub(super) async fn build(
    w: &WorkerConfig,
    env: &Environment,
    python: &Path,
    version: &str,
    dir: &Path,
) -> Result<Stamp, SetupError> {
    let half_made = RemoveUnlessKept(Some(dir));
    let name = w.name.as_str();
    // Hashed before installing: a file edited during the install is drifted afterwards, not stamped.
    let sha = sha256_file(&env.requirements).map_err(|e| SetupError {
        worker: name.to_string(),
        message: format!(
            "{}.requirements: cannot read {}: {e}",
            w.config_path,
            env.requirements.display()
        ),
        tail: Vec::new(),
    })?;
    if let Some(parent) = dir.parent() {
        std::fs::create_dir_all(parent).map_err(|e| SetupError {
            worker: name.to_string(),
            message: format!("cannot create {}: {e}", parent.display()),
            tail: Vec::new(),
        })?;
    }
    let installer = match find_uv() {
        Some(uv) => Installer::Uv(uv),
        None => Installer::Pip,
    };
    let venv_python = dir.join("bin/python");
    let is_pyproject = env
        .requirements
        .file_name()
        .is_some_and(|n| n == "pyproject.toml");
    let project = env
        .requirements
        .parent()
        .map(Path::to_path_buf)
        .unwrap_or_else(|| PathBuf::from("/"));
    let cwd = w.project_path.clone().unwrap_or_else(|| project.clone());
    let target: Vec<&OsStr> = if is_pyproject {
        vec![project.as_os_str()]
    } else {
        vec!["-r".as_ref(), env.requirements.as_os_str()]
    };
    let at = Install {
        worker: name,
        python,
        dir,
        venv_python: &venv_python,
        target: &target,
        cwd: &cwd,
    };
    let installer_name = match &installer {
        Installer::Uv(uv) => at.with_uv(uv).await?,
        Installer::Pip => at.with_pip().await?,
    };
    let stamp = Stamp {
        requirements: requirements_key(w, env),
        requirements_sha256: sha,
        python: env.python.clone(),
        python_version: version.to_string(),
        installer: installer_name,
        created_at: jiff::Timestamp::now()
            .round(jiff::Unit::Second)
            .map_or_else(|_| jiff::Timestamp::now().to_string(), |t| t.to_string()),
    };
    let text = serde_json::to_vec_pretty(&stamp).map_err(|e| SetupError {
        worker: name.to_string(),
        message: format!("cannot write the stamp: {e}"),
        tail: Vec::new(),
    })?;
    std::fs::write(dir.join(STAMP_FILE), text).map_err(|e| SetupError {
        worker: name.to_string(),
        message: format!("cannot write {}: {e}", dir.join(STAMP_FILE).display()),
        tail: Vec::new(),
    })?;
    half_made.keep();
    Ok(stamp)
}

/// Removes a venv folder when dropped (an install that failed, or whose future was dropped), unless
/// [`RemoveUnlessKept::keep`] was called.
struct RemoveUnlessKept<'a>(Option<&'a Path>);

impl RemoveUnlessKept<'_> {
    fn keep(mut self) {
        self.0 = None;
    }
}

impl Drop for RemoveUnlessKept<'_> {
    fn drop(&mut self) {
        if let Some(dir) = self.0 {
            let _ = std::fs::remove_dir_all(dir);
        }
    }
}

/// Where and what one install puts: the venv at `dir` made with `python`, then `target` (`-r file` or
/// the project folder) installed into it, each step run in `cwd`.
pub(super) struct Install<'a> {
    worker: &'a str,
    python: &'a Path,
    dir: &'a Path,
    venv_python: &'a Path,
    target: &'a [&'a std::ffi::OsStr],
    cwd: &'a Path,
}

impl Install<'_> {
    /// `uv venv`, `uv pip install`, `uv pip check`; the installer's name and version.
    async fn with_uv(&self, uv: &Path) -> Result<String, SetupError> {
        let (python, dir) = (self.python.as_os_str(), self.dir.as_os_str());
        let venv_python = self.venv_python.as_os_str();
        self.step("uv venv", uv, &argv(&["venv", "--python"], &[python, dir]))
            .await?;
        let mut install = vec![venv_python];
        install.extend(self.target);
        let install = argv(&["pip", "install", "--python"], &install);
        self.step("uv pip install", uv, &install).await?;
        let check = argv(&["pip", "check", "--python"], &[venv_python]);
        self.step("uv pip check", uv, &check).await?;
        let v = step(
            self.worker,
            "uv --version",
            uv,
            &argv(&["--version"], &[]),
            None,
        )
        .await?;
        Ok(first_words(&v))
    }

    /// `python -m venv`, `pip install`, `pip check`; the installer's name and version.
    async fn with_pip(&self) -> Result<String, SetupError> {
        let venv = argv(&["-m", "venv"], &[self.dir.as_os_str()]);
        self.step("python -m venv", self.python, &venv).await?;
        let pip_install = ["-m", "pip", "install", "--disable-pip-version-check"];
        let install = argv(&pip_install, self.target);
        self.step("pip install", self.venv_python, &install).await?;
        let check = argv(&["-m", "pip", "check", "--disable-pip-version-check"], &[]);
        self.step("pip check", self.venv_python, &check).await?;
        let version = argv(&["-m", "pip", "--version"], &[]);
        let v = step(
            self.worker,
            "pip --version",
            self.venv_python,
            &version,
            None,
        )
        .await?;
        Ok(first_words(&v))
    }

    /// One step of this install, run in its `cwd`.
    async fn step(
        &self,
        what: &str,
        program: &Path,
        args: &[&OsStr],
    ) -> Result<String, SetupError> {
        step(self.worker, what, program, args, Some(self.cwd)).await
    }
}

/// `words` then `more`, as one argument list.
fn argv<'a>(words: &[&'a str], more: &[&'a OsStr]) -> Vec<&'a OsStr> {
    words
        .iter()
        .map(|w| OsStr::new(*w))
        .chain(more.iter().copied())
        .collect()
}

/// `pip 23.2.1 from /x (python 3.11)` → `pip 23.2.1`.
pub(super) fn first_words(v: &str) -> String {
    v.split_whitespace().take(2).collect::<Vec<_>>().join(" ")
}
