//! The handlers.

use axum::extract::{Multipart, State};
use axum::http::{header, HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::Json;
use chrono::{DateTime, Utc};
use pipeline_core::render::{self, JsonTranscript, OutputFormat};
use pipeline_core::{AudioFile, AudioStatus, ProcessingJob};
use serde::Deserialize;
use std::path::PathBuf;
use tokio::io::AsyncWriteExt;
use utoipa::IntoParams;
use uuid::Uuid;

use crate::error::ErrorBody;
use crate::extract::{ApiMultipart, ApiQuery, IdPath};
use crate::views::{AudioPage, AudioView, Health, JobView, JobsView, Readiness, ServerStatus};
use crate::{ApiError, AppState};

/// An audio file with its jobs and, once rendered, its outputs.
async fn audio_view(state: &AppState, audio: &AudioFile) -> Result<AudioView, ApiError> {
    let jobs = state.store.jobs_for_audio(audio.id).await?;
    let results = state.store.results(audio.id).await?;
    Ok(AudioView {
        audio: audio.clone(),
        jobs: job_views(state, jobs).await?,
        outputs: results.map(|r| r.outputs).unwrap_or_default(),
    })
}

/// `jobs` with their chunk counts.
async fn job_views(state: &AppState, jobs: Vec<ProcessingJob>) -> Result<Vec<JobView>, ApiError> {
    let ids: Vec<Uuid> = jobs.iter().map(|j| j.id).collect();
    let chunks = state.store.chunk_counts(&ids).await?;
    Ok(JobView::all(jobs, &chunks))
}

#[utoipa::path(get, path = "/healthz", tag = "health",
    responses((status = 200, description = "The process serves", body = Health)))]
pub async fn healthz() -> Json<Health> {
    Json(Health {
        status: "ok".to_string(),
    })
}

/// Ready when the database and the broker (if any) answer.
#[utoipa::path(get, path = "/readyz", tag = "health", responses(
    (status = 200, description = "Database and broker answer", body = Readiness),
    (status = 503, description = "Database or broker unreachable", body = Readiness)))]
pub async fn readyz(State(state): State<AppState>) -> Response {
    let database = state.store.ping().await;
    let broker = state.queue.health().await;
    let ready = database.is_ok() && broker.is_ok();
    let body = Readiness {
        ready,
        database: database
            .as_ref()
            .map(|_| "ok")
            .unwrap_or("unreachable")
            .to_string(),
        broker: match &broker {
            Ok(h) => h.transport.clone(),
            Err(_) => "unreachable".to_string(),
        },
    };
    let status = if ready {
        StatusCode::OK
    } else {
        StatusCode::SERVICE_UNAVAILABLE
    };
    (status, Json(body)).into_response()
}

pub async fn no_route() -> ApiError {
    ApiError::not_found("no such route; see /api/v1/audio")
}

#[derive(Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
pub struct ListQuery {
    /// Only files in this status (any case).
    #[param(value_type = Option<AudioStatus>)]
    status: Option<String>,
    /// Files per page: 20 unless given, at most 200 (larger values are
    /// lowered, 0 is raised to 1).
    // Any u32 is taken; utoipa would call it int32.
    #[param(format = Int64, maximum = 4_294_967_295_u32)]
    limit: Option<u32>,
    /// `next_cursor` of the previous page: files created before it.
    #[param(format = DateTime)]
    cursor: Option<String>,
}

/// `GET /api/v1/audio?status=&limit=&cursor=`: newest first, a page at a time.
#[utoipa::path(get, path = "/api/v1/audio", tag = "audio", params(ListQuery),
    security(("api_key" = [])), responses(
    (status = 200, description = "A page of files, newest first", body = AudioPage),
    (status = 400, description = "A malformed parameter", body = ErrorBody),
    (status = 503, description = "The database is unreachable", body = ErrorBody)))]
pub async fn list_audio(
    State(state): State<AppState>,
    ApiQuery(query): ApiQuery<ListQuery>,
) -> Result<Json<AudioPage>, ApiError> {
    let status = query
        .status
        .as_deref()
        .map(|s| s.to_ascii_uppercase().parse::<AudioStatus>())
        .transpose()
        .map_err(|e| ApiError::bad_request(e.to_string()))?;
    let limit = query.limit.unwrap_or(20).clamp(1, 200);
    let before = query
        .cursor
        .as_deref()
        .map(|c| {
            DateTime::parse_from_rfc3339(c)
                .map(|t| t.with_timezone(&Utc))
                .map_err(|_| ApiError::bad_request("cursor is not one this API gave"))
        })
        .transpose()?;
    let files = state.store.list_page(limit, status, before).await?;
    let next = (files.len() == limit as usize)
        .then(|| files.last().map(|f| f.created_at.to_rfc3339()))
        .flatten();
    Ok(Json(AudioPage {
        files,
        next_cursor: next,
    }))
}

/// `GET /api/v1/audio/{id}`: the file, its jobs and outputs.
#[utoipa::path(get, path = "/api/v1/audio/{id}", tag = "audio",
    params(("id" = Uuid, Path, description = "The audio file's id")),
    security(("api_key" = [])), responses(
    (status = 200, description = "The file, its jobs and outputs", body = AudioView),
    (status = 400, description = "The id is not a uuid", body = ErrorBody),
    (status = 404, description = "No such file", body = ErrorBody),
    (status = 503, description = "The database is unreachable", body = ErrorBody)))]
pub async fn get_audio(
    State(state): State<AppState>,
    IdPath(id): IdPath,
) -> Result<Json<AudioView>, ApiError> {
    let audio = state.store.audio(id).await?;
    Ok(Json(audio_view(&state, &audio).await?))
}

/// `GET /api/v1/audio/{id}/jobs`.
#[utoipa::path(get, path = "/api/v1/audio/{id}/jobs", tag = "audio",
    params(("id" = Uuid, Path, description = "The audio file's id")),
    security(("api_key" = [])), responses(
    (status = 200, description = "The file's jobs", body = JobsView),
    (status = 400, description = "The id is not a uuid", body = ErrorBody),
    (status = 404, description = "No such file", body = ErrorBody),
    (status = 503, description = "The database is unreachable", body = ErrorBody)))]
pub async fn audio_jobs(
    State(state): State<AppState>,
    IdPath(id): IdPath,
) -> Result<Json<JobsView>, ApiError> {
    state.store.audio(id).await?;
    let jobs = state.store.jobs_for_audio(id).await?;
    Ok(Json(JobsView {
        audio_id: id,
        jobs: job_views(&state, jobs).await?,
    }))
}

#[derive(Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
pub struct TranscriptQuery {
    /// The format to render (any case): json unless given.
    #[param(value_type = Option<OutputFormat>)]
    format: Option<String>,
}

/// `GET /api/v1/audio/{id}/transcript?format=txt|srt|vtt|json|tsv|rttm`.
#[utoipa::path(get, path = "/api/v1/audio/{id}/transcript", tag = "audio",
    params(("id" = Uuid, Path, description = "The audio file's id"), TranscriptQuery),
    security(("api_key" = [])), responses(
    (status = 200, description = "The transcript in the format asked for (srt as text/plain)",
        content((JsonTranscript = "application/json"), (String = "text/plain"),
            (String = "text/vtt"), (String = "text/tab-separated-values"))),
    (status = 400, description = "The id is not a uuid or the format unknown", body = ErrorBody),
    (status = 404, description = "No such file", body = ErrorBody),
    (status = 409, description = "Not transcribed yet (`not_ready`)", body = ErrorBody),
    (status = 503, description = "The database is unreachable", body = ErrorBody)))]
pub async fn transcript(
    State(state): State<AppState>,
    IdPath(id): IdPath,
    ApiQuery(query): ApiQuery<TranscriptQuery>,
) -> Result<Response, ApiError> {
    let format: OutputFormat = query
        .format
        .as_deref()
        .unwrap_or("json")
        .parse()
        .map_err(|e: render::ParseFormatError| ApiError::bad_request(e.to_string()))?;
    state.store.audio(id).await?;
    let Some(transcript) = state.store.transcript(id).await? else {
        return Err(ApiError::new(
            StatusCode::CONFLICT,
            "not_ready",
            "no transcript yet; see GET /api/v1/audio/{id} for progress",
        ));
    };
    let body = match format {
        // The turns as the diarization found them, when it ran.
        OutputFormat::Rttm => {
            let audio = state.store.audio(id).await?;
            let recording = std::path::Path::new(&audio.original_name)
                .file_stem()
                .map(|s| s.to_string_lossy().into_owned())
                .unwrap_or_default();
            match state.store.diarization(id).await? {
                Some(d) => render::render_turns_rttm(&d.turns, &recording),
                None => render::render_rttm(&transcript, &recording),
            }
        }
        _ => render::render(&transcript, format),
    };
    let content_type = match format {
        OutputFormat::Json => "application/json",
        OutputFormat::Vtt => "text/vtt; charset=utf-8",
        OutputFormat::Tsv => "text/tab-separated-values; charset=utf-8",
        _ => "text/plain; charset=utf-8",
    };
    Ok(([(header::CONTENT_TYPE, content_type)], body).into_response())
}

/// `POST /api/v1/audio/{id}/retry`: failed or cancelled jobs run again.
#[utoipa::path(post, path = "/api/v1/audio/{id}/retry", tag = "audio",
    params(("id" = Uuid, Path, description = "The audio file's id")),
    security(("api_key" = [])), responses(
    (status = 200, description = "The jobs queued again (none when nothing failed)", body = JobsView),
    (status = 400, description = "The id is not a uuid", body = ErrorBody),
    (status = 404, description = "No such file", body = ErrorBody),
    (status = 409, description = "A job changed meanwhile", body = ErrorBody),
    (status = 503, description = "The database is unreachable", body = ErrorBody)))]
pub async fn retry(
    State(state): State<AppState>,
    IdPath(id): IdPath,
) -> Result<Json<JobsView>, ApiError> {
    // A file without jobs has nothing to retry, but one that does not exist
    // (or was deleted) is a 404, not an empty success.
    state.store.audio(id).await?;
    let changed = state.store.retry(id, None).await?;
    dispatch(&state, &changed).await;
    Ok(Json(JobsView {
        audio_id: id,
        jobs: job_views(&state, changed).await?,
    }))
}

/// `POST /api/v1/jobs/{id}/cancel`: the job and those after it.
#[utoipa::path(post, path = "/api/v1/jobs/{id}/cancel", tag = "jobs",
    params(("id" = Uuid, Path, description = "The job's id")),
    security(("api_key" = [])), responses(
    (status = 200, description = "The jobs cancelled (or asked to stop, when running)", body = JobsView),
    (status = 400, description = "The id is not a uuid", body = ErrorBody),
    (status = 404, description = "No such job", body = ErrorBody),
    (status = 409, description = "A job changed meanwhile", body = ErrorBody),
    (status = 503, description = "The database is unreachable", body = ErrorBody)))]
pub async fn cancel_job(
    State(state): State<AppState>,
    IdPath(id): IdPath,
) -> Result<Json<JobsView>, ApiError> {
    let job = state.store.job(id).await?;
    let changed = state.store.cancel(job.audio_id, Some(job.id)).await?;
    Ok(Json(JobsView {
        audio_id: job.audio_id,
        jobs: job_views(&state, changed).await?,
    }))
}

/// `DELETE /api/v1/audio/{id}`: the records, the outputs, and the stored
/// audio unless another file shares its content.
#[utoipa::path(delete, path = "/api/v1/audio/{id}", tag = "audio",
    params(("id" = Uuid, Path, description = "The audio file's id")),
    security(("api_key" = [])), responses(
    (status = 204, description = "Deleted"),
    (status = 400, description = "The id is not a uuid", body = ErrorBody),
    (status = 404, description = "No such file", body = ErrorBody),
    (status = 409, description = "A job changed meanwhile", body = ErrorBody),
    (status = 503, description = "The database is unreachable", body = ErrorBody)))]
pub async fn delete_audio(
    State(state): State<AppState>,
    IdPath(id): IdPath,
) -> Result<StatusCode, ApiError> {
    let audio = state.store.audio(id).await?;
    let results = state.store.results(audio.id).await?;
    state.store.delete_audio(audio.id).await?;
    // Refused content was never stored (its key is empty).
    if !audio.storage_key.is_empty()
        && state
            .store
            .files_sharing_storage(&audio.storage_key)
            .await?
            == 0
    {
        if let Err(e) = state.storage.remove(&audio.storage_key).await {
            tracing::warn!(error = %e, "could not remove a deleted file's audio");
        }
    }
    for file in results.iter().flat_map(|r| r.outputs.values()) {
        let _ = tokio::fs::remove_file(file).await;
    }
    let _ = tokio::fs::remove_dir(state.output_dir.join(audio.id.to_string())).await;
    Ok(StatusCode::NO_CONTENT)
}

/// `GET /api/v1/status`: database, broker, queue depth and workers.
#[utoipa::path(get, path = "/api/v1/status", tag = "health",
    security(("api_key" = [])), responses(
    (status = 200, description = "Database, broker, queue depth and workers", body = ServerStatus),
    (status = 503, description = "The database is unreachable", body = ErrorBody)))]
pub async fn status(State(state): State<AppState>) -> Result<Json<ServerStatus>, ApiError> {
    let latency = state.store.ping().await?;
    let depth = state.store.queue_depth().await?;
    let since = Utc::now() - chrono::Duration::seconds(60);
    let workers = state.store.workers_since(since).await?;
    let broker = pipeline_queue::health_json(state.queue.as_ref()).await;
    Ok(Json(ServerStatus {
        database: crate::views::DatabaseStatus {
            reachable: true,
            latency_ms: latency.as_secs_f64() * 1000.0,
        },
        broker,
        queue: depth,
        workers: workers.into_iter().map(Into::into).collect(),
    }))
}

async fn dispatch(state: &AppState, jobs: &[ProcessingJob]) {
    match state.queue.dispatch(jobs).await {
        Ok(d) => {
            if let Some(reason) = d.fell_back {
                tracing::warn!(%reason, "jobs fell back to the embedded queue");
            }
        }
        Err(e) => tracing::warn!(error = %e, "dispatch failed"),
    }
}

/// A client's file name made safe to record: no folders, no control
/// characters, never empty. It is only recorded; files are stored by digest.
fn safe_name(name: Option<&str>) -> String {
    let base = name
        .unwrap_or("")
        .rsplit(['/', '\\'])
        .next()
        .unwrap_or("")
        .chars()
        .filter(|c| !c.is_control())
        .collect::<String>();
    let base = base.trim().trim_start_matches('.').to_string();
    if base.is_empty() {
        "upload".to_string()
    } else {
        base.chars().take(200).collect()
    }
}

/// Removes a spooled upload whatever happens to the request.
pub(crate) struct Spool(PathBuf);

impl Drop for Spool {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

/// The most text fields a form may carry, and the size of each.
const MAX_FIELDS: usize = 32;
const MAX_FIELD_BYTES: usize = 64 * 1024;

fn too_large(limit: u64) -> ApiError {
    ApiError::new(
        StatusCode::PAYLOAD_TOO_LARGE,
        "too_large",
        format!("uploads are limited to {limit} bytes (server.max_upload_bytes)"),
    )
}

/// A form that could not be read: 408 when its body stalled for longer
/// than `server.body_timeout_secs`, 400 when it is malformed.
fn form_error(e: axum::extract::multipart::MultipartError) -> ApiError {
    let mut cause: Option<&(dyn std::error::Error + 'static)> = Some(&e);
    while let Some(error) = cause {
        if error.is::<tower_http::timeout::TimeoutError>() {
            return ApiError::new(
                StatusCode::REQUEST_TIMEOUT,
                "body_timeout",
                "the request body stalled for longer than server.body_timeout_secs",
            );
        }
        cause = error.source();
    }
    ApiError::bad_request(e.body_text())
}

/// A multipart form read to its end: the `file` field streamed to a spool
/// file under the size limit, the other fields as text.
pub(crate) struct Form {
    pub spool: Spool,
    pub file: Option<PathBuf>,
    pub fields: Vec<(String, String)>,
}

impl Form {
    /// The last value of field `name`.
    pub fn field(&self, name: &str) -> Option<&str> {
        self.fields
            .iter()
            .rev()
            .find(|(n, _)| n == name)
            .map(|(_, v)| v.as_str())
    }
}

/// Reads a multipart form, refusing (413) anything over the upload limit.
pub(crate) async fn read_form(
    state: &AppState,
    headers: &HeaderMap,
    mut multipart: Multipart,
) -> Result<Form, ApiError> {
    let limit = state.max_upload_bytes;
    let declared = headers
        .get(header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse::<u64>().ok());
    if declared.is_some_and(|n| n > limit.saturating_add(64 * 1024)) {
        return Err(too_large(limit));
    }
    let mut form = Form {
        spool: Spool(state.upload_dir.join(Uuid::new_v4().simple().to_string())),
        file: None,
        fields: Vec::new(),
    };
    let bad = form_error;
    while let Some(mut field) = multipart.next_field().await.map_err(bad)? {
        let name = field.name().unwrap_or("").to_string();
        if name == "file" {
            if form.file.is_some() {
                return Err(ApiError::bad_request(
                    "a form takes exactly one `file` field",
                ));
            }
            let file_name = safe_name(field.file_name());
            tokio::fs::create_dir_all(&form.spool.0)
                .await
                .map_err(|e| internal(&e))?;
            let path = form.spool.0.join(&file_name);
            let mut out = tokio::fs::File::create(&path)
                .await
                .map_err(|e| internal(&e))?;
            let mut written = 0u64;
            while let Some(chunk) = field.chunk().await.map_err(bad)? {
                written += chunk.len() as u64;
                if written > limit {
                    return Err(too_large(limit));
                }
                out.write_all(&chunk).await.map_err(|e| internal(&e))?;
            }
            out.flush().await.map_err(|e| internal(&e))?;
            form.file = Some(path);
        } else {
            // Text fields are small by nature: a bounded number, each
            // bounded, read a chunk at a time (never whole if too long).
            if form.fields.len() >= MAX_FIELDS {
                return Err(ApiError::bad_request(format!(
                    "a form takes at most {MAX_FIELDS} text fields"
                )));
            }
            let mut bytes = Vec::new();
            while let Some(chunk) = field.chunk().await.map_err(bad)? {
                if bytes.len() + chunk.len() > MAX_FIELD_BYTES {
                    return Err(ApiError::new(
                        StatusCode::PAYLOAD_TOO_LARGE,
                        "field_too_large",
                        format!(
                            "form field {:?} is over {MAX_FIELD_BYTES} bytes",
                            name.chars().take(40).collect::<String>()
                        ),
                    ));
                }
                bytes.extend_from_slice(&chunk);
            }
            let text = String::from_utf8(bytes).map_err(|_| {
                ApiError::bad_request(format!("form field {name:?} is not UTF-8 text"))
            })?;
            form.fields.push((name, text));
        }
    }
    Ok(form)
}

/// Takes in a spooled upload like `process --detach`; a file that is not
/// audio is recorded FAILED and answered 422 with its record.
pub(crate) async fn ingest_upload(
    state: &AppState,
    path: &std::path::Path,
    options: &pipeline_ingest::ProcessOptions,
) -> Result<pipeline_ingest::Ingested, ApiError> {
    let ingested = pipeline_ingest::ingest_file(
        &state.store,
        state.queue.as_ref(),
        &state.storage,
        path,
        options,
        state.max_attempts,
        false,
    )
    .await
    .map_err(|e| match e {
        pipeline_ingest::IngestError::Store(e) => ApiError::from(e),
        e if e.is_bad_input() => ApiError::new(
            StatusCode::UNPROCESSABLE_ENTITY,
            "unreadable",
            e.to_string(),
        ),
        e => {
            tracing::error!(error = %e, "answered 503");
            ApiError::new(
                StatusCode::SERVICE_UNAVAILABLE,
                "unavailable",
                "storage or queue unavailable; try again later",
            )
        }
    })?;
    if let Some(reason) = &ingested.rejected {
        let mut error = ApiError::new(
            StatusCode::UNPROCESSABLE_ENTITY,
            "not_audio",
            format!("{}: {reason}", ingested.audio.original_name),
        );
        // Documented as ErrorBody's `audio`.
        let view =
            serde_json::to_value(audio_view(state, &ingested.audio).await?).unwrap_or_default();
        let mut extra = serde_json::Map::new();
        extra.insert("audio".to_string(), view);
        error.extra = Some(serde_json::Value::Object(extra));
        return Err(error);
    }
    Ok(ingested)
}

/// `POST /api/v1/audio` (multipart: `file`, and optional `language`, `task`,
/// `mode`, `batch_size`, `initial_prompt`, `hotwords`, `channel`, `formats`, `webhook_url`, `webhook_secret`,
/// `diarize`, `speakers`, `min_speakers`, `max_speakers`): streamed to disk under the size limit, then taken in like
/// `process --detach`. 202 with the file and its jobs; 422 when the content
/// is not audio (recorded as FAILED) or the speaker count contradicts
/// itself; 413 over the limit.
#[utoipa::path(post, path = "/api/v1/audio", tag = "audio",
    request_body(content = crate::openapi::UploadForm, content_type = "multipart/form-data"),
    security(("api_key" = [])), responses(
    (status = 200, description = "The same content with the same settings was uploaded before: that file", body = AudioView),
    (status = 202, description = "Taken in: the file and its queued jobs", body = AudioView),
    (status = 400, description = "Not a multipart form, no `file`, or a bad field", body = ErrorBody),
    (status = 413, description = "Over `server.max_upload_bytes`", body = ErrorBody),
    (status = 422, description = "Not audio (`not_audio`, recorded FAILED: its record is in `audio`), unreadable, or a speaker count that contradicts itself (`invalid_speakers`: min_speakers above max_speakers, speakers with min_speakers or max_speakers, a count with diarize false)", body = ErrorBody),
    (status = 503, description = "The database, storage or queue is unavailable", body = ErrorBody)))]
pub async fn upload(
    State(state): State<AppState>,
    headers: HeaderMap,
    ApiMultipart(multipart): ApiMultipart,
) -> Result<Response, ApiError> {
    let form = read_form(&state, &headers, multipart).await?;
    let mut options = state.defaults.clone();
    let mut diarize: Option<bool> = None;
    let mut count = pipeline_ingest::SpeakerCount::default();
    for (name, value) in &form.fields {
        match name.as_str() {
            "language" => {
                let language = value.trim();
                if !language.is_empty() && !pipeline_ingest::is_language_code(language) {
                    return Err(ApiError::bad_request(format!(
                        "language {:?} is not a language code (en, de, yue, ...)",
                        language.chars().take(40).collect::<String>()
                    )));
                }
                options.language = Some(language.to_string()).filter(|l| !l.is_empty());
            }
            "task" if !value.trim().is_empty() => {
                options.task = value.parse().map_err(ApiError::bad_request)?;
            }
            "task" => {}
            "initial_prompt" => {
                options.initial_prompt = Some(value.trim().to_string()).filter(|p| !p.is_empty());
            }
            "channel" if !value.trim().is_empty() => {
                let channel: pipeline_audio::Channel =
                    value.parse().map_err(ApiError::bad_request)?;
                options.channel = channel.to_string();
            }
            "channel" => {}
            "audio_track" if !value.trim().is_empty() => {
                let track: pipeline_audio::Track =
                    value.parse().map_err(ApiError::bad_request)?;
                options.audio_track = match track {
                    pipeline_audio::Track::Default => None,
                    pipeline_audio::Track::Index(n) => Some(n),
                };
            }
            "audio_track" => {}
            "hotwords" => {
                options.hotwords = Some(value.trim().to_string()).filter(|h| !h.is_empty());
            }
            "mode" if !value.trim().is_empty() => {
                options.mode = value.parse().map_err(ApiError::bad_request)?;
            }
            "mode" => {}
            "batch_size" if !value.trim().is_empty() => {
                options.batch_size = value
                    .trim()
                    .parse()
                    .ok()
                    .filter(|b| (1..=64).contains(b))
                    .ok_or_else(|| {
                        ApiError::bad_request(format!("batch_size {value:?}: expected 1 to 64"))
                    })?;
            }
            "batch_size" => {}
            "formats" => {
                options.formats = value
                    .split(',')
                    .map(|f| f.trim().parse())
                    .collect::<Result<_, _>>()
                    .map_err(|e: render::ParseFormatError| ApiError::bad_request(e.to_string()))?;
            }
            "webhook_url" => {
                let url = value.trim();
                // A URL the relay could never send to is refused now rather
                // than failed later.
                pipeline_webhooks::check_target(url, state.allow_private_webhooks)
                    .map_err(|e| ApiError::bad_request(format!("webhook_url {url:?}: {e}")))?;
                // Unsigned unless the upload brings its own key: signing with
                // the server's would sign anything for any key holder.
                options.webhooks = vec![pipeline_store::WebhookEndpoint {
                    url: url.to_string(),
                    secret: None,
                }];
            }
            "webhook_secret" => {}
            "diarize" => diarize = parse_flag("diarize", value)?,
            "speakers" => count.speakers = parse_speakers("speakers", value)?,
            "min_speakers" => count.min_speakers = parse_speakers("min_speakers", value)?,
            "max_speakers" => count.max_speakers = parse_speakers("max_speakers", value)?,
            other => {
                return Err(ApiError::bad_request(format!(
                    "unknown field {other:?} (expected file, language, task, mode, batch_size, initial_prompt, hotwords, channel, audio_track, formats, webhook_url, webhook_secret, diarize, speakers, min_speakers, max_speakers)"
                )))
            }
        }
    }
    diarization(
        &mut options,
        diarize,
        count,
        form.field("formats").is_some(),
    )?;
    // The upload's own key signs its events; without one they go unsigned.
    if let Some(secret) = form.field("webhook_secret").filter(|s| !s.is_empty()) {
        match options.webhooks.first_mut() {
            Some(endpoint) => endpoint.secret = Some(secret.to_string()),
            None => return Err(ApiError::bad_request("webhook_secret needs webhook_url")),
        }
    }
    let Some(path) = &form.file else {
        return Err(ApiError::bad_request("no `file` field in the form"));
    };
    let ingested = ingest_upload(&state, path, &options).await?;
    let view = audio_view(&state, &ingested.audio).await?;
    let status = if ingested.deduplicated {
        StatusCode::OK
    } else {
        StatusCode::ACCEPTED
    };
    Ok((status, Json(view)).into_response())
}

/// A yes/no field: true, false, 1, 0, yes, no, on, off (any case); empty
/// means the server's default.
fn parse_flag(name: &str, value: &str) -> Result<Option<bool>, ApiError> {
    // Spaces only, as the documented pattern says.
    match value.trim_matches(' ').to_ascii_lowercase().as_str() {
        "" => Ok(None),
        "true" | "1" | "yes" | "on" => Ok(Some(true)),
        "false" | "0" | "no" | "off" => Ok(Some(false)),
        _ => Err(ApiError::bad_request(format!(
            "{name} {:?}: expected true or false",
            value.chars().take(40).collect::<String>()
        ))),
    }
}

/// A speaker count field: a number from 1 to 64 written plainly; empty
/// means none.
fn parse_speakers(name: &str, value: &str) -> Result<Option<u32>, ApiError> {
    let text = value.trim_matches(' ');
    if text.is_empty() {
        return Ok(None);
    }
    let plain = text.bytes().all(|b| b.is_ascii_digit()) && !text.starts_with('0');
    text.parse::<u32>()
        .ok()
        .filter(|n| plain && (1..=pipeline_core::config::MAX_SPEAKERS).contains(n))
        .map(Some)
        .ok_or_else(|| {
            ApiError::bad_request(format!(
                "{name} {:?}: expected a number from 1 to {}",
                text.chars().take(40).collect::<String>(),
                pipeline_core::config::MAX_SPEAKERS
            ))
        })
}

/// Puts an upload's diarization fields over the server's defaults: a
/// speaker count implies `diarize` and replaces the configured count
/// whole. A count that contradicts itself is refused 422: each field is
/// well formed (400 is for those that are not), the combination is not.
fn diarization(
    options: &mut pipeline_ingest::ProcessOptions,
    diarize: Option<bool>,
    count: pipeline_ingest::SpeakerCount,
    formats_chosen: bool,
) -> Result<(), ApiError> {
    let counted = count != pipeline_ingest::SpeakerCount::default();
    let invalid = |message: String| {
        ApiError::new(
            StatusCode::UNPROCESSABLE_ENTITY,
            "invalid_speakers",
            message,
        )
    };
    if counted {
        pipeline_ingest::check_speaker_count(&count).map_err(invalid)?;
        if diarize == Some(false) {
            return Err(invalid(
                "speakers, min_speakers and max_speakers need diarize, which is false".to_string(),
            ));
        }
    }
    let on = counted || diarize.unwrap_or(options.diarize);
    let count = if counted {
        count
    } else {
        options.speaker_count()
    };
    options.set_diarization(on, count, formats_chosen);
    Ok(())
}

fn internal(e: &std::io::Error) -> ApiError {
    tracing::error!(error = %e, "spooling an upload");
    ApiError::new(
        StatusCode::INTERNAL_SERVER_ERROR,
        "internal",
        "could not spool the upload",
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn client_file_names_cannot_escape() {
        assert_eq!(safe_name(Some("../../etc/passwd")), "passwd");
        assert_eq!(safe_name(Some("a\0b.wav")), "ab.wav");
        assert_eq!(safe_name(Some("..")), "upload");
        assert_eq!(safe_name(Some("C:\\x\\talk.mp3")), "talk.mp3");
        assert_eq!(safe_name(None), "upload");
        assert_eq!(safe_name(Some(".hidden")), "hidden");
    }
}
