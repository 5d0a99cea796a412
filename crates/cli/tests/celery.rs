//! Scale-out seen from outside: `pipeline-manager` workers on PostgreSQL and
//! a Celery broker (Redis, RabbitMQ), next to the real Python `celery`
//! package: Python submits through Celery and reads results with
//! `AsyncResult`, a Python worker receives what we dispatch, a worker killed
//! mid-transcription loses nothing, and a broker restart loses no job.
//!
//! Every test has its own queue name (and Redis database), so tests running
//! side by side never take each other's messages. Tests that restart
//! RabbitMQ run alone among the `amqp` tests (see .config/nextest.toml).

mod common;

use common::*;
use serde_json::Value;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

fn peer_script() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/py/celery_peer.py")
}

/// Runs the Python peer to its end; its stdout.
fn peer(python: &Path, args: &[&str]) -> String {
    let out = Command::new(python)
        .arg(peer_script())
        .args(args)
        .stdin(Stdio::null())
        .output()
        .expect("python runs");
    assert!(
        out.status.success(),
        "celery_peer.py {args:?} failed:\n{}\n{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).trim().to_string()
}

/// A background child killed on drop.
struct Background(Child);

impl Drop for Background {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

#[derive(Clone, Copy, Debug)]
enum Broker {
    Redis,
    Amqp,
}

fn unique(prefix: &str) -> String {
    format!(
        "{prefix}-{}",
        &uuid::Uuid::new_v4().simple().to_string()[..12]
    )
}

impl Broker {
    /// The broker URL; `redis_db` keeps Redis tests apart.
    fn url(self, redis_db: u8) -> String {
        match self {
            Broker::Redis => format!("redis://127.0.0.1:6379/{redis_db}"),
            Broker::Amqp => "amqp://guest:guest@127.0.0.1:5672/%2f".to_string(),
        }
    }
}

/// A sandbox on `broker` and PostgreSQL with its own queue; results go to
/// Redis database `redis_db + 1`.
fn scaled_sandbox(broker: Broker, redis_db: u8) -> Option<(Sandbox, String)> {
    let sb = Sandbox::with_model()?;
    let queue = unique("q");
    let sb = sb
        .env("PIPELINE_DATABASE_URL", &postgres_url())
        .env("PIPELINE_BROKER_URL", &broker.url(redis_db))
        .env("PIPELINE_BROKER_QUEUE", &queue)
        .env(
            "PIPELINE_RESULT_BACKEND",
            &format!("redis://127.0.0.1:6379/{}", redis_db + 1),
        );
    Some((sb, queue))
}

/// (a) and (c): a Python client's `send_task("pipeline.ingest")` is run by
/// a Rust worker to COMPLETED, and Python's `AsyncResult` reads SUCCESS for
/// the ingest task and for the jobs.
fn python_client_submits_through_celery(broker: Broker, redis_db: u8) {
    let Some(python) = python() else { return };
    let Some((sb, queue)) = scaled_sandbox(broker, redis_db) else {
        return;
    };
    let backend = format!("redis://127.0.0.1:6379/{}", redis_db + 1);
    let speech = fixture("speech.wav");
    let roots = speech.parent().expect("fixtures folder").to_path_buf();
    let sb = sb.env("PIPELINE_INGEST_ALLOWED_ROOTS", path(&roots));
    let worker = sb.spawn_worker("rust-worker");
    let task_id = peer(
        &python,
        &["send-ingest", &broker.url(redis_db), &queue, path(&speech)],
    );
    let ingest: Value =
        serde_json::from_str(&peer(&python, &["result", &backend, &task_id, "120"]))
            .expect("result JSON");
    assert_eq!(
        ingest["state"],
        "SUCCESS",
        "{ingest:#}\nworker log:\n{}",
        worker.log()
    );
    let audio_id = ingest["result"]["audio_id"]
        .as_str()
        .unwrap_or_else(|| panic!("no audio_id in {ingest:#}"))
        .to_string();
    let doc = wait_final(&sb, &audio_id, Duration::from_secs(180), &worker);
    let transcription = find_job(&doc, "TRANSCRIPTION");
    let job_task = transcription["task_id"].as_str().expect("task id");
    let job_result: Value =
        serde_json::from_str(&peer(&python, &["result", &backend, job_task, "30"]))
            .expect("result JSON");
    assert_eq!(job_result["state"], "SUCCESS", "{job_result:#}");
    assert_eq!(job_result["result"]["job_type"], "TRANSCRIPTION");
    assert_eq!(job_result["result"]["audio_id"], audio_id.as_str());
    let txt = doc["outputs"]["txt"].as_str().expect("txt output");
    let text = std::fs::read_to_string(txt).expect("transcript file");
    assert!(speech_wer(&text) < WER_BOUND, "WER too high: {text}");
}

/// `pipeline.ingest` is input from anyone who can publish to the queue:
/// a path outside `ingest.allowed_roots`, a symlink out of one, and an
/// argument the operator owns (`output_dir`) are refused as FAILURE, and
/// nothing is stored or recorded for them.
#[test]
fn redis_ingest_tasks_reach_only_allowed_roots() {
    let Some(python) = python() else { return };
    let Some((sb, queue)) = scaled_sandbox(Broker::Redis, 4) else {
        return;
    };
    let backend = "redis://127.0.0.1:6379/5";
    let allowed = sb.root().join("inbox");
    std::fs::create_dir_all(&allowed).expect("inbox");
    let speech = fixture("speech.wav");
    std::fs::copy(&speech, allowed.join("talk.wav")).expect("copy");
    let escape = allowed.join("escape.wav");
    std::os::unix::fs::symlink(&speech, &escape).expect("symlink");
    let sb = sb.env("PIPELINE_INGEST_ALLOWED_ROOTS", path(&allowed));
    let worker = sb.spawn_worker("rust-worker");
    let url = Broker::Redis.url(4);
    let cases: [(&str, String, &str, &str); 4] = [
        (
            "/etc/passwd",
            "{}".into(),
            "outside ingest.allowed_roots",
            "a system file",
        ),
        (
            path(&speech),
            "{}".into(),
            "outside ingest.allowed_roots",
            "outside the roots",
        ),
        (
            path(&escape),
            "{}".into(),
            "outside ingest.allowed_roots",
            "a symlink out",
        ),
        (
            "",
            serde_json::json!({"output_dir": "/tmp/anywhere"}).to_string(),
            "unknown field `output_dir`",
            "an operator's setting",
        ),
    ];
    for (source, extra, expected, what) in cases {
        let source = if source.is_empty() {
            path(&allowed.join("talk.wav")).to_string()
        } else {
            source.to_string()
        };
        let task_id = peer(&python, &["send-ingest", &url, &queue, &source, &extra]);
        let result: Value =
            serde_json::from_str(&peer(&python, &["result", backend, &task_id, "60"]))
                .expect("result JSON");
        assert_eq!(
            result["state"],
            "FAILURE",
            "{what}: {result:#}\n{}",
            worker.log()
        );
        assert!(result.to_string().contains(expected), "{what}: {result:#}");
    }
    let recent = sb.json(&["list-recent", "--limit", "10"]);
    assert_eq!(
        recent["files"].as_array().map(Vec::len),
        Some(0),
        "{recent:#}"
    );
    // The allowed file itself goes through.
    let task_id = peer(
        &python,
        &["send-ingest", &url, &queue, path(&allowed.join("talk.wav"))],
    );
    let result: Value = serde_json::from_str(&peer(&python, &["result", backend, &task_id, "120"]))
        .expect("result JSON");
    assert_eq!(result["state"], "SUCCESS", "{result:#}\n{}", worker.log());
}

#[test]
fn redis_python_client_submits_through_celery() {
    python_client_submits_through_celery(Broker::Redis, 6);
}

#[test]
fn amqp_python_client_submits_through_celery() {
    python_client_submits_through_celery(Broker::Amqp, 8);
}

/// (b): what `process --detach` dispatches is received, with the same id
/// and arguments, by a Python Celery worker registered for the task name.
fn python_worker_receives_our_tasks(broker: Broker, redis_db: u8) {
    let Some(python) = python() else { return };
    let Some((sb, queue)) = scaled_sandbox(broker, redis_db) else {
        return;
    };
    let received = sb.root().join("received.jsonl");
    let log_path = sb.root().join("python-worker.log");
    let log = std::fs::File::create(&log_path).expect("log file");
    let _python_worker = Background(
        Command::new(&python)
            .arg(peer_script())
            .args(["worker", &broker.url(redis_db), &queue, path(&received)])
            .stdin(Stdio::null())
            .stdout(Stdio::from(log.try_clone().expect("log file")))
            .stderr(Stdio::from(log))
            .spawn()
            .expect("python worker starts"),
    );
    let id = detach(&sb, &[fixture("speech.wav")]).remove(0);
    let job = sb.job(&id, "TRANSCRIPTION");
    let deadline = Instant::now() + Duration::from_secs(90);
    let line = loop {
        if let Some(line) = std::fs::read_to_string(&received)
            .ok()
            .and_then(|t| t.lines().next().map(str::to_string))
        {
            break line;
        }
        assert!(
            Instant::now() < deadline,
            "the Python worker received nothing in 90 s; its log:\n{}",
            std::fs::read_to_string(&log_path).unwrap_or_default()
        );
        std::thread::sleep(Duration::from_millis(300));
    };
    let got: Value = serde_json::from_str(&line).expect("JSON line");
    assert_eq!(got["task"], "pipeline.transcribe");
    assert_eq!(got["id"], job["task_id"]);
    assert_eq!(got["kwargs"]["job_id"], job["id"]);
    assert_eq!(got["kwargs"]["audio_id"], id.as_str());
}

#[test]
fn redis_python_worker_receives_our_tasks() {
    python_worker_receives_our_tasks(Broker::Redis, 10);
}

#[test]
fn amqp_python_worker_receives_our_tasks() {
    python_worker_receives_our_tasks(Broker::Amqp, 10);
}

/// Two workers; the one running the job is killed with SIGKILL in the
/// middle of the transcription. The other completes it: one COMPLETED
/// transition, both attempts in the audit trail, one set of outputs.
fn killed_worker_loses_nothing(broker: Broker, redis_db: u8) {
    let Some((sb, _queue)) = scaled_sandbox(broker, redis_db) else {
        return;
    };
    let sb = sb
        .env("PIPELINE_PROCESSING_LEASE_SECS", "4")
        .env("PIPELINE_PROCESSING_HEARTBEAT_SECS", "1")
        .env("PIPELINE_BROKER_VISIBILITY_TIMEOUT_SECS", "6");
    let id = detach(&sb, &[long_fixture("long-1min.wav")]).remove(0);
    let mut first = sb.spawn_worker("first");
    let running = wait_running(&sb, &id, &first);
    let holder = running["worker"].as_str().expect("worker id").to_string();
    // Mid-transcription: some audio is done, not all of it.
    wait_for(
        Duration::from_secs(120),
        Duration::from_millis(200),
        "progress",
        || {
            let job = sb.job(&id, "TRANSCRIPTION");
            let progress = job["progress"].as_f64().unwrap_or(0.0);
            assert!(progress < 100.0, "finished before the kill: {job:#}");
            (progress > 0.0).then_some(())
        },
    );
    let second = sb.spawn_worker("second");
    first.signal(libc::SIGKILL);
    first
        .wait_exit(Duration::from_secs(10))
        .expect("SIGKILL ends the worker");
    let doc = wait_final(&sb, &id, Duration::from_secs(300), &second);
    let transcription = find_job(&doc, "TRANSCRIPTION");
    assert_eq!(transcription["attempt"], 2, "{doc:#}");
    assert_ne!(transcription["worker"], holder.as_str(), "{doc:#}");
    let events = sb.json(&["jobs", &id, "--events"]);
    let trail: Vec<&Value> = events["events"]
        .as_array()
        .into_iter()
        .flatten()
        .filter(|e| e["job_id"] == transcription["id"])
        .collect();
    // Notes (a duplicate delivery seen and acknowledged) keep the status;
    // transitions change it.
    let completed = trail
        .iter()
        .filter(|e| e["to_status"] == "COMPLETED" && e["from_status"] != "COMPLETED")
        .count();
    assert_eq!(completed, 1, "one COMPLETED transition: {trail:#?}");
    let claims = trail
        .iter()
        .filter(|e| e["to_status"] == "RUNNING" && e["from_status"] != "RUNNING")
        .count();
    assert_eq!(claims, 2, "both attempts in the audit trail: {trail:#?}");
    for (format, file) in doc["outputs"].as_object().expect("outputs") {
        assert!(
            Path::new(file.as_str().unwrap_or("")).is_file(),
            "{format} output missing"
        );
    }
}

#[test]
fn redis_killed_worker_loses_nothing() {
    killed_worker_loses_nothing(Broker::Redis, 12);
}

#[test]
fn amqp_killed_worker_loses_nothing() {
    killed_worker_loses_nothing(Broker::Amqp, 12);
}

/// A worker killed with SIGKILL while it runs one job and holds the
/// messages of two more that it prefetched. Redis keeps those in kombu's
/// `unacked` hash until the visibility timeout (an hour, left at its
/// default here), and their jobs, never claimed, have no lease to expire:
/// the next worker must still run all three, each once, soon after the
/// dead worker's lease.
fn prefetched_messages_of_a_killed_worker_run_soon(broker: Broker, redis_db: u8) {
    let Some((sb, _queue)) = scaled_sandbox(broker, redis_db) else {
        return;
    };
    let lease = 4;
    let sb = sb
        .env("PIPELINE_PROCESSING_LEASE_SECS", &lease.to_string())
        .env("PIPELINE_PROCESSING_HEARTBEAT_SECS", "1");
    let files = [
        long_fixture("long-1min.wav"),
        fixture("speech.flac"),
        fixture("speech-8k.wav"),
    ];
    let ids = detach(&sb, &files);
    let mut first = sb.spawn_worker("first");
    wait_running(&sb, &ids[0], &first);
    // The other two messages reach the worker's inbox right after the
    // first: a second is plenty on loopback.
    std::thread::sleep(Duration::from_secs(2));
    for id in &ids[1..] {
        assert_eq!(
            sb.job(id, "TRANSCRIPTION")["status"],
            "QUEUED",
            "prefetched, not started"
        );
    }
    first.signal(libc::SIGKILL);
    first
        .wait_exit(Duration::from_secs(10))
        .expect("SIGKILL ends the worker");
    let killed = Instant::now();
    let second = sb.spawn_worker("second");
    // The short files come first once the long one is put back: they were
    // waiting, not running. Without their messages back they would wait
    // for the visibility timeout.
    for id in &ids[1..] {
        wait_final(&sb, id, Duration::from_secs(120), &second);
    }
    let short_done = killed.elapsed();
    wait_final(&sb, &ids[0], Duration::from_secs(300), &second);
    assert!(
        short_done < Duration::from_secs(120),
        "the prefetched files took {short_done:?} after the kill"
    );
    for id in &ids {
        let doc = sb.check_status(id);
        assert_eq!(doc["status"], "COMPLETED", "{doc:#}\n{}", second.log());
        let events = sb.json(&["jobs", id, "--events"]);
        for job in doc["jobs"].as_array().into_iter().flatten() {
            let completed = events["events"]
                .as_array()
                .into_iter()
                .flatten()
                .filter(|e| {
                    e["job_id"] == job["id"]
                        && e["to_status"] == "COMPLETED"
                        && e["from_status"] != "COMPLETED"
                })
                .count();
            assert_eq!(completed, 1, "run once: {events:#}");
        }
    }
}

#[test]
fn redis_prefetched_messages_of_a_killed_worker_run_soon() {
    prefetched_messages_of_a_killed_worker_run_soon(Broker::Redis, 4);
}

#[test]
fn amqp_prefetched_messages_of_a_killed_worker_run_soon() {
    prefetched_messages_of_a_killed_worker_run_soon(Broker::Amqp, 4);
}

/// RabbitMQ's `consumer_timeout` shortened for as long as the guard lives
/// (the server reads it at every check of a channel), with the channels
/// checked every second instead of every minute.
struct ShortConsumerTimeout;

impl ShortConsumerTimeout {
    fn set(timeout_ms: u64, tick_ms: u64) {
        RabbitRestart::ctl(&[
            "eval",
            &format!(
                "application:set_env(rabbit, consumer_timeout, {timeout_ms}), \
                 application:set_env(rabbit, channel_tick_interval, {tick_ms})."
            ),
        ]);
    }
}

impl Drop for ShortConsumerTimeout {
    fn drop(&mut self) {
        Self::set(1_800_000, 60_000);
    }
}

/// A transcription that runs longer than the broker lets a delivery stay
/// unacknowledged (RabbitMQ's `consumer_timeout`, kombu's visibility
/// timeout on Redis; both shortened to 2 s): the broker neither closes the
/// worker's channel nor delivers the job again, and it runs once.
fn a_job_longer_than_the_brokers_timeout_runs_once(broker: Broker, redis_db: u8) {
    let Some((sb, _queue)) = scaled_sandbox(broker, redis_db) else {
        return;
    };
    let sb = sb.env("PIPELINE_BROKER_VISIBILITY_TIMEOUT_SECS", "2");
    let _short = matches!(broker, Broker::Amqp).then(|| {
        ShortConsumerTimeout::set(2_000, 1_000);
        ShortConsumerTimeout
    });
    let ids = detach(&sb, &[long_fixture("long-1min.wav")]);
    let worker = sb.spawn_worker("worker");
    wait_final(&sb, &ids[0], Duration::from_secs(300), &worker);
    let events = sb.json(&["jobs", &ids[0], "--events"]);
    let transcription = sb.job(&ids[0], "TRANSCRIPTION");
    let of_it: Vec<&Value> = events["events"]
        .as_array()
        .into_iter()
        .flatten()
        .filter(|e| e["job_id"] == transcription["id"])
        .collect();
    let at = |to: &str| {
        of_it
            .iter()
            .find(|e| e["to_status"] == to)
            .and_then(|e| e["at"].as_str())
            .and_then(|t| chrono::DateTime::parse_from_rfc3339(t).ok())
            .unwrap_or_else(|| panic!("no move to {to}: {events:#}"))
    };
    let ran = at("COMPLETED") - at("RUNNING");
    assert!(
        ran > chrono::Duration::seconds(3),
        "the job must outlast the timeout and a check of it: it ran {ran}"
    );
    let runs = of_it.iter().filter(|e| e["to_status"] == "RUNNING").count();
    assert_eq!(runs, 1, "claimed once: {events:#}");
    assert_eq!(transcription["attempt"], 1, "{transcription:#}");
    let log = worker.log();
    assert!(
        !log.contains("lost the broker"),
        "the broker closed nothing:\n{log}"
    );
    let trail = audit_trail(&sb, &ids[0]);
    assert!(!trail.contains("delivered again"), "{trail}");
}

#[test]
fn redis_a_job_longer_than_the_brokers_timeout_runs_once() {
    a_job_longer_than_the_brokers_timeout_runs_once(Broker::Redis, 14);
}

#[test]
fn amqp_a_job_longer_than_the_brokers_timeout_runs_once() {
    a_job_longer_than_the_brokers_timeout_runs_once(Broker::Amqp, 14);
}

/// Files dropped at once on a broker complete one by one: the worker whose
/// transcription completed takes that file's PROCESSING job next, instead
/// of queueing it behind every transcription sent before it (a broker's
/// queue is first in, first out, and the worker has prefetched them all).
fn files_complete_one_by_one(broker: Broker, redis_db: u8) {
    let Some((sb, _queue)) = scaled_sandbox(broker, redis_db) else {
        return;
    };
    let batch = copies(&sb, &fixture("speech.wav"), 4);
    let out = sb.run(&["process", "--detach", "--force", "--json", path(&batch)]);
    out.expect_code(0);
    let ids: Vec<String> = out.json()["files"]
        .as_array()
        .expect("files")
        .iter()
        .map(|f| f["audio_id"].as_str().expect("id").to_string())
        .collect();
    let worker = sb.spawn_worker("worker");
    wait_all_completed(&sb, &ids, &worker);
    // When each file completed, and when each transcription started.
    let mut completed = Vec::new();
    let mut started = Vec::new();
    for id in &ids {
        let events = sb.json(&["jobs", id, "--events"]);
        let transcription = sb.job(id, "TRANSCRIPTION");
        let processing = sb.job(id, "PROCESSING");
        for e in events["events"].as_array().into_iter().flatten() {
            let at = e["at"].as_str().unwrap_or_default().to_string();
            if e["job_id"] == processing["id"] && e["to_status"] == "COMPLETED" {
                completed.push(at);
            } else if e["job_id"] == transcription["id"] && e["to_status"] == "RUNNING" {
                started.push(at);
            }
        }
    }
    completed.sort();
    started.sort();
    assert_eq!(
        (completed.len(), started.len()),
        (4, 4),
        "{completed:?} {started:?}"
    );
    // RFC 3339 times of one clock sort as text.
    assert!(
        completed[0] < started[3],
        "the first file completed at {} and the last transcription started at {}: \
         the files waited for each other\n{}",
        completed[0],
        started[3],
        worker.log()
    );
    assert!(
        completed[2] < started[3],
        "three files were done before the last began: {completed:?} {started:?}"
    );
}

#[test]
fn redis_files_complete_one_by_one() {
    files_complete_one_by_one(Broker::Redis, 1);
}

#[test]
fn amqp_files_complete_one_by_one() {
    files_complete_one_by_one(Broker::Amqp, 1);
}

/// Copies `source` under `count` names in a new folder of the sandbox.
fn copies(sb: &Sandbox, source: &Path, count: usize) -> PathBuf {
    let dir = sb.root().join("batch");
    std::fs::create_dir_all(&dir).expect("batch dir");
    for i in 0..count {
        std::fs::copy(source, dir.join(format!("talk-{i:02}.wav"))).expect("copy");
    }
    dir
}

/// Waits for every file of `ids` to be COMPLETED.
fn wait_all_completed(sb: &Sandbox, ids: &[String], worker: &WorkerProc) {
    wait_for(
        Duration::from_secs(400),
        Duration::from_secs(2),
        "every file COMPLETED",
        || {
            let doc = sb.json(&["list-recent", "--limit", "100"]);
            let files = doc["files"].as_array().cloned().unwrap_or_default();
            let done = ids
                .iter()
                .filter(|id| {
                    files
                        .iter()
                        .any(|f| f["id"] == id.as_str() && f["status"] == "COMPLETED")
                })
                .count();
            if let Some(bad) = files
                .iter()
                .find(|f| f["status"] == "FAILED" || f["status"] == "CANCELLED")
            {
                panic!("a file ended {bad:#}\nworker log:\n{}", worker.log());
            }
            (done == ids.len()).then_some(())
        },
    );
}

/// A private Redis server, stopped on drop: restarting it touches no other test.
struct PrivateRedis {
    port: u16,
    dir: tempfile::TempDir,
    child: Option<Child>,
}

impl PrivateRedis {
    fn start() -> PrivateRedis {
        let port = 20_000 + (std::process::id() % 10_000) as u16;
        let mut redis = PrivateRedis {
            port,
            dir: tempfile::tempdir().expect("temp dir"),
            child: None,
        };
        redis.up();
        redis
    }

    fn up(&mut self) {
        let child = Command::new("redis-server")
            .args([
                "--port",
                &self.port.to_string(),
                "--bind",
                "127.0.0.1",
                "--save",
                "",
            ])
            .args(["--appendonly", "no", "--dir"])
            .arg(self.dir.path())
            .stdout(Stdio::null())
            .spawn()
            .expect("redis-server starts");
        self.child = Some(child);
        wait_for(
            Duration::from_secs(10),
            Duration::from_millis(100),
            "redis up",
            || std::net::TcpStream::connect(("127.0.0.1", self.port)).ok(),
        );
    }

    fn down(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

impl Drop for PrivateRedis {
    fn drop(&mut self) {
        self.down();
    }
}

/// Starts RabbitMQ's application again even if the test fails.
struct RabbitRestart;

impl RabbitRestart {
    fn ctl(args: &[&str]) {
        let status = Command::new("rabbitmqctl")
            .args(args)
            .stdout(Stdio::null())
            .status()
            .expect("rabbitmqctl runs");
        assert!(status.success(), "rabbitmqctl {args:?} failed");
    }
}

impl Drop for RabbitRestart {
    fn drop(&mut self) {
        let _ = Command::new("rabbitmqctl")
            .arg("start_app")
            .stdout(Stdio::null())
            .status();
    }
}

/// The broker is stopped and started while a worker runs a batch of 20
/// files: the worker reconnects and every file completes.
fn broker_restart_loses_no_job(broker: Broker) {
    let Some(sb) = Sandbox::with_model() else {
        return;
    };
    let mut private_redis = matches!(broker, Broker::Redis).then(PrivateRedis::start);
    let url = match &private_redis {
        Some(redis) => format!("redis://127.0.0.1:{}/0", redis.port),
        None => broker.url(0),
    };
    let sb = sb
        .env("PIPELINE_DATABASE_URL", &postgres_url())
        .env("PIPELINE_BROKER_URL", &url)
        .env("PIPELINE_BROKER_QUEUE", &unique("restart"))
        .env("PIPELINE_PROCESSING_CONCURRENCY", "2");
    let batch = copies(&sb, &fixture("speech.wav"), 20);
    let out = sb.run(&["process", "--detach", "--force", "--json", path(&batch)]);
    out.expect_code(0);
    let ids: Vec<String> = out.json()["files"]
        .as_array()
        .expect("files")
        .iter()
        .map(|f| f["audio_id"].as_str().expect("id").to_string())
        .collect();
    assert_eq!(ids.len(), 20);
    let worker = sb.spawn_worker("worker");
    // Let it get going, then take the broker away for a few seconds.
    wait_for(
        Duration::from_secs(120),
        Duration::from_secs(1),
        "a first file done",
        || {
            let doc = sb.json(&["list-recent", "--limit", "100"]);
            doc["files"]
                .as_array()
                .is_some_and(|f| f.iter().any(|f| f["status"] == "COMPLETED"))
                .then_some(())
        },
    );
    let started = Instant::now();
    let _rabbit = match (&mut private_redis, broker) {
        (Some(redis), _) => {
            redis.down();
            std::thread::sleep(Duration::from_secs(3));
            redis.up();
            None
        }
        (None, _) => {
            let guard = RabbitRestart;
            RabbitRestart::ctl(&["stop_app"]);
            std::thread::sleep(Duration::from_secs(3));
            RabbitRestart::ctl(&["start_app"]);
            Some(guard)
        }
    };
    eprintln!(
        "broker down and up again in {:.1} s",
        started.elapsed().as_secs_f64()
    );
    wait_all_completed(&sb, &ids, &worker);
    let log = worker.log();
    assert!(
        log.contains("lost the broker"),
        "the outage was seen:\n{log}"
    );
}

#[test]
fn redis_restart_loses_no_job() {
    broker_restart_loses_no_job(Broker::Redis);
}

#[test]
fn amqp_restart_loses_no_job() {
    broker_restart_loses_no_job(Broker::Amqp);
}

/// A broker that does not answer: `process` warns once, the jobs run on the
/// embedded queue, and the audit trail says why.
#[test]
fn unreachable_broker_falls_back_to_the_embedded_queue() {
    let Some(sb) = Sandbox::with_model() else {
        return;
    };
    let sb = sb
        .env("PIPELINE_BROKER_URL", "redis://127.0.0.1:1/0")
        .env("PIPELINE_BROKER_CONNECT_TIMEOUT_SECS", "2");
    let speech = fixture("speech.wav");
    let other = sb.root().join("other.wav");
    std::fs::copy(&speech, &other).expect("copy");
    let started = Instant::now();
    let out = sb.run(&["process", "--force", path(&speech), path(&other)]);
    out.expect_code(0);
    assert!(started.elapsed() < Duration::from_secs(120));
    assert_eq!(
        out.stderr.matches("broker unavailable").count(),
        1,
        "warned once:\n{out}"
    );
    let id = id_after(&out.stdout, "Successfully started processing: ");
    let trail = audit_trail(&sb, &id);
    assert!(trail.contains("fell back to the embedded queue"), "{trail}");
    let status = sb.run(&["status"]);
    assert!(status.stdout.contains("unreachable"), "{status}");
}

/// `status` shows the broker's reachability, latency and queue depth.
#[test]
fn status_shows_the_broker_redis_and_amqp() {
    for (broker, db) in [(Broker::Redis, 14), (Broker::Amqp, 14)] {
        let sb = Sandbox::new()
            .env("PIPELINE_BROKER_URL", &broker.url(db))
            .env("PIPELINE_BROKER_QUEUE", &unique("status"));
        let doc = sb.json(&["status"]);
        assert_eq!(doc["broker"]["reachable"], true, "{broker:?}: {doc:#}");
        assert!(doc["broker"]["latency_ms"].as_f64().is_some());
        let queues = doc["broker"]["queues"].as_object().expect("queues");
        assert_eq!(queues.values().next(), Some(&Value::from(0)));
    }
}

/// moto's S3 server from PyPI, with one bucket; stopped on drop.
struct LocalS3 {
    endpoint: String,
    child: Child,
}

impl LocalS3 {
    fn start(python: &Path) -> LocalS3 {
        let port = 21_000 + (std::process::id() % 5_000) as u16;
        let moto = python.with_file_name("moto_server");
        let child = Command::new(&moto)
            .args(["-H", "127.0.0.1", "-p", &port.to_string()])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("moto_server starts");
        let endpoint = format!("http://127.0.0.1:{port}");
        wait_for(
            Duration::from_secs(30),
            Duration::from_millis(200),
            "moto up",
            || std::net::TcpStream::connect(("127.0.0.1", port)).ok(),
        );
        let s3 = LocalS3 { endpoint, child };
        s3.boto("s3.create_bucket(Bucket='pipeline')", python);
        s3
    }

    /// Runs a line of boto3 against the server with `s3` as its client; stdout.
    fn boto(&self, code: &str, python: &Path) -> String {
        let script = format!(
            "import boto3, json\ns3 = boto3.client('s3', endpoint_url='{}', \
             aws_access_key_id='testing', aws_secret_access_key='testing', \
             region_name='us-east-1')\n{code}\n",
            self.endpoint
        );
        let out = Command::new(python)
            .args(["-c", &script])
            .output()
            .expect("python runs");
        assert!(
            out.status.success(),
            "boto3 failed: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8_lossy(&out.stdout).into_owned()
    }

    fn keys(&self, python: &Path) -> Vec<String> {
        let listing = self.boto(
            "print(json.dumps([o['Key'] for o in s3.list_objects_v2(Bucket='pipeline').get('Contents', [])]))",
            python,
        );
        serde_json::from_str(listing.trim()).expect("key list")
    }
}

impl Drop for LocalS3 {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Audio and outputs in an S3-compatible store: a producer and a worker
/// with different data directories (as on two machines) share only
/// PostgreSQL, the broker and the bucket, and the file completes.
#[test]
fn redis_workers_on_other_machines_share_an_object_store() {
    let Some(python) = python() else { return };
    let Some(producer) = Sandbox::with_model() else {
        return;
    };
    let Some(machine_b) = Sandbox::with_model() else {
        return;
    };
    let s3 = LocalS3::start(&python);
    let shared = [
        ("PIPELINE_DATABASE_URL", postgres_url()),
        ("PIPELINE_BROKER_URL", Broker::Redis.url(13)),
        ("PIPELINE_BROKER_QUEUE", unique("s3")),
        ("PIPELINE_STORAGE_URL", "s3://pipeline/shared".to_string()),
        ("PIPELINE_STORAGE_ENDPOINT", s3.endpoint.clone()),
        ("PIPELINE_STORAGE_ACCESS_KEY_ID", "testing".to_string()),
        ("PIPELINE_STORAGE_SECRET_ACCESS_KEY", "testing".to_string()),
    ];
    let (producer, machine_b) = shared.iter().fold((producer, machine_b), |(a, b), (k, v)| {
        (a.env(k, v), b.env(k, v))
    });
    let id = detach(&producer, &[fixture("speech.wav")]).remove(0);
    let worker = machine_b.spawn_worker("machine-b");
    let doc = wait_final(&producer, &id, Duration::from_secs(180), &worker);
    let keys = s3.keys(&python);
    let sha = doc["sha256"].as_str().expect("sha256");
    assert!(
        keys.iter()
            .any(|k| k.starts_with("shared/audio/") && k.contains(sha)),
        "audio in the bucket: {keys:?}"
    );
    assert!(
        keys.iter()
            .any(|k| k.starts_with(&format!("shared/outputs/{id}/")) && k.ends_with(".txt")),
        "outputs in the bucket: {keys:?}"
    );
    assert!(
        !producer.data.join("audio").exists(),
        "the producer kept no local copy a worker could rely on"
    );
    assert!(
        machine_b.data.join("cache/audio").is_dir(),
        "the worker downloaded the audio from the store"
    );
}

/// `cancel` on a queued job revokes its message (the worker that receives
/// it discards it), and `retry` sends a new one that a worker runs.
#[test]
fn redis_cancel_revokes_and_retry_resends() {
    let Some((sb, _queue)) = scaled_sandbox(Broker::Redis, 0) else {
        return;
    };
    let id = detach(&sb, &[fixture("speech.wav")]).remove(0);
    sb.run(&["cancel", &id]).expect_code(0);
    assert_eq!(sb.check_status(&id)["status"], "CANCELLED");
    let worker = sb.spawn_worker("worker");
    let job = sb.job(&id, "TRANSCRIPTION");
    wait_for(
        Duration::from_secs(60),
        Duration::from_millis(500),
        "the revoked message to be discarded",
        || audit_trail(&sb, &id).contains("discarded").then_some(()),
    );
    assert_eq!(sb.job(&id, "TRANSCRIPTION")["status"], "CANCELLED");
    assert_eq!(sb.job(&id, "TRANSCRIPTION")["attempt"], job["attempt"]);

    sb.run(&["retry", &id]).expect_code(0);
    let doc = wait_final(&sb, &id, Duration::from_secs(180), &worker);
    assert_eq!(find_job(&doc, "TRANSCRIPTION")["attempt"], 1, "{doc:#}");
}

/// `worker --queues a,b` reads every queue it names: a file sent to the
/// second queue is done by a worker whose own default is another.
#[test]
fn redis_worker_reads_every_queue_it_is_given() {
    let Some((sb, queue)) = scaled_sandbox(Broker::Redis, 2) else {
        return;
    };
    let id = detach(&sb, &[fixture("speech.wav")]).remove(0);
    let other = unique("other");
    let log = sb.root().join("queues-worker.log");
    let mut cmd = sb.command(
        &["worker", "--queues", &format!("{other},{queue}")],
        &[("PIPELINE_BROKER_QUEUE", &other)],
    );
    cmd.stdin(Stdio::null())
        .stdout(Stdio::from(std::fs::File::create(&log).expect("log")))
        .stderr(Stdio::from(
            std::fs::File::options()
                .append(true)
                .open(&log)
                .expect("log"),
        ));
    let worker = WorkerProc {
        child: cmd.spawn().expect("worker starts"),
        log,
    };
    wait_final(&sb, &id, Duration::from_secs(180), &worker);
    assert!(
        worker.log().contains(&format!("queues {other},{queue}")),
        "{}",
        worker.log()
    );
}
