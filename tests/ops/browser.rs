//! The status page's buttons in a real browser: headless Chromium driven through ChromeDriver (the W3C
//! WebDriver protocol, plain JSON over HTTP; Debian's `chromium` and `chromium-driver`). A user breaks a
//! worker so tasks die, fixes it and clicks "retry" on a dead letter; clicks "cancel" on a 60 s task and
//! its process is gone; pauses a type while a task arrives, then resumes it. Screenshots land in
//! target/test-output/ops/. Without Chromium or ChromeDriver the test is skipped with a notice, except
//! under CI=true.

use crate::support::*;
use crate::{Running, output_dir, start_host, wait_final};
use base64::Engine as _;
use serde_json::{Value, json};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::Duration;

/// The W3C name of an element reference in WebDriver answers.
const ELEMENT: &str = "element-6066-11e4-a52e-4f735466cecf";

/// A ChromeDriver with one headless Chromium session; both end when dropped.
struct Browser {
    driver: Child,
    port: u16,
    /// ChromeDriver keeps connections open whatever the request says, so a client that reads by
    /// Content-Length is needed (reqwest, on a runtime of the test's own).
    rt: tokio::runtime::Runtime,
    http: reqwest::Client,
    session: String,
    _profile: tempfile::TempDir,
}

impl Browser {
    fn start(chromium: &Path, chromedriver: &Path) -> Browser {
        let port = free_port();
        let driver = Command::new(chromedriver)
            .arg(format!("--port={port}"))
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("start chromedriver");
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .expect("runtime");
        workerhost::tls::install_ring();
        let http = reqwest::Client::new();
        let status = format!("http://127.0.0.1:{port}/status");
        assert!(
            wait_until(Duration::from_secs(20), || {
                rt.block_on(async {
                    let r = http.get(&status).send().await.ok()?;
                    r.json::<Value>().await.ok()
                })
                .is_some_and(|v| v["value"]["ready"] == true)
            }),
            "chromedriver did not become ready"
        );
        let profile = tempfile::tempdir().expect("profile dir");
        let caps = json!({"capabilities": {"alwaysMatch": {
            "browserName": "chrome",
            "goog:chromeOptions": {
                "binary": chromium.display().to_string(),
                "args": [
                    "--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
                    "--disable-background-networking", "--disable-component-update", "--disable-sync",
                    "--window-size=1200,900",
                    format!("--user-data-dir={}", profile.path().display()),
                ]
            }
        }}});
        let mut b = Browser {
            driver,
            port,
            rt,
            http,
            session: String::new(),
            _profile: profile,
        };
        let answer = b.call("POST", "/session", &caps);
        b.session = answer["sessionId"]
            .as_str()
            .unwrap_or_else(|| panic!("no session: {answer}"))
            .to_string();
        b
    }

    /// One WebDriver command; its `value`. Panics on a WebDriver error (the test failed).
    fn call(&self, method: &str, path: &str, body: &Value) -> Value {
        self.try_call(method, path, body)
            .unwrap_or_else(|(status, v)| panic!("{method} {path}: {status} {v}"))
    }

    /// One WebDriver command: its `value`, or the HTTP status and the error answer.
    fn try_call(&self, method: &str, path: &str, body: &Value) -> Result<Value, (u16, Value)> {
        let url = format!("http://127.0.0.1:{}{path}", self.port);
        let m = reqwest::Method::from_bytes(method.as_bytes()).expect("method");
        let mut req = self.http.request(m, url).timeout(Duration::from_secs(60));
        if method != "GET" {
            req = req.json(body);
        }
        let (status, v) = self.rt.block_on(async {
            let r = req
                .send()
                .await
                .unwrap_or_else(|e| panic!("{method} {path}: {e}"));
            let status = r.status().as_u16();
            (status, r.json::<Value>().await.unwrap_or(Value::Null))
        });
        if status < 400 {
            Ok(v["value"].clone())
        } else {
            Err((status, v))
        }
    }

    fn session_path(&self, rest: &str) -> String {
        format!("/session/{}{rest}", self.session)
    }

    fn open(&self, url: &str) {
        self.call("POST", &self.session_path("/url"), &json!({ "url": url }));
    }

    fn source(&self) -> String {
        let v = self.call("GET", &self.session_path("/source"), &Value::Null);
        v.as_str().unwrap_or_default().to_string()
    }

    /// Clicks the first element matching `css` (a form's submit button), which navigates. The page
    /// reloads itself every few seconds, so an element found just before a reload is stale when
    /// clicked: then it is found again and clicked (a few times at most).
    fn click(&self, css: &str) {
        let find = json!({"using": "css selector", "value": css});
        for _ in 0..5 {
            let found = self.call("POST", &self.session_path("/element"), &find);
            let id = found[ELEMENT]
                .as_str()
                .unwrap_or_else(|| panic!("no element {css}: {found}\n{}", self.source()))
                .to_string();
            let click = self.session_path(&format!("/element/{id}/click"));
            match self.try_call("POST", &click, &json!({})) {
                Ok(_) => return,
                Err((_, e)) if e.to_string().contains("stale element") => continue,
                Err((status, e)) => panic!("click {css}: {status} {e}"),
            }
        }
        panic!("click {css}: the element went stale five times");
    }

    /// Waits until the page's source contains `text` (the page after a click, or after a reload).
    fn wait_for(&self, text: &str) -> bool {
        wait_until(Duration::from_secs(10), || self.source().contains(text))
    }

    fn screenshot(&self, name: &str) -> PathBuf {
        let v = self.call("GET", &self.session_path("/screenshot"), &Value::Null);
        let png = base64::engine::general_purpose::STANDARD
            .decode(v.as_str().unwrap_or_default())
            .expect("base64 screenshot");
        assert!(png.starts_with(b"\x89PNG\r\n\x1a\n"), "not a PNG");
        let path = output_dir().join(name);
        std::fs::write(&path, &png).expect("write screenshot");
        eprintln!("screenshot: {}", path.display());
        path
    }
}

impl Drop for Browser {
    fn drop(&mut self) {
        if !self.session.is_empty() {
            let url = format!("http://127.0.0.1:{}{}", self.port, self.session_path(""));
            let req = self.http.delete(url).timeout(Duration::from_secs(10));
            let _ = self.rt.block_on(async { req.send().await });
        }
        let _ = self.driver.kill();
        let _ = self.driver.wait();
    }
}

fn tools() -> Option<(PathBuf, PathBuf)> {
    let find = |names: &[&str]| {
        names
            .iter()
            .find_map(|n| workerhost::probe::find_on_path(Path::new(n)))
    };
    let found = find(&["chromium", "chromium-browser"]).zip(find(&["chromedriver"]));
    if found.is_none() {
        let ci = std::env::var("CI").is_ok_and(|v| v == "true");
        assert!(
            !ci,
            "chromium or chromedriver is missing (scripts/test installs them); CI=true does not skip"
        );
        eprintln!(
            "notice: skipping: chromium and chromedriver are needed (apt-get install chromium chromium-driver)"
        );
    }
    found
}

/// Fails with exit 2 while the file `broken` exists; `hang*` tasks write their pid and sleep 60 s.
const WORKER: &str = r#"read -r doc
echo "$WORKERHOST_TASK_ID $WORKERHOST_ATTEMPT" >> runs.log
if [ -f broken ]; then echo '{"success": false, "error": {"message": "broken on purpose"}}'; exit 2; fi
case "$WORKERHOST_TASK_ID" in
  hang*) echo $$ > "$WORKERHOST_TASK_ID.pid"; sleep 60 ;;
esac
printf '{"success": true, "result": {"ok": true}}\n'
"#;

fn config(p: &Project) {
    p.write("w.sh", WORKER);
    p.write(
        "workerhost_config.yaml",
        "version: \"1.0\"\nhost:\n  shutdown_grace_seconds: 10\ntask_manager:\n  type: sqlite\n  path: ./queue.db\n  lease_seconds: 2\n  poll_interval_ms: 20\ndefaults:\n  timeout: 120\n  max_retries: 0\nworkers:\n  - name: clicky\n    command: [\"/bin/sh\", \"./w.sh\"]\n    project_path: .\n    task_types: [F, H]\n",
    );
}

fn state(p: &Project, id: &str) -> String {
    p.status(id)
        .map(|s| s["status"].as_str().unwrap_or_default().to_string())
        .unwrap_or_default()
}

#[test]
fn retry_cancel_pause_and_resume_by_clicking_the_status_page() {
    let Some((chromium, chromedriver)) = tools() else {
        return;
    };
    let p = Project::new();
    config(&p);
    p.write("broken", "");
    let host: Running = start_host(&p, &[], &[]);
    p.submit("F", "d1", "{}");
    wait_final(&p, &["d1"], Duration::from_secs(20));
    assert_eq!(state(&p, "d1"), "dead");
    std::fs::remove_file(p.file("broken")).expect("fix the worker");

    let b = Browser::start(&chromium, &chromedriver);
    let page = format!("http://127.0.0.1:{}/", host.port);

    // Retry the dead letter.
    b.open(&page);
    assert!(b.wait_for("broken on purpose"), "{}", b.source());
    b.click("form[action='/dead/d1/retry'] button");
    assert!(
        b.wait_for("d1 is queued again"),
        "the page says what the click did: {}",
        b.source()
    );
    assert!(
        wait_until(Duration::from_secs(20), || state(&p, "d1") == "succeeded"),
        "the retried task runs again: {:?}\n{}",
        p.status("d1"),
        p.host_log()
    );

    // Cancel a running 60 s task.
    p.submit("H", "hang1", "{}");
    assert!(
        wait_until(Duration::from_secs(20), || p.file("hang1.pid").exists()
            && state(&p, "hang1") == "running"),
        "hang1 never ran"
    );
    let pid: i32 = std::fs::read_to_string(p.file("hang1.pid"))
        .expect("pid")
        .trim()
        .parse()
        .expect("a pid");
    b.open(&page);
    b.click("form[action='/tasks/hang1/cancel'] button");
    assert!(
        wait_until(Duration::from_secs(10), || state(&p, "hang1")
            == "cancelled"),
        "cancelled from the page: {:?}\n{}",
        p.status("hang1"),
        p.host_log()
    );
    assert!(
        wait_until(Duration::from_secs(5), || !pid_alive(pid)),
        "the cancelled task's process is gone"
    );

    // Pause type F while a task arrives; it waits; resume runs it.
    b.open(&page);
    b.click("form[action='/types/F/pause'] button");
    assert!(b.wait_for("paused F"), "{}", b.source());
    std::thread::sleep(Duration::from_millis(300));
    p.submit("F", "p1", "{}");
    std::thread::sleep(Duration::from_secs(2));
    assert_eq!(state(&p, "p1"), "queued", "a paused type is not claimed");
    b.open(&page);
    assert!(b.wait_for("/types/F/resume"), "{}", b.source());
    b.screenshot("status_page_paused.png");
    b.click("form[action='/types/F/resume'] button");
    assert!(
        wait_until(Duration::from_secs(10), || state(&p, "p1") == "succeeded"),
        "resumed from the page: {:?}",
        p.status("p1")
    );
    b.open(&page);
    let shot = b.screenshot("status_page_after_clicks.png");
    assert!(
        std::fs::metadata(&shot).map(|m| m.len()).unwrap_or(0) > 20_000,
        "a nearly empty screenshot"
    );
}
