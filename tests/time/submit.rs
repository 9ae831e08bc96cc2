//! `submit --delay | --at | --priority`: refused (exit 2, saying why) where the task manager cannot keep
//! them; bad values named.

use crate::support::*;

const WORKER: &str = "  - name: sh\n    command: [\"/bin/true\"]\n    task_types: [T]\n";

fn submit(p: &Project, extra: &[&str]) -> (Option<i32>, String) {
    let mut args = vec!["submit", "--type", "T"];
    args.extend_from_slice(extra);
    let out = p.run(&args);
    (out.status.code(), text(&out.stderr))
}

#[test]
fn flags_a_task_manager_cannot_keep_are_refused_with_the_reason() {
    let cases: [(&str, &[&str], &str); 5] = [
        (
            "  type: amqp\n  url: amqp://127.0.0.1:1/%2f",
            &["--delay", "30s"],
            "RabbitMQ",
        ),
        (
            "  type: amqp\n  url: amqp://127.0.0.1:1/%2f",
            &["--priority", "3"],
            "priority",
        ),
        (
            "  type: http\n  url: http://127.0.0.1:1/api",
            &["--at", "2030-01-01T00:00:00Z"],
            "--at",
        ),
        (
            "  type: http\n  url: http://127.0.0.1:1/api",
            &["--priority", "1"],
            "--priority",
        ),
        (
            "  type: redis\n  url: redis://127.0.0.1:1/0",
            &["--priority", "1"],
            "redis",
        ),
    ];
    for (tm, flags, says) in cases {
        let p = Project::new();
        p.config_with(tm, "", WORKER);
        let (code, err) = submit(&p, flags);
        assert_eq!(code, Some(2), "{tm} {flags:?}: {err}");
        assert!(
            err.contains("not supported") && err.contains(says),
            "{tm} {flags:?}: {err}"
        );
    }
}

#[test]
fn bad_delays_dates_and_priorities_are_named() {
    let p = Project::new();
    p.config("", WORKER);
    for (flags, says) in [
        (&["--delay", "-5s"][..], "negative"),
        (&["--delay", "soon"][..], "--delay"),
        (&["--at", "tomorrow"][..], "--at"),
        (&["--priority", "high"][..], "--priority"),
        (
            &["--delay", "5s", "--at", "2030-01-01T00:00:00Z"][..],
            "--at",
        ),
    ] {
        let (code, err) = submit(&p, flags);
        assert_eq!(code, Some(2), "{flags:?}: {err}");
        assert!(err.contains(says), "{flags:?}: {err}");
    }
    // Nothing was enqueued by the refusals.
    let out = p.run(&["--burst"]);
    assert_eq!(out.status.code(), Some(0), "{}", text(&out.stderr));
    assert!(!text(&out.stderr).contains("task succeeded"));
}
