//! Celery's Redis result backend: task states under `celery-task-meta-<id>`,
//! in the JSON Celery writes, so Python's `AsyncResult(id).state` and
//! `.result` read what our workers did.

use chrono::Utc;
use serde_json::{json, Value};
use std::time::Duration;

use super::redis::RedisTransport;
use crate::QueueError;

/// A task's state as Celery names it.
#[derive(Debug, Clone, PartialEq)]
pub enum TaskState {
    /// Picked up by a worker.
    Started { worker: String },
    /// A running task's progress, 0-100 (a custom state, as Celery apps use).
    Progress { percent: f64 },
    /// Done; the value `AsyncResult.result` returns.
    Success(Value),
    /// Failed for now and will run again.
    Retry { message: String },
    /// Failed for good.
    Failure { message: String },
    /// Cancelled.
    Revoked { message: String },
}

/// Writes task states where Celery clients look for them.
pub struct ResultBackend {
    redis: RedisTransport,
    expires: Duration,
}

impl ResultBackend {
    /// A backend at `url` (`redis://host:port/db`).
    pub fn new(url: &str, connect_timeout: Duration) -> Result<Self, QueueError> {
        if !url.starts_with("redis://") && !url.starts_with("rediss://") {
            return Err(QueueError::Broker {
                url: pipeline_core::config::mask_url(url),
                message: "only a redis:// result backend is supported".into(),
            });
        }
        Ok(Self {
            redis: RedisTransport::new(url, connect_timeout, Duration::from_secs(3600))?,
            // Celery's default `result_expires`: one day.
            expires: Duration::from_secs(86_400),
        })
    }

    /// Stores `state` for task `id` and announces it on the key's channel
    /// (Celery's Redis backend does both, and `AsyncResult.get` listens).
    pub async fn store(&self, id: &str, state: &TaskState) -> Result<(), QueueError> {
        let key = format!("celery-task-meta-{id}");
        let meta = meta(id, state).to_string();
        let set = redis::cmd("SETEX")
            .arg(&key)
            .arg(self.expires.as_secs())
            .arg(&meta)
            .clone();
        self.redis.run::<()>(&set).await?;
        let publish = redis::cmd("PUBLISH").arg(&key).arg(&meta).clone();
        self.redis.run::<i64>(&publish).await?;
        Ok(())
    }
}

/// The JSON Celery's backend stores for a state.
fn meta(id: &str, state: &TaskState) -> Value {
    let exception = |exc_type: &str, module: &str, message: &str| json!({"exc_type": exc_type, "exc_message": [message], "exc_module": module});
    let (status, result, done) = match state {
        TaskState::Started { worker } => (
            "STARTED",
            json!({"pid": std::process::id(), "hostname": worker}),
            false,
        ),
        TaskState::Progress { percent } => (
            "PROGRESS",
            json!({"percent": (percent * 10.0).round() / 10.0}),
            false,
        ),
        TaskState::Success(value) => ("SUCCESS", value.clone(), true),
        TaskState::Retry { message } => (
            "RETRY",
            exception("RuntimeError", "builtins", message),
            false,
        ),
        TaskState::Failure { message } => (
            "FAILURE",
            exception("RuntimeError", "builtins", message),
            true,
        ),
        TaskState::Revoked { message } => (
            "REVOKED",
            exception("TaskRevokedError", "celery.exceptions", message),
            true,
        ),
    };
    json!({
        "status": status,
        "result": result,
        "traceback": null,
        "children": [],
        "date_done": done.then(|| Utc::now().to_rfc3339_opts(chrono::SecondsFormat::Micros, false)),
        "task_id": id,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn failure_meta_is_a_python_exception() {
        let meta = meta(
            "t",
            &TaskState::Failure {
                message: "bad audio".into(),
            },
        );
        assert_eq!(meta["status"], "FAILURE");
        assert_eq!(meta["result"]["exc_type"], "RuntimeError");
        assert_eq!(meta["result"]["exc_message"][0], "bad audio");
        assert!(meta["date_done"].is_string());
    }

    #[test]
    fn progress_is_not_done() {
        let meta = meta("t", &TaskState::Progress { percent: 42.04 });
        assert_eq!(meta["status"], "PROGRESS");
        assert_eq!(meta["result"]["percent"], 42.0);
        assert!(meta["date_done"].is_null());
    }
}
