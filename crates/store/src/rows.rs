//! Conversions between rows and the core model; every stored value is
//! TEXT, BIGINT or DOUBLE PRECISION so that one set of queries serves both
//! backends through sqlx's `Any` driver.

use chrono::{DateTime, SecondsFormat, Utc};
use pipeline_core::{
    AudioFile, Chunk, ChunkStatus, JobError, JobEvent, JobStatus, JobType, ProcessingJob,
};
use sqlx::any::AnyRow;
use sqlx::Row;
use std::str::FromStr;
use uuid::Uuid;

use crate::StoreError;

/// Columns of `processing_jobs` in the order [`job`] reads them.
pub(crate) const JOB_COLUMNS: &str = "id, audio_id, job_type, status, progress, task_id, attempt, \
     max_attempts, worker, heartbeat_at, lease_expires_at, available_at, cancel_requested, \
     error_kind, error_message, created_at, started_at, completed_at, transport, lost_leases";

/// Columns of `audio_files` in the order [`audio`] reads them.
pub(crate) const AUDIO_COLUMNS: &str = "id, original_name, sha256, size_bytes, container, codec, \
     duration_seconds, sample_rate, channels, storage_key, status, options, created_at, updated_at";

/// Columns of `transcription_chunks` in the order [`chunk`] reads them.
pub(crate) const CHUNK_COLUMNS: &str = "job_id, idx, start_seconds, end_seconds, status, attempt, \
     worker, lease_expires_at, error, language, segments";

/// Timestamps are stored as fixed-width RFC 3339 UTC text, so that text
/// order is time order on both backends.
pub(crate) fn ts(at: DateTime<Utc>) -> String {
    at.to_rfc3339_opts(SecondsFormat::Micros, true)
}

pub(crate) fn corrupt(table: &'static str, message: impl Into<String>) -> StoreError {
    StoreError::Corrupt {
        table,
        message: message.into(),
    }
}

fn get<'r, T>(row: &'r AnyRow, table: &'static str, column: &str) -> Result<T, StoreError>
where
    T: sqlx::Decode<'r, sqlx::Any> + sqlx::Type<sqlx::Any>,
{
    row.try_get(column)
        .map_err(|e| corrupt(table, format!("column {column}: {e}")))
}

pub(crate) fn parse<T: FromStr>(
    table: &'static str,
    column: &str,
    value: &str,
) -> Result<T, StoreError>
where
    T::Err: std::fmt::Display,
{
    value
        .parse()
        .map_err(|e| corrupt(table, format!("column {column}: {e}")))
}

pub(crate) fn time(
    table: &'static str,
    column: &str,
    value: &str,
) -> Result<DateTime<Utc>, StoreError> {
    DateTime::parse_from_rfc3339(value)
        .map(|t| t.with_timezone(&Utc))
        .map_err(|e| corrupt(table, format!("column {column}: {e}")))
}

pub(crate) fn opt_time(
    row: &AnyRow,
    table: &'static str,
    column: &str,
) -> Result<Option<DateTime<Utc>>, StoreError> {
    let value: Option<String> = get(row, table, column)?;
    value.map(|v| time(table, column, &v)).transpose()
}

pub(crate) fn uuid(table: &'static str, column: &str, row: &AnyRow) -> Result<Uuid, StoreError> {
    let value: String = get(row, table, column)?;
    parse(table, column, &value)
}

fn unsigned<T: TryFrom<i64>>(
    row: &AnyRow,
    table: &'static str,
    column: &str,
) -> Result<T, StoreError> {
    let value: i64 = get(row, table, column)?;
    T::try_from(value).map_err(|_| corrupt(table, format!("column {column}: {value} out of range")))
}

/// Reads a row selected with [`JOB_COLUMNS`].
pub(crate) fn job(row: &AnyRow) -> Result<ProcessingJob, StoreError> {
    const T: &str = "processing_jobs";
    let error_kind: Option<String> = get(row, T, "error_kind")?;
    let error_message: Option<String> = get(row, T, "error_message")?;
    let error = match (error_kind, error_message) {
        (Some(kind), Some(message)) => Some(JobError {
            kind: parse(T, "error_kind", &kind)?,
            message,
        }),
        _ => None,
    };
    let job_type: String = get(row, T, "job_type")?;
    let status: String = get(row, T, "status")?;
    let cancel_requested: i64 = get(row, T, "cancel_requested")?;
    Ok(ProcessingJob {
        id: uuid(T, "id", row)?,
        audio_id: uuid(T, "audio_id", row)?,
        job_type: parse::<JobType>(T, "job_type", &job_type)?,
        status: parse::<JobStatus>(T, "status", &status)?,
        progress: get(row, T, "progress")?,
        task_id: get(row, T, "task_id")?,
        attempt: unsigned(row, T, "attempt")?,
        max_attempts: unsigned(row, T, "max_attempts")?,
        lost_leases: unsigned(row, T, "lost_leases")?,
        worker: get(row, T, "worker")?,
        heartbeat_at: opt_time(row, T, "heartbeat_at")?,
        lease_expires_at: opt_time(row, T, "lease_expires_at")?,
        available_at: time(T, "available_at", &get::<String>(row, T, "available_at")?)?,
        cancel_requested: cancel_requested != 0,
        error,
        created_at: time(T, "created_at", &get::<String>(row, T, "created_at")?)?,
        started_at: opt_time(row, T, "started_at")?,
        completed_at: opt_time(row, T, "completed_at")?,
        transport: get(row, T, "transport")?,
    })
}

/// Reads a row selected with [`AUDIO_COLUMNS`].
pub(crate) fn audio(row: &AnyRow) -> Result<AudioFile, StoreError> {
    const T: &str = "audio_files";
    let status: String = get(row, T, "status")?;
    let options: String = get(row, T, "options")?;
    Ok(AudioFile {
        id: uuid(T, "id", row)?,
        original_name: get(row, T, "original_name")?,
        sha256: get(row, T, "sha256")?,
        size_bytes: unsigned(row, T, "size_bytes")?,
        container: get(row, T, "container")?,
        codec: get(row, T, "codec")?,
        duration_seconds: get(row, T, "duration_seconds")?,
        sample_rate: unsigned(row, T, "sample_rate")?,
        channels: unsigned(row, T, "channels")?,
        storage_key: get(row, T, "storage_key")?,
        status: parse(T, "status", &status)?,
        options: serde_json::from_str(&options)
            .map_err(|e| corrupt(T, format!("column options: {e}")))?,
        created_at: time(T, "created_at", &get::<String>(row, T, "created_at")?)?,
        updated_at: time(T, "updated_at", &get::<String>(row, T, "updated_at")?)?,
    })
}

/// Reads a row of `job_events`.
pub(crate) fn event(row: &AnyRow) -> Result<JobEvent, StoreError> {
    const T: &str = "job_events";
    let from_status: Option<String> = get(row, T, "from_status")?;
    let to_status: String = get(row, T, "to_status")?;
    Ok(JobEvent {
        id: get(row, T, "id")?,
        job_id: uuid(T, "job_id", row)?,
        at: time(T, "at", &get::<String>(row, T, "at")?)?,
        from_status: from_status
            .map(|s| parse(T, "from_status", &s))
            .transpose()?,
        to_status: parse(T, "to_status", &to_status)?,
        attempt: unsigned(row, T, "attempt")?,
        worker: get(row, T, "worker")?,
        message: get(row, T, "message")?,
    })
}

/// Reads a row selected with [`CHUNK_COLUMNS`].
pub(crate) fn chunk(row: &AnyRow) -> Result<Chunk, StoreError> {
    const T: &str = "transcription_chunks";
    let status: String = get(row, T, "status")?;
    let segments: Option<String> = get(row, T, "segments")?;
    let result: ChunkResult = match segments {
        Some(text) => {
            serde_json::from_str(&text).map_err(|e| corrupt(T, format!("column segments: {e}")))?
        }
        None => ChunkResult::default(),
    };
    Ok(Chunk {
        job_id: uuid(T, "job_id", row)?,
        index: unsigned(row, T, "idx")?,
        start: get(row, T, "start_seconds")?,
        end: get(row, T, "end_seconds")?,
        status: parse::<ChunkStatus>(T, "status", &status)?,
        attempt: unsigned(row, T, "attempt")?,
        worker: get(row, T, "worker")?,
        lease_expires_at: opt_time(row, T, "lease_expires_at")?,
        error: get(row, T, "error")?,
        language: get(row, T, "language")?,
        language_probability: result.language_probability,
        segments: result.segments,
    })
}

/// What the `segments` column of a finished chunk holds.
#[derive(Debug, Default, serde::Serialize, serde::Deserialize)]
pub(crate) struct ChunkResult {
    pub(crate) language_probability: f32,
    pub(crate) segments: Vec<pipeline_core::Segment>,
}
