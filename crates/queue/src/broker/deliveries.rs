//! Receiving: what becomes of each delivered message (claimed and
//! acknowledged, held until due, handed back to other apps, dead-lettered)
//! and how a held message is settled.

use super::*;

impl Inner {
    pub(super) fn embedded_poll_due(&self) -> bool {
        due(&self.last_embedded_poll, Duration::from_secs(1))
    }

    pub(super) fn hold(&self, task_id: &str, receipt: Receipt) {
        if let Ok(mut held) = self.held.lock() {
            held.entry(task_id.to_string()).or_default().push(receipt);
        }
    }

    pub(super) fn defer(&self, until: DateTime<Utc>, delivery: Delivery) {
        if let Ok(mut deferred) = self.deferred.lock() {
            deferred.push((until, delivery));
        }
    }

    pub(super) fn next_ready(&self) -> Option<Delivery> {
        let mut deferred = self.deferred.lock().ok()?;
        let now = Utc::now();
        let index = deferred.iter().position(|(at, _)| *at <= now)?;
        Some(deferred.swap_remove(index).1)
    }

    pub(super) async fn finish(&self, receipt: Receipt, how: Settle) {
        if let Settle::RequeueAfter(wait) = how {
            if let Ok(mut returning) = self.returning.lock() {
                returning.push((Instant::now() + wait, receipt));
            }
            return;
        }
        match (&self.transport, receipt, how) {
            (Transport::Amqp(_), Receipt::Amqp(acker), Settle::Ack) => {
                amqp::ack(&acker).await;
            }
            (Transport::Amqp(_), Receipt::Amqp(acker), Settle::Requeue) => {
                amqp::requeue(&acker).await;
            }
            (Transport::Redis(t), Receipt::Redis(tag), Settle::Ack) => {
                if let Err(e) = t.ack(&tag).await {
                    log(&format!("could not acknowledge message {tag}: {e}"));
                }
            }
            (Transport::Redis(t), Receipt::Redis(tag), Settle::Requeue) => {
                if let Err(e) = t.requeue(&tag).await {
                    log(&format!("could not hand back message {tag}: {e}"));
                }
            }
            _ => {}
        }
    }

    /// Refuses a message for good: RabbitMQ's dead-letter exchange (when
    /// the operator configured one) or our Redis dead-letter list keeps it.
    pub(super) async fn dead_letter(&self, receipt: Receipt) {
        match (&self.transport, receipt) {
            (Transport::Amqp(_), Receipt::Amqp(acker)) => {
                amqp::reject(&acker).await;
            }
            (Transport::Redis(t), Receipt::Redis(tag)) => {
                if let Err(e) = t.dead_letter(&tag).await {
                    log(&format!("could not dead-letter message {tag}: {e}"));
                }
            }
            _ => {}
        }
    }

    /// Hands back the messages whose time to return has come.
    pub(super) async fn return_due(&self) {
        let due: Vec<Receipt> = {
            let Ok(mut returning) = self.returning.lock() else {
                return;
            };
            let now = Instant::now();
            let (due, later): (Vec<_>, Vec<_>) =
                returning.drain(..).partition(|(at, _)| *at <= now);
            *returning = later;
            due.into_iter().map(|(_, receipt)| receipt).collect()
        };
        for receipt in due {
            self.finish(receipt, Settle::Requeue).await;
        }
    }

    /// A task of another app on a shared queue: left for its own consumers
    /// (handed back after a pause, so that they get their turn), and
    /// dead-lettered once it has come back to us [`MAX_BOUNCES`] times, so
    /// that a task nobody consumes does not circle for ever.
    pub(super) async fn bounce(&self, delivery: Delivery) {
        let id = delivery.message.id.clone();
        let task = delivery.message.task.clone();
        let times = self
            .bounced
            .lock()
            .map(|mut bounced| {
                if bounced.len() > 10_000 {
                    bounced.clear();
                }
                let n = bounced.entry(id.clone()).or_insert(0);
                *n += 1;
                *n
            })
            .unwrap_or(1);
        if times > MAX_BOUNCES {
            log(&format!(
                "task {id} ({task}) is no pipeline task and came back {MAX_BOUNCES} times: \
                 dead-lettered"
            ));
            if let Ok(mut bounced) = self.bounced.lock() {
                bounced.remove(&id);
            }
            self.dead_letter(delivery.receipt).await;
            return;
        }
        if times == 1 {
            log(&format!(
                "task {id} ({task}) is no pipeline task: left on the queue for other consumers"
            ));
        }
        self.finish(delivery.receipt, Settle::RequeueAfter(BOUNCE_PAUSE))
            .await;
    }

    /// Sorts a delivery: an ingest task is work as it is, a message that
    /// is no pipeline job is settled here, and a job's message is returned
    /// with its job id, to be claimed.
    pub(super) async fn triage(&self, delivery: Delivery, worker: &str, lease: Duration) -> Triage {
        let task = delivery.message.task.clone();
        if task == INGEST_TASK {
            let task_id = delivery.message.id.clone();
            let kwargs = delivery.message.kwargs.clone();
            self.hold(&task_id, delivery.receipt);
            return Triage::Work(Work::Ingest(IngestTask { task_id, kwargs }));
        }
        if task == CHUNK_TASK {
            return self.take_chunk(delivery, worker, lease).await;
        }
        // pipeline.transcribe, pipeline.diarize, pipeline.process.
        if JobType::from_task_name(&task).is_none() {
            self.bounce(delivery).await;
            return Triage::Settled;
        }
        let job_id = delivery
            .message
            .kwargs
            .get("job_id")
            .and_then(|v| v.as_str())
            .and_then(|s| Uuid::parse_str(s).ok());
        let Some(job_id) = job_id else {
            log(&format!(
                "dead-lettered task {} ({task}): no job_id in its kwargs",
                delivery.message.id
            ));
            self.dead_letter(delivery.receipt).await;
            return Triage::Settled;
        };
        Triage::Job(job_id, delivery)
    }

    /// Claims the chunk a `pipeline.transcribe_chunk` message names; its
    /// message is held until the chunk's outcome is committed. A chunk
    /// that is done, held by another worker, or whose job is not running
    /// is acknowledged: its holder sees to it.
    async fn take_chunk(&self, delivery: Delivery, worker: &str, lease: Duration) -> Triage {
        let kwargs = &delivery.message.kwargs;
        let job_id = kwargs
            .get("job_id")
            .and_then(|v| v.as_str())
            .and_then(|s| Uuid::parse_str(s).ok());
        let index = kwargs
            .get("index")
            .and_then(|v| v.as_u64())
            .and_then(|i| u32::try_from(i).ok());
        let (Some(job_id), Some(index)) = (job_id, index) else {
            log(&format!(
                "dead-lettered task {} ({CHUNK_TASK}): no job_id or index in its kwargs",
                delivery.message.id
            ));
            self.dead_letter(delivery.receipt).await;
            return Triage::Settled;
        };
        match self
            .store
            .claim_chunk(ChunkScope::One(job_id, index), worker, lease)
            .await
        {
            Ok(Some(chunk)) => {
                let task_id = delivery.message.id.clone();
                self.hold(&task_id, delivery.receipt);
                Triage::Work(Work::Chunk(ChunkWork {
                    task_id: Some(task_id),
                    chunk,
                }))
            }
            Ok(None) => {
                self.finish(delivery.receipt, Settle::Ack).await;
                Triage::Settled
            }
            Err(e) => {
                log(&format!(
                    "could not claim a chunk, trying again shortly: {e}"
                ));
                self.finish(delivery.receipt, Settle::RequeueAfter(BOUNCE_PAUSE))
                    .await;
                Triage::Settled
            }
        }
    }

    /// Turns deliveries into work, or settles or keeps them; the jobs among
    /// them are claimed together.
    pub(super) async fn handle(
        &self,
        deliveries: Vec<Delivery>,
        worker: &str,
        lease: Duration,
    ) -> Result<Vec<Work>, QueueError> {
        let mut works = Vec::new();
        let mut jobs = Vec::new();
        for delivery in deliveries {
            match self.triage(delivery, worker, lease).await {
                Triage::Work(work) => works.push(work),
                Triage::Settled => {}
                Triage::Job(job_id, delivery) => jobs.push((job_id, delivery)),
            }
        }
        if jobs.is_empty() {
            return Ok(works);
        }
        let ids: Vec<Uuid> = jobs.iter().map(|(id, _)| *id).collect();
        let claims = match self.store.claim_jobs(&ids, worker, lease).await {
            Ok(claims) => claims,
            Err(e) => {
                // Keep the messages and look again shortly.
                for (_, delivery) in jobs {
                    self.defer(Utc::now() + chrono::Duration::seconds(1), delivery);
                }
                if works.is_empty() {
                    return Err(e.into());
                }
                log(&format!("could not claim jobs, trying again shortly: {e}"));
                return Ok(works);
            }
        };
        for ((job_id, delivery), claim) in jobs.into_iter().zip(claims) {
            if let Some(work) = self.answer(job_id, delivery, claim, worker).await {
                works.push(work);
            }
        }
        Ok(works)
    }

    /// Acts on what claiming a delivered job found.
    ///
    /// A claimed job's message is acknowledged at once, as Celery does by
    /// default: the job's lease in the database fences it from here on, and
    /// when the lease expires the sweep sends a new message. Held for the
    /// whole run instead, the delivery would outlive RabbitMQ's
    /// `consumer_timeout` (30 minutes) on a long file, which closes the
    /// channel, and Redis' visibility timeout, which delivers it again.
    pub(super) async fn answer(
        &self,
        job_id: Uuid,
        delivery: Delivery,
        claim: JobClaim,
        worker: &str,
    ) -> Option<Work> {
        let id = delivery.message.id.clone();
        match claim {
            JobClaim::Claimed(job) => {
                self.finish(delivery.receipt, Settle::Ack).await;
                Some(Work::Job(job))
            }
            JobClaim::NotYet(at) if at <= Utc::now() + NOT_YET_HOLD => {
                self.defer(at, delivery);
                None
            }
            JobClaim::NotYet(_) => {
                // Not held for the whole backoff (it would pin a prefetch
                // slot): the sweep sends a new message when the job is due.
                match self.store.mark_undispatched(job_id).await {
                    Ok(()) => self.finish(delivery.receipt, Settle::Ack).await,
                    Err(_) => self.defer(Utc::now() + NOT_YET_HOLD, delivery),
                }
                None
            }
            JobClaim::Busy { holder, .. } => {
                // The holder's lease fences the job; should the holder die,
                // the sweep sends a new message when its lease expires.
                let _ = self
                    .store
                    .note(
                        job_id,
                        Some(worker),
                        &format!(
                            "task {id} delivered again while {holder} runs it: acknowledged \
                             (the lease decides who runs it)"
                        ),
                    )
                    .await;
                self.finish(delivery.receipt, Settle::Ack).await;
                None
            }
            JobClaim::Finished(status) => {
                let message = match status {
                    JobStatus::Cancelled => format!("task {id} discarded: the job was cancelled"),
                    other => {
                        format!("duplicate delivery of task {id} ignored: job already {other}")
                    }
                };
                let _ = self.store.note(job_id, Some(worker), &message).await;
                self.finish(delivery.receipt, Settle::Ack).await;
                None
            }
            JobClaim::Waiting => {
                self.finish(delivery.receipt, Settle::Ack).await;
                None
            }
            JobClaim::Missing => {
                log(&format!(
                    "task {id} ({}) names job {job_id}, which does not exist (its file was deleted, \
                     or the task is another database's): acknowledged",
                    delivery.message.task
                ));
                self.finish(delivery.receipt, Settle::Ack).await;
                None
            }
        }
    }

    /// More `pipeline.process` messages that are ready now, after `first`,
    /// up to `max` in all: rendering jobs are short, and claiming and
    /// completing them together saves most of their database round trips.
    /// Transcriptions are never batched, so none waits behind another.
    pub(super) async fn with_ready_followers(&self, first: Delivery, max: usize) -> Vec<Delivery> {
        let mut batch = vec![first];
        if max <= 1 || batch[0].message.task != PROCESS_TASK {
            return batch;
        }
        let mut inbox = self.inbox.lock().await;
        while batch.len() < max {
            match inbox.try_recv() {
                Ok(delivery) if delivery.message.task == PROCESS_TASK => batch.push(delivery),
                Ok(other) => {
                    // Handled by the next claim, first.
                    self.defer(Utc::now(), other);
                    break;
                }
                Err(_) => break,
            }
        }
        batch
    }
}
