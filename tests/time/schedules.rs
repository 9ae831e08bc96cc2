//! Schedules: `workerhost schedules`, config errors, and two hosts sharing one task manager enqueueing
//! each tick of a 2-second schedule exactly once.

use crate::support::*;
use crate::{Stream, host_logged, recording_worker, stop};
use std::collections::HashMap;
use std::time::Duration;

const EVERY2: &str = "schedules:\n  - name: every2\n    cron: \"*/2 * * * * *\"\n    type: T\n    params: { from: schedule }\n";

#[test]
fn schedules_lists_the_next_three_ticks_of_each() {
    let p = Project::new();
    let w = recording_worker(&p);
    p.config("", &format!("{w}{EVERY2}  - name: nightly\n    cron: \"0 3 * * *\"\n    timezone: Europe/Prague\n    type: T\n"));
    let out = p.run(&["schedules"]);
    assert_eq!(out.status.code(), Some(0), "{}", text(&out.stderr));
    let shown = text(&out.stdout);
    let ids: Vec<&str> = shown
        .lines()
        .filter_map(|l| l.split(" id ").nth(1))
        .collect();
    assert_eq!(ids.len(), 6, "{shown}");
    assert!(
        ids[..3]
            .iter()
            .all(|i| i.starts_with("every2@") && i.ends_with('Z')),
        "{shown}"
    );
    // Every other second, even seconds only.
    for id in &ids[..3] {
        let secs: u32 = id[id.len() - 3..id.len() - 1].parse().expect("seconds");
        assert_eq!(secs % 2, 0, "{id}");
    }
    // 03:00 in Prague is 02:00Z (winter) or 01:00Z (summer).
    assert!(
        ids[3..].iter().all(|i| i.starts_with("nightly@")
            && (i.ends_with("T02:00:00Z") || i.ends_with("T01:00:00Z"))),
        "{shown}"
    );
    assert!(shown.contains("[Europe/Prague]"), "{shown}");
}

#[test]
fn an_invalid_cron_or_zone_is_a_config_error_with_line_and_field() {
    let p = Project::new();
    let w = recording_worker(&p);
    p.config("", &format!("{w}schedules:\n  - name: bad\n    cron: \"every day\"\n    timezone: Nowhere/Atlantis\n    type: T\n"));
    for cmd in ["check", "schedules", "run"] {
        let out = p.run(&[cmd]);
        assert_eq!(out.status.code(), Some(2), "{cmd}");
        let err = text(&out.stderr);
        assert!(
            err.contains("workerhost_config.yaml:")
                && err.contains("schedules[0].cron")
                && err.contains("schedules[0].timezone"),
            "{cmd}: {err}"
        );
    }
}

/// Runs two hosts on `p`'s config for about 7 s; each schedule tick must have run exactly once.
fn two_hosts_run_each_tick_once(p: &Project) {
    let a = host_logged(p, "a.log", &["--worker-id", "host-a"]);
    let b = host_logged(p, "b.log", &["--worker-id", "host-b"]);
    std::thread::sleep(Duration::from_secs(7));
    assert!(
        stop(a).success(),
        "{}",
        std::fs::read_to_string(p.file("a.log")).unwrap_or_default()
    );
    assert!(stop(b).success());
    let mut runs: HashMap<String, usize> = HashMap::new();
    for l in lines(&p.file("runs.log")) {
        let id = l.split_whitespace().next().unwrap_or("").to_string();
        *runs.entry(id).or_insert(0) += 1;
    }
    let logs = format!(
        "{}\n{}",
        std::fs::read_to_string(p.file("a.log")).unwrap_or_default(),
        std::fs::read_to_string(p.file("b.log")).unwrap_or_default()
    );
    assert!(runs.len() >= 2, "ticks run: {runs:?}\n{logs}");
    assert!(runs.values().all(|&n| n == 1), "a tick ran twice: {runs:?}");
    assert!(
        runs.keys()
            .all(|id| id.starts_with("every2@") && id.ends_with('Z')),
        "{runs:?}"
    );
    // Both hosts saw every tick: one enqueued it, the other found it there already.
    let enqueued = logs.matches("schedule tick enqueued").count();
    assert_eq!(enqueued, runs.len(), "{logs}");
    let one = runs.keys().next().cloned().unwrap_or_default();
    let s = p.status(&one).expect("status of a tick");
    assert_eq!(s["status"], "succeeded", "{s}");
}

#[test]
fn two_hosts_sharing_sqlite_run_each_tick_once() {
    let p = Project::new();
    let w = recording_worker(&p);
    p.config("", &format!("{w}{EVERY2}"));
    two_hosts_run_each_tick_once(&p);
}

#[test]
fn two_hosts_sharing_redis_run_each_tick_once() {
    let Some(s) = Stream::shared("schedules") else {
        return;
    };
    let p = Project::new();
    let w = recording_worker(&p);
    p.config_with(&s.tm(), "", &format!("{w}{EVERY2}"));
    two_hosts_run_each_tick_once(&p);
}

#[test]
fn sighup_reloads_schedules_and_metrics_count_ticks() {
    let p = Project::new();
    let w = recording_worker(&p);
    let port = free_port();
    let listen = format!("  http: {{ listen: \"127.0.0.1:{port}\" }}");
    let cfg = |schedules: &str| {
        format!(
            "version: \"1.0\"\nhost:\n{listen}\ntask_manager:\n  type: sqlite\n  path: ./queue.db\n  poll_interval_ms: 20\nworkers:\n{w}{schedules}"
        )
    };
    p.write("workerhost_config.yaml", &cfg(""));
    let host = host_logged(&p, "host.log", &[]);
    assert!(wait_until(Duration::from_secs(10), || http_get(
        port,
        "/health",
        &[]
    )
    .is_ok()));
    std::thread::sleep(Duration::from_millis(2500));
    assert!(lines(&p.file("runs.log")).is_empty(), "no schedule yet");
    p.write("workerhost_config.yaml", &cfg(EVERY2));
    signal(&host.0, nix::sys::signal::Signal::SIGHUP);
    assert!(
        wait_until(Duration::from_secs(8), || lines(&p.file("runs.log")).len()
            >= 2),
        "no tick ran after the reload: {}",
        std::fs::read_to_string(p.file("host.log")).unwrap_or_default()
    );
    let metrics = http_get(port, "/metrics", &[]).expect("metrics").body;
    let line = metrics
        .lines()
        .find(|l| {
            l.starts_with("workerhost_schedule_ticks_total{")
                && l.contains("schedule=\"every2\"")
                && l.contains("result=\"enqueued\"")
        })
        .unwrap_or_else(|| panic!("no tick counter in:\n{metrics}"));
    let n: f64 = line
        .rsplit(' ')
        .next()
        .and_then(|v| v.parse().ok())
        .expect("a value");
    assert!(n >= 2.0, "{line}");
    assert!(stop(host).success());
}
