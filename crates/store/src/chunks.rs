//! Chunks of long transcriptions: a job cut into chunks once, a chunk
//! claimed by any worker under a lease of its own, renewed, and ended with
//! its segments, its failure or handed back. Every step is a line of the
//! job's audit trail, so that who did which chunk can be read there.

use chrono::{DateTime, Utc};
use pipeline_core::{Chunk, ChunkCounts, ChunkStatus, Segment};
use sqlx::Row;
use std::collections::HashMap;
use std::time::Duration;
use uuid::Uuid;

use crate::jobs::{insert_event, lease_end, MAX_LOST_LEASES};
use crate::rows::{self, ts, CHUNK_COLUMNS};
use crate::{Store, StoreError};

/// The claim a worker holds on one attempt of a chunk.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ChunkLease {
    pub job_id: Uuid,
    pub index: u32,
    pub worker: String,
    pub attempt: u32,
}

impl ChunkLease {
    /// The lease of a chunk as [`Store::claim_chunk`] returned it.
    pub fn of(chunk: &Chunk) -> ChunkLease {
        ChunkLease {
            job_id: chunk.job_id,
            index: chunk.index,
            worker: chunk.worker.clone().unwrap_or_default(),
            attempt: chunk.attempt,
        }
    }
}

/// What a worker learns when it renews a chunk's lease.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ChunkBeat {
    /// Renewed; stop if the job was cancelled or has ended.
    Held { stop: bool },
    /// The chunk is no longer this worker's.
    Lost,
}

/// Which chunks a claim may take.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ChunkScope {
    /// Any chunk of any running job (a worker with nothing else to do).
    Any,
    /// The next one of this job (its holder, working through its file).
    Job(Uuid),
    /// This one (a `pipeline.transcribe_chunk` message).
    One(Uuid, u32),
}

/// How a chunk is written in the audit trail: `chunk 3 of 12 (600.0-900.0 s)`.
fn label(chunk: &Chunk, total: u32) -> String {
    format!(
        "chunk {} of {total} ({:.1}-{:.1} s)",
        chunk.index + 1,
        chunk.start,
        chunk.end
    )
}

impl Store {
    /// Cuts a job into chunks at `spans` (start and end seconds, in order)
    /// unless it has chunks already, and returns its chunks. Two holders
    /// that both cut it keep the first one's.
    pub async fn create_chunks(
        &self,
        job_id: Uuid,
        spans: &[(f64, f64)],
        message: &str,
    ) -> Result<Vec<Chunk>, StoreError> {
        let job = self.job(job_id).await?;
        let mut tx = self.pool.begin().await?;
        let mut inserted = 0;
        for (index, (start, end)) in spans.iter().enumerate() {
            inserted += sqlx::query(
                "INSERT INTO transcription_chunks (job_id, idx, start_seconds, end_seconds, status) \
                 VALUES ($1, $2, $3, $4, 'QUEUED') ON CONFLICT (job_id, idx) DO NOTHING",
            )
            .bind(job_id.to_string())
            .bind(index as i64)
            .bind(*start)
            .bind(*end)
            .execute(&mut *tx)
            .await?
            .rows_affected();
        }
        if inserted == spans.len() as u64 && inserted > 0 {
            insert_event(
                &mut tx,
                &job,
                Some(job.status),
                job.status,
                job.worker.as_deref(),
                message,
            )
            .await?;
            tx.commit().await?;
        } else {
            // Someone cut it first (or the spans are empty): theirs stand.
            tx.rollback().await?;
        }
        self.chunks(job_id).await
    }

    /// A job's chunks in order; empty when it was never cut.
    pub async fn chunks(&self, job_id: Uuid) -> Result<Vec<Chunk>, StoreError> {
        let rows = sqlx::query(&format!(
            "SELECT {CHUNK_COLUMNS} FROM transcription_chunks WHERE job_id = $1 ORDER BY idx"
        ))
        .bind(job_id.to_string())
        .fetch_all(&self.pool)
        .await?;
        rows.iter().map(rows::chunk).collect()
    }

    /// Chunks in all and chunks done, per job that has chunks.
    pub async fn chunk_counts(
        &self,
        job_ids: &[Uuid],
    ) -> Result<HashMap<Uuid, ChunkCounts>, StoreError> {
        let mut counts = HashMap::new();
        for ids in job_ids.chunks(500) {
            let list = (1..=ids.len())
                .map(|i| format!("${i}"))
                .collect::<Vec<_>>()
                .join(", ");
            let sql = format!(
                "SELECT job_id, COUNT(*) AS total, \
                 SUM(CASE WHEN status = 'COMPLETED' THEN 1 ELSE 0 END) AS done \
                 FROM transcription_chunks WHERE job_id IN ({list}) GROUP BY job_id"
            );
            let mut query = sqlx::query(&sql);
            for id in ids {
                query = query.bind(id.to_string());
            }
            for row in query.fetch_all(&self.pool).await? {
                let id = rows::uuid("transcription_chunks", "job_id", &row)?;
                let total: i64 = row.try_get("total")?;
                let done: i64 = row.try_get("done")?;
                counts.insert(
                    id,
                    ChunkCounts {
                        total: u32::try_from(total).unwrap_or(u32::MAX),
                        done: u32::try_from(done).unwrap_or(u32::MAX),
                    },
                );
            }
        }
        Ok(counts)
    }

    /// Claims a chunk in `scope` for `worker` with a lease: one waiting,
    /// or one whose holder stopped renewing its lease. Only chunks of
    /// running, uncancelled jobs are taken.
    pub async fn claim_chunk(
        &self,
        scope: ChunkScope,
        worker: &str,
        lease: Duration,
    ) -> Result<Option<Chunk>, StoreError> {
        let now = self.now().await?;
        self.fail_chunks_lost_too_often(now).await?;
        let (filter, job, index) = match scope {
            ChunkScope::Any => ("", None, None),
            ChunkScope::Job(id) => (" AND c.job_id = $2", Some(id), None),
            ChunkScope::One(id, index) => {
                (" AND c.job_id = $2 AND c.idx = $3", Some(id), Some(index))
            }
        };
        let sql = format!(
            "SELECT {} FROM transcription_chunks c JOIN processing_jobs j ON j.id = c.job_id \
             WHERE j.status = 'RUNNING' AND j.cancel_requested = 0 \
             AND (c.status = 'QUEUED' OR (c.status = 'RUNNING' AND c.lease_expires_at < $1)){filter} \
             ORDER BY j.started_at, c.job_id, c.idx LIMIT 1",
            CHUNK_COLUMNS
                .split(", ")
                .map(|c| format!("c.{c}"))
                .collect::<Vec<_>>()
                .join(", ")
        );
        // A few rounds: another worker may take the candidate first.
        for _ in 0..8 {
            let mut query = sqlx::query(&sql).bind(ts(now));
            if let Some(job) = job {
                query = query.bind(job.to_string());
            }
            if let Some(index) = index {
                query = query.bind(i64::from(index));
            }
            let Some(row) = query.fetch_optional(&self.pool).await? else {
                return Ok(None);
            };
            let old = rows::chunk(&row)?;
            let parent = self.job(old.job_id).await?;
            let total = self.chunk_total(old.job_id).await?;
            let mut tx = self.pool.begin().await?;
            let row = sqlx::query(&format!(
                "UPDATE transcription_chunks SET status = 'RUNNING', worker = $1, \
                 attempt = attempt + 1, lease_expires_at = $2, started_at = $3, error = NULL \
                 WHERE job_id = $4 AND idx = $5 AND attempt = $6 \
                 AND (status = 'QUEUED' OR (status = 'RUNNING' AND lease_expires_at < $3)) \
                 RETURNING {CHUNK_COLUMNS}"
            ))
            .bind(worker)
            .bind(ts(lease_end(now, lease)))
            .bind(ts(now))
            .bind(old.job_id.to_string())
            .bind(i64::from(old.index))
            .bind(i64::from(old.attempt))
            .fetch_optional(&mut *tx)
            .await?;
            let Some(row) = row else {
                tx.rollback().await?;
                continue;
            };
            let chunk = rows::chunk(&row)?;
            let lost = match (&old.status, &old.worker) {
                (ChunkStatus::Running, Some(holder)) => {
                    format!(", after {holder} was lost with it")
                }
                _ => String::new(),
            };
            let message = format!(
                "{} taken by {worker} (attempt {}{lost})",
                label(&chunk, total),
                chunk.attempt
            );
            insert_event(
                &mut tx,
                &parent,
                Some(parent.status),
                parent.status,
                Some(worker),
                &message,
            )
            .await?;
            tx.commit().await?;
            return Ok(Some(chunk));
        }
        Ok(None)
    }

    /// Fails the chunks whose workers vanished [`MAX_LOST_LEASES`] times:
    /// a stretch of audio that kills every worker that reads it.
    async fn fail_chunks_lost_too_often(&self, now: DateTime<Utc>) -> Result<(), StoreError> {
        sqlx::query(
            "UPDATE transcription_chunks SET status = 'FAILED', \
             error = 'its worker was lost on every attempt' \
             WHERE status = 'RUNNING' AND lease_expires_at < $1 AND attempt >= $2",
        )
        .bind(ts(now))
        .bind(i64::from(MAX_LOST_LEASES))
        .execute(&self.pool)
        .await?;
        Ok(())
    }

    async fn chunk_total(&self, job_id: Uuid) -> Result<u32, StoreError> {
        let total: i64 =
            sqlx::query_scalar("SELECT COUNT(*) FROM transcription_chunks WHERE job_id = $1")
                .bind(job_id.to_string())
                .fetch_one(&self.pool)
                .await?;
        Ok(u32::try_from(total).unwrap_or(u32::MAX))
    }

    /// Renews a chunk's lease.
    pub async fn heartbeat_chunk(
        &self,
        held: &ChunkLease,
        lease: Duration,
    ) -> Result<ChunkBeat, StoreError> {
        let now = self.now().await?;
        let renewed = sqlx::query(
            "UPDATE transcription_chunks SET lease_expires_at = $1 \
             WHERE job_id = $2 AND idx = $3 AND worker = $4 AND attempt = $5 AND status = 'RUNNING'",
        )
        .bind(ts(lease_end(now, lease)))
        .bind(held.job_id.to_string())
        .bind(i64::from(held.index))
        .bind(&held.worker)
        .bind(i64::from(held.attempt))
        .execute(&self.pool)
        .await?
        .rows_affected();
        if renewed == 0 {
            return Ok(ChunkBeat::Lost);
        }
        let job = self.job(held.job_id).await?;
        Ok(ChunkBeat::Held {
            stop: job.cancel_requested || job.status.is_final(),
        })
    }

    /// Stores a held chunk's segments (in the file's timeline) and marks it
    /// done; false when the chunk is no longer this worker's.
    pub async fn complete_chunk(
        &self,
        held: &ChunkLease,
        language: &str,
        language_probability: f32,
        segments: Vec<Segment>,
        message: &str,
    ) -> Result<bool, StoreError> {
        let result = rows::ChunkResult {
            language_probability,
            segments,
        };
        let body = serde_json::to_string(&result).map_err(|e| StoreError::Corrupt {
            table: "transcription_chunks",
            message: format!("segments do not serialize: {e}"),
        })?;
        self.end_chunk(
            held,
            ChunkStatus::Completed,
            Some((language, &body)),
            None,
            message,
        )
        .await
    }

    /// Ends a held chunk's attempt with `error`: waiting again when the
    /// error may pass and attempts remain, FAILED otherwise (the job then
    /// fails with it). Returns the status it got, `None` when it was no
    /// longer this worker's.
    pub async fn fail_chunk(
        &self,
        held: &ChunkLease,
        error: &str,
        retryable: bool,
        max_attempts: u32,
    ) -> Result<Option<ChunkStatus>, StoreError> {
        let status = if retryable && held.attempt < max_attempts {
            ChunkStatus::Queued
        } else {
            ChunkStatus::Failed
        };
        let message = format!(
            "attempt {} failed{}: {error}",
            held.attempt,
            if status == ChunkStatus::Queued {
                ", to be tried again"
            } else {
                ""
            }
        );
        let ended = self
            .end_chunk(held, status, None, Some(error), &message)
            .await?;
        Ok(ended.then_some(status))
    }

    /// Hands a held chunk back unfinished (shutdown, cancel), without
    /// counting the attempt.
    pub async fn release_chunk(&self, held: &ChunkLease, why: &str) -> Result<bool, StoreError> {
        self.end_chunk(
            held,
            ChunkStatus::Queued,
            None,
            None,
            &format!("handed back ({why})"),
        )
        .await
    }

    async fn end_chunk(
        &self,
        held: &ChunkLease,
        status: ChunkStatus,
        result: Option<(&str, &str)>,
        error: Option<&str>,
        message: &str,
    ) -> Result<bool, StoreError> {
        let now = self.now().await?;
        let parent = self.job(held.job_id).await?;
        let total = self.chunk_total(held.job_id).await?;
        // A chunk handed back keeps the attempt count it had before.
        let attempt_change: i64 = if status == ChunkStatus::Queued && error.is_none() {
            1
        } else {
            0
        };
        let mut tx = self.pool.begin().await?;
        let row = sqlx::query(&format!(
            "UPDATE transcription_chunks SET status = $1, lease_expires_at = NULL, \
             attempt = attempt - $2, \
             language = COALESCE($3, language), segments = COALESCE($4, segments), \
             error = $5, completed_at = $6 \
             WHERE job_id = $7 AND idx = $8 AND worker = $9 AND attempt = $10 AND status = 'RUNNING' \
             RETURNING {CHUNK_COLUMNS}"
        ))
        .bind(status.as_str())
        .bind(attempt_change)
        .bind(result.map(|(language, _)| language.to_string()))
        .bind(result.map(|(_, body)| body.to_string()))
        .bind(error.map(str::to_string))
        .bind((status == ChunkStatus::Completed).then(|| ts(now)))
        .bind(held.job_id.to_string())
        .bind(i64::from(held.index))
        .bind(&held.worker)
        .bind(i64::from(held.attempt))
        .fetch_optional(&mut *tx)
        .await?;
        let Some(row) = row else {
            tx.rollback().await?;
            return Ok(false);
        };
        let chunk = rows::chunk(&row)?;
        let message = format!("{} {message}", label(&chunk, total));
        insert_event(
            &mut tx,
            &parent,
            Some(parent.status),
            parent.status,
            Some(&held.worker),
            &message,
        )
        .await?;
        tx.commit().await?;
        Ok(true)
    }
}

/// Puts a retried job's unfinished chunks back to waiting with fresh
/// attempts; its finished chunks are kept and not run again.
pub(crate) async fn requeue_unfinished(
    tx: &mut sqlx::Transaction<'_, sqlx::Any>,
    job_id: Uuid,
) -> Result<(), StoreError> {
    sqlx::query(
        "UPDATE transcription_chunks SET status = 'QUEUED', attempt = 0, error = NULL, \
         worker = NULL, lease_expires_at = NULL WHERE job_id = $1 AND status <> 'COMPLETED'",
    )
    .bind(job_id.to_string())
    .execute(&mut **tx)
    .await?;
    Ok(())
}
