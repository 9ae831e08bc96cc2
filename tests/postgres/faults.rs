//! Faults: many hosts on one database, a host killed with `kill -9`, connections terminated by the
//! server, and a database restart (the last two on a private cluster, never the machine's server).

use crate::support::*;
use crate::{Db, Host, PrivatePg, counts, migrate, shell_worker};
use std::time::Duration;

#[test]
fn two_hosts_share_one_database_and_run_every_task_once() {
    let Some(db) = Db::shared("two") else {
        return;
    };
    let p = Project::new();
    let w = shell_worker(&p, "0");
    p.config_with(&db.tm("  poll_interval_ms: 100"), "  concurrency: 4", &w);
    migrate(&p);
    let ids = db.enqueue_many("t", 400);
    let mut a = Host::spawn(&p, &[]);
    let mut b = Host::spawn(&p, &[]);
    assert!(
        wait_until(Duration::from_secs(120), || db
            .count("status = 'succeeded'")
            == ids.len()),
        "{}\n{}",
        a.log(),
        b.log()
    );
    let (ca, la) = a.stop();
    let (cb, lb) = b.stop();
    assert_eq!((ca, cb), (Some(0), Some(0)), "{la}\n{lb}");
    let c = counts(&p);
    assert_eq!(c.len(), ids.len());
    assert!(
        c.values().all(|n| *n == 1),
        "every task once: {:?}",
        c.iter().filter(|(_, n)| **n > 1).collect::<Vec<_>>()
    );
    let hosts = db.q("SELECT DISTINCT lease_owner FROM {s}.tasks");
    assert_eq!(hosts.len(), 2, "both hosts took tasks: {hosts:?}");
}

#[test]
fn kill_9_of_a_host_loses_nothing() {
    let Some(db) = Db::shared("kill9") else {
        return;
    };
    let p = Project::new();
    let w = shell_worker(&p, "0.05");
    p.config_with(&db.tm("  poll_interval_ms: 100"), "  concurrency: 4", &w);
    migrate(&p);
    let ids = db.enqueue_many("k", 200);
    let mut a = Host::spawn(&p, &[]);
    let mut b = Host::spawn(&p, &[]);
    assert!(wait_until(Duration::from_secs(60), || db
        .count("status = 'succeeded'")
        >= 40));
    a.kill9();
    assert!(
        wait_until(Duration::from_secs(120), || db
            .count("status = 'succeeded'")
            == ids.len()),
        "{}",
        b.log()
    );
    let (code, log) = b.stop();
    assert_eq!(code, Some(0), "{log}");
    let c = counts(&p);
    assert!(ids.iter().all(|id| c.contains_key(id)));
    // Only what the killed host held (at most its concurrency) may have run twice.
    let twice = c.values().filter(|n| **n > 1).count();
    assert!(twice <= 4, "{twice} tasks ran twice");
    assert_eq!(db.count("status <> 'succeeded'"), 0);
}

/// Every connection of workerhost to the private cluster, terminated.
fn terminate_all(db: &Db) -> usize {
    db.q("SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE application_name = 'workerhost'")
        .len()
}

#[test]
fn terminated_connections_are_survived_and_nothing_is_lost() {
    let Some(pg) = PrivatePg::start() else {
        return;
    };
    let db = Db::on(pg.port, "term");
    let p = Project::new();
    let w = shell_worker(&p, "0.05");
    p.config_with(
        &db.tm("  poll_interval_ms: 200\n  lease_seconds: 10"),
        "  concurrency: 4",
        &w,
    );
    migrate(&p);
    let ids = db.enqueue_many("c", 200);
    let mut host = Host::spawn(&p, &[]);
    assert!(wait_until(Duration::from_secs(60), || db
        .count("status = 'succeeded'")
        >= 30));
    let mut killed = 0;
    for _ in 0..3 {
        killed += terminate_all(&db);
        std::thread::sleep(Duration::from_millis(400));
    }
    assert!(
        killed >= 2,
        "the host's connections were terminated ({killed})"
    );
    assert!(
        wait_until(Duration::from_secs(90), || db.count("status = 'succeeded'")
            == ids.len()),
        "{}",
        host.log()
    );
    let (code, log) = host.stop();
    assert_eq!(code, Some(0), "{log}");
    let c = counts(&p);
    assert!(ids.iter().all(|id| c.contains_key(id)));
    assert!(!log.contains("pw-never-shown"));
}

#[test]
fn a_database_restart_is_survived_with_health_degraded_meanwhile() {
    let Some(pg) = PrivatePg::start() else {
        return;
    };
    let db = Db::on(pg.port, "restart");
    let p = Project::new();
    let w = shell_worker(&p, "0.2");
    p.config_with(
        &db.tm("  poll_interval_ms: 200\n  lease_seconds: 20"),
        "  concurrency: 4",
        &w,
    );
    migrate(&p);
    let ids = db.enqueue_many("r", 60);
    let port = free_port();
    let listen = format!("127.0.0.1:{port}");
    let mut host = Host::spawn(&p, &["run", "--listen", &listen]);
    let health = || {
        http_get(port, "/health", &[])
            .map(|r| r.status)
            .unwrap_or(0)
    };
    assert!(wait_until(Duration::from_secs(30), || health() == 200));
    assert!(wait_until(Duration::from_secs(60), || db
        .count("status = 'succeeded'")
        >= 8));
    pg.stop();
    assert!(
        wait_until(Duration::from_secs(15), || health() == 503),
        "/health degraded while the database is down: {}",
        host.log()
    );
    // Tasks finish meanwhile; their outcomes wait to be recorded.
    std::thread::sleep(Duration::from_secs(2));
    pg.start_again();
    assert!(
        wait_until(Duration::from_secs(90), || db.count("status = 'succeeded'")
            == ids.len()),
        "{}",
        host.log()
    );
    assert!(wait_until(Duration::from_secs(15), || health() == 200));
    let (code, log) = host.stop();
    assert_eq!(code, Some(0), "{log}");
    assert!(
        log.contains("cannot record the outcome yet; retrying"),
        "{log}"
    );
    assert!(log.contains("task manager reachable again"), "{log}");
    let c = counts(&p);
    assert!(ids.iter().all(|id| c.contains_key(id)));
    // The lease outlived the outage: no task ran twice.
    assert!(c.values().all(|n| *n == 1), "{c:?}");
}
