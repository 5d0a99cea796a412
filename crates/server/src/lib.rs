//! The HTTP API (`pipeline-manager serve`): files, jobs and transcripts
//! over REST, the same tracked pipeline as the CLI. Handlers are thin: they
//! read the request, call the store, the queue or ingest, and map errors
//! through [`ApiError`].

mod dashboard;
mod error;
mod events;
mod extract;
mod listen;
mod media;
mod metrics;
mod openai;
mod openapi;
mod origin;
mod routes;
mod views;
mod webhooks;

pub use error::ApiError;
pub use events::Feed;
pub use listen::{HEADER_READ_TIMEOUT, MAX_CONNECTIONS};
pub use metrics::HttpCounters;

use axum::extract::{Request, State};
use axum::http::StatusCode;
use axum::middleware::{self, Next};
use axum::response::Response;
use axum::routing::{get, post};
use axum::Router;
use pipeline_queue::JobQueue;
use pipeline_store::Store;
use pipeline_worker::{ProcessOptions, Storage};
use std::path::PathBuf;
use std::sync::Arc;

/// What every handler can reach.
#[derive(Clone)]
pub struct AppState {
    pub store: Store,
    pub queue: Arc<dyn JobQueue>,
    pub storage: Storage,
    /// Options of uploads before the request's own.
    pub defaults: ProcessOptions,
    pub max_attempts: u32,
    /// Largest accepted upload, in bytes.
    pub max_upload_bytes: u64,
    /// Whether requests need an API key (`server.auth`).
    pub auth: bool,
    /// Where uploads are spooled before ingest.
    pub upload_dir: PathBuf,
    /// Where outputs go by default (`<output_dir>/<audio_id>`).
    pub output_dir: PathBuf,
    /// How long `/v1/audio/transcriptions` waits for a file's jobs.
    pub job_timeout: std::time::Duration,
    /// Requests served, for `/metrics`.
    pub http: HttpCounters,
    /// Whether an upload's `webhook_url` may be a private address
    /// (`webhooks.allow_private_targets`).
    pub allow_private_webhooks: bool,
    /// What live event streams listen to.
    pub feed: Feed,
}

/// The API's routes; health, readiness, metrics, the OpenAPI document and
/// the dashboard's static page need no key.
pub fn router(state: AppState) -> Router {
    let api = Router::new()
        .route(
            "/api/v1/audio",
            get(routes::list_audio).post(routes::upload),
        )
        .route(
            "/api/v1/audio/{id}",
            get(routes::get_audio).delete(routes::delete_audio),
        )
        .route("/api/v1/audio/{id}/jobs", get(routes::audio_jobs))
        .route("/api/v1/audio/{id}/transcript", get(routes::transcript))
        .route("/api/v1/audio/{id}/file", get(media::audio_file))
        .route("/api/v1/audio/{id}/retry", post(routes::retry))
        .route("/api/v1/jobs/{id}/cancel", post(routes::cancel_job))
        .route("/api/v1/status", get(routes::status))
        .route("/api/v1/webhooks/deliveries", get(webhooks::list))
        .route(
            "/api/v1/webhooks/deliveries/{id}/retry",
            post(webhooks::retry),
        )
        .route("/api/v1/audio/{id}/events", get(events::audio_events))
        .route("/api/v1/events", get(events::all_events))
        .route("/v1/audio/transcriptions", post(openai::transcriptions))
        // Uploads are streamed to disk under our own limit.
        .layer(axum::extract::DefaultBodyLimit::disable())
        .route_layer(middleware::from_fn_with_state(state.clone(), require_key))
        .route_layer(middleware::from_fn_with_state(
            state.clone(),
            metrics::count_requests,
        ));
    Router::new()
        .route("/healthz", get(routes::healthz))
        .route("/readyz", get(routes::readyz))
        .route("/metrics", get(metrics::metrics))
        .route("/api/v1/openapi.json", get(openapi::openapi_json))
        // The dashboard is static; its API calls carry the key.
        .route("/", get(dashboard::index))
        .route("/assets/{name}", get(dashboard::asset))
        .route_layer(middleware::from_fn_with_state(
            state.clone(),
            metrics::count_requests,
        ))
        .merge(api)
        .fallback(routes::no_route)
        .with_state(state)
}

/// Serves the API on `listener` until `shutdown` completes, then finishes
/// the requests in flight.
pub async fn serve(
    listener: tokio::net::TcpListener,
    state: AppState,
    shutdown: impl std::future::Future<Output = ()> + Send + 'static,
) -> std::io::Result<()> {
    listen::serve(listener, router(state), shutdown).await
}

/// Lets a request through with a live API key (or when auth is off).
async fn require_key(
    State(state): State<AppState>,
    request: Request,
    next: Next,
) -> Result<Response, ApiError> {
    if !state.auth {
        origin::check_local(request.headers())
            .map_err(|why| ApiError::new(StatusCode::FORBIDDEN, "foreign_origin", why))?;
        return Ok(next.run(request).await);
    }
    let key = request
        .headers()
        .get(axum::http::header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.strip_prefix("Bearer "))
        .map(str::trim)
        .filter(|k| !k.is_empty());
    let Some(key) = key else {
        return Err(ApiError::unauthorized());
    };
    match state.store.verify_api_key(key).await? {
        Some(id) => {
            let mut request = request;
            // Per-key limits (event streams) know whose request it is.
            request.extensions_mut().insert(events::KeyId(id));
            Ok(next.run(request).await)
        }
        None => Err(ApiError::unauthorized()),
    }
}
