//! A small producer: enqueues N tasks on a workerhost sqlite queue file and waits for their results,
//! with the adapters crate's queue side only (no host in this process; a `workerhost run` on the same
//! file runs them).
//!
//! ```text
//! rust-producer QUEUE.db TYPE [COUNT] [TIMEOUT_SECONDS]
//! ```
//! Prints one result document per line; exits 1 when a task failed or has no result in time, 2 on bad use.

use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;
use workerhost_adapters::sqlite::{SqliteOptions, SqliteSource};
use workerhost_adapters::{Envelope, Queue};

#[tokio::main]
async fn main() -> ExitCode {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let (Some(path), Some(task_type)) = (args.first(), args.get(1)) else {
        eprintln!("usage: rust-producer QUEUE.db TYPE [COUNT] [TIMEOUT_SECONDS]");
        return ExitCode::from(2);
    };
    let number = |i: usize, default: u64| args.get(i).map_or(Ok(default), |a| a.parse::<u64>());
    let (Ok(count), Ok(timeout)) = (number(2, 3), number(3, 60)) else {
        eprintln!("rust-producer: COUNT and TIMEOUT_SECONDS are whole numbers");
        return ExitCode::from(2);
    };
    match run(path.into(), task_type, count, Duration::from_secs(timeout)).await {
        Ok(true) => ExitCode::SUCCESS,
        Ok(false) => ExitCode::from(1),
        Err(e) => {
            eprintln!("rust-producer: {e}");
            ExitCode::from(1)
        }
    }
}

/// Whether every task succeeded in time.
async fn run(
    path: PathBuf,
    task_type: &str,
    count: u64,
    timeout: Duration,
) -> Result<bool, workerhost_adapters::AdapterError> {
    let queue = SqliteSource::open(SqliteOptions {
        path,
        host_id: format!("rust-producer-{}", std::process::id()),
        lease: Duration::from_secs(30),
        poll_interval: Duration::from_secs(1),
    })?;
    let mut ids = Vec::new();
    for n in 0..count {
        let mut params = serde_json::Map::new();
        params.insert("n".into(), n.into());
        let id = format!("producer-{}-{n}", std::process::id());
        ids.push(queue.enqueue(&Envelope::new(id, task_type, params)).await?);
    }
    let mut all_ok = true;
    for id in &ids {
        match queue
            .wait_result(id, timeout, Duration::from_millis(200))
            .await?
        {
            Some(doc) => {
                all_ok &= doc.status == "succeeded";
                let line = serde_json::to_string(&doc).unwrap_or_else(|e| format!("{id}: {e}"));
                println!("{line}");
            }
            None => {
                eprintln!("rust-producer: task {id}: no result within {timeout:?}");
                all_ok = false;
            }
        }
    }
    Ok(all_ok)
}
