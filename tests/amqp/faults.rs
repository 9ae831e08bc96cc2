//! Hosts and connections that die: kill -9, connections closed under the host, an outage during which
//! tasks finish, graceful and forced stops, the delivery limit on a quorum queue.

use crate::rabbit::*;
use crate::support::*;
use lapin::BasicProperties;
use nix::sys::signal::Signal;
use std::time::Duration;

fn kill_workers(p: &Project) {
    for pid in worker_pids(p) {
        let _ = nix::sys::signal::kill(nix::unistd::Pid::from_raw(pid), Signal::SIGKILL);
    }
}

fn started(p: &Project, n: usize) -> bool {
    wait_until(Duration::from_secs(20), || {
        runs(p, "start").values().sum::<usize>() >= n
    })
}

#[test]
fn kill_9_of_a_host_mid_task_then_a_restart_finishes_the_task() {
    let r = Rabbit::new();
    let q = r.queue("kill");
    let p = Project::new();
    // The first delivery hangs; the redelivery (attempt 2: the redelivered flag counts) finishes.
    let w = shell_worker(&p, "[ \"$WORKERHOST_ATTEMPT\" = 1 ] && sleep 60");
    p.config_with(&amqp_tm(r.url(), &q, ""), "", &w);
    p.submit("T", "k1", "{}");
    let mut host = spawn_logged(&p, &[]);
    assert!(started(&p, 1), "{}", host_log(&p));
    signal(&host, Signal::SIGKILL);
    let _ = wait_child(&mut host, Duration::from_secs(5));
    kill_workers(&p);
    let out = p.run(&["--burst"]);
    assert_eq!(out.status.code(), Some(0), "{}", text(&out.stderr));
    let starts: Vec<String> = lines(&p.file("runs.log"))
        .into_iter()
        .filter(|l| l.starts_with("start"))
        .collect();
    assert_eq!(starts.len(), 2, "{starts:?}");
    assert!(starts[1].starts_with("start k1 2 "), "{starts:?}");
    assert_eq!(runs(&p, "done").get("k1"), Some(&1));
    assert_eq!(r.total(&q), 0);
}

#[test]
fn connections_closed_under_the_host_lose_no_task_and_run_none_twice() {
    let r = Rabbit::with_vhost();
    let q = r.queue("cut");
    let p = Project::new();
    let w = shell_worker(&p, "sleep 1");
    p.config_with(&amqp_tm(r.url(), &q, ""), "  concurrency: 3", &w);
    assert!(p.run(&["check"]).status.success());
    let ids: Vec<String> = (0..12).map(|i| format!("c{i}")).collect();
    r.publish_tasks(&q, "T", &ids);
    let mut host = spawn_logged(&p, &[]);
    assert!(started(&p, 3), "{}", host_log(&p));
    r.close_connections();
    let all_done = wait_until(Duration::from_secs(60), || runs(&p, "done").len() == 12);
    assert!(all_done, "{:?}\n{}", runs(&p, "done"), host_log(&p));
    assert!(
        wait_until(Duration::from_secs(10), || r.total(&q) == 0),
        "everything acknowledged"
    );
    signal(&host, Signal::SIGTERM);
    assert_eq!(
        wait_child(&mut host, Duration::from_secs(20)).code(),
        Some(0)
    );
    let log = host_log(&p);
    assert!(log.contains("reconnected"), "{log}");
    let starts = runs(&p, "start");
    assert!(
        starts.values().all(|&n| n == 1),
        "tasks running during the cut were settled on their redelivery, not run again: {starts:?}\n{log}"
    );
    assert_eq!(r.count(&q), 0);
}

#[test]
fn outcomes_of_tasks_finished_during_an_outage_are_recorded_after_it() {
    let r = Rabbit::with_vhost();
    let q = r.queue("outage");
    let replies = r.reply_queue();
    let p = Project::new();
    let w = shell_worker(&p, "sleep 1");
    p.config_with(&amqp_tm(r.url(), &q, ""), "  concurrency: 2", &w);
    assert!(p.run(&["check"]).status.success());
    for id in ["o1", "o2"] {
        let body = serde_json::json!({"id": id, "type": "T", "params": {}});
        let props = BasicProperties::default()
            .with_reply_to(replies.as_str().into())
            .with_correlation_id(id.into());
        r.publish(&q, body.to_string().as_bytes(), props);
    }
    let mut host = spawn_logged(&p, &[]);
    assert!(started(&p, 2), "{}", host_log(&p));
    // The broker refuses the host until permissions come back; the tasks finish meanwhile.
    rabbitmqctl(&["clear_permissions", "-p", r.vhost(), "guest"]);
    r.close_connections();
    assert!(wait_until(Duration::from_secs(10), || runs(&p, "done")
        .len()
        == 2));
    std::thread::sleep(Duration::from_secs(2));
    rabbitmqctl(&[
        "set_permissions",
        "-p",
        r.vhost(),
        "guest",
        ".*",
        ".*",
        ".*",
    ]);
    let mut got = Vec::new();
    while got.len() < 2 {
        let Some((body, props)) = r.wait_get(&replies, Duration::from_secs(30)) else {
            panic!("missing replies, got {got:?}\n{}", host_log(&p));
        };
        let doc = json(&body);
        assert_eq!(doc["status"], "succeeded");
        assert_eq!(
            props.correlation_id().as_ref().map(|c| c.to_string()),
            doc["id"].as_str().map(String::from)
        );
        got.push(doc["id"].as_str().unwrap_or("").to_string());
    }
    got.sort();
    assert_eq!(got, ["o1", "o2"]);
    assert!(wait_until(Duration::from_secs(10), || r.total(&q) == 0));
    signal(&host, Signal::SIGTERM);
    assert_eq!(
        wait_child(&mut host, Duration::from_secs(20)).code(),
        Some(0)
    );
    assert!(
        runs(&p, "start").values().all(|&n| n == 1),
        "{}",
        host_log(&p)
    );
}

#[test]
fn a_graceful_stop_finishes_in_flight_tasks_and_requeues_the_rest() {
    let r = Rabbit::new();
    let q = r.queue("stop");
    let p = Project::new();
    let w = shell_worker(&p, "sleep 3");
    // Prefetch above the concurrency: some messages wait in the host's buffer.
    p.config_with(
        &amqp_tm(r.url(), &q, "  prefetch: 6\n"),
        "  concurrency: 2\n  shutdown_grace_seconds: 30",
        &w,
    );
    assert!(p.run(&["check"]).status.success());
    let ids: Vec<String> = (0..6).map(|i| format!("g{i}")).collect();
    r.publish_tasks(&q, "T", &ids);
    let mut host = spawn_logged(&p, &[]);
    assert!(started(&p, 2), "{}", host_log(&p));
    assert!(
        wait_until(Duration::from_secs(5), || r.count(&q) == 0),
        "the rest is buffered in the host"
    );
    signal(&host, Signal::SIGTERM);
    // Handed back at once, not when the in-flight tasks are done and the connection closes.
    assert!(
        wait_until(Duration::from_secs(2), || r.count(&q) == 4),
        "{}",
        host_log(&p)
    );
    assert!(
        host.try_wait().expect("try_wait").is_none(),
        "still finishing its tasks"
    );
    assert_eq!(
        wait_child(&mut host, Duration::from_secs(30)).code(),
        Some(0)
    );
    assert_eq!(
        runs(&p, "done").len(),
        2,
        "in-flight tasks finished, no new ones started"
    );
    assert_eq!(
        r.count(&q),
        4,
        "the rest is back in the queue\n{}",
        host_log(&p)
    );
}

#[test]
fn when_the_grace_period_ends_unfinished_tasks_go_back_to_the_queue() {
    let r = Rabbit::new();
    let q = r.queue("forced");
    let p = Project::new();
    let w = shell_worker(&p, "sleep 60");
    p.config_with(
        &amqp_tm(r.url(), &q, ""),
        "  concurrency: 2\n  shutdown_grace_seconds: 0.5",
        &w,
    );
    assert!(p.run(&["check"]).status.success());
    r.publish_tasks(
        &q,
        "T",
        &["f1".to_string(), "f2".to_string(), "f3".to_string()],
    );
    let mut host = spawn_logged(&p, &[]);
    assert!(started(&p, 2), "{}", host_log(&p));
    signal(&host, Signal::SIGTERM);
    assert_eq!(
        wait_child(&mut host, Duration::from_secs(20)).code(),
        Some(0)
    );
    assert!(runs(&p, "done").is_empty());
    assert_eq!(r.count(&q), 3, "all three are back\n{}", host_log(&p));
}

#[test]
fn on_a_quorum_queue_redeliveries_count_toward_max_deliveries() {
    let r = Rabbit::new();
    let q = r.queue("quorum");
    let p = Project::new();
    let w = shell_worker(&p, "sleep 60");
    let tm = amqp_tm(r.url(), &q, "  queue_type: quorum\n  max_deliveries: 1\n");
    p.config_with(&tm, "", &w);
    p.submit("T", "poison", "{}");
    let mut host = spawn_logged(&p, &[]);
    assert!(started(&p, 1), "{}", host_log(&p));
    signal(&host, Signal::SIGKILL);
    let _ = wait_child(&mut host, Duration::from_secs(5));
    kill_workers(&p);
    let out = p.run(&["--burst"]);
    assert_eq!(out.status.code(), Some(0), "{}", text(&out.stderr));
    assert_eq!(runs(&p, "start").get("poison"), Some(&1), "not run again");
    let (_, props) = r.get(&format!("{q}.dead")).expect("dead-lettered");
    let err = header(&props, "x-error").unwrap_or_default();
    assert!(err.contains("delivery limit reached"), "{err}");
    assert_eq!(header(&props, "x-deliveries").as_deref(), Some("2"));
    assert_eq!(r.total(&q), 0);
}
