//! A client of a remote `pipeline-manager serve`: `process --api-url`
//! uploads there, and `jobs --follow --api-url` follows its live events.

use anyhow::Result;
use pipeline_core::{ChunkCounts, ProcessingJob};
use serde_json::Value;
use std::io::{BufRead, BufReader, Read};
use std::path::Path;
use std::time::Duration;
use tokio::sync::mpsc;
use uuid::Uuid;

use crate::app::{exit, failure};
use crate::views::Chunks;

/// A server and the key to reach it.
#[derive(Clone)]
pub struct Remote {
    base: String,
    key: Option<String>,
    agent: ureq::Agent,
}

impl Remote {
    /// A client of the server at `base` (e.g. `http://127.0.0.1:8000`).
    pub fn new(base: &str, key: Option<String>) -> Result<Remote> {
        if !(base.starts_with("http://") || base.starts_with("https://")) {
            return Err(failure(
                exit::BAD_INPUT,
                format!("--api-url {base:?}: expected an http:// or https:// URL"),
            ));
        }
        let agent = ureq::Agent::config_builder()
            .http_status_as_error(false)
            .timeout_connect(Some(Duration::from_secs(5)))
            .build()
            .new_agent();
        Ok(Remote {
            base: base.trim_end_matches('/').to_string(),
            key,
            agent,
        })
    }

    fn auth(&self) -> Option<String> {
        self.key.as_ref().map(|k| format!("Bearer {k}"))
    }

    /// The JSON answer of a request, or the server's error as a failure
    /// with the exit code it deserves.
    fn answer(
        &self,
        what: &str,
        response: Result<ureq::http::Response<ureq::Body>, ureq::Error>,
    ) -> Result<Value> {
        let mut response = response.map_err(|e| {
            failure(
                exit::UNREACHABLE,
                format!("{what}: cannot reach {}: {e}", self.base),
            )
        })?;
        let status = response.status().as_u16();
        let body: Value = response
            .body_mut()
            .read_to_string()
            .ok()
            .and_then(|text| serde_json::from_str(&text).ok())
            .unwrap_or_else(|| serde_json::json!({}));
        if (200..300).contains(&status) {
            return Ok(body);
        }
        let message = body["error"]["message"]
            .as_str()
            .unwrap_or("no error message")
            .to_string();
        let code = match status {
            401 | 403 | 404 | 413 | 422 | 400 => exit::BAD_INPUT,
            503 => exit::UNREACHABLE,
            _ => exit::JOB_FAILED,
        };
        Err(failure(code, format!("{what}: {status} {message}")))
    }

    fn get(&self, path: &str) -> Result<Value> {
        let mut request = self.agent.get(format!("{}{path}", self.base));
        if let Some(auth) = self.auth() {
            request = request.header("Authorization", auth);
        }
        self.answer(&format!("GET {path}"), request.call())
    }

    /// A file's jobs, with the chunk counts of those cut into chunks.
    pub fn jobs(&self, audio_id: Uuid) -> Result<(Vec<ProcessingJob>, Chunks)> {
        let doc = self.get(&format!("/api/v1/audio/{audio_id}/jobs"))?;
        let jobs: Vec<ProcessingJob> =
            serde_json::from_value(doc["jobs"].clone()).map_err(|e| {
                failure(
                    exit::JOB_FAILED,
                    format!("the server's answer is not a job list: {e}"),
                )
            })?;
        let mut chunks = Chunks::new();
        for (job, view) in jobs
            .iter()
            .zip(doc["jobs"].as_array().into_iter().flatten())
        {
            let count = |field: &str| {
                view[field]
                    .as_u64()
                    .and_then(|n| u32::try_from(n).ok())
                    .unwrap_or(0)
            };
            let total = count("chunks_total");
            if total > 0 {
                let done = count("chunks_done");
                chunks.insert(job.id, ChunkCounts { total, done });
            }
        }
        Ok((jobs, chunks))
    }

    /// Uploads `file` with form `fields`; the server's view of the new file
    /// (with its jobs). A refused upload (422) is the server's error.
    pub fn upload(&self, file: &Path, fields: &[(&str, String)]) -> Result<Value> {
        let bad = |e: std::io::Error| failure(exit::BAD_INPUT, format!("{}: {e}", file.display()));
        let content = std::fs::File::open(file).map_err(bad)?;
        let boundary = format!("pm-{}", Uuid::new_v4().simple());
        let name = file
            .file_name()
            .map(|n| n.to_string_lossy().replace(['"', '\r', '\n'], "_"))
            .unwrap_or_else(|| "upload".to_string());
        let mut head = String::new();
        for (field, value) in fields {
            head.push_str(&format!(
                "--{boundary}\r\nContent-Disposition: form-data; name=\"{field}\"\r\n\r\n{value}\r\n"
            ));
        }
        head.push_str(&format!(
            "--{boundary}\r\nContent-Disposition: form-data; name=\"file\"; filename=\"{name}\"\r\n\
             Content-Type: application/octet-stream\r\n\r\n"
        ));
        let tail = format!("\r\n--{boundary}--\r\n");
        // Streamed: the file is never held in memory whole.
        let mut body = std::io::Cursor::new(head.into_bytes())
            .chain(content)
            .chain(std::io::Cursor::new(tail.into_bytes()));
        let mut request = self
            .agent
            .post(format!("{}/api/v1/audio", self.base))
            .header(
                "Content-Type",
                format!("multipart/form-data; boundary={boundary}"),
            );
        if let Some(auth) = self.auth() {
            request = request.header("Authorization", auth);
        }
        let response = request.send(ureq::SendBody::from_reader(&mut body));
        self.answer(&format!("upload of {}", file.display()), response)
    }

    /// Signals on `changed` whenever the file's event stream says something
    /// happened, until the stream ends; runs on its own thread.
    pub fn watch(&self, audio_id: Uuid, changed: mpsc::UnboundedSender<()>) {
        let remote = self.clone();
        std::thread::spawn(move || {
            let mut request = remote
                .agent
                .get(format!("{}/api/v1/audio/{audio_id}/events", remote.base))
                .header("Accept", "text/event-stream");
            if let Some(auth) = remote.auth() {
                request = request.header("Authorization", auth);
            }
            let Ok(mut response) = request.call() else {
                return;
            };
            if response.status().as_u16() != 200 {
                return;
            }
            let reader = BufReader::new(response.body_mut().as_reader());
            for line in reader.lines() {
                let Ok(line) = line else { return };
                // A blank line ends an event.
                if line.is_empty() && changed.send(()).is_err() {
                    return;
                }
            }
        });
    }
}
