//! How files and jobs look to people (the seed's layout) and to scripts (JSON).

use pipeline_core::{AudioFile, ChunkCounts, JobError, JobStatus, ProcessingJob};
use pipeline_store::AudioResults;
use serde_json::{json, Value};
use std::collections::HashMap;

use crate::style::{json_time, seed_time, Style};

/// A job as `jobs --json` and `check-status --json` print it.
pub fn job_json(job: &ProcessingJob) -> Value {
    json!({
        "id": job.id,
        "job_type": job.job_type.as_str(),
        "status": job.status.as_str(),
        "progress": round1(job.progress),
        "task_id": job.task_id,
        "attempt": job.attempt,
        "max_attempts": job.max_attempts,
        "lost_leases": job.lost_leases,
        "worker": job.worker,
        "error": job.error.as_ref().map(error_json),
        "cancel_requested": job.cancel_requested,
        "created_at": json_time(job.created_at),
        "started_at": job.started_at.map(json_time),
        "completed_at": job.completed_at.map(json_time),
    })
}

/// Chunk counts of the jobs that were cut into chunks, by job id.
pub type Chunks = HashMap<uuid::Uuid, ChunkCounts>;

/// [`job_json`] with `chunks_total` and `chunks_done` (0 for a job that
/// was not cut into chunks).
pub fn job_json_with(job: &ProcessingJob, chunks: &Chunks) -> Value {
    let mut doc = job_json(job);
    let counts = chunks.get(&job.id).copied().unwrap_or_default();
    doc["chunks_total"] = json!(counts.total);
    doc["chunks_done"] = json!(counts.done);
    doc
}

/// An error as `--json` prints it: `{"kind", "message"}`.
pub fn error_json(error: &JobError) -> Value {
    json!({"kind": error.kind.as_str(), "message": error.message})
}

/// Why a file failed: the error of its failed job that did not fail only
/// because a job it waited for did (PROCESSING's "TRANSCRIPTION failed"),
/// else of its first failed job; `None` unless a job failed with an error.
pub fn file_error(jobs: &[ProcessingJob]) -> Option<&JobError> {
    let failed = |j: &&ProcessingJob| j.status == JobStatus::Failed && j.error.is_some();
    let cause = jobs.iter().filter(failed).find(|job| {
        !jobs
            .iter()
            .filter(failed)
            .any(|before| job.job_type.waits_for(before.job_type))
    });
    cause
        .or_else(|| jobs.iter().find(failed))
        .and_then(|job| job.error.as_ref())
}

/// One audit trail entry for JSON output.
pub fn event_json(event: &pipeline_core::JobEvent) -> Value {
    json!({
        "job_id": event.job_id,
        "at": json_time(event.at),
        "from_status": event.from_status.map(|s| s.as_str()),
        "to_status": event.to_status.as_str(),
        "attempt": event.attempt,
        "worker": event.worker,
        "message": event.message,
    })
}

/// An audio file's fields for JSON output, with `"error"` (`{"kind",
/// "message"}`, see [`file_error`]) when it FAILED, else null.
pub fn audio_json(audio: &AudioFile, jobs: &[ProcessingJob]) -> Value {
    let error = match audio.status {
        pipeline_core::AudioStatus::Failed => file_error(jobs).map(error_json),
        _ => None,
    };
    json!({
        "id": audio.id,
        "original_name": audio.original_name,
        "sha256": audio.sha256,
        "size_bytes": audio.size_bytes,
        "container": audio.container,
        "codec": audio.codec,
        "duration_seconds": audio.duration_seconds,
        "sample_rate": audio.sample_rate,
        "channels": audio.channels,
        "storage_key": audio.storage_key,
        "status": audio.status.as_str(),
        "options": audio.options,
        "error": error,
        "created_at": json_time(audio.created_at),
        "updated_at": json_time(audio.updated_at),
    })
}

/// Counts of a file's jobs.
pub struct Tally {
    pub total: usize,
    pub completed: usize,
    pub failed: usize,
    pub cancelled: usize,
}

impl Tally {
    /// Counts `jobs` by outcome.
    pub fn of(jobs: &[ProcessingJob]) -> Self {
        Self {
            total: jobs.len(),
            completed: jobs
                .iter()
                .filter(|j| j.status == JobStatus::Completed)
                .count(),
            failed: jobs
                .iter()
                .filter(|j| j.status == JobStatus::Failed)
                .count(),
            cancelled: jobs
                .iter()
                .filter(|j| j.status == JobStatus::Cancelled)
                .count(),
        }
    }

    /// Completed jobs as a percentage of all jobs.
    pub fn percent(&self) -> f64 {
        if self.total == 0 {
            0.0
        } else {
            100.0 * self.completed as f64 / self.total as f64
        }
    }
}

/// `jobs --json`.
pub fn jobs_json(audio_id: uuid::Uuid, jobs: &[ProcessingJob], chunks: &Chunks) -> Value {
    let tally = Tally::of(jobs);
    json!({
        "audio_id": audio_id,
        "total_jobs": tally.total,
        "completed": tally.completed,
        "failed": tally.failed,
        "cancelled": tally.cancelled,
        "progress_percent": round1(tally.percent()),
        "jobs": jobs.iter().map(|j| job_json_with(j, chunks)).collect::<Vec<_>>(),
    })
}

/// The seed's `jobs` report.
pub fn jobs_text(
    style: &Style,
    audio_id: uuid::Uuid,
    jobs: &[ProcessingJob],
    chunks: &Chunks,
) -> String {
    let tally = Tally::of(jobs);
    let mut out = String::new();
    out.push_str(&format!("=== Job Progress for {audio_id} ===\n"));
    out.push_str(&format!("Total Jobs: {}\n", tally.total));
    out.push_str(&format!("Completed: {}\n", tally.completed));
    out.push_str(&format!("Failed: {}\n", tally.failed));
    if tally.cancelled > 0 {
        out.push_str(&format!("Cancelled: {}\n", tally.cancelled));
    }
    out.push_str(&format!(
        "Progress: {}/{} ({:.1}%)\n",
        tally.completed,
        tally.total,
        tally.percent()
    ));
    out.push_str(&job_details_section(style, jobs, chunks));
    out
}

/// The seed's `=== Job Details ===` section: one block per job.
fn job_details_section(style: &Style, jobs: &[ProcessingJob], chunks: &Chunks) -> String {
    let blocks: Vec<String> = jobs
        .iter()
        .map(|job| job_details(style, job, chunks.get(&job.id).copied()))
        .collect();
    format!("\n=== Job Details ===\n{}", blocks.join("\n"))
}

/// One job's block of the seed's `jobs` report.
pub fn job_details(style: &Style, job: &ProcessingJob, chunks: Option<ChunkCounts>) -> String {
    let mut out = style.job(job.status, &format!("{} - {}", job.job_type, job.status));
    out.push('\n');
    out.push_str(&format!("   ID: {}\n", job.id));
    if matches!(job.status, JobStatus::Running | JobStatus::Retrying) {
        out.push_str(&format!("   Progress: {:.0}%\n", job.progress.floor()));
    }
    if let Some(chunks) = chunks.filter(|c| c.total > 0) {
        out.push_str(&format!(
            "   Chunks: {}/{} done\n",
            chunks.done, chunks.total
        ));
    }
    if job.attempt > 1 || job.status == JobStatus::Retrying {
        out.push_str(&format!(
            "   Attempt: {}/{}\n",
            job.attempt, job.max_attempts
        ));
    }
    if let Some(started) = job.started_at {
        out.push_str(&format!("   Started: {}\n", seed_time(started)));
    }
    if let Some(completed) = job.completed_at {
        let label = match job.status {
            JobStatus::Completed => "Completed",
            JobStatus::Failed => "Failed",
            JobStatus::Cancelled => "Cancelled",
            _ => "Ended",
        };
        out.push_str(&format!("   {label}: {}\n", seed_time(completed)));
    }
    if job.status == JobStatus::Retrying {
        out.push_str(&format!(
            "   Next attempt: {}\n",
            seed_time(job.available_at)
        ));
    }
    if job.cancel_requested && !job.status.is_final() {
        out.push_str("   Cancel requested\n");
    }
    if let Some(error) = &job.error {
        out.push_str(&format!("   Error: {}\n", error.message));
    }
    out
}

/// The `check-status` report.
pub fn status_text(
    style: &Style,
    audio: &AudioFile,
    jobs: &[ProcessingJob],
    chunks: &Chunks,
    results: Option<&AudioResults>,
) -> String {
    let mut out = format!("=== Status for {} ===\n", audio.id);
    out.push_str(&format!("File: {}\n", audio.original_name));
    out.push_str(&format!("Status: {}\n", audio.status));
    out.push_str(&format!(
        "Audio: {} / {}, {:.1} s, {} Hz, {} channel(s), {} bytes\n",
        audio.container,
        audio.codec,
        audio.duration_seconds,
        audio.sample_rate,
        audio.channels,
        audio.size_bytes
    ));
    out.push_str(&format!("SHA-256: {}\n", audio.sha256));
    out.push_str(&format!("Created: {}\n", seed_time(audio.created_at)));
    out.push_str(&format!("Updated: {}\n", seed_time(audio.updated_at)));
    let tally = Tally::of(jobs);
    out.push_str(&format!(
        "Progress: {}/{} ({:.1}%)\n",
        tally.completed,
        tally.total,
        tally.percent()
    ));
    out.push_str(&job_details_section(style, jobs, chunks));
    if let Some(results) = results {
        out.push_str("\n=== Outputs ===\n");
        for (format, path) in &results.outputs {
            out.push_str(&format!("{format}: {path}\n"));
        }
        out.push_str(&format!(
            "Words: {}, speech: {:.1} s, {:.0} words per minute\n",
            results.words, results.speech_seconds, results.words_per_minute
        ));
    }
    out
}

fn round1(x: f64) -> f64 {
    (x * 10.0).round() / 10.0
}
