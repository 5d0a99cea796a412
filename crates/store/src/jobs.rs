//! Job transitions and the embedded queue's lease operations.

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

    /// Claims the next runnable job of the embedded queue for `worker` with
    /// a lease, first putting back jobs whose holder stopped renewing its
    /// lease. Jobs carried by a broker are claimed by [`Store::claim_job`]
    /// when their message arrives.
    pub async fn claim(
        &self,
        worker: &str,
        job_types: &[JobType],
        lease: Duration,
    ) -> Result<Option<ProcessingJob>, StoreError> {
        // Only the embedded queue's own jobs: one carried by a broker that
        // is put back here would wait for a message nobody sends again.
        self.reclaim_expired(Reclaim::Transport("embedded")).await?;
        let mut types: Vec<JobType> = if job_types.is_empty() {
            JobType::ALL.to_vec()
        } else {
            job_types.to_vec()
        };
        // Later stages first: a file whose transcription is done is
        // rendered before the next file's transcription starts, so files
        // complete at a steady rate instead of all at the end.
        types.sort_by(|a, b| b.cmp(a));
        types.dedup();
        let now = self.now().await?;
        for job_type in types {
            if let Some(job) = self.claim_of_type(worker, job_type, lease, now).await? {
                return Ok(Some(job));
            }
        }
        Ok(None)
    }

    /// [`Store::claim`] for one job type.
    async fn claim_of_type(
        &self,
        worker: &str,
        job_type: JobType,
        lease: Duration,
        now: DateTime<Utc>,
    ) -> Result<Option<ProcessingJob>, StoreError> {
        // A few rounds: on SQLite another worker may win the race for the
        // candidate we picked, and then the next one is tried.
        for _ in 0..8 {
            let candidate_sql = format!(
                "SELECT id, status, attempt FROM processing_jobs \
                 WHERE status IN ('QUEUED', 'RETRYING') AND available_at <= $1 \
                 AND transport = 'embedded' AND job_type = $2 \
                 ORDER BY available_at, created_at, id LIMIT 1{}",
                if self.backend == Backend::Postgres {
                    " FOR UPDATE SKIP LOCKED"
                } else {
                    ""
                }
            );
            let candidate = sqlx::query(&candidate_sql)
                .bind(ts(now))
                .bind(job_type.as_str());
            // PostgreSQL locks the candidate inside the transaction and other
            // workers skip it. SQLite must write before it reads inside a
            // transaction (a deferred read lock cannot be upgraded while
            // another connection writes), so it picks the candidate outside
            // and the guarded UPDATE below settles any race.
            let (mut tx, row) = match self.backend {
                Backend::Postgres => {
                    let mut tx = self.pool.begin().await?;
                    let row = candidate.fetch_optional(&mut *tx).await?;
                    (tx, row)
                }
                Backend::Sqlite => {
                    let row = candidate.fetch_optional(&self.pool).await?;
                    (self.pool.begin().await?, row)
                }
            };
            let Some(row) = row else {
                return Ok(None);
            };
            let id = rows::uuid("processing_jobs", "id", &row)?;
            let from: String = row.try_get("status")?;
            let from: JobStatus = rows::parse("processing_jobs", "status", &from)?;
            let Some(job) = take(&mut tx, self.outbox, &[(id, from)], worker, lease, now)
                .await?
                .pop()
            else {
                tx.rollback().await?;
                continue;
            };
            tx.commit().await?;
            return Ok(Some(job));
        }
        Ok(None)
    }

    /// Puts back (or fails, when out of attempts) running jobs in `scope`
    /// whose lease expired: their worker died or lost its connection.
    /// Returns the jobs as they are now, so that whoever put back a broker's
    /// jobs sends their messages again: only the broker's own sweep (all of
    /// its transport's jobs) or the delivery of a job's own message may put
    /// back a job a broker carries.
    pub async fn reclaim_expired(
        &self,
        scope: Reclaim<'_>,
    ) -> Result<Vec<ProcessingJob>, StoreError> {
        let now = self.now().await?;
        let (filter, value) = match scope {
            Reclaim::Transport(transport) => ("transport = $2", transport.to_string()),
            Reclaim::Job(id) => ("id = $2", id.to_string()),
        };
        let rows = sqlx::query(&format!(
            "SELECT id, audio_id FROM processing_jobs \
             WHERE status = 'RUNNING' AND lease_expires_at < $1 AND {filter}"
        ))
        .bind(ts(now))
        .bind(value)
        .fetch_all(&self.pool)
        .await?;
        let mut reclaimed = Vec::new();
        for row in rows {
            let id = rows::uuid("processing_jobs", "id", &row)?;
            let audio_id = rows::uuid("processing_jobs", "audio_id", &row)?;
            let mut tx = self.pool.begin().await?;
            let (jobs, outbox) = lock_jobs(&mut tx, self.outbox, audio_id).await?;
            let Some(old) = jobs.iter().find(|j| j.id == id) else {
                continue;
            };
            let expired =
                old.status == JobStatus::Running && old.lease_expires_at.is_some_and(|at| at < now);
            if !expired {
                tx.rollback().await?;
                continue;
            }
            let holder = old.worker.clone().unwrap_or_else(|| "unknown".to_string());
            let mut new = old.clone();
            new.worker = None;
            new.lease_expires_at = None;
            new.heartbeat_at = None;
            // A vanished worker is not the job's failure; only a file that
            // keeps taking its workers down ends FAILED for it.
            new.lost_leases = old.lost_leases.saturating_add(1);
            let bound = self.max_lost_leases;
            let message = if new.lost_leases >= bound {
                new.status = JobStatus::Failed;
                new.completed_at = Some(now);
                new.error = Some(JobError::permanent(format!(
                    "its worker vanished {} times while running it (last {holder}): \
                     the file may be crashing workers",
                    new.lost_leases
                )));
                format!(
                    "lease of {holder} expired; worker lost {} times, giving up",
                    new.lost_leases
                )
            } else {
                new.status = JobStatus::Queued;
                new.available_at = now;
                format!(
                    "lease of {holder} expired; queued again (worker lost {} of at most {bound} times)",
                    new.lost_leases
                )
            };
            write_transition(&mut tx, outbox, old, &new, None, &message).await?;
            if new.status == JobStatus::Failed {
                settle_dependents(&mut tx, outbox, &jobs, old.job_type, JobStatus::Failed, now)
                    .await?;
            }
            refresh_audio_status(&mut tx, outbox, audio_id).await?;
            tx.commit().await?;
            reclaimed.push(new);
        }
        Ok(reclaimed)
    }

    /// Claims one job whose message a broker delivered, if it is runnable;
    /// otherwise says why not, so the message can be held, dropped or acked.
    pub async fn claim_job(
        &self,
        id: Uuid,
        worker: &str,
        lease: Duration,
    ) -> Result<JobClaim, StoreError> {
        for _ in 0..4 {
            let job = match self.job(id).await {
                Ok(job) => job,
                Err(StoreError::NotFound { .. }) => return Ok(JobClaim::Missing),
                Err(e) => return Err(e),
            };
            let now = self.now().await?;
            match ClaimStep::of(&job, now) {
                ClaimStep::Answer(answer) => return Ok(answer),
                ClaimStep::Take => {
                    let mut tx = self.pool.begin().await?;
                    match take(
                        &mut tx,
                        self.outbox,
                        &[(id, job.status)],
                        worker,
                        lease,
                        now,
                    )
                    .await?
                    .pop()
                    {
                        Some(claimed) => {
                            tx.commit().await?;
                            return Ok(JobClaim::Claimed(claimed));
                        }
                        // Someone moved it meanwhile: look again.
                        None => tx.rollback().await?,
                    }
                }
                // Its holder is gone: put it back, then look again. Only
                // this job: its message is the one in hand.
                ClaimStep::Reclaim => {
                    self.reclaim_expired(Reclaim::Job(id)).await?;
                }
            }
        }
        Ok(JobClaim::Busy {
            holder: "another worker".to_string(),
            until: self.now_cached(),
        })
    }

    /// Adds a note to a job's audit trail without changing its status (a
    /// duplicate delivery, a fallback to the embedded queue).
    pub async fn note(
        &self,
        job_id: Uuid,
        worker: Option<&str>,
        message: &str,
    ) -> Result<(), StoreError> {
        let job = self.job(job_id).await?;
        let mut tx = self.pool.begin().await?;
        insert_event(&mut tx, &job, Some(job.status), job.status, worker, message).await?;
        tx.commit().await?;
        Ok(())
    }

    /// Moves jobs whose broker could not take them to the embedded queue,
    /// recording why in their audit trail.
    pub async fn fall_back_to_embedded(
        &self,
        job_ids: &[Uuid],
        reason: &str,
    ) -> Result<(), StoreError> {
        for id in job_ids {
            let job = self.job(*id).await?;
            let mut tx = self.pool.begin().await?;
            sqlx::query("UPDATE processing_jobs SET transport = 'embedded' WHERE id = $1")
                .bind(id.to_string())
                .execute(&mut *tx)
                .await?;
            let message = format!(
                "{} broker unavailable ({reason}); fell back to the embedded queue",
                job.transport
            );
            insert_event(&mut tx, &job, Some(job.status), job.status, None, &message).await?;
            tx.commit().await?;
        }
        Ok(())
    }

    /// Runnable or backing-off jobs carried by `transport`, oldest first: what
    /// must be sent again when a broker lost its messages.
    pub async fn waiting_on_transport(
        &self,
        transport: &str,
    ) -> Result<Vec<ProcessingJob>, StoreError> {
        let rows = sqlx::query(&format!(
            "SELECT {JOB_COLUMNS} FROM processing_jobs WHERE status IN ('QUEUED', 'RETRYING') \
             AND transport = $1 ORDER BY available_at, created_at, id"
        ))
        .bind(transport)
        .fetch_all(&self.pool)
        .await?;
        rows.iter().map(rows::job).collect()
    }

    /// Renews the lease of a running job and records its progress (0-100,
    /// never lowered).
    pub async fn heartbeat(
        &self,
        held: &Lease,
        progress: Option<f64>,
        lease: Duration,
    ) -> Result<Heartbeat, StoreError> {
        let now = self.now().await?;
        let row = sqlx::query(&format!(
            "UPDATE processing_jobs SET heartbeat_at = $1, lease_expires_at = $2, \
             progress = CASE WHEN $3 > progress THEN $3 ELSE progress END \
             WHERE id = $4 AND worker = $5 AND attempt = $6 AND status = 'RUNNING' \
             RETURNING {JOB_COLUMNS}, progress_notified"
        ))
        .bind(ts(now))
        .bind(ts(lease_end(now, lease)))
        .bind(progress.unwrap_or(-1.0).clamp(-1.0, 100.0))
        .bind(held.job_id.to_string())
        .bind(&held.worker)
        .bind(i64::from(held.attempt))
        .fetch_optional(&self.pool)
        .await?;
        let Some(row) = row else {
            return Ok(Heartbeat::Lost);
        };
        let job = rows::job(&row)?;
        if progress.is_some() {
            let notified: f64 = row.try_get("progress_notified")?;
            self.report_progress(&job, notified).await?;
        }
        Ok(Heartbeat::Held {
            cancel_requested: job.cancel_requested,
        })
    }

    /// Ends the attempt `worker` holds with the change `end` computes from
    /// the job, in one transaction with its event, the jobs that wait on it
    /// (moved to the status `end` names, if any), the stage's results and
    /// the file's status.
    async fn end_attempt(
        &self,
        held: &Lease,
        output: StageOutput<'_>,
        end: impl FnOnce(&ProcessingJob, DateTime<Utc>) -> (ProcessingJob, String, Option<JobStatus>),
    ) -> Result<Ended, StoreError> {
        let now = self.now().await?;
        let mut tx = self.pool.begin().await?;
        let (mut jobs, outbox) = lock_jobs(&mut tx, self.outbox, held.audio_id).await?;
        let old = held_by(&jobs, held.job_id, &held.worker, held.attempt)?;
        let (new, message, dependents) = end(old, now);
        write_transition(&mut tx, outbox, old, &new, Some(&held.worker), &message).await?;
        let mut moved = match dependents {
            Some(to) => settle_dependents(&mut tx, outbox, &jobs, old.job_type, to, now).await?,
            None => Vec::new(),
        };
        moved.push(new.clone());
        replace_moved(&mut jobs, &moved);
        // Under the same lock and guard as the job row: a worker that lost
        // its lease writes nothing at all.
        if let Some(results) = output.results {
            write_results(&mut tx, &[(held.audio_id, results)]).await?;
        }
        if let Some(transcript) = output.transcript {
            write_transcript(&mut tx, held.audio_id, transcript).await?;
        }
        if let Some(diarization) = output.diarization {
            write_diarization(&mut tx, held.audio_id, diarization).await?;
        }
        // The file's jobs are locked, so their statuses are known here.
        write_audio_status(
            &mut tx,
            outbox,
            held.audio_id,
            AudioStatus::derive(jobs.iter().map(|j| j.status)),
        )
        .await?;
        tx.commit().await?;
        Ok(Ended {
            job: new,
            file_jobs: jobs,
        })
    }

    /// Marks the holder's attempt COMPLETED and queues the jobs waiting on it.
    pub async fn complete(&self, held: &Lease, message: &str) -> Result<ProcessingJob, StoreError> {
        Ok(self.complete_with(held, message, None).await?.job)
    }

    /// Marks the holder's attempt COMPLETED with the results its stage made
    /// (stored in the same transaction) and queues the jobs waiting on it.
    pub async fn complete_with(
        &self,
        held: &Lease,
        message: &str,
        results: Option<&AudioResults>,
    ) -> Result<Ended, StoreError> {
        let output = StageOutput {
            results,
            ..StageOutput::default()
        };
        self.complete_with_output(held, message, output).await
    }

    /// Marks the holder's TRANSCRIPTION COMPLETED and stores its transcript
    /// in the same transaction, only while the lease is still the holder's.
    pub async fn complete_with_transcript(
        &self,
        held: &Lease,
        message: &str,
        transcript: &Transcript,
    ) -> Result<Ended, StoreError> {
        let output = StageOutput {
            transcript: Some(transcript),
            ..StageOutput::default()
        };
        self.complete_with_output(held, message, output).await
    }

    /// Marks the holder's DIARIZATION COMPLETED and stores its speaker
    /// turns in the same transaction, only while the lease is still the
    /// holder's.
    pub async fn complete_with_diarization(
        &self,
        held: &Lease,
        message: &str,
        diarization: &Diarization,
    ) -> Result<Ended, StoreError> {
        let output = StageOutput {
            diarization: Some(diarization),
            ..StageOutput::default()
        };
        self.complete_with_output(held, message, output).await
    }

    /// Marks the holder's attempt COMPLETED with everything its stage left
    /// behind, in one transaction, only while the lease is still the
    /// holder's; queues the jobs that wait on it once all they wait for
    /// has completed.
    pub async fn complete_with_output(
        &self,
        held: &Lease,
        message: &str,
        output: StageOutput<'_>,
    ) -> Result<Ended, StoreError> {
        self.end_attempt(held, output, |old, now| {
            let mut new = old.clone();
            new.status = JobStatus::Completed;
            new.progress = 100.0;
            new.completed_at = Some(now);
            new.lease_expires_at = None;
            new.error = None;
            (new, message.to_string(), Some(JobStatus::Queued))
        })
        .await
    }

    /// Ends the holder's attempt with an error: RETRYING until `retry_at`
    /// when given, else FAILED (and the jobs waiting on it fail too).
    pub async fn fail(
        &self,
        held: &Lease,
        error: &JobError,
        retry_at: Option<DateTime<Utc>>,
    ) -> Result<ProcessingJob, StoreError> {
        self.end_attempt(held, StageOutput::default(), |old, now| {
            let mut new = old.clone();
            new.error = Some(error.clone());
            new.lease_expires_at = None;
            match retry_at {
                Some(at) => {
                    new.status = JobStatus::Retrying;
                    new.available_at = at;
                    let message = format!(
                        "attempt {} of {} failed: {}; retrying at {}",
                        old.attempt,
                        old.max_attempts,
                        error.message,
                        ts(at)
                    );
                    (new, message, None)
                }
                None => {
                    new.status = JobStatus::Failed;
                    new.completed_at = Some(now);
                    (new, format!("failed: {error}"), Some(JobStatus::Failed))
                }
            }
        })
        .await
        .map(|ended| ended.job)
    }

    /// Hands a running job back to the queue (a worker shutting down): the
    /// attempt is not counted.
    pub async fn release(&self, held: &Lease, message: &str) -> Result<ProcessingJob, StoreError> {
        self.end_attempt(held, StageOutput::default(), |old, now| {
            let mut new = old.clone();
            new.status = JobStatus::Queued;
            new.attempt = old.attempt.saturating_sub(1);
            new.worker = None;
            new.lease_expires_at = None;
            new.available_at = now;
            (new, message.to_string(), None)
        })
        .await
        .map(|ended| ended.job)
    }

    /// The holder stops a job whose cancellation was requested.
    pub async fn cancel_running(&self, held: &Lease) -> Result<ProcessingJob, StoreError> {
        self.end_attempt(held, StageOutput::default(), |old, now| {
            let mut new = old.clone();
            new.status = JobStatus::Cancelled;
            new.completed_at = Some(now);
            new.lease_expires_at = None;
            let message = "cancelled while running".to_string();
            (new, message, Some(JobStatus::Cancelled))
        })
        .await
        .map(|ended| ended.job)
    }

    /// Cancels a file's unfinished jobs (or one job and those waiting on
    /// it): waiting ones at once, running ones at their next progress point.
    pub async fn cancel(
        &self,
        audio_id: Uuid,
        only_job: Option<Uuid>,
    ) -> Result<Vec<ProcessingJob>, StoreError> {
        let mut tx = self.pool.begin().await?;
        let (jobs, outbox) = lock_jobs(&mut tx, self.outbox, audio_id).await?;
        let mut changed = Vec::new();
        let targets = match only_job {
            Some(id) if jobs.iter().any(|j| j.id == id) => Some(with_dependents(&jobs, [id])),
            Some(id) => return Err(StoreError::NotFound { what: "job", id }),
            None => None,
        };
        for old in &jobs {
            if targets.as_ref().is_some_and(|t| !t.contains(&old.id)) || old.status.is_final() {
                continue;
            }
            let mut new = old.clone();
            let message = if old.status == JobStatus::Running {
                if old.cancel_requested {
                    continue;
                }
                new.cancel_requested = true;
                "cancel requested; the worker stops at its next progress point"
            } else {
                new.status = JobStatus::Cancelled;
                new.completed_at = Some(Utc::now());
                "cancelled"
            };
            write_transition(&mut tx, outbox, old, &new, None, message).await?;
            changed.push(new);
        }
        refresh_audio_status(&mut tx, outbox, audio_id).await?;
        tx.commit().await?;
        Ok(changed)
    }

    /// Runs a file's failed or cancelled jobs again (or one job), with the
    /// jobs that wait for them, with fresh attempts. A job whose
    /// prerequisites have all completed is queued; the others wait.
    pub async fn retry(
        &self,
        audio_id: Uuid,
        only_job: Option<Uuid>,
    ) -> Result<Vec<ProcessingJob>, StoreError> {
        let now = self.now().await?;
        let mut tx = self.pool.begin().await?;
        let (jobs, outbox) = lock_jobs(&mut tx, self.outbox, audio_id).await?;
        let roots: Vec<Uuid> = match only_job {
            Some(id) if jobs.iter().any(|j| j.id == id) => vec![id],
            Some(id) => return Err(StoreError::NotFound { what: "job", id }),
            None => jobs
                .iter()
                .filter(|j| matches!(j.status, JobStatus::Failed | JobStatus::Cancelled))
                .map(|j| j.id)
                .collect(),
        };
        if roots.is_empty() {
            return Ok(Vec::new());
        }
        // Only ended jobs start again; one still running keeps its attempt.
        let again: BTreeSet<Uuid> = with_dependents(&jobs, roots)
            .into_iter()
            .filter(|id| jobs.iter().any(|j| j.id == *id && j.status.is_final()))
            .collect();
        let mut changed = Vec::new();
        for old in jobs.iter().filter(|j| again.contains(&j.id)) {
            let ready = prerequisites(&jobs, old)
                .all(|p| p.status == JobStatus::Completed && !again.contains(&p.id));
            let mut new = old.clone();
            new.status = if ready {
                JobStatus::Queued
            } else {
                JobStatus::Pending
            };
            new.attempt = 0;
            new.progress = 0.0;
            new.error = None;
            new.worker = None;
            new.cancel_requested = false;
            new.available_at = now;
            new.started_at = None;
            new.completed_at = None;
            write_transition(&mut tx, outbox, old, &new, None, "retried by user").await?;
            changed.push(new);
        }
        refresh_audio_status(&mut tx, outbox, audio_id).await?;
        tx.commit().await?;
        Ok(changed)
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

/// Moves each wanted job from the status it was read with (QUEUED or
/// RETRYING) to RUNNING for `worker`, in one statement, then writes their
/// events and their files' statuses. Returns the jobs that moved; one that
/// someone else moved first is left out.
pub(crate) async fn take(
    tx: &mut Transaction<'_, Any>,
    outbox: Outbox,
    wanted: &[(Uuid, JobStatus)],
    worker: &str,
    lease: Duration,
    now: DateTime<Utc>,
) -> Result<Vec<ProcessingJob>, StoreError> {
    if wanted.is_empty() {
        return Ok(Vec::new());
    }
    // A join on the wanted rows: on PostgreSQL a chain of ORs costs a
    // comparison per job for every row it reads.
    let rows = (0..wanted.len())
        .map(|i| {
            let n = 4 + i * 2;
            format!("(${}, ${})", n, n + 1)
        })
        .collect::<Vec<_>>()
        .join(", ");
    let sql = format!(
        "UPDATE processing_jobs SET status = 'RUNNING', attempt = attempt + 1, progress = 0, \
         progress_notified = 0, worker = $1, heartbeat_at = $2, lease_expires_at = $3, \
         started_at = $2, completed_at = NULL FROM (VALUES {rows}) AS wanted \
         WHERE processing_jobs.id = wanted.column1 AND processing_jobs.status = wanted.column2 \
         RETURNING {JOB_COLUMNS}, {ENDPOINT_COLUMN}"
    );
    let mut query = sqlx::query(&sql)
        .bind(worker)
        .bind(ts(now))
        .bind(ts(lease_end(now, lease)));
    for (id, from) in wanted {
        query = query.bind(id.to_string()).bind(from.as_str());
    }
    let mut taken = Vec::new();
    let mut files: Vec<(Uuid, Outbox)> = Vec::new();
    for row in query.fetch_all(&mut **tx).await? {
        let job = rows::job(&row)?;
        let file_outbox = outbox.for_row(&row)?;
        let Some((_, from)) = wanted.iter().find(|(id, _)| *id == job.id) else {
            continue;
        };
        from.transition(JobStatus::Running)?;
        if !files.iter().any(|(id, _)| *id == job.audio_id) {
            files.push((job.audio_id, file_outbox));
        }
        taken.push((*from, job, file_outbox));
    }
    let events: Vec<NewEvent> = taken
        .iter()
        .map(|(from, job, _)| NewEvent {
            job,
            from: Some(*from),
            to: job.status,
            worker: Some(worker),
            message: claim_message(job),
        })
        .collect();
    insert_events(tx, &events).await?;
    for (from, job, file_outbox) in &taken {
        file_outbox.job_moved(tx, Some(*from), job).await?;
    }
    mark_audio_started(tx, &files).await?;
    Ok(taken.into_iter().map(|(_, job, _)| job).collect())
}

/// The audit message of a claim. Attempts lost with their worker do not
/// count against `max_attempts`, so the number shown is of those that do.
fn claim_message(job: &ProcessingJob) -> String {
    match job.lost_leases {
        _ if job.attempt <= 1 => "claimed".to_string(),
        0 => format!("claimed (attempt {} of {})", job.attempt, job.max_attempts),
        lost => format!(
            "claimed (attempt {} of {}, after {lost} lost with their worker)",
            job.failed_attempts(),
            job.max_attempts
        ),
    }
}

/// Sets the status of files one of whose jobs just started, in one
/// statement: what [`AudioStatus::derive`] gives when a job is RUNNING
/// (FAILED or CANCELLED when a sibling is, else PROCESSING). Each file comes
/// with the outbox that knows whether it has its own endpoint.
pub(crate) async fn mark_audio_started(
    tx: &mut Transaction<'_, Any>,
    files: &[(Uuid, Outbox)],
) -> Result<(), StoreError> {
    if files.is_empty() {
        return Ok(());
    }
    let derived = "CASE WHEN EXISTS (SELECT 1 FROM processing_jobs p \
         WHERE p.audio_id = audio_files.id AND p.status = 'FAILED') THEN 'FAILED' \
         WHEN EXISTS (SELECT 1 FROM processing_jobs p \
         WHERE p.audio_id = audio_files.id AND p.status = 'CANCELLED') THEN 'CANCELLED' \
         ELSE 'PROCESSING' END";
    let ids = placeholders(2, files.len());
    let sql = format!(
        "UPDATE audio_files SET status = {derived}, updated_at = $1 \
         WHERE id IN ({ids}) AND status <> {derived} RETURNING id, status"
    );
    let mut query = sqlx::query_as::<_, (String, String)>(&sql).bind(ts(Utc::now()));
    for (id, _) in files {
        query = query.bind(id.to_string());
    }
    for (id, status) in query.fetch_all(&mut **tx).await? {
        let Some((audio_id, outbox)) = files.iter().find(|(f, _)| f.to_string() == id) else {
            continue;
        };
        let status: AudioStatus = rows::parse("audio_files", "status", &status)?;
        outbox.audio_moved(tx, *audio_id, status).await?;
    }
    Ok(())
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

impl Store {
    /// Audit events after event `after` (all files, or one), oldest first,
    /// each with its file's id: what live progress streams send.
    pub async fn events_after(
        &self,
        after: i64,
        audio_id: Option<Uuid>,
        limit: u32,
    ) -> Result<Vec<(Uuid, pipeline_core::JobEvent)>, StoreError> {
        let base = "SELECT e.id, e.job_id, e.at, e.from_status, e.to_status, e.attempt, \
                    e.worker, e.message, j.audio_id FROM job_events e \
                    JOIN processing_jobs j ON j.id = e.job_id WHERE e.id > $1";
        let rows = match audio_id {
            Some(audio_id) => {
                sqlx::query(&format!(
                    "{base} AND j.audio_id = $2 ORDER BY e.id LIMIT $3"
                ))
                .bind(after)
                .bind(audio_id.to_string())
                .bind(i64::from(limit))
                .fetch_all(&self.pool)
                .await?
            }
            None => {
                sqlx::query(&format!("{base} ORDER BY e.id LIMIT $2"))
                    .bind(after)
                    .bind(i64::from(limit))
                    .fetch_all(&self.pool)
                    .await?
            }
        };
        rows.iter()
            .map(|row| {
                Ok((
                    rows::uuid("processing_jobs", "audio_id", row)?,
                    rows::event(row)?,
                ))
            })
            .collect()
    }

    /// Every RUNNING job, for live progress.
    pub async fn running_jobs(&self) -> Result<Vec<ProcessingJob>, StoreError> {
        let rows = sqlx::query(&format!(
            "SELECT {JOB_COLUMNS} FROM processing_jobs WHERE status = 'RUNNING'"
        ))
        .fetch_all(&self.pool)
        .await?;
        rows.iter().map(rows::job).collect()
    }

    /// The id of the newest audit event (0 when there is none).
    pub async fn last_event_id(&self) -> Result<i64, StoreError> {
        let row = sqlx::query("SELECT COALESCE(MAX(id), 0) AS id FROM job_events")
            .fetch_one(&self.pool)
            .await?;
        Ok(row.try_get::<i64, _>("id")?)
    }
}
