//! The section 8 verbs on RabbitMQ: the dead-letter verbs work on `<queue>.dead` (list, retry with
//! publisher confirms then ack, purge); the others answer "not supported by this task manager" (exit 2).

use crate::rabbit::*;
use crate::support::*;
use serde_json::Value;
use std::time::Duration;

fn out_of(p: &Project, args: &[&str]) -> (Option<i32>, String, String) {
    let o = p.run(args);
    (o.status.code(), text(&o.stdout), text(&o.stderr))
}

#[test]
fn dead_letters_are_listed_retried_and_purged_on_the_dead_letter_queue() {
    let r = Rabbit::new();
    let q = r.queue("ops");
    let dead_q = format!("{q}.dead");
    let p = Project::new();
    let w = shell_worker(
        &p,
        "if [ -e broken ]; then echo '{\"success\": false, \"error\": {\"message\": \"broken on purpose\", \"retry_possible\": false}}'; exit 2; fi",
    );
    p.config_with(
        &amqp_tm(r.url(), &q, ""),
        "",
        &w.replace("task_types: [T]\n", "task_types: [T]\n    max_retries: 0\n"),
    );
    assert!(p.run(&["check"]).status.success());
    p.write("broken", "");
    let ids: Vec<String> = ["a1", "a2", "a3"].iter().map(|s| s.to_string()).collect();
    r.publish_tasks(&q, "T", &ids);
    assert_eq!(p.run(&["--burst"]).status.code(), Some(0));
    assert_eq!(r.count(&dead_q), 3);

    let (code, out, err) = out_of(&p, &["dead", "list", "--json"]);
    assert_eq!(code, Some(0), "{err}");
    let list: Value = serde_json::from_str(&out).expect("json");
    let arr = list.as_array().expect("array");
    let mut got: Vec<&str> = arr.iter().filter_map(|d| d["id"].as_str()).collect();
    let at: Vec<&str> = arr.iter().filter_map(|d| d["at"].as_str()).collect();
    assert!(at.windows(2).all(|w| w[0] >= w[1]), "newest first: {list}");
    got.sort();
    assert_eq!(got, ["a1", "a2", "a3"], "{list}");
    assert_eq!(list[0]["error"], "broken on purpose");
    assert_eq!(list[0]["type"], "T");
    assert_eq!(r.count(&dead_q), 3, "listing leaves them in place");

    // Unknown ids change nothing.
    let (code, _, err) = out_of(&p, &["dead", "retry", "a1", "nope"]);
    assert_eq!(code, Some(1), "{err}");
    assert!(err.contains("nope"), "{err}");
    assert_eq!((r.count(&dead_q), r.count(&q)), (3, 0));

    // The verbs that need a queue the host can look into are refused with exit 2.
    for args in [
        &["queue"][..],
        &["cancel", "a1"],
        &["pause", "T"],
        &["resume", "T"],
    ] {
        let (code, _, err) = out_of(&p, args);
        assert_eq!(code, Some(2), "{args:?}: {err}");
        assert!(
            err.contains("not supported by this task manager"),
            "{args:?}: {err}"
        );
    }

    std::fs::remove_file(p.file("broken")).expect("fix the worker");
    let (code, out, err) = out_of(&p, &["dead", "retry", "a2"]);
    assert_eq!((code, out.trim()), (Some(0), "retried 1"), "{err}");
    let (code, out, err) = out_of(&p, &["dead", "retry", "--all"]);
    assert_eq!((code, out.trim()), (Some(0), "retried 2"), "{err}");
    assert_eq!((r.count(&dead_q), r.count(&q)), (0, 3));
    assert_eq!(p.run(&["--burst"]).status.code(), Some(0));
    let done = runs(&p, "done");
    for id in &ids {
        assert_eq!(
            done.get(id),
            Some(&1),
            "{id} succeeded once after the retry: {done:?}"
        );
    }
    assert_eq!(r.total(&q), 0);

    // Purge: by type and age filters, then all.
    p.write("broken", "");
    r.publish_tasks(&q, "T", &["b1".to_string()]);
    assert_eq!(p.run(&["--burst"]).status.code(), Some(0));
    let (code, out, _) = out_of(&p, &["dead", "purge", "--type", "Other"]);
    assert_eq!((code, out.trim()), (Some(0), "purged 0"));
    let (code, out, _) = out_of(&p, &["dead", "purge", "--older-than", "1h"]);
    assert_eq!((code, out.trim()), (Some(0), "purged 0"));
    let (code, _, err) = out_of(&p, &["dead", "purge", "--older-than", "yesterday"]);
    assert_eq!(code, Some(2), "{err}");
    assert_eq!(r.count(&dead_q), 1);
    std::thread::sleep(Duration::from_millis(1100));
    let (code, out, err) = out_of(&p, &["dead", "purge", "--older-than", "1s"]);
    assert_eq!((code, out.trim()), (Some(0), "purged 1"), "{err}");
    assert_eq!(r.count(&dead_q), 0);
}
