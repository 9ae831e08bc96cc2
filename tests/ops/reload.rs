//! SIGHUP under load: a removed worker finishes its in-flight tasks and takes no more, an added worker
//! starts taking tasks, a changed worker applies to the next task, an invalid config is rejected and the
//! old registry kept; `/workers` shows each result and no task is lost.

use crate::support::*;
use crate::{ops_config, sh_worker, start_host, wait_final};
use nix::sys::signal::Signal;
use std::collections::HashMap;
use std::path::Path;
use std::process::Command;
use std::time::Duration;

fn names(host: &crate::Running) -> Vec<String> {
    let mut n: Vec<String> = host
        .get("/workers")
        .json()
        .as_array()
        .expect("a list")
        .iter()
        .map(|w| w["name"].as_str().unwrap_or("").to_string())
        .collect();
    n.sort();
    n
}

/// `submit --any-type` through a config that stays valid while the host's own is being edited.
fn submit(p: &Project, cfg: &Path, task_type: &str, id: &str) {
    let out = Command::new(BIN)
        .arg("--config")
        .arg(cfg)
        .args(["submit", "--type", task_type, "--id", id, "--any-type"])
        .env_remove("RUST_LOG")
        .current_dir(p.path())
        .output()
        .expect("submit");
    assert!(out.status.success(), "{}", text(&out.stderr));
}

fn runs(p: &Project) -> HashMap<String, usize> {
    let mut m = HashMap::new();
    for l in lines(&p.file("runs.log")) {
        let id = l.split_whitespace().next().unwrap_or("").to_string();
        *m.entry(id).or_insert(0) += 1;
    }
    m
}

#[test]
fn sighup_adds_and_removes_workers_while_tasks_are_in_flight_and_loses_none() {
    let p = Project::new();
    let old = sh_worker("PrismQ.Ops.Old", "A", "    env: { SLEEP_S: \"6\" }\n");
    let keep_v1 = sh_worker("PrismQ.Ops.Keep", "K", "    env: { VERSION: v1 }\n");
    let keep_v2 = sh_worker("PrismQ.Ops.Keep", "K", "    env: { VERSION: v2 }\n");
    let new = sh_worker("PrismQ.Ops.New", "N", "");
    let v2 = format!("{keep_v2}{new}");
    // A config for `submit` that stays valid throughout.
    ops_config(&p, None, "", &v2);
    let submit_cfg = p.write(
        "submit.yaml",
        &std::fs::read_to_string(p.file("workerhost_config.yaml")).expect("read"),
    );
    ops_config(&p, None, "", &format!("{old}{keep_v1}"));
    let mut host = start_host(&p, &[], &[]);
    assert_eq!(names(&host), ["PrismQ.Ops.Keep", "PrismQ.Ops.Old"]);

    let slow = ["slow-a1", "slow-a2", "slow-a3"];
    for id in slow {
        submit(&p, &submit_cfg, "A", id);
    }
    assert!(
        wait_until(Duration::from_secs(15), || slow
            .iter()
            .all(|id| runs(&p).contains_key(*id))),
        "the old worker's tasks never started: {}",
        p.host_log()
    );

    ops_config(&p, None, "", &v2);
    signal(&host.child, Signal::SIGHUP);
    assert!(
        wait_until(Duration::from_secs(10), || names(&host)
            == ["PrismQ.Ops.Keep", "PrismQ.Ops.New"]),
        "/workers after the reload: {:?}\n{}",
        names(&host),
        p.host_log()
    );
    // The removed worker's tasks are still running: counted in flight under its name.
    let metrics = host.get("/metrics").body;
    assert!(
        metrics.contains("workerhost_tasks_in_flight{worker=\"PrismQ.Ops.Old\"} 3"),
        "{metrics}"
    );
    assert_eq!(host.get("/health").json()["in_flight"], 3);

    let added = ["n1", "n2", "n3"];
    for id in added {
        submit(&p, &submit_cfg, "N", id);
    }
    submit(&p, &submit_cfg, "K", "k1");
    submit(&p, &submit_cfg, "A", "slow-a4");
    let all = [
        "slow-a1", "slow-a2", "slow-a3", "n1", "n2", "n3", "k1", "slow-a4",
    ];
    let st = wait_final(&p, &all, Duration::from_secs(40));
    let by_id: HashMap<&str, &serde_json::Value> = all.iter().copied().zip(st.iter()).collect();
    for id in slow {
        let s = by_id[id];
        assert_eq!(
            s["status"], "succeeded",
            "{id} was in flight across the reload: {s}"
        );
        assert_eq!(s["result"]["worker"], "PrismQ.Ops.Old", "{s}");
    }
    for id in added {
        assert_eq!(by_id[id]["status"], "succeeded", "{}", by_id[id]);
        assert_eq!(by_id[id]["result"]["worker"], "PrismQ.Ops.New");
    }
    assert_eq!(
        by_id["k1"]["result"]["result"]["version"], "v2",
        "the changed worker applies to the next task"
    );
    let a4 = by_id["slow-a4"];
    assert_eq!(
        a4["status"], "dead",
        "the removed worker takes no more: {a4}"
    );
    assert!(
        a4["result"]["error"]["message"]
            .as_str()
            .is_some_and(|m| m.contains("no worker handles type A")),
        "{a4}"
    );
    let r = runs(&p);
    assert!(
        !r.contains_key("slow-a4"),
        "the removed worker ran a task after the reload"
    );
    for id in all.iter().filter(|id| **id != "slow-a4") {
        assert_eq!(r.get(*id), Some(&1), "{id} ran exactly once: {r:?}");
    }
    let w = host.get("/workers/PrismQ.Ops.New/health").json();
    assert_eq!(w["succeeded"], 3);

    // An invalid config is rejected with its errors logged; the current workers stay and still work.
    p.write(
        "workerhost_config.yaml",
        "version: \"1.0\"\nworkers:\n  - name: Broken\n    comand: [\"/bin/true\"]\n    task_types: [X]\n",
    );
    signal(&host.child, Signal::SIGHUP);
    assert!(
        wait_until(Duration::from_secs(10), || p
            .host_log()
            .contains("reload rejected")),
        "{}",
        p.host_log()
    );
    assert!(p.host_log().contains("comand"), "the log names the problem");
    assert_eq!(names(&host), ["PrismQ.Ops.Keep", "PrismQ.Ops.New"]);
    submit(&p, &submit_cfg, "K", "k2");
    // `status` through the valid config too (the host's own file is broken now).
    let mut k2 = serde_json::Value::Null;
    let done = wait_until(Duration::from_secs(20), || {
        let out = Command::new(BIN)
            .arg("--config")
            .arg(&submit_cfg)
            .args(["status", "k2"])
            .output()
            .expect("status");
        k2 = serde_json::from_slice(&out.stdout).unwrap_or_default();
        k2["status"] == "succeeded"
    });
    assert!(done, "k2 after the rejected reload: {k2}\n{}", p.host_log());
    assert_eq!(k2["result"]["result"]["version"], "v2");
    assert_eq!(
        host.stop(Duration::from_secs(20)),
        Some(0),
        "{}",
        p.host_log()
    );
}
