//! An example workerhost worker written in Rust with the SDK: reverses `params.text`.
//!
//! Run by hand: `echo '{"id":"1","type":"demo.reverse","params":{"text":"abc"}}' | rust-echo-worker`

use workerhost_sdk::{WorkerError, run};

fn main() {
    run(|task| {
        let text = task
            .params
            .get("text")
            .and_then(|v| v.as_str())
            .ok_or_else(|| WorkerError::fatal("params.text (a string) is required"))?;
        eprintln!(
            "reversing {} characters for task {}",
            text.chars().count(),
            task.id
        );
        Ok(serde_json::json!({ "reversed": text.chars().rev().collect::<String>() }))
    })
}
