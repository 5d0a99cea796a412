//! The HTTP API over real HTTP: `pipeline-manager serve` started as a
//! process, API keys made with `api-key create`, uploads transcribed by the
//! real model, and the refusals a client must get (401, 413, 422, 404).

mod common;

use common::server::*;
use common::*;
use serde_json::Value;
use std::path::Path;
use std::time::Duration;

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

    // Refused by its Content-Length before it is read: the 413, or (when
    // the server closes first while the client still sends) a failed send.
    let mut big =
        b"--b\r\nContent-Disposition: form-data; name=\"file\"; filename=\"big.wav\"\r\n\r\n"
            .to_vec();
    big.extend(std::iter::repeat_n(0u8, 200 * 1024));
    big.extend_from_slice(b"\r\n--b--\r\n");
    if let Ok(response) = post_form(&server, &key, "b", &big) {
        let (status, doc) = answer(Ok(response));
        assert_eq!(status, 413, "{doc:#}");
        assert_eq!(doc["error"]["code"], "too_large");
    }
    assert_nothing_kept(&server, &key);

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

    // Text fields are bounded, one by one, and checked: a huge or foreign
    // language is refused before anything is stored.
    let before = server.get("/api/v1/audio", Some(&key)).1["files"]
        .as_array()
        .map(Vec::len);
    let huge = "x".repeat(100 * 1024);
    let (status, doc) = server.upload_with("a.wav", b"RIFF", &key, &[("language", &huge)]);
    assert_eq!(
        (status, doc["error"]["code"].as_str()),
        (413, Some("field_too_large")),
        "{doc:#}"
    );
    let (status, doc) = server.upload_with("a.wav", b"RIFF", &key, &[("language", "english!")]);
    assert_eq!(status, 400, "{doc:#}");
    assert!(doc["error"]["message"]
        .as_str()
        .is_some_and(|m| m.contains("not a language code")));
    let (status, doc) = server.upload_with("a.mkv", b"RIFF", &key, &[("audio_track", "one")]);
    assert_eq!(status, 400, "{doc:#}");
    assert!(doc["error"]["message"]
        .as_str()
        .is_some_and(|m| m.contains("unknown audio track")));
    let boundary = "twofiles";
    let part = |name: &str| {
        format!(
            "--{boundary}\r\nContent-Disposition: form-data; name=\"file\"; filename=\"{name}\"\r\n\
             Content-Type: application/octet-stream\r\n\r\nRIFF\r\n"
        )
    };
    let body = format!("{}{}--{boundary}--\r\n", part("a.wav"), part("b.wav"));
    let response = post_form(&server, &key, boundary, body.as_bytes()).expect("request");
    assert_eq!(response.status().as_u16(), 400, "two file fields");
    let after = server.get("/api/v1/audio", Some(&key)).1["files"]
        .as_array()
        .map(Vec::len);
    assert_eq!(before, after, "nothing stored for refused forms");

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
    // Segments arrive while the transcription runs, before it completes.
    let transcription = find_job(&doc, "TRANSCRIPTION")["id"].clone();
    let transcribed = events
        .iter()
        .position(|(kind, _, d)| {
            kind == "job" && d["to_status"] == "COMPLETED" && d["job_id"] == transcription
        })
        .expect("TRANSCRIPTION completed");
    let segments: Vec<&Value> = events
        .iter()
        .filter(|(kind, _, _)| kind == "segment")
        .map(|(_, _, d)| d)
        .collect();
    assert!(
        segments.len() >= 3,
        "segments of a minute of speech: {events:#?}"
    );
    assert!(
        events[..transcribed]
            .iter()
            .any(|(kind, _, _)| kind == "segment"),
        "segments come as they are produced: {events:#?}"
    );
    for segment in &segments {
        assert_eq!(segment["audio_id"], id.as_str());
        assert!(
            segment["start"].as_f64() < segment["end"].as_f64(),
            "{segment:#}"
        );
        assert!(segment["text"]
            .as_str()
            .is_some_and(|t| !t.trim().is_empty()));
    }
    let live_text: Vec<&str> = segments.iter().filter_map(|s| s["text"].as_str()).collect();
    let (_, transcript) = server.get(
        &format!("/api/v1/audio/{id}/transcript?format=txt"),
        Some(&key),
    );
    let final_text = transcript["text"].as_str().unwrap_or("").to_string();
    assert!(
        pipeline_core::wer::word_error_rate(&final_text, &live_text.join(" ")) < 0.05,
        "the live segments are the transcript: {live_text:?} vs {final_text:?}"
    );

    // Ids are `<audit event>:<segment>` cursors, increasing.
    let parse = |id: &str| -> (i64, i64) {
        let (e, s) = id.split_once(':').expect("id has both cursors");
        (
            e.parse().expect("event cursor"),
            s.parse().expect("segment cursor"),
        )
    };
    let ids: Vec<(i64, i64)> = events
        .iter()
        .filter_map(|(_, id, _)| id.as_deref().map(parse))
        .collect();
    assert!(ids.windows(2).all(|w| w[0] < w[1]), "ids increase: {ids:?}");
    assert!(
        ids.len() >= 6,
        "created, claimed, completed for both jobs: {ids:?}"
    );

    let resume_from = format!("{}:{}", ids[2].0, ids[2].1);
    let resumed = read_events(&server, &path, &key, Some(&resume_from), |events| {
        completed(events) == 2
    });
    let first_id = resumed
        .iter()
        .find_map(|(_, id, _)| id.as_deref().map(parse))
        .expect("an event");
    assert_eq!(first_id, ids[3], "resumed right after Last-Event-ID");
}

/// The stored audio comes back byte for byte, with its media type and byte
/// ranges for seeking players; the dashboard page itself needs no key.
#[test]
fn stored_audio_and_the_dashboard_are_served() {
    let sb = Sandbox::new();
    let (_, key) = new_key(&sb);
    let server = start(&sb, &["--workers", "0"]);
    let speech = std::fs::read(fixture("speech.wav")).expect("fixture");
    let (status, doc) = server.upload("speech.wav", &speech, &key);
    assert_eq!(status, 202, "{doc:#}");
    let id = doc["id"].as_str().expect("id").to_string();
    let url = format!("{}/api/v1/audio/{id}/file", server.base);
    let auth = format!("Bearer {key}");

    let mut whole = agent()
        .get(&url)
        .header("Authorization", &auth)
        .call()
        .expect("GET file");
    assert_eq!(whole.status().as_u16(), 200);
    let header = |r: &ureq::http::Response<ureq::Body>, name: &str| {
        r.headers()
            .get(name)
            .and_then(|v| v.to_str().ok())
            .unwrap_or("")
            .to_string()
    };
    assert_eq!(header(&whole, "content-type"), "audio/wav");
    assert_eq!(header(&whole, "accept-ranges"), "bytes");
    assert_eq!(header(&whole, "content-length"), speech.len().to_string());
    let body = whole.body_mut().read_to_vec().expect("body");
    assert!(body == speech, "the stored audio is the upload");

    let mut part = agent()
        .get(&url)
        .header("Authorization", &auth)
        .header("Range", "bytes=100-199")
        .call()
        .expect("GET range");
    assert_eq!(part.status().as_u16(), 206);
    assert_eq!(
        header(&part, "content-range"),
        format!("bytes 100-199/{}", speech.len())
    );
    let body = part.body_mut().read_to_vec().expect("body");
    assert!(body == speech[100..200], "the range's bytes");
    let past = agent()
        .get(&url)
        .header("Authorization", &auth)
        .header("Range", &format!("bytes={}-", speech.len()))
        .call()
        .expect("GET past the end");
    assert_eq!(past.status().as_u16(), 416);
    assert_eq!(
        header(&past, "content-range"),
        format!("bytes */{}", speech.len())
    );
    let (status, doc) = server.get(&format!("/api/v1/audio/{id}/file"), None);
    assert_eq!(status, 401, "the audio needs a key: {doc:#}");

    let (status, page) = server.get("/", None);
    assert_eq!(status, 200, "the page needs no key");
    let html = page["text"].as_str().expect("html");
    assert!(html.contains("/assets/app.js"), "{html}");
    let script = agent()
        .get(format!("{}/assets/app.js", server.base))
        .call()
        .expect("GET app.js");
    assert_eq!(script.status().as_u16(), 200);
    assert!(header(&script, "content-type").starts_with("text/javascript"));
    let (status, doc) = server.get("/assets/nothing.js", None);
    assert_eq!(
        (status, doc["error"]["code"].as_str()),
        (404, Some("not_found"))
    );
}

/// `process --api-url` uploads to a remote server and follows the file
/// there until done; `jobs --follow --api-url` reads the same state; a
/// wrong key or id is the server's refusal, with the CLI's exit codes.
#[test]
fn the_cli_follows_a_remote_server() {
    let Some(sb) = Sandbox::with_model() else {
        return;
    };
    let (_, key) = new_key(&sb);
    let server = start(&sb, &["--workers", "1"]);
    // Another machine's CLI: its own empty data directory.
    let client = Sandbox::new();
    let out = client.run(&[
        "process",
        path(&fixture("speech.wav")),
        "--api-url",
        &server.base,
        "--api-key",
        &key,
    ]);
    out.expect_code(0);
    let id = id_after(&out.stdout, "Successfully started processing: ");
    let doc = client.json(&[
        "--json",
        "jobs",
        &id,
        "--follow",
        "--api-url",
        &server.base,
        "--api-key",
        &key,
    ]);
    assert_eq!(status_of(&find_job(&doc, "TRANSCRIPTION")), "COMPLETED");
    assert_eq!(status_of(&find_job(&doc, "PROCESSING")), "COMPLETED");
    let (_, transcript) = server.get(
        &format!("/api/v1/audio/{id}/transcript?format=txt"),
        Some(&key),
    );
    let text = transcript["text"].as_str().unwrap_or("");
    assert!(speech_wer(text) < WER_BOUND, "{text}");

    let wrong_key = client.run(&["jobs", &id, "--api-url", &server.base, "--api-key", "nope"]);
    wrong_key.expect_code(2);
    assert!(wrong_key.stderr.contains("401"), "{wrong_key}");
    let unknown = uuid::Uuid::new_v4().to_string();
    let missing = client.run(&[
        "jobs",
        &unknown,
        "--follow",
        "--api-url",
        &server.base,
        "--api-key",
        &key,
    ]);
    missing.expect_code(2);
    assert!(missing.stderr.contains("404"), "{missing}");
    let nobody = client.run(&[
        "jobs",
        &id,
        "--api-url",
        "http://127.0.0.1:9",
        "--api-key",
        &key,
    ]);
    nobody.expect_code(3);
}

/// One raw HTTP/1.1 request (headers exactly as given); the status code.
fn raw_status(base: &str, request: &str) -> u16 {
    use std::io::{Read, Write};
    let address = base.trim_start_matches("http://");
    let mut stream = std::net::TcpStream::connect(address).expect("connect");
    stream.write_all(request.as_bytes()).expect("send");
    let mut answer = String::new();
    let _ = stream.read_to_string(&mut answer);
    answer
        .split_whitespace()
        .nth(1)
        .and_then(|code| code.parse().ok())
        .unwrap_or(0)
}

/// With `server.auth = false` a web page must not drive the API: a foreign
/// `Host` (DNS rebinding) or `Origin` (another site's page) is refused,
/// while this machine's own names and pages are served.
#[test]
fn without_auth_only_this_machine_s_pages_reach_the_api() {
    let sb = Sandbox::new().env("PIPELINE_SERVER_AUTH", "false");
    let server = start(&sb, &["--workers", "0"]);
    let port = server.base.rsplit(':').next().unwrap_or("").to_string();
    let get = |headers: &str| {
        raw_status(
            &server.base,
            &format!("GET /api/v1/audio HTTP/1.1\r\n{headers}Connection: close\r\n\r\n"),
        )
    };
    assert_eq!(get(&format!("Host: 127.0.0.1:{port}\r\n")), 200);
    assert_eq!(
        get(&format!(
            "Host: localhost:{port}\r\nOrigin: http://localhost:{port}\r\n"
        )),
        200
    );
    assert_eq!(get(&format!("Host: rebound.example:{port}\r\n")), 403);
    assert_eq!(
        get(&format!(
            "Host: 127.0.0.1:{port}\r\nOrigin: https://evil.example\r\n"
        )),
        403
    );
    let upload = format!(
        "POST /api/v1/audio HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\nOrigin: https://evil.example\r\n\
         Content-Type: multipart/form-data; boundary=b\r\nContent-Length: 6\r\nConnection: close\r\n\r\n--b--\r\n"
    );
    assert_eq!(
        raw_status(&server.base, &upload),
        403,
        "a cross-site upload"
    );
}

/// Event streams are capped per API key (and per server): a key that
/// holds its share gets 429 for the next one, another key still gets in.
#[test]
fn event_streams_are_capped_per_key() {
    let sb = Sandbox::new();
    let (_, key) = new_key(&sb);
    let (_, other) = new_key(&sb);
    let server = start(&sb, &["--workers", "0"]);
    let open = |key: &str| {
        agent()
            .get(format!("{}/api/v1/events", server.base))
            .header("Authorization", &format!("Bearer {key}"))
            .call()
            .expect("request")
    };
    let held: Vec<_> = (0..100).map(|_| open(&key)).collect();
    assert!(held.iter().all(|r| r.status().as_u16() == 200));
    let refused = open(&key);
    assert_eq!(refused.status().as_u16(), 429);
    let body = refused.into_body().read_to_string().unwrap_or_default();
    assert!(body.contains("too_many_streams"), "{body}");
    assert_eq!(
        open(&other).status().as_u16(),
        200,
        "another key has its own share"
    );
    drop(held);
}

/// Sends `request` and never the rest of it; checks that others are served
/// meanwhile and that the server closes the connection (cleanly or by
/// reset) before `patience`; what it answered, and after how long.
fn sent_then_cut_off(server: &Server, request: &[u8], patience: Duration) -> (Vec<u8>, Duration) {
    use std::io::{Read, Write};
    let address = server.base.trim_start_matches("http://");
    let mut slow = std::net::TcpStream::connect(address).expect("connect");
    slow.write_all(request).expect("send");
    slow.set_read_timeout(Some(patience)).expect("read timeout");
    let started = std::time::Instant::now();
    assert_eq!(server.get("/healthz", None).0, 200, "others are served");
    let mut answer = Vec::new();
    let ended = slow.read_to_end(&mut answer);
    let held = started.elapsed();
    let kept = matches!(&ended, Err(e) if matches!(
        e.kind(),
        std::io::ErrorKind::WouldBlock | std::io::ErrorKind::TimedOut
    ));
    assert!(
        !kept,
        "the server kept the connection: {ended:?} after {held:?}"
    );
    (answer, held)
}

/// A client that never finishes its request headers (slowloris) is cut off
/// at the header deadline, while others are served meanwhile.
#[test]
fn a_client_that_never_finishes_its_headers_is_cut_off() {
    let sb = Sandbox::new();
    let server = start(&sb, &["--workers", "0"]);
    let (_, held) = sent_then_cut_off(
        &server,
        b"GET /healthz HTTP/1.1\r\nHost: 127.0.0.1\r\nX-Slow: ",
        Duration::from_secs(40),
    );
    assert!(
        held >= Duration::from_secs(8) && held < Duration::from_secs(25),
        "cut off after {held:?} (the deadline is 10 s)"
    );
}

/// Peak resident memory of a process, from /proc (VmHWM), in MiB.
fn peak_rss_mib(pid: u32) -> u64 {
    std::fs::read_to_string(format!("/proc/{pid}/status"))
        .unwrap_or_default()
        .lines()
        .find_map(|l| l.strip_prefix("VmHWM:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse::<u64>().ok())
        .map_or(0, |kb| kb / 1024)
}

/// A 50 MB text field (issue 15 saw 516 MB of server memory for one) is
/// refused while it streams in, and the server's memory stays bounded.
#[test]
fn a_huge_text_field_is_refused_in_bounded_memory() {
    let sb = Sandbox::new();
    let (_, key) = new_key(&sb);
    let server = start(&sb, &["--workers", "0"]);
    let pid = server.proc.child.id();
    assert_eq!(server.get("/healthz", None).0, 200);
    let before = peak_rss_mib(pid);
    let boundary = "huge";
    let mut body =
        format!("--{boundary}\r\nContent-Disposition: form-data; name=\"language\"\r\n\r\n")
            .into_bytes();
    body.extend(std::iter::repeat_n(b'x', 50 * 1024 * 1024));
    body.extend_from_slice(format!("\r\n--{boundary}--\r\n").as_bytes());
    let response = post_form(&server, &key, boundary, &body);
    // Refused before the whole body is read: either the 413 or, when the
    // server closes the connection first, a failed send; never a 202.
    if let Ok(response) = response {
        assert_eq!(response.status().as_u16(), 413);
    }
    let after = peak_rss_mib(pid);
    assert!(
        after < before + 64,
        "peak RSS went from {before} MiB to {after} MiB"
    );
    assert_eq!(server.get("/healthz", None).0, 200, "still serving");
}

/// No file is listed: a refused upload left nothing behind.
fn assert_nothing_kept(server: &Server, key: &str) {
    let (_, list) = server.get("/api/v1/audio", Some(key));
    assert_eq!(
        list["files"],
        serde_json::json!([]),
        "nothing kept: {list:#}"
    );
}

/// POSTs a hand-made multipart body to `/api/v1/audio`.
fn post_form(
    server: &Server,
    key: &str,
    boundary: &str,
    body: &[u8],
) -> Result<ureq::http::Response<ureq::Body>, ureq::Error> {
    agent()
        .post(format!("{}/api/v1/audio", server.base))
        .header("Authorization", &format!("Bearer {key}"))
        .header(
            "Content-Type",
            &format!("multipart/form-data; boundary={boundary}"),
        )
        .send(body)
}

/// A client whose upload stalls part way (headers complete, then no byte
/// of the body for `server.body_timeout_secs`) is answered 408 and cut
/// off, while others are served meanwhile; nothing of it is kept.
#[test]
fn a_stalled_upload_is_answered_408_and_cut_off() {
    let sb = Sandbox::new().env("PIPELINE_SERVER_BODY_TIMEOUT_SECS", "2");
    let (_, key) = new_key(&sb);
    let server = start(&sb, &["--workers", "0"]);
    let address = server.base.trim_start_matches("http://").to_string();
    let head = format!(
        "POST /api/v1/audio HTTP/1.1\r\nHost: {address}\r\nAuthorization: Bearer {key}\r\n\
         Content-Type: multipart/form-data; boundary=b\r\nContent-Length: 100000\r\n\r\n\
         --b\r\nContent-Disposition: form-data; name=\"file\"; filename=\"talk.wav\"\r\n\r\nRIFF"
    );
    let (answer, held) = sent_then_cut_off(&server, head.as_bytes(), Duration::from_secs(30));
    let text = String::from_utf8_lossy(&answer);
    assert!(text.starts_with("HTTP/1.1 408"), "{text}");
    assert!(text.contains("body_timeout"), "{text}");
    assert!(
        held >= Duration::from_millis(1500) && held < Duration::from_secs(15),
        "cut off after {held:?} (the deadline is 2 s)"
    );
    assert_nothing_kept(&server, &key);
}

/// An upload sent with `Transfer-Encoding: chunked` (no Content-Length to
/// refuse it by) is cut off with 413 once it passes the limit, and
/// nothing of it is kept.
#[test]
fn a_chunked_upload_over_the_limit_is_refused() {
    use std::io::{Read, Write};
    let sb = Sandbox::new().env("PIPELINE_SERVER_MAX_UPLOAD_BYTES", "100000");
    let (_, key) = new_key(&sb);
    let server = start(&sb, &["--workers", "0"]);
    let address = server.base.trim_start_matches("http://").to_string();
    let mut stream = std::net::TcpStream::connect(&address).expect("connect");
    stream
        .set_read_timeout(Some(Duration::from_secs(30)))
        .expect("read timeout");
    let head = format!(
        "POST /api/v1/audio HTTP/1.1\r\nHost: {address}\r\nAuthorization: Bearer {key}\r\n\
         Content-Type: multipart/form-data; boundary=b\r\nTransfer-Encoding: chunked\r\n\r\n"
    );
    stream.write_all(head.as_bytes()).expect("send");
    let mut body =
        b"--b\r\nContent-Disposition: form-data; name=\"file\"; filename=\"talk.wav\"\r\n\r\n"
            .to_vec();
    body.extend(std::iter::repeat_n(b'x', 400_000));
    body.extend_from_slice(b"\r\n--b--\r\n");
    // The server may answer and close before the last chunk: a failed
    // write then is expected.
    for chunk in body.chunks(16 * 1024) {
        let framed = [format!("{:x}\r\n", chunk.len()).as_bytes(), chunk, b"\r\n"].concat();
        if stream.write_all(&framed).is_err() {
            break;
        }
    }
    let _ = stream.write_all(b"0\r\n\r\n");
    let mut answer = Vec::new();
    let _ = stream.read_to_end(&mut answer);
    let text = String::from_utf8_lossy(&answer);
    assert!(text.starts_with("HTTP/1.1 413"), "{text}");
    assert!(text.contains("too_large"), "{text}");
    assert_nothing_kept(&server, &key);
}

/// With `server.metrics_bind`, `/metrics` moves to its own listener (the
/// API's port answers 404 for it, the metrics port serves nothing else),
/// and with 10,000 finished files in the database, 50 scrapes a second
/// for four seconds are all answered, with the right counts, in bounded
/// server memory.
#[test]
fn metrics_of_ten_thousand_files_under_load_in_bounded_memory() {
    let sb = Sandbox::new().env("PIPELINE_SERVER_METRICS_BIND", "127.0.0.1:0");
    new_key(&sb); // creates the database
    let seeded = std::process::Command::new("python3")
        .arg(Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/py/seed_finished.py"))
        .arg(sb.data.join("pipeline.db"))
        .arg("10000")
        .output()
        .expect("python3 runs");
    assert!(
        seeded.status.success(),
        "seeding failed: {}",
        String::from_utf8_lossy(&seeded.stderr)
    );
    let server = start(&sb, &["--workers", "0"]);
    let metrics_base = wait_for(
        Duration::from_secs(10),
        Duration::from_millis(100),
        "the metrics listener",
        || {
            logged_url(&server.proc.log(), "metrics on ")
                .and_then(|url| url.strip_suffix("/metrics").map(str::to_string))
        },
    );
    assert_eq!(server.get("/metrics", None).0, 404, "not on the API's port");
    let (status, _) = answer(agent().get(format!("{metrics_base}/api/v1/audio")).call());
    assert_eq!(status, 404, "the metrics port serves only /metrics");
    let scrape = || answer(agent().get(format!("{metrics_base}/metrics")).call());
    let (status, first) = scrape();
    assert_eq!(status, 200);
    let text = first["text"].as_str().expect("text format");
    for line in [
        "pipeline_jobs{type=\"TRANSCRIPTION\",status=\"COMPLETED\"} 10000",
        "pipeline_jobs{type=\"PROCESSING\",status=\"COMPLETED\"} 10000",
        "pipeline_job_duration_seconds_count{type=\"TRANSCRIPTION\"} 10000",
    ] {
        assert!(text.lines().any(|l| l == line), "no {line:?} in:\n{text}");
    }
    let pid = server.proc.child.id();
    let before = peak_rss_mib(pid);
    // Five clients, each scraping ten times a second for four seconds.
    let statuses: Vec<u16> = std::thread::scope(|s| {
        let clients: Vec<_> = (0..5)
            .map(|_| {
                s.spawn(|| {
                    let mut seen = Vec::new();
                    for _ in 0..40 {
                        let at = std::time::Instant::now();
                        seen.push(scrape().0);
                        std::thread::sleep(Duration::from_millis(100).saturating_sub(at.elapsed()));
                    }
                    seen
                })
            })
            .collect();
        clients
            .into_iter()
            .flat_map(|c| c.join().expect("client"))
            .collect()
    });
    assert_eq!(statuses.len(), 200);
    assert!(statuses.iter().all(|s| *s == 200), "{statuses:?}");
    let after = peak_rss_mib(pid);
    assert!(
        after < before + 64,
        "peak RSS went from {before} MiB to {after} MiB"
    );
    assert_eq!(server.get("/healthz", None).0, 200, "still serving");
}

/// Every answer carries an `x-request-id`, the client's own when it sent
/// one, and the server's log line for the request (JSON when its output is
/// a file) carries the same id, the route and the status.
#[test]
fn requests_carry_an_id_in_the_answer_and_the_log() {
    let sb = Sandbox::new();
    let server = start(&sb, &["--workers", "0"]);
    let sent = agent()
        .get(format!("{}/healthz", server.base))
        .header("X-Request-Id", "req-7f3a")
        .call()
        .expect("request");
    assert_eq!(sent.headers()["x-request-id"], "req-7f3a");
    let fresh = agent()
        .get(format!("{}/healthz", server.base))
        .call()
        .expect("request");
    let id = fresh.headers()["x-request-id"].to_str().expect("ascii");
    assert!(uuid::Uuid::parse_str(id).is_ok(), "a new UUID: {id}");
    let line = wait_for(
        Duration::from_secs(10),
        Duration::from_millis(100),
        "the request's log line",
        || {
            server.proc.log().lines().find_map(|l| {
                let event: Value = serde_json::from_str(l).ok()?;
                (event["span"]["request_id"] == "req-7f3a" && event["status"] == 200)
                    .then_some(event)
            })
        },
    );
    assert_eq!(line["span"]["path"], "/healthz", "{line}");
    assert_eq!(line["span"]["method"], "GET", "{line}");
}

/// `server.cors_origins` lets the pages of the listed origin call the API
/// from a browser (a preflight is answered for it, the answer carries
/// `access-control-allow-origin`), and no other origin; JSON answers are
/// gzip-compressed for a client that accepts it.
#[test]
fn listed_origins_get_cors_and_json_is_compressed() {
    let sb = Sandbox::new().env("PIPELINE_SERVER_CORS_ORIGINS", "https://app.example.com");
    let (_, key) = new_key(&sb);
    let server = start(&sb, &["--workers", "0"]);
    let options = |origin: &str| {
        let request = ureq::http::Request::builder()
            .method("OPTIONS")
            .uri(format!("{}/api/v1/audio", server.base))
            .header("Origin", origin)
            .header("Access-Control-Request-Method", "POST")
            .header("Access-Control-Request-Headers", "authorization")
            .body(())
            .expect("request");
        agent().run(request).expect("preflight")
    };
    let allowed = options("https://app.example.com");
    assert_eq!(
        allowed.headers()["access-control-allow-origin"],
        "https://app.example.com"
    );
    let other = options("https://evil.example");
    assert!(
        other.headers().get("access-control-allow-origin").is_none(),
        "{:?}",
        other.headers()
    );
    let listed = agent()
        .get(format!("{}/api/v1/audio", server.base))
        .header("Authorization", &format!("Bearer {key}"))
        .header("Origin", "https://app.example.com")
        .header("Accept-Encoding", "gzip")
        .call()
        .expect("request");
    assert_eq!(listed.status().as_u16(), 200);
    assert_eq!(
        listed.headers()["access-control-allow-origin"],
        "https://app.example.com"
    );
    // Raw requests: the HTTP client would decompress, or ask for no encoding.
    let head = |accept: &str| {
        use std::io::{Read, Write};
        let address = server.base.trim_start_matches("http://");
        let mut stream = std::net::TcpStream::connect(address).expect("connect");
        let request = format!(
            "GET /api/v1/openapi.json HTTP/1.1\r\nHost: {address}\r\n{accept}Connection: close\r\n\r\n"
        );
        stream.write_all(request.as_bytes()).expect("send");
        let mut answer = Vec::new();
        let _ = stream.read_to_end(&mut answer);
        let text = String::from_utf8_lossy(&answer).to_string();
        text.split("\r\n\r\n")
            .next()
            .unwrap_or("")
            .to_ascii_lowercase()
    };
    let gzipped = head("Accept-Encoding: gzip\r\n");
    assert!(gzipped.contains("content-encoding: gzip"), "{gzipped}");
    assert!(!head("").contains("content-encoding"), "only when asked");
}
