//! The status page in headless Chromium (Debian's package): the rendered DOM shows the workers, the
//! task in flight and the recent failure with its error, and a screenshot lands in
//! target/test-output/ops/. Without Chromium the test is skipped with a notice, except under CI=true.

use crate::support::*;
use crate::{ops_config, output_dir, sh_worker, start_host, submit_any, wait_final};
use nix::sys::signal::Signal;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::Duration;

fn chromium() -> Option<PathBuf> {
    ["chromium", "chromium-browser"]
        .iter()
        .find_map(|n| workerhost::probe::find_on_path(Path::new(n)))
}

/// Runs headless Chromium with `mode` (`--dump-dom` or `--screenshot=...`); returns stdout.
fn run_chromium(chrome: &Path, mode: &str, url: &str) -> String {
    let profile = tempfile::tempdir().expect("tempdir");
    let child = Command::new(chrome)
        .args([
            "--headless",
            "--no-sandbox",
            "--disable-gpu",
            "--disable-quic",
            "--no-first-run",
            "--disable-background-networking",
            "--disable-component-update",
            "--disable-sync",
            "--window-size=1200,800",
        ])
        .arg(format!("--user-data-dir={}", profile.path().display()))
        .arg(mode)
        .arg(url)
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .expect("start chromium");
    let out = std::thread::scope(|s| {
        let h = s.spawn(|| child.wait_with_output());
        let end = std::time::Instant::now() + Duration::from_secs(90);
        while !h.is_finished() {
            assert!(std::time::Instant::now() < end, "chromium took over 90 s");
            std::thread::sleep(Duration::from_millis(50));
        }
        h.join().expect("join").expect("chromium output")
    });
    assert!(out.status.success(), "chromium {mode} failed");
    text(&out.stdout)
}

#[test]
fn the_status_page_renders_in_headless_chromium() {
    let Some(chrome) = chromium() else {
        let ci = std::env::var("CI").is_ok_and(|v| v == "true");
        assert!(
            !ci,
            "chromium is missing (scripts/test installs it); CI=true does not skip"
        );
        eprintln!("notice: skipping: chromium is not installed (apt-get install chromium)");
        return;
    };
    let p = Project::new();
    let workers = [
        sh_worker(
            "PrismQ.Ops.Page",
            "T",
            "    env: { SLEEP_S: \"60\" }\n    max_retries: 0\n",
        ),
        "  - name: PrismQ.Ops.Missing\n    command: [\"./missing-binary\"]\n    task_types: [M]\n"
            .to_string(),
    ]
    .concat();
    ops_config(&p, None, "", &workers);
    submit_any(&p, "T", "fail-page-1");
    submit_any(&p, "M", "missing-1");
    let mut host = start_host(&p, &[], &[]);
    wait_final(&p, &["fail-page-1", "missing-1"], Duration::from_secs(30));
    submit_any(&p, "T", "slow-page-1");
    assert!(wait_until(Duration::from_secs(10), || host
        .get("/health")
        .json()["in_flight"]
        == 1));
    let url = format!("http://127.0.0.1:{}/", host.port);

    let dom = run_chromium(&chrome, "--dump-dom", &url);
    for want in [
        "http-equiv=\"refresh\"",
        "PrismQ.Ops.Page",
        "PrismQ.Ops.Missing",
        "slow-page-1",
        "fail-page-1",
        "quota exceeded &lt;for real&gt;",
        "spawn error",
        "unhealthy",
        "1 in flight",
    ] {
        assert!(dom.contains(want), "the page lacks {want:?}:\n{dom}");
    }
    // Each table holds what it should.
    let section = |id: &str| {
        let start = dom
            .find(&format!("id=\"{id}\""))
            .unwrap_or_else(|| panic!("no #{id}"));
        let end = dom[start..]
            .find("</table>")
            .map(|e| start + e)
            .unwrap_or(dom.len());
        dom[start..end].to_string()
    };
    assert!(section("in-flight").contains("slow-page-1"));
    assert!(!section("in-flight").contains("fail-page-1"));
    assert!(
        section("failures").contains("fail-page-1") && section("failures").contains("missing-1")
    );

    let shot = output_dir().join("status_page.png");
    let _ = std::fs::remove_file(&shot);
    run_chromium(&chrome, &format!("--screenshot={}", shot.display()), &url);
    let png = std::fs::read(&shot).expect("screenshot written");
    assert!(png.starts_with(b"\x89PNG\r\n\x1a\n"), "not a PNG");
    assert!(
        png.len() > 20_000,
        "a nearly empty screenshot ({} bytes)",
        png.len()
    );
    eprintln!("status page screenshot: {}", shot.display());

    // Two signals: the 60 s task is killed and handed back at once.
    signal(&host.child, Signal::SIGTERM);
    std::thread::sleep(Duration::from_millis(200));
    signal(&host.child, Signal::SIGTERM);
    assert_eq!(
        wait_child(&mut host.child, Duration::from_secs(20)).code(),
        Some(130)
    );
}

/// A task whose retry waits in the task manager is found on the page as "waiting to retry until ...",
/// with the attempt that failed and its error.
#[test]
fn a_retry_waiting_in_the_queue_shows_when_it_runs_and_why() {
    let p = Project::new();
    let w = sh_worker(
        "PrismQ.Ops.Flaky",
        "T",
        "    retry: { base_delay_seconds: 30, max_delay_seconds: 60, jitter: false }\n",
    );
    ops_config(&p, None, "", &w);
    let host = start_host(&p, &[], &[]);
    submit_any(&p, "T", "flaky-wait-1");
    assert!(
        wait_until(Duration::from_secs(20), || p
            .status("flaky-wait-1")
            .is_some_and(|s| s["status"] == "scheduled")),
        "{}",
        p.host_log()
    );
    let page = host.get("/?task=flaky-wait-1").body;
    let found = page
        .split("id=\"waiting\"")
        .nth(1)
        .unwrap_or_else(|| panic!("no waiting line: {page}"));
    assert!(found.contains("waiting to retry until 20"), "{found}");
    assert!(found.contains("attempt 1 failed: flaked"), "{found}");
}
