//! Fitting the ecosystem: `--version` names the commit, shell completions work in a real bash, and the
//! man page is generated from the same clap definition (every subcommand on it).

use crate::support::{BIN, text};
use std::process::Command;

#[test]
fn version_names_the_commit_it_was_built_from() {
    let out = Command::new(BIN).arg("--version").output().expect("run");
    assert!(out.status.success());
    let v = text(&out.stdout);
    assert!(
        v.starts_with(&format!(
            "workerhost {} (commit ",
            env!("CARGO_PKG_VERSION")
        )),
        "{v}"
    );
    // Built from this checkout: the stamp is the commit git reports (or what $WORKERHOST_COMMIT said).
    let head = Command::new("git")
        .args(["rev-parse", "--short=12", "HEAD"])
        .current_dir(env!("CARGO_MANIFEST_DIR"))
        .output()
        .expect("git");
    if head.status.success() && std::env::var_os("WORKERHOST_COMMIT").is_none() {
        let head = text(&head.stdout);
        assert!(v.contains(head.trim()), "{v} vs HEAD {head}");
    }
}

/// What bash completes for `workerhost <word>` with the generated script sourced.
fn bash_complete(words: &str) -> Vec<String> {
    let script = Command::new(BIN)
        .args(["completions", "bash"])
        .output()
        .expect("run");
    assert!(script.status.success(), "{}", text(&script.stderr));
    let dir = tempfile::tempdir().expect("tempdir");
    let file = dir.path().join("workerhost.bash");
    std::fs::write(&file, &script.stdout).expect("write");
    let probe = format!(
        r#"source {file}
COMP_LINE="workerhost {words}"; COMP_POINT=${{#COMP_LINE}}
read -r -a COMP_WORDS <<< "$COMP_LINE"; COMP_CWORD=$(( ${{#COMP_WORDS[@]}} - 1 ))
_workerhost workerhost "${{COMP_WORDS[-1]}}" "${{COMP_WORDS[-2]}}"
printf '%s\n' "${{COMPREPLY[@]}}""#,
        file = file.display()
    );
    let out = Command::new("bash")
        .args(["--norc", "--noprofile", "-c", &probe])
        .output()
        .expect("bash");
    assert!(out.status.success(), "{}", text(&out.stderr));
    text(&out.stdout).lines().map(str::to_string).collect()
}

#[test]
fn bash_completes_subcommands_and_their_flags() {
    let su = bash_complete("su");
    assert!(su.contains(&"submit".to_string()), "{su:?}");
    assert!(!su.contains(&"workers".to_string()), "{su:?}");
    let st = bash_complete("st");
    assert!(st.contains(&"status".to_string()), "{st:?}");
    let flags = bash_complete("submit --ty");
    assert!(flags.contains(&"--type".to_string()), "{flags:?}");
}

#[test]
fn zsh_and_fish_scripts_are_generated() {
    for (shell, marker) in [
        ("zsh", "#compdef workerhost"),
        ("fish", "complete -c workerhost"),
    ] {
        let out = Command::new(BIN)
            .args(["completions", shell])
            .output()
            .expect("run");
        assert!(out.status.success());
        assert!(text(&out.stdout).contains(marker), "{shell}");
    }
    let bad = Command::new(BIN)
        .args(["completions", "tcsh"])
        .output()
        .expect("run");
    assert_eq!(bad.status.code(), Some(2));
}

#[test]
fn man_page_lists_every_subcommand_and_each_has_its_own_page() {
    let out = Command::new(BIN).arg("man").output().expect("run");
    assert!(out.status.success());
    let page = text(&out.stdout);
    assert!(page.contains(".TH workerhost 1"), "{page}");
    for verb in [
        "run",
        "check",
        "submit",
        "exec",
        "workers",
        "status",
        "completions",
    ] {
        assert!(
            page.contains(&format!("workerhost\\-{verb}")),
            "{verb} missing"
        );
    }
    let sub = Command::new(BIN)
        .args(["man", "submit"])
        .output()
        .expect("run");
    assert!(sub.status.success());
    let sub = text(&sub.stdout);
    assert!(
        sub.contains(".TH workerhost-submit 1") && sub.contains("\\-\\-type"),
        "{sub}"
    );
    let unknown = Command::new(BIN)
        .args(["man", "nope"])
        .output()
        .expect("run");
    assert_eq!(unknown.status.code(), Some(2));
    assert!(text(&unknown.stderr).contains("no subcommand \"nope\""));
    // When groff is here, the page must render without warnings (as `man` shows it).
    if Command::new("groff").arg("--version").output().is_ok() {
        let mut g = Command::new("groff")
            .args(["-man", "-Tutf8", "-ww", "-z"])
            .stdin(std::process::Stdio::piped())
            .stderr(std::process::Stdio::piped())
            .spawn()
            .expect("groff");
        use std::io::Write;
        g.stdin
            .take()
            .expect("stdin")
            .write_all(page.as_bytes())
            .expect("write");
        let r = g.wait_with_output().expect("groff");
        assert!(text(&r.stderr).trim().is_empty(), "{}", text(&r.stderr));
    }
}

#[test]
fn schema_prints_the_committed_json_schema_without_a_config() {
    let dir = tempfile::tempdir().expect("tempdir");
    let out = Command::new(BIN)
        .arg("schema")
        .current_dir(dir.path())
        .output()
        .expect("run");
    assert!(out.status.success(), "{}", text(&out.stderr));
    let printed: serde_json::Value = serde_json::from_slice(&out.stdout).expect("JSON");
    assert_eq!(
        printed["$schema"],
        "https://json-schema.org/draft/2020-12/schema"
    );
    let committed = std::fs::read(concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/workerhost.schema.json"
    ))
    .expect("workerhost.schema.json");
    assert_eq!(text(&out.stdout), text(&committed));
}
