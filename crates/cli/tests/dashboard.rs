//! The web dashboard end to end in headless Chromium: `serve` with the real
//! model and an API key, and tests/browser/dashboard.mjs (playwright-core)
//! uploading through the page's form, watching the file reach COMPLETED,
//! seeking the player from a transcript segment and retrying a refused
//! file. Screenshots go to `<target dir>/test-artifacts/` (or
//! `$TEST_ARTIFACTS_DIR`).
//!
//! Chromium and Node are not optional here: without them the test fails
//! and says how to install them (scripts/install-deps.sh --services).

mod common;

use common::server::start;
use common::*;
use std::fs::File;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::Duration;

fn browser_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/browser")
}

fn chromium() -> PathBuf {
    let path = std::env::var_os("CHROMIUM")
        .filter(|p| !p.is_empty())
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from("/usr/bin/chromium"));
    assert!(
        path.is_file(),
        "no Chromium at {} (the dashboard test drives Debian's chromium): \
         run scripts/install-deps.sh --services, or apt-get install chromium",
        path.display()
    );
    path
}

fn node_works() {
    let out = Command::new("node").arg("--version").output();
    assert!(
        out.as_ref().is_ok_and(|o| o.status.success()),
        "node is missing ({out:?}): run scripts/install-deps.sh --services, \
         or install Node.js 20 or newer"
    );
}

/// `npm ci` of the pinned playwright-core, unless already done (the script
/// holds a lock, so concurrent test binaries install once).
fn setup_node() {
    let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../scripts/setup-node.sh");
    let out = Command::new("bash")
        .arg(&script)
        .output()
        .expect("bash runs");
    assert!(
        out.status.success(),
        "scripts/setup-node.sh failed:\n{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
}

/// Where screenshots go: `$TEST_ARTIFACTS_DIR`, else `test-artifacts` in
/// the target directory this test was built in.
fn artifacts_dir() -> PathBuf {
    if let Some(dir) = std::env::var_os("TEST_ARTIFACTS_DIR").filter(|d| !d.is_empty()) {
        return PathBuf::from(dir);
    }
    // BIN is <target>/<profile>/pipeline-manager.
    Path::new(BIN)
        .parent()
        .and_then(Path::parent)
        .map(|target| target.join("test-artifacts"))
        .unwrap_or_else(|| std::env::temp_dir().join("pipeline-manager-test-artifacts"))
}

#[test]
fn the_dashboard_uploads_tracks_and_plays_a_file_in_chromium() {
    let chromium = chromium();
    node_works();
    let Some(sb) = Sandbox::with_model() else {
        return;
    };
    setup_node();
    let key = sb.json(&["api-key", "create", "--name", "dashboard"])["key"]
        .as_str()
        .expect("key")
        .to_string();
    let server = start(&sb, &["--workers", "1"]);
    let artifacts = artifacts_dir();
    std::fs::create_dir_all(&artifacts).expect("artifacts dir");

    // Run like the worker processes: output to a log, killed on drop, so a
    // failed or hung run leaves no browser behind.
    let log = sb.root().join("browser.log");
    let mut cmd = Command::new("node");
    cmd.arg(browser_dir().join("dashboard.mjs"))
        .arg(&server.base)
        .current_dir(browser_dir())
        .env("DASHBOARD_API_KEY", &key)
        .env("DASHBOARD_AUDIO", fixture("speech.wav"))
        .env("DASHBOARD_JUNK", fixture("not-audio.txt"))
        .env("DASHBOARD_ARTIFACTS", &artifacts)
        .env("CHROMIUM", &chromium)
        .stdin(Stdio::null())
        .stdout(Stdio::from(File::create(&log).expect("log")))
        .stderr(Stdio::from(
            File::options().append(true).open(&log).expect("log"),
        ));
    let mut node = WorkerProc {
        child: cmd.spawn().expect("node starts"),
        log,
    };
    let status = node.wait_exit(Duration::from_secs(540));
    print!("{}", node.log());
    assert!(
        status.is_some_and(|s| s.success()),
        "dashboard.mjs {}:\n--- browser ---\n{}\n--- serve log ---\n{}",
        match status {
            Some(s) => format!("failed ({s})"),
            None => "timed out after 540 s".to_string(),
        },
        node.log(),
        server.proc.log()
    );
    let screenshot = artifacts.join("dashboard.png");
    assert!(
        std::fs::metadata(&screenshot).is_ok_and(|m| m.len() > 0),
        "no screenshot at {}",
        screenshot.display()
    );
    eprintln!("screenshot: {}", screenshot.display());
}
