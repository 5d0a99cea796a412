//! Claims: the embedded queue's next job, a delivered job by its id (one
//! or many in one transaction), leases put back when their holder stopped
//! renewing them, and heartbeats that renew a lease.

use super::*;

impl Store {
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
    pub(super) async fn claim_of_type(
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
