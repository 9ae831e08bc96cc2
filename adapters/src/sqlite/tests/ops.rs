//! Cancel, dead letters, depth and pause on the sqlite queue, against a real file.

use super::*;
use crate::ops::{Cancelled, DeadFilter, DeadSelection, OpsError};

async fn kill_dead(s: &SqliteSource, id: &str) {
    let d = claim(s, &["T"], 1).await;
    assert_eq!(ids(&d), [id]);
    let mut doc = doc(id, "dead", "h1", json!({"message": format!("boom {id}")}));
    doc.attempts = 3;
    s.settle(&d[0].lease, &doc).await.expect("settle dead");
}

#[tokio::test]
async fn cancel_queued_running_finished_and_unknown() {
    let dir = TempDir::new().expect("tempdir");
    let s = open(&dir, "h1", 60_000);
    submit_all(&s, &[("q1", "T"), ("r1", "T"), ("done1", "T")]).await;
    assert_eq!(s.cancel("q1").await.ok(), Some(Cancelled::Done));
    let st = state(&s, "q1").await;
    assert_eq!(st.status, "cancelled");
    assert_eq!(st.result.map(|r| r.status.as_str()), Some("cancelled"));
    assert!(
        matches!(s.cancel("q1").await, Err(OpsError::Finished { status, .. }) if status == "cancelled")
    );
    assert!(matches!(s.cancel("nope").await, Err(OpsError::NotFound { id }) if id == "nope"));
    // A cancelled task is never claimed.
    let d = claim(&s, &["T"], 1).await;
    assert_eq!(ids(&d), ["r1"]);
    assert_eq!(s.cancel("r1").await.ok(), Some(Cancelled::Requested));
    // The renewal says "cancelled" and keeps the lease, so the host can record it.
    let revoked = s.renew(&[d[0].lease.clone()]).await.expect("renew");
    assert_eq!(revoked.len(), 1);
    assert_eq!(revoked[0].reason, RevokeReason::Cancelled);
    let mut c = doc("r1", "cancelled", "h1", json!({"message": "cancelled"}));
    c.error = Some(json!({"message": "cancelled while running"}));
    s.settle(&d[0].lease, &c).await.expect("settle cancelled");
    assert_eq!(state(&s, "r1").await.status, "cancelled");
    // A finished task is left alone.
    let d = claim(&s, &["T"], 1).await;
    s.settle(&d[0].lease, &doc("done1", "succeeded", "h1", json!(1)))
        .await
        .expect("settle");
    assert!(
        matches!(s.cancel("done1").await, Err(OpsError::Finished { status, .. }) if status == "succeeded")
    );
    assert_eq!(state(&s, "done1").await.status, "succeeded");
}

#[tokio::test]
async fn a_cancel_racing_the_tasks_own_outcome_leaves_exactly_one() {
    let dir = TempDir::new().expect("tempdir");
    let s = open(&dir, "h1", 60_000);
    submit_all(&s, &[("race", "T")]).await;
    let d = claim(&s, &["T"], 1).await;
    assert_eq!(s.cancel("race").await.ok(), Some(Cancelled::Requested));
    // The task finished before the host learned of the cancel: its own outcome is recorded...
    s.settle(&d[0].lease, &doc("race", "succeeded", "h1", json!("r")))
        .await
        .expect("settle");
    // ... and the late cancelled settle is fenced off.
    let c = doc("race", "cancelled", "h1", json!(null));
    assert!(is_lost(s.settle(&d[0].lease, &c).await));
    let st = state(&s, "race").await;
    assert_eq!(st.status, "succeeded");
    assert_eq!(st.result.map(|r| r.status.as_str()), Some("succeeded"));
}

#[tokio::test]
async fn a_cancel_pending_on_a_dead_host_ends_cancelled_not_rerun() {
    let dir = TempDir::new().expect("tempdir");
    let a = open(&dir, "a", 100);
    let b = open(&dir, "b", 60_000);
    submit_all(&a, &[("orphan", "T")]).await;
    assert_eq!(claim(&a, &["T"], 1).await.len(), 1);
    assert_eq!(a.cancel("orphan").await.ok(), Some(Cancelled::Requested));
    tokio::time::sleep(Duration::from_millis(250)).await;
    assert!(claim(&b, &["T"], 1).await.is_empty());
    let st = state(&b, "orphan").await;
    assert_eq!(st.status, "cancelled");
    assert_eq!(st.result.map(|r| r.status.as_str()), Some("cancelled"));
}

#[tokio::test]
async fn dead_letters_list_retry_and_purge() {
    let dir = TempDir::new().expect("tempdir");
    let s = open(&dir, "h1", 60_000);
    for id in ["d1", "d2", "d3"] {
        submit_all(&s, &[(id, "T")]).await;
        kill_dead(&s, id).await;
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    submit_all(&s, &[("other", "U"), ("ok", "T")]).await;
    let d = claim(&s, &["T"], 1).await;
    s.settle(&d[0].lease, &doc("ok", "succeeded", "h1", json!(1)))
        .await
        .expect("settle");
    let all = s.dead_list(&DeadFilter::default()).await.expect("list");
    let names: Vec<&str> = all.iter().map(|d| d.id.as_str()).collect();
    assert_eq!(names, ["d3", "d2", "d1"], "newest first");
    assert_eq!(all[0].attempts, 3);
    assert_eq!(all[0].error.as_deref(), Some("boom d3"));
    assert!(all[0].at.as_deref().is_some_and(|a| a.ends_with('Z')));
    let two = DeadFilter {
        limit: Some(2),
        ..DeadFilter::default()
    };
    assert_eq!(s.dead_list(&two).await.expect("list").len(), 2);
    let only_u = DeadFilter {
        task_type: Some("U".into()),
        ..DeadFilter::default()
    };
    assert!(s.dead_list(&only_u).await.expect("list").is_empty());

    // Retry of an id that is not dead (or unknown) changes nothing, not even the dead ones named with it.
    let bad = DeadSelection::Ids(vec!["d1".into(), "ok".into()]);
    assert!(
        matches!(s.dead_retry(&bad).await, Err(OpsError::NotDead { id, status }) if id == "ok" && status == "succeeded")
    );
    let unknown = DeadSelection::Ids(vec!["d1".into(), "ghost".into()]);
    assert!(
        matches!(s.dead_retry(&unknown).await, Err(OpsError::NotFound { id }) if id == "ghost")
    );
    assert_eq!(state(&s, "d1").await.status, "dead");

    assert_eq!(
        s.dead_retry(&DeadSelection::Ids(vec!["d1".into()]))
            .await
            .expect("retry"),
        1
    );
    let st = state(&s, "d1").await;
    assert_eq!((st.status.as_str(), st.deliveries), ("queued", 0));
    assert!(st.result.is_none());
    let d = claim(&s, &["T"], 5).await;
    assert_eq!(ids(&d), ["d1"], "same id, back in the queue");
    assert_eq!(d[0].deliveries, 1, "attempts reset");
    assert_eq!(
        d[0].envelope.as_ref().map(|e| e.params.clone()).ok(),
        env("d1", "T").params.into()
    );

    // Purge: an age filter that matches nothing, then everything of a type.
    let young = DeadFilter {
        before_ms: Some(now_ms() - 3_600_000),
        ..DeadFilter::default()
    };
    assert_eq!(s.dead_purge(&young).await.expect("purge"), 0);
    assert_eq!(
        s.dead_retry(&DeadSelection::All(DeadFilter {
            task_type: Some("U".into()),
            ..DeadFilter::default()
        }))
        .await
        .expect("retry all U"),
        0
    );
    let old = DeadFilter {
        before_ms: Some(now_ms() + 1),
        task_type: Some("T".into()),
        ..DeadFilter::default()
    };
    assert_eq!(s.dead_purge(&old).await.expect("purge"), 2);
    assert!(s.status("d2").await.expect("status").is_none());
    assert_eq!(
        state(&s, "ok").await.status,
        "succeeded",
        "only dead rows go"
    );
}

#[tokio::test]
async fn depth_counts_and_pause_stops_claims() {
    let dir = TempDir::new().expect("tempdir");
    let s = open(&dir, "h1", 60_000);
    submit_all(&s, &[("a1", "A"), ("a2", "A"), ("a3", "A"), ("b1", "B")]).await;
    assert_eq!(claim(&s, &["A"], 1).await.len(), 1);
    s.set_paused("B", true).await.expect("pause");
    s.set_paused("B", true).await.expect("pause twice is fine");
    s.set_paused("C", true)
        .await
        .expect("pause a type with no tasks");
    assert!(
        claim(&s, &["B"], 5).await.is_empty(),
        "a paused type is not claimed"
    );
    let depth = s.depth().await.expect("depth");
    let a = depth.iter().find(|d| d.task_type == "A").expect("A");
    assert_eq!((a.queued, a.running, a.dead, a.paused), (2, 1, 0, false));
    assert!(a.oldest_seconds.is_some_and(|s| s >= 0.0));
    let b = depth.iter().find(|d| d.task_type == "B").expect("B");
    assert_eq!((b.queued, b.paused), (1, true));
    let c = depth.iter().find(|d| d.task_type == "C").expect("C");
    assert_eq!((c.queued, c.paused, c.oldest_seconds), (0, true, None));
    s.set_paused("B", false).await.expect("resume");
    assert_eq!(ids(&claim(&s, &["B"], 5).await), ["b1"]);
}

/// The depth statement reads the indexes only: no full scan of `tasks`, whatever the finished rows.
#[test]
fn the_depth_query_uses_the_indexes() {
    let dir = TempDir::new().expect("tempdir");
    drop(open(&dir, "h1", 60_000));
    let c = raw_conn(&dir);
    let plan: Vec<String> = c
        .prepare(&format!("EXPLAIN QUERY PLAN {}", super::super::ops::DEPTH))
        .expect("explain")
        .query_map([], |r| r.get::<_, String>(3))
        .expect("rows")
        .collect::<Result<_, _>>()
        .expect("plan");
    let text = plan.join("\n");
    assert!(text.contains("USING COVERING INDEX tasks_claim"), "{text}");
    assert!(text.contains("INTEGER PRIMARY KEY"), "{text}");
    for line in &plan {
        assert!(
            !(line.starts_with("SCAN") && !line.contains("INDEX") && !line.contains("g")),
            "a full scan: {text}"
        );
    }
}

#[tokio::test]
async fn a_version_1_file_is_migrated_with_its_rows() {
    let dir = TempDir::new().expect("tempdir");
    let s = open_old_version(
        &dir,
        "CREATE TABLE tasks (seq INTEGER PRIMARY KEY AUTOINCREMENT, id TEXT UNIQUE NOT NULL, type TEXT NOT NULL,
           params TEXT NOT NULL DEFAULT '{}', correlation_id TEXT, status TEXT NOT NULL DEFAULT 'queued'
           CHECK (status IN ('queued', 'running', 'succeeded', 'dead')), deliveries INTEGER NOT NULL DEFAULT 0,
           lease_owner TEXT, lease_until INTEGER, lease_token INTEGER NOT NULL DEFAULT 0, result TEXT, error TEXT,
           enqueued_at INTEGER, finished_at INTEGER);
         CREATE INDEX tasks_claim ON tasks (status, type, seq);
         INSERT INTO tasks (id, type, params, status, enqueued_at) VALUES ('old1', 'T', '{\"n\": \"old1\"}', 'queued', 1);
         INSERT INTO tasks (id, type, params, status, deliveries, error, finished_at) VALUES ('old2', 'T', '{}', 'dead', 4, 'x', 2);
         PRAGMA user_version = 1;",
    );
    assert_eq!(
        s.dead_list(&DeadFilter::default()).await.expect("dead")[0].id,
        "old2"
    );
    assert_eq!(s.cancel("old1").await.ok(), Some(Cancelled::Done));
    submit_all(&s, &[("new1", "T")]).await;
    let seq: i64 = raw_conn(&dir)
        .query_row("SELECT seq FROM tasks WHERE id = 'new1'", [], |r| r.get(0))
        .expect("seq");
    assert_eq!(seq, 3, "AUTOINCREMENT continues after the copied rows");
}
