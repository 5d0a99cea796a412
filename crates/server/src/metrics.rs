//! `/metrics` in Prometheus' text format: jobs by type and status, job
//! durations, audio transcribed and the real-time factor, queue depth, and
//! HTTP requests by route and status. Job figures are read from the
//! database at scrape time, so every worker's work is counted.

use axum::extract::{MatchedPath, Request, State};
use axum::http::header;
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::sync::{Arc, Mutex};

use crate::{ApiError, AppState};

/// Bucket bounds of the job duration histogram, in seconds.
const BUCKETS: [f64; 10] = [0.1, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0, 300.0, 1800.0];

/// (method, route pattern, status) of a request.
type RequestKey = (String, String, u16);

/// Requests served, by (method, route, status).
#[derive(Clone, Default)]
pub struct HttpCounters {
    counts: Arc<Mutex<BTreeMap<RequestKey, u64>>>,
}

impl HttpCounters {
    fn record(&self, method: &str, route: &str, status: u16) {
        if let Ok(mut counts) = self.counts.lock() {
            *counts
                .entry((method.to_string(), route.to_string(), status))
                .or_insert(0) += 1;
        }
    }

    fn snapshot(&self) -> BTreeMap<RequestKey, u64> {
        self.counts.lock().map(|c| c.clone()).unwrap_or_default()
    }
}

/// Counts each request under its route pattern (never the raw path, so
/// ids do not make a series each).
pub async fn count_requests(
    State(state): State<AppState>,
    request: Request,
    next: Next,
) -> Response {
    // A label value per method a client invents would be a series each.
    let method = match request.method().as_str() {
        m @ ("GET" | "POST" | "PUT" | "DELETE" | "PATCH" | "HEAD" | "OPTIONS") => m.to_string(),
        _ => "other".to_string(),
    };
    let route = request
        .extensions()
        .get::<MatchedPath>()
        .map(|p| p.as_str().to_string())
        .unwrap_or_else(|| "unmatched".to_string());
    let response = next.run(request).await;
    state
        .http
        .record(&method, &route, response.status().as_u16());
    response
}

fn escape(value: &str) -> String {
    value
        .replace('\\', "\\\\")
        .replace('"', "\\\"")
        .replace('\n', "\\n")
}

/// `GET /metrics`.
#[utoipa::path(get, path = "/metrics", tag = "health", responses(
    (status = 200, description = "Prometheus text format 0.0.4", body = String,
        content_type = "text/plain"),
    (status = 503, description = "The database is unreachable", body = crate::error::ErrorBody)))]
pub async fn metrics(State(state): State<AppState>) -> Result<Response, ApiError> {
    let jobs = state.store.job_metrics(&BUCKETS).await?;
    let mut out = String::new();
    let _ = writeln!(out, "# HELP pipeline_jobs Jobs by type and status.");
    let _ = writeln!(out, "# TYPE pipeline_jobs gauge");
    for (job_type, status, n) in &jobs.jobs {
        let _ = writeln!(
            out,
            "pipeline_jobs{{type=\"{}\",status=\"{}\"}} {n}",
            escape(job_type),
            escape(status)
        );
    }
    let _ = writeln!(
        out,
        "# HELP pipeline_job_duration_seconds Time from start to completion of completed jobs."
    );
    let _ = writeln!(out, "# TYPE pipeline_job_duration_seconds histogram");
    for histogram in &jobs.durations {
        let job_type = escape(&histogram.job_type);
        for (bound, n) in &histogram.buckets {
            let _ = writeln!(
                out,
                "pipeline_job_duration_seconds_bucket{{type=\"{job_type}\",le=\"{bound}\"}} {n}"
            );
        }
        let _ = writeln!(
            out,
            "pipeline_job_duration_seconds_bucket{{type=\"{job_type}\",le=\"+Inf\"}} {}",
            histogram.count
        );
        let _ = writeln!(
            out,
            "pipeline_job_duration_seconds_sum{{type=\"{job_type}\"}} {}",
            histogram.sum_seconds
        );
        let _ = writeln!(
            out,
            "pipeline_job_duration_seconds_count{{type=\"{job_type}\"}} {}",
            histogram.count
        );
    }
    let _ = writeln!(
        out,
        "# HELP pipeline_audio_seconds_transcribed_total Seconds of audio transcribed."
    );
    let _ = writeln!(
        out,
        "# TYPE pipeline_audio_seconds_transcribed_total counter"
    );
    let _ = writeln!(
        out,
        "pipeline_audio_seconds_transcribed_total {}",
        jobs.audio_seconds
    );
    let _ = writeln!(
        out,
        "# HELP pipeline_real_time_factor Transcription time over audio time (below 1 is faster than real time)."
    );
    let _ = writeln!(out, "# TYPE pipeline_real_time_factor gauge");
    let factor = if jobs.audio_seconds > 0.0 {
        jobs.transcribe_seconds / jobs.audio_seconds
    } else {
        0.0
    };
    let _ = writeln!(out, "pipeline_real_time_factor {factor}");
    let _ = writeln!(
        out,
        "# HELP pipeline_queue_depth Messages waiting in each broker queue."
    );
    let _ = writeln!(out, "# TYPE pipeline_queue_depth gauge");
    if let Ok(health) = state.queue.health().await {
        for (queue, n) in health.depth {
            let _ = writeln!(
                out,
                "pipeline_queue_depth{{queue=\"{}\"}} {n}",
                escape(&queue)
            );
        }
    }
    let _ = writeln!(
        out,
        "# HELP pipeline_webhook_deliveries Webhook deliveries by outcome (PENDING, DELIVERED, FAILED)."
    );
    let _ = writeln!(out, "# TYPE pipeline_webhook_deliveries gauge");
    for (status, n) in state.store.webhook_delivery_counts().await? {
        let _ = writeln!(
            out,
            "pipeline_webhook_deliveries{{status=\"{}\"}} {n}",
            escape(&status)
        );
    }
    let _ = writeln!(
        out,
        "# HELP pipeline_http_requests_total HTTP requests by method, route and status."
    );
    let _ = writeln!(out, "# TYPE pipeline_http_requests_total counter");
    for ((method, route, status), n) in state.http.snapshot() {
        let _ = writeln!(
            out,
            "pipeline_http_requests_total{{method=\"{}\",route=\"{}\",status=\"{status}\"}} {n}",
            escape(&method),
            escape(&route)
        );
    }
    Ok((
        [(
            header::CONTENT_TYPE,
            "text/plain; version=0.0.4; charset=utf-8",
        )],
        out,
    )
        .into_response())
}
