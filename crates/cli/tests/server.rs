//! The HTTP API over real HTTP: `pipeline-manager serve` started as a
//! process, API keys made with `api-key create`, uploads transcribed by the
//! real model, and the refusals a client must get (401, 413, 422, 404).

mod common;

use common::*;
use serde_json::Value;
use std::fs::File;
use std::path::Path;
use std::process::Stdio;
use std::time::Duration;

/// A running `serve`; killed on drop.
struct Server {
    proc: WorkerProc,
    base: String,
}

fn start(sb: &Sandbox, args: &[&str]) -> Server {
    let log = sb.root().join("serve.log");
    let mut all = vec!["serve", "--bind", "127.0.0.1:0"];
    all.extend_from_slice(args);
    let mut cmd = sb.command(&all, &[]);
    cmd.stdin(Stdio::null())
        .stdout(Stdio::from(File::create(&log).expect("log")))
        .stderr(Stdio::from(
            File::options().append(true).open(&log).expect("log"),
        ));
    let proc = WorkerProc {
        child: cmd.spawn().expect("serve starts"),
        log: log.clone(),
    };
    let base = wait_for(
        Duration::from_secs(30),
        Duration::from_millis(100),
        "listening",
        || {
            std::fs::read_to_string(&log).ok().and_then(|text| {
                text.lines()
                    .find_map(|l| l.strip_prefix("listening on "))
                    .and_then(|rest| rest.split_whitespace().next())
                    .map(str::to_string)
            })
        },
    );
    Server { proc, base }
}

fn agent() -> ureq::Agent {
    ureq::Agent::config_builder()
        .http_status_as_error(false)
        .timeout_global(Some(Duration::from_secs(60)))
        .build()
        .new_agent()
}

/// (status, body as JSON or as `{"text": ...}`).
fn answer(response: Result<ureq::http::Response<ureq::Body>, ureq::Error>) -> (u16, Value) {
    let mut response = response.expect("HTTP exchange");
    let status = response.status().as_u16();
    let text = response.body_mut().read_to_string().unwrap_or_default();
    let body = serde_json::from_str(&text).unwrap_or_else(|_| serde_json::json!({"text": text}));
    (status, body)
}

impl Server {
    fn get(&self, path: &str, key: Option<&str>) -> (u16, Value) {
        let mut request = agent().get(format!("{}{path}", self.base));
        if let Some(key) = key {
            request = request.header("Authorization", &format!("Bearer {key}"));
        }
        answer(request.call())
    }

    fn send(&self, method: &str, path: &str, key: &str) -> (u16, Value) {
        let url = format!("{}{path}", self.base);
        let auth = format!("Bearer {key}");
        let agent = agent();
        answer(match method {
            "POST" => agent.post(&url).header("Authorization", &auth).send_empty(),
            _ => agent.delete(&url).header("Authorization", &auth).call(),
        })
    }

    /// A multipart upload of `content` named `name`.
    fn upload(&self, name: &str, content: &[u8], key: &str) -> (u16, Value) {
        let boundary = "pipeline-test-boundary";
        let mut body = format!(
            "--{boundary}\r\nContent-Disposition: form-data; name=\"file\"; filename=\"{name}\"\r\n\
             Content-Type: application/octet-stream\r\n\r\n"
        )
        .into_bytes();
        body.extend_from_slice(content);
        body.extend_from_slice(format!("\r\n--{boundary}--\r\n").as_bytes());
        answer(
            agent()
                .post(format!("{}/api/v1/audio", self.base))
                .header("Authorization", &format!("Bearer {key}"))
                .header(
                    "Content-Type",
                    &format!("multipart/form-data; boundary={boundary}"),
                )
                .send(&body[..]),
        )
    }
}

fn new_key(sb: &Sandbox) -> (String, String) {
    let doc = sb.json(&["api-key", "create", "--name", "test"]);
    (
        doc["id"].as_str().expect("id").to_string(),
        doc["key"].as_str().expect("key").to_string(),
    )
}

#[test]
fn an_upload_is_transcribed_and_served_until_deleted() {
    let Some(sb) = Sandbox::with_model() else {
        return;
    };
    let (_, key) = new_key(&sb);
    let server = start(&sb, &["--workers", "1"]);
    let speech = std::fs::read(fixture("speech.wav")).expect("fixture");
    let (status, doc) = server.upload("speech.wav", &speech, &key);
    assert_eq!(status, 202, "{doc:#}\n{}", server.proc.log());
    assert_eq!(doc["jobs"].as_array().map(Vec::len), Some(2), "{doc:#}");
    let id = doc["id"].as_str().expect("audio id").to_string();

    let done = wait_for(
        Duration::from_secs(180),
        Duration::from_millis(500),
        "COMPLETED",
        || {
            let (status, doc) = server.get(&format!("/api/v1/audio/{id}"), Some(&key));
            assert_eq!(status, 200, "{doc:#}");
            match doc["status"].as_str() {
                Some("COMPLETED") => Some(doc),
                Some("QUEUED" | "PROCESSING") => None,
                _ => panic!("{doc:#}\n{}", server.proc.log()),
            }
        },
    );
    assert!(done["outputs"]["srt"].is_string(), "{done:#}");
    let (status, txt) = server.get(
        &format!("/api/v1/audio/{id}/transcript?format=txt"),
        Some(&key),
    );
    assert_eq!(status, 200);
    let text = txt["text"].as_str().expect("plain text");
    assert!(speech_wer(text) < WER_BOUND, "{text}");
    let (status, json) = server.get(&format!("/api/v1/audio/{id}/transcript"), Some(&key));
    assert_eq!(status, 200);
    assert!(
        json["segments"].as_array().is_some_and(|s| !s.is_empty()),
        "{json:#}"
    );
    let (_, jobs) = server.get(&format!("/api/v1/audio/{id}/jobs"), Some(&key));
    assert!(jobs["jobs"]
        .as_array()
        .expect("jobs")
        .iter()
        .all(|j| j["status"] == "COMPLETED"));
    let (_, page) = server.get("/api/v1/audio?status=completed&limit=10", Some(&key));
    assert!(page["files"]
        .as_array()
        .expect("files")
        .iter()
        .any(|f| f["id"] == id.as_str()));

    let (status, metrics) = server.get("/metrics", None);
    assert_eq!(status, 200, "metrics need no key");
    let metrics = metrics["text"].as_str().expect("text format");
    for line in [
        "pipeline_jobs{type=\"TRANSCRIPTION\",status=\"COMPLETED\"} 1",
        "pipeline_jobs{type=\"PROCESSING\",status=\"COMPLETED\"} 1",
        "pipeline_job_duration_seconds_count{type=\"TRANSCRIPTION\"} 1",
        "pipeline_http_requests_total{method=\"POST\",route=\"/api/v1/audio\",status=\"202\"} 1",
    ] {
        assert!(
            metrics.lines().any(|l| l == line),
            "no {line:?} in:\n{metrics}"
        );
    }
    let seconds: f64 = metrics
        .lines()
        .find_map(|l| l.strip_prefix("pipeline_audio_seconds_transcribed_total "))
        .and_then(|v| v.parse().ok())
        .expect("audio seconds");
    assert!(seconds > 10.0, "{metrics}");

    let (status, _) = server.send("DELETE", &format!("/api/v1/audio/{id}"), &key);
    assert_eq!(status, 204);
    let (status, gone) = server.get(&format!("/api/v1/audio/{id}"), Some(&key));
    assert_eq!(status, 404, "{gone:#}");
    assert_eq!(gone["error"]["code"], "not_found");
    let outputs = Path::new(done["outputs"]["srt"].as_str().unwrap_or(""));
    assert!(!outputs.exists(), "outputs removed with the file");
}

#[test]
fn keys_limits_and_bad_input_are_refused_cleanly() {
    let sb = Sandbox::new().env("PIPELINE_SERVER_MAX_UPLOAD_BYTES", "64KiB");
    let (key_id, key) = new_key(&sb);
    let server = start(&sb, &["--workers", "0"]);

    let (status, _) = server.get("/healthz", None);
    assert_eq!(status, 200, "health needs no key");
    for key in [None, Some("pm_not-a-key")] {
        let (status, doc) = server.get("/api/v1/audio", key);
        assert_eq!(status, 401, "{doc:#}");
        assert_eq!(doc["error"]["code"], "unauthorized");
    }
    let (status, _) = server.get("/api/v1/audio", Some(&key));
    assert_eq!(status, 200);

    let (status, doc) = server.upload("big.wav", &vec![0u8; 200 * 1024], &key);
    assert_eq!(status, 413, "{doc:#}");
    assert_eq!(doc["error"]["code"], "too_large");

    // A NUL in a header is refused by the HTTP parser before anything is stored.
    let (status, doc) = server.upload("evil\0.wav", b"RIFF", &key);
    assert_eq!(
        (status, doc["error"]["code"].as_str()),
        (400, Some("bad_request")),
        "{doc:#}"
    );
    let (status, doc) = server.upload("../../evil.wav", b"this is not audio at all", &key);
    assert_eq!(status, 422, "{doc:#}");
    assert_eq!(doc["error"]["code"], "not_audio");
    assert_eq!(doc["audio"]["original_name"], "evil.wav", "{doc:#}");
    assert_eq!(doc["audio"]["status"], "FAILED");
    assert!(doc["audio"]["jobs"]
        .as_array()
        .expect("jobs")
        .iter()
        .all(|j| j["status"] == "FAILED"));
    assert!(!sb.root().join("evil.wav").exists());
    assert!(!sb
        .data
        .parent()
        .unwrap_or(sb.root())
        .join("evil.wav")
        .exists());

    let (status, doc) = server.get("/api/v1/audio/not-an-id", Some(&key));
    assert_eq!(
        (status, doc["error"]["code"].as_str()),
        (400, Some("bad_request"))
    );
    let (status, doc) = server.get(
        &format!("/api/v1/audio/{}", uuid::Uuid::new_v4()),
        Some(&key),
    );
    assert_eq!(
        (status, doc["error"]["code"].as_str()),
        (404, Some("not_found"))
    );
    let (status, doc) = server.get("/api/v1/audio?status=sideways", Some(&key));
    assert_eq!(status, 400, "{doc:#}");
    let (status, doc) = server.get("/api/v1/status", Some(&key));
    assert_eq!(status, 200);
    assert_eq!(doc["database"]["reachable"], true);
    let (status, _) = server.get("/readyz", None);
    assert_eq!(status, 200);

    sb.run(&["api-key", "revoke", &key_id]).expect_code(0);
    let (status, _) = server.get("/api/v1/audio", Some(&key));
    assert_eq!(status, 401, "a revoked key is refused");
}

/// OpenAI's own Python client, pointed at `/v1`, gets a transcript through
/// the tracked pipeline: the file is then listed with its completed jobs.
#[test]
fn openai_python_client_works_unchanged() {
    let Some(python) = python() else { return };
    let Some(sb) = Sandbox::with_model() else {
        return;
    };
    let (_, key) = new_key(&sb);
    let server = start(&sb, &["--workers", "1"]);
    let script = r#"
import json, sys
from openai import OpenAI
client = OpenAI(base_url=sys.argv[1] + "/v1", api_key=sys.argv[2])
with open(sys.argv[3], "rb") as f:
    verbose = client.audio.transcriptions.create(
        model="whisper-1", file=f, response_format="verbose_json",
        timestamp_granularities=["word", "segment"])
with open(sys.argv[3], "rb") as f:
    srt = client.audio.transcriptions.create(model="whisper-1", file=f, response_format="srt")
try:
    OpenAI(base_url=sys.argv[1] + "/v1", api_key="pm_wrong").audio.transcriptions.create(
        model="whisper-1", file=open(sys.argv[3], "rb"))
    refused = None
except Exception as e:
    refused = type(e).__name__
print(json.dumps({"text": verbose.text, "segments": len(verbose.segments or []),
                  "words": len(verbose.words or []), "language": verbose.language,
                  "srt": srt, "refused": refused}))
"#;
    let speech = fixture("speech.wav");
    let out = std::process::Command::new(&python)
        .args(["-c", script, &server.base, &key, path(&speech)])
        .output()
        .expect("python runs");
    assert!(
        out.status.success(),
        "{}\n{}",
        String::from_utf8_lossy(&out.stderr),
        server.proc.log()
    );
    let got: Value = serde_json::from_slice(&out.stdout).expect("JSON");
    let text = got["text"].as_str().expect("text");
    assert!(speech_wer(text) < WER_BOUND, "{text}");
    assert!(got["segments"].as_u64() > Some(0), "{got:#}");
    assert!(got["words"].as_u64() > Some(0), "word timestamps: {got:#}");
    assert_eq!(got["language"], "en");
    assert!(
        got["srt"].as_str().is_some_and(|s| s.contains(" --> ")),
        "{got:#}"
    );
    assert_eq!(got["refused"], "AuthenticationError", "{got:#}");
    let (_, page) = server.get("/api/v1/audio?limit=10", Some(&key));
    assert!(page["files"]
        .as_array()
        .expect("files")
        .iter()
        .any(|f| f["status"] == "COMPLETED" && f["original_name"] == "speech.wav"));
}

/// Reads server-sent events from `path` until `done` says so; (event, id, data).
fn read_events(
    server: &Server,
    path: &str,
    key: &str,
    last_event_id: Option<&str>,
    mut done: impl FnMut(&[(String, Option<String>, Value)]) -> bool,
) -> Vec<(String, Option<String>, Value)> {
    use std::io::BufRead;
    let mut request = agent()
        .get(format!("{}{path}", server.base))
        .header("Authorization", &format!("Bearer {key}"));
    if let Some(id) = last_event_id {
        request = request.header("Last-Event-ID", id);
    }
    let response = request.call().expect("SSE request");
    assert_eq!(response.status().as_u16(), 200);
    let reader = std::io::BufReader::new(response.into_body().into_reader());
    let mut events = Vec::new();
    let (mut kind, mut id, mut data) = (String::new(), None, String::new());
    for line in reader.lines() {
        let line = line.expect("SSE line");
        if line.is_empty() {
            if !data.is_empty() {
                let value = serde_json::from_str(&data).expect("JSON data");
                events.push((std::mem::take(&mut kind), id.take(), value));
                data.clear();
                if done(&events) {
                    break;
                }
            }
        } else if let Some(v) = line.strip_prefix("event:") {
            kind = v.trim().to_string();
        } else if let Some(v) = line.strip_prefix("id:") {
            id = Some(v.trim().to_string());
        } else if let Some(v) = line.strip_prefix("data:") {
            data.push_str(v.trim_start());
        }
    }
    events
}

/// A file's event stream shows every transition and live progress, and a
/// client resuming with Last-Event-ID gets only what came after.
#[test]
fn live_progress_streams_as_server_sent_events() {
    let Some(sb) = Sandbox::with_model() else {
        return;
    };
    let (_, key) = new_key(&sb);
    let server = start(&sb, &["--workers", "1"]);
    let speech = std::fs::read(long_fixture("long-1min.wav")).expect("fixture");
    let (status, doc) = server.upload("long.wav", &speech, &key);
    assert_eq!(status, 202, "{doc:#}");
    let id = doc["id"].as_str().expect("id").to_string();
    let path = format!("/api/v1/audio/{id}/events");
    let completed = |events: &[(String, Option<String>, Value)]| {
        events
            .iter()
            .filter(|(kind, _, d)| kind == "job" && d["to_status"] == "COMPLETED")
            .count()
    };
    let events = read_events(&server, &path, &key, None, |events| completed(events) == 2);
    assert_eq!(completed(&events), 2, "{events:#?}");
    assert!(
        events
            .iter()
            .any(|(kind, _, d)| kind == "progress" && d["progress"].as_f64() < Some(100.0)),
        "live progress while transcribing: {events:#?}"
    );
    let ids: Vec<i64> = events
        .iter()
        .filter_map(|(_, id, _)| id.as_deref().and_then(|i| i.parse().ok()))
        .collect();
    assert!(ids.windows(2).all(|w| w[0] < w[1]), "ids increase: {ids:?}");
    assert!(
        ids.len() >= 6,
        "created, claimed, completed for both jobs: {ids:?}"
    );

    let resume_from = ids[2].to_string();
    let resumed = read_events(&server, &path, &key, Some(&resume_from), |events| {
        completed(events) == 2
    });
    let first_id: i64 = resumed
        .iter()
        .find_map(|(_, id, _)| id.as_deref().and_then(|i| i.parse().ok()))
        .expect("a job event");
    assert_eq!(first_id, ids[3], "resumed right after Last-Event-ID");
}
