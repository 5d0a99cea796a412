//! Webhooks end to end: the real binary and model, a real HTTP receiver
//! (Python's standard library, checking signatures with its own hmac) that
//! is killed and started again mid-run, and `webhooks list|retry`.

mod common;

use common::server;
use common::*;
use serde_json::Value;
use std::collections::HashSet;
use std::io::{BufRead, BufReader};
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::Duration;

/// The receiver script; it answers 204 and logs each request as JSON.
struct Receiver {
    child: Option<Child>,
    port: u16,
    secret: String,
    log: PathBuf,
}

impl Receiver {
    fn start(port: u16, secret: &str, log: PathBuf) -> Receiver {
        let mut receiver = Receiver {
            child: None,
            port,
            secret: secret.to_string(),
            log,
        };
        receiver.restart();
        receiver
    }

    /// Starts the script (again) on the same port and log.
    fn restart(&mut self) {
        let script = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/py/webhook_receiver.py");
        let mut child = Command::new("python3")
            .arg(script)
            .arg(self.port.to_string())
            .arg(&self.secret)
            .arg(&self.log)
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .spawn()
            .expect("python3 runs the receiver");
        let mut line = String::new();
        BufReader::new(child.stdout.take().expect("stdout"))
            .read_line(&mut line)
            .expect("receiver says ready");
        assert_eq!(line.trim(), "ready", "receiver did not start");
        self.child = Some(child);
    }

    fn kill(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }

    /// Every request received so far, in order.
    fn records(&self) -> Vec<Value> {
        std::fs::read_to_string(&self.log)
            .unwrap_or_default()
            .lines()
            .map(|l| serde_json::from_str(l).expect("receiver log line is JSON"))
            .collect()
    }

    fn url(&self, path: &str) -> String {
        format!("http://127.0.0.1:{}{path}", self.port)
    }
}

impl Drop for Receiver {
    fn drop(&mut self) {
        self.kill();
    }
}

/// Lets endpoints be loopback addresses, as the receiver here is.
const ALLOW_PRIVATE: &str = "PIPELINE_WEBHOOKS_ALLOW_PRIVATE_TARGETS";

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .expect("a free port")
}

/// The events of one file as first received (redeliveries dropped).
fn events_of(records: &[Value], audio_id: &str) -> Vec<Value> {
    let mut seen = HashSet::new();
    records
        .iter()
        .map(|r| r["body"].clone())
        .filter(|b| b["audio_id"] == audio_id)
        .filter(|b| seen.insert(b["id"].as_str().unwrap_or("").to_string()))
        .collect()
}

fn name(event: &Value) -> String {
    let job = event["job"]["type"].as_str().unwrap_or("");
    match event["event"].as_str().unwrap_or("") {
        e if e.starts_with("job.") => format!("{e}({job})"),
        e => e.to_string(),
    }
}

/// A file's events tell its whole life, in order, with the job's fields.
fn assert_lifecycle(events: &[Value]) {
    let names: Vec<String> = events
        .iter()
        .map(name)
        .filter(|n| !n.starts_with("job.progress"))
        .collect();
    assert_eq!(
        names,
        [
            "audio.queued",
            "job.started(TRANSCRIPTION)",
            "job.completed(TRANSCRIPTION)",
            "job.started(PROCESSING)",
            "job.completed(PROCESSING)",
            "audio.completed",
        ],
        "events out of order or missing: {events:#?}"
    );
    let mut last_progress = 0.0;
    for event in events {
        assert!(event["created_at"].is_string(), "{event:#}");
        if let Some(job) = event.get("job") {
            for field in [
                "id",
                "type",
                "status",
                "progress",
                "attempt",
                "task_id",
                "created_at",
            ] {
                assert!(!job[field].is_null(), "job.{field} missing: {event:#}");
            }
            if event["event"] == "job.progress" {
                let progress = job["progress"].as_f64().unwrap_or(0.0);
                assert!(progress > last_progress, "progress went back: {events:#?}");
                last_progress = progress;
            }
            if event["event"] == "job.completed" {
                assert_eq!(job["status"], "COMPLETED", "{event:#}");
                assert_eq!(job["progress"].as_f64(), Some(100.0), "{event:#}");
            }
        }
    }
}

fn deliveries(sb: &Sandbox, status: Option<&str>) -> Vec<Value> {
    let mut args = vec!["--json", "webhooks", "list", "--limit", "500"];
    if let Some(status) = status {
        args.extend(["--status", status]);
    }
    sb.json(&args)["deliveries"]
        .as_array()
        .cloned()
        .unwrap_or_default()
}

#[test]
fn global_webhooks_survive_a_receiver_restart_signed_and_in_order() {
    let Some(sb) = Sandbox::with_model() else {
        return;
    };
    let port = free_port();
    let mut receiver = Receiver::start(port, "s3cret", sb.root().join("received.jsonl"));
    let sb = sb
        .env("PIPELINE_WEBHOOKS_URLS", &receiver.url("/hooks"))
        .env("PIPELINE_WEBHOOKS_SECRET", "s3cret")
        .env(ALLOW_PRIVATE, "true");
    let files = [
        fixture("speech.wav"),
        fixture("speech.mp3"),
        fixture("speech.flac"),
    ];
    let ids = detach(&sb, &files);
    let worker = sb.spawn_worker("worker");
    wait_for(
        Duration::from_secs(120),
        Duration::from_millis(100),
        "a job.started delivery",
        || {
            receiver
                .records()
                .iter()
                .any(|r| r["event"] == "job.started")
                .then_some(())
        },
    );
    receiver.kill();
    // The relay has seen the receiver down before it comes back.
    wait_for(
        Duration::from_secs(60),
        Duration::from_millis(200),
        "a failed attempt",
        || {
            deliveries(&sb, Some("PENDING"))
                .iter()
                .any(|d| d["attempts"].as_u64() >= Some(1))
                .then_some(())
        },
    );
    receiver.restart();
    for id in &ids {
        wait_final(&sb, id, Duration::from_secs(240), &worker);
    }
    wait_for(
        Duration::from_secs(90),
        Duration::from_millis(200),
        "audio.completed for every file",
        || {
            let records = receiver.records();
            ids.iter()
                .all(|id| {
                    records
                        .iter()
                        .any(|r| r["event"] == "audio.completed" && r["body"]["audio_id"] == **id)
                })
                .then_some(())
        },
    );
    let records = receiver.records();
    for record in &records {
        assert_eq!(record["valid"], true, "bad signature: {record:#}");
        assert_eq!(record["path"], "/hooks");
        assert_eq!(record["event"], record["body"]["event"]);
        assert_eq!(record["delivery"], record["body"]["id"]);
    }
    for id in &ids {
        assert_lifecycle(&events_of(&records, id));
    }
    // One endpoint gets every event in the order they happened.
    let mut seen = HashSet::new();
    let times: Vec<String> = records
        .iter()
        .filter(|r| seen.insert(r["delivery"].as_str().unwrap_or("").to_string()))
        .map(|r| r["body"]["created_at"].as_str().unwrap_or("").to_string())
        .collect();
    let mut sorted = times.clone();
    sorted.sort();
    assert_eq!(times, sorted, "deliveries out of order");
    let all = deliveries(&sb, None);
    assert_eq!(all.len(), seen.len(), "one delivery per event: {all:#?}");
    assert!(all.iter().all(|d| d["status"] == "DELIVERED"), "{all:#?}");
    assert!(
        all.iter().any(|d| d["attempts"].as_u64() >= Some(2)),
        "no delivery was retried: {all:#?}"
    );
    assert!(
        all.iter().all(|d| d.get("secret").is_none()),
        "secrets are never listed"
    );
}

#[test]
fn a_files_own_endpoint_hears_only_that_file_and_failed_deliveries_are_retried() {
    let Some(sb) = Sandbox::with_model() else {
        return;
    };
    let sb = sb.env(ALLOW_PRIVATE, "true");
    let port = free_port();
    let mut receiver = Receiver::start(port, "own-key", sb.root().join("received.jsonl"));
    let url = receiver.url("/own");
    // An endpoint the relay could never reach is refused before anything is stored.
    let bad = sb.run(&[
        "process",
        path(&fixture("speech.wav")),
        "--webhook-url",
        "http://",
    ]);
    bad.expect_code(2);
    assert!(bad.stderr.contains("--webhook-url \"http://\""), "{bad}");
    assert!(deliveries(&sb, None).is_empty());
    let out = sb.run(&[
        "process",
        path(&fixture("speech.wav")),
        "--webhook-url",
        &url,
        "--webhook-secret",
        "own-key",
    ]);
    out.expect_code(0);
    let first = id_after(&out.stdout, "Successfully started processing: ");
    let records = receiver.records();
    assert!(records.iter().all(|r| r["valid"] == true), "{records:#?}");
    assert_lifecycle(&events_of(&records, &first));

    // Without an endpoint of its own (and none global) a file sends nothing.
    let before = deliveries(&sb, None).len();
    sb.run(&["process", path(&fixture("speech.mp3"))])
        .expect_code(0);
    assert_eq!(deliveries(&sb, None).len(), before);
    assert_eq!(receiver.records().len(), records.len());

    // A dead receiver does not stop processing; its deliveries give up
    // after the retry period and are listed FAILED with the reason.
    receiver.kill();
    let out = sb.run_env(
        &[
            "process",
            path(&fixture("speech.flac")),
            "--webhook-url",
            &url,
            "--webhook-secret",
            "own-key",
        ],
        &[("PIPELINE_WEBHOOKS_RETRY_PERIOD_SECS", "2")],
    );
    out.expect_code(0);
    let third = id_after(&out.stdout, "Successfully started processing: ");
    let failed: Vec<Value> = deliveries(&sb, Some("FAILED"))
        .into_iter()
        .filter(|d| d["audio_id"] == third.as_str())
        .collect();
    assert!(
        failed.len() >= 6,
        "every event of the file failed: {failed:#?}"
    );
    for d in &failed {
        assert!(d["attempts"].as_u64() >= Some(1), "{d:#}");
        assert!(
            d["last_error"].as_str().is_some_and(|e| !e.is_empty()),
            "{d:#}"
        );
    }

    // Back up: the oldest is sent by id, the rest with --failed, in order.
    receiver.restart();
    let oldest = failed
        .iter()
        .filter_map(|d| d["id"].as_i64())
        .min()
        .expect("ids");
    let doc = sb.json(&["--json", "webhooks", "retry", &oldest.to_string()]);
    assert_eq!(doc["delivery"]["status"], "DELIVERED", "{doc:#}");
    let doc = sb.json(&["--json", "webhooks", "retry", "--failed"]);
    assert_eq!(
        doc["retried"].as_u64(),
        Some(failed.len() as u64 - 1),
        "{doc:#}"
    );
    assert_eq!(doc["pending"], 0, "{doc:#}");
    let records = receiver.records();
    assert!(records.iter().all(|r| r["valid"] == true), "{records:#?}");
    assert_lifecycle(&events_of(&records, &third));
    let again = sb.run(&["webhooks", "retry", &oldest.to_string()]);
    again.expect_code(2);
    assert!(again.stderr.contains("delivered already"), "{again}");
}

#[test]
fn an_upload_names_its_endpoint_and_the_api_lists_and_retries_deliveries() {
    let Some(sb) = Sandbox::with_model() else {
        return;
    };
    let sb = sb
        .env(ALLOW_PRIVATE, "true")
        .env("PIPELINE_WEBHOOKS_SECRET", "server-key");
    let receiver = Receiver::start(free_port(), "upload-key", sb.root().join("received.jsonl"));
    let (_, key) = server::new_key(&sb);
    let served = server::start(&sb, &["--workers", "1"]);
    let speech = std::fs::read(fixture("speech.wav")).expect("fixture");
    let url = receiver.url("/upload");
    let (status, doc) = served.upload_with(
        "speech.wav",
        &speech,
        &key,
        &[("webhook_url", &url), ("webhook_secret", "upload-key")],
    );
    assert_eq!(status, 202, "{doc:#}");
    let id = doc["id"].as_str().expect("id").to_string();
    wait_for(
        Duration::from_secs(120),
        Duration::from_millis(200),
        "audio.completed",
        || {
            receiver
                .records()
                .iter()
                .any(|r| r["event"] == "audio.completed")
                .then_some(())
        },
    );
    let records = receiver.records();
    assert!(records.iter().all(|r| r["valid"] == true), "{records:#?}");
    assert_lifecycle(&events_of(&records, &id));

    let (status, listed) = served.get("/api/v1/webhooks/deliveries?status=DELIVERED", Some(&key));
    assert_eq!(status, 200, "{listed:#}");
    let listed = listed["deliveries"].as_array().cloned().unwrap_or_default();
    assert_eq!(listed.len(), events_of(&records, &id).len(), "{listed:#?}");
    assert!(listed
        .iter()
        .all(|d| d["url"] == url.as_str() && d.get("secret").is_none()));
    let delivered = listed[0]["id"].as_i64().expect("id");
    let (status, doc) = served.send(
        "POST",
        &format!("/api/v1/webhooks/deliveries/{delivered}/retry"),
        &key,
    );
    assert_eq!(
        (status, doc["error"]["code"].as_str()),
        (409, Some("already_delivered")),
        "{doc:#}"
    );
    let (status, _) = served.send("POST", "/api/v1/webhooks/deliveries/999999/retry", &key);
    assert_eq!(status, 404);
    let (status, _) = served.get("/api/v1/webhooks/deliveries?status=LOST", Some(&key));
    assert_eq!(status, 400);

    // Without its own key an upload's events go unsigned: the server's key
    // never signs what any key holder asks it to send.
    let unsigned = receiver.url("/unsigned");
    let (status, doc) =
        served.upload_with("speech.mp3", &speech, &key, &[("webhook_url", &unsigned)]);
    assert_eq!(status, 202, "{doc:#}");
    let second = doc["id"].as_str().expect("id").to_string();
    wait_for(
        Duration::from_secs(120),
        Duration::from_millis(200),
        "the second file's audio.completed",
        || {
            receiver
                .records()
                .iter()
                .any(|r| {
                    r["event"] == "audio.completed" && r["body"]["audio_id"] == second.as_str()
                })
                .then_some(())
        },
    );
    let theirs: Vec<Value> = receiver
        .records()
        .into_iter()
        .filter(|r| r["body"]["audio_id"] == second.as_str())
        .collect();
    assert!(!theirs.is_empty());
    assert!(theirs.iter().all(|r| r["signed"] == false), "{theirs:#?}");

    // Endpoints are checked before anything is stored.
    let (status, doc) =
        served.upload_with("speech.wav", &speech, &key, &[("webhook_url", "ftp://x")]);
    assert_eq!(status, 400, "{doc:#}");
    let (status, doc) = served.upload_with("speech.wav", &speech, &key, &[("webhook_secret", "k")]);
    assert_eq!(status, 400, "{doc:#}");
}

/// An upload cannot make the server call its own network: endpoints on
/// loopback, on a private address, on `localhost`, and on a host name that
/// resolves to loopback are never contacted (a receiver listening there
/// counts what reaches it). With `webhooks.allow_private_targets` the
/// loopback endpoint is reached, and a redirect from it is not followed.
#[test]
fn an_upload_cannot_make_the_server_call_its_own_network() {
    let Some(sb) = Sandbox::with_model() else {
        return;
    };
    let port = free_port();
    let receiver = Receiver::start(port, "k", sb.root().join("received.jsonl"));
    let (_, key) = server::new_key(&sb);
    let served = server::start(&sb, &["--workers", "1"]);
    let speech = std::fs::read(fixture("speech.wav")).expect("fixture");
    for url in [
        receiver.url("/literal"),
        "http://10.0.0.1/x".to_string(),
        "http://169.254.169.254/latest/meta-data/".to_string(),
        format!("http://[::1]:{port}/v6"),
        format!("http://localhost:{port}/name"),
    ] {
        let (status, doc) =
            served.upload_with("speech.wav", &speech, &key, &[("webhook_url", &url)]);
        assert_eq!(status, 400, "{url}: {doc:#}");
        let message = doc["error"]["message"].as_str().unwrap_or("");
        assert!(message.contains("not a public address"), "{url}: {doc:#}");
    }

    // A name is judged by what it resolves to, at each connection.
    let host = std::fs::read_to_string("/proc/sys/kernel/hostname")
        .map(|h| h.trim().to_string())
        .unwrap_or_default();
    let resolves_to_loopback = std::net::ToSocketAddrs::to_socket_addrs(&(host.as_str(), port))
        .map(|mut addrs| addrs.any(|a| a.ip().is_loopback()))
        .unwrap_or(false);
    if resolves_to_loopback {
        let url = format!("http://{host}:{port}/by-name");
        let (status, doc) =
            served.upload_with("speech.wav", &speech, &key, &[("webhook_url", &url)]);
        assert_eq!(status, 202, "{doc:#}");
        wait_for(
            Duration::from_secs(120),
            Duration::from_millis(250),
            "a refused delivery",
            || {
                deliveries(&sb, None)
                    .iter()
                    .any(|d| {
                        d["url"] == url.as_str()
                            && d["last_error"]
                                .as_str()
                                .is_some_and(|e| e.contains("not public"))
                    })
                    .then_some(())
            },
        );
    } else {
        eprintln!("skipped the host-name case: {host:?} does not resolve to loopback here");
    }
    assert!(receiver.records().is_empty(), "{:#?}", receiver.records());

    // The server's relay (private targets refused) must not race the one
    // below for the same outbox.
    drop(served);
    // Allowed, the loopback endpoint is reached; its redirect is not followed.
    let out = sb.run_env(
        &[
            "process",
            path(&fixture("speech.mp3")),
            "--webhook-url",
            &receiver.url("/redirect"),
        ],
        &[
            (ALLOW_PRIVATE, "true"),
            ("PIPELINE_WEBHOOKS_RETRY_PERIOD_SECS", "2"),
        ],
    );
    out.expect_code(0);
    // (This relay also sends the refused deliveries still pending above:
    // here private targets are allowed.)
    let records = receiver.records();
    assert!(
        records.iter().any(|r| r["path"] == "/redirect"),
        "the allowed endpoint was never called: {records:#?}"
    );
    assert!(
        records.iter().all(|r| r["path"] != "/landing"),
        "a redirect was followed: {records:#?}"
    );
    // Attempted at least once each (FAILED after the short retry period,
    // or still PENDING if the command's drain ended first).
    let redirected: Vec<Value> = deliveries(&sb, None)
        .into_iter()
        .filter(|d| d["url"] == receiver.url("/redirect").as_str())
        .filter(|d| d["attempts"].as_u64() >= Some(1))
        .collect();
    assert!(!redirected.is_empty(), "{:#?}", deliveries(&sb, None));
    assert!(
        redirected.iter().all(|d| d["last_error"]
            .as_str()
            .is_some_and(|e| e.contains("redirects are not followed"))),
        "{redirected:#?}"
    );
}
