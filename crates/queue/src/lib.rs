//! How jobs reach workers. A [`JobQueue`] makes freshly created jobs
//! available ([`JobQueue::dispatch`]), hands the next piece of work to a
//! worker ([`JobQueue::claim`]) and, for an ingest task, acknowledges the
//! message that carried it once its outcome is committed
//! ([`JobQueue::settle`]); a job's message is acknowledged when the job is
//! claimed, since its lease in the database fences it from then on.
//!
//! The database is the truth about every job; a broker only carries the
//! news. The embedded queue is the jobs table itself ([`EmbeddedQueue`]).
//! The Celery queue ([`BrokerQueue`]) sends one Celery protocol 2 message
//! per job over RabbitMQ or Redis and claims the job in the database when
//! its message arrives, so a message delivered twice never runs a job twice
//! and a job whose message was lost is sent again.

pub mod broker;
pub mod celery;
mod embedded;

pub use broker::{BrokerQueue, BrokerSettings};
pub use embedded::EmbeddedQueue;

use pipeline_core::{Chunk, JobType, ProcessingJob};
use pipeline_store::StoreError;
use serde_json::{Map, Value};
use std::future::Future;
use std::pin::Pin;
use std::time::Duration;

/// A boxed future, so that queues can be used as trait objects.
pub type QueueFuture<'a, T> = Pin<Box<dyn Future<Output = Result<T, QueueError>> + Send + 'a>>;

/// Why a queue operation failed.
#[derive(Debug, thiserror::Error)]
pub enum QueueError {
    /// The store behind the queue failed.
    #[error(transparent)]
    Store(#[from] StoreError),
    /// The broker could not be reached or refused an operation.
    #[error("broker {url}: {message}")]
    Broker { url: String, message: String },
    /// The broker URL names no transport we speak.
    #[error("unsupported broker URL {url} (use amqp://... or redis://...)")]
    UnsupportedUrl { url: String },
}

impl QueueError {
    /// Whether trying again later may succeed.
    pub fn is_retryable(&self) -> bool {
        match self {
            QueueError::Store(e) => e.is_retryable(),
            QueueError::Broker { .. } => true,
            QueueError::UnsupportedUrl { .. } => false,
        }
    }

    /// The store error inside, for callers that map it to exit codes; a
    /// broker error reads as an unreachable service.
    pub fn into_store_error(self) -> StoreError {
        match self {
            QueueError::Store(e) => e,
            QueueError::Broker { url, message } => StoreError::Unreachable { url, message },
            other => StoreError::Unreachable {
                url: String::new(),
                message: other.to_string(),
            },
        }
    }
}

/// What a worker is handed.
#[derive(Debug, Clone)]
pub enum Work {
    /// A job, RUNNING under this worker's lease.
    Job(ProcessingJob),
    /// A `pipeline.ingest` task: audio to take in, from Celery clients.
    Ingest(IngestTask),
    /// A chunk of a long transcription, RUNNING under this worker's lease.
    Chunk(ChunkWork),
}

/// A chunk a worker took, and the message that carried it, if any.
#[derive(Debug, Clone)]
pub struct ChunkWork {
    /// The `pipeline.transcribe_chunk` task's id, to acknowledge once the
    /// chunk's outcome is committed; `None` when it was taken from the table.
    pub task_id: Option<String>,
    pub chunk: Chunk,
}

/// A waiting chunk of any running job, taken from the table for a worker
/// for `job_types` (all when empty; chunks are TRANSCRIPTION's).
pub(crate) async fn chunk_from_table(
    store: &pipeline_store::Store,
    job_types: &[JobType],
    worker: &str,
    lease: Duration,
) -> Result<Option<Work>, QueueError> {
    if !job_types.is_empty() && !job_types.contains(&JobType::Transcription) {
        return Ok(None);
    }
    let chunk = store
        .claim_chunk(pipeline_store::ChunkScope::Any, worker, lease)
        .await?;
    Ok(chunk.map(|chunk| {
        Work::Chunk(ChunkWork {
            task_id: None,
            chunk,
        })
    }))
}

/// A `pipeline.ingest` task as a Celery client sent it.
#[derive(Debug, Clone)]
pub struct IngestTask {
    /// The Celery task id, for the result backend and the acknowledgement.
    pub task_id: String,
    /// `source` (a path or URL the worker can read) and `process`'s options.
    pub kwargs: Map<String, Value>,
}

/// What to do with the message of finished work.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Settle {
    /// The outcome is committed: the message is done.
    Ack,
    /// The work was handed back unfinished: deliver the message again.
    Requeue,
    /// It failed for a reason that may pass (a database or storage outage):
    /// deliver it again after this long, to this worker or another.
    RequeueAfter(std::time::Duration),
}

/// The result of a dispatch.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Dispatched {
    /// Why the broker could not take the jobs, when they fell back to the
    /// embedded queue (recorded in their audit trail).
    pub fell_back: Option<String>,
}

/// Reachability of the queue's broker, for `status`.
#[derive(Debug, Clone, PartialEq)]
pub struct QueueHealth {
    /// `embedded`, `amqp` or `redis`.
    pub transport: String,
    /// Round trip to the broker; `None` for the embedded queue.
    pub latency: Option<Duration>,
    /// Messages waiting per broker queue.
    pub depth: Vec<(String, u64)>,
}

/// The queue's health as `status` and the API report it:
/// `{transport, reachable, latency_ms, queues: {name: waiting}}`, or
/// `{transport, reachable: false, error}`.
pub async fn health_json(queue: &dyn JobQueue) -> Value {
    match queue.health().await {
        Ok(health) => serde_json::json!({
            "transport": health.transport,
            "reachable": true,
            "latency_ms": health.latency.map(|l| l.as_secs_f64() * 1000.0),
            "queues": health
                .depth
                .into_iter()
                .map(|(name, n)| (name, Value::from(n)))
                .collect::<Map<String, Value>>(),
        }),
        Err(e) => serde_json::json!({
            "transport": queue.name(),
            "reachable": false,
            "error": e.to_string(),
        }),
    }
}

/// A transport that carries jobs from producers to workers.
pub trait JobQueue: Send + Sync {
    /// Short name for `status` and the jobs' `transport` (`embedded`, `amqp`, `redis`).
    fn name(&self) -> &str;

    /// Makes newly QUEUED (or RETRYING) jobs available to workers. When a
    /// broker cannot take them they fall back to the embedded queue.
    fn dispatch<'a>(&'a self, jobs: &'a [ProcessingJob]) -> QueueFuture<'a, Dispatched>;

    /// Work for `worker`, jobs held under a lease of `lease`: at least one
    /// piece and at most `max` (short jobs delivered in a burst, claimed in
    /// one transaction), or none for now.
    fn claim_batch<'a>(
        &'a self,
        worker: &'a str,
        job_types: &'a [JobType],
        lease: Duration,
        max: usize,
    ) -> QueueFuture<'a, Vec<Work>>;

    /// The next piece of work for `worker`; `None` when there is none for now.
    fn claim<'a>(
        &'a self,
        worker: &'a str,
        job_types: &'a [JobType],
        lease: Duration,
    ) -> QueueFuture<'a, Option<Work>> {
        Box::pin(async move {
            let works = self.claim_batch(worker, job_types, lease, 1).await?;
            Ok(works.into_iter().next())
        })
    }

    /// Tells workers that `chunks` of `job` wait for one: a message each
    /// on a broker; the embedded queue's workers find them in the table.
    /// Best effort: the job's holder works through every chunk nobody took.
    fn dispatch_chunks<'a>(
        &'a self,
        _job: &'a ProcessingJob,
        _chunks: &'a [Chunk],
    ) -> QueueFuture<'a, ()> {
        Box::pin(async { Ok(()) })
    }

    /// Acknowledges (or hands back) the message of an ingest task whose
    /// outcome is recorded, by the task's id (jobs' messages were
    /// acknowledged when they were claimed: nothing is held for them).
    fn settle<'a>(&'a self, task_id: &'a str, how: Settle) -> QueueFuture<'a, ()>;

    /// Whether the broker answers, how fast, and how much waits in it.
    fn health(&self) -> QueueFuture<'_, QueueHealth>;

    /// Hands back every message still held and stops receiving (a worker
    /// shutting down).
    fn close(&self) -> QueueFuture<'_, ()> {
        Box::pin(async { Ok(()) })
    }
}
