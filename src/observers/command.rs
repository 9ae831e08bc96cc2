//! The command hook: runs an argv (never a shell) per event with the event document on stdin, in the
//! config file's folder, in its own process group. It gets the host's environment plus
//! `WORKERHOST_EVENT` (the event name). Exit 0 is delivered; on `timeout` the whole group is killed.

use super::Event;
use crate::runner::group;
use crate::runner::output::{Tail, drain_lines};
use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::Duration;
use tokio::io::AsyncWriteExt;

/// How much of the command's stderr is kept for the log when it fails.
const STDERR_TAIL: usize = 2048;

pub struct CommandSink {
    argv: Vec<String>,
    timeout: Duration,
    dir: PathBuf,
}

impl CommandSink {
    pub fn new(argv: Vec<String>, timeout: Duration, dir: &Path) -> CommandSink {
        CommandSink {
            argv,
            timeout,
            dir: dir.to_path_buf(),
        }
    }

    pub async fn deliver(&self, e: &Event) -> Result<(), String> {
        let Some((program, args)) = self.argv.split_first() else {
            return Err("empty command".into());
        };
        let mut body = serde_json::to_vec(e).map_err(|err| err.to_string())?;
        body.push(b'\n');
        let mut cmd = tokio::process::Command::new(program);
        cmd.args(args)
            .current_dir(&self.dir)
            .env("WORKERHOST_EVENT", e.event.as_str())
            .stdin(Stdio::piped())
            .stdout(Stdio::null())
            .stderr(Stdio::piped());
        let (mut child, group) = group::start(cmd).await.map_err(|err| err.to_string())?;
        let mut stdin = child.stdin.take();
        let stderr = child.stderr.take();
        let tail = std::sync::Mutex::new(Tail::default());
        let run = async {
            if let Some(mut i) = stdin.take() {
                // A command that does not read its stdin may close it: not an error.
                let _ = i.write_all(&body).await;
            }
            if let Some(s) = stderr {
                drain_lines(s, |line| {
                    if let Ok(mut t) = tail.lock() {
                        t.push(line);
                    }
                })
                .await;
            }
            child.wait().await
        };
        let finished = tokio::time::timeout(self.timeout, run).await;
        match finished {
            Ok(Ok(status)) if status.success() => Ok(()),
            Ok(Ok(status)) => {
                let err = tail.lock().map(|t| t.text()).unwrap_or_default();
                let tail: String = err.trim().chars().rev().take(STDERR_TAIL).collect();
                let tail: String = tail.chars().rev().collect();
                Err(format!("{program} exited with {status}: {tail}"))
            }
            Ok(Err(err)) => Err(format!("waiting for {program}: {err}")),
            Err(_) => {
                group.kill();
                let _ = child.wait().await;
                Err(format!(
                    "{program} took over {:.1} s: its process group was killed",
                    self.timeout.as_secs_f64()
                ))
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::observers::EventKind;

    #[tokio::test]
    async fn the_event_arrives_on_stdin_and_a_hang_is_killed() {
        let dir = tempfile::tempdir().expect("tempdir");
        let out = dir.path().join("got.json");
        let sink = CommandSink::new(
            vec![
                "/bin/sh".into(),
                "-c".into(),
                "cat > got.json; echo \"$WORKERHOST_EVENT\" >> got.json".into(),
            ],
            Duration::from_secs(10),
            dir.path(),
        );
        let mut e = Event::new(EventKind::TaskFailed, "h");
        e.task_id = Some("t1".into());
        sink.deliver(&e).await.expect("delivered");
        let got = std::fs::read_to_string(&out).expect("written");
        let mut lines = got.lines();
        let doc: serde_json::Value =
            serde_json::from_str(lines.next().unwrap_or("")).expect("json");
        assert_eq!(doc["event"], "task_failed");
        assert_eq!(doc["task_id"], "t1");
        assert_eq!(lines.next(), Some("task_failed"));

        // A command whose child keeps running: the group is killed at the timeout.
        let pidfile = dir.path().join("pid");
        let hang = CommandSink::new(
            vec![
                "/bin/sh".into(),
                "-c".into(),
                "sleep 30 & echo $! > pid; wait".into(),
            ],
            Duration::from_millis(300),
            dir.path(),
        );
        let t = std::time::Instant::now();
        let err = hang.deliver(&e).await.expect_err("timed out");
        assert!(err.contains("process group was killed"), "{err}");
        assert!(t.elapsed() < Duration::from_secs(5));
        let pid: i32 = std::fs::read_to_string(&pidfile)
            .expect("pid")
            .trim()
            .parse()
            .expect("pid number");
        std::thread::sleep(Duration::from_millis(100));
        let alive = std::fs::read_to_string(format!("/proc/{pid}/stat"))
            .map(|s| !s.contains(") Z"))
            .unwrap_or(false);
        assert!(!alive, "the background sleep survived");
    }
}
