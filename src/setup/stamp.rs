//! The stamp a setup writes into a venv (what was installed from what), and [`dependencies`]: a venv
//! compared with its stamp without starting a process.

use crate::config::{Environment, WorkerConfig, WorkerKind};
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};
use std::path::{Path, PathBuf};

use super::STAMP_FILE;

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

pub(super) fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

pub(super) fn sha256_file(p: &Path) -> std::io::Result<String> {
    Ok(hex(&Sha256::digest(std::fs::read(p)?)))
}

/// What the stamp records of the requirements file: see [`Stamp::requirements`].
pub(super) fn requirements_key(w: &WorkerConfig, env: &Environment) -> PathBuf {
    w.project_path
        .as_deref()
        .and_then(|p| env.requirements.strip_prefix(p).ok())
        .map(Path::to_path_buf)
        .unwrap_or_else(|| env.requirements.clone())
}

/// Whether two paths name one file (`a/../b` and `b`, or through a symlink).
pub(super) fn same_file(a: &Path, b: &Path) -> bool {
    a == b
        || matches!((std::fs::canonicalize(a), std::fs::canonicalize(b)), (Ok(x), Ok(y)) if x == y)
}

/// The stamp in `venv`, if there is a readable one.
pub fn read_stamp(venv: &Path) -> Option<Stamp> {
    let text = std::fs::read(venv.join(STAMP_FILE)).ok()?;
    serde_json::from_slice(&text).ok()
}

pub(super) fn interpreter_of(w: &WorkerConfig) -> Option<&Path> {
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
