//! The jobs table as the queue: dispatch has nothing to send, and a claim
//! is the store's leased `UPDATE … RETURNING` (with `FOR UPDATE SKIP
//! LOCKED` on PostgreSQL), so several workers on several machines can
//! share one PostgreSQL database with no broker at all.

use pipeline_core::{JobType, ProcessingJob};
use pipeline_store::Store;
use std::time::Duration;

use crate::{Dispatched, JobQueue, QueueFuture, QueueHealth, Settle, Work};

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

    fn dispatch<'a>(&'a self, _jobs: &'a [ProcessingJob]) -> QueueFuture<'a, Dispatched> {
        // Committed QUEUED rows are already visible to every worker's claim.
        Box::pin(async { Ok(Dispatched::default()) })
    }

    fn claim_batch<'a>(
        &'a self,
        worker: &'a str,
        job_types: &'a [JobType],
        lease: Duration,
        _max: usize,
    ) -> QueueFuture<'a, Vec<Work>> {
        // One job per claim: the table has no burst to batch.
        Box::pin(async move {
            // A started file's chunks before new files: it finishes sooner.
            if let Some(work) =
                crate::chunk_from_table(&self.store, job_types, worker, lease).await?
            {
                return Ok(vec![work]);
            }
            Ok(self
                .store
                .claim(worker, job_types, lease)
                .await?
                .map(Work::Job)
                .into_iter()
                .collect())
        })
    }

    fn settle<'a>(&'a self, _task_id: &'a str, _how: Settle) -> QueueFuture<'a, ()> {
        // The job's row is its own acknowledgement.
        Box::pin(async { Ok(()) })
    }

    fn health(&self) -> QueueFuture<'_, QueueHealth> {
        Box::pin(async {
            Ok(QueueHealth {
                transport: "embedded".into(),
                latency: None,
                depth: Vec::new(),
            })
        })
    }
}
