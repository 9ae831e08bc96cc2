//! The postgres task manager as a user meets it: migrate, check, submit, status, enqueue from psql
//! inside a transaction, unknown types, the delivery limit, and NOTIFY wake-ups.

use crate::support::*;
use crate::{Db, Host, counts, migrate, shell_worker};
use std::time::Duration;

#[test]
fn migrate_check_submit_psql_enqueue_in_a_transaction_and_status() {
    let Some(db) = Db::shared("flow") else {
        return;
    };
    let p = Project::new();
    let w = shell_worker(&p, "0");
    p.config_with(&db.tm(""), "", &w);
    let mut shown = String::new();
    let out = p.run(&["check"]);
    shown += &text(&out.stdout);
    assert_eq!(out.status.code(), Some(1), "{shown}");
    assert!(
        shown.contains(&format!("schema {} is missing", db.schema)),
        "{shown}"
    );
    assert!(
        shown.contains("run `workerhost migrate --config"),
        "{shown}"
    );
    let out = p.run(&["migrate"]);
    shown += &text(&out.stdout);
    assert!(out.status.success(), "{}", text(&out.stderr));
    assert!(text(&out.stdout).contains("applied migration 1"), "{shown}");
    let out = p.run(&["check"]);
    shown += &text(&out.stdout);
    assert!(out.status.success(), "{shown}");
    let latest = workerhost_adapters::postgres::migrations::latest();
    assert!(shown.contains(&format!("at version {latest}")), "{shown}");
    p.submit("T", "cli-1", r#"{"n": 1}"#);
    assert_eq!(p.status("cli-1").expect("status")["status"], "queued");
    // An application's transaction: visible at commit, gone on rollback.
    db.q(
        "BEGIN; SELECT {s}.enqueue(p_type => 'T', p_params => '{\"a\":1}'::jsonb, p_id => 'app-1');
          INSERT INTO {s}.tasks (id, type, params) VALUES ('app-2', 'T', '{\"b\":2}'); COMMIT;",
    );
    db.q("BEGIN; SELECT {s}.enqueue(p_type => 'T', p_id => 'rolled-back'); ROLLBACK;");
    let out = p.run(&["run", "--burst"]);
    shown += &text(&out.stderr);
    assert!(out.status.success(), "{shown}");
    let mut ran: Vec<String> = counts(&p).into_keys().collect();
    ran.sort();
    assert_eq!(ran, ["app-1", "app-2", "cli-1"]);
    for id in ["cli-1", "app-1", "app-2"] {
        let st = p.status(id).expect("status");
        assert_eq!(st["status"], "succeeded", "{st}");
        assert_eq!(st["result"]["status"], "succeeded", "{st}");
        assert!(st["result"]["result"]["pid"].is_number(), "{st}");
    }
    assert!(p.status("rolled-back").is_none());
    let row = db.one("SELECT status, attempts, deliveries, result->>'worker', finished_at IS NOT NULL FROM {s}.tasks WHERE id = 'app-1'");
    assert_eq!(row, "succeeded|1|1|sh|t");
    assert!(!shown.contains("pw-never-shown"), "{shown}");
}

#[test]
fn unknown_types_stay_queued_and_a_task_past_its_delivery_limit_is_dead_lettered() {
    let Some(db) = Db::shared("limits") else {
        return;
    };
    let p = Project::new();
    let w = shell_worker(&p, "0");
    p.config_with(&db.tm(""), "", &w);
    migrate(&p);
    db.q(
        "SELECT {s}.enqueue(p_type => 'Other.Type', p_id => 'other');
          SELECT {s}.enqueue(p_type => 'T', p_id => 'poison');
          SELECT {s}.enqueue(p_type => 'T', p_id => 'fine');
          UPDATE {s}.tasks SET deliveries = 10 WHERE id = 'poison';",
    );
    // A row an INSERT by hand got wrong is refused by a constraint that names the problem.
    let (ok, err, _) =
        db.psql("INSERT INTO {s}.tasks (id, type, params) VALUES ('bad', 'T', '\"text\"')");
    assert!(!ok);
    assert!(err.contains("params_is_an_object"), "{err}");
    let out = p.run(&["submit", "--type", "Other.Type", "--id", "x"]);
    assert_eq!(out.status.code(), Some(2), "{}", text(&out.stderr));
    let out = p.run(&["run", "--burst"]);
    assert!(out.status.success(), "{}", text(&out.stderr));
    assert_eq!(
        db.one("SELECT status FROM {s}.tasks WHERE id = 'other'"),
        "queued"
    );
    assert_eq!(
        db.one("SELECT status FROM {s}.tasks WHERE id = 'fine'"),
        "succeeded"
    );
    let dead = db.one("SELECT status, error, result->>'status' FROM {s}.tasks WHERE id = 'poison'");
    assert!(dead.starts_with("dead|delivery limit reached"), "{dead}");
    assert!(dead.ends_with("|dead"), "{dead}");
    assert!(
        !counts(&p).contains_key("poison"),
        "a task past its limit is not run"
    );
}

#[test]
fn an_idle_host_starts_a_task_at_once_through_notify() {
    let Some(db) = Db::shared("notify") else {
        return;
    };
    let p = Project::new();
    let w = shell_worker(&p, "0");
    // The fallback poll is ten minutes: only NOTIFY can start these tasks within the waits below.
    p.config_with(&db.tm("  poll_interval_ms: 600000"), "", &w);
    let mut host = Host::spawn(&p, &[]);
    assert!(
        wait_until(Duration::from_secs(20), || db
            .psql("SELECT 1 FROM {s}.tasks")
            .0),
        "the host creates the schema at start: {}",
        host.log()
    );
    for round in 0..3 {
        std::thread::sleep(Duration::from_millis(500));
        let id = format!("n{round}");
        db.q(&format!(
            "SELECT {{s}}.enqueue(p_type => 'T', p_id => '{id}')"
        ));
        assert!(
            wait_until(Duration::from_secs(10), || db
                .count(&format!("id = '{id}' AND status = 'succeeded'"))
                == 1),
            "{}",
            host.log()
        );
    }
    let (code, log) = host.stop();
    assert_eq!(code, Some(0), "{log}");
}

#[test]
fn a_bad_address_is_reported_without_the_password() {
    let db = Db::on(free_port(), "nowhere");
    let p = Project::new();
    let w = shell_worker(&p, "0");
    p.config_with(&db.tm(""), "", &w);
    for args in [
        &["check"][..],
        &["submit", "--type", "T"],
        &["status", "x"],
        &["migrate"],
    ] {
        let out = p.run(args);
        assert_eq!(out.status.code(), Some(1), "{args:?}");
        let all = text(&out.stdout) + &text(&out.stderr);
        assert!(all.contains("postgres:***@127.0.0.1"), "{args:?}: {all}");
        assert!(!all.contains("pw-never-shown"), "{args:?}: {all}");
    }
}

/// Section 7 on PostgreSQL: a retry with a 1.5 s backoff waits in the table as a scheduled task, so
/// the host's one slot runs the healthy tasks meanwhile; the burst waits for it to end dead.
#[test]
fn retries_wait_in_the_table_and_free_the_slot() {
    let Some(db) = Db::shared("retries") else {
        return;
    };
    let p = Project::new();
    let w = crate::support::retries::failing_and_healthy_workers(&p, None);
    p.config_with(&db.tm(""), "  concurrency: 1", &w);
    crate::support::retries::retries_wait_in_the_task_manager(&p);
}

/// Section 8 through the CLI on PostgreSQL: dead letters, depth, cancel, pause and resume.
#[test]
fn dead_letters_depth_cancel_and_pause_on_postgres() {
    let Some(db) = Db::shared("ops") else {
        return;
    };
    let p = Project::new();
    let w = crate::support::ops::breakable_worker(&p);
    p.config_with(&db.tm(""), "", &w);
    crate::support::ops::dead_letters_depth_cancel_and_pause(&p);
}

#[test]
fn a_running_task_cancelled_on_postgres_is_killed_and_recorded() {
    let Some(db) = Db::shared("ops_running") else {
        return;
    };
    let p = Project::new();
    let w = crate::support::ops::breakable_worker(&p);
    p.config_with(&db.tm(""), "", &w);
    crate::support::ops::a_running_task_is_cancelled(&p);
}
