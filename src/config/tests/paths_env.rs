//! `${...}` expansion, path resolution and line location.

use super::super::expand::expand_str;
use super::super::locate::locate;
use super::super::*;
use super::{env_of, errors, ok_with, spots};
use std::path::Path;

#[test]
fn env_expansion() {
    let env = env_of(&[("SET", "value"), ("EMPTY", "")]);
    let base = Path::new("/nonexistent");
    let x = |s: &str| expand_str(s, &env, base);
    assert_eq!(x("a-${SET}-b"), Ok("a-value-b".into()));
    assert_eq!(x("${EMPTY}"), Ok(String::new()));
    assert_eq!(x("${UNSET:-fallback}"), Ok("fallback".into()));
    assert_eq!(x("${EMPTY:-fallback}"), Ok("fallback".into()));
    assert_eq!(x("${SET:-fallback}"), Ok("value".into()));
    assert_eq!(x("${UNSET:-}"), Ok(String::new()));
    assert_eq!(x("${UNSET:-${SET}}"), Ok("value".into()));
    assert_eq!(
        x("${SET:-${UNSET}}"),
        Ok("value".into()),
        "an unused default is not evaluated"
    );
    assert_eq!(x("$${SET} $$ costs $5"), Ok("${SET} $ costs $5".into()));
    assert_eq!(
        x("${UNSET}"),
        Err(vec![
            "environment variable UNSET is not set (no default given)".into()
        ])
    );
    assert!(x("${SET").is_err());
    assert!(x("${not valid}").is_err());

    let dir = tempfile::tempdir().expect("temp dir");
    let secret = dir.path().join("key.txt");
    std::fs::write(&secret, "s3cret\n\n").expect("write secret");
    let x = |s: &str| expand_str(s, &env, dir.path());
    assert_eq!(
        x(&format!("${{file:{}}}", secret.display())),
        Ok("s3cret\n".into())
    );
    assert_eq!(
        x("${file:key.txt}"),
        Ok("s3cret\n".into()),
        "relative to the config's folder"
    );
    let missing = x("${file:/nonexistent/secret}");
    assert!(
        matches!(&missing, Err(e) if e[0].contains("/nonexistent/secret")),
        "{missing:?}"
    );
}

#[test]
fn expansion_is_for_values_only_and_numbers_may_come_from_it() {
    let text = "host:\n  concurrency: ${N:-4}   # ${NOT_EXPANDED}\n  id: '$${literal}'\n";
    let c = ok_with(text, &[]);
    assert_eq!(c.host.concurrency, Some(4));
    assert_eq!(c.host.id.as_deref(), Some("${literal}"));
    let e = errors("host:\n  concurrency: ${N}\n", &[]);
    assert_eq!(e.problems.len(), 1, "no second problem about the type: {e}");
}

#[test]
fn relative_paths_resolve_against_the_config_folder() {
    let text = "task_manager: { path: data/q.db }\nworkers:\n  - name: a\n    project_path: ../proj\n    command: [bin/run, x]\n    task_types: [A]\n  - name: b\n    command: [python3, -m, b]\n    task_types: [B]\n";
    let c = match load_str(text, Path::new("conf/wh.yaml"), &env_of(&[])) {
        Ok(c) => c,
        Err(e) => panic!("{e}"),
    };
    let cwd = std::env::current_dir().expect("cwd");
    assert_eq!(c.path, cwd.join("conf/wh.yaml"));
    let TaskManagerSettings::Sqlite(tm) = &c.task_manager else {
        panic!("sqlite")
    };
    let path = &tm.path;
    assert_eq!(path, &cwd.join("conf/data/q.db"));
    assert_eq!(c.workers[0].project_path, Some(cwd.join("conf/../proj")));
    let argv0 = cwd.join("conf/bin/run").to_string_lossy().into_owned();
    assert_eq!(
        c.workers[0].kind,
        WorkerKind::Command {
            argv: vec![argv0, "x".into()]
        }
    );
    assert_eq!(
        c.workers[1].kind,
        WorkerKind::Command {
            argv: vec!["python3".into(), "-m".into(), "b".into()]
        },
        "a bare command name is kept for PATH lookup at spawn time"
    );
}

#[test]
fn bare_venv_python_is_found_on_path() {
    use std::os::unix::fs::PermissionsExt;
    let dir = tempfile::tempdir().expect("temp dir");
    let py = dir.path().join("mypython");
    std::fs::write(&py, "#!/bin/sh\n").expect("write");
    std::fs::set_permissions(&py, std::fs::Permissions::from_mode(0o755)).expect("chmod");
    let text =
        "workers:\n  - name: a\n    venv_python: mypython\n    module: app\n    task_types: [A]\n";
    let path = format!("/nonexistent:{}", dir.path().display());
    let c = ok_with(text, &[("PATH", &path)]);
    assert_eq!(
        c.workers[0].kind,
        WorkerKind::Python {
            interpreter: py,
            module: "app".into(),
            function: None
        }
    );
    let e = errors(text, &[("PATH", "/nonexistent")]);
    assert_eq!(spots(&e), [(Some(3), "workers[0].venv_python")]);
}

#[test]
fn locate_block_and_flow() {
    let lines = locate(
        "host:\n  http: { listen: \"127.0.0.1:8080\" }\nworkers:\n  - name: a\n    task_types:\n      - A\n      - B\n  - {name: b,\n     timeout: 3}\n",
    );
    let at = |p: &str| lines.get(p).copied();
    assert_eq!(at("host"), Some(1));
    assert_eq!(at("host.http.listen"), Some(2));
    assert_eq!(at("workers[0]"), Some(4));
    assert_eq!(at("workers[0].task_types[1]"), Some(7));
    assert_eq!(at("workers[1].name"), Some(8));
    assert_eq!(at("workers[1].timeout"), Some(9));
    assert_eq!(
        locate("a: [").get("a"),
        Some(&1),
        "a broken file gives what came before"
    );
}

#[test]
fn python_and_requirements_resolve_to_a_managed_environment() {
    let c = ok_with(
        "workers:\n  - name: a\n    project_path: ./proj\n    venv_python: ./proj/.venv/bin/python\n    python: ./py/bin/python3.11\n    requirements: reqs/requirements.txt\n    module: app\n    task_types: [A]\n  - name: b\n    venv_python: ./b/venv/bin/python\n    requirements: pyproject.toml\n    module: app\n    task_types: [B]\n  - name: c\n    venv_python: ./c/venv/bin/python\n    module: app\n    task_types: [C]\n",
        &[],
    );
    let base = Path::new(super::CFG).parent().expect("the config's folder");
    let a = c.workers[0].environment.as_ref().expect("managed");
    assert_eq!(a.venv, base.join("proj/.venv"));
    assert_eq!(a.requirements, base.join("proj/reqs/requirements.txt"));
    assert_eq!(
        a.python,
        base.join("py/bin/python3.11").display().to_string()
    );
    let b = c.workers[1].environment.as_ref().expect("managed");
    assert_eq!(
        b.python, "python3",
        "the default, looked up when setup runs"
    );
    assert_eq!(
        b.requirements,
        base.join("pyproject.toml"),
        "without project_path: the config's folder"
    );
    assert_eq!(c.workers[2].environment, None);
}
