//! Worker environments the host provisions (section 10): a managed worker (`python` + `requirements`)
//! gets its venv made with `python` (`uv venv` when `uv` is on PATH, else `python -m venv`), its
//! requirements installed (`uv pip install` or pip), and a stamp file that says what was installed.
//! [`dependencies`] compares a venv with its stamp without starting a process: `in_sync`, `drifted`,
//! `missing` or `unmanaged`.

use crate::config::{Environment, WorkerConfig, WorkerKind};
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};
use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::sync::Arc;
use std::time::{Duration, Instant};

mod swap;
pub mod watch;
pub use swap::{Environments, Prepared};

/// The stamp's file name, inside the venv.
pub const STAMP_FILE: &str = "workerhost-stamp.json";
/// How many installer lines a failure shows.
pub const TAIL_LINES: usize = 15;
/// Workers set up at once by [`setup_all`].
pub const PARALLEL: usize = 4;

/// What `setup` installed, written as JSON into the venv.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Stamp {
    /// The requirements file, relative to the worker's `project_path` when it is inside it (so that a
    /// project copied or moved with its venv stays in sync), else absolute.
    pub requirements: PathBuf,
    /// sha256 of its bytes, hex.
    pub requirements_sha256: String,
    /// `python` as configured (a name or an absolute path).
    pub python: String,
    /// What that interpreter said its version was: `3.11.7`.
    pub python_version: String,
    /// `pip 23.2.1` or `uv 0.5.4`.
    pub installer: String,
    /// RFC 3339.
    pub created_at: String,
}

impl Stamp {
    /// Eight hex digits naming this content: the folder a reload builds beside the old venv.
    pub fn tag(&self) -> String {
        let mut h = Sha256::new();
        h.update(self.requirements_sha256.as_bytes());
        h.update(self.python.as_bytes());
        h.update(self.python_version.as_bytes());
        hex(&h.finalize())[..8].to_string()
    }
}

/// Where a worker's environment stands.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Dependencies {
    /// The stamp matches the requirements file and `python`.
    InSync,
    /// The requirements (or `python`) changed since the stamp, or there is no stamp.
    Drifted,
    /// No venv.
    Missing,
    /// No `requirements`: the host does not manage this worker's environment.
    Unmanaged,
}

impl Dependencies {
    pub fn as_str(self) -> &'static str {
        match self {
            Dependencies::InSync => "in_sync",
            Dependencies::Drifted => "drifted",
            Dependencies::Missing => "missing",
            Dependencies::Unmanaged => "unmanaged",
        }
    }

    /// Whether the worker's health is fine with it (drifted and missing are 503).
    pub fn ok(self) -> bool {
        matches!(self, Dependencies::InSync | Dependencies::Unmanaged)
    }
}

/// [`Dependencies`] and why.
#[derive(Debug, Clone, PartialEq)]
pub struct DependencyState {
    pub state: Dependencies,
    pub detail: String,
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

fn sha256_file(p: &Path) -> std::io::Result<String> {
    Ok(hex(&Sha256::digest(std::fs::read(p)?)))
}

/// What the stamp records of the requirements file: see [`Stamp::requirements`].
fn requirements_key(w: &WorkerConfig, env: &Environment) -> PathBuf {
    w.project_path
        .as_deref()
        .and_then(|p| env.requirements.strip_prefix(p).ok())
        .map(Path::to_path_buf)
        .unwrap_or_else(|| env.requirements.clone())
}

/// Whether two paths name one file (`a/../b` and `b`, or through a symlink).
fn same_file(a: &Path, b: &Path) -> bool {
    a == b
        || matches!((std::fs::canonicalize(a), std::fs::canonicalize(b)), (Ok(x), Ok(y)) if x == y)
}

/// The stamp in `venv`, if there is a readable one.
pub fn read_stamp(venv: &Path) -> Option<Stamp> {
    let text = std::fs::read(venv.join(STAMP_FILE)).ok()?;
    serde_json::from_slice(&text).ok()
}

fn interpreter_of(w: &WorkerConfig) -> Option<&Path> {
    match &w.kind {
        WorkerKind::Python { interpreter, .. } => Some(interpreter),
        _ => None,
    }
}

/// Compares `w`'s venv with its stamp: reads two small files, starts no process.
pub fn dependencies(w: &WorkerConfig) -> DependencyState {
    let state = |state, detail: String| DependencyState { state, detail };
    let (Some(env), Some(python)) = (&w.environment, interpreter_of(w)) else {
        return state(
            Dependencies::Unmanaged,
            "no `requirements`: the host does not manage this environment".into(),
        );
    };
    if !python.exists() {
        return state(
            Dependencies::Missing,
            format!("no venv at {} (run `workerhost setup`)", env.venv.display()),
        );
    }
    let Some(stamp) = read_stamp(&env.venv) else {
        return state(
            Dependencies::Drifted,
            format!(
                "{} has no stamp ({STAMP_FILE}): not made by `workerhost setup`, or its setup did not finish",
                env.venv.display()
            ),
        );
    };
    let sha = match sha256_file(&env.requirements) {
        Ok(s) => s,
        Err(e) => {
            return state(
                Dependencies::Drifted,
                format!("cannot read {}: {e}", env.requirements.display()),
            );
        }
    };
    let named = requirements_key(w, env);
    if stamp.requirements != named && !same_file(&stamp.requirements, &env.requirements) {
        return state(
            Dependencies::Drifted,
            format!(
                "the venv was set up from {}, the config names {}",
                stamp.requirements.display(),
                named.display()
            ),
        );
    }
    if stamp.requirements_sha256 != sha {
        return state(
            Dependencies::Drifted,
            format!(
                "{} changed since the venv was set up ({})",
                env.requirements.display(),
                stamp.created_at
            ),
        );
    }
    if stamp.python != env.python {
        return state(
            Dependencies::Drifted,
            format!(
                "the venv was made with python {}, the config says {}",
                stamp.python, env.python
            ),
        );
    }
    state(
        Dependencies::InSync,
        format!(
            "{} unchanged since {} (python {}, {})",
            env.requirements.display(),
            stamp.created_at,
            stamp.python_version,
            stamp.installer
        ),
    )
}

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

/// How requirements get installed.
#[derive(Debug, Clone)]
enum Installer {
    /// `uv` on PATH (absolute).
    Uv(PathBuf),
    Pip,
}

fn find_uv() -> Option<PathBuf> {
    crate::probe::find_on_path(Path::new("uv"))
}

/// Host variables an installer gets: the basics, proxies and certificates, and every `PIP_*`, `UV_*`
/// and `PYENV_*` (a pyenv shim as `python` needs those). Nothing else of the host's (its secrets) leaks.
fn installer_env() -> Vec<(String, String)> {
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
async fn step(
    worker: &str,
    what: &str,
    program: &Path,
    args: &[&std::ffi::OsStr],
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

async fn python_version(w: &WorkerConfig, python: &Path) -> Result<String, SetupError> {
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
    let verb = if existed { "rebuilt" } else { "created" };
    let detail = if existed {
        format!(
            "{verb} {} ({why}) with python {}, installed {} with {}",
            env.venv.display(),
            stamp.python_version,
            display_name(&env.requirements),
            stamp.installer
        )
    } else {
        format!(
            "{verb} {} with python {}, installed {} with {}",
            env.venv.display(),
            stamp.python_version,
            display_name(&env.requirements),
            stamp.installer
        )
    };
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

/// Makes a venv at `dir` (which must not exist) for `w`, installs its requirements, checks the result
/// and writes the stamp. On failure, `dir` is removed again.
async fn build(
    w: &WorkerConfig,
    env: &Environment,
    python: &Path,
    version: &str,
    dir: &Path,
) -> Result<Stamp, SetupError> {
    let result = build_inner(w, env, python, version, dir).await;
    if result.is_err() {
        let _ = std::fs::remove_dir_all(dir);
    }
    result
}

async fn build_inner(
    w: &WorkerConfig,
    env: &Environment,
    python: &Path,
    version: &str,
    dir: &Path,
) -> Result<Stamp, SetupError> {
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
    let target: Vec<&std::ffi::OsStr> = if is_pyproject {
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
    Ok(stamp)
}

/// Where and what one install puts: the venv at `dir` made with `python`, then `target` (`-r file` or
/// the project folder) installed into it, each step run in `cwd`.
struct Install<'a> {
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
        step(
            self.worker,
            "uv venv",
            uv,
            &[
                "venv".as_ref(),
                "--python".as_ref(),
                self.python.as_os_str(),
                self.dir.as_os_str(),
            ],
            Some(self.cwd),
        )
        .await?;
        let mut args: Vec<&std::ffi::OsStr> = vec![
            "pip".as_ref(),
            "install".as_ref(),
            "--python".as_ref(),
            self.venv_python.as_os_str(),
        ];
        args.extend(self.target);
        step(self.worker, "uv pip install", uv, &args, Some(self.cwd)).await?;
        step(
            self.worker,
            "uv pip check",
            uv,
            &[
                "pip".as_ref(),
                "check".as_ref(),
                "--python".as_ref(),
                self.venv_python.as_os_str(),
            ],
            Some(self.cwd),
        )
        .await?;
        let v = step(
            self.worker,
            "uv --version",
            uv,
            &["--version".as_ref()],
            None,
        )
        .await?;
        Ok(first_words(&v))
    }

    /// `python -m venv`, `pip install`, `pip check`; the installer's name and version.
    async fn with_pip(&self) -> Result<String, SetupError> {
        step(
            self.worker,
            "python -m venv",
            self.python,
            &["-m".as_ref(), "venv".as_ref(), self.dir.as_os_str()],
            Some(self.cwd),
        )
        .await?;
        let mut args: Vec<&std::ffi::OsStr> = vec![
            "-m".as_ref(),
            "pip".as_ref(),
            "install".as_ref(),
            "--disable-pip-version-check".as_ref(),
        ];
        args.extend(self.target);
        step(
            self.worker,
            "pip install",
            self.venv_python,
            &args,
            Some(self.cwd),
        )
        .await?;
        step(
            self.worker,
            "pip check",
            self.venv_python,
            &[
                "-m".as_ref(),
                "pip".as_ref(),
                "check".as_ref(),
                "--disable-pip-version-check".as_ref(),
            ],
            Some(self.cwd),
        )
        .await?;
        let v = step(
            self.worker,
            "pip --version",
            self.venv_python,
            &["-m".as_ref(), "pip".as_ref(), "--version".as_ref()],
            None,
        )
        .await?;
        Ok(first_words(&v))
    }
}

/// `pip 23.2.1 from /x (python 3.11)` → `pip 23.2.1`.
fn first_words(v: &str) -> String {
    v.split_whitespace().take(2).collect::<Vec<_>>().join(" ")
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
