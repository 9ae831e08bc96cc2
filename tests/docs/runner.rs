//! Running a page's `sh` blocks the way a reader would: in order, in a scratch copy of the repository
//! (so the sqlite files and configs they write never touch the working tree), with `target/release` first
//! on `PATH`. The copy links `target/` and the examples' venvs to the repository's own; a `cargo` on the
//! copy's `PATH` runs the real cargo in the repository itself, which has the same sources, so building
//! from a block reuses the suite's build instead of compiling everything again under a new path.

use crate::commands;
use crate::markdown::{self, Block};
use nix::sys::signal::{Signal, killpg};
use nix::unistd::Pid;
use std::fmt::Write as _;
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

/// How long one block may run before its process group is killed. Generous: a block that builds
/// (`./scripts/demo`, `cargo build --release`) recompiles the host whenever git's refs moved (build.rs
/// stamps the commit), which takes minutes on a loaded machine.
const BLOCK_LIMIT: Duration = Duration::from_secs(900);

/// What became of one block.
#[derive(Debug, PartialEq)]
pub enum Verdict {
    Passed,
    Skipped(String),
    Failed(String),
}

/// A scratch copy of the repository for one page.
pub struct Scratch {
    dir: tempfile::TempDir,
}

impl Scratch {
    /// Copies the files git knows of `repo` (tracked and untracked, not ignored) and links `target/`,
    /// the examples' venvs and the SDK's test venv; writes the `cargo` shim.
    pub fn new(repo: &Path) -> Scratch {
        let dir = tempfile::tempdir().expect("tempdir");
        let root = dir.path().join("workerhost");
        let listed = Command::new("git")
            .args([
                "ls-files",
                "-z",
                "--cached",
                "--others",
                "--exclude-standard",
            ])
            .current_dir(repo)
            .output()
            .expect("git ls-files");
        assert!(
            listed.status.success(),
            "git ls-files failed in {}",
            repo.display()
        );
        for name in listed.stdout.split(|b| *b == 0).filter(|n| !n.is_empty()) {
            let rel = Path::new(std::str::from_utf8(name).expect("a UTF-8 file name"));
            let from = repo.join(rel);
            if !from.is_file() {
                continue; // deleted in the working tree
            }
            let to = root.join(rel);
            std::fs::create_dir_all(to.parent().expect("a parent")).expect("mkdir");
            std::fs::copy(&from, &to).unwrap_or_else(|e| panic!("copy {}: {e}", from.display()));
        }
        let mut links = vec![
            PathBuf::from("target"),
            PathBuf::from("workers-sdk/python/.venv"),
        ];
        if let Ok(examples) = std::fs::read_dir(repo.join("examples")) {
            links.extend(
                examples
                    .flatten()
                    .map(|e| Path::new("examples").join(e.file_name()).join("venv")),
            );
        }
        for rel in links.into_iter().filter(|rel| repo.join(rel).is_dir()) {
            std::os::unix::fs::symlink(repo.join(&rel), root.join(&rel)).expect("symlink");
        }
        let shim = dir.path().join("bin/cargo");
        std::fs::create_dir_all(shim.parent().expect("a parent")).expect("mkdir");
        std::fs::write(
            &shim,
            "#!/bin/sh\n# The docs harness: cargo runs in the repository the scratch copy was made from.\n\
             cd \"$WORKERHOST_DOCS_REPO\" || exit 1\nexec \"$WORKERHOST_DOCS_CARGO\" \"$@\"\n",
        )
        .expect("write the cargo shim");
        let mut perm = std::fs::metadata(&shim).expect("shim").permissions();
        std::os::unix::fs::PermissionsExt::set_mode(&mut perm, 0o755);
        std::fs::set_permissions(&shim, perm).expect("chmod the cargo shim");
        Scratch { dir }
    }

    pub fn root(&self) -> PathBuf {
        self.dir.path().join("workerhost")
    }

    fn path_env(&self, repo: &Path) -> String {
        let old = std::env::var("PATH").unwrap_or_default();
        format!(
            "{}:{}:{old}",
            self.dir.path().join("bin").display(),
            repo.join("target/release").display()
        )
    }
}

/// Removes what cargo sets for a test process (`CARGO_MANIFEST_DIR`, `CARGO_PKG_*`, ...): a build started
/// from here must see the environment a reader's shell has, or build scripts that watch those variables
/// (ring's watches `CARGO_MANIFEST_DIR`) make every later build outside the test compile again.
pub fn reader_env(cmd: &mut Command) -> &mut Command {
    for (name, _) in std::env::vars_os() {
        let n = name.to_string_lossy();
        let set_by_cargo_test = n.starts_with("CARGO_PKG_")
            || n.starts_with("CARGO_BIN_EXE_")
            || n.starts_with("CARGO_MANIFEST_")
            || matches!(
                n.as_ref(),
                "CARGO_CRATE_NAME"
                    | "CARGO_BIN_NAME"
                    | "CARGO_PRIMARY_PACKAGE"
                    | "CARGO_TARGET_TMPDIR"
                    | "CARGO_RUSTC_CURRENT_DIR"
                    | "OUT_DIR"
            );
        if set_by_cargo_test {
            cmd.env_remove(&name);
        }
    }
    cmd
}

/// Whether a server on loopback answers on its port.
fn reachable(service: &str) -> bool {
    let port = match service {
        "redis" => 6379,
        "rabbitmq" => 5672,
        _ => 5432,
    };
    std::net::TcpStream::connect_timeout(&([127, 0, 0, 1], port).into(), Duration::from_secs(1))
        .is_ok()
}

/// Runs (or skips, or syntax-checks) one block in the scratch copy.
pub fn run_block(scratch: &Scratch, repo: &Path, block: &Block) -> Verdict {
    if let Some(reason) = &block.attrs.skip {
        let ok = Command::new("bash")
            .args(["-n", "-c", &block.body])
            .output()
            .map(|o| o.status.success())
            .unwrap_or(false);
        return if ok {
            Verdict::Skipped(reason.clone())
        } else {
            Verdict::Failed("a skipped block must still be valid shell (bash -n)".into())
        };
    }
    for s in &block.attrs.needs {
        if !reachable(s) {
            if std::env::var("CI").is_ok_and(|v| v == "true") {
                return Verdict::Failed(format!("needs {s}, which is not reachable (CI=true)"));
            }
            return Verdict::Skipped(format!("needs {s}, which is not reachable"));
        }
    }
    let cmds = match commands::split(&block.body, block.line + 1) {
        Ok(c) => c,
        Err(e) => return Verdict::Failed(e),
    };
    let dir = scratch
        .root()
        .join(block.attrs.dir.as_deref().unwrap_or("."));
    let script = commands::script(&cmds, &dir.to_string_lossy());
    execute(scratch, repo, &script)
}

fn execute(scratch: &Scratch, repo: &Path, script: &str) -> Verdict {
    let log = scratch.dir.path().join("block.log");
    let out = std::fs::File::create(&log).expect("block log");
    let err = out.try_clone().expect("block log");
    let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".into());
    let mut child = reader_env(&mut Command::new("bash"))
        .args(["-c", script])
        .current_dir(scratch.root())
        .env("PATH", scratch.path_env(repo))
        .env("WORKERHOST_DOCS_REPO", repo)
        .env("WORKERHOST_DOCS_CARGO", cargo)
        .env("CARGO_INSTALL_ROOT", scratch.dir.path().join("cargo-home"))
        // The demo reuses the suite's full release build (its quick build would replace those binaries).
        .env("WORKERHOST_DEMO_BUILD", "release")
        .env_remove("WORKERHOST_CONFIG")
        .env_remove("RUST_LOG")
        .stdin(Stdio::null())
        .stdout(out)
        .stderr(err)
        .process_group(0)
        .spawn()
        .expect("bash");
    let pgid = Pid::from_raw(child.id() as i32);
    let started = Instant::now();
    let status = loop {
        if let Some(st) = child.try_wait().expect("wait") {
            break Some(st);
        }
        if started.elapsed() > BLOCK_LIMIT {
            break None;
        }
        std::thread::sleep(Duration::from_millis(20));
    };
    // Whatever the block left running (a host it did not stop because a command failed first) goes.
    let _ = killpg(pgid, Signal::SIGKILL);
    let _ = child.wait();
    let output = std::fs::read_to_string(&log).unwrap_or_default();
    match status {
        Some(st) if st.success() => Verdict::Passed,
        Some(st) => {
            let why = output
                .lines()
                .rev()
                .find_map(|l| l.strip_prefix("__DOCS_FAIL "))
                .map(str::to_string)
                .unwrap_or_else(|| format!("the block ended with {st}"));
            Verdict::Failed(format!("{why}\n{}", tail(&output, 25)))
        }
        None => Verdict::Failed(format!(
            "still running after {} s; killed\n{}",
            BLOCK_LIMIT.as_secs(),
            tail(&output, 25)
        )),
    }
}

fn tail(text: &str, n: usize) -> String {
    let lines: Vec<&str> = text.lines().collect();
    let mut s = String::new();
    for l in &lines[lines.len().saturating_sub(n)..] {
        let _ = writeln!(s, "      | {l}");
    }
    s
}

/// Runs every `sh` block of the page at `rel` (relative to `repo`) in a fresh scratch copy, printing one
/// line per block; returns the failures as `page:line: why`.
pub fn run_page(repo: &Path, rel: &str) -> Vec<String> {
    let text =
        std::fs::read_to_string(repo.join(rel)).unwrap_or_else(|e| panic!("read {rel}: {e}"));
    let blocks = match markdown::blocks(&text) {
        Ok(b) => b,
        Err(e) => return vec![format!("{rel}: {e}")],
    };
    let mut failures = Vec::new();
    let mut scratch: Option<Scratch> = None;
    for block in &blocks {
        if matches!(
            block.lang.as_str(),
            "bash" | "shell" | "console" | "shell-session"
        ) {
            failures.push(format!(
                "{rel}:{}: a `{}` block: mark commands `sh` (run by this test) or `text`",
                block.line, block.lang
            ));
            continue;
        }
        if block.lang.is_empty() {
            failures.push(format!(
                "{rel}:{}: a block without a language: mark it `sh` (run by this test) or `text`",
                block.line
            ));
            continue;
        }
        if block.lang != "sh" {
            continue;
        }
        let scratch = scratch.get_or_insert_with(|| Scratch::new(repo));
        let started = Instant::now();
        let verdict = run_block(scratch, repo, block);
        let secs = started.elapsed().as_secs_f64();
        match verdict {
            Verdict::Passed => println!("ok    {rel}:{} ({secs:.1} s)", block.line),
            Verdict::Skipped(why) => println!("skip  {rel}:{}: {why}", block.line),
            Verdict::Failed(why) => {
                println!("FAIL  {rel}:{}: {why}", block.line);
                failures.push(format!("{rel}:{}: {why}", block.line));
            }
        }
    }
    failures
}
