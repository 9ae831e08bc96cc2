//! `workerhost pause TYPE` and `workerhost resume TYPE`.

use super::Usage;
use super::operate::{failure, open};
use std::path::Path;
use workerhost_adapters::Queue;

/// Kept in the task manager: every host sharing it stops (or starts again) claiming the type within
/// about 2 s; tasks already running finish.
pub async fn set_paused(path: &Path, task_type: &str, paused: bool) -> anyhow::Result<u8> {
    if task_type.trim().is_empty() {
        return Err(Usage("the task type must not be empty".into()).into());
    }
    let (_, source) = open(path).await?;
    source
        .set_paused(task_type, paused)
        .await
        .map_err(failure)?;
    if paused {
        println!("paused {task_type}: no host claims it until `workerhost resume {task_type}`");
    } else {
        println!("resumed {task_type}");
    }
    Ok(0)
}
