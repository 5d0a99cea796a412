//! Shared by the end-to-end tests: the real `pipeline-manager` binary run in
//! a private data directory per test, the real model, the generated fixtures.
#![allow(dead_code)]

pub mod server;

use serde_json::Value;
use std::fmt;
use std::fs::File;
use std::io::Read;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::thread;
use std::time::{Duration, Instant};

pub const BIN: &str = env!("CARGO_BIN_EXE_pipeline-manager");

/// Upper bound of the word error rate of tiny.en on the espeak-ng speech.
/// Measured on x86-64 (2 cores): 0.085 (mp3) to 0.17 (ogg); the margin is
/// for another CPU's rounding choosing other beams, while a broken decode
/// path (wrong rate, dropped window, garbled tokens) lands far above it.
pub const WER_BOUND: f64 = 0.25;

// Each test binary uses some of these.
#[allow(unused_imports)]
pub use pipeline_testkit::{fixture, long_fixture, model_dir, under_ci};

/// The Python of the venv scripts/setup-python.sh makes (the interop
/// peers); `None` (SKIPPED) outside CI when it is missing.
pub fn python() -> Option<PathBuf> {
    pipeline_testkit::venv_python()
}

/// The text spoken in the speech fixtures.
pub fn speech_reference() -> String {
    std::fs::read_to_string(fixture("speech.txt")).expect("speech.txt")
}

/// What one run of the binary left behind.
pub struct Out {
    pub args: Vec<String>,
    pub code: Option<i32>,
    pub stdout: String,
    pub stderr: String,
    pub seconds: f64,
    /// Peak resident memory of the process, in bytes (wait4's rusage of
    /// the child itself).
    pub peak_rss: u64,
}

impl fmt::Display for Out {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "`pipeline-manager {}` exited {:?} after {:.1} s\n--- stdout ---\n{}\n--- stderr ---\n{}",
            self.args.join(" "),
            self.code,
            self.seconds,
            self.stdout,
            self.stderr
        )
    }
}

impl Out {
    /// Panics (showing everything) unless the exit code is `code`.
    pub fn expect_code(&self, code: i32) -> &Self {
        assert_eq!(self.code, Some(code), "unexpected exit code:\n{self}");
        self
    }

    /// stdout as the one JSON document `--json` promises.
    pub fn json(&self) -> Value {
        serde_json::from_str(&self.stdout)
            .unwrap_or_else(|e| panic!("stdout is not one JSON document ({e}):\n{self}"))
    }
}

/// A private data directory and environment for one test.
pub struct Sandbox {
    dir: tempfile::TempDir,
    pub data: PathBuf,
    model: Option<PathBuf>,
    env: Vec<(String, String)>,
}

impl Sandbox {
    /// A sandbox for commands that do not transcribe (the model path is set
    /// anyway, so `status` finds it when it is installed).
    pub fn new() -> Sandbox {
        let dir = tempfile::tempdir().expect("temp dir");
        let data = dir.path().join("data");
        std::fs::create_dir_all(&data).expect("data dir");
        let model = Some(
            std::env::var_os("PIPELINE_MODEL")
                .filter(|d| !d.is_empty())
                .map(PathBuf::from)
                .unwrap_or_else(|| pipeline_testkit::data_dir().join("models/tiny.en")),
        );
        Sandbox {
            dir,
            data,
            model,
            env: Vec::new(),
        }
    }

    /// A sandbox whose commands can transcribe; `None` (SKIPPED) without a model outside CI.
    pub fn with_model() -> Option<Sandbox> {
        let model = model_dir()?;
        let mut sandbox = Sandbox::new();
        sandbox.model = Some(model);
        Some(sandbox)
    }

    /// Adds an environment variable to every command of this sandbox.
    pub fn env(mut self, key: &str, value: &str) -> Sandbox {
        self.env.push((key.to_string(), value.to_string()));
        self
    }

    /// The sandbox's scratch directory (the working directory of its commands).
    pub fn root(&self) -> &Path {
        self.dir.path()
    }

    /// A command with only this sandbox's settings: no PIPELINE_* variable
    /// of the caller leaks in, no pipeline.toml from the caller's directory
    /// is found, and human output is plain unless a test asks otherwise.
    pub fn command(&self, args: &[&str], extra_env: &[(&str, &str)]) -> Command {
        let mut cmd = Command::new(BIN);
        cmd.args(args).current_dir(self.dir.path());
        for (key, _) in std::env::vars_os() {
            let key = key.to_string_lossy().into_owned();
            if key.starts_with("PIPELINE_")
                || ["NO_COLOR", "CLICOLOR_FORCE", "CLICOLOR"].contains(&key.as_str())
            {
                cmd.env_remove(&key);
            }
        }
        cmd.env("PIPELINE_DATA_DIR", &self.data);
        if let Some(model) = &self.model {
            cmd.env("PIPELINE_MODEL", model);
        }
        cmd.env("NO_COLOR", "1");
        // The tests were written for one job at a time per worker; those of
        // more say so (`--concurrency`, or this variable). The default, one
        // per core, would also oversubscribe a CI machine that runs tests
        // side by side.
        cmd.env("PIPELINE_PROCESSING_CONCURRENCY", "1");
        for (key, value) in &self.env {
            cmd.env(key, value);
        }
        for (key, value) in extra_env {
            if value.is_empty() {
                cmd.env_remove(key);
            } else {
                cmd.env(key, value);
            }
        }
        cmd
    }

    /// Runs the binary to its end (at most 300 s).
    pub fn run(&self, args: &[&str]) -> Out {
        self.run_env(args, &[])
    }

    /// Runs with extra environment; an empty value removes the variable.
    pub fn run_env(&self, args: &[&str], extra_env: &[(&str, &str)]) -> Out {
        run_to_end(
            self.command(args, extra_env),
            args,
            Duration::from_secs(300),
        )
    }

    /// `args --json` that must exit 0; its document.
    pub fn json(&self, args: &[&str]) -> Value {
        let mut all: Vec<&str> = args.to_vec();
        all.push("--json");
        let out = self.run(&all);
        out.expect_code(0);
        out.json()
    }

    /// `jobs ID --json`.
    pub fn jobs(&self, id: &str) -> Value {
        self.json(&["jobs", id])
    }

    /// One job of `jobs ID --json` by type.
    pub fn job(&self, id: &str, job_type: &str) -> Value {
        find_job(&self.jobs(id), job_type)
    }

    /// `check-status ID --json`.
    pub fn check_status(&self, id: &str) -> Value {
        self.json(&["check-status", id])
    }

    /// Starts `pipeline-manager worker` in the background; stopped on drop.
    pub fn spawn_worker(&self, name: &str) -> WorkerProc {
        let log = self.dir.path().join(format!("{name}.log"));
        let mut cmd = self.command(&["worker"], &[]);
        cmd.stdin(Stdio::null())
            .stdout(Stdio::from(File::create(&log).expect("worker log")))
            .stderr(Stdio::from(
                File::options().append(true).open(&log).expect("worker log"),
            ));
        let child = cmd.spawn().expect("start the worker");
        WorkerProc { child, log }
    }
}

/// A `worker` child process; killed on drop if still running, so that a
/// failed test leaves nothing behind.
pub struct WorkerProc {
    pub child: Child,
    pub log: PathBuf,
}

impl WorkerProc {
    /// What the worker printed so far.
    pub fn log(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }

    pub fn signal(&self, signal: libc::c_int) {
        let pid = libc::pid_t::try_from(self.child.id()).expect("pid fits");
        // SAFETY: kill(2) on our own child's pid; no memory is shared.
        let rc = unsafe { libc::kill(pid, signal) };
        assert_eq!(rc, 0, "kill({pid}, {signal}) failed");
    }

    /// Waits for the exit; `None` when it is still running after `timeout`.
    pub fn wait_exit(&mut self, timeout: Duration) -> Option<std::process::ExitStatus> {
        let deadline = Instant::now() + timeout;
        loop {
            if let Some(status) = self.child.try_wait().expect("try_wait") {
                return Some(status);
            }
            if Instant::now() >= deadline {
                return None;
            }
            thread::sleep(Duration::from_millis(50));
        }
    }
}

impl Drop for WorkerProc {
    fn drop(&mut self) {
        if let Ok(None) = self.child.try_wait() {
            let _ = self.child.kill();
            let _ = self.child.wait();
        }
    }
}

// wait4 reaps the child, which clippy cannot see.
#[allow(clippy::zombie_processes)]
fn run_to_end(mut cmd: Command, args: &[&str], timeout: Duration) -> Out {
    let started = Instant::now();
    let mut child = cmd
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap_or_else(|e| panic!("cannot start {BIN}: {e}"));
    // Read both pipes while waiting, or a chatty child blocks on a full pipe.
    let mut stdout = child.stdout.take().expect("stdout");
    let mut stderr = child.stderr.take().expect("stderr");
    let out_reader = thread::spawn(move || {
        let mut s = Vec::new();
        let _ = stdout.read_to_end(&mut s);
        s
    });
    let err_reader = thread::spawn(move || {
        let mut s = Vec::new();
        let _ = stderr.read_to_end(&mut s);
        s
    });
    let pid = libc::pid_t::try_from(child.id()).expect("pid fits");
    let mut status = 0;
    // SAFETY: a zeroed rusage is a valid value of the plain C struct.
    let mut usage: libc::rusage = unsafe { std::mem::zeroed() };
    let mut timed_out = false;
    loop {
        // SAFETY: wait4 on our own child, with valid pointers to locals;
        // Child is not waited on elsewhere, so the pid is not reused.
        let rc = unsafe { libc::wait4(pid, &mut status, libc::WNOHANG, &mut usage) };
        assert!(rc >= 0, "wait4 failed: {}", std::io::Error::last_os_error());
        if rc == pid {
            break;
        }
        if started.elapsed() >= timeout && !timed_out {
            timed_out = true;
            let _ = child.kill();
        }
        thread::sleep(Duration::from_millis(20));
    }
    let out = Out {
        args: args.iter().map(|a| a.to_string()).collect(),
        code: (!timed_out && libc::WIFEXITED(status)).then(|| libc::WEXITSTATUS(status)),
        stdout: String::from_utf8_lossy(&out_reader.join().unwrap_or_default()).into_owned(),
        stderr: String::from_utf8_lossy(&err_reader.join().unwrap_or_default()).into_owned(),
        seconds: started.elapsed().as_secs_f64(),
        // ru_maxrss is in KiB on Linux.
        peak_rss: u64::try_from(usage.ru_maxrss).unwrap_or(0) * 1024,
    };
    assert!(!timed_out, "timed out after {timeout:?}:\n{out}");
    out
}

/// Polls `probe` every `every` until it returns `Some`, for at most `timeout`.
/// Each probe starts the binary, which costs CPU that the worker under test
/// needs on a small machine: poll only as often as the event requires.
pub fn wait_for<T>(
    timeout: Duration,
    every: Duration,
    what: &str,
    mut probe: impl FnMut() -> Option<T>,
) -> T {
    let deadline = Instant::now() + timeout;
    loop {
        if let Some(value) = probe() {
            return value;
        }
        assert!(
            Instant::now() < deadline,
            "timed out after {timeout:?} waiting for {what}"
        );
        thread::sleep(every);
    }
}

/// The job of `job_type` in a `jobs --json` or `check-status --json` document.
pub fn find_job(doc: &Value, job_type: &str) -> Value {
    doc["jobs"]
        .as_array()
        .and_then(|jobs| jobs.iter().find(|j| j["job_type"] == job_type))
        .cloned()
        .unwrap_or_else(|| panic!("no {job_type} job in {doc:#}"))
}

/// The uuid after `prefix` on the first line of `text` that has it.
pub fn id_after(text: &str, prefix: &str) -> String {
    let line = text
        .lines()
        .find_map(|l| {
            l.split_once(prefix)
                .map(|(_, rest)| rest.trim().to_string())
        })
        .unwrap_or_else(|| panic!("no line with {prefix:?} in:\n{text}"));
    uuid::Uuid::parse_str(&line)
        .unwrap_or_else(|_| panic!("{line:?} after {prefix:?} is not a uuid"));
    line
}

/// A JSON timestamp as RFC 3339.
pub fn time(value: &Value) -> chrono::DateTime<chrono::FixedOffset> {
    let text = value
        .as_str()
        .unwrap_or_else(|| panic!("{value} is not a timestamp string"));
    chrono::DateTime::parse_from_rfc3339(text)
        .unwrap_or_else(|e| panic!("{text:?} is not RFC 3339: {e}"))
}

/// Checks an SRT file: numbered cues from 1, `HH:MM:SS,mmm --> HH:MM:SS,mmm`
/// with start <= end, times not going back, non-empty text. Returns the cue count.
pub fn check_srt(text: &str) -> usize {
    check_cues(text, ',', true)
}

/// Checks a WebVTT file: the `WEBVTT` header, then cues as for SRT with
/// `.` before the milliseconds and no numbers. Returns the cue count.
pub fn check_vtt(text: &str) -> usize {
    let body = text
        .strip_prefix("WEBVTT\n\n")
        .unwrap_or_else(|| panic!("no WEBVTT header:\n{text}"));
    check_cues(body, '.', false)
}

fn check_cues(text: &str, separator: char, numbered: bool) -> usize {
    let mut last_start = 0.0;
    let mut count = 0;
    for block in text.split("\n\n").filter(|b| !b.trim().is_empty()) {
        let mut lines = block.lines();
        if numbered {
            let number = lines.next().unwrap_or_default();
            assert_eq!(
                number,
                (count + 1).to_string(),
                "cue number in block {block:?}"
            );
        }
        let timing = lines.next().unwrap_or_default();
        let (start, end) = timing
            .split_once(" --> ")
            .unwrap_or_else(|| panic!("no timing line in block {block:?}"));
        let start = cue_time(start, separator);
        let end = cue_time(end, separator);
        assert!(start <= end, "cue ends before it starts: {timing}");
        assert!(start >= last_start, "cues go back in time at {timing}");
        last_start = start;
        let cue_text: Vec<&str> = lines.collect();
        assert!(
            cue_text.iter().any(|l| !l.trim().is_empty()),
            "cue without text: {block:?}"
        );
        count += 1;
    }
    assert!(
        text.ends_with("\n\n") || count == 0,
        "last cue not ended by a blank line"
    );
    count
}

fn cue_time(text: &str, separator: char) -> f64 {
    let (hms, millis) = text
        .split_once(separator)
        .unwrap_or_else(|| bad_cue_time(text, separator));
    let parts: Vec<&str> = hms.split(':').collect();
    if parts.len() != 3 || millis.len() != 3 || parts.iter().any(|p| p.len() != 2) {
        bad_cue_time(text, separator);
    }
    let n = |s: &str| -> f64 {
        f64::from(
            s.parse::<u32>()
                .unwrap_or_else(|_| bad_cue_time(text, separator)),
        )
    };
    let (h, m, s) = (n(parts[0]), n(parts[1]), n(parts[2]));
    assert!(m < 60.0 && s < 60.0, "bad cue time {text:?}");
    h * 3600.0 + m * 60.0 + s + n(millis) / 1000.0
}

fn bad_cue_time(text: &str, separator: char) -> ! {
    panic!("bad cue time {text:?} (expected HH:MM:SS{separator}mmm)")
}

/// The WER of `hypothesis` against the speech fixtures' text.
pub fn speech_wer(hypothesis: &str) -> f64 {
    let wer = pipeline_core::wer::word_error_rate(&speech_reference(), hypothesis);
    eprintln!("WER {wer:.3} for {hypothesis:?}");
    wer
}

pub fn path(p: &Path) -> &str {
    p.to_str().expect("utf-8 path")
}

/// Enqueues `files` with `process --detach`; their audio ids in order.
pub fn detach<P: AsRef<Path>>(sb: &Sandbox, files: &[P]) -> Vec<String> {
    let mut args = vec!["process", "--detach"];
    args.extend(files.iter().map(|f| path(f.as_ref())));
    let out = sb.run(&args);
    out.expect_code(0);
    let lines: Vec<&str> = out.stdout.lines().collect();
    assert_eq!(lines.len(), 3 * files.len(), "three lines per file:\n{out}");
    let mut ids = Vec::new();
    for chunk in lines.chunks(3) {
        let id = id_after(chunk[0], "Successfully started processing: ");
        assert_eq!(
            chunk,
            [
                format!("Successfully started processing: {id}"),
                format!("You can check status with: pipeline-manager check-status {id}"),
                format!("You can monitor jobs with: pipeline-manager jobs {id}"),
            ],
            "{out}"
        );
        ids.push(id);
    }
    ids
}

pub fn status_of(job: &Value) -> &str {
    job["status"].as_str().unwrap_or("")
}

/// Polls `jobs --json` until the file's TRANSCRIPTION job is RUNNING.
pub fn wait_running(sb: &Sandbox, id: &str, worker: &WorkerProc) -> Value {
    wait_for(
        Duration::from_secs(120),
        Duration::from_millis(200),
        "TRANSCRIPTION RUNNING",
        || {
            let job = sb.job(id, "TRANSCRIPTION");
            match status_of(&job) {
            "RUNNING" => Some(job),
            "QUEUED" => None,
            other => panic!(
                "TRANSCRIPTION went to {other} before it was seen RUNNING: {job:#}\nworker log:\n{}",
                worker.log()
            ),
        }
        },
    )
}

/// Polls `check-status --json` until the file has a final status, which must be COMPLETED.
pub fn wait_final(sb: &Sandbox, id: &str, timeout: Duration, worker: &WorkerProc) -> Value {
    let doc = wait_for(timeout, Duration::from_secs(1), "a final status", || {
        let doc = sb.check_status(id);
        let status = doc["status"].as_str().unwrap_or("");
        matches!(status, "COMPLETED" | "FAILED" | "CANCELLED").then_some(doc)
    });
    assert_eq!(
        doc["status"],
        "COMPLETED",
        "{doc:#}\nworker log:\n{}",
        worker.log()
    );
    doc
}

/// The audit trail lines of `jobs ID --events`.
pub fn audit_trail(sb: &Sandbox, id: &str) -> String {
    let out = sb.run(&["jobs", id, "--events"]);
    out.expect_code(0);
    let (_, trail) = out
        .stdout
        .split_once("=== Audit Trail ===\n")
        .unwrap_or_else(|| panic!("no audit trail:\n{out}"));
    trail.to_string()
}

/// A fresh schema in the `test` database on the local PostgreSQL server.
pub fn postgres_url() -> String {
    pipeline_testkit::postgres_url("pm_cli")
}
