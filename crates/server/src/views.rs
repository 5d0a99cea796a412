//! The JSON bodies the API answers with, as types: the handlers serialize
//! these and the OpenAPI document is derived from them, so what is
//! documented is what is sent.

use chrono::{DateTime, Utc};
use pipeline_core::transcript::{Segment, Transcript};
use pipeline_core::{AudioFile, ProcessingJob};
use pipeline_store::WorkerInfo;
use serde::Serialize;
use std::collections::BTreeMap;
use utoipa::ToSchema;
use uuid::Uuid;

/// `GET /healthz`: the process serves.
#[derive(Debug, Serialize, ToSchema)]
pub struct Health {
    /// Always `ok`.
    pub status: String,
}

/// `GET /readyz`: whether the database and the broker answer.
#[derive(Debug, Serialize, ToSchema)]
pub struct Readiness {
    pub ready: bool,
    /// `ok` or `unreachable`.
    pub database: String,
    /// The broker's transport (`embedded`, `amqp`, `redis`) or `unreachable`.
    pub broker: String,
}

/// An audio file with its jobs and, once rendered, its outputs.
#[derive(Debug, Serialize, ToSchema)]
pub struct AudioView {
    #[serde(flatten)]
    pub audio: AudioFile,
    /// The file's jobs in pipeline order.
    pub jobs: Vec<JobView>,
    /// Format name (`txt`, `srt`, ...) to the file written; empty until
    /// the PROCESSING job has run.
    pub outputs: BTreeMap<String, String>,
}

/// A page of `GET /api/v1/audio`, newest first.
#[derive(Debug, Serialize, ToSchema)]
pub struct AudioPage {
    pub files: Vec<AudioFile>,
    /// Pass as `cursor` for the next page; null on the last page.
    pub next_cursor: Option<String>,
}

/// A file's jobs: all of them, or those a retry or cancel changed.
#[derive(Debug, Serialize, ToSchema)]
pub struct JobsView {
    pub audio_id: Uuid,
    pub jobs: Vec<JobView>,
}

/// A job with how far its chunks are, when a long file was cut into chunks.
#[derive(Debug, Serialize, ToSchema)]
pub struct JobView {
    #[serde(flatten)]
    pub job: ProcessingJob,
    /// Chunks the job's audio was cut into (0 when it was not cut).
    pub chunks_total: u32,
    /// Of those, the chunks transcribed.
    pub chunks_done: u32,
}

impl JobView {
    /// Each job with its counts from `chunks` (a job missing there was not cut).
    pub fn all(
        jobs: Vec<ProcessingJob>,
        chunks: &std::collections::HashMap<Uuid, pipeline_core::ChunkCounts>,
    ) -> Vec<JobView> {
        jobs.into_iter()
            .map(|job| {
                let counts = chunks.get(&job.id).copied().unwrap_or_default();
                JobView {
                    job,
                    chunks_total: counts.total,
                    chunks_done: counts.done,
                }
            })
            .collect()
    }
}

/// `GET /api/v1/status`: database, broker, queue depth and workers.
#[derive(Debug, Serialize, ToSchema)]
pub struct ServerStatus {
    pub database: DatabaseStatus,
    /// As `pipeline_queue::health_json` builds it, shared with
    /// `pipeline-manager status --json`.
    #[schema(value_type = BrokerHealth)]
    pub broker: serde_json::Value,
    /// Number of jobs in each status.
    pub queue: BTreeMap<String, u64>,
    /// Workers seen in the last minute.
    pub workers: Vec<WorkerView>,
}

/// The database's health.
#[derive(Debug, Serialize, ToSchema)]
pub struct DatabaseStatus {
    /// Always true: an unreachable database answers 503 instead.
    pub reachable: bool,
    /// Round trip of a trivial query.
    pub latency_ms: f64,
}

/// The broker's health. Documentation only: the queue crate builds this
/// document as JSON for the CLI too and does not depend on utoipa.
#[derive(Debug, ToSchema)]
#[allow(dead_code)]
pub struct BrokerHealth {
    /// `embedded`, `amqp` or `redis`.
    pub transport: String,
    pub reachable: bool,
    /// Round trip to the broker; null for the embedded queue.
    pub latency_ms: Option<f64>,
    /// Messages waiting in each queue, when reachable.
    pub queues: Option<BTreeMap<String, u64>>,
    /// Why the broker is unreachable.
    pub error: Option<String>,
}

/// A worker process as it last reported itself.
#[derive(Debug, Serialize, ToSchema)]
pub struct WorkerView {
    pub id: String,
    pub host: String,
    pub pid: u32,
    pub concurrency: u32,
    /// The jobs it is running.
    pub current_jobs: Vec<Uuid>,
    pub started_at: DateTime<Utc>,
    pub last_seen: DateTime<Utc>,
}

impl From<WorkerInfo> for WorkerView {
    fn from(w: WorkerInfo) -> Self {
        Self {
            id: w.id,
            host: w.host,
            pid: w.pid,
            concurrency: w.concurrency,
            current_jobs: w.current_jobs,
            started_at: w.started_at,
            last_seen: w.last_seen,
        }
    }
}

/// `POST /v1/audio/transcriptions` with `response_format` json or
/// verbose_json.
#[derive(Debug, Serialize, ToSchema)]
#[serde(untagged)]
pub enum OpenAiJson {
    Plain(OpenAiTranscription),
    Verbose(OpenAiVerboseTranscription),
}

/// OpenAI's `json` answer.
#[derive(Debug, Serialize, ToSchema)]
// The schema forbids other fields so that a verbose answer (which also has
// `text`) matches exactly one of the two shapes.
#[serde(deny_unknown_fields)]
pub struct OpenAiTranscription {
    pub text: String,
}

/// OpenAI's `verbose_json` answer.
#[derive(Debug, Serialize, ToSchema)]
pub struct OpenAiVerboseTranscription {
    /// Always `transcribe`.
    pub task: String,
    pub language: String,
    /// Seconds of audio.
    pub duration: f64,
    pub text: String,
    pub segments: Vec<OpenAiSegment>,
    /// Present when `timestamp_granularities[]` asked for `word`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub words: Option<Vec<OpenAiWord>>,
}

/// A segment as OpenAI's verbose answer has it.
#[derive(Debug, Serialize, ToSchema)]
pub struct OpenAiSegment {
    pub id: u32,
    /// Always 0: segments are not tied to 30-second windows here.
    pub seek: u32,
    pub start: f64,
    pub end: f64,
    pub text: String,
    /// Always empty: token ids are not kept.
    pub tokens: Vec<u32>,
    pub temperature: f32,
    pub avg_logprob: f32,
    pub compression_ratio: f32,
    pub no_speech_prob: f32,
    /// Who speaks, when the file was diarized (an extension of OpenAI's
    /// shape, as speaches and whisper-asr-webservice add it).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub speaker: Option<String>,
}

/// A word as OpenAI's verbose answer has it.
#[derive(Debug, Serialize, ToSchema)]
pub struct OpenAiWord {
    pub word: String,
    pub start: f64,
    pub end: f64,
    /// Who speaks, when the file was diarized.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub speaker: Option<String>,
}

impl OpenAiVerboseTranscription {
    /// The verbose answer for `transcript`, with words when asked.
    pub fn new(transcript: &Transcript, words: bool) -> Self {
        let segment = |s: &Segment| OpenAiSegment {
            id: s.id,
            seek: 0,
            start: s.start,
            end: s.end,
            text: s.text.clone(),
            tokens: Vec::new(),
            temperature: s.temperature,
            avg_logprob: s.avg_logprob,
            compression_ratio: s.compression_ratio,
            no_speech_prob: s.no_speech_prob,
            speaker: s.speaker.clone(),
        };
        Self {
            task: "transcribe".to_string(),
            language: transcript.language.clone(),
            duration: transcript.duration,
            text: transcript.text(),
            segments: transcript.segments.iter().map(segment).collect(),
            words: words.then(|| {
                transcript
                    .segments
                    .iter()
                    .flat_map(|s| s.words.iter())
                    .map(|w| OpenAiWord {
                        word: w.word.trim().to_string(),
                        start: w.start,
                        end: w.end,
                        speaker: w.speaker.clone(),
                    })
                    .collect()
            }),
        }
    }
}
