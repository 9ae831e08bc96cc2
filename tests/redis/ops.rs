//! Operating a Redis queue (SPEC section 8) through the CLI: the scenarios of tests/support/ops.rs (dead
//! letters, depth, cancel of a queued and of a running task, pause while a host runs, resume), purge
//! filters, and a scheduled task's depth and cancel.

use crate::Stream;
use crate::support::ops::{
    a_running_task_is_cancelled, breakable_worker, dead_letters_depth_cancel_and_pause, depth_of,
};
use crate::support::*;
use std::time::Duration;

#[test]
fn dead_letters_depth_cancel_and_pause_on_redis() {
    let Some(s) = Stream::shared("ops") else {
        return;
    };
    let p = Project::new();
    let w = breakable_worker(&p);
    p.config_with(&s.tm(""), "", &w);
    dead_letters_depth_cancel_and_pause(&p);
    assert!(s.dead().is_empty());
}

#[test]
fn a_running_task_cancelled_on_redis_is_killed_and_recorded() {
    let Some(s) = Stream::shared("ops-running") else {
        return;
    };
    let p = Project::new();
    let w = breakable_worker(&p);
    p.config_with(&s.tm(""), "", &w);
    a_running_task_is_cancelled(&p);
}

#[test]
fn purge_filters_by_age_and_type() {
    let Some(s) = Stream::shared("purge") else {
        return;
    };
    let p = Project::new();
    let w = breakable_worker(&p);
    p.config_with(&s.tm(""), "", &w);
    p.write("broken", "");
    for id in ["a", "b"] {
        p.submit("T", id, "{}");
    }
    assert_eq!(p.run(&["--burst"]).status.code(), Some(0));
    let out = p.run(&["dead", "purge", "--older-than", "1h"]);
    assert_eq!(
        text(&out.stdout).trim(),
        "purged 0",
        "{}",
        text(&out.stderr)
    );
    let out = p.run(&["dead", "purge", "--type", "Other"]);
    assert_eq!(text(&out.stdout).trim(), "purged 0");
    std::thread::sleep(Duration::from_millis(1100));
    let out = p.run(&["dead", "purge", "--older-than", "1s", "--type", "T"]);
    assert_eq!(
        text(&out.stdout).trim(),
        "purged 2",
        "{}",
        text(&out.stderr)
    );
    assert!(s.dead().is_empty());
    assert!(p.status("a").is_none(), "a purged task is gone");
}

#[test]
fn a_scheduled_task_counts_as_scheduled_and_cancels() {
    let Some(s) = Stream::shared("ops-sched") else {
        return;
    };
    let p = Project::new();
    let w = breakable_worker(&p);
    p.config_with(&s.tm(""), "", &w);
    let out = p.run(&["submit", "--type", "T", "--id", "later", "--delay", "1h"]);
    assert!(out.status.success(), "{}", text(&out.stderr));
    assert_eq!(depth_of(&p, "T")["scheduled"], 1);
    let out = p.run(&["cancel", "later"]);
    assert!(out.status.success(), "{}", text(&out.stderr));
    assert_eq!(p.status("later").expect("later")["status"], "cancelled");
    assert_eq!(depth_of(&p, "T")["scheduled"], 0);
}
