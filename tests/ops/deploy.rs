//! The deployment files in examples/deploy: Docker does not run on these machines, so this checks what
//! can be checked: the YAML parses and says what it should, the Dockerfile is multi-stage and ends as a
//! non-root user, the systemd units pass `systemd-analyze verify`, every workerhost flag the files use
//! exists, and the config they share loads for each task manager type.

use crate::support::*;
use serde_yaml::Value;
use std::path::{Path, PathBuf};
use std::process::Command;

fn deploy(name: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("examples/deploy")
        .join(name)
}

fn read(name: &str) -> String {
    std::fs::read_to_string(deploy(name)).unwrap_or_else(|e| panic!("{name}: {e}"))
}

fn yaml_docs(name: &str) -> Vec<Value> {
    let text = read(name);
    serde_yaml::Deserializer::from_str(&text)
        .map(|d| {
            let mut v: Value = serde::Deserialize::deserialize(d)
                .unwrap_or_else(|e| panic!("{name} does not parse: {e}"));
            v.apply_merge()
                .unwrap_or_else(|e| panic!("{name}: merge keys: {e}"));
            v
        })
        .collect()
}

fn strings(v: &Value) -> Vec<String> {
    v.as_sequence()
        .map(|s| {
            s.iter()
                .filter_map(|x| x.as_str().map(str::to_string))
                .collect()
        })
        .unwrap_or_default()
}

/// Every `--flag` of a workerhost command line must be one `workerhost <subcommand> --help` lists.
fn assert_flags_exist(origin: &str, argv: &[String]) {
    let sub = argv.first().map(String::as_str).unwrap_or("run");
    assert!(
        ["run", "check", "submit", "exec", "workers", "status"].contains(&sub),
        "{origin}: unknown subcommand {sub:?}"
    );
    let help = Command::new(BIN)
        .args([sub, "--help"])
        .output()
        .expect("help");
    let help = text(&help.stdout);
    for flag in argv.iter().filter(|a| a.starts_with("--")) {
        let flag = flag.split('=').next().unwrap_or(flag);
        assert!(
            help.contains(&format!("{flag} ")),
            "{origin}: workerhost {sub} has no {flag}"
        );
    }
}

#[test]
fn deploy_files_parse_and_use_only_flags_that_exist() {
    // docker-compose.yml: Redis, RabbitMQ, two hosts from the image.
    let compose = &yaml_docs("docker-compose.yml")[0];
    let services = compose["services"].as_mapping().expect("services");
    let named = |n: &str| services.get(n).unwrap_or_else(|| panic!("no service {n}"));
    assert!(
        named("redis")["image"]
            .as_str()
            .is_some_and(|i| i.starts_with("redis"))
    );
    assert!(
        named("rabbitmq")["image"]
            .as_str()
            .is_some_and(|i| i.starts_with("rabbitmq"))
    );
    let hosts: Vec<(&Value, &Value)> = services
        .iter()
        .filter(|(_, s)| {
            s["image"]
                .as_str()
                .is_some_and(|i| i.starts_with("workerhost"))
        })
        .collect();
    assert_eq!(hosts.len(), 2, "two workerhost services");
    for (name, s) in &hosts {
        let origin = format!("docker-compose.yml {}", name.as_str().unwrap_or(""));
        assert_eq!(
            s["build"]["dockerfile"], "examples/deploy/Dockerfile",
            "{origin}"
        );
        assert!(
            s["depends_on"].is_mapping(),
            "{origin} waits for its broker"
        );
        assert_flags_exist(&origin, &strings(&s["command"]));
    }

    // kubernetes.yaml: the API key from a Secret, probes on /health.
    let docs = yaml_docs("kubernetes.yaml");
    let kind = |k: &str| {
        docs.iter()
            .find(|d| d["kind"] == k)
            .unwrap_or_else(|| panic!("no {k}"))
    };
    let secret = kind("Secret");
    let deployment = kind("Deployment");
    let pod = &deployment["spec"]["template"]["spec"];
    assert_eq!(pod["securityContext"]["runAsNonRoot"], true);
    let c = &pod["containers"][0];
    let env = c["env"].as_sequence().expect("env");
    let key = env
        .iter()
        .find(|e| e["name"] == "TASKMANAGER_API_KEY")
        .expect("TASKMANAGER_API_KEY");
    let secret_ref = &key["valueFrom"]["secretKeyRef"];
    assert_eq!(secret_ref["name"], secret["metadata"]["name"]);
    assert!(
        secret["stringData"]
            .get(secret_ref["key"].as_str().unwrap_or(""))
            .is_some()
    );
    for probe in ["livenessProbe", "readinessProbe"] {
        assert_eq!(c[probe]["httpGet"]["path"], "/health", "{probe}");
    }
    assert_flags_exist("kubernetes.yaml", &strings(&c["args"]));

    // Dockerfile: multi-stage, non-root at the end, the command's flags exist.
    let df = read("Dockerfile");
    let stages: Vec<&str> = df.split("\nFROM ").skip(1).collect();
    assert!(stages.len() >= 2, "multi-stage");
    let last = stages.last().copied().unwrap_or("");
    assert!(
        last.contains("COPY --from=build"),
        "the runtime stage copies the build"
    );
    let user = last
        .lines()
        .find_map(|l| l.strip_prefix("USER "))
        .expect("a USER in the runtime stage");
    assert!(
        !["root", "0", "0:0"].contains(&user.trim()),
        "runs as {user}"
    );
    let json_line = |word: &str| -> Vec<String> {
        let l = last
            .lines()
            .find_map(|l| l.strip_prefix(word))
            .unwrap_or_else(|| panic!("no {word}"));
        serde_json::from_str(l.trim()).unwrap_or_else(|e| panic!("{word} is not a JSON list: {e}"))
    };
    assert!(
        json_line("ENTRYPOINT ")
            .iter()
            .any(|a| a.ends_with("/workerhost"))
    );
    assert_flags_exist("Dockerfile CMD", &json_line("CMD "));

    // systemd units: restart on failure, reload by SIGHUP.
    for unit in ["workerhost.service", "workerhost@.service"] {
        let u = read(unit);
        assert!(u.lines().any(|l| l == "Restart=on-failure"), "{unit}");
        // The host speaks sd_notify (READY, RELOADING, STOPPING, WATCHDOG): see tests/ops/systemd.rs.
        assert!(u.lines().any(|l| l == "Type=notify"), "{unit}");
        assert!(u.lines().any(|l| l.starts_with("WatchdogSec=")), "{unit}");
        assert!(
            u.lines().any(|l| l == "ExecReload=/bin/kill -HUP $MAINPID"),
            "{unit}"
        );
        let exec = u
            .lines()
            .find_map(|l| l.strip_prefix("ExecStart="))
            .unwrap_or_else(|| panic!("{unit}: no ExecStart"));
        let argv: Vec<String> = exec
            .split_whitespace()
            .skip(1)
            .map(str::to_string)
            .collect();
        assert_flags_exist(unit, &argv);
    }
    assert!(read("workerhost@.service").contains("/etc/workerhost/%i.yaml"));
}

#[test]
fn the_deploy_config_loads_for_every_task_manager_type() {
    let cfg = deploy("workerhost_config.yaml");
    for (tm, url) in [
        ("sqlite", ""),
        ("redis", "redis://redis:6379/0"),
        ("amqp", "amqp://guest:guest@rabbitmq:5672/%2f"),
        ("http", "https://tasks.example/api"),
        ("bogus", ""),
    ] {
        let out = Command::new(BIN)
            .arg("--config")
            .arg(&cfg)
            .arg("workers")
            .env("WORKERHOST_TM_TYPE", tm)
            .env("WORKERHOST_TM_URL", url)
            .env("TASKMANAGER_API_KEY", "k")
            .output()
            .expect("workers");
        if tm == "bogus" {
            assert_eq!(
                out.status.code(),
                Some(2),
                "the type really comes from the environment"
            );
            continue;
        }
        assert!(out.status.success(), "{tm}: {}", text(&out.stderr));
        assert!(text(&out.stdout).contains("example.python.echo"));
    }
}

#[test]
fn systemd_units_pass_systemd_analyze_verify() {
    let ci = std::env::var("CI").is_ok_and(|v| v == "true");
    let have = Command::new("systemd-analyze")
        .arg("--version")
        .output()
        .is_ok_and(|o| o.status.success());
    if !have {
        assert!(
            !ci,
            "systemd-analyze is missing (apt-get install systemd); CI=true does not skip"
        );
        eprintln!("notice: skipping: systemd-analyze is not installed (apt-get install systemd)");
        return;
    }
    let dir = tempfile::tempdir().expect("tempdir");
    // verify wants ExecStart's binary to exist: point it at the one just built. A template is
    // verified as an instance.
    for (unit, as_name) in [
        ("workerhost.service", "workerhost.service"),
        ("workerhost@.service", "workerhost@example.service"),
    ] {
        let text_ = read(unit).replace("/usr/local/bin/workerhost", BIN);
        let path = dir.path().join(as_name);
        std::fs::write(&path, text_).expect("write unit");
        let out = Command::new("systemd-analyze")
            .arg("verify")
            .arg(&path)
            .output()
            .expect("systemd-analyze");
        let err = text(&out.stderr);
        // Unknown keys are only warned about: any remark about the unit file fails the test.
        let about_unit: Vec<&str> = err.lines().filter(|l| l.contains(as_name)).collect();
        assert!(
            out.status.success() && about_unit.is_empty(),
            "{unit}: {err}"
        );
    }
}
