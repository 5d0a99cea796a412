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
use pipeline_ingest::{ProcessOptions, Storage};
use pipeline_queue::JobQueue;
use pipeline_store::Store;
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
    /// How long a request body may go without a byte (`server.body_timeout_secs`).
    pub body_timeout: std::time::Duration,
    /// Web origins whose pages may call the API (`server.cors_origins`).
    pub cors_origins: Vec<String>,
}

/// The API's routes; health, readiness, metrics (unless they are served
/// on a listener of their own), the OpenAPI document and the dashboard's
/// static page need no key.
fn router(state: AppState, with_metrics: bool) -> Router {
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
    let open = Router::new()
        .route("/healthz", get(routes::healthz))
        .route("/readyz", get(routes::readyz));
    let open = if with_metrics {
        open.route("/metrics", get(metrics::metrics))
    } else {
        open
    };
    let body_timeout = state.body_timeout;
    let cors = cors(&state.cors_origins);
    let all = open
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
        .with_state(state);
    let all = match cors {
        Some(cors) => all.layer(cors),
        None => all,
    };
    with_request_layers(all, body_timeout)
}

/// CORS for the configured origins: their pages may send the API's
/// methods with a key and read the answers (and `x-request-id`). None
/// configured sends no CORS headers, so browsers keep other sites out.
fn cors(origins: &[String]) -> Option<tower_http::cors::CorsLayer> {
    use axum::http::{header, HeaderValue, Method};
    let allowed: Vec<HeaderValue> = origins
        .iter()
        .filter_map(|o| HeaderValue::from_str(o).ok())
        .collect();
    (!allowed.is_empty()).then(|| {
        tower_http::cors::CorsLayer::new()
            .allow_origin(allowed)
            .allow_methods([Method::GET, Method::POST, Method::DELETE])
            .allow_headers([header::AUTHORIZATION, header::CONTENT_TYPE])
            .expose_headers([REQUEST_ID])
            .max_age(std::time::Duration::from_secs(3600))
    })
}

/// `/metrics` alone, for `server.metrics_bind`.
fn metrics_router(state: AppState) -> Router {
    let only = Router::new()
        .route("/metrics", get(metrics::metrics))
        .fallback(routes::no_route)
        .with_state(state);
    with_request_layers(only, std::time::Duration::from_secs(10))
}

/// The header that names a request in answers and log lines.
const REQUEST_ID: axum::http::HeaderName = axum::http::HeaderName::from_static("x-request-id");

/// What every request goes through: an `x-request-id` (the client's, or a
/// new UUID) answered back, a span with it, its method and path (the
/// query is left out: it is the client's) and a log line with the status
/// and latency, and a body that may not stall for longer than
/// `body_timeout` (a client that sends its upload a byte a minute).
fn with_request_layers(router: Router, body_timeout: std::time::Duration) -> Router {
    let trace = tower_http::trace::TraceLayer::new_for_http()
        .make_span_with(|request: &Request| {
            let id = request
                .headers()
                .get(&REQUEST_ID)
                .and_then(|v| v.to_str().ok())
                .unwrap_or("");
            tracing::info_span!(
                "request",
                request_id = id,
                method = %request.method(),
                path = request.uri().path(),
            )
        })
        .on_request(())
        .on_response(
            tower_http::trace::DefaultOnResponse::new()
                .level(tracing::Level::INFO)
                .latency_unit(tower_http::LatencyUnit::Millis),
        );
    // JSON, transcripts and the dashboard compress well; audio does not,
    // and an event stream must not wait for a compressor's buffer.
    use tower_http::compression::predicate::Predicate as _;
    let compress = tower_http::compression::predicate::DefaultPredicate::new()
        .and(tower_http::compression::predicate::NotForContentType::const_new("audio/"));
    router
        .layer(tower_http::compression::CompressionLayer::new().compress_when(compress))
        .layer(tower_http::timeout::RequestBodyTimeoutLayer::new(
            body_timeout,
        ))
        .layer(tower_http::request_id::PropagateRequestIdLayer::new(
            REQUEST_ID,
        ))
        .layer(trace)
        .layer(tower_http::request_id::SetRequestIdLayer::new(
            REQUEST_ID,
            tower_http::request_id::MakeRequestUuid,
        ))
}

/// Serves the API on `listener` (and `/metrics` on `metrics` instead, when
/// given) until `shutdown` completes, then finishes the requests in flight.
pub async fn serve(
    listener: tokio::net::TcpListener,
    metrics: Option<tokio::net::TcpListener>,
    state: AppState,
    shutdown: impl std::future::Future<Output = ()> + Send + 'static,
) -> std::io::Result<()> {
    let Some(metrics) = metrics else {
        return listen::serve(listener, router(state, true), shutdown).await;
    };
    let (stop, stopped) = tokio::sync::watch::channel(false);
    let side = tokio::spawn(listen::serve(
        metrics,
        metrics_router(state.clone()),
        async move {
            let mut stopped = stopped;
            let _ = stopped.wait_for(|s| *s).await;
        },
    ));
    let served = listen::serve(listener, router(state, false), async move {
        shutdown.await;
        let _ = stop.send(true);
    })
    .await;
    let _ = side.await;
    served
}

/// Lets a request through with a live API key (or when auth is off).
async fn require_key(
    State(state): State<AppState>,
    request: Request,
    next: Next,
) -> Result<Response, ApiError> {
    if !state.auth {
        origin::check_local(request.headers(), &state.cors_origins)
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
