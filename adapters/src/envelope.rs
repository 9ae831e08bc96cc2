//! The documents every adapter moves: the task envelope in, the result document out.

use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};

/// A task as every task manager carries it: `{"id", "type", "params", "correlation_id"?}`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Envelope {
    pub id: String,
    #[serde(rename = "type")]
    pub task_type: String,
    #[serde(default)]
    pub params: Map<String, Value>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub correlation_id: Option<String>,
}

impl Envelope {
    /// Parses and validates a message body. The error says what is wrong, for the dead letter.
    pub fn parse(raw: &[u8]) -> Result<Envelope, String> {
        let v: Value =
            serde_json::from_slice(raw).map_err(|e| format!("message is not JSON: {e}"))?;
        Self::from_value(v)
    }

    pub fn from_value(v: Value) -> Result<Envelope, String> {
        let Value::Object(mut m) = v else {
            return Err("message is not a JSON object".into());
        };
        let id = match m.remove("id") {
            Some(Value::String(s)) if !s.is_empty() => s,
            Some(Value::Number(n)) => n.to_string(),
            Some(_) => return Err("field `id` must be a non-empty string".into()),
            None => return Err("missing field `id`".into()),
        };
        let task_type = match m.remove("type") {
            Some(Value::String(s)) if !s.is_empty() => s,
            Some(_) => {
                return Err(format!(
                    "task {id}: field `type` must be a non-empty string"
                ));
            }
            None => return Err(format!("task {id}: missing field `type`")),
        };
        let params = match m.remove("params") {
            None | Some(Value::Null) => Map::new(),
            Some(Value::Object(p)) => p,
            Some(_) => return Err(format!("task {id}: field `params` must be an object")),
        };
        let correlation_id = match m.remove("correlation_id") {
            None | Some(Value::Null) => None,
            Some(Value::String(s)) => Some(s),
            Some(other) => Some(other.to_string()),
        };
        Ok(Envelope {
            id,
            task_type,
            params,
            correlation_id,
        })
    }
}

/// The outcome of a task as it is stored, published or reported.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ResultDocument {
    pub id: String,
    #[serde(rename = "type")]
    pub task_type: String,
    /// `succeeded` or `dead`.
    pub status: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub result: Option<Value>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub error: Option<Value>,
    pub attempts: u32,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub worker: Option<String>,
    pub host: String,
    /// RFC 3339 UTC.
    pub started_at: String,
    pub finished_at: String,
    pub duration_ms: u64,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub correlation_id: Option<String>,
}

impl ResultDocument {
    pub fn succeeded(&self) -> bool {
        self.status == "succeeded"
    }

    /// The short, readable form of `error` (its `message` when it is an object), for dead-letter fields,
    /// columns and the status page. `None` without an error.
    pub fn error_message(&self) -> Option<String> {
        Some(match self.error.as_ref()? {
            Value::Object(m) => match m.get("message") {
                Some(Value::String(s)) => s.clone(),
                Some(other) => other.to_string(),
                None => Value::Object(m.clone()).to_string(),
            },
            Value::String(s) => s.clone(),
            other => other.to_string(),
        })
    }
}

/// What `workerhost status ID` prints.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct TaskStatus {
    pub id: String,
    #[serde(rename = "type")]
    pub task_type: String,
    /// queued | running | succeeded | dead
    pub status: String,
    pub deliveries: u32,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub result: Option<ResultDocument>,
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn parses_valid_and_names_what_is_wrong() {
        let e = Envelope::parse(br#"{"id":"1","type":"T","params":{"a":1}}"#).expect("valid");
        assert_eq!(e.task_type, "T");
        assert_eq!(e.params["a"], 1);
        assert!(
            Envelope::parse(b"nope")
                .expect_err("invalid")
                .contains("not JSON")
        );
        assert!(
            Envelope::parse(br#"{"type":"T"}"#)
                .expect_err("invalid")
                .contains("missing field `id`")
        );
        assert!(
            Envelope::parse(br#"{"id":"7","params":{}}"#)
                .expect_err("invalid")
                .contains("task 7: missing field `type`")
        );
        assert!(
            Envelope::parse(br#"{"id":"7","type":"T","params":[1]}"#)
                .expect_err("invalid")
                .contains("params")
        );
        // ids arrive as numbers from some task managers
        assert_eq!(
            Envelope::parse(br#"{"id":42,"type":"T"}"#)
                .expect("valid")
                .id,
            "42"
        );
    }

    #[test]
    fn error_message_is_the_short_readable_form() {
        let doc = |error: Option<Value>| ResultDocument {
            id: "t".into(),
            task_type: "T".into(),
            status: "dead".into(),
            result: None,
            error,
            attempts: 1,
            worker: None,
            host: "h".into(),
            started_at: String::new(),
            finished_at: String::new(),
            duration_ms: 0,
            correlation_id: None,
        };
        let cases = [
            (Some(json!({"type": "X", "message": "boom"})), Some("boom")),
            (Some(json!({"message": 7})), Some("7")),
            (Some(json!({"type": "X"})), Some(r#"{"type":"X"}"#)),
            (Some(json!("plain")), Some("plain")),
            (Some(json!(3)), Some("3")),
            (None, None),
        ];
        for (error, want) in cases {
            assert_eq!(
                doc(error.clone()).error_message().as_deref(),
                want,
                "{error:?}"
            );
        }
    }
}
