//! `workerhost cancel ID`.

use super::operate::{failure, open};
use std::path::Path;
use std::time::{Duration, Instant};
use workerhost_adapters::ops::Cancelled;
use workerhost_adapters::{Queue, TaskState};

/// A queued or scheduled task becomes `cancelled` at once. A running task's host stops it at its next
/// renewal: this waits (about a lease) to say which final status won; a task that finished meanwhile on
/// its own keeps its outcome.
pub async fn cancel(path: &Path, id: &str) -> anyhow::Result<u8> {
    let (cfg, source) = open(path).await?;
    match source.cancel(id).await.map_err(failure)? {
        Cancelled::Done => {
            println!("cancelled {id}");
            Ok(0)
        }
        Cancelled::Requested => {
            let lease = cfg.task_manager.lease();
            let limit = lease + cfg.host.kill_grace + Duration::from_secs(5);
            println!("{id} is running: its host stops it at its next lease renewal");
            let end = Instant::now() + limit;
            while Instant::now() < end {
                let status = source.status(id).await?.map(|s| s.status);
                match status {
                    Some(TaskState::Cancelled) => {
                        println!("cancelled {id}");
                        return Ok(0);
                    }
                    Some(s @ (TaskState::Succeeded | TaskState::Dead)) => {
                        println!("{id} finished on its own as {s} before the cancel reached it");
                        return Ok(1);
                    }
                    _ => tokio::time::sleep(Duration::from_millis(200)).await,
                }
            }
            println!(
                "{id} is still running after {:.0} s; its host records it cancelled when it notices (is that host alive?)",
                limit.as_secs_f64()
            );
            Ok(0)
        }
    }
}
