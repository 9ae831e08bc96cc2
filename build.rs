//! Stamps the binary with the commit it was built from, for `workerhost --version`.
//!
//! Order: `$WORKERHOST_COMMIT` (packagers building outside a git checkout, e.g. the wheel from an sdist),
//! else `git rev-parse --short=12 HEAD`, else `unknown`. Cargo re-runs this when HEAD or the branch it
//! points to moves, so the stamp never goes stale in a checkout.

use std::process::Command;

fn git(args: &[&str]) -> Option<String> {
    let out = Command::new("git").args(args).output().ok()?;
    if !out.status.success() {
        return None;
    }
    let s = String::from_utf8(out.stdout).ok()?.trim().to_string();
    (!s.is_empty()).then_some(s)
}

fn main() {
    println!("cargo:rerun-if-env-changed=WORKERHOST_COMMIT");
    for p in ["HEAD", "packed-refs"] {
        if let Some(path) = git(&["rev-parse", "--git-path", p]) {
            println!("cargo:rerun-if-changed={path}");
        }
    }
    if let Some(r) = git(&["symbolic-ref", "-q", "HEAD"])
        && let Some(path) = git(&["rev-parse", "--git-path", &r])
    {
        println!("cargo:rerun-if-changed={path}");
    }
    let commit = std::env::var("WORKERHOST_COMMIT")
        .ok()
        .filter(|c| !c.trim().is_empty())
        .or_else(|| git(&["rev-parse", "--short=12", "HEAD"]))
        .unwrap_or_else(|| "unknown".into());
    println!("cargo:rustc-env=WORKERHOST_COMMIT={commit}");
}
