//! `POST /v1/audio/transcriptions`, shaped like OpenAI's, so OpenAI's own
//! clients work unchanged. The file goes through the same tracked pipeline
//! as any upload (it shows up in `list-recent` with its jobs); the request
//! is answered when the file's jobs have ended.

use axum::extract::State;
use axum::http::{header, HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::Json;
use pipeline_core::render::{self, OutputFormat};
use pipeline_core::{AudioStatus, Transcript};
use std::time::{Duration, Instant};

use crate::error::ErrorBody;
use crate::extract::ApiMultipart;
use crate::routes::{ingest_upload, read_form};
use crate::views::{OpenAiJson, OpenAiTranscription, OpenAiVerboseTranscription};
use crate::{ApiError, AppState};

/// The answer formats OpenAI's API offers.
#[derive(Debug, Clone, Copy, PartialEq, serde::Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum ResponseFormat {
    Json,
    Text,
    Srt,
    Vtt,
    VerboseJson,
}

impl ResponseFormat {
    fn parse(text: Option<&str>) -> Result<Self, ApiError> {
        Ok(match text.unwrap_or("json") {
            "json" => Self::Json,
            "text" => Self::Text,
            "srt" => Self::Srt,
            "vtt" => Self::Vtt,
            "verbose_json" => Self::VerboseJson,
            other => {
                return Err(ApiError::bad_request(format!(
                    "response_format {other:?} is not one of json, text, srt, vtt, verbose_json"
                )))
            }
        })
    }
}

/// `POST /v1/audio/transcriptions` (multipart `file`, `model`,
/// `response_format`, `language`, `timestamp_granularities[]`).
#[utoipa::path(post, path = "/v1/audio/transcriptions", tag = "openai",
    request_body(content = crate::openapi::TranscriptionForm, content_type = "multipart/form-data"),
    security(("api_key" = [])), responses(
    (status = 200, description = "The transcript in `response_format`, once the file's jobs are done (srt as text/plain)",
        content((OpenAiJson = "application/json"), (String = "text/plain"), (String = "text/vtt"))),
    (status = 400, description = "Not a multipart form, no `file`, or an unknown `response_format`", body = ErrorBody),
    (status = 413, description = "Over `server.max_upload_bytes`", body = ErrorBody),
    (status = 422, description = "Not audio, or the transcription failed", body = ErrorBody),
    (status = 503, description = "The database, storage or queue is unavailable", body = ErrorBody),
    (status = 504, description = "Not transcribed within `worker.job_timeout`", body = ErrorBody)))]
pub async fn transcriptions(
    State(state): State<AppState>,
    headers: HeaderMap,
    ApiMultipart(multipart): ApiMultipart,
) -> Result<Response, ApiError> {
    let form = read_form(&state, &headers, multipart).await?;
    let format = ResponseFormat::parse(form.field("response_format"))?;
    let Some(path) = &form.file else {
        return Err(ApiError::bad_request("no `file` field in the form"));
    };
    let mut options = state.defaults.clone();
    if let Some(language) = form
        .field("language")
        .map(str::trim)
        .filter(|l| !l.is_empty())
    {
        options.language = Some(language.to_string());
    }
    let wants_words = form
        .fields
        .iter()
        .any(|(name, value)| name.starts_with("timestamp_granularities") && value.trim() == "word");
    if wants_words {
        options.word_timestamps = true;
    }
    let ingested = ingest_upload(&state, path, &options).await?;
    let audio_id = ingested.audio.id;
    // The client waits as long as a job may run.
    let deadline = Instant::now() + state.job_timeout;
    let audio = loop {
        let audio = state.store.audio(audio_id).await?;
        if audio.status.is_final() {
            break audio;
        }
        if Instant::now() >= deadline {
            return Err(ApiError::new(
                StatusCode::GATEWAY_TIMEOUT,
                "timeout",
                format!("not transcribed in time; follow GET /api/v1/audio/{audio_id}"),
            ));
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    };
    if audio.status != AudioStatus::Completed {
        let jobs = state.store.jobs_for_audio(audio_id).await?;
        let reason = jobs
            .iter()
            .find_map(|j| j.error.as_ref().map(|e| e.message.clone()))
            .unwrap_or_else(|| format!("the file ended {}", audio.status));
        return Err(ApiError::new(
            StatusCode::UNPROCESSABLE_ENTITY,
            "transcription_failed",
            format!("{}: {reason}", audio.original_name),
        ));
    }
    let Some(transcript) = state.store.transcript(audio_id).await? else {
        return Err(ApiError::new(
            StatusCode::INTERNAL_SERVER_ERROR,
            "internal",
            "the file completed without a transcript",
        ));
    };
    Ok(answer(&transcript, format, wants_words))
}

fn answer(transcript: &Transcript, format: ResponseFormat, words: bool) -> Response {
    let text_plain = "text/plain; charset=utf-8";
    match format {
        ResponseFormat::Json => Json(OpenAiJson::Plain(OpenAiTranscription {
            text: transcript.text(),
        }))
        .into_response(),
        ResponseFormat::Text => (
            [(header::CONTENT_TYPE, text_plain)],
            render::render(transcript, OutputFormat::Txt),
        )
            .into_response(),
        ResponseFormat::Srt => (
            [(header::CONTENT_TYPE, text_plain)],
            render::render(transcript, OutputFormat::Srt),
        )
            .into_response(),
        ResponseFormat::Vtt => (
            [(header::CONTENT_TYPE, "text/vtt; charset=utf-8")],
            render::render(transcript, OutputFormat::Vtt),
        )
            .into_response(),
        ResponseFormat::VerboseJson => Json(OpenAiJson::Verbose(OpenAiVerboseTranscription::new(
            transcript, words,
        )))
        .into_response(),
    }
}
