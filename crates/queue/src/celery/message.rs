//! Celery's task message, protocol version 2, as Python Celery 5 writes it.
//!
//! A message is a set of headers (task name, id, eta, retries, ...) and a
//! JSON body `[args, kwargs, embed]`. On AMQP the headers travel as the
//! message's application headers; on Redis, kombu wraps headers, body
//! (base64) and properties in one JSON envelope pushed onto a list.

use base64::Engine as _;
use chrono::{DateTime, Utc};
use serde_json::{json, Map, Value};

/// Why a message could not be read as a Celery task.
#[derive(Debug, thiserror::Error)]
pub enum MessageError {
    /// The body or envelope is not the JSON Celery writes.
    #[error("not a Celery protocol 2 message: {0}")]
    Malformed(String),
    /// A serializer we do not speak (pickle, yaml, msgpack).
    #[error("unsupported content type {0:?} (only application/json)")]
    ContentType(String),
}

/// One task invocation.
#[derive(Debug, Clone, PartialEq)]
pub struct TaskMessage {
    /// The task id (Celery's `AsyncResult` id).
    pub id: String,
    /// The registered task name, e.g. `pipeline.transcribe`.
    pub task: String,
    pub args: Vec<Value>,
    pub kwargs: Map<String, Value>,
    /// Not to run before this instant.
    pub eta: Option<DateTime<Utc>>,
    /// How many times the task was retried so far.
    pub retries: u32,
    /// `host:pid` style name of the sender, for Flower and logs.
    pub origin: String,
    /// Set by the broker transport when the message was delivered before.
    pub redelivered: bool,
}

impl TaskMessage {
    /// A message for `task` with keyword arguments only.
    pub fn new(task: &str, id: &str, kwargs: Map<String, Value>) -> Self {
        Self {
            id: id.to_string(),
            task: task.to_string(),
            args: Vec::new(),
            kwargs,
            eta: None,
            retries: 0,
            origin: format!("{}@pipeline-manager", std::process::id()),
            redelivered: false,
        }
    }

    /// The protocol 2 headers, with the fields and order Celery 5 writes.
    /// `timelimit` is `[hard, soft]` in Celery's code (its protocol page
    /// says the reverse).
    pub fn headers(&self) -> Map<String, Value> {
        let headers = json!({
            "lang": "py",
            "task": self.task,
            "id": self.id,
            "shadow": null,
            "eta": self.eta.map(|t| t.to_rfc3339_opts(chrono::SecondsFormat::Micros, false)),
            "expires": null,
            "group": null,
            "group_index": null,
            "retries": self.retries,
            "timelimit": [null, null],
            "root_id": self.id,
            "parent_id": null,
            "argsrepr": py_tuple_repr(&self.args),
            "kwargsrepr": py_repr(&Value::Object(self.kwargs.clone())),
            "origin": self.origin,
            "ignore_result": false,
            "replaced_task_nesting": 0,
            "stamped_headers": null,
            "stamps": {},
        });
        match headers {
            Value::Object(map) => map,
            _ => Map::new(),
        }
    }

    /// The JSON body `[args, kwargs, embed]`.
    pub fn body(&self) -> Vec<u8> {
        let body = json!([
            self.args,
            self.kwargs,
            {"callbacks": null, "errbacks": null, "chain": null, "chord": null}
        ]);
        body.to_string().into_bytes()
    }

    /// Reads a message from its headers and raw body.
    pub fn from_parts(
        headers: &Map<String, Value>,
        body: &[u8],
        content_type: &str,
    ) -> Result<Self, MessageError> {
        if !content_type.is_empty() && content_type != "application/json" {
            return Err(MessageError::ContentType(content_type.to_string()));
        }
        let text = |key: &str| -> Result<String, MessageError> {
            headers
                .get(key)
                .and_then(Value::as_str)
                .map(str::to_string)
                .ok_or_else(|| MessageError::Malformed(format!("header {key:?} missing")))
        };
        let task = text("task")?;
        let id = text("id")?;
        let body: Value = serde_json::from_slice(body)
            .map_err(|e| MessageError::Malformed(format!("body is not JSON: {e}")))?;
        let (args, kwargs) = match body {
            Value::Array(mut parts) if parts.len() >= 2 => {
                let kwargs = parts.swap_remove(1);
                let args = parts.swap_remove(0);
                match (args, kwargs) {
                    (Value::Array(args), Value::Object(kwargs)) => (args, kwargs),
                    _ => {
                        return Err(MessageError::Malformed(
                            "body must be [args list, kwargs object, embed]".into(),
                        ))
                    }
                }
            }
            _ => {
                return Err(MessageError::Malformed(
                    "body must be [args, kwargs, embed]".into(),
                ))
            }
        };
        let eta = headers
            .get("eta")
            .and_then(Value::as_str)
            .and_then(parse_eta);
        let retries = headers
            .get("retries")
            .and_then(Value::as_u64)
            .and_then(|n| u32::try_from(n).ok())
            .unwrap_or(0);
        let origin = headers
            .get("origin")
            .and_then(Value::as_str)
            .unwrap_or("")
            .to_string();
        Ok(Self {
            id,
            task,
            args,
            kwargs,
            eta,
            retries,
            origin,
            redelivered: false,
        })
    }

    /// kombu's Redis envelope: headers, base64 body and properties, with
    /// `delivery_tag` as the key of kombu's unacked hash.
    pub fn to_redis_envelope(&self, queue: &str, delivery_tag: &str) -> String {
        json!({
            "body": base64::engine::general_purpose::STANDARD.encode(self.body()),
            "content-encoding": "utf-8",
            "content-type": "application/json",
            "headers": self.headers(),
            "properties": {
                "correlation_id": self.id,
                "reply_to": null,
                "delivery_mode": 2,
                "delivery_info": {"exchange": "", "routing_key": queue},
                "priority": 0,
                "body_encoding": "base64",
                "delivery_tag": delivery_tag,
            }
        })
        .to_string()
    }

    /// Reads kombu's Redis envelope; returns the message and its delivery tag.
    pub fn from_redis_envelope(raw: &str) -> Result<(Self, String), MessageError> {
        let envelope: Value = serde_json::from_str(raw)
            .map_err(|e| MessageError::Malformed(format!("envelope is not JSON: {e}")))?;
        let headers = envelope
            .get("headers")
            .and_then(Value::as_object)
            .ok_or_else(|| MessageError::Malformed("envelope has no headers".into()))?;
        let properties = envelope.get("properties").cloned().unwrap_or(Value::Null);
        let tag = properties
            .get("delivery_tag")
            .and_then(Value::as_str)
            .ok_or_else(|| MessageError::Malformed("envelope has no delivery_tag".into()))?
            .to_string();
        let body = envelope
            .get("body")
            .and_then(Value::as_str)
            .ok_or_else(|| MessageError::Malformed("envelope has no body".into()))?;
        let body = match properties.get("body_encoding").and_then(Value::as_str) {
            Some("base64") => base64::engine::general_purpose::STANDARD
                .decode(body)
                .map_err(|e| MessageError::Malformed(format!("body is not base64: {e}")))?,
            _ => body.as_bytes().to_vec(),
        };
        let content_type = envelope
            .get("content-type")
            .and_then(Value::as_str)
            .unwrap_or("application/json");
        let mut message = Self::from_parts(headers, &body, content_type)?;
        message.redelivered = properties
            .pointer("/delivery_info/redelivered")
            .and_then(Value::as_bool)
            .or_else(|| headers.get("redelivered").and_then(Value::as_bool))
            .unwrap_or(false);
        Ok((message, tag))
    }
}

fn parse_eta(text: &str) -> Option<DateTime<Utc>> {
    DateTime::parse_from_rfc3339(text)
        .map(|t| t.with_timezone(&Utc))
        .ok()
        .or_else(|| {
            // Celery may write a naive ISO time (UTC when `enable_utc`).
            chrono::NaiveDateTime::parse_from_str(text, "%Y-%m-%dT%H:%M:%S%.f")
                .ok()
                .map(|t| t.and_utc())
        })
}

/// Python's `repr` of a JSON value, for `argsrepr` and `kwargsrepr`, which
/// Flower and Celery's logs show.
fn py_repr(value: &Value) -> String {
    match value {
        Value::Null => "None".into(),
        Value::Bool(true) => "True".into(),
        Value::Bool(false) => "False".into(),
        Value::Number(n) => n.to_string(),
        Value::String(s) => format!("'{}'", s.replace('\\', "\\\\").replace('\'', "\\'")),
        Value::Array(items) => format!(
            "[{}]",
            items.iter().map(py_repr).collect::<Vec<_>>().join(", ")
        ),
        Value::Object(map) => format!(
            "{{{}}}",
            map.iter()
                .map(|(k, v)| format!("{}: {}", py_repr(&Value::String(k.clone())), py_repr(v)))
                .collect::<Vec<_>>()
                .join(", ")
        ),
    }
}

/// Python's `repr` of a tuple (Celery's positional arguments).
fn py_tuple_repr(items: &[Value]) -> String {
    match items {
        [one] => format!("({},)", py_repr(one)),
        _ => format!(
            "({})",
            items.iter().map(py_repr).collect::<Vec<_>>().join(", ")
        ),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sample() -> TaskMessage {
        let mut kwargs = Map::new();
        kwargs.insert("job_id".into(), json!("j-1"));
        kwargs.insert("audio_id".into(), json!("a-1"));
        TaskMessage::new("pipeline.transcribe", "j-1", kwargs)
    }

    #[test]
    fn headers_follow_celery_5() {
        let headers = sample().headers();
        assert_eq!(headers["lang"], "py");
        assert_eq!(headers["task"], "pipeline.transcribe");
        assert_eq!(headers["id"], "j-1");
        assert_eq!(headers["root_id"], "j-1");
        assert_eq!(headers["timelimit"], json!([null, null]));
        assert_eq!(headers["argsrepr"], "()");
        assert_eq!(
            headers["kwargsrepr"],
            "{'audio_id': 'a-1', 'job_id': 'j-1'}"
        );
    }

    #[test]
    fn body_is_args_kwargs_embed() {
        let body: Value = serde_json::from_slice(&sample().body()).unwrap();
        assert_eq!(body[0], json!([]));
        assert_eq!(body[1]["job_id"], "j-1");
        assert_eq!(body[2]["chord"], Value::Null);
    }

    #[test]
    fn redis_envelope_round_trips() {
        let mut message = sample();
        message.eta = Some(Utc::now());
        let raw = message.to_redis_envelope("celery", "tag-1");
        let (back, tag) = TaskMessage::from_redis_envelope(&raw).unwrap();
        assert_eq!(tag, "tag-1");
        assert_eq!(back.id, message.id);
        assert_eq!(back.kwargs, message.kwargs);
        assert!(back.eta.is_some());
    }

    #[test]
    fn reads_what_python_celery_wrote() {
        // Captured from Python Celery 5.7's send_task on Redis.
        let raw = r#"{"body": "W1tdLCB7InNvdXJjZSI6ICIveC53YXYifSwgeyJjYWxsYmFja3MiOiBudWxsLCAiZXJyYmFja3MiOiBudWxsLCAiY2hhaW4iOiBudWxsLCAiY2hvcmQiOiBudWxsfV0=", "content-encoding": "utf-8", "content-type": "application/json", "headers": {"lang": "py", "task": "pipeline.ingest", "id": "b75e10aa-ffc2-4ee3-9d46-6f3f761bfae8", "shadow": null, "eta": null, "expires": null, "group": null, "group_index": null, "retries": 0, "timelimit": [null, null], "root_id": "b75e10aa-ffc2-4ee3-9d46-6f3f761bfae8", "parent_id": null, "argsrepr": "()", "kwargsrepr": "{'source': '/x.wav'}", "origin": "gen7342@vm", "ignore_result": null, "replaced_task_nesting": 0, "stamped_headers": null, "stamps": {}}, "properties": {"correlation_id": "b75e10aa-ffc2-4ee3-9d46-6f3f761bfae8", "reply_to": "57a625b4-5386-3fd8-ab47-c50ae527094f", "delivery_mode": 2, "delivery_info": {"exchange": "", "routing_key": "probeq"}, "priority": 0, "body_encoding": "base64", "delivery_tag": "c159d453-a94c-407a-8a21-a5300a33a92e"}}"#;
        let (message, tag) = TaskMessage::from_redis_envelope(raw).unwrap();
        assert_eq!(message.task, "pipeline.ingest");
        assert_eq!(message.kwargs["source"], "/x.wav");
        assert_eq!(tag, "c159d453-a94c-407a-8a21-a5300a33a92e");
    }

    #[test]
    fn refuses_garbage_and_pickle() {
        assert!(TaskMessage::from_redis_envelope("not json").is_err());
        let headers = sample().headers();
        assert!(matches!(
            TaskMessage::from_parts(&headers, b"\x80\x04", "application/x-python-serialize"),
            Err(MessageError::ContentType(_))
        ));
        assert!(TaskMessage::from_parts(&headers, b"{}", "application/json").is_err());
    }
}
