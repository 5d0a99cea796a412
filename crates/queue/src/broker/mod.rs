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
//! ([`Store::claim_jobs`]), a few round trips for the lot. A file's next
//! stage that a worker made runnable is kept back and claimed by that
//! worker next, with no message (`dispatch.rs`), so that files complete one
//! by one rather than in the broker's first-in, first-out order. Jobs whose broker
//! could not take them fall back to the embedded queue, which every
//! Celery-mode worker also claims from.

use chrono::{DateTime, Utc};
use pipeline_core::{Chunk, JobStatus, JobType, ProcessingJob};
use pipeline_store::{ChunkScope, JobClaim, Store};
use serde_json::{json, Map};
use std::collections::{HashMap, VecDeque};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};
use tokio::sync::mpsc;
use uuid::Uuid;

use crate::celery::amqp::{self, AmqpTransport};
use crate::celery::message::TaskMessage;
use crate::celery::redis::RedisTransport;
use crate::celery::{CHUNK_TASK, INGEST_TASK, PROCESS_TASK};
use crate::{
    ChunkWork, Dispatched, IngestTask, JobQueue, QueueError, QueueFuture, QueueHealth, Settle, Work,
};

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
            hex::encode(&digest[..8])
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

mod deliveries;
mod dispatch;
mod fetch;

impl JobQueue for BrokerQueue {
    fn name(&self) -> &str {
        self.inner.name
    }

    fn dispatch<'a>(&'a self, jobs: &'a [ProcessingJob]) -> QueueFuture<'a, Dispatched> {
        Box::pin(self.inner.dispatch(jobs))
    }

    fn dispatch_chunks<'a>(
        &'a self,
        job: &'a ProcessingJob,
        chunks: &'a [Chunk],
    ) -> QueueFuture<'a, ()> {
        Box::pin(self.inner.dispatch_chunks(job, chunks))
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
                // Chunks whose messages another worker's prefetch holds
                // are taken from the table too, so no idle worker waits.
                if let Some(work) =
                    crate::chunk_from_table(&inner.store, job_types, worker, lease).await?
                {
                    return Ok(vec![work]);
                }
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
                    let drained = async {
                        loop {
                            tokio::select! {
                                Some(delivery) = inbox.recv() => receipts.push(delivery.receipt),
                                _ = &mut task => break,
                            }
                        }
                    };
                    if tokio::time::timeout(Duration::from_secs(3), drained)
                        .await
                        .is_err()
                    {
                        task.abort();
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
