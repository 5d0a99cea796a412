//! How jobs reach workers. A [`JobQueue`] makes freshly created jobs
//! available ([`JobQueue::dispatch`]) and hands the next one to a worker
//! with a lease ([`JobQueue::claim`]).
//!
//! The embedded queue is the jobs table itself: dispatch has nothing to
//! send, and a claim is the store's leased `UPDATE … RETURNING` (with
//! `FOR UPDATE SKIP LOCKED` on PostgreSQL), so several workers on several
//! machines can share one PostgreSQL database with no broker at all.

use pipeline_core::{JobType, ProcessingJob};
use pipeline_store::{Store, StoreError};
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
}

impl QueueError {
    /// Whether trying again later may succeed.
    pub fn is_retryable(&self) -> bool {
        match self {
            QueueError::Store(e) => e.is_retryable(),
        }
    }

    /// The store error inside, for callers that map it to exit codes.
    pub fn into_store_error(self) -> StoreError {
        match self {
            QueueError::Store(e) => e,
        }
    }
}

/// A transport that carries jobs from producers to workers.
pub trait JobQueue: Send + Sync {
    /// Short name for `status` (`embedded`, `amqp`, `redis`).
    fn name(&self) -> &str;

    /// Makes newly created QUEUED jobs available to workers.
    fn dispatch<'a>(&'a self, jobs: &'a [ProcessingJob]) -> QueueFuture<'a, ()>;

    /// The next runnable job of `job_types` (all when empty) for `worker`,
    /// held under a lease of `lease`.
    fn claim<'a>(
        &'a self,
        worker: &'a str,
        job_types: &'a [JobType],
        lease: Duration,
    ) -> QueueFuture<'a, Option<ProcessingJob>>;
}

/// The jobs table as the queue.
#[derive(Clone)]
pub struct EmbeddedQueue {
    store: Store,
}

impl EmbeddedQueue {
    /// A queue over `store`'s jobs table.
    pub fn new(store: Store) -> Self {
        Self { store }
    }
}

impl JobQueue for EmbeddedQueue {
    fn name(&self) -> &str {
        "embedded"
    }

    fn dispatch<'a>(&'a self, _jobs: &'a [ProcessingJob]) -> QueueFuture<'a, ()> {
        // Committed QUEUED rows are already visible to every worker's claim.
        Box::pin(async { Ok(()) })
    }

    fn claim<'a>(
        &'a self,
        worker: &'a str,
        job_types: &'a [JobType],
        lease: Duration,
    ) -> QueueFuture<'a, Option<ProcessingJob>> {
        Box::pin(async move { Ok(self.store.claim(worker, job_types, lease).await?) })
    }
}
