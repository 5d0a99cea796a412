//! Chunks of a long transcription: stretches of one file's audio, cut at
//! silences, that any worker may transcribe; the TRANSCRIPTION job merges
//! their segments when the last one is done.

use std::fmt;
use std::str::FromStr;

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use uuid::Uuid;

use crate::model::ParseEnumError;
use crate::Segment;

/// Where a chunk stands.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "SCREAMING_SNAKE_CASE")]
pub enum ChunkStatus {
    /// Waiting for a worker (again, after a retryable failure or a lost worker).
    Queued,
    /// A worker holds it under a lease.
    Running,
    /// Its segments are stored.
    Completed,
    /// Out of attempts; the job fails with its error, and `retry` runs it again.
    Failed,
}

impl ChunkStatus {
    /// The stored name.
    pub fn as_str(self) -> &'static str {
        match self {
            ChunkStatus::Queued => "QUEUED",
            ChunkStatus::Running => "RUNNING",
            ChunkStatus::Completed => "COMPLETED",
            ChunkStatus::Failed => "FAILED",
        }
    }
}

impl fmt::Display for ChunkStatus {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl FromStr for ChunkStatus {
    type Err = ParseEnumError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s.to_ascii_uppercase().as_str() {
            "QUEUED" => Ok(ChunkStatus::Queued),
            "RUNNING" => Ok(ChunkStatus::Running),
            "COMPLETED" => Ok(ChunkStatus::Completed),
            "FAILED" => Ok(ChunkStatus::Failed),
            _ => Err(ParseEnumError::new(
                "chunk status",
                s,
                "QUEUED, RUNNING, COMPLETED, FAILED",
            )),
        }
    }
}

/// One chunk of a TRANSCRIPTION job.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Chunk {
    /// The TRANSCRIPTION job it belongs to.
    pub job_id: Uuid,
    /// Position in the file, from 0.
    pub index: u32,
    /// Start in seconds of the file's audio.
    pub start: f64,
    /// End in seconds of the file's audio.
    pub end: f64,
    pub status: ChunkStatus,
    /// Attempts started so far (a lost worker's included).
    pub attempt: u32,
    /// The worker holding or last holding it.
    pub worker: Option<String>,
    pub lease_expires_at: Option<DateTime<Utc>>,
    /// Why its last attempt failed.
    pub error: Option<String>,
    /// The language its transcription found.
    pub language: Option<String>,
    /// How sure the language detection was (1.0 when the language was given).
    pub language_probability: f32,
    /// Its segments, in the file's timeline, once completed.
    pub segments: Vec<Segment>,
}

impl Chunk {
    /// Seconds of audio it covers.
    pub fn seconds(&self) -> f64 {
        (self.end - self.start).max(0.0)
    }
}

/// How far a chunked job is: what `jobs` and `check-status` show.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct ChunkCounts {
    pub total: u32,
    pub done: u32,
}
