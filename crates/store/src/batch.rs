//! Claims and completions of many short jobs at once. A broker delivers
//! messages in bursts; one transaction of a few multi-row statements costs
//! about what a single job's transaction did, and the guarantees are those
//! of the one-job operations: every move is guarded by the status (and, to
//! complete, the holder and attempt) it was read with, with its audit event.

use pipeline_core::{AudioStatus, JobStatus, ProcessingJob};
use std::collections::{BTreeMap, HashSet};
use std::time::Duration;
use uuid::Uuid;

use crate::audio::{write_audio_statuses, write_results, AudioResults};
use crate::jobs::{
    held_by, insert_events, lock_files, placeholders, replace_moved, settle_dependents, take,
    ClaimStep, Ended, JobClaim, Lease, NewEvent,
};
use crate::rows::{self, ts, JOB_COLUMNS};
use crate::webhooks::Outbox;
use crate::{Store, StoreError};

/// A stage that ended well, to be recorded with others.
#[derive(Debug, Clone, Copy)]
pub struct Completion<'a> {
    pub held: &'a Lease,
    /// The audit message.
    pub message: &'a str,
    /// Results to store in the same transaction.
    pub results: Option<&'a AudioResults>,
}

impl Store {
    /// Claims the jobs whose messages a broker delivered together: one
    /// answer per id, in the order given, as [`Store::claim_job`] would
    /// answer. The runnable ones move to RUNNING in one transaction; a job
    /// whose lease must be reclaimed, or that moved meanwhile, is claimed on
    /// its own.
    pub async fn claim_jobs(
        &self,
        ids: &[Uuid],
        worker: &str,
        lease: Duration,
    ) -> Result<Vec<JobClaim>, StoreError> {
        if ids.len() < 2 {
            let mut answers = Vec::new();
            for id in ids {
                answers.push(self.claim_job(*id, worker, lease).await?);
            }
            return Ok(answers);
        }
        let now = self.now().await?;
        let current = self.jobs_by_id(ids).await?;
        let mut answers: Vec<Option<JobClaim>> = vec![None; ids.len()];
        let mut runnable: Vec<&ProcessingJob> = Vec::new();
        let mut seen = HashSet::new();
        for (answer, id) in answers.iter_mut().zip(ids) {
            // The same message twice in one burst: the second copy is
            // answered on its own, after the first is claimed.
            if !seen.insert(*id) {
                continue;
            }
            let Some(job) = current.get(id) else {
                *answer = Some(JobClaim::Missing);
                continue;
            };
            *answer = match ClaimStep::of(job, now) {
                ClaimStep::Answer(answer) => Some(answer),
                ClaimStep::Take => {
                    runnable.push(job);
                    None
                }
                // Its holder is gone: claim_job reclaims it.
                ClaimStep::Reclaim => None,
            };
        }
        if !runnable.is_empty() {
            let mut tx = self.pool.begin().await?;
            let wanted: Vec<(Uuid, JobStatus)> =
                runnable.iter().map(|job| (job.id, job.status)).collect();
            let taken = take(&mut tx, self.outbox, &wanted, worker, lease, now).await?;
            tx.commit().await?;
            for job in taken {
                if let Some(index) = ids.iter().position(|id| *id == job.id) {
                    answers[index] = Some(JobClaim::Claimed(job));
                }
            }
        }
        let mut settled = Vec::with_capacity(ids.len());
        for (answer, id) in answers.into_iter().zip(ids) {
            settled.push(match answer {
                Some(answer) => answer,
                None => self.claim_job(*id, worker, lease).await?,
            });
        }
        Ok(settled)
    }

    /// The jobs with these ids that exist.
    async fn jobs_by_id(&self, ids: &[Uuid]) -> Result<BTreeMap<Uuid, ProcessingJob>, StoreError> {
        let sql = format!(
            "SELECT {JOB_COLUMNS} FROM processing_jobs WHERE id IN ({})",
            placeholders(1, ids.len())
        );
        let mut query = sqlx::query(&sql);
        for id in ids {
            query = query.bind(id.to_string());
        }
        let mut jobs = BTreeMap::new();
        for row in query.fetch_all(&self.pool).await? {
            let job = rows::job(&row)?;
            jobs.insert(job.id, job);
        }
        Ok(jobs)
    }

    /// Marks several held attempts COMPLETED with their results in one
    /// transaction, queueing the jobs that wait on them. Any conflict (a
    /// lease lost meanwhile) fails the whole call and writes nothing: the
    /// caller then records each on its own.
    pub async fn complete_all(&self, done: &[Completion<'_>]) -> Result<Vec<Ended>, StoreError> {
        if let [one] = done {
            return Ok(vec![
                self.complete_with(one.held, one.message, one.results)
                    .await?,
            ]);
        }
        if done.is_empty() {
            return Ok(Vec::new());
        }
        let mut tx = self.pool.begin().await?;
        let mut audio_ids: Vec<Uuid> = done.iter().map(|c| c.held.audio_id).collect();
        audio_ids.sort();
        audio_ids.dedup();
        let now = self.now().await?;
        let mut files = lock_files(&mut tx, self.outbox, &audio_ids).await?;
        let mut finished = Vec::with_capacity(done.len());
        for completion in done {
            let held = completion.held;
            let (jobs, _) = files.get(&held.audio_id).ok_or(StoreError::NotFound {
                what: "job",
                id: held.job_id,
            })?;
            let old = held_by(jobs, held.job_id, &held.worker, held.attempt)?.clone();
            let mut new = old.clone();
            new.status = JobStatus::Completed;
            new.progress = 100.0;
            new.completed_at = Some(now);
            new.lease_expires_at = None;
            new.error = None;
            finished.push((old, new));
        }
        // A join on the holders: on PostgreSQL a chain of ORs costs a
        // comparison per job for every row it reads.
        let held = (0..done.len())
            .map(|i| {
                let n = 2 + i * 3;
                format!("(${}, ${}, ${})", n, n + 1, n + 2)
            })
            .collect::<Vec<_>>()
            .join(", ");
        let sql = format!(
            "UPDATE processing_jobs SET status = 'COMPLETED', progress = 100, completed_at = $1, \
             lease_expires_at = NULL, error_kind = NULL, error_message = NULL \
             FROM (VALUES {held}) AS held \
             WHERE processing_jobs.id = held.column1 AND processing_jobs.attempt = held.column2 \
             AND processing_jobs.worker = held.column3 AND processing_jobs.status = 'RUNNING'"
        );
        let mut query = sqlx::query(&sql).bind(ts(now));
        for (old, _) in &finished {
            query = query
                .bind(old.id.to_string())
                .bind(i64::from(old.attempt))
                .bind(old.worker.clone());
        }
        let updated = query.execute(&mut *tx).await?.rows_affected();
        if updated != finished.len() as u64 {
            return Err(StoreError::Conflict {
                job_id: done[0].held.job_id,
                message: format!(
                    "{} of {} jobs were no longer held when completed together",
                    finished.len() as u64 - updated.min(finished.len() as u64),
                    finished.len()
                ),
            });
        }
        let events: Vec<NewEvent> = finished
            .iter()
            .zip(done)
            .map(|((old, new), completion)| NewEvent {
                job: new,
                from: Some(old.status),
                to: new.status,
                worker: Some(completion.held.worker.as_str()),
                message: completion.message.to_string(),
            })
            .collect();
        insert_events(&mut tx, &events).await?;
        for (old, new) in &finished {
            let Some((jobs, outbox)) = files.get_mut(&new.audio_id) else {
                continue;
            };
            let outbox = *outbox;
            outbox.job_moved(&mut tx, Some(old.status), new).await?;
            let mut moved =
                settle_dependents(&mut tx, outbox, jobs, old.job_type, JobStatus::Queued, now)
                    .await?;
            moved.push(new.clone());
            replace_moved(jobs, &moved);
        }
        let results: Vec<(Uuid, &AudioResults)> = done
            .iter()
            .filter_map(|c| c.results.map(|r| (c.held.audio_id, r)))
            .collect();
        write_results(&mut tx, &results).await?;
        let statuses: Vec<(Uuid, Outbox, AudioStatus)> = files
            .iter()
            .map(|(audio_id, (jobs, outbox))| {
                (
                    *audio_id,
                    *outbox,
                    AudioStatus::derive(jobs.iter().map(|j| j.status)),
                )
            })
            .collect();
        write_audio_statuses(&mut tx, &statuses).await?;
        tx.commit().await?;
        Ok(finished
            .into_iter()
            .map(|(_, job)| {
                let file_jobs = files
                    .get(&job.audio_id)
                    .map(|(jobs, _)| jobs.clone())
                    .unwrap_or_default();
                Ended { job, file_jobs }
            })
            .collect())
    }
}
