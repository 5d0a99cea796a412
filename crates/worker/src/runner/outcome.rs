//! What follows a job's stage: its outcome recorded under its lease (the
//! completions of a batch in one transaction), the jobs it released sent,
//! the result backend told; and `pipeline.ingest` tasks, which take a file
//! in as `process --detach` would.

use super::*;

impl Worker {
    /// After a job's outcome is committed: sends the jobs it released (the
    /// next stage, or itself to retry or after a shutdown) and tells the
    /// result backend. A crash in between loses nothing: a runnable job
    /// whose message was not sent is sent by the broker's sweep.
    pub(super) async fn announce_outcome(&self, job: &ProcessingJob, recorded: Recorded) {
        let span = job_span(job, &self.settings.id);
        self.announce_in_span(job, recorded).instrument(span).await
    }

    async fn announce_in_span(&self, job: &ProcessingJob, recorded: Recorded) {
        // The embedded queue has nothing to send: without a result backend
        // there is nothing to announce.
        if self.queue.name() == "embedded" && self.results.is_none() {
            return;
        }
        let known = match recorded {
            Recorded::Written(known) => known,
            Recorded::NotWritten => None,
        };
        let now = match known {
            Some(file_jobs) => file_jobs,
            None => self
                .store
                .jobs_for_audio(job.audio_id)
                .await
                .unwrap_or_default(),
        };
        let released: Vec<ProcessingJob> = now
            .iter()
            .filter(|j| {
                matches!(
                    j.status,
                    pipeline_core::JobStatus::Queued | pipeline_core::JobStatus::Retrying
                ) && (j.id == job.id || j.job_type.waits_for(job.job_type))
            })
            .cloned()
            .collect();
        // A job handed back at shutdown is sent again too: its message was
        // acknowledged when it was claimed.
        if !released.is_empty() {
            match self.queue.dispatch(&released).await {
                Ok(d) => {
                    if let Some(reason) = d.fell_back {
                        tracing::warn!(%reason, "the next jobs went to the embedded queue");
                    }
                }
                Err(e) => tracing::warn!(error = %e, "could not dispatch the next jobs"),
            }
        }
        if let Some(this) = now.iter().find(|j| j.id == job.id) {
            let why = || {
                this.error
                    .as_ref()
                    .map(|e| e.message.clone())
                    .unwrap_or_default()
            };
            let state = match this.status {
                pipeline_core::JobStatus::Completed => {
                    Some(TaskState::Success(serde_json::json!({
                        "audio_id": job.audio_id.to_string(),
                        "job_id": job.id.to_string(),
                        "job_type": job.job_type.as_str(),
                        "status": "COMPLETED",
                    })))
                }
                pipeline_core::JobStatus::Retrying => Some(TaskState::Retry { message: why() }),
                pipeline_core::JobStatus::Failed => Some(TaskState::Failure { message: why() }),
                pipeline_core::JobStatus::Cancelled => Some(TaskState::Revoked {
                    message: "cancelled".into(),
                }),
                _ => None,
            };
            if let Some(state) = state {
                self.report(&job.task_id, state).await;
            }
        }
    }

    /// Runs a `pipeline.ingest` task: the file is taken in and its jobs
    /// created and dispatched, as `process --detach` would.
    pub(super) async fn ingest(&self, task: IngestTask) {
        self.report(
            &task.task_id,
            TaskState::Started {
                worker: self.settings.id.clone(),
            },
        )
        .await;
        let outcome = pipeline_ingest::ingest_task(
            &self.store,
            self.queue.as_ref(),
            &self.storage,
            &task.kwargs,
            &self.settings.ingest_defaults,
            &self.settings.ingest_roots,
            self.settings.max_attempts,
        )
        .await;
        let state = match outcome {
            Ok(ingested) => match &ingested.rejected {
                None => TaskState::Success(serde_json::json!({
                    "audio_id": ingested.audio.id.to_string(),
                    "job_ids": ingested.jobs.iter().map(|j| j.id.to_string()).collect::<Vec<_>>(),
                    "task_ids": ingested.jobs.iter().map(|j| j.task_id.clone()).collect::<Vec<_>>(),
                    "deduplicated": ingested.deduplicated,
                })),
                Some(reason) => TaskState::Failure {
                    message: format!(
                        "{}: {reason} (recorded as FAILED audio {})",
                        ingested.audio.original_name, ingested.audio.id
                    ),
                },
            },
            // A service that was down may be back soon: the task is
            // delivered again rather than lost.
            Err(e) if e.is_retryable() => {
                tracing::warn!(
                    task_id = task.task_id,
                    error = %e,
                    "ingest task failed; delivered again in {} s",
                    INGEST_RETRY.as_secs()
                );
                TaskState::Retry {
                    message: e.to_string(),
                }
            }
            Err(e) => {
                tracing::error!(task_id = task.task_id, error = %e, "ingest task failed");
                TaskState::Failure {
                    message: e.to_string(),
                }
            }
        };
        let how = if matches!(state, TaskState::Retry { .. }) {
            Settle::RequeueAfter(INGEST_RETRY)
        } else {
            Settle::Ack
        };
        self.report(&task.task_id, state).await;
        if let Err(e) = self.queue.settle(&task.task_id, how).await {
            tracing::warn!(task_id = task.task_id, error = %e, "could not settle the task");
        }
    }

    /// Writes the outcomes of jobs run together: their completions in one
    /// transaction, and anything else (or everything, if that transaction
    /// fails) one by one.
    pub(super) async fn record_all(
        &self,
        finished: &[(ProcessingJob, Result<StageDone, StageError>)],
    ) -> Vec<Recorded> {
        let mut recorded: Vec<Option<Recorded>> = finished.iter().map(|_| None).collect();
        let leases: Vec<(usize, Lease)> = finished
            .iter()
            .enumerate()
            .filter(|(_, (_, outcome))| {
                outcome
                    .as_ref()
                    .is_ok_and(|done| done.transcript.is_none() && done.diarization.is_none())
            })
            .map(|(i, (job, _))| (i, Lease::of(job)))
            .collect();
        if leases.len() > 1 {
            let completions: Vec<Completion> = leases
                .iter()
                .filter_map(|(i, held)| {
                    let done = finished[*i].1.as_ref().ok()?;
                    Some(Completion {
                        held,
                        message: &done.message,
                        results: done.results.as_ref(),
                    })
                })
                .collect();
            if let Ok(ended) = self.store.complete_all(&completions).await {
                for ((i, _), ended) in leases.iter().zip(ended) {
                    recorded[*i] = Some(Recorded::Written(Some(ended.file_jobs)));
                }
            }
        }
        let mut all = Vec::with_capacity(finished.len());
        for ((job, outcome), done) in finished.iter().zip(recorded) {
            all.push(match done {
                Some(done) => done,
                None => self.record(job, &Lease::of(job), outcome).await,
            });
        }
        all
    }

    /// Writes a job's outcome, retrying database blips: if it cannot be
    /// written at all, the lease expires and another worker runs the job.
    async fn record(
        &self,
        job: &ProcessingJob,
        held: &Lease,
        outcome: &Result<StageDone, StageError>,
    ) -> Recorded {
        for round in 1..=5u32 {
            let result = match outcome {
                Ok(done) => {
                    let output = StageOutput {
                        results: done.results.as_ref(),
                        transcript: done.transcript.as_ref(),
                        diarization: done.diarization.as_ref(),
                    };
                    let ended = self
                        .store
                        .complete_with_output(held, &done.message, output)
                        .await;
                    match ended {
                        Ok(ended) => return Recorded::Written(Some(ended.file_jobs)),
                        Err(e) => Err(e),
                    }
                }
                Err(StageError::Interrupted(Interruption::LeaseLost)) => Ok(()),
                Err(StageError::Interrupted(Interruption::Cancelled)) => {
                    self.store.cancel_running(held).await.map(|_| ())
                }
                Err(StageError::Interrupted(Interruption::Shutdown)) => self
                    .store
                    .release(held, "handed back: worker shutting down")
                    .await
                    .map(|_| ()),
                Err(StageError::Interrupted(Interruption::TimedOut)) => {
                    let error = JobError::retryable(format!(
                        "timed out after {} s",
                        self.settings.job_timeout.as_secs()
                    ));
                    self.fail(job, held, &error).await
                }
                Err(StageError::Failed(error)) => self.fail(job, held, error).await,
            };
            match result {
                Ok(()) => return Recorded::Written(None),
                // Someone else owns the job now (lease expired, reclaimed).
                Err(StoreError::Conflict { .. }) => return Recorded::Written(None),
                Err(e) if e.is_retryable() => {
                    tokio::time::sleep(backoff(
                        round,
                        Duration::from_millis(200),
                        Duration::from_secs(3),
                    ))
                    .await;
                }
                Err(_) => return Recorded::NotWritten,
            }
        }
        Recorded::NotWritten
    }

    async fn fail(
        &self,
        job: &ProcessingJob,
        held: &Lease,
        error: &JobError,
    ) -> Result<(), StoreError> {
        // Retry times are compared with the database's clock by every worker.
        let now = self.store.now().await?;
        let retry_at = (error.kind == pipeline_core::ErrorKind::Retryable
            && job.failed_attempts() < job.max_attempts)
            .then(|| {
                let wait = backoff(
                    job.attempt,
                    self.settings.retry_base,
                    self.settings.retry_max,
                );
                now + chrono::Duration::from_std(wait).unwrap_or(chrono::Duration::seconds(1))
            });
        self.store.fail(held, error, retry_at).await.map(|_| ())
    }
}
