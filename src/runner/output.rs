//! Reading a worker's output without trusting it: stdout is capped, stderr is logged line by line and only
//! its tail is kept, and the result document is parsed leniently but never guessed.

use std::collections::VecDeque;
use std::sync::Mutex;
use tokio::io::{AsyncBufReadExt, AsyncRead, AsyncReadExt, BufReader};
use workerhost_sdk::WorkerResult;

/// stdout grew past the cap.
#[derive(Debug)]
pub struct Overflow;

/// Reads all of `r` into memory, failing as soon as more than `max` bytes arrive.
pub async fn read_capped<R: AsyncRead + Unpin>(mut r: R, max: usize) -> Result<Vec<u8>, Overflow> {
    let mut buf = Vec::with_capacity(1024);
    let mut chunk = [0u8; 16 * 1024];
    loop {
        match r.read(&mut chunk).await {
            Ok(0) | Err(_) => return Ok(buf),
            Ok(n) => {
                if buf.len() + n > max {
                    return Err(Overflow);
                }
                buf.extend_from_slice(&chunk[..n]);
            }
        }
    }
}

/// The last lines of stderr, bounded in bytes.
#[derive(Debug, Default)]
pub struct Tail {
    lines: VecDeque<String>,
    bytes: usize,
}

/// Bytes of stderr kept for the dead letter.
const TAIL_BYTES: usize = 8 * 1024;
/// A single stderr line longer than this is cut, in the log and in the tail.
const LINE_MAX: usize = 4 * 1024;

impl Tail {
    pub fn push(&mut self, line: String) {
        self.bytes += line.len() + 1;
        self.lines.push_back(line);
        while self.bytes > TAIL_BYTES {
            match self.lines.pop_front() {
                Some(l) => self.bytes -= l.len() + 1,
                None => break,
            }
        }
    }

    pub fn text(&self) -> String {
        self.lines.iter().cloned().collect::<Vec<_>>().join("\n")
    }

    pub fn last_line(&self) -> Option<&str> {
        self.recent().next()
    }

    /// The non-empty lines, trimmed, newest first.
    fn recent(&self) -> impl Iterator<Item = &str> {
        self.lines
            .iter()
            .rev()
            .map(|l| l.trim())
            .filter(|l| !l.is_empty())
    }

    /// The line that tells why a process hit a limit: Rust std's report of a failed allocation among
    /// the last few lines (what follows it, such as a panic's `note: run with RUST_BACKTRACE=1`, does
    /// not hide it), else the last line.
    pub fn limit_line(&self) -> Option<&str> {
        self.recent()
            .take(8)
            .find(|l| super::outcome::is_rust_alloc_failure(l))
            .or_else(|| self.last_line())
    }
}

/// Reads stderr line by line (each line cut at 4 KiB, so a worker cannot make the host buffer an endless
/// line) and hands every line to `on_line`. Returns when stderr closes.
pub async fn drain_lines<R: AsyncRead + Unpin>(r: R, mut on_line: impl FnMut(String)) {
    let mut reader = BufReader::new(r);
    let mut raw = Vec::new();
    loop {
        raw.clear();
        match (&mut reader)
            .take(LINE_MAX as u64)
            .read_until(b'\n', &mut raw)
            .await
        {
            Ok(0) | Err(_) => return,
            Ok(_) => {
                let cut = raw.last() != Some(&b'\n');
                let mut line = String::from_utf8_lossy(&raw).trim_end().to_string();
                if cut {
                    line.push_str(" …[cut]");
                    // Skip the rest of the overlong line.
                    let mut rest = Vec::new();
                    loop {
                        rest.clear();
                        match (&mut reader)
                            .take(LINE_MAX as u64)
                            .read_until(b'\n', &mut rest)
                            .await
                        {
                            Ok(0) | Err(_) => break,
                            Ok(_) if rest.last() == Some(&b'\n') => break,
                            Ok(_) => {}
                        }
                    }
                }
                on_line(line);
            }
        }
    }
}

/// Whose stderr lines these are: the task being served (a pool process serves one after another, and
/// none between tasks) and the tail kept for that task's dead letter.
#[derive(Debug, Default)]
pub struct Serving {
    pub task_id: Option<String>,
    pub tail: Tail,
}

/// Logs every stderr line of a worker process with the task it serves and keeps the tail; progress lines
/// go to `progress` (and to the debug log only). Returns when stderr closes.
pub async fn drain_stderr<R: AsyncRead + Unpin>(
    r: R,
    serving: &Mutex<Serving>,
    worker: &str,
    progress: &super::ProgressSink,
) {
    drain_lines(r, |line| {
        let Ok(mut s) = serving.lock() else {
            return;
        };
        if let Some(id) = &s.task_id
            && progress.offer(id, &line)
        {
            tracing::debug!(target: "workerhost::worker", task_id = %id, worker = %worker, "progress: {line}");
            return;
        }
        let task_id = s.task_id.as_deref().unwrap_or_default();
        tracing::info!(target: "workerhost::worker", task_id = %task_id, worker = %worker, "stderr: {line}");
        s.tail.push(line);
    })
    .await
}

/// Parses stdout as a result document: the whole output, or else its last non-empty line (a worker that
/// printed debug output to stdout before its result still gets its result read).
pub fn parse_result(stdout: &[u8]) -> Result<WorkerResult, String> {
    let text = match std::str::from_utf8(stdout) {
        Ok(t) => t,
        Err(e) => {
            return Err(format!(
                "stdout is not UTF-8 (invalid byte at offset {}); a result document is UTF-8 JSON",
                e.valid_up_to()
            ));
        }
    };
    let trimmed = text.trim();
    if trimmed.is_empty() {
        return Err("stdout is empty; expected one JSON result document".into());
    }
    let whole = serde_json::from_str::<WorkerResult>(trimmed);
    match whole {
        Ok(r) => Ok(r),
        Err(e) => {
            if let Some(last) = trimmed.lines().rev().find(|l| !l.trim().is_empty())
                && let Ok(r) = serde_json::from_str::<WorkerResult>(last.trim())
            {
                return Ok(r);
            }
            Err(format!(
                "stdout is not a JSON result document ({e}); it began: {} (debug output belongs on stderr)",
                preview(trimmed)
            ))
        }
    }
}

/// What a worker printed on stdout before its result document (the result being its last line), if
/// anything: the host logs it (debug output belongs on stderr, where it is kept for the dead letter).
pub fn before_result(stdout: &[u8]) -> Option<String> {
    let text = std::str::from_utf8(stdout).ok()?.trim();
    let (before, _) = text.rsplit_once('\n')?;
    if before.trim().is_empty() || serde_json::from_str::<serde_json::Value>(text).is_ok() {
        return None;
    }
    Some(preview(before.trim()))
}

fn preview(s: &str) -> String {
    let mut end = s.len().min(200);
    while !s.is_char_boundary(end) {
        end -= 1;
    }
    let p = &s[..end];
    if end < s.len() {
        format!("{p:?}…")
    } else {
        format!("{p:?}")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn read_capped_stops_at_the_cap() {
        let data = [b'x'; 100];
        assert_eq!(
            read_capped(&data[..], 100).await.map(|v| v.len()).ok(),
            Some(100)
        );
        assert!(read_capped(&data[..], 99).await.is_err());
    }

    #[test]
    fn tail_keeps_the_last_bytes() {
        let mut t = Tail::default();
        for i in 0..10_000 {
            t.push(format!("line {i}"));
        }
        let text = t.text();
        assert!(text.len() <= TAIL_BYTES);
        assert!(text.ends_with("line 9999"));
        assert_eq!(t.last_line(), Some("line 9999"));
        assert_eq!(t.limit_line(), Some("line 9999"));
        t.push("memory allocation of 3000000 bytes failed".into());
        t.push(
            "note: run with `RUST_BACKTRACE=1` environment variable to display a backtrace".into(),
        );
        assert_eq!(
            t.limit_line(),
            Some("memory allocation of 3000000 bytes failed")
        );
    }

    #[test]
    fn parse_result_accepts_a_trailing_document_and_rejects_garbage() {
        let ok = parse_result(b"debug noise\n{\"success\": true, \"result\": {\"a\": 1}}\n")
            .expect("last line is a result");
        assert!(ok.success);
        let err = parse_result(b"hello world").expect_err("garbage");
        assert!(err.contains("not a JSON result document"), "{err}");
        assert!(parse_result(b"  \n").is_err());
        // JSON, but not a result document
        assert!(parse_result(b"[1,2,3]").is_err());
        assert!(err.contains("debug output belongs on stderr"), "{err}");
    }

    #[test]
    fn stdout_that_is_not_utf8_is_not_a_result() {
        let err =
            parse_result(b"{\"success\": true, \"result\": \"\xff\xfe\"}").expect_err("bytes");
        assert!(err.contains("not UTF-8"), "{err}");
    }

    #[test]
    fn prints_before_the_result_are_found() {
        let out = b"hello\nworld\n{\"success\": true}\n";
        assert_eq!(before_result(out).as_deref(), Some("\"hello\\nworld\""));
        assert_eq!(before_result(b"{\"success\": true}\n"), None);
        assert_eq!(before_result(b"{\n  \"success\": true\n}\n"), None);
    }
}
