//! `POST /v1/audio/transcriptions`, shaped like OpenAI's, so OpenAI's own
//! clients work unchanged. The file goes through the same tracked pipeline
//! as any upload (it shows up in `list-recent` with its jobs); the request
//! is answered when the file's jobs have ended.

use axum::extract::{Multipart, State};
use axum::http::{header, HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::Json;
use pipeline_core::render::{self, OutputFormat};
use pipeline_core::{AudioStatus, Transcript};
use serde_json::json;
use std::time::{Duration, Instant};

use crate::routes::{ingest_upload, read_form};
use crate::{ApiError, AppState};

/// The answer formats OpenAI's API offers.
#[derive(Debug, Clone, Copy, PartialEq)]
enum ResponseFormat {
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
pub async fn transcriptions(
    State(state): State<AppState>,
    headers: HeaderMap,
    multipart: Multipart,
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
        ResponseFormat::Json => Json(json!({"text": transcript.text()})).into_response(),
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
        ResponseFormat::VerboseJson => {
            let segments: Vec<_> = transcript
                .segments
                .iter()
                .map(|s| {
                    json!({
                        "id": s.id,
                        "seek": 0,
                        "start": s.start,
                        "end": s.end,
                        "text": s.text,
                        "tokens": [],
                        "temperature": s.temperature,
                        "avg_logprob": s.avg_logprob,
                        "compression_ratio": s.compression_ratio,
                        "no_speech_prob": s.no_speech_prob,
                    })
                })
                .collect();
            let mut body = json!({
                "task": "transcribe",
                "language": transcript.language,
                "duration": transcript.duration,
                "text": transcript.text(),
                "segments": segments,
            });
            if words {
                body["words"] = transcript
                    .segments
                    .iter()
                    .flat_map(|s| s.words.iter())
                    .map(|w| json!({"word": w.word.trim(), "start": w.start, "end": w.end}))
                    .collect();
            }
            Json(body).into_response()
        }
    }
}
