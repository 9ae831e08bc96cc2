//! Tasks flowing through RabbitMQ: many tasks over two hosts, RPC replies, dead letters, the CLI.

use crate::rabbit::*;
use crate::support::*;
use lapin::BasicProperties;
use std::time::Duration;

#[test]
fn five_hundred_tasks_across_two_hosts_each_run_exactly_once() {
    let r = Rabbit::new();
    let q = r.queue("many");
    let (a, b) = (Project::new(), Project::new());
    for p in [&a, &b] {
        // A second worker with nothing to do shares the host's capacity in every claim.
        let mut w = shell_worker(p, "sleep 0.01");
        w.push_str("  - name: idle\n    command: [\"/bin/cat\"]\n    task_types: [Other]\n");
        p.config_with(&amqp_tm(r.url(), &q, ""), "  concurrency: 4", &w);
    }
    // Declare the queue (the first host start would too) before publishing.
    let out = a.run(&["check"]);
    assert!(out.status.success(), "{}", text(&out.stdout));
    let ids: Vec<String> = (0..500).map(|i| format!("t{i}")).collect();
    r.publish_tasks(&q, "T", &ids);
    let mut hosts = [a.spawn_logged_burst(), b.spawn_logged_burst()];
    for h in &mut hosts {
        assert_eq!(wait_child(h, Duration::from_secs(180)).code(), Some(0));
    }
    let (ra, rb) = (runs(&a, "done"), runs(&b, "done"));
    assert!(
        !ra.is_empty() && !rb.is_empty(),
        "both hosts took tasks: {} and {}",
        ra.len(),
        rb.len()
    );
    let mut all = ra.clone();
    for (id, n) in rb {
        *all.entry(id).or_insert(0) += n;
    }
    assert_eq!(all.len(), 500, "every task ran");
    assert!(all.values().all(|&n| n == 1), "a task ran twice");
    assert_eq!(
        r.total(&q),
        0,
        "nothing left in the queue or unacknowledged"
    );
    assert_eq!(r.count(&format!("{q}.dead")), 0);
}

trait BurstExt {
    fn spawn_logged_burst(&self) -> std::process::Child;
}

impl BurstExt for Project {
    fn spawn_logged_burst(&self) -> std::process::Child {
        spawn_logged(self, &["--burst"])
    }
}

#[test]
fn rpc_results_go_to_reply_to_with_the_correlation_id() {
    let r = Rabbit::new();
    let q = r.queue("rpc");
    let replies = r.reply_queue();
    let p = Project::new();
    let mut workers = shell_worker(&p, "");
    p.write(
        "fail.sh",
        "read -r doc\necho 'quota exceeded' >&2\nexit 2\n",
    );
    workers.push_str(
        "  - name: failing\n    command: [\"/bin/sh\", \"./fail.sh\"]\n    project_path: .\n    task_types: [F]\n",
    );
    p.config_with(&amqp_tm(r.url(), &q, ""), "  concurrency: 2", &workers);
    assert!(p.run(&["check"]).status.success());
    let ask = |id: &str, t: &str, corr: &str| {
        let body = serde_json::json!({"id": id, "type": t, "params": {"n": 21}});
        let props = BasicProperties::default()
            .with_reply_to(replies.as_str().into())
            .with_correlation_id(corr.into());
        r.publish(&q, body.to_string().as_bytes(), props);
    };
    ask("rpc-ok", "T", "corr-ok");
    ask("rpc-dead", "F", "corr-dead");
    let out = p.run(&["--burst"]);
    assert_eq!(out.status.code(), Some(0), "{}", text(&out.stderr));
    let mut got = std::collections::HashMap::new();
    for _ in 0..2 {
        let (body, props) = r
            .wait_get(&replies, Duration::from_secs(5))
            .expect("a reply");
        let corr = props
            .correlation_id()
            .as_ref()
            .expect("correlation_id")
            .to_string();
        got.insert(corr, json(&body));
    }
    let ok = &got["corr-ok"];
    assert_eq!(ok["id"], "rpc-ok");
    assert_eq!(ok["status"], "succeeded");
    assert_eq!(ok["result"]["got"]["params"]["n"], 21);
    assert_eq!(
        ok["result"]["got"]["correlation_id"], "corr-ok",
        "the worker sees the message's correlation id"
    );
    let dead = &got["corr-dead"];
    assert_eq!(dead["status"], "dead");
    assert_eq!(dead["error"]["outcome"], "fatal", "{dead}");
    // The failed task is also in the dead-letter queue, with why.
    let (body, props) = r.get(&format!("{q}.dead")).expect("dead letter");
    assert_eq!(
        json(&body)["id"],
        "rpc-dead",
        "the original message is kept"
    );
    assert!(
        header(&props, "x-error").is_some_and(|e| e.contains("quota exceeded")),
        "{props:?}"
    );
    assert_eq!(header(&props, "x-attempts").as_deref(), Some("1"));
    assert_eq!(r.total(&q), 0);
}

#[test]
fn malformed_and_unknown_type_messages_end_in_dead_and_the_host_goes_on() {
    let r = Rabbit::new();
    let q = r.queue("dead");
    let p = Project::new();
    let w = shell_worker(&p, "");
    p.config_with(&amqp_tm(r.url(), &q, ""), "  concurrency: 2", &w);
    assert!(p.run(&["check"]).status.success());
    let raw = BasicProperties::default().with_message_id("raw-1".into());
    r.publish(&q, b"this is not json", raw);
    r.publish(
        &q,
        br#"{"id": "u1", "type": "Nope", "params": {}}"#,
        BasicProperties::default(),
    );
    r.publish(
        &q,
        br#"{"id": "p1", "type": "T", "params": [1]}"#,
        BasicProperties::default(),
    );
    r.publish_tasks(&q, "T", &["ok1".to_string()]);
    let out = p.run(&["--burst"]);
    let err = text(&out.stderr);
    assert_eq!(out.status.code(), Some(0), "{err}");
    assert_eq!(runs(&p, "done").get("ok1"), Some(&1), "the valid task ran");
    let mut dead = std::collections::HashMap::new();
    while let Some((body, props)) = r.get(&format!("{q}.dead")) {
        let id = header(&props, "x-task-id").expect("x-task-id");
        dead.insert(
            id,
            (text(&body), header(&props, "x-error").unwrap_or_default()),
        );
    }
    assert_eq!(dead.len(), 3, "{dead:?}");
    assert_eq!(dead["raw-1"].0, "this is not json");
    assert!(dead["raw-1"].1.contains("not JSON"), "{dead:?}");
    assert!(
        dead["u1"].1.contains("no worker handles type Nope"),
        "{dead:?}"
    );
    assert!(dead["p1"].1.contains("params"), "{dead:?}");
    assert_eq!(r.total(&q), 0);
    // 3.10 here: the start warns about the broker's consumer_timeout (3.11.15+: says it is honoured).
    assert!(err.contains("x-consumer-timeout"), "{err}");
}

/// Issue 16: a 200 KB type or id used to be copied into the dead letter's headers, the header frame
/// exceeded the broker's limit (FRAME_ERROR), and the message came back forever, wedging the queue.
#[test]
fn huge_types_and_ids_are_dead_lettered_and_the_tasks_behind_them_run() {
    let r = Rabbit::new();
    let q = r.queue("huge");
    let p = Project::new();
    let w = shell_worker(&p, "");
    p.config_with(&amqp_tm(r.url(), &q, ""), "  concurrency: 1", &w);
    assert!(
        p.run(&["check"]).status.success(),
        "check declares the queues"
    );
    let big_type = format!(
        r#"{{"id": "big-type", "type": "{}", "params": {{}}}}"#,
        "T".repeat(200_000)
    );
    r.publish(&q, big_type.as_bytes(), BasicProperties::default());
    let big_id = format!(
        r#"{{"id": "{}", "type": "T", "params": {{}}}}"#,
        "i".repeat(200_000)
    );
    r.publish(&q, big_id.as_bytes(), BasicProperties::default());
    r.publish(
        &q,
        br#"{"id": "nul\u0000id", "type": "T"}"#,
        BasicProperties::default(),
    );
    r.publish_tasks(&q, "T", &["after".to_string()]);
    let out = p.run(&["--burst"]);
    let err = text(&out.stderr);
    assert_eq!(
        out.status.code(),
        Some(0),
        "{}",
        &err[..err.len().min(4000)]
    );
    assert_eq!(
        runs(&p, "done").get("after"),
        Some(&1),
        "the task behind them ran: {}",
        &err[..err.len().min(6000)]
    );
    assert!(
        err.len() < 200_000,
        "log lines are bounded: {} bytes",
        err.len()
    );
    let mut dead = Vec::new();
    while let Some((body, props)) = r.get(&format!("{q}.dead")) {
        let e = header(&props, "x-error").unwrap_or_default();
        assert!(e.len() <= 4096, "x-error is {} bytes", e.len());
        dead.push((
            body.len(),
            header(&props, "x-task-id").unwrap_or_default(),
            e,
        ));
    }
    assert_eq!(
        dead.len(),
        3,
        "{:?}",
        dead.iter().map(|d| &d.2).collect::<Vec<_>>()
    );
    let (len, id, e) = &dead[0];
    assert_eq!(
        (*len, id.as_str()),
        (big_type.len(), "big-type"),
        "the whole body is the dead letter"
    );
    assert!(
        e.contains("`type` is 200000 bytes long (at most 1024)"),
        "{e}"
    );
    assert!(
        dead[1].2.contains("`id` is 200000 bytes long"),
        "{}",
        dead[1].2
    );
    assert!(dead[2].2.contains("control character"), "{}", dead[2].2);
    assert_eq!(r.total(&q), 0);
}

#[test]
fn submit_publishes_a_persistent_message_and_status_says_there_is_none() {
    let r = Rabbit::new();
    let q = r.queue("submit");
    let p = Project::new();
    let w = shell_worker(&p, "");
    p.config_with(&amqp_tm(r.url(), &q, ""), "", &w);
    let check = p.run(&["check"]);
    assert!(
        text(&check.stdout).contains("task manager amqp: reachable"),
        "{}",
        text(&check.stdout)
    );
    p.submit("T", "s1", r#"{"a": 1}"#);
    let (body, props) = r.get(&q).expect("the submitted message");
    let doc = json(&body);
    assert_eq!(doc["id"], "s1");
    assert_eq!(doc["type"], "T");
    assert_eq!(doc["params"]["a"], 1);
    assert_eq!(*props.delivery_mode(), Some(2), "persistent");
    assert_eq!(
        props
            .message_id()
            .as_ref()
            .map(|m| m.to_string())
            .as_deref(),
        Some("s1")
    );
    let out = p.run(&["status", "s1"]);
    assert_ne!(out.status.code(), Some(0));
    assert!(
        text(&out.stderr).contains("keeps no task status"),
        "{}",
        text(&out.stderr)
    );
}

#[test]
fn credentials_never_reach_the_output() {
    let r = Rabbit::with_vhost();
    let (user, pw) = (unique("user"), unique("pw"));
    rabbitmqctl(&["add_user", &user, &pw]);
    rabbitmqctl(&["set_permissions", "-p", r.vhost(), &user, ".*", ".*", ".*"]);
    let q = r.queue("creds");
    let p = Project::new();
    let w = shell_worker(&p, "");
    let url = format!("amqp://{user}:{pw}@127.0.0.1:5672/{}", r.vhost());
    p.config_with(&amqp_tm(&url, &q, ""), "", &w);
    p.submit("T", "c1", "{}");
    // At trace level too: lapin would print its login frame there, so the host caps it.
    let out = p.run(&["--burst", "--log-level", "trace"]);
    let _ = std::process::Command::new("rabbitmqctl")
        .args(["delete_user", &user])
        .output();
    let all = format!("{}{}", text(&out.stdout), text(&out.stderr));
    assert_eq!(out.status.code(), Some(0), "{all}");
    assert_eq!(runs(&p, "done").get("c1"), Some(&1));
    assert!(!all.contains(&pw), "the password leaked: {all}");
    // A refused login names the broker without the password.
    let wrong = format!("amqp://{user}:{pw}-wrong@127.0.0.1:5672/{}", r.vhost());
    p.config_with(&amqp_tm(&wrong, &q, ""), "", &w);
    let out = p.run(&["check"]);
    let all = format!("{}{}", text(&out.stdout), text(&out.stderr));
    assert_eq!(out.status.code(), Some(1), "{all}");
    assert!(!all.contains(&pw), "the password leaked: {all}");
    assert!(
        all.contains(&format!("amqp://{user}:***@127.0.0.1:5672")),
        "{all}"
    );
}
