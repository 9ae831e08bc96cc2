//! The docs are tested like code (docs/writing-docs.md): every relative link of `README.md`, `docs/*.md`
//! and the READMEs under examples/ and workers-sdk/ resolves to a file and, with an anchor, to a heading;
//! and every ` ```sh ` block of those pages runs, command by command, with the exit code the page says, against the
//! release build (the README's own first step) in a scratch copy of the repository. Blocks that need a
//! server skip with a notice when it is down, except under `CI=true`; blocks marked `skip="..."` are only
//! syntax-checked, and the reason is printed.
//!
//! `WORKERHOST_DOCS_PAGES=README.md,docs/protocol.md` limits the command test to those pages.

mod commands;
mod links;
mod markdown;
mod runner;

use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::OnceLock;

fn repo() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

/// `README.md`, then `docs/*.md` by name.
fn doc_pages(root: &Path) -> Vec<String> {
    let mut pages = vec!["README.md".to_string()];
    let mut docs: Vec<String> = std::fs::read_dir(root.join("docs"))
        .expect("docs/ exists")
        .flatten()
        .map(|e| e.file_name().to_string_lossy().into_owned())
        .filter(|n| n.ends_with(".md"))
        .map(|n| format!("docs/{n}"))
        .collect();
    docs.sort();
    pages.extend(docs);
    pages
}

/// The READMEs of the examples and SDKs, checked like the docs.
fn other_readmes(root: &Path) -> Vec<String> {
    let mut out = Vec::new();
    for dir in ["examples", "workers-sdk"] {
        for e in std::fs::read_dir(root.join(dir))
            .expect("the folder exists")
            .flatten()
        {
            let rel = format!("{dir}/{}/README.md", e.file_name().to_string_lossy());
            if root.join(&rel).is_file() {
                out.push(rel);
            }
        }
    }
    out.sort();
    out
}

/// What the docs' commands use, made once per run in the repository itself: the release build (`cargo
/// build --release --workspace`, the README's install step) and the examples' venvs
/// (`workerhost setup` with the repository's workerhost_config.yaml, as examples/check.sh makes them),
/// which every scratch copy links. Both are no-ops when up to date.
fn prepare() {
    static DONE: OnceLock<()> = OnceLock::new();
    DONE.get_or_init(|| {
        let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".into());
        let started = std::time::Instant::now();
        let st = runner::reader_env(&mut Command::new(cargo))
            .args(["build", "--release", "--workspace", "--locked"])
            .current_dir(repo())
            .status()
            .expect("cargo build --release");
        assert!(
            st.success(),
            "cargo build --release --workspace --locked failed"
        );
        println!("release build: {:.1} s", started.elapsed().as_secs_f64());
        let st = runner::reader_env(&mut Command::new(repo().join("target/release/workerhost")))
            .args(["setup", "--config", "workerhost_config.yaml"])
            .current_dir(repo())
            .status()
            .expect("workerhost setup");
        assert!(
            st.success(),
            "workerhost setup (the examples' venvs) failed"
        );
    });
}

#[test]
fn every_relative_link_and_anchor_in_the_docs_resolves() {
    let root = repo();
    let mut pages = doc_pages(&root);
    pages.extend(other_readmes(&root));
    let broken: Vec<String> = pages.iter().flat_map(|p| links::broken(&root, p)).collect();
    assert!(pages.len() > 5, "found only {pages:?}");
    assert!(broken.is_empty(), "broken links:\n{}", broken.join("\n"));
}

#[test]
fn every_sh_block_of_the_docs_runs_with_the_exit_codes_it_shows() {
    let root = repo();
    let pages = match std::env::var("WORKERHOST_DOCS_PAGES") {
        Ok(list) if !list.trim().is_empty() => list.split(',').map(str::to_string).collect(),
        _ => {
            let mut all = doc_pages(&root);
            all.extend(other_readmes(&root));
            all
        }
    };
    prepare();
    let failures: Vec<String> = pages
        .iter()
        .flat_map(|p| runner::run_page(&root, p))
        .collect();
    assert!(
        failures.is_empty(),
        "{} doc block(s) failed:\n{}",
        failures.len(),
        failures.join("\n")
    );
}

fn block(body: &str, info: &str) -> markdown::Block {
    let (lang, attrs) = markdown::parse_info(info).expect("info string");
    markdown::Block {
        line: 10,
        lang,
        attrs,
        body: body.to_string(),
    }
}

#[test]
fn the_harness_fails_a_command_that_exits_otherwise_than_the_page_says() {
    use runner::{Verdict, run_block};
    let root = repo();
    let scratch = runner::Scratch::new(&root);
    let v = run_block(&scratch, &root, &block("true\nfalse\ntrue\n", "sh"));
    assert!(
        matches!(&v, Verdict::Failed(w) if w.starts_with("line 12: exit 1, want 0")),
        "{v:?}"
    );
    let good = "false   # exit 1\nsh -c 'exit 3'; echo \"exit $?\"  # exit 3\ntest -f README.md\n";
    assert_eq!(
        run_block(&scratch, &root, &block(good, "sh")),
        Verdict::Passed
    );
    let wrong = "sh -c 'exit 2'; echo \"exit $?\"  # exit 3\n";
    let v = run_block(&scratch, &root, &block(wrong, "sh"));
    assert!(
        matches!(&v, Verdict::Failed(w) if w.contains("exit 2, want 3")),
        "{v:?}"
    );
    let in_dir = block("test -x worker.sh\n", "sh dir=examples/shell-worker");
    assert_eq!(run_block(&scratch, &root, &in_dir), Verdict::Passed);
    let skipped = block("docker run x\n", "sh skip=\"no docker\"");
    assert_eq!(
        run_block(&scratch, &root, &skipped),
        Verdict::Skipped("no docker".into())
    );
    let bad_syntax = block("for x in; do\n", "sh skip=\"no docker\"");
    assert!(matches!(
        run_block(&scratch, &root, &bad_syntax),
        Verdict::Failed(_)
    ));
}

#[test]
fn a_block_does_not_leave_processes_behind() {
    let root = repo();
    let scratch = runner::Scratch::new(&root);
    let pidfile = scratch.root().join("left.pid");
    let body = format!("sleep 300 & echo $! > '{}'\n", pidfile.display());
    assert_eq!(
        runner::run_block(&scratch, &root, &block(&body, "sh")),
        runner::Verdict::Passed
    );
    let pid: i32 = std::fs::read_to_string(&pidfile)
        .expect("the block wrote the pid")
        .trim()
        .parse()
        .expect("a pid");
    // Killed with the block's process group; reaped by init, so give it a moment.
    let gone = (0..100).any(|_| {
        std::thread::sleep(std::time::Duration::from_millis(20));
        std::fs::read_to_string(format!("/proc/{pid}/stat"))
            .map(|s| s.split_whitespace().nth(2) == Some("Z"))
            .unwrap_or(true)
    });
    assert!(gone, "the background sleep {pid} outlived its block");
}
