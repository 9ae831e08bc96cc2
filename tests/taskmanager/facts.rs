//! The double answers as the real PrismQ TaskManager does: one test per bullet of SPEC section 4a's "Facts
//! observed on the real service" (and the documented API above it).
//!
//! The same tests run against a real deployment when `WORKERHOST_TEST_PRISMQ_URL` (ending in /api) and
//! `WORKERHOST_TEST_PRISMQ_KEY` are set; the few that need the double's knobs (a short claim timeout, 429s,
//! another worker's claim) then say so and skip.

use crate::server::{self, KEY, TaskManager};
use serde_json::{Value, json};
use std::time::Duration;

/// Where the facts are checked: the double (with its knobs) or a real service.
struct Target {
    url: String,
    key: String,
    double: Option<TaskManager>,
    http: reqwest::Client,
}

/// One answer: status, content type, `Retry-After`, and the body (JSON, or the text as a string).
#[derive(Debug)]
struct Answer {
    status: u16,
    content_type: String,
    retry_after: Option<String>,
    body: Value,
}

impl Answer {
    fn data(&self) -> &Value {
        &self.body["data"]
    }
    fn error(&self) -> &str {
        self.body["error"].as_str().unwrap_or("")
    }
}

impl Target {
    fn new() -> Target {
        let http = reqwest::Client::new();
        match (
            std::env::var("WORKERHOST_TEST_PRISMQ_URL"),
            std::env::var("WORKERHOST_TEST_PRISMQ_KEY"),
        ) {
            (Ok(url), Ok(key)) => Target {
                url: url.trim_end_matches('/').to_string(),
                key,
                double: None,
                http,
            },
            _ => {
                let tm = TaskManager::default();
                Target {
                    url: server::start(tm.clone()),
                    key: KEY.into(),
                    double: Some(tm),
                    http,
                }
            }
        }
    }

    /// The double's knobs, or None (after a notice) against a real service.
    fn knobs(&self, what: &str) -> Option<&TaskManager> {
        if self.double.is_none() {
            eprintln!("SKIPPED against a real service: needs the double's {what}");
        }
        self.double.as_ref()
    }

    async fn send(
        &self,
        method: reqwest::Method,
        path: &str,
        body: Option<&str>,
        key: &str,
    ) -> Answer {
        let mut req = self
            .http
            .request(method, format!("{}{path}", self.url))
            .header("X-API-Key", key);
        if let Some(b) = body {
            req = req
                .header("content-type", "application/json")
                .body(b.to_string());
        }
        let resp = req.send().await.expect("request");
        let status = resp.status().as_u16();
        let header = |n: &str| {
            resp.headers()
                .get(n)
                .and_then(|v| v.to_str().ok())
                .map(str::to_string)
        };
        let content_type = header("content-type").unwrap_or_default();
        let retry_after = header("retry-after");
        let text = resp.text().await.expect("body");
        let body = serde_json::from_str(&text).unwrap_or(Value::String(text));
        Answer {
            status,
            content_type,
            retry_after,
            body,
        }
    }

    async fn get(&self, path: &str) -> Answer {
        self.send(reqwest::Method::GET, path, None, &self.key).await
    }

    async fn post(&self, path: &str, body: Value) -> Answer {
        self.send(
            reqwest::Method::POST,
            path,
            Some(&body.to_string()),
            &self.key,
        )
        .await
    }

    /// Registers a task type with a name unique to this run; returns (name, numeric id).
    async fn new_type(&self, stem: &str) -> (String, u64) {
        let name = format!("Facts.{stem}.{}", workerhost_adapters::now_ms());
        let r = self
            .post(
                "/task-types/register",
                json!({"name": name, "version": "1.0.0", "param_schema": {"type": "object"}}),
            )
            .await;
        assert_eq!(r.status, 200, "{r:?}");
        let got = self.get(&format!("/task-types/{name}")).await;
        (name, number(&got.data()["items"][0]["id"]))
    }

    async fn create(&self, type_name: &str, params: Value) -> Answer {
        self.post("/tasks", json!({"type": type_name, "params": params}))
            .await
    }

    async fn claim(&self, worker: &str, type_id: u64) -> Answer {
        self.post(
            "/tasks/claim",
            json!({"worker_id": worker, "task_type_id": type_id}),
        )
        .await
    }

    async fn complete(&self, id: u64, body: Value) -> Answer {
        self.post(&format!("/tasks/{id}/complete"), body).await
    }

    async fn item(&self, id: u64) -> Value {
        let a = self.get(&format!("/tasks/{id}")).await;
        assert_eq!(a.status, 200, "{a:?}");
        a.data()["items"][0].clone()
    }
}

/// An id as either form, for comparing.
fn number(v: &Value) -> u64 {
    v.as_u64()
        .or_else(|| v.as_str().and_then(|s| s.parse().ok()))
        .unwrap_or_else(|| panic!("not an id: {v}"))
}

fn unique_params() -> Value {
    json!({"n": workerhost_adapters::now_ms(), "r": rand_u32()})
}

fn rand_u32() -> u32 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.subsec_nanos())
        .unwrap_or(0)
}

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
