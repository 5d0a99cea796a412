//! `/metrics` in Prometheus' text format, encoded by `prometheus-client`:
//! jobs by type and status, job and chunk durations, queue waits, audio
//! transcribed and the real-time factor, queue depth, webhook deliveries,
//! and HTTP requests by route and status. Job figures are read from the
//! database at each scrape (a collector, not counters kept here), so every
//! worker's work is counted whichever server is scraped; the HTTP counters
//! are this process's own.

use axum::extract::{MatchedPath, Request, State};
use axum::http::header;
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use pipeline_store::{DurationHistogram, JobMetrics};
use prometheus_client::collector::Collector;
use prometheus_client::encoding::{prometheus_text, DescriptorEncoder, EncodeLabelSet, NoLabelSet};
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::MetricType;
use prometheus_client::registry::Registry;
use std::fmt;

use crate::{ApiError, AppState};

/// Bucket bounds of the duration histograms, in seconds.
const BUCKETS: [f64; 10] = [0.1, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0, 300.0, 1800.0];

/// The labels of a request: its method, route pattern and status.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct RequestLabels {
    method: String,
    route: String,
    status: u16,
}

/// Requests served, by (method, route, status).
#[derive(Clone, Debug, Default)]
pub struct HttpCounters {
    requests: Family<RequestLabels, Counter>,
}

impl HttpCounters {
    fn record(&self, method: &str, route: &str, status: u16) {
        self.requests
            .get_or_create(&RequestLabels {
                method: method.to_string(),
                route: route.to_string(),
                status,
            })
            .inc();
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
        m @ ("GET" | "POST" | "PUT" | "DELETE" | "PATCH" | "HEAD" | "OPTIONS") => m,
        _ => "other",
    }
    .to_string();
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

/// What the database and the broker said at one scrape.
#[derive(Debug)]
struct Scraped {
    jobs: JobMetrics,
    /// (queue, messages waiting).
    depth: Vec<(String, u64)>,
    /// (delivery status, how many).
    deliveries: Vec<(String, u64)>,
}

impl Collector for Scraped {
    fn encode(&self, mut encoder: DescriptorEncoder) -> Result<(), fmt::Error> {
        let jobs = &self.jobs;
        {
            let mut family = encoder.encode_descriptor(
                "pipeline_jobs",
                "Jobs by type and status.",
                None,
                MetricType::Gauge,
            )?;
            for (job_type, status, n) in &jobs.jobs {
                let labels = [("type", job_type.as_str()), ("status", status.as_str())];
                family.encode_family(&labels)?.encode_gauge(n)?;
            }
        }
        histograms(
            &mut encoder,
            "pipeline_job_duration_seconds",
            "Time from start to completion of completed jobs.",
            &jobs.durations,
        )?;
        histograms(
            &mut encoder,
            "pipeline_queue_wait_seconds",
            "Time running and completed jobs waited from queued to the start of their last attempt.",
            &jobs.queue_waits,
        )?;
        histograms(
            &mut encoder,
            "pipeline_chunk_duration_seconds",
            "Time from start to completion of the completed chunks of long transcriptions.",
            &jobs.chunk_durations,
        )?;
        encoder
            .encode_descriptor(
                "pipeline_audio_seconds_transcribed",
                "Seconds of audio transcribed.",
                None,
                MetricType::Counter,
            )?
            .encode_counter::<NoLabelSet, _, f64>(&jobs.audio_seconds, None)?;
        let factor = if jobs.audio_seconds > 0.0 {
            jobs.transcribe_seconds / jobs.audio_seconds
        } else {
            0.0
        };
        encoder
            .encode_descriptor(
                "pipeline_real_time_factor",
                "Transcription time over audio time (below 1 is faster than real time).",
                None,
                MetricType::Gauge,
            )?
            .encode_gauge(&factor)?;
        labelled_gauges(
            &mut encoder,
            "pipeline_queue_depth",
            "Messages waiting in each broker queue.",
            "queue",
            &self.depth,
        )?;
        labelled_gauges(
            &mut encoder,
            "pipeline_webhook_deliveries",
            "Webhook deliveries by outcome (PENDING, DELIVERED, FAILED).",
            "status",
            &self.deliveries,
        )
    }
}

/// One histogram per job type, under the label `type`.
fn histograms(
    encoder: &mut DescriptorEncoder,
    name: &str,
    help: &str,
    histograms: &[DurationHistogram],
) -> Result<(), fmt::Error> {
    let mut family = encoder.encode_descriptor(name, help, None, MetricType::Histogram)?;
    for histogram in histograms {
        // The store counts cumulatively; the encoder wants each bucket's own.
        let mut below = 0;
        let buckets: Vec<(f64, u64)> = histogram
            .buckets
            .iter()
            .map(|&(bound, n)| {
                let own = n.saturating_sub(below);
                below = n;
                (bound, own)
            })
            .collect();
        let labels = [("type", histogram.job_type.as_str())];
        family
            .encode_family(&labels)?
            .encode_histogram::<NoLabelSet>(
                histogram.sum_seconds,
                histogram.count,
                &buckets,
                None,
            )?;
    }
    Ok(())
}

/// A gauge per value of one label.
fn labelled_gauges(
    encoder: &mut DescriptorEncoder,
    name: &str,
    help: &str,
    label: &str,
    values: &[(String, u64)],
) -> Result<(), fmt::Error> {
    let mut family = encoder.encode_descriptor(name, help, None, MetricType::Gauge)?;
    for (value, n) in values {
        let labels = [(label, value.as_str())];
        family.encode_family(&labels)?.encode_gauge(n)?;
    }
    Ok(())
}

/// `GET /metrics`.
#[utoipa::path(get, path = "/metrics", tag = "health", responses(
    (status = 200, description = "Prometheus text format 0.0.4", body = String,
        content_type = "text/plain"),
    (status = 503, description = "The database is unreachable", body = crate::error::ErrorBody)))]
pub async fn metrics(State(state): State<AppState>) -> Result<Response, ApiError> {
    let scraped = Scraped {
        jobs: state.store.job_metrics(&BUCKETS).await?,
        // An unreachable broker leaves the gauge empty, not the scrape failed.
        depth: match state.queue.health().await {
            Ok(health) => health.depth,
            Err(_) => Vec::new(),
        },
        deliveries: state.store.webhook_delivery_counts().await?,
    };
    let mut registry = Registry::default();
    registry.register(
        "pipeline_http_requests",
        "HTTP requests by method, route and status",
        state.http.requests.clone(),
    );
    registry.register_collector(Box::new(scraped));
    let mut out = String::new();
    prometheus_text::encode(&mut out, &registry).map_err(|_| {
        ApiError::new(
            axum::http::StatusCode::INTERNAL_SERVER_ERROR,
            "internal",
            "the metrics could not be encoded",
        )
    })?;
    Ok(([(header::CONTENT_TYPE, prometheus_text::CONTENT_TYPE)], out).into_response())
}
