//! A running `pipeline-manager serve` and a small HTTP client for the tests
//! that speak to it.

use serde_json::Value;
use std::fs::File;
use std::process::Stdio;
use std::time::Duration;

use super::{wait_for, Sandbox, WorkerProc};

/// A running `serve`; killed on drop.
pub struct Server {
    pub proc: WorkerProc,
    /// `http://127.0.0.1:<port>`.
    pub base: String,
}

/// Starts `serve --bind 127.0.0.1:0 ARGS` and waits until it listens.
pub fn start(sb: &Sandbox, args: &[&str]) -> Server {
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
            std::fs::read_to_string(&log)
                .ok()
                .and_then(|text| logged_url(&text, "listening on "))
        },
    );
    Server { proc, base }
}

/// A client that returns every status as it is.
pub fn agent() -> ureq::Agent {
    ureq::Agent::config_builder()
        .http_status_as_error(false)
        .timeout_global(Some(Duration::from_secs(60)))
        .build()
        .new_agent()
}

/// (status, body as JSON or as `{"text": ...}`).
pub fn answer(response: Result<ureq::http::Response<ureq::Body>, ureq::Error>) -> (u16, Value) {
    let mut response = response.expect("HTTP exchange");
    let status = response.status().as_u16();
    let text = response.body_mut().read_to_string().unwrap_or_default();
    let body = serde_json::from_str(&text).unwrap_or_else(|_| serde_json::json!({"text": text}));
    (status, body)
}

impl Server {
    pub fn get(&self, path: &str, key: Option<&str>) -> (u16, Value) {
        let mut request = agent().get(format!("{}{path}", self.base));
        if let Some(key) = key {
            request = request.header("Authorization", &format!("Bearer {key}"));
        }
        answer(request.call())
    }

    pub fn send(&self, method: &str, path: &str, key: &str) -> (u16, Value) {
        let url = format!("{}{path}", self.base);
        let auth = format!("Bearer {key}");
        let agent = agent();
        answer(match method {
            "POST" => agent.post(&url).header("Authorization", &auth).send_empty(),
            _ => agent.delete(&url).header("Authorization", &auth).call(),
        })
    }

    /// A multipart upload of `content` named `name`.
    pub fn upload(&self, name: &str, content: &[u8], key: &str) -> (u16, Value) {
        self.upload_with(name, content, key, &[])
    }

    /// A multipart upload with form `fields` before the file.
    pub fn upload_with(
        &self,
        name: &str,
        content: &[u8],
        key: &str,
        fields: &[(&str, &str)],
    ) -> (u16, Value) {
        let boundary = "pipeline-test-boundary";
        let mut body = Vec::new();
        for (field, value) in fields {
            body.extend_from_slice(
                format!(
                    "--{boundary}\r\nContent-Disposition: form-data; name=\"{field}\"\r\n\r\n{value}\r\n"
                )
                .as_bytes(),
            );
        }
        body.extend_from_slice(
            format!(
                "--{boundary}\r\nContent-Disposition: form-data; name=\"file\"; filename=\"{name}\"\r\n\
                 Content-Type: application/octet-stream\r\n\r\n"
            )
            .as_bytes(),
        );
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

/// A new API key: (id, key).
pub fn new_key(sb: &Sandbox) -> (String, String) {
    let doc = sb.json(&["api-key", "create", "--name", "test"]);
    (
        doc["id"].as_str().expect("id").to_string(),
        doc["key"].as_str().expect("key").to_string(),
    )
}

/// The URL a log line announces after `after` (text or JSON lines).
pub fn logged_url(log: &str, after: &str) -> Option<String> {
    log.lines().find_map(|line| {
        let rest = &line[line.find(after)? + after.len()..];
        rest.split(|c: char| c.is_whitespace() || c == '"')
            .next()
            .map(str::to_string)
    })
}
