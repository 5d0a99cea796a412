//! The end of an attempt: completed (with its results, under the lease
//! guard), failed (to retry or for good), handed back, cancelled; and
//! cancel and retry asked for from outside.

use super::*;

impl Store {
    /// Ends the attempt `worker` holds with the change `end` computes from
    /// the job, in one transaction with its event, the jobs that wait on it
    /// (moved to the status `end` names, if any), the stage's results and
    /// the file's status.
    pub(super) async fn end_attempt(
        &self,
        held: &Lease,
        output: StageOutput<'_>,
        end: impl FnOnce(&ProcessingJob, DateTime<Utc>) -> (ProcessingJob, String, Option<JobStatus>),
    ) -> Result<Ended, StoreError> {
        let now = self.now().await?;
        let mut tx = self.pool.begin().await?;
        let (mut jobs, outbox) = lock_jobs(&mut tx, self.outbox, held.audio_id).await?;
        let old = held_by(&jobs, held.job_id, &held.worker, held.attempt)?;
        let (new, message, dependents) = end(old, now);
        write_transition(&mut tx, outbox, old, &new, Some(&held.worker), &message).await?;
        let mut moved = match dependents {
            Some(to) => settle_dependents(&mut tx, outbox, &jobs, old.job_type, to, now).await?,
            None => Vec::new(),
        };
        moved.push(new.clone());
        replace_moved(&mut jobs, &moved);
        // Under the same lock and guard as the job row: a worker that lost
        // its lease writes nothing at all.
        if let Some(results) = output.results {
            write_results(&mut tx, &[(held.audio_id, results)]).await?;
        }
        if let Some(transcript) = output.transcript {
            write_transcript(&mut tx, held.audio_id, transcript).await?;
        }
        if let Some(diarization) = output.diarization {
            write_diarization(&mut tx, held.audio_id, diarization).await?;
        }
        // The file's jobs are locked, so their statuses are known here.
        write_audio_status(
            &mut tx,
            outbox,
            held.audio_id,
            AudioStatus::derive(jobs.iter().map(|j| j.status)),
        )
        .await?;
        tx.commit().await?;
        Ok(Ended {
            job: new,
            file_jobs: jobs,
        })
    }

    /// Marks the holder's attempt COMPLETED and queues the jobs waiting on it.
    pub async fn complete(&self, held: &Lease, message: &str) -> Result<ProcessingJob, StoreError> {
        Ok(self.complete_with(held, message, None).await?.job)
    }

    /// Marks the holder's attempt COMPLETED with the results its stage made
    /// (stored in the same transaction) and queues the jobs waiting on it.
    pub async fn complete_with(
        &self,
        held: &Lease,
        message: &str,
        results: Option<&AudioResults>,
    ) -> Result<Ended, StoreError> {
        let output = StageOutput {
            results,
            ..StageOutput::default()
        };
        self.complete_with_output(held, message, output).await
    }

    /// Marks the holder's TRANSCRIPTION COMPLETED and stores its transcript
    /// in the same transaction, only while the lease is still the holder's.
    pub async fn complete_with_transcript(
        &self,
        held: &Lease,
        message: &str,
        transcript: &Transcript,
    ) -> Result<Ended, StoreError> {
        let output = StageOutput {
            transcript: Some(transcript),
            ..StageOutput::default()
        };
        self.complete_with_output(held, message, output).await
    }

    /// Marks the holder's DIARIZATION COMPLETED and stores its speaker
    /// turns in the same transaction, only while the lease is still the
    /// holder's.
    pub async fn complete_with_diarization(
        &self,
        held: &Lease,
        message: &str,
        diarization: &Diarization,
    ) -> Result<Ended, StoreError> {
        let output = StageOutput {
            diarization: Some(diarization),
            ..StageOutput::default()
        };
        self.complete_with_output(held, message, output).await
    }

    /// Marks the holder's attempt COMPLETED with everything its stage left
    /// behind, in one transaction, only while the lease is still the
    /// holder's; queues the jobs that wait on it once all they wait for
    /// has completed.
    pub async fn complete_with_output(
        &self,
        held: &Lease,
        message: &str,
        output: StageOutput<'_>,
    ) -> Result<Ended, StoreError> {
        self.end_attempt(held, output, |old, now| {
            let mut new = old.clone();
            new.status = JobStatus::Completed;
            new.progress = 100.0;
            new.completed_at = Some(now);
            new.lease_expires_at = None;
            new.error = None;
            (new, message.to_string(), Some(JobStatus::Queued))
        })
        .await
    }

    /// Ends the holder's attempt with an error: RETRYING until `retry_at`
    /// when given, else FAILED (and the jobs waiting on it fail too).
    pub async fn fail(
        &self,
        held: &Lease,
        error: &JobError,
        retry_at: Option<DateTime<Utc>>,
    ) -> Result<ProcessingJob, StoreError> {
        self.end_attempt(held, StageOutput::default(), |old, now| {
            let mut new = old.clone();
            new.error = Some(error.clone());
            new.lease_expires_at = None;
            match retry_at {
                Some(at) => {
                    new.status = JobStatus::Retrying;
                    new.available_at = at;
                    let message = format!(
                        "attempt {} of {} failed: {}; retrying at {}",
                        old.attempt,
                        old.max_attempts,
                        error.message,
                        ts(at)
                    );
                    (new, message, None)
                }
                None => {
                    new.status = JobStatus::Failed;
                    new.completed_at = Some(now);
                    (new, format!("failed: {error}"), Some(JobStatus::Failed))
                }
            }
        })
        .await
        .map(|ended| ended.job)
    }

    /// Hands a running job back to the queue (a worker shutting down): the
    /// attempt is not counted.
    pub async fn release(&self, held: &Lease, message: &str) -> Result<ProcessingJob, StoreError> {
        self.end_attempt(held, StageOutput::default(), |old, now| {
            let mut new = old.clone();
            new.status = JobStatus::Queued;
            new.attempt = old.attempt.saturating_sub(1);
            new.worker = None;
            new.lease_expires_at = None;
            new.available_at = now;
            (new, message.to_string(), None)
        })
        .await
        .map(|ended| ended.job)
    }

    /// The holder stops a job whose cancellation was requested.
    pub async fn cancel_running(&self, held: &Lease) -> Result<ProcessingJob, StoreError> {
        self.end_attempt(held, StageOutput::default(), |old, now| {
            let mut new = old.clone();
            new.status = JobStatus::Cancelled;
            new.completed_at = Some(now);
            new.lease_expires_at = None;
            let message = "cancelled while running".to_string();
            (new, message, Some(JobStatus::Cancelled))
        })
        .await
        .map(|ended| ended.job)
    }

    /// Cancels a file's unfinished jobs (or one job and those waiting on
    /// it): waiting ones at once, running ones at their next progress point.
    pub async fn cancel(
        &self,
        audio_id: Uuid,
        only_job: Option<Uuid>,
    ) -> Result<Vec<ProcessingJob>, StoreError> {
        let mut tx = self.pool.begin().await?;
        let (jobs, outbox) = lock_jobs(&mut tx, self.outbox, audio_id).await?;
        let mut changed = Vec::new();
        let targets = match only_job {
            Some(id) if jobs.iter().any(|j| j.id == id) => Some(with_dependents(&jobs, [id])),
            Some(id) => return Err(StoreError::NotFound { what: "job", id }),
            None => None,
        };
        for old in &jobs {
            if targets.as_ref().is_some_and(|t| !t.contains(&old.id)) || old.status.is_final() {
                continue;
            }
            let mut new = old.clone();
            let message = if old.status == JobStatus::Running {
                if old.cancel_requested {
                    continue;
                }
                new.cancel_requested = true;
                "cancel requested; the worker stops at its next progress point"
            } else {
                new.status = JobStatus::Cancelled;
                new.completed_at = Some(Utc::now());
                "cancelled"
            };
            write_transition(&mut tx, outbox, old, &new, None, message).await?;
            changed.push(new);
        }
        refresh_audio_status(&mut tx, outbox, audio_id).await?;
        tx.commit().await?;
        Ok(changed)
    }

    /// Runs a file's failed or cancelled jobs again (or one job), with the
    /// jobs that wait for them, with fresh attempts. A job whose
    /// prerequisites have all completed is queued; the others wait.
    pub async fn retry(
        &self,
        audio_id: Uuid,
        only_job: Option<Uuid>,
    ) -> Result<Vec<ProcessingJob>, StoreError> {
        let now = self.now().await?;
        let mut tx = self.pool.begin().await?;
        let (jobs, outbox) = lock_jobs(&mut tx, self.outbox, audio_id).await?;
        let roots: Vec<Uuid> = match only_job {
            Some(id) if jobs.iter().any(|j| j.id == id) => vec![id],
            Some(id) => return Err(StoreError::NotFound { what: "job", id }),
            None => jobs
                .iter()
                .filter(|j| matches!(j.status, JobStatus::Failed | JobStatus::Cancelled))
                .map(|j| j.id)
                .collect(),
        };
        if roots.is_empty() {
            return Ok(Vec::new());
        }
        // Only ended jobs start again; one still running keeps its attempt.
        let again: BTreeSet<Uuid> = with_dependents(&jobs, roots)
            .into_iter()
            .filter(|id| jobs.iter().any(|j| j.id == *id && j.status.is_final()))
            .collect();
        let mut changed = Vec::new();
        for old in jobs.iter().filter(|j| again.contains(&j.id)) {
            let ready = prerequisites(&jobs, old)
                .all(|p| p.status == JobStatus::Completed && !again.contains(&p.id));
            let mut new = old.clone();
            new.status = if ready {
                JobStatus::Queued
            } else {
                JobStatus::Pending
            };
            new.attempt = 0;
            new.progress = 0.0;
            new.error = None;
            new.worker = None;
            new.cancel_requested = false;
            new.available_at = now;
            new.started_at = None;
            new.completed_at = None;
            write_transition(&mut tx, outbox, old, &new, None, "retried by user").await?;
            if old.job_type == JobType::Transcription {
                crate::chunks::requeue_unfinished(&mut tx, old.id).await?;
            }
            changed.push(new);
        }
        refresh_audio_status(&mut tx, outbox, audio_id).await?;
        tx.commit().await?;
        Ok(changed)
    }
}
