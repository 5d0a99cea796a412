//! Audio files, processing jobs and their audit trail: the tasks-as-data model.

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use std::fmt;
use std::str::FromStr;
use uuid::Uuid;

use crate::state::JobStatus;

/// What a job does; the set is open, these are the stages we run.
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "SCREAMING_SNAKE_CASE")]
pub enum JobType {
    /// Decode the audio and run the speech engine.
    Transcription,
    /// Find who speaks when (only for files submitted with diarization);
    /// runs beside TRANSCRIPTION.
    Diarization,
    /// Render outputs and statistics from the stored transcript (with the
    /// speakers merged in, when the file was diarized).
    Processing,
}

impl JobType {
    /// All job types in pipeline order. A file has the jobs it asked for:
    /// TRANSCRIPTION and PROCESSING always, DIARIZATION when diarized.
    pub const ALL: [JobType; 3] = [
        JobType::Transcription,
        JobType::Diarization,
        JobType::Processing,
    ];

    /// The name stored in the database and shown to users.
    pub fn as_str(self) -> &'static str {
        match self {
            JobType::Transcription => "TRANSCRIPTION",
            JobType::Diarization => "DIARIZATION",
            JobType::Processing => "PROCESSING",
        }
    }

    /// The Celery task name that runs this job.
    pub fn task_name(self) -> &'static str {
        match self {
            JobType::Transcription => "pipeline.transcribe",
            JobType::Diarization => "pipeline.diarize",
            JobType::Processing => "pipeline.process",
        }
    }

    /// The job types this one waits for, among those its file has: a job
    /// is released when every job of its file of one of these types has
    /// COMPLETED (a type the file has no job of is not waited for), and
    /// fails or is cancelled with any of them.
    pub fn depends_on(self) -> &'static [JobType] {
        match self {
            JobType::Transcription | JobType::Diarization => &[],
            JobType::Processing => &[JobType::Transcription, JobType::Diarization],
        }
    }

    /// Whether this job type waits for `other`.
    pub fn waits_for(self, other: JobType) -> bool {
        self.depends_on().contains(&other)
    }

    /// The job type a Celery task name runs, if it is one of ours.
    pub fn from_task_name(task: &str) -> Option<JobType> {
        JobType::ALL.into_iter().find(|t| t.task_name() == task)
    }
}

impl fmt::Display for JobType {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl FromStr for JobType {
    type Err = ParseEnumError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s.to_ascii_uppercase().as_str() {
            "TRANSCRIPTION" => Ok(JobType::Transcription),
            "DIARIZATION" => Ok(JobType::Diarization),
            "PROCESSING" => Ok(JobType::Processing),
            _ => Err(ParseEnumError::new(
                "job type",
                s,
                "TRANSCRIPTION, DIARIZATION, PROCESSING",
            )),
        }
    }
}

/// The overall state of an audio file, derived from its jobs.
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "SCREAMING_SNAKE_CASE")]
pub enum AudioStatus {
    Queued,
    Processing,
    Completed,
    Failed,
    Cancelled,
}

impl AudioStatus {
    /// The name stored in the database and shown to users.
    pub fn as_str(self) -> &'static str {
        match self {
            AudioStatus::Queued => "QUEUED",
            AudioStatus::Processing => "PROCESSING",
            AudioStatus::Completed => "COMPLETED",
            AudioStatus::Failed => "FAILED",
            AudioStatus::Cancelled => "CANCELLED",
        }
    }

    /// Derives the file's status from its jobs' statuses.
    ///
    /// A failure anywhere fails the file even while a sibling still runs,
    /// because the outputs can no longer all be produced.
    pub fn derive(jobs: impl IntoIterator<Item = JobStatus>) -> AudioStatus {
        let statuses: Vec<JobStatus> = jobs.into_iter().collect();
        if statuses.is_empty() {
            return AudioStatus::Queued;
        }
        if statuses.iter().all(|s| *s == JobStatus::Completed) {
            AudioStatus::Completed
        } else if statuses.contains(&JobStatus::Failed) {
            AudioStatus::Failed
        } else if statuses.contains(&JobStatus::Cancelled) {
            AudioStatus::Cancelled
        } else if statuses.iter().any(|s| {
            matches!(
                s,
                JobStatus::Running | JobStatus::Retrying | JobStatus::Completed
            )
        }) {
            AudioStatus::Processing
        } else {
            AudioStatus::Queued
        }
    }

    /// Whether nothing more will happen without a retry.
    pub fn is_final(self) -> bool {
        matches!(
            self,
            AudioStatus::Completed | AudioStatus::Failed | AudioStatus::Cancelled
        )
    }
}

impl fmt::Display for AudioStatus {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl FromStr for AudioStatus {
    type Err = ParseEnumError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s.to_ascii_uppercase().as_str() {
            "QUEUED" => Ok(AudioStatus::Queued),
            "PROCESSING" => Ok(AudioStatus::Processing),
            "COMPLETED" => Ok(AudioStatus::Completed),
            "FAILED" => Ok(AudioStatus::Failed),
            "CANCELLED" => Ok(AudioStatus::Cancelled),
            _ => Err(ParseEnumError::new(
                "audio status",
                s,
                "QUEUED, PROCESSING, COMPLETED, FAILED, CANCELLED",
            )),
        }
    }
}

/// A value that is not one of an enum's names.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("unknown {what} {value:?} (expected one of: {expected})")]
pub struct ParseEnumError {
    what: &'static str,
    value: String,
    expected: &'static str,
}

impl ParseEnumError {
    pub(crate) fn new(what: &'static str, value: &str, expected: &'static str) -> Self {
        Self {
            what,
            value: value.to_string(),
            expected,
        }
    }
}

/// Whether a failure may pass when tried again.
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ErrorKind {
    /// A blip: a timeout, a broker or network failure. Retried with backoff.
    Retryable,
    /// Will fail the same way again: undecodable audio, a missing model.
    Permanent,
}

impl ErrorKind {
    /// The name stored in the database.
    pub fn as_str(self) -> &'static str {
        match self {
            ErrorKind::Retryable => "retryable",
            ErrorKind::Permanent => "permanent",
        }
    }
}

impl FromStr for ErrorKind {
    type Err = ParseEnumError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s {
            "retryable" => Ok(ErrorKind::Retryable),
            "permanent" => Ok(ErrorKind::Permanent),
            _ => Err(ParseEnumError::new("error kind", s, "retryable, permanent")),
        }
    }
}

/// Why a job failed, as recorded on the job.
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct JobError {
    pub kind: ErrorKind,
    pub message: String,
}

impl JobError {
    /// A failure that may pass when tried again.
    pub fn retryable(message: impl Into<String>) -> Self {
        Self {
            kind: ErrorKind::Retryable,
            message: message.into(),
        }
    }

    /// A failure that will not pass.
    pub fn permanent(message: impl Into<String>) -> Self {
        Self {
            kind: ErrorKind::Permanent,
            message: message.into(),
        }
    }
}

impl fmt::Display for JobError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} ({})", self.message, self.kind.as_str())
    }
}

/// An ingested audio file.
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct AudioFile {
    pub id: Uuid,
    pub original_name: String,
    pub sha256: String,
    pub size_bytes: u64,
    pub container: String,
    pub codec: String,
    pub duration_seconds: f64,
    pub sample_rate: u32,
    pub channels: u16,
    /// Where the audio lives in storage (content-addressed).
    pub storage_key: String,
    pub status: AudioStatus,
    /// The options the file was submitted with, replayed on retry.
    pub options: serde_json::Value,
    pub created_at: DateTime<Utc>,
    pub updated_at: DateTime<Utc>,
}

/// One stage of work on an audio file.
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ProcessingJob {
    pub id: Uuid,
    pub audio_id: Uuid,
    pub job_type: JobType,
    pub status: JobStatus,
    /// 0 to 100.
    pub progress: f64,
    /// The queue's message id (the Celery task id in Celery mode).
    pub task_id: String,
    /// Attempts started so far.
    pub attempt: u32,
    pub max_attempts: u32,
    /// Attempts that ended because their worker vanished (its lease
    /// expired): not the job's failure, so they do not count against
    /// `max_attempts` but against a higher bound of their own.
    #[serde(default)]
    pub lost_leases: u32,
    /// The worker holding or last holding the job.
    pub worker: Option<String>,
    pub heartbeat_at: Option<DateTime<Utc>>,
    pub lease_expires_at: Option<DateTime<Utc>>,
    /// Not before this instant (backoff).
    pub available_at: DateTime<Utc>,
    pub cancel_requested: bool,
    pub error: Option<JobError>,
    pub created_at: DateTime<Utc>,
    pub started_at: Option<DateTime<Utc>>,
    pub completed_at: Option<DateTime<Utc>>,
    /// How the job reaches workers: `embedded` (the jobs table), `amqp` or
    /// `redis` (a Celery broker).
    #[serde(default = "embedded_transport")]
    pub transport: String,
}

impl ProcessingJob {
    /// Attempts that failed on their own (a vanished worker's are not counted).
    pub fn failed_attempts(&self) -> u32 {
        self.attempt.saturating_sub(self.lost_leases)
    }
}

fn embedded_transport() -> String {
    "embedded".to_string()
}

/// One entry of a job's append-only audit trail.
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct JobEvent {
    pub id: i64,
    pub job_id: Uuid,
    pub at: DateTime<Utc>,
    pub from_status: Option<JobStatus>,
    pub to_status: JobStatus,
    pub attempt: u32,
    pub worker: Option<String>,
    pub message: String,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn file_status_follows_jobs() {
        use JobStatus::*;
        assert_eq!(AudioStatus::derive([Queued, Pending]), AudioStatus::Queued);
        assert_eq!(
            AudioStatus::derive([Running, Pending]),
            AudioStatus::Processing
        );
        assert_eq!(
            AudioStatus::derive([Completed, Queued]),
            AudioStatus::Processing
        );
        assert_eq!(
            AudioStatus::derive([Completed, Completed]),
            AudioStatus::Completed
        );
        assert_eq!(AudioStatus::derive([Failed, Pending]), AudioStatus::Failed);
        assert_eq!(
            AudioStatus::derive([Cancelled, Cancelled]),
            AudioStatus::Cancelled
        );
    }

    #[test]
    fn processing_waits_for_both_earlier_stages() {
        use JobType::*;
        assert!(Transcription.depends_on().is_empty());
        assert!(Diarization.depends_on().is_empty());
        assert!(Processing.waits_for(Transcription) && Processing.waits_for(Diarization));
        assert!(!Diarization.waits_for(Transcription));
        // Pipeline order is the order jobs are listed in.
        assert!(Transcription < Diarization && Diarization < Processing);
        assert_eq!(
            JobType::from_task_name("pipeline.diarize"),
            Some(Diarization)
        );
        assert_eq!(JobType::from_task_name("pipeline.ingest"), None);
    }

    #[test]
    fn names_round_trip() {
        for t in JobType::ALL {
            assert_eq!(t.as_str().parse::<JobType>(), Ok(t));
            assert_eq!(JobType::from_task_name(t.task_name()), Some(t));
        }
        assert!("nope"
            .parse::<AudioStatus>()
            .unwrap_err()
            .to_string()
            .contains("\"nope\""));
    }
}
