//! Sending: jobs out as messages (a file's later stages kept for the
//! worker that made them runnable), a Redis that forgot its messages sent
//! them again, and the sweep that puts back dead workers' jobs and sends
//! what was never sent.

use super::*;

impl Inner {
    pub(super) async fn publish(
        &self,
        queue: &str,
        messages: &[TaskMessage],
    ) -> Result<(), QueueError> {
        match &self.transport {
            Transport::Amqp(t) => t.publish(queue, messages).await,
            Transport::Redis(t) => t.publish(queue, messages).await,
        }
    }

    /// The message that tells workers `job` can run.
    pub(super) fn message_for(job: &ProcessingJob) -> TaskMessage {
        let mut kwargs = Map::new();
        kwargs.insert("audio_id".into(), json!(job.audio_id.to_string()));
        kwargs.insert("job_id".into(), json!(job.id.to_string()));
        let mut message = TaskMessage::new(job.job_type.task_name(), &job.task_id, kwargs);
        if job.available_at > Utc::now() {
            message.eta = Some(job.available_at);
        }
        message.retries = job.attempt;
        message
    }

    /// One `pipeline.transcribe_chunk` message per chunk. A message that
    /// cannot be sent costs only time: the job's holder, and every idle
    /// worker looking at the table, take the chunk anyway.
    pub(super) async fn dispatch_chunks(
        &self,
        job: &ProcessingJob,
        chunks: &[Chunk],
    ) -> Result<(), QueueError> {
        if chunks.is_empty() || self.broker_down().is_some() {
            return Ok(());
        }
        let messages: Vec<TaskMessage> = chunks
            .iter()
            .map(|chunk| {
                let mut kwargs = Map::new();
                kwargs.insert("audio_id".into(), json!(job.audio_id.to_string()));
                kwargs.insert("job_id".into(), json!(job.id.to_string()));
                kwargs.insert("index".into(), json!(chunk.index));
                kwargs.insert("start".into(), json!(chunk.start));
                kwargs.insert("end".into(), json!(chunk.end));
                TaskMessage::new(CHUNK_TASK, &Uuid::new_v4().to_string(), kwargs)
            })
            .collect();
        if let Err(e) = self.publish(&self.settings.queue, &messages).await {
            log(&format!(
                "could not send the chunk messages of job {}: {e}",
                job.id
            ));
        }
        Ok(())
    }

    /// Dispatches after making sure the broker still holds what was sent
    /// before (see [`Inner::check_epoch`]).
    pub(super) async fn dispatch(&self, jobs: &[ProcessingJob]) -> Result<Dispatched, QueueError> {
        let jobs = self.keep_local(jobs);
        if jobs.is_empty() {
            return Ok(Dispatched::default());
        }
        if self.broker_down().is_none() {
            match self.check_epoch().await {
                // Every waiting job, these included, was just sent.
                Ok(true) => return Ok(Dispatched::default()),
                Ok(false) => {}
                Err(e) => self.mark_down(&e.to_string()),
            }
        }
        self.dispatch_jobs(&jobs).await
    }

    /// Keeps back the later stages (a file's PROCESSING) that this worker
    /// made runnable and claims itself: its next claim takes them before
    /// any message, so each file completes as soon as its transcription
    /// does instead of behind every transcription queued before it (a
    /// broker's queue is first in, first out). They are sent no message:
    /// should this worker die or stay busy, the sweep of any worker sends
    /// one once they have waited [`UNSENT_GRACE`]. The rest is returned.
    pub(super) fn keep_local(&self, jobs: &[ProcessingJob]) -> Vec<ProcessingJob> {
        let Some((_, types)) = self.consumer.lock().ok().and_then(|c| c.clone()) else {
            return jobs.to_vec();
        };
        let Ok(mut local) = self.local.lock() else {
            return jobs.to_vec();
        };
        // Due times are the database's clock, which may run a little
        // ahead of this machine's.
        let soon = Utc::now() + chrono::Duration::seconds(1);
        let mut rest = Vec::new();
        for job in jobs {
            let keep = job.transport == self.name
                && job.status == JobStatus::Queued
                && !job.job_type.depends_on().is_empty()
                && job.available_at <= soon
                && (types.is_empty() || types.contains(&job.job_type))
                && local.len() < LOCAL_MAX;
            if keep {
                local.push_back(job.id);
            } else {
                rest.push(job.clone());
            }
        }
        rest
    }

    /// Claims the later stages kept back by [`Inner::keep_local`]; what
    /// another worker took meanwhile (after the sweep sent it) is skipped.
    pub(super) async fn claim_local(
        &self,
        worker: &str,
        lease: Duration,
        max: usize,
    ) -> Result<Vec<Work>, QueueError> {
        let ids: Vec<Uuid> = match self.local.lock() {
            Ok(mut local) => {
                let n = local.len().min(max);
                local.drain(..n).collect()
            }
            Err(_) => return Ok(Vec::new()),
        };
        if ids.is_empty() {
            return Ok(Vec::new());
        }
        let claims = match self.store.claim_jobs(&ids, worker, lease).await {
            Ok(claims) => claims,
            Err(e) => {
                // Left to the sweep, which sends their messages.
                log(&format!("could not claim {} next stages: {e}", ids.len()));
                return Ok(Vec::new());
            }
        };
        Ok(claims
            .into_iter()
            .filter_map(|claim| match claim {
                JobClaim::Claimed(job) => Some(Work::Job(job)),
                _ => None,
            })
            .collect())
    }

    /// Why the broker is skipped for now, after a recent failure.
    pub(super) fn broker_down(&self) -> Option<String> {
        self.down_until
            .lock()
            .ok()
            .and_then(|d| d.clone())
            .filter(|(until, _)| Instant::now() < *until)
            .map(|(_, reason)| reason)
    }

    pub(super) fn mark_down(&self, reason: &str) {
        if let Ok(mut down) = self.down_until.lock() {
            *down = Some((Instant::now() + Duration::from_secs(10), reason.to_string()));
        }
    }

    /// A Redis without persistence forgets every message when it restarts.
    /// A marker key lives as long as the server's memory: whoever finds it
    /// gone sets it and sends every waiting job again (duplicates are
    /// harmless; the database decides who runs a job).
    /// The marker is per database, so deployments sharing a Redis each
    /// resend their own jobs. True when the jobs were sent again.
    pub(super) async fn check_epoch(&self) -> Result<bool, QueueError> {
        let Transport::Redis(transport) = &self.transport else {
            return Ok(false);
        };
        let marker = format!("pipeline:broker-alive:{}", self.store_identity);
        if transport
            .claim_marker(&marker, Duration::from_secs(10 * 365 * 86_400))
            .await?
        {
            let sent = self.redispatch_waiting().await?;
            if sent > 0 {
                log(&format!(
                    "the broker had no record of {sent} waiting jobs; sent them again"
                ));
            }
            return Ok(true);
        }
        Ok(false)
    }

    pub(super) async fn dispatch_jobs(
        &self,
        jobs: &[ProcessingJob],
    ) -> Result<Dispatched, QueueError> {
        // A retry that is not due yet is sent by the sweep when it is: its
        // message would otherwise pin a prefetch slot for the whole backoff.
        // Due times are the database's clock; without it (the database is
        // down) this machine's is close enough to decide what to send now.
        let now = self.store.now().await.unwrap_or_else(|_| Utc::now());
        let soon = now + chrono::Duration::seconds(1);
        let mine: Vec<&ProcessingJob> = jobs
            .iter()
            .filter(|j| {
                j.transport == self.name
                    && matches!(j.status, JobStatus::Queued | JobStatus::Retrying)
                    && j.available_at <= soon
            })
            .collect();
        if mine.is_empty() {
            return Ok(Dispatched::default());
        }
        let failure = match self.broker_down() {
            Some(reason) => Some(reason),
            None => {
                let messages: Vec<TaskMessage> =
                    mine.iter().map(|j| Self::message_for(j)).collect();
                match self.publish(&self.settings.queue, &messages).await {
                    Ok(()) => {
                        let ids: Vec<Uuid> = mine.iter().map(|j| j.id).collect();
                        // Unrecorded, the sweep sends them once more: harmless.
                        if let Err(e) = self.store.mark_dispatched(&ids).await {
                            log(&format!(
                                "could not record {} sent messages: {e}",
                                ids.len()
                            ));
                        }
                        None
                    }
                    Err(e) => {
                        self.mark_down(&e.to_string());
                        Some(e.to_string())
                    }
                }
            }
        };
        match failure {
            // A batch that failed part way may have sent some messages; those
            // jobs are claimed from the table or by their message, whichever
            // comes first, and never run twice.
            Some(reason) => {
                let ids: Vec<Uuid> = mine.iter().map(|j| j.id).collect();
                self.store.fall_back_to_embedded(&ids, &reason).await?;
                Ok(Dispatched {
                    fell_back: Some(reason),
                })
            }
            None => Ok(Dispatched::default()),
        }
    }

    /// Sends every waiting job of this transport again: the broker lost its
    /// messages (a Redis restart without persistence). Duplicates are
    /// harmless: the database decides who runs a job.
    pub(super) async fn redispatch_waiting(&self) -> Result<usize, QueueError> {
        let waiting = self.store.waiting_on_transport(self.name).await?;
        let count = waiting.len();
        self.dispatch_jobs(&waiting).await?;
        Ok(count)
    }

    /// Now and then: put back jobs whose worker died, and send their
    /// messages again (the old one may be gone with the worker's connection).
    pub(super) async fn sweep(&self, lease: Duration) -> Result<(), QueueError> {
        // The broker may be down while the database is not: the claim goes
        // on (jobs may have fallen back to the embedded queue).
        if let Err(e) = self.restore_orphans(lease).await {
            log(&format!("could not look for a dead worker's messages: {e}"));
        }
        if !due(&self.last_sweep, Duration::from_secs(2)) {
            return Ok(());
        }
        let reclaimed = self
            .store
            .reclaim_expired(pipeline_store::Reclaim::Transport(self.name))
            .await?;
        if !reclaimed.is_empty() {
            self.dispatch_jobs(&reclaimed).await?;
        }
        // Runnable for a while with no message sent: the worker that made
        // them runnable died before it published, or they are retries
        // whose time has come.
        let before = self.store.now().await? - UNSENT_GRACE;
        let unsent = self.store.undispatched(self.name, before, 500).await?;
        if !unsent.is_empty() {
            self.dispatch_jobs(&unsent).await?;
        }
        Ok(())
    }

    /// Redis keeps a dead consumer's deliveries in `unacked` until the
    /// visibility timeout (an hour by default), and their jobs, never
    /// claimed, have no lease to expire. The database knows which workers
    /// are alive: the messages our dead workers held go back at once.
    /// (RabbitMQ returns a dead connection's deliveries by itself.)
    pub(super) async fn restore_orphans(&self, lease: Duration) -> Result<(), QueueError> {
        let Transport::Redis(transport) = &self.transport else {
            return Ok(());
        };
        let every = (lease / 4).clamp(Duration::from_secs(1), Duration::from_secs(5));
        if !due(&self.last_orphan_check, every) {
            return Ok(());
        }
        let silent_for = chrono::Duration::from_std(lease).unwrap_or(chrono::Duration::seconds(60));
        let since = self.store.now().await? - silent_for;
        let mut alive: std::collections::HashSet<String> = self
            .store
            .workers_since(since)
            .await?
            .into_iter()
            .map(|w| w.id)
            .collect();
        if let Some((me, _)) = self.consumer.lock().ok().and_then(|c| c.clone()) {
            alive.insert(me);
        }
        let grace = lease.min(Duration::from_secs(10));
        let restored = transport.restore_orphans(&alive, grace).await?;
        if restored > 0 {
            log(&format!(
                "put back {restored} messages held by workers that are gone"
            ));
        }
        Ok(())
    }
}
