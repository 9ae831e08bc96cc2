//! The double answers as the real PrismQ TaskManager does: one test per bullet of SPEC section 4a's "Facts
//! observed on the real service" (and the documented API above it).
//!
//! The same tests run against a real deployment when `WORKERHOST_TEST_PRISMQ_URL` (ending in /api) and
//! `WORKERHOST_TEST_PRISMQ_KEY` are set; the few that need the double's knobs (a short claim timeout, 429s,
//! another worker's claim) then say so and skip.

mod target;

use serde_json::{Value, json};
use std::time::Duration;
use target::{Target, number, unique_params};

#[tokio::test]
async fn early_exits_are_html_without_success_and_routed_answers_are_json() {
    let t = Target::new();
    let bad = t
        .send(reqwest::Method::GET, "/task-types/x", None, "wrong-key")
        .await;
    assert_eq!(bad.status, 401);
    assert!(bad.content_type.starts_with("text/html"), "{bad:?}");
    assert_eq!(bad.body["error"], "Unauthorized");
    assert!(bad.body.get("success").is_none(), "{bad:?}");
    assert!(
        bad.body["message"].is_string() && bad.body["timestamp"].is_string(),
        "{bad:?}"
    );

    let routed = t.get("/task-types/x").await;
    assert_eq!(routed.status, 200);
    assert!(
        routed.content_type.starts_with("application/json"),
        "{routed:?}"
    );
    assert_eq!(routed.body["success"], true);
    assert_eq!(routed.body["message"], "Success");
    assert!(routed.body["timestamp"].is_number(), "{routed:?}");

    let health = t.send(reqwest::Method::GET, "/health", None, "").await;
    assert_eq!(health.status, 200, "/health needs no key: {health:?}");

    let Some(tm) = t.knobs("rate limit") else {
        return;
    };
    {
        let mut s = tm.lock();
        s.throttle = 1;
        s.retry_after = "0".into();
    }
    let limited = t.get("/task-types/x").await;
    assert_eq!(limited.status, 429);
    assert!(limited.content_type.starts_with("text/html"), "{limited:?}");
    assert_eq!(
        limited.retry_after.as_deref(),
        Some("0"),
        "Retry-After may be 0"
    );
    for k in [
        "error",
        "message",
        "retry_after",
        "limit",
        "window",
        "timestamp",
    ] {
        assert!(
            limited.body.get(k).is_some(),
            "429 body lacks {k}: {limited:?}"
        );
    }
    assert!(limited.body.get("success").is_none(), "{limited:?}");
}

#[tokio::test]
async fn validation_errors_add_details_and_every_post_needs_json() {
    let t = Target::new();
    let r = t
        .send(reqwest::Method::POST, "/tasks", Some("not json"), &t.key)
        .await;
    assert_eq!(r.status, 400, "{r:?}");
    assert_eq!(r.body["success"], false);
    let r = t.post("/tasks", json!({"type": "X"})).await;
    assert_eq!(r.status, 400, "params are required: {r:?}");
    let (name, _) = t.new_type("Validation").await;
    let created = t.create(&name, unique_params()).await;
    let id = number(&created.data()["id"]);
    let r = t
        .post(
            &format!("/tasks/{id}/progress"),
            json!({"worker_id": "w", "progress": 50.5}),
        )
        .await;
    assert_eq!(r.status, 400, "{r:?}");
    assert!(r.body["details"].is_array(), "{r:?}");
}

#[tokio::test]
async fn unknown_things_answer_200_with_no_items() {
    let t = Target::new();
    for path in ["/task-types/No.Such.Type.Anywhere", "/tasks/987654321"] {
        let a = t.get(path).await;
        assert_eq!(a.status, 200, "{path}: {a:?}");
        assert_eq!(a.data()["items"], json!([]), "{path}: {a:?}");
        assert_eq!(a.data()["count"], 0, "{path}: {a:?}");
    }
}

#[tokio::test]
async fn create_answers_200_an_unknown_type_404_and_identical_params_the_existing_task() {
    let t = Target::new();
    let (name, type_id) = t.new_type("Create").await;
    let params = unique_params();
    let a = t.create(&name, params.clone()).await;
    assert_eq!(a.status, 200, "200, not 201: {a:?}");
    assert!(a.data()["id"].is_string(), "create's id is a string: {a:?}");
    let id = number(&a.data()["id"]);
    let unknown = t.create("No.Such.Type.Anywhere", unique_params()).await;
    assert_eq!(unknown.status, 404, "{unknown:?}");

    let again = t.create(&name, params.clone()).await;
    assert_eq!(again.status, 200);
    assert!(
        again.data()["id"].is_number(),
        "dedup's id is a number: {again:?}"
    );
    assert_eq!(number(&again.data()["id"]), id);
    assert_eq!(again.data()["deduplicated"], true, "{again:?}");

    // Even a finished task is returned, not recreated.
    let c = t.claim("facts-worker", type_id).await;
    assert_eq!(number(&c.data()["id"]), id, "{c:?}");
    let done = t
        .complete(
            id,
            json!({"worker_id": "facts-worker", "success": true, "result": {"ok": 1}}),
        )
        .await;
    assert_eq!(done.status, 200, "{done:?}");
    let after = t.create(&name, params).await;
    assert_eq!(number(&after.data()["id"]), id, "{after:?}");
    assert_eq!(after.data()["status"], "completed", "{after:?}");
}

#[tokio::test]
async fn ids_are_numbers_in_claim_and_get_and_strings_in_complete_and_progress() {
    let t = Target::new();
    let (name, type_id) = t.new_type("Ids").await;
    let id = number(&t.create(&name, unique_params()).await.data()["id"]);
    let c = t.claim("facts-worker", type_id).await;
    assert_eq!(c.status, 200, "{c:?}");
    assert!(c.data()["id"].is_number(), "{c:?}");
    for k in ["id", "type", "params", "attempts", "priority"] {
        assert!(c.data().get(k).is_some(), "claim data lacks {k}: {c:?}");
    }
    assert!(t.item(id).await["id"].is_number());
    let p = t
        .post(
            &format!("/tasks/{id}/progress"),
            json!({"worker_id": "facts-worker", "progress": 10}),
        )
        .await;
    assert_eq!(p.status, 200, "{p:?}");
    assert!(p.data()["id"].is_string(), "{p:?}");
    let done = t
        .complete(
            id,
            json!({"worker_id": "facts-worker", "success": true, "result": {"a": 1}}),
        )
        .await;
    assert!(done.data()["id"].is_string(), "{done:?}");
}

#[tokio::test]
async fn an_empty_queue_and_an_unknown_type_id_are_500_no_active_transaction() {
    let t = Target::new();
    let (_, type_id) = t.new_type("Empty").await;
    for id in [type_id, 987_654_321] {
        let a = t.claim("facts-worker", id).await;
        assert_eq!(a.status, 500, "{a:?}");
        assert_eq!(a.error(), "There is no active transaction", "{a:?}");
    }
}

#[tokio::test]
async fn an_expired_claim_is_taken_again_by_the_same_worker_and_every_claim_counts() {
    let t = Target::new();
    let Some(tm) = t.knobs("short claim timeout") else {
        return;
    };
    tm.lock().claim_timeout = Duration::from_millis(500);
    let (name, type_id) = t.new_type("Reclaim").await;
    let id = number(&t.create(&name, unique_params()).await.data()["id"]);
    let first = t.claim("same-worker", type_id).await;
    assert_eq!(first.data()["attempts"], 1);
    assert_eq!(
        t.claim("same-worker", type_id).await.status,
        500,
        "not before the timeout"
    );
    tokio::time::sleep(Duration::from_millis(700)).await;
    let second = t.claim("same-worker", type_id).await;
    assert_eq!(number(&second.data()["id"]), id, "{second:?}");
    assert_eq!(second.data()["attempts"], 2, "{second:?}");
    assert_eq!(t.item(id).await["attempts"], 2);
}

#[tokio::test]
async fn complete_is_400_once_not_claimed_403_only_while_another_holds_it_404_when_gone() {
    let t = Target::new();
    let (name, type_id) = t.new_type("Complete").await;
    let id = number(&t.create(&name, unique_params()).await.data()["id"]);
    let unclaimed = t
        .complete(id, json!({"worker_id": "w1", "success": true}))
        .await;
    assert_eq!(unclaimed.status, 400, "{unclaimed:?}");
    assert_eq!(unclaimed.error(), "Task is not in claimed state");
    t.claim("w1", type_id).await;
    let other = t
        .complete(id, json!({"worker_id": "w2", "success": true}))
        .await;
    assert_eq!(other.status, 403, "{other:?}");
    let mine = t
        .complete(
            id,
            json!({"worker_id": "w1", "success": true, "result": {"a": 1}}),
        )
        .await;
    assert_eq!(mine.status, 200, "{mine:?}");
    let twice = t
        .complete(
            id,
            json!({"worker_id": "w1", "success": true, "result": {"a": 1}}),
        )
        .await;
    assert_eq!(twice.status, 400, "a second complete: {twice:?}");
    assert_eq!(twice.error(), "Task is not in claimed state");
    let gone = t
        .complete(987_654_321, json!({"worker_id": "w1", "success": true}))
        .await;
    assert_eq!(gone.status, 404, "{gone:?}");
}

#[tokio::test]
async fn a_late_complete_is_accepted_if_nobody_reclaimed() {
    let t = Target::new();
    let Some(tm) = t.knobs("short claim timeout") else {
        return;
    };
    tm.lock().claim_timeout = Duration::from_millis(300);
    let (name, type_id) = t.new_type("Late").await;
    let id = number(&t.create(&name, unique_params()).await.data()["id"]);
    t.claim("w1", type_id).await;
    tokio::time::sleep(Duration::from_millis(500)).await;
    let late = t
        .complete(
            id,
            json!({"worker_id": "w1", "success": true, "result": {"a": 1}}),
        )
        .await;
    assert_eq!(late.status, 200, "{late:?}");
    // Taken over by another worker after the timeout: the first worker's complete is 403.
    let id2 = number(&t.create(&name, unique_params()).await.data()["id"]);
    t.claim("w1", type_id).await;
    tokio::time::sleep(Duration::from_millis(500)).await;
    assert_eq!(number(&t.claim("w2", type_id).await.data()["id"]), id2);
    let lost = t
        .complete(id2, json!({"worker_id": "w1", "success": true}))
        .await;
    assert_eq!(lost.status, 403, "{lost:?}");
}

#[tokio::test]
async fn a_non_string_error_is_stored_as_array_an_empty_result_as_null_failures_requeue_below_3() {
    let t = Target::new();
    let (name, type_id) = t.new_type("Store").await;
    let id = number(&t.create(&name, unique_params()).await.data()["id"]);
    t.claim("w1", type_id).await;
    let a = t
        .complete(
            id,
            json!({"worker_id": "w1", "success": false, "error": {"message": "x"}}),
        )
        .await;
    assert_eq!(a.status, 200, "{a:?}");
    assert_eq!(a.data()["status"], "pending (retry)", "{a:?}");
    let item = t.item(id).await;
    assert_eq!(item["error_message"], "Array", "{item}");
    assert_eq!(item["status"], "pending");
    for n in 2..=3 {
        t.claim("w1", type_id).await;
        let a = t
            .complete(
                id,
                json!({"worker_id": "w1", "success": false, "error": "boom"}),
            )
            .await;
        let want = if n < 3 { "pending (retry)" } else { "failed" };
        assert_eq!(a.data()["status"], want, "attempt {n}: {a:?}");
    }
    let item = t.item(id).await;
    assert_eq!(item["status"], "failed");
    assert_eq!(item["attempts"], 3);
    assert_eq!(item["error_message"], "boom");

    let id2 = number(&t.create(&name, unique_params()).await.data()["id"]);
    t.claim("w1", type_id).await;
    t.complete(
        id2,
        json!({"worker_id": "w1", "success": true, "result": {}}),
    )
    .await;
    let item = t.item(id2).await;
    assert_eq!(item["status"], "completed");
    assert!(
        item["result"].is_null(),
        "an empty result is stored as NULL: {item}"
    );
}

#[tokio::test]
async fn task_items_carry_status_attempts_claimed_by_result_error_message_progress_and_times() {
    let t = Target::new();
    let (name, type_id) = t.new_type("Item").await;
    let id = number(&t.create(&name, unique_params()).await.data()["id"]);
    t.claim("w1", type_id).await;
    t.complete(
        id,
        json!({"worker_id": "w1", "success": true, "result": {"a": 1}}),
    )
    .await;
    let item = t.item(id).await;
    for k in [
        "status",
        "attempts",
        "claimed_by",
        "result",
        "error_message",
        "progress",
        "created_at",
        "claimed_at",
        "completed_at",
    ] {
        assert!(item.get(k).is_some(), "item lacks {k}: {item}");
    }
    assert_eq!(item["claimed_by"], "w1");
    let result = match &item["result"] {
        Value::String(s) => serde_json::from_str(s).expect("result text"),
        other => other.clone(),
    };
    assert_eq!(result, json!({"a": 1}));
    assert!(
        item.get("error").is_none(),
        "the field is error_message: {item}"
    );
}

#[tokio::test]
async fn progress_wants_an_integer_and_the_claim() {
    let t = Target::new();
    let (name, type_id) = t.new_type("Progress").await;
    let id = number(&t.create(&name, unique_params()).await.data()["id"]);
    let path = format!("/tasks/{id}/progress");
    let unclaimed = t
        .post(&path, json!({"worker_id": "w1", "progress": 10}))
        .await;
    assert_eq!(unclaimed.status, 400, "{unclaimed:?}");
    t.claim("w1", type_id).await;
    for bad in [json!(50.5), json!("70"), json!(101), json!(-1)] {
        let a = t
            .post(&path, json!({"worker_id": "w1", "progress": bad}))
            .await;
        assert_eq!(a.status, 400, "progress {bad}: {a:?}");
    }
    let other = t
        .post(&path, json!({"worker_id": "w2", "progress": 10}))
        .await;
    assert_eq!(other.status, 403, "{other:?}");
    let fine = t
        .post(
            &path,
            json!({"worker_id": "w1", "progress": 70, "message": "m"}),
        )
        .await;
    assert_eq!(fine.status, 200, "{fine:?}");
    assert_eq!(t.item(id).await["progress"], 70);
}
