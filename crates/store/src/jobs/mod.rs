//! Jobs: what a job to create is, the claim rule, leases, and the
//! transaction pieces every transition shares (events, locks, the guarded
//! write, dependents); claims, outcomes and the event feed are submodules.

use chrono::{DateTime, Duration as TimeDelta, Utc};
use pipeline_core::{
    AudioStatus, Diarization, JobError, JobStatus, JobType, ProcessingJob, Transcript,
};
use sqlx::{Any, Row, Transaction};
use std::collections::{BTreeMap, BTreeSet};
use std::time::Duration;
use uuid::Uuid;

use crate::audio::{
    refresh_audio_status, write_audio_status, write_diarization, write_results, write_transcript,
    AudioResults,
};
use crate::rows::{self, ts, JOB_COLUMNS};
use crate::webhooks::{Outbox, ENDPOINT_COLUMN};
use crate::{Backend, Store, StoreError};

mod claim;
mod feed;
mod outcome;

pub(crate) use claim::take;

/// A job to create at ingest.
#[derive(Debug, Clone)]
pub struct NewJob {
    pub job_type: JobType,
    pub max_attempts: u32,
    /// A chosen id (for a Celery task id known up front); random when `None`.
    pub id: Option<Uuid>,
    /// The queue's message id; the job id when `None`.
    pub task_id: Option<String>,
    /// The queue that carries it (`embedded`, `amqp`, `redis`).
    pub transport: String,
}

impl NewJob {
    /// A job of this type with a fresh id.
    pub fn new(job_type: JobType, max_attempts: u32) -> Self {
        Self {
            job_type,
            max_attempts,
            id: None,
            task_id: None,
            transport: "embedded".to_string(),
        }
    }

    /// Jobs with a dependency wait for it; the others are queued at once.
    pub(crate) fn initial_status(&self) -> JobStatus {
        if !self.job_type.depends_on().is_empty() {
            JobStatus::Pending
        } else {
            JobStatus::Queued
        }
    }
}

/// What became of a worker's attempt to claim one job whose message it received.
#[derive(Debug, Clone, PartialEq)]
pub enum JobClaim {
    /// The job is now RUNNING for this worker.
    Claimed(ProcessingJob),
    /// Waiting for its backoff to end, at this instant.
    NotYet(DateTime<Utc>),
    /// Another worker holds it until this instant (unless it renews).
    Busy {
        holder: String,
        until: DateTime<Utc>,
    },
    /// It waits for an earlier stage; that stage's end dispatches it again.
    Waiting,
    /// It has ended already (a duplicate delivery).
    Finished(JobStatus),
    /// No such job (its file was deleted).
    Missing,
}

/// What claiming a job as it was read calls for.
// Short-lived, one per job read: boxing the answer would cost more than it saves.
#[allow(clippy::large_enum_variant)]
pub(crate) enum ClaimStep {
    /// The answer, without claiming.
    Answer(JobClaim),
    /// Take it from the status it was read with.
    Take,
    /// Its holder's lease ran out: reclaim it, then look again.
    Reclaim,
}

impl ClaimStep {
    /// The step for `job` as read at `now`; the one rule that single and
    /// batched claims share.
    pub(crate) fn of(job: &ProcessingJob, now: DateTime<Utc>) -> Self {
        match job.status {
            JobStatus::Queued | JobStatus::Retrying if job.available_at > now => {
                ClaimStep::Answer(JobClaim::NotYet(job.available_at))
            }
            JobStatus::Queued | JobStatus::Retrying => ClaimStep::Take,
            JobStatus::Running => {
                let until = job.lease_expires_at.unwrap_or(now);
                if until < now {
                    ClaimStep::Reclaim
                } else {
                    ClaimStep::Answer(JobClaim::Busy {
                        holder: job.worker.clone().unwrap_or_default(),
                        until,
                    })
                }
            }
            JobStatus::Pending => ClaimStep::Answer(JobClaim::Waiting),
            status => ClaimStep::Answer(JobClaim::Finished(status)),
        }
    }
}

/// What a worker learns when it renews its lease.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Heartbeat {
    /// The lease is renewed; stop at the next progress point if cancelled.
    Held { cancel_requested: bool },
    /// The job is no longer ours (lease expired and reclaimed, or it ended).
    Lost,
}

/// Attempts a job may lose with its worker (SIGKILL, OOM, a lost machine)
/// before it is FAILED, unless [`Store::with_max_lost_leases`] says
/// otherwise: well above any `max_attempts`, so that outside kills never
/// fail a job, while a file that kills every worker it meets still ends.
pub const MAX_LOST_LEASES: u32 = 20;

pub(crate) fn lease_end(now: DateTime<Utc>, lease: Duration) -> DateTime<Utc> {
    now + TimeDelta::from_std(lease).unwrap_or(TimeDelta::seconds(60))
}

/// Appends one audit event for a transition of `job`.
pub(crate) async fn insert_event(
    tx: &mut Transaction<'_, Any>,
    job: &ProcessingJob,
    from: Option<JobStatus>,
    to: JobStatus,
    worker: Option<&str>,
    message: &str,
) -> Result<(), StoreError> {
    let event = NewEvent {
        job,
        from,
        to,
        worker,
        message: message.to_string(),
    };
    insert_events(tx, &[event]).await
}

/// One audit event of a transition of `job`.
pub(crate) struct NewEvent<'a> {
    pub(crate) job: &'a ProcessingJob,
    pub(crate) from: Option<JobStatus>,
    pub(crate) to: JobStatus,
    pub(crate) worker: Option<&'a str>,
    pub(crate) message: String,
}

/// Appends audit events in one statement.
pub(crate) async fn insert_events(
    tx: &mut Transaction<'_, Any>,
    events: &[NewEvent<'_>],
) -> Result<(), StoreError> {
    if events.is_empty() {
        return Ok(());
    }
    let rows = (0..events.len())
        .map(|i| format!("({})", placeholders(1 + i * 7, 7)))
        .collect::<Vec<_>>()
        .join(", ");
    let sql = format!(
        "INSERT INTO job_events (job_id, at, from_status, to_status, attempt, worker, message) \
         VALUES {rows}"
    );
    let now = ts(Utc::now());
    let mut query = sqlx::query(&sql);
    for event in events {
        query = query
            .bind(event.job.id.to_string())
            .bind(now.clone())
            .bind(event.from.map(|s| s.as_str()))
            .bind(event.to.as_str())
            .bind(i64::from(event.job.attempt))
            .bind(event.worker.map(str::to_string))
            .bind(event.message.clone());
    }
    query.execute(&mut **tx).await?;
    Ok(())
}

/// Takes the write lock on a file's jobs before reading them, so that the
/// transaction sees what it changes (SQLite's deferred transactions would
/// otherwise fail on upgrade; PostgreSQL locks the rows in id order).
///
/// Returns `outbox` knowing whether the file has its own webhook endpoint.
async fn lock_jobs(
    tx: &mut Transaction<'_, Any>,
    outbox: Outbox,
    audio_id: Uuid,
) -> Result<(Vec<ProcessingJob>, Outbox), StoreError> {
    Ok(lock_files(tx, outbox, &[audio_id])
        .await?
        .remove(&audio_id)
        .unwrap_or((Vec::new(), outbox)))
}

/// [`lock_jobs`] for several files in one statement: each file's jobs in
/// stage order, with the outbox that knows whether it has its own endpoint.
pub(crate) async fn lock_files(
    tx: &mut Transaction<'_, Any>,
    outbox: Outbox,
    audio_ids: &[Uuid],
) -> Result<BTreeMap<Uuid, (Vec<ProcessingJob>, Outbox)>, StoreError> {
    let ids = placeholders(1, audio_ids.len());
    let sql = if tx.backend_name() == "PostgreSQL" {
        // The lock an UPDATE takes, without the new row versions (and their
        // WAL) that a no-op update writes; in id order, so that two batches
        // with files in common cannot deadlock.
        format!(
            "SELECT {JOB_COLUMNS}, {ENDPOINT_COLUMN} FROM processing_jobs \
             WHERE audio_id IN ({ids}) ORDER BY id FOR NO KEY UPDATE OF processing_jobs"
        )
    } else {
        // SQLite has no row locks: the no-op update makes this transaction
        // the database's one writer before it reads.
        format!(
            "UPDATE processing_jobs SET status = status WHERE audio_id IN ({ids}) \
             RETURNING {JOB_COLUMNS}, {ENDPOINT_COLUMN}"
        )
    };
    let mut query = sqlx::query(&sql);
    for id in audio_ids {
        query = query.bind(id.to_string());
    }
    let mut files: BTreeMap<Uuid, (Vec<ProcessingJob>, Outbox)> = BTreeMap::new();
    for row in query.fetch_all(&mut **tx).await? {
        let job = rows::job(&row)?;
        let file_outbox = outbox.for_row(&row)?;
        files
            .entry(job.audio_id)
            .or_insert_with(|| (Vec::new(), file_outbox))
            .0
            .push(job);
    }
    for (jobs, _) in files.values_mut() {
        jobs.sort_by(|a, b| {
            a.job_type
                .cmp(&b.job_type)
                .then(a.created_at.cmp(&b.created_at))
                .then(a.id.cmp(&b.id))
        });
    }
    Ok(files)
}

/// Puts the moved versions of jobs in place in a file's list.
pub(crate) fn replace_moved(jobs: &mut [ProcessingJob], moved: &[ProcessingJob]) {
    for job in jobs {
        if let Some(now) = moved.iter().find(|m| m.id == job.id) {
            *job = now.clone();
        }
    }
}

/// Writes `new` over `old` if nobody changed `old` meanwhile, with its event.
async fn write_transition(
    tx: &mut Transaction<'_, Any>,
    outbox: Outbox,
    old: &ProcessingJob,
    new: &ProcessingJob,
    worker: Option<&str>,
    message: &str,
) -> Result<(), StoreError> {
    old.status.transition(new.status).or_else(|e| {
        // A job may record a note without moving (a cancel request).
        if old.status == new.status {
            Ok(new.status)
        } else {
            Err(e)
        }
    })?;
    let result = sqlx::query(
        "UPDATE processing_jobs SET status = $1, progress = $2, attempt = $3, worker = $4, \
         heartbeat_at = $5, lease_expires_at = $6, available_at = $7, cancel_requested = $8, \
         error_kind = $9, error_message = $10, started_at = $11, completed_at = $12, \
         lost_leases = $16, \
         dispatched_at = CASE WHEN $1 IN ('QUEUED', 'RETRYING') THEN NULL ELSE dispatched_at END \
         WHERE id = $13 AND status = $14 AND attempt = $15",
    )
    .bind(new.status.as_str())
    .bind(new.progress)
    .bind(i64::from(new.attempt))
    .bind(new.worker.clone())
    .bind(new.heartbeat_at.map(ts))
    .bind(new.lease_expires_at.map(ts))
    .bind(ts(new.available_at))
    .bind(i64::from(new.cancel_requested))
    .bind(new.error.as_ref().map(|e| e.kind.as_str()))
    .bind(new.error.as_ref().map(|e| e.message.clone()))
    .bind(new.started_at.map(ts))
    .bind(new.completed_at.map(ts))
    .bind(old.id.to_string())
    .bind(old.status.as_str())
    .bind(i64::from(old.attempt))
    .bind(i64::from(new.lost_leases))
    .execute(&mut **tx)
    .await?;
    if result.rows_affected() != 1 {
        return Err(StoreError::Conflict {
            job_id: old.id,
            message: format!("expected {} at attempt {}", old.status, old.attempt),
        });
    }
    insert_event(tx, new, Some(old.status), new.status, worker, message).await?;
    outbox.job_moved(tx, Some(old.status), new).await
}

/// A job's attempt as it ended, with its file's jobs as they are now.
#[derive(Debug, Clone)]
pub struct Ended {
    /// The job after the transition.
    pub job: ProcessingJob,
    /// All jobs of the file, in stage order, including the ones it released.
    pub file_jobs: Vec<ProcessingJob>,
}

/// The claim a worker holds on one attempt of a job.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Lease {
    pub job_id: Uuid,
    pub audio_id: Uuid,
    pub worker: String,
    pub attempt: u32,
}

impl Lease {
    /// The lease of a job as [`Store::claim`] returned it.
    pub fn of(job: &ProcessingJob) -> Lease {
        Lease {
            job_id: job.id,
            audio_id: job.audio_id,
            worker: job.worker.clone().unwrap_or_default(),
            attempt: job.attempt,
        }
    }
}

/// The job if `worker` holds `attempt` of it, or why it does not.
pub(crate) fn held_by<'a>(
    jobs: &'a [ProcessingJob],
    job_id: Uuid,
    worker: &str,
    attempt: u32,
) -> Result<&'a ProcessingJob, StoreError> {
    let job = jobs
        .iter()
        .find(|j| j.id == job_id)
        .ok_or(StoreError::NotFound {
            what: "job",
            id: job_id,
        })?;
    if job.status != JobStatus::Running
        || job.worker.as_deref() != Some(worker)
        || job.attempt != attempt
    {
        return Err(StoreError::Conflict {
            job_id,
            message: format!(
                "{worker} no longer holds attempt {attempt} (job is {} at attempt {}, worker {})",
                job.status,
                job.attempt,
                job.worker.as_deref().unwrap_or("none")
            ),
        });
    }
    Ok(job)
}

/// What a stage leaves behind, written with its job's completion in the
/// same transaction, under the same lease guard: a worker that lost its
/// lease writes none of it.
#[derive(Debug, Clone, Copy, Default)]
pub struct StageOutput<'a> {
    /// What PROCESSING rendered.
    pub results: Option<&'a AudioResults>,
    /// The file's transcript (TRANSCRIPTION's, or PROCESSING's with the
    /// speakers merged in), replacing the stored one.
    pub transcript: Option<&'a Transcript>,
    /// DIARIZATION's speaker turns, replacing the stored ones.
    pub diarization: Option<&'a Diarization>,
}

/// The jobs of a file that `job` waits for (see [`JobType::depends_on`]).
pub(crate) fn prerequisites<'a>(
    jobs: &'a [ProcessingJob],
    job: &'a ProcessingJob,
) -> impl Iterator<Item = &'a ProcessingJob> + 'a {
    jobs.iter()
        .filter(move |j| j.id != job.id && job.job_type.waits_for(j.job_type))
}

/// `roots` and every job of the file that waits for one of them, directly
/// or through another.
pub(crate) fn with_dependents(
    jobs: &[ProcessingJob],
    roots: impl IntoIterator<Item = Uuid>,
) -> BTreeSet<Uuid> {
    let mut set: BTreeSet<Uuid> = roots.into_iter().collect();
    loop {
        let before = set.len();
        for job in jobs {
            if !set.contains(&job.id)
                && jobs
                    .iter()
                    .any(|p| set.contains(&p.id) && job.job_type.waits_for(p.job_type))
            {
                set.insert(job.id);
            }
        }
        if set.len() == before {
            return set;
        }
    }
}

/// `A`, `A and B`, `A, B and C`.
fn and_list(names: &[&str]) -> String {
    match names {
        [] => String::new(),
        [one] => one.to_string(),
        [rest @ .., last] => format!("{} and {last}", rest.join(", ")),
    }
}

/// Which expired leases [`Store::reclaim_expired`] puts back.
#[derive(Debug, Clone, Copy)]
pub enum Reclaim<'a> {
    /// Every job carried by this transport (`embedded`, `amqp`, `redis`).
    Transport(&'a str),
    /// One job, whose message has just been delivered.
    Job(Uuid),
}

impl Store {
    /// One job.
    pub async fn job(&self, id: Uuid) -> Result<ProcessingJob, StoreError> {
        let row = sqlx::query(&format!(
            "SELECT {JOB_COLUMNS} FROM processing_jobs WHERE id = $1"
        ))
        .bind(id.to_string())
        .fetch_optional(&self.pool)
        .await?;
        match row {
            Some(row) => rows::job(&row),
            None => Err(StoreError::NotFound { what: "job", id }),
        }
    }

    /// The jobs of a file, in pipeline order.
    pub async fn jobs_for_audio(&self, audio_id: Uuid) -> Result<Vec<ProcessingJob>, StoreError> {
        let rows = sqlx::query(&format!(
            "SELECT {JOB_COLUMNS} FROM processing_jobs WHERE audio_id = $1"
        ))
        .bind(audio_id.to_string())
        .fetch_all(&self.pool)
        .await?;
        let mut jobs: Vec<ProcessingJob> = rows.iter().map(rows::job).collect::<Result<_, _>>()?;
        jobs.sort_by_key(|j| j.job_type);
        Ok(jobs)
    }

    /// The audit trail of a job, oldest first.
    pub async fn events_for_job(
        &self,
        job_id: Uuid,
    ) -> Result<Vec<pipeline_core::JobEvent>, StoreError> {
        let rows = sqlx::query(
            "SELECT id, job_id, at, from_status, to_status, attempt, worker, message \
             FROM job_events WHERE job_id = $1 ORDER BY id",
        )
        .bind(job_id.to_string())
        .fetch_all(&self.pool)
        .await?;
        rows.iter().map(rows::event).collect()
    }
    /// Number of jobs in each status.
    pub async fn queue_depth(&self) -> Result<BTreeMap<String, u64>, StoreError> {
        let rows = sqlx::query("SELECT status, COUNT(*) AS n FROM processing_jobs GROUP BY status")
            .fetch_all(&self.pool)
            .await?;
        let mut depth: BTreeMap<String, u64> = JobStatus::ALL
            .iter()
            .map(|s| (s.as_str().to_string(), 0))
            .collect();
        for row in rows {
            let status: String = row.try_get("status")?;
            let n: i64 = row.try_get("n")?;
            depth.insert(status, u64::try_from(n).unwrap_or(0));
        }
        Ok(depth)
    }
}

/// `$first, $first+1, ...`: `count` numbered placeholders for an IN list.
pub(crate) fn placeholders(first: usize, count: usize) -> String {
    (first..first + count)
        .map(|n| format!("${n}"))
        .collect::<Vec<_>>()
        .join(", ")
}

/// Moves the jobs that wait on `done_type` once it has ended (`jobs` as
/// they were before it ended): QUEUED when it completed and so has every
/// other job they wait for (else they keep waiting, with a note), FAILED
/// or CANCELLED with it.
pub(crate) async fn settle_dependents(
    tx: &mut Transaction<'_, Any>,
    outbox: Outbox,
    jobs: &[ProcessingJob],
    done_type: JobType,
    to: JobStatus,
    now: DateTime<Utc>,
) -> Result<Vec<ProcessingJob>, StoreError> {
    let mut moved = Vec::new();
    for old in jobs
        .iter()
        .filter(|j| j.job_type.waits_for(done_type) && j.status == JobStatus::Pending)
    {
        let mut new = old.clone();
        new.status = to;
        let message = match to {
            JobStatus::Queued => {
                let waiting: Vec<&str> = prerequisites(jobs, old)
                    .filter(|p| p.job_type != done_type && p.status != JobStatus::Completed)
                    .map(|p| p.job_type.as_str())
                    .collect();
                if !waiting.is_empty() {
                    let note = format!(
                        "{done_type} completed; still waiting for {}",
                        and_list(&waiting)
                    );
                    insert_event(tx, old, Some(old.status), old.status, None, &note).await?;
                    continue;
                }
                new.available_at = now;
                format!("{done_type} completed; queued")
            }
            JobStatus::Failed => {
                new.completed_at = Some(now);
                new.error = Some(JobError::permanent(format!("{done_type} failed")));
                format!("{done_type} failed; not run")
            }
            _ => {
                new.completed_at = Some(now);
                format!("{done_type} {to}; not run")
            }
        };
        write_transition(tx, outbox, old, &new, None, &message).await?;
        moved.push(new);
    }
    Ok(moved)
}
