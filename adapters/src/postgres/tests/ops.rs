//! Section 8 operations against the machine's PostgreSQL, as sqlite's ops tests check them.

use super::*;
use crate::ops::{Cancelled, DeadFilter, DeadSelection, OpsError};
use crate::{RevokeReason, now_ms};

/// Claims `id` (type `T`) and settles it dead.
async fn make_dead(q: &PostgresSource, id: &str, t: &str) {
    q.submit(&env(id, t)).await.expect("submit");
    let got = q.claim(&req(&[(&[t], 1)], 1)).await.expect("claim");
    assert_eq!(ids(&got), vec![id.to_string()]);
    let mut d = doc(id, "dead");
    d.task_type = t.into();
    q.settle(&got[0].lease, &d).await.expect("settle dead");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cancel_queued_running_and_finished_tasks() {
    if !server_up() {
        return;
    }
    let s = Schema::new("cancel");
    let q = s.open("a", json!({})).await;
    q.submit(&env("c1", "T")).await.expect("submit");
    assert_eq!(q.cancel("c1").await.expect("cancel"), Cancelled::Done);
    let st = q.status("c1").await.expect("status").expect("row");
    assert_eq!(st.status, "cancelled");
    let r = st.result.expect("a result document");
    assert_eq!((r.status.as_str(), r.id.as_str()), ("cancelled", "c1"));
    assert!(
        q.claim(&req(&[(&["T"], 5)], 5))
            .await
            .expect("claim")
            .is_empty()
    );

    q.submit(&env("c2", "T")).await.expect("submit");
    let held = q.claim(&req(&[(&["T"], 1)], 1)).await.expect("claim");
    let lease = held[0].lease.clone();
    assert!(
        q.renew(std::slice::from_ref(&lease))
            .await
            .expect("renew")
            .is_empty()
    );
    assert_eq!(q.cancel("c2").await.expect("cancel"), Cancelled::Requested);
    let revoked = q.renew(std::slice::from_ref(&lease)).await.expect("renew");
    assert_eq!(revoked.len(), 1);
    assert_eq!(revoked[0].reason, RevokeReason::Cancelled);
    assert_eq!(revoked[0].lease, lease);
    q.settle(&lease, &doc("c2", "cancelled"))
        .await
        .expect("settle cancelled");
    assert_eq!(
        q.status("c2").await.expect("status").expect("row").status,
        "cancelled"
    );

    match q.cancel("c2").await {
        Err(OpsError::Finished { id, status }) => {
            assert_eq!((id.as_str(), status.as_str()), ("c2", "cancelled"))
        }
        other => panic!("expected Finished, got {other:?}"),
    }
    assert!(matches!(
        q.cancel("nope").await,
        Err(OpsError::NotFound { .. })
    ));
    q.close().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn dead_letters_list_retry_and_purge() {
    if !server_up() {
        return;
    }
    let s = Schema::new("dead");
    let q = s.open("a", json!({})).await;
    make_dead(&q, "d1", "A").await;
    make_dead(&q, "d2", "A").await;
    make_dead(&q, "d3", "B").await;
    q.submit(&env("live", "A")).await.expect("submit");

    let all = q.dead_list(&DeadFilter::default()).await.expect("list");
    let mut got: Vec<&str> = all.iter().map(|d| d.id.as_str()).collect();
    got.sort();
    assert_eq!(got, ["d1", "d2", "d3"]);
    assert!(all.iter().all(|d| d.attempts == 2 && d.at.is_some()));
    assert_eq!(all[0].error.as_deref(), Some("boom"));
    let only_a = DeadFilter {
        task_type: Some("A".into()),
        ..DeadFilter::default()
    };
    assert_eq!(q.dead_list(&only_a).await.expect("list").len(), 2);
    let one = DeadFilter {
        limit: Some(1),
        ..DeadFilter::default()
    };
    assert_eq!(q.dead_list(&one).await.expect("list").len(), 1);

    // A retry of ids is all or nothing.
    let bad = DeadSelection::Ids(vec!["d1".into(), "live".into()]);
    assert!(matches!(
        q.dead_retry(&bad).await,
        Err(OpsError::NotDead { .. })
    ));
    let unknown = DeadSelection::Ids(vec!["d1".into(), "zz".into()]);
    assert!(matches!(
        q.dead_retry(&unknown).await,
        Err(OpsError::NotFound { .. })
    ));
    assert_eq!(
        q.status("d1").await.expect("status").expect("row").status,
        "dead"
    );

    // A retry wakes an idle host (the NOTIFY trigger) and the task runs again, same id and params.
    let waiter = s.open("b", json!({})).await;
    // The first wait starts listening and returns (a start of listening wakes once).
    tokio::time::timeout(Duration::from_secs(10), waiter.wait_for_tasks())
        .await
        .expect("first wait");
    let wait = tokio::spawn(async move {
        let t0 = Instant::now();
        waiter.wait_for_tasks().await;
        (waiter, t0.elapsed())
    });
    tokio::time::sleep(Duration::from_millis(500)).await;
    let n = q
        .dead_retry(&DeadSelection::Ids(vec!["d1".into()]))
        .await
        .expect("retry");
    assert_eq!(n, 1);
    let (waiter, waited) = tokio::time::timeout(Duration::from_secs(20), wait)
        .await
        .expect("the idle host is woken")
        .expect("join");
    assert!(
        waited < Duration::from_secs(30),
        "woken by NOTIFY, not the 60 s poll"
    );
    let st = q.status("d1").await.expect("status").expect("row");
    assert_eq!(
        (st.status.as_str(), st.attempts, st.deliveries),
        ("queued", 0, 0)
    );
    assert!(st.result.is_none());
    let again = q.claim(&req(&[(&["A"], 5)], 5)).await.expect("claim");
    let mut got = ids(&again);
    got.sort();
    assert_eq!(got, ["d1", "live"]);
    let d1 = again.iter().find(|d| d.lease.task_id == "d1").expect("d1");
    assert_eq!(d1.deliveries, 1);
    let env = d1.envelope.as_ref().expect("a well-formed envelope");
    assert_eq!((env.task_type.as_str(), env.attempts), ("A", 0));

    // Retry all of a type, then purge by type and age.
    make_dead(&q, "d4", "B").await;
    let all_b = DeadSelection::All(DeadFilter {
        task_type: Some("B".into()),
        ..DeadFilter::default()
    });
    assert_eq!(q.dead_retry(&all_b).await.expect("retry all"), 2);
    make_dead(&q, "d5", "C").await;
    let old = DeadFilter {
        before_ms: Some(now_ms() - 3_600_000),
        ..DeadFilter::default()
    };
    assert_eq!(
        q.dead_purge(&old).await.expect("purge"),
        0,
        "nothing is an hour old"
    );
    let wrong_type = DeadFilter {
        task_type: Some("Z".into()),
        ..DeadFilter::default()
    };
    assert_eq!(q.dead_purge(&wrong_type).await.expect("purge"), 0);
    let c_now = DeadFilter {
        task_type: Some("C".into()),
        before_ms: Some(now_ms() + 1000),
        ..DeadFilter::default()
    };
    assert_eq!(q.dead_purge(&c_now).await.expect("purge"), 1);
    assert!(q.status("d5").await.expect("status").is_none());
    assert_eq!(
        q.dead_purge(&DeadFilter::default()).await.expect("purge"),
        1,
        "d2 is left"
    );
    assert!(
        q.dead_list(&DeadFilter::default())
            .await
            .expect("list")
            .is_empty()
    );
    waiter.close().await;
    q.close().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn depth_counts_each_state_and_pause_stops_claims() {
    if !server_up() {
        return;
    }
    let s = Schema::new("depth");
    let q = s.open("a", json!({})).await;
    for i in 0..3 {
        q.submit(&env(&format!("q{i}"), "A")).await.expect("submit");
    }
    let mut later = env("s1", "A");
    later.run_at = Some(crate::Stamp(now_ms() + 3_600_000));
    q.submit(&later).await.expect("submit");
    make_dead(&q, "x1", "B").await;
    q.submit(&env("r1", "B")).await.expect("submit");
    let held = q.claim(&req(&[(&["B"], 1)], 1)).await.expect("claim");
    assert_eq!(ids(&held), ["r1"]);
    q.submit(&env("ok", "C")).await.expect("submit");
    let c = q.claim(&req(&[(&["C"], 1)], 1)).await.expect("claim");
    q.settle(&c[0].lease, &doc("ok", "succeeded"))
        .await
        .expect("settle");
    tokio::time::sleep(Duration::from_millis(300)).await;

    q.set_paused("A", true).await.expect("pause");
    q.set_paused("A", true).await.expect("pause twice is fine");
    let mut d = q.depth().await.expect("depth");
    d.sort_by(|a, b| a.task_type.cmp(&b.task_type));
    assert_eq!(d.len(), 2, "finished types are not listed: {d:?}");
    let (a, b) = (&d[0], &d[1]);
    assert_eq!(
        (
            a.task_type.as_str(),
            a.queued,
            a.scheduled,
            a.running,
            a.dead
        ),
        ("A", 3, 1, 0, 0)
    );
    assert!(a.paused);
    assert!(a.oldest_seconds.is_some_and(|s| s >= 0.3), "{a:?}");
    assert_eq!(
        (b.queued, b.scheduled, b.running, b.dead, b.paused),
        (0, 0, 1, 1, false)
    );
    assert_eq!(b.oldest_seconds, None);

    assert!(
        q.claim(&req(&[(&["A"], 5)], 5))
            .await
            .expect("claim")
            .is_empty(),
        "A is paused"
    );
    q.set_paused("A", false).await.expect("resume");
    assert_eq!(
        q.claim(&req(&[(&["A"], 5)], 5)).await.expect("claim").len(),
        3
    );
    assert!(!q.depth().await.expect("depth").iter().any(|d| d.paused));
    q.close().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_cancel_pending_when_its_host_died_is_recorded_not_run_again() {
    if !server_up() {
        return;
    }
    let s = Schema::new("cancel_gone");
    let a = s.open("a", json!({"lease_seconds": 1})).await;
    a.submit(&env("g1", "T")).await.expect("submit");
    assert_eq!(
        a.claim(&req(&[(&["T"], 1)], 1)).await.expect("claim").len(),
        1
    );
    assert_eq!(a.cancel("g1").await.expect("cancel"), Cancelled::Requested);
    a.close().await;
    tokio::time::sleep(Duration::from_millis(1500)).await;
    let b = s.open("b", json!({})).await;
    assert!(
        b.claim(&req(&[(&["T"], 1)], 1))
            .await
            .expect("claim")
            .is_empty()
    );
    let st = b.status("g1").await.expect("status").expect("row");
    assert_eq!(st.status, "cancelled");
    let r = st.result.expect("a result document");
    assert_eq!((r.status.as_str(), r.attempts), ("cancelled", 1));
    b.close().await;
}
