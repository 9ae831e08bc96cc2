//! Reading the service's claim answers.

use super::*;

fn answer(status: u16, text: &str) -> Answer {
    let (body, json) = match serde_json::from_str::<Value>(text) {
        Ok(v) => (v, true),
        Err(_) => (Value::String(text.into()), false),
    };
    Answer { status, body, json }
}

#[test]
fn empty_queues_in_both_spellings_and_a_wrong_url() {
    let a = answer(
        500,
        r#"{"success":false,"error":"There is no active transaction","timestamp":1}"#,
    );
    assert!(matches!(read_claim(&a, "T"), Claim::Empty));
    let a = answer(
        404,
        r#"{"success":false,"error":"No available tasks","timestamp":1}"#,
    );
    assert!(matches!(read_claim(&a, "T"), Claim::Empty));
    let a = answer(404, "<html>Not Found</html>");
    match read_claim(&a, "T") {
        Claim::Fault(e) => assert!(e.to_string().contains("missing /api"), "{e}"),
        _ => panic!("a 404 page is a wrong URL"),
    }
}

#[test]
fn tasks_with_ids_as_numbers_or_strings() {
    let a = answer(
        200,
        r#"{"success":true,"data":{"id":7,"type":"T","params":{"a":1},"attempts":"2"}}"#,
    );
    let Claim::Task(d) = read_claim(&a, "T") else {
        panic!("a task")
    };
    assert_eq!(d.lease.task_id, "7");
    assert_eq!(d.deliveries, 2);
    let a = answer(
        200,
        r#"{"success":true,"data":{"id":"8","params":"{\"a\":1}"}}"#,
    );
    let Claim::Task(d) = read_claim(&a, "T") else {
        panic!("a task")
    };
    let env = d.envelope.as_ref().expect("envelope");
    assert_eq!((env.id.as_str(), env.task_type.as_str()), ("8", "T"));
}

#[test]
fn unreadable_answers_are_named_and_a_readable_id_is_kept() {
    let deep = format!(
        "{{\"data\": {}{}}}",
        "[".repeat(100_000),
        "]".repeat(100_000)
    );
    for text in [
        "<html>oops</html>",
        "",
        r#"{"success":true,"data":{"params":{}}}"#,
        &deep,
    ] {
        match read_claim(&answer(200, text), "T") {
            Claim::Unreadable { task: None, .. } => {}
            _ => panic!("unreadable: {}", &text[..text.len().min(40)]),
        }
    }
    let a = answer(200, r#"{"success":true,"data":{"id":9,"params":7}}"#);
    match read_claim(&a, "T") {
        Claim::Unreadable { task: Some(d), .. } => {
            assert_eq!(d.lease.task_id, "9");
            assert!(d.envelope.is_err());
        }
        _ => panic!("the id is readable"),
    }
}
