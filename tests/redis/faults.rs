//! Faults: a host killed with tasks in flight, a task longer than its lease, a poison task that kills its
//! host, the Redis server killed and restarted, and passwords kept out of the logs.

use crate::support::*;
use crate::{Host, Stream, counts, shell_worker};
use std::time::{Duration, Instant};

#[test]
fn kill_9_of_a_host_with_tasks_in_flight_the_other_host_finishes_them_within_a_lease() {
    let Some(s) = Stream::shared("kill9") else {
        return;
    };
    let p = Project::new();
    let w = shell_worker(&p, "1");
    p.config_with(&s.tm(""), "  concurrency: 4", &w);
    let ids: Vec<String> = (0..4).map(|i| format!("k{i}")).collect();
    for id in &ids {
        s.task(id, "T");
    }
    let mut a = Host::spawn(&p, &[]);
    assert!(
        wait_until(Duration::from_secs(20), || counts(&p).len() == 4),
        "{}",
        a.log()
    );
    a.kill9();
    let killed = Instant::now();
    let mut b = Host::spawn(&p, &[]);
    assert!(
        wait_until(Duration::from_secs(30), || s
            .all_succeeded(ids.iter().cloned())),
        "{}",
        b.log()
    );
    let took = killed.elapsed();
    // lease_seconds is 2 and each task runs 1 s: back within about one lease, plus the run.
    assert!(
        took < Duration::from_secs(6),
        "took {took:?} after the kill"
    );
    let (code, log) = b.stop();
    assert_eq!(code, Some(0), "{log}");
    let runs = lines(&p.file("runs.log"));
    for id in &ids {
        let second = runs
            .iter()
            .filter(|l| l.starts_with(&format!("{id} ")))
            .nth(1);
        let attempt = second.and_then(|l| l.split_whitespace().nth(1));
        assert_eq!(
            attempt,
            Some("2"),
            "{id}: the takeover counts as the second delivery: {runs:?}"
        );
    }
    assert!(
        log.contains("took over a task whose lease expired"),
        "{log}"
    );
    assert_eq!(s.pending(), 0);
}

#[test]
fn a_task_running_3x_longer_than_its_lease_is_not_run_twice() {
    let Some(s) = Stream::shared("long") else {
        return;
    };
    let p = Project::new();
    // lease_seconds is 2 in `Stream::tm`: the task runs 3x that.
    let w = shell_worker(&p, "6");
    p.config_with(&s.tm(""), "", &w);
    s.task("long", "T");
    let mut first = Host::spawn(&p, &[]);
    assert!(wait_until(Duration::from_secs(10), || counts(&p).contains_key("long")));
    // A second host claims from the same group all along.
    let mut second = Host::spawn(&p, &[]);
    assert!(wait_until(Duration::from_secs(20), || s
        .result("long")
        .is_some()));
    let (c1, log1) = first.stop();
    let (c2, log2) = second.stop();
    assert_eq!((c1, c2), (Some(0), Some(0)), "{log1}\n{log2}");
    assert_eq!(
        counts(&p)["long"],
        1,
        "the lease was renewed; nobody took it over"
    );
    assert_eq!(s.result("long").expect("result")["status"], "succeeded");
    assert!(
        !log1.contains("lease lost") && !log2.contains("took over"),
        "{log1}\n{log2}"
    );
}

#[test]
fn a_poison_task_that_kills_its_host_ends_in_dead_after_max_deliveries() {
    let Some(s) = Stream::shared("poison") else {
        return;
    };
    let p = Project::new();
    p.write(
        "poison.sh",
        "read -r doc\necho \"$WORKERHOST_TASK_ID $WORKERHOST_ATTEMPT\" >> runs.log\nkill -9 $PPID\nsleep 5\n",
    );
    let w = "  - name: poison\n    command: [\"/bin/sh\", \"./poison.sh\"]\n    project_path: .\n    task_types: [T]\n";
    let tm = s
        .tm("  max_deliveries: 2\n")
        .replace("lease_seconds: 2", "lease_seconds: 1");
    p.config_with(&tm, "", w);
    s.task("poison", "T");
    let mut kills = 0;
    for _ in 0..6 {
        let mut h = Host::spawn(&p, &[]);
        let ended = wait_until(Duration::from_secs(15), || {
            h.exited() || !s.dead().is_empty()
        });
        assert!(ended, "{}", h.log());
        if !s.dead().is_empty() {
            let (code, log) = h.stop();
            assert_eq!(code, Some(0), "{log}");
            break;
        }
        kills += 1;
    }
    assert_eq!(
        kills, 2,
        "the task ran max_deliveries (2) times, killing its host each time"
    );
    assert_eq!(counts(&p)["poison"], 2);
    let dead = s.dead();
    assert_eq!(dead.len(), 1);
    assert!(
        dead[0]["error"].contains("delivery limit reached"),
        "{dead:?}"
    );
    assert_eq!(dead[0]["attempts"], "2");
    assert!(dead[0]["task"].contains("\"poison\""));
    assert_eq!(s.result("poison").expect("result")["status"], "dead");
    assert_eq!(s.len(""), 0);
    assert_eq!(s.pending(), 0);
}

#[test]
fn a_private_redis_killed_and_restarted_under_a_running_host_loses_nothing() {
    // Its own server (never the shared one), persisting every write so that a restart keeps the stream.
    let mut r = PrivateRedis::start(&["--appendonly", "yes", "--appendfsync", "always"]);
    let s = Stream::on(&format!("redis://{}/0", r.addr()), "restart");
    let p = Project::new();
    let w = shell_worker(&p, "0.2");
    p.config_with(&s.tm(""), "  concurrency: 4", &w);
    let ids: Vec<String> = (0..40).map(|i| format!("r{i}")).collect();
    for id in &ids {
        s.task(id, "T");
    }
    let mut host = Host::spawn(&p, &[]);
    assert!(
        wait_until(Duration::from_secs(20), || counts(&p).len() >= 8),
        "{}",
        host.log()
    );
    r.kill();
    std::thread::sleep(Duration::from_secs(3));
    let down = p.run(&["check"]);
    assert_eq!(
        down.status.code(),
        Some(1),
        "check reports the task manager down"
    );
    assert!(
        text(&down.stdout).contains("FAIL  task manager redis"),
        "{}",
        text(&down.stdout)
    );
    assert!(!host.exited(), "the host keeps running while Redis is down");
    r.restart();
    assert!(
        wait_until(Duration::from_secs(60), || s
            .all_succeeded(ids.iter().cloned())),
        "not every task finished after the restart: {:?}\n{}",
        ids.iter()
            .filter(|id| s.result(id).is_none())
            .collect::<Vec<_>>(),
        host.log()
    );
    let (code, log) = host.stop();
    assert_eq!(code, Some(0), "{log}");
    assert!(log.contains("task manager reachable again"), "{log}");
    assert_eq!(counts(&p).len(), 40);
    assert_eq!(s.len(""), 0);
    assert_eq!(s.pending(), 0);
}

#[test]
fn a_password_in_the_url_never_reaches_logs_or_messages() {
    const PW: &str = "s3cr3t-Pa55";
    let mut r = PrivateRedis::start(&["--requirepass", PW]);
    let s = Stream::on(&format!("redis://default:{PW}@{}/0", r.addr()), "password");
    let p = Project::new();
    let w = shell_worker(&p, "0");
    p.config_with(&s.tm(""), "", &w);
    p.submit("T", "a", "{}");
    let out = p.run(&["--burst", "--log-level", "debug"]);
    assert_eq!(out.status.code(), Some(0), "{}", text(&out.stderr));
    assert_eq!(
        s.result("a").expect("ran with the password")["status"],
        "succeeded"
    );
    assert!(!text(&out.stderr).contains(PW));
    // A wrong password, then the server gone: every message shows the URL without the password.
    let wrong = s.url.replace(PW, "wr0ng-Pa55");
    let cfg = std::fs::read_to_string(p.file("workerhost_config.yaml")).expect("config");
    p.write("workerhost_config.yaml", &cfg.replace(&s.url, &wrong));
    let out = p.run(&["check"]);
    let all = format!("{}{}", text(&out.stdout), text(&out.stderr));
    assert_eq!(out.status.code(), Some(1), "{all}");
    assert!(
        !all.contains("wr0ng-Pa55") && all.contains("default:***@"),
        "{all}"
    );
    p.write("workerhost_config.yaml", &cfg);
    r.kill();
    let mut host = Host::spawn(&p, &["--log-level", "debug"]);
    std::thread::sleep(Duration::from_secs(2));
    let out = p.run(&["submit", "--type", "T", "--id", "b"]);
    let (_, log) = host.stop();
    let all = format!("{log}{}{}", text(&out.stdout), text(&out.stderr));
    assert!(!all.contains(PW), "{all}");
    assert!(all.contains("default:***@"), "{all}");
}

#[test]
fn a_host_whose_entry_was_taken_over_neither_takes_it_back_nor_records_its_outcome() {
    let Some(s) = Stream::shared("fence") else {
        return;
    };
    let p = Project::new();
    let w = shell_worker(&p, "3");
    p.config_with(
        &s.tm("").replace("lease_seconds: 2", "lease_seconds: 1"),
        "",
        &w,
    );
    let entry = s.task("f", "T");
    let mut host = Host::spawn(&p, &[]);
    assert!(wait_until(Duration::from_secs(10), || counts(&p).contains_key("f")));
    // Another host (by hand) takes the entry over while it runs, and keeps renewing it as a live host does.
    let stop = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
    let intruder = {
        let (stop, name, mut con) = (stop.clone(), s.name.clone(), s.con());
        let entry = entry.clone();
        std::thread::spawn(move || {
            while !stop.load(std::sync::atomic::Ordering::SeqCst) {
                let _: redis::Value = redis::cmd("XCLAIM")
                    .arg(&name)
                    .arg("workerhost")
                    .arg("intruder")
                    .arg(0)
                    .arg(&entry)
                    .arg("JUSTID")
                    .query(&mut con)
                    .expect("XCLAIM");
                std::thread::sleep(Duration::from_millis(200));
            }
        })
    };
    let lost = wait_until(Duration::from_secs(10), || {
        host.log()
            .contains("lease lost before the outcome was recorded")
    });
    stop.store(true, std::sync::atomic::Ordering::SeqCst);
    intruder.join().expect("intruder");
    assert!(lost, "{}", host.log());
    let (code, log) = host.stop();
    assert_eq!(code, Some(0), "{log}");
    assert!(
        log.contains("lease lost while the task runs"),
        "renewal reports the loss: {log}"
    );
    assert!(
        s.result("f").is_none(),
        "the fenced outcome was not recorded"
    );
    let owner: Vec<(String, String, u64, u64)> = redis::cmd("XPENDING")
        .arg(&s.name)
        .arg("workerhost")
        .arg("-")
        .arg("+")
        .arg(10)
        .query(&mut s.con())
        .expect("XPENDING");
    assert_eq!(owner.len(), 1);
    assert_eq!(owner[0].1, "intruder", "the entry was not taken back");
    assert_eq!(s.len(""), 1, "the entry stays for its new holder");
}

#[test]
fn a_redis_without_persistence_restarted_empty_still_gets_the_outcome_of_a_running_task() {
    let mut r = PrivateRedis::start(&[]);
    let s = Stream::on(&format!("redis://{}/0", r.addr()), "empty-restart");
    let p = Project::new();
    let w = shell_worker(&p, "3");
    p.config_with(&s.tm(""), "", &w);
    s.task("running", "T");
    let mut host = Host::spawn(&p, &[]);
    assert!(wait_until(Duration::from_secs(10), || counts(&p)
        .contains_key("running")));
    r.kill();
    r.restart();
    assert!(
        wait_until(Duration::from_secs(20), || s.result("running").is_some()),
        "{}",
        host.log()
    );
    // The host recreated the group and goes on with new tasks.
    s.task("after", "T");
    assert!(
        wait_until(Duration::from_secs(20), || s.result("after").is_some()),
        "{}",
        host.log()
    );
    let (code, log) = host.stop();
    assert_eq!(code, Some(0), "{log}");
    assert!(
        log.contains("its stream entry is gone without a trace"),
        "{log}"
    );
    assert_eq!(counts(&p).len(), 2);
}
