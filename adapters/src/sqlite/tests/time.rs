//! Section 7 on the sqlite queue: scheduled until due, priorities, plans that never read future tasks, a
//! retry that waits in the queue, and the version 2 migration.

use super::*;
use crate::Stamp;

fn at(id: &str, due_ms: i64, priority: i32) -> Envelope {
    Envelope {
        run_at: Some(Stamp(due_ms)),
        priority,
        ..env(id, "T")
    }
}

#[tokio::test]
async fn a_task_is_scheduled_until_due_and_a_past_run_at_runs_at_once() {
    let dir = TempDir::new().expect("tempdir");
    let s = open(&dir, "h1", 60_000);
    let now = now_ms();
    s.submit(&at("later", now + 600, 0)).await.expect("submit");
    s.submit(&at("past", now - 86_400_000 * 365, 0))
        .await
        .expect("submit");
    let st = s.status("later").await.expect("status").expect("known");
    assert_eq!(st.status, "scheduled");
    assert_eq!(st.run_at, Some(Stamp(now + 600)));
    assert_eq!(
        s.status("past")
            .await
            .expect("status")
            .expect("known")
            .status,
        "queued"
    );
    let first = s.claim(&req(&[(&["T"], 10)])).await.expect("claim");
    assert_eq!(ids(&first), vec!["past"]);
    tokio::time::sleep(Duration::from_millis(700)).await;
    let second = s.claim(&req(&[(&["T"], 10)])).await.expect("claim");
    assert_eq!(ids(&second), vec!["later"]);
    let e = second[0].envelope.as_ref().expect("envelope");
    assert_eq!(
        e.run_at,
        Some(Stamp(now + 600)),
        "the envelope carries its run_at"
    );
}

#[tokio::test]
async fn higher_priority_first_then_oldest_across_a_slots_types() {
    let dir = TempDir::new().expect("tempdir");
    let s = open(&dir, "h1", 60_000);
    for (id, ty, p) in [
        ("a", "T", 0),
        ("b", "U", 5),
        ("c", "T", 5),
        ("d", "U", -1),
        ("e", "T", 9),
    ] {
        s.submit(&Envelope {
            priority: p,
            ..env(id, ty)
        })
        .await
        .expect("submit");
    }
    let got = s.claim(&req(&[(&["T", "U"], 4)])).await.expect("claim");
    assert_eq!(ids(&got), vec!["e", "b", "c", "a"]);
    assert_eq!(got[0].envelope.as_ref().map(|e| e.priority).ok(), Some(9));
}

#[tokio::test]
async fn claims_and_promotion_read_no_future_rows() {
    let dir = TempDir::new().expect("tempdir");
    drop(open(&dir, "h1", 60_000));
    let c = raw_conn(&dir);
    let plan = |sql: &str| -> String {
        let sql = format!("EXPLAIN QUERY PLAN {sql}");
        let mut st = c.prepare(&sql).expect("explain");
        let rows = st
            .query_map(params!["T", 10], |r| r.get::<_, String>(3))
            .expect("rows");
        rows.collect::<Result<Vec<_>, _>>()
            .expect("plan")
            .join("\n")
    };
    let claim = plan(SELECT_QUEUED);
    assert!(claim.contains("INDEX tasks_ready (type=?)"), "{claim}");
    assert!(!claim.contains("TEMP B-TREE"), "the claim sorts: {claim}");
    let promote = {
        let sql = format!("EXPLAIN QUERY PLAN {}", super::super::due::PROMOTE);
        let mut st = c.prepare(&sql).expect("explain");
        let rows = st
            .query_map([1_i64], |r| r.get::<_, String>(3))
            .expect("rows");
        rows.collect::<Result<Vec<_>, _>>()
            .expect("plan")
            .join("\n")
    };
    assert!(
        promote.contains("USING INDEX tasks_due (run_at<?)"),
        "{promote}"
    );
}

#[tokio::test]
async fn a_requeued_retry_frees_the_lease_keeps_its_attempts_and_is_no_delivery() {
    let dir = TempDir::new().expect("tempdir");
    let s = open(&dir, "h1", 60_000);
    s.submit(&env("r", "T")).await.expect("submit");
    let d = s
        .claim(&req(&[(&["T"], 1)]))
        .await
        .expect("claim")
        .remove(0);
    assert_eq!(d.deliveries, 1);
    let retry = Envelope {
        run_at: Some(Stamp(now_ms() + 400)),
        attempts: 1,
        last_error: Some("boom".into()),
        ..env("r", "T")
    };
    s.requeue(&d.lease, &retry).await.expect("requeue");
    let st = s.status("r").await.expect("status").expect("known");
    assert_eq!(
        (st.status.as_str(), st.attempts, st.last_error.as_deref()),
        ("scheduled", 1, Some("boom"))
    );
    // The lease is gone: the old holder can neither settle nor requeue again.
    assert!(is_lost(
        s.settle(&d.lease, &doc("r", "succeeded", "h1", json!({})))
            .await
    ));
    assert!(
        s.claim(&req(&[(&["T"], 1)]))
            .await
            .expect("claim")
            .is_empty()
    );
    tokio::time::sleep(Duration::from_millis(500)).await;
    let again = s
        .claim(&req(&[(&["T"], 1)]))
        .await
        .expect("claim")
        .remove(0);
    assert_eq!(again.deliveries, 1, "a requeue is not a delivery");
    let e = again.envelope.as_ref().expect("envelope");
    assert_eq!((e.attempts, e.last_error.as_deref()), (1, Some("boom")));
}

#[tokio::test]
async fn a_version_2_file_gains_the_time_columns_with_its_rows() {
    let dir = TempDir::new().expect("tempdir");
    let s = open_old_version(
        &dir,
        "CREATE TABLE tasks (seq INTEGER PRIMARY KEY AUTOINCREMENT, id TEXT UNIQUE NOT NULL, type TEXT NOT NULL,
           params TEXT NOT NULL DEFAULT '{}', correlation_id TEXT, status TEXT NOT NULL DEFAULT 'queued'
           CHECK (status IN ('queued', 'scheduled', 'running', 'succeeded', 'dead', 'cancelled')),
           deliveries INTEGER NOT NULL DEFAULT 0, lease_owner TEXT, lease_until INTEGER,
           lease_token INTEGER NOT NULL DEFAULT 0, result TEXT, error TEXT, enqueued_at INTEGER,
           finished_at INTEGER, cancel_requested INTEGER NOT NULL DEFAULT 0);
         CREATE INDEX tasks_claim ON tasks (status, type, seq);
         CREATE INDEX tasks_finished ON tasks (status, finished_at);
         CREATE TABLE paused_types (type TEXT PRIMARY KEY, paused_at INTEGER NOT NULL);
         INSERT INTO tasks (id, type, params, status, enqueued_at) VALUES ('old', 'T', '{}', 'queued', 1);
         PRAGMA user_version = 2;",
    );
    s.submit(&Envelope {
        priority: 3,
        ..env("new", "T")
    })
    .await
    .expect("submit");
    let got = s.claim(&req(&[(&["T"], 2)])).await.expect("claim");
    assert_eq!(ids(&got), vec!["new", "old"]);
}
