//! The Celery queue: one protocol 2 message per job on RabbitMQ or Redis.
//!
//! A message is only news that a job can run; the job's row decides. When a
//! message arrives the job is claimed in the database ([`Store::claim_job`]):
//! a claimed job's message is acknowledged at once (as Celery does by
//! default) and from then on the job's lease fences it: when a worker dies
//! its lease expires and the sweep sends a new message. A duplicate
//! delivery of a finished job, or of one another worker holds, is
//! acknowledged and noted; one whose job is due within seconds is kept
//! until its time, and one due later is left to the sweep, which sends it
//! when it is due. An ingest task's message is acknowledged only after its
//! outcome is committed ([`JobQueue::settle`]). `pipeline.process`
//! messages that arrive together are claimed together
//! ([`Store::claim_jobs`]), a few round trips for the lot. Jobs whose broker
//! could not take them fall back to the embedded queue, which every
//! Celery-mode worker also claims from.

use chrono::{DateTime, Utc};
use pipeline_core::{JobStatus, JobType, ProcessingJob};
use pipeline_store::{JobClaim, Store};
use serde_json::{json, Map};
use std::collections::{HashMap, VecDeque};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};
use tokio::sync::mpsc;
use uuid::Uuid;

use crate::celery::amqp::{self, AmqpTransport};
use crate::celery::message::TaskMessage;
use crate::celery::redis::RedisTransport;
use crate::celery::{INGEST_TASK, PROCESS_TASK};
use crate::{Dispatched, IngestTask, JobQueue, QueueError, QueueFuture, QueueHealth, Settle, Work};

/// Times a task of another app may come back to one worker before it is
/// dead-lettered.
const MAX_BOUNCES: u32 = 10;
/// How long such a task is held before it is handed back.
const BOUNCE_PAUSE: Duration = Duration::from_secs(3);

/// How long a runnable job may wait with no message sent before the sweep
/// sends one (its own worker normally publishes within milliseconds).
const UNSENT_GRACE: chrono::Duration = chrono::Duration::seconds(5);

/// A delivered job due within this long is held until it is; one due later
/// is acknowledged and sent again by the sweep when it is due.
const NOT_YET_HOLD: chrono::Duration = chrono::Duration::seconds(3);

/// Later stages a worker keeps back for itself at most (more are sent).
const LOCAL_MAX: usize = 64;

/// A delivery sorted by [`Inner::triage`].
enum Triage {
    Work(Work),
    Settled,
    Job(Uuid, Delivery),
}

/// Where and how a Celery queue connects.
#[derive(Debug, Clone)]
pub struct BrokerSettings {
    /// `amqp://...` or `redis://...`.
    pub url: String,
    /// The queue jobs are sent to (`celery` unless configured).
    pub queue: String,
    /// The queues a worker reads (`worker --queues`); `[queue]` when empty.
    pub consume: Vec<String>,
    /// How long to wait for the broker before giving up (and falling back).
    pub connect_timeout: Duration,
    /// Redis: how long a message may stay unacknowledged before it is
    /// delivered again (kombu's `visibility_timeout`).
    pub visibility_timeout: Duration,
    /// Messages a worker holds unacknowledged at most.
    pub prefetch: usize,
}

enum Transport {
    Amqp(AmqpTransport),
    Redis(RedisTransport),
}

enum Receipt {
    Amqp(lapin::Acker),
    Redis(String),
}

struct Delivery {
    message: TaskMessage,
    receipt: Receipt,
}

struct Inner {
    store: Store,
    transport: Transport,
    name: &'static str,
    settings: BrokerSettings,
    held: Mutex<HashMap<String, Vec<Receipt>>>,
    deferred: Mutex<Vec<(DateTime<Utc>, Delivery)>>,
    /// Messages to hand back to the broker at these instants: tasks for
    /// other consumers, and work that failed for a passing reason.
    returning: Mutex<Vec<(Instant, Receipt)>>,
    /// How often each task of another app came back to this worker.
    bounced: Mutex<HashMap<String, u32>>,
    inbox: tokio::sync::Mutex<mpsc::Receiver<Delivery>>,
    /// The inbox's sending side, until the fetcher takes it.
    outbox: Mutex<Option<mpsc::Sender<Delivery>>>,
    fetcher: Mutex<Option<tokio::task::JoinHandle<()>>>,
    /// Tells the fetcher to stop after the fetch in flight (see [`BrokerQueue::close`]).
    stopping: std::sync::atomic::AtomicBool,
    last_sweep: Mutex<Option<Instant>>,
    last_orphan_check: Mutex<Option<Instant>>,
    /// The worker this queue fetches for (Redis records it as each
    /// delivery's owner) and the job types it claims (empty: all); set by
    /// the first claim.
    consumer: Mutex<Option<(String, Vec<JobType>)>>,
    /// Later stages this worker made runnable and takes itself next, with
    /// no message: see [`Inner::keep_local`].
    local: Mutex<VecDeque<Uuid>>,
    last_embedded_poll: Mutex<Option<Instant>>,
    /// Names the database this queue's jobs live in (a digest of its URL).
    store_identity: String,
    /// After a failed publish, until when to skip the broker (so a batch of
    /// files does not wait for a dead broker once per file).
    down_until: Mutex<Option<(Instant, String)>>,
}

/// Jobs as Celery messages on RabbitMQ or Redis, claimed in the database.
pub struct BrokerQueue {
    inner: Arc<Inner>,
}

impl Drop for BrokerQueue {
    fn drop(&mut self) {
        if let Ok(mut fetcher) = self.inner.fetcher.lock() {
            if let Some(task) = fetcher.take() {
                task.abort();
            }
        }
    }
}

/// Whether `every` has passed since `last`, which then becomes now: the
/// throttle of everything a claim does now and then.
fn due(last: &Mutex<Option<Instant>>, every: Duration) -> bool {
    let Ok(mut last) = last.lock() else {
        return true;
    };
    if last.is_some_and(|t| t.elapsed() < every) {
        return false;
    }
    *last = Some(Instant::now());
    true
}

/// What the broker side did about a fault or a stray message: operators
/// see these as warnings.
fn log(message: &str) {
    tracing::warn!("{message}");
}

impl BrokerQueue {
    /// A queue on the broker at `settings.url`; connects when first used.
    pub fn new(store: Store, mut settings: BrokerSettings) -> Result<Self, QueueError> {
        let url = settings.url.clone();
        // Names the database this queue's jobs live in (a digest of its URL).
        let store_identity: String = {
            use sha2::Digest;
            let digest = sha2::Sha256::digest(store.url().as_bytes());
            digest[..8].iter().map(|b| format!("{b:02x}")).collect()
        };
        let (transport, name) = if url.starts_with("amqp://") || url.starts_with("amqps://") {
            (
                Transport::Amqp(AmqpTransport::new(&url, settings.connect_timeout)),
                "amqp",
            )
        } else if url.starts_with("redis://") || url.starts_with("rediss://") {
            (
                Transport::Redis(
                    RedisTransport::new(
                        &url,
                        settings.connect_timeout,
                        settings.visibility_timeout,
                    )?
                    .scope_owners(&store_identity),
                ),
                "redis",
            )
        } else {
            return Err(QueueError::UnsupportedUrl {
                url: pipeline_core::config::mask_url(&url),
            });
        };
        if settings.consume.is_empty() {
            settings.consume = vec![settings.queue.clone()];
        }
        settings.prefetch = settings.prefetch.max(1);
        let (outbox, inbox) = mpsc::channel(settings.prefetch);
        Ok(Self {
            inner: Arc::new(Inner {
                store,
                transport,
                name,
                settings,
                held: Mutex::new(HashMap::new()),
                deferred: Mutex::new(Vec::new()),
                returning: Mutex::new(Vec::new()),
                bounced: Mutex::new(HashMap::new()),
                inbox: tokio::sync::Mutex::new(inbox),
                outbox: Mutex::new(Some(outbox)),
                fetcher: Mutex::new(None),
                stopping: std::sync::atomic::AtomicBool::new(false),
                last_sweep: Mutex::new(None),
                last_orphan_check: Mutex::new(None),
                consumer: Mutex::new(None),
                local: Mutex::new(VecDeque::new()),
                last_embedded_poll: Mutex::new(None),
                down_until: Mutex::new(None),
                store_identity,
            }),
        })
    }
}

impl Inner {
    async fn publish(&self, queue: &str, messages: &[TaskMessage]) -> Result<(), QueueError> {
        match &self.transport {
            Transport::Amqp(t) => t.publish(queue, messages).await,
            Transport::Redis(t) => t.publish(queue, messages).await,
        }
    }

    /// The message that tells workers `job` can run.
    fn message_for(job: &ProcessingJob) -> TaskMessage {
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

    /// Dispatches after making sure the broker still holds what was sent
    /// before (see [`Inner::check_epoch`]).
    async fn dispatch(&self, jobs: &[ProcessingJob]) -> Result<Dispatched, QueueError> {
        let jobs = self.keep_local(jobs);
        if jobs.is_empty() {
            return Ok(Dispatched::default());
        }
        let jobs = &jobs[..];
        if self.broker_down().is_none() {
            match self.check_epoch().await {
                // Every waiting job, these included, was just sent.
                Ok(true) => return Ok(Dispatched::default()),
                Ok(false) => {}
                Err(e) => self.mark_down(&e.to_string()),
            }
        }
        self.dispatch_jobs(jobs).await
    }

    /// Keeps back the later stages (a file's PROCESSING) that this worker
    /// made runnable and claims itself: its next claim takes them before
    /// any message, so each file completes as soon as its transcription
    /// does instead of behind every transcription queued before it (a
    /// broker's queue is first in, first out). They are sent no message:
    /// should this worker die or stay busy, the sweep of any worker sends
    /// one once they have waited [`UNSENT_GRACE`]. The rest is returned.
    fn keep_local(&self, jobs: &[ProcessingJob]) -> Vec<ProcessingJob> {
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
    async fn claim_local(
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
    fn broker_down(&self) -> Option<String> {
        self.down_until
            .lock()
            .ok()
            .and_then(|d| d.clone())
            .filter(|(until, _)| Instant::now() < *until)
            .map(|(_, reason)| reason)
    }

    fn mark_down(&self, reason: &str) {
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
    async fn check_epoch(&self) -> Result<bool, QueueError> {
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

    async fn dispatch_jobs(&self, jobs: &[ProcessingJob]) -> Result<Dispatched, QueueError> {
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
    async fn redispatch_waiting(&self) -> Result<usize, QueueError> {
        let waiting = self.store.waiting_on_transport(self.name).await?;
        let count = waiting.len();
        self.dispatch_jobs(&waiting).await?;
        Ok(count)
    }

    /// Now and then: put back jobs whose worker died, and send their
    /// messages again (the old one may be gone with the worker's connection).
    async fn sweep(&self, lease: Duration) -> Result<(), QueueError> {
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
    async fn restore_orphans(&self, lease: Duration) -> Result<(), QueueError> {
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

    fn embedded_poll_due(&self) -> bool {
        due(&self.last_embedded_poll, Duration::from_secs(1))
    }

    fn hold(&self, task_id: &str, receipt: Receipt) {
        if let Ok(mut held) = self.held.lock() {
            held.entry(task_id.to_string()).or_default().push(receipt);
        }
    }

    fn defer(&self, until: DateTime<Utc>, delivery: Delivery) {
        if let Ok(mut deferred) = self.deferred.lock() {
            deferred.push((until, delivery));
        }
    }

    fn next_ready(&self) -> Option<Delivery> {
        let mut deferred = self.deferred.lock().ok()?;
        let now = Utc::now();
        let index = deferred.iter().position(|(at, _)| *at <= now)?;
        Some(deferred.swap_remove(index).1)
    }

    async fn finish(&self, receipt: Receipt, how: Settle) {
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
    async fn dead_letter(&self, receipt: Receipt) {
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
    async fn return_due(&self) {
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
    async fn bounce(&self, delivery: Delivery) {
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
    async fn triage(&self, delivery: Delivery) -> Triage {
        let task = delivery.message.task.clone();
        if task == INGEST_TASK {
            let task_id = delivery.message.id.clone();
            let kwargs = delivery.message.kwargs.clone();
            self.hold(&task_id, delivery.receipt);
            return Triage::Work(Work::Ingest(IngestTask { task_id, kwargs }));
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

    /// Turns deliveries into work, or settles or keeps them; the jobs among
    /// them are claimed together.
    async fn handle(
        &self,
        deliveries: Vec<Delivery>,
        worker: &str,
        lease: Duration,
    ) -> Result<Vec<Work>, QueueError> {
        let mut works = Vec::new();
        let mut jobs = Vec::new();
        for delivery in deliveries {
            match self.triage(delivery).await {
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
    async fn answer(
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
    async fn with_ready_followers(&self, first: Delivery, max: usize) -> Vec<Delivery> {
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

    /// Starts moving messages from the broker on the first claim (a
    /// process that only dispatches never consumes).
    fn ensure_fetcher(self: &Arc<Self>, worker: &str, job_types: &[JobType]) {
        if let Ok(mut consumer) = self.consumer.lock() {
            consumer.get_or_insert_with(|| (worker.to_string(), job_types.to_vec()));
        }
        let Ok(mut fetcher) = self.fetcher.lock() else {
            return;
        };
        if fetcher.is_some() {
            return;
        }
        let Some(tx) = self.outbox.lock().ok().and_then(|mut o| o.take()) else {
            return;
        };
        let inner = self.clone();
        *fetcher = Some(tokio::spawn(async move { inner.fetch_forever(tx).await }));
    }

    /// Moves messages from the broker into the inbox, reconnecting with
    /// backoff whenever the broker goes away.
    fn stopped(&self) -> bool {
        self.stopping.load(std::sync::atomic::Ordering::SeqCst)
    }

    async fn fetch_forever(self: Arc<Self>, tx: mpsc::Sender<Delivery>) {
        let mut failures = 0u32;
        loop {
            let result = match &self.transport {
                Transport::Redis(t) => self.fetch_redis(t, &tx, &mut failures).await,
                Transport::Amqp(t) => self.fetch_amqp(t, &tx, &mut failures).await,
            };
            if tx.is_closed() || self.stopped() {
                return;
            }
            if let Err(e) = result {
                if failures == 0 {
                    log(&format!("lost the broker ({e}); reconnecting"));
                }
            }
            failures = failures.saturating_add(1);
            let wait = Duration::from_millis(100 * 2u64.pow(failures.min(6)));
            tokio::time::sleep(wait.min(Duration::from_secs(5))).await;
        }
    }

    /// Called once connected: says so after an outage.
    fn connected(failures: &mut u32) {
        if *failures > 0 {
            log("reconnected to the broker");
        }
        *failures = 0;
    }

    async fn fetch_redis(
        &self,
        transport: &RedisTransport,
        tx: &mpsc::Sender<Delivery>,
        failures: &mut u32,
    ) -> Result<(), QueueError> {
        let mut conn = transport.connect().await?;
        Self::connected(failures);
        self.check_epoch().await?;
        let restore_every = (self.settings.visibility_timeout / 4)
            .clamp(Duration::from_secs(1), Duration::from_secs(10));
        let mut last_restore = Instant::now() - restore_every;
        let owner = self
            .consumer
            .lock()
            .ok()
            .and_then(|c| c.clone())
            .map(|(worker, _)| worker)
            .unwrap_or_default();
        // Each BRPOP waits at most a second, so a stop is seen soon; one
        // abandoned mid-wait would take the next message pushed (a
        // hand-back at close) off the list for a client that is gone.
        while !self.stopped() {
            if last_restore.elapsed() >= restore_every {
                last_restore = Instant::now();
                transport.restore_visible().await?;
            }
            match transport
                .fetch(
                    &mut conn,
                    &self.settings.consume,
                    Duration::from_secs(1),
                    &owner,
                )
                .await?
            {
                Some(Ok(d)) => {
                    let delivery = Delivery {
                        message: d.message,
                        receipt: Receipt::Redis(d.tag),
                    };
                    if let Err(returned) = tx.send(delivery).await {
                        // The worker is gone: hand the message back.
                        if let Receipt::Redis(tag) = returned.0.receipt {
                            let _ = transport.requeue(&tag).await;
                        }
                        return Ok(());
                    }
                }
                Some(Err(problem)) => log(&problem),
                None => {}
            }
        }
        Ok(())
    }

    async fn fetch_amqp(
        &self,
        transport: &AmqpTransport,
        tx: &mpsc::Sender<Delivery>,
        failures: &mut u32,
    ) -> Result<(), QueueError> {
        let prefetch = u16::try_from(self.settings.prefetch).unwrap_or(u16::MAX);
        let mut consumer = transport.consume(&self.settings.consume, prefetch).await?;
        Self::connected(failures);
        while !self.stopped() {
            match consumer.next(Duration::from_secs(1)).await {
                Ok(Some(Ok(d))) => {
                    let delivery = Delivery {
                        message: d.message,
                        receipt: Receipt::Amqp(d.acker),
                    };
                    if tx.send(delivery).await.is_err() {
                        return Ok(());
                    }
                }
                Ok(Some(Err(problem))) => log(&problem),
                Ok(None) => {}
                Err(e) => {
                    return Err(QueueError::Broker {
                        url: pipeline_core::config::mask_url(&self.settings.url),
                        message: e,
                    })
                }
            }
        }
        Ok(())
    }
}

impl JobQueue for BrokerQueue {
    fn name(&self) -> &str {
        self.inner.name
    }

    fn dispatch<'a>(&'a self, jobs: &'a [ProcessingJob]) -> QueueFuture<'a, Dispatched> {
        Box::pin(self.inner.dispatch(jobs))
    }

    fn claim_batch<'a>(
        &'a self,
        worker: &'a str,
        job_types: &'a [JobType],
        lease: Duration,
        max: usize,
    ) -> QueueFuture<'a, Vec<Work>> {
        Box::pin(async move {
            let inner = &self.inner;
            inner.ensure_fetcher(worker, job_types);
            inner.return_due().await;
            inner.sweep(lease).await?;
            let local = inner.claim_local(worker, lease, max.max(1)).await?;
            if !local.is_empty() {
                return Ok(local);
            }
            // Jobs that fell back to the embedded queue run here too; the
            // table is looked at about once a second, not before every message.
            if inner.embedded_poll_due() {
                if let Some(job) = inner.store.claim(worker, job_types, lease).await? {
                    return Ok(vec![Work::Job(job)]);
                }
            }
            let deadline = Instant::now() + Duration::from_millis(500);
            loop {
                let first = match inner.next_ready() {
                    Some(delivery) => Some(delivery),
                    None => {
                        let remaining = deadline.saturating_duration_since(Instant::now());
                        if remaining.is_zero() {
                            return Ok(Vec::new());
                        }
                        let mut inbox = inner.inbox.lock().await;
                        tokio::time::timeout(
                            remaining.min(Duration::from_millis(100)),
                            inbox.recv(),
                        )
                        .await
                        .ok()
                        .flatten()
                    }
                };
                let Some(first) = first else { continue };
                let batch = inner.with_ready_followers(first, max.max(1)).await;
                let works = inner.handle(batch, worker, lease).await?;
                if !works.is_empty() {
                    return Ok(works);
                }
            }
        })
    }

    fn settle<'a>(&'a self, task_id: &'a str, how: Settle) -> QueueFuture<'a, ()> {
        Box::pin(async move {
            let receipts = self
                .inner
                .held
                .lock()
                .ok()
                .and_then(|mut held| held.remove(task_id))
                .unwrap_or_default();
            for receipt in receipts {
                self.inner.finish(receipt, how).await;
            }
            Ok(())
        })
    }

    fn health(&self) -> QueueFuture<'_, QueueHealth> {
        Box::pin(async move {
            let inner = &self.inner;
            let latency = match &inner.transport {
                Transport::Amqp(t) => t.ping().await?,
                Transport::Redis(t) => t.ping().await?,
            };
            let mut depth = Vec::new();
            for queue in &inner.settings.consume {
                let n = match &inner.transport {
                    Transport::Amqp(t) => t.depth(queue).await?,
                    Transport::Redis(t) => t.depth(queue).await?,
                };
                depth.push((queue.clone(), n));
            }
            Ok(QueueHealth {
                transport: inner.name.to_string(),
                latency: Some(latency),
                depth,
            })
        })
    }

    fn close(&self) -> QueueFuture<'_, ()> {
        Box::pin(async move {
            // The fetcher ends its fetch in flight (a second at most) before
            // anything is handed back; what it takes meanwhile reaches the
            // inbox, which is emptied as it goes so that it cannot block.
            self.inner
                .stopping
                .store(true, std::sync::atomic::Ordering::SeqCst);
            let task = self.inner.fetcher.lock().ok().and_then(|mut f| f.take());
            let mut receipts: Vec<Receipt> = Vec::new();
            {
                let mut inbox = self.inner.inbox.lock().await;
                if let Some(mut task) = task {
                    let deadline = Instant::now() + Duration::from_secs(3);
                    loop {
                        while let Ok(delivery) = inbox.try_recv() {
                            receipts.push(delivery.receipt);
                        }
                        if task.is_finished() {
                            break;
                        }
                        if Instant::now() >= deadline {
                            task.abort();
                            break;
                        }
                        let _ = tokio::time::timeout(Duration::from_millis(50), &mut task).await;
                    }
                }
                while let Ok(delivery) = inbox.try_recv() {
                    receipts.push(delivery.receipt);
                }
            }
            if let Ok(mut deferred) = self.inner.deferred.lock() {
                receipts.extend(deferred.drain(..).map(|(_, d)| d.receipt));
            }
            if let Ok(mut held) = self.inner.held.lock() {
                receipts.extend(held.drain().flat_map(|(_, r)| r));
            }
            if let Ok(mut returning) = self.inner.returning.lock() {
                receipts.extend(returning.drain(..).map(|(_, r)| r));
            }
            for receipt in receipts {
                self.inner.finish(receipt, Settle::Requeue).await;
            }
            Ok(())
        })
    }
}
