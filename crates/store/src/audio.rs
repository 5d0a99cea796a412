//! Ingest, audio file queries, transcripts and rendered results.

use chrono::Utc;
use pipeline_core::{
    AudioFile, AudioStatus, Diarization, JobError, JobStatus, JobType, ProcessingJob, Transcript,
};
use serde_json::Value;
use sqlx::any::AnyRow;
use sqlx::{Any, Row, Transaction};
use std::collections::BTreeMap;
use uuid::Uuid;

use crate::jobs::{insert_event, NewJob};
use crate::rows::{self, ts, AUDIO_COLUMNS, JOB_COLUMNS};
use crate::webhooks::{self, Outbox, WebhookEndpoint};
use crate::{Store, StoreError};

/// An audio file about to be ingested.
#[derive(Debug, Clone)]
pub struct NewAudio {
    pub id: Uuid,
    pub original_name: String,
    pub sha256: String,
    pub size_bytes: u64,
    pub container: String,
    pub codec: String,
    pub duration_seconds: f64,
    pub sample_rate: u32,
    pub channels: u16,
    pub storage_key: String,
    /// The submitted options, replayed on retry.
    pub options: Value,
    /// A digest of the options that change the result; equal content and
    /// equal settings may reuse a finished result.
    pub settings_key: String,
    /// Endpoints told of this file's events, besides the global ones.
    pub webhooks: Vec<WebhookEndpoint>,
}

/// What the PROCESSING job produced.
#[derive(Debug, Clone, PartialEq)]
pub struct AudioResults {
    /// Format name (`txt`, `srt`, ...) to the file written.
    pub outputs: BTreeMap<String, String>,
    pub words: u64,
    pub speech_seconds: f64,
    pub words_per_minute: f64,
}

impl Store {
    /// Creates the audio file, its jobs and their first events in one transaction.
    pub async fn ingest(
        &self,
        audio: &NewAudio,
        jobs: &[NewJob],
    ) -> Result<(AudioFile, Vec<ProcessingJob>), StoreError> {
        self.insert_audio(audio, jobs, None).await
    }

    /// Records a file that was refused at ingest (not decodable audio): its
    /// jobs are created FAILED with the reason, so the refusal is tracked
    /// like any other outcome.
    pub async fn ingest_rejected(
        &self,
        audio: &NewAudio,
        jobs: &[NewJob],
        reason: &JobError,
    ) -> Result<(AudioFile, Vec<ProcessingJob>), StoreError> {
        self.insert_audio(audio, jobs, Some(reason)).await
    }

    async fn insert_audio(
        &self,
        audio: &NewAudio,
        jobs: &[NewJob],
        rejection: Option<&JobError>,
    ) -> Result<(AudioFile, Vec<ProcessingJob>), StoreError> {
        // The claim compares `available_at` with the database's clock.
        let now = ts(self.now().await?);
        let mut tx = self.pool.begin().await?;
        let statuses: Vec<JobStatus> = jobs
            .iter()
            .map(|j| match rejection {
                Some(_) => JobStatus::Failed,
                None => j.initial_status(),
            })
            .collect();
        let status = AudioStatus::derive(statuses.iter().copied());
        sqlx::query(
            "INSERT INTO audio_files (id, original_name, sha256, size_bytes, container, codec, \
             duration_seconds, sample_rate, channels, storage_key, status, options, settings_key, \
             created_at, updated_at) \
             VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13, $14, $14)",
        )
        .bind(audio.id.to_string())
        .bind(&audio.original_name)
        .bind(&audio.sha256)
        .bind(i64::try_from(audio.size_bytes).unwrap_or(i64::MAX))
        .bind(&audio.container)
        .bind(&audio.codec)
        .bind(audio.duration_seconds)
        .bind(i64::from(audio.sample_rate))
        .bind(i64::from(audio.channels))
        .bind(&audio.storage_key)
        .bind(status.as_str())
        .bind(audio.options.to_string())
        .bind(&audio.settings_key)
        .bind(&now)
        .execute(&mut *tx)
        .await?;
        webhooks::subscribe(&mut tx, audio.id, &audio.webhooks).await?;
        let mut created = Vec::with_capacity(jobs.len());
        // What each job waits for among the jobs this file gets.
        let waits_for = |job: &NewJob| -> Vec<JobType> {
            let mut types: Vec<JobType> = jobs
                .iter()
                .map(|j| j.job_type)
                .filter(|t| job.job_type.waits_for(*t))
                .collect();
            types.sort();
            types.dedup();
            types
        };
        for (job, status) in jobs.iter().zip(statuses) {
            let id = job.id.unwrap_or_else(Uuid::new_v4);
            let task_id = job.task_id.clone().unwrap_or_else(|| id.to_string());
            let prerequisites = waits_for(job);
            let error = rejection.map(|reason| match prerequisites.first() {
                None => reason.clone(),
                Some(first) => JobError::permanent(format!("{first} failed")),
            });
            let row = sqlx::query(&format!(
                "INSERT INTO processing_jobs (id, audio_id, job_type, status, progress, task_id, \
                 attempt, max_attempts, available_at, cancel_requested, error_kind, error_message, \
                 created_at, completed_at, transport) \
                 VALUES ($1, $2, $3, $4, 0, $5, 0, $6, $7, 0, $8, $9, $7, $10, $11) RETURNING {JOB_COLUMNS}"
            ))
            .bind(id.to_string())
            .bind(audio.id.to_string())
            .bind(job.job_type.as_str())
            .bind(status.as_str())
            .bind(&task_id)
            .bind(i64::from(job.max_attempts))
            .bind(&now)
            .bind(error.as_ref().map(|e| e.kind.as_str()))
            .bind(error.as_ref().map(|e| e.message.clone()))
            .bind(rejection.map(|_| now.clone()))
            .bind(&job.transport)
            .fetch_one(&mut *tx)
            .await?;
            let created_job = rows::job(&row)?;
            let message = match (&error, status) {
                (Some(error), _) => format!("rejected at ingest: {}", error.message),
                (None, JobStatus::Pending) if !prerequisites.is_empty() => format!(
                    "created; waiting for {}",
                    prerequisites
                        .iter()
                        .map(|t| t.as_str())
                        .collect::<Vec<_>>()
                        .join(" and ")
                ),
                (None, JobStatus::Pending) => "created; waiting for its dependency".to_string(),
                _ => "created and queued".to_string(),
            };
            insert_event(&mut tx, &created_job, None, status, None, &message).await?;
            if rejection.is_some() {
                self.outbox.job_moved(&mut tx, None, &created_job).await?;
            }
            created.push(created_job);
        }
        self.outbox.audio_moved(&mut tx, audio.id, status).await?;
        let row = sqlx::query(&format!(
            "SELECT {AUDIO_COLUMNS} FROM audio_files WHERE id = $1"
        ))
        .bind(audio.id.to_string())
        .fetch_one(&mut *tx)
        .await?;
        let file = rows::audio(&row)?;
        tx.commit().await?;
        Ok((file, created))
    }

    /// A completed file with the same content and settings, newest first.
    pub async fn find_completed_duplicate(
        &self,
        sha256: &str,
        settings_key: &str,
    ) -> Result<Option<AudioFile>, StoreError> {
        let row = sqlx::query(&format!(
            "SELECT {AUDIO_COLUMNS} FROM audio_files \
             WHERE sha256 = $1 AND settings_key = $2 AND status = 'COMPLETED' \
             ORDER BY created_at DESC LIMIT 1"
        ))
        .bind(sha256)
        .bind(settings_key)
        .fetch_optional(&self.pool)
        .await?;
        row.as_ref().map(rows::audio).transpose()
    }

    /// One audio file.
    pub async fn audio(&self, id: Uuid) -> Result<AudioFile, StoreError> {
        let row = sqlx::query(&format!(
            "SELECT {AUDIO_COLUMNS} FROM audio_files WHERE id = $1"
        ))
        .bind(id.to_string())
        .fetch_optional(&self.pool)
        .await?;
        match row {
            Some(row) => rows::audio(&row),
            None => Err(StoreError::NotFound {
                what: "audio file",
                id,
            }),
        }
    }

    /// Recently ingested files, newest first, optionally of one status.
    pub async fn list_recent(
        &self,
        limit: u32,
        status: Option<AudioStatus>,
    ) -> Result<Vec<AudioFile>, StoreError> {
        let rows: Vec<AnyRow> = match status {
            Some(status) => {
                sqlx::query(&format!(
                    "SELECT {AUDIO_COLUMNS} FROM audio_files WHERE status = $1 \
                     ORDER BY created_at DESC, id LIMIT $2"
                ))
                .bind(status.as_str())
                .bind(i64::from(limit))
                .fetch_all(&self.pool)
                .await?
            }
            None => {
                sqlx::query(&format!(
                    "SELECT {AUDIO_COLUMNS} FROM audio_files ORDER BY created_at DESC, id LIMIT $1"
                ))
                .bind(i64::from(limit))
                .fetch_all(&self.pool)
                .await?
            }
        };
        rows.iter().map(rows::audio).collect()
    }

    /// A page of files, newest first: those created before `before` (the
    /// previous page's last `created_at`), optionally in one status.
    pub async fn list_page(
        &self,
        limit: u32,
        status: Option<AudioStatus>,
        before: Option<chrono::DateTime<Utc>>,
    ) -> Result<Vec<AudioFile>, StoreError> {
        let before = ts(before.unwrap_or_else(|| Utc::now() + chrono::Duration::days(1)));
        let rows: Vec<AnyRow> = match status {
            Some(status) => {
                sqlx::query(&format!(
                    "SELECT {AUDIO_COLUMNS} FROM audio_files WHERE status = $1 AND created_at < $2 \
                     ORDER BY created_at DESC, id LIMIT $3"
                ))
                .bind(status.as_str())
                .bind(before)
                .bind(i64::from(limit))
                .fetch_all(&self.pool)
                .await?
            }
            None => {
                sqlx::query(&format!(
                    "SELECT {AUDIO_COLUMNS} FROM audio_files WHERE created_at < $1 \
                     ORDER BY created_at DESC, id LIMIT $2"
                ))
                .bind(before)
                .bind(i64::from(limit))
                .fetch_all(&self.pool)
                .await?
            }
        };
        rows.iter().map(rows::audio).collect()
    }

    /// How many files keep their audio under `storage_key` (the same
    /// content submitted twice shares one stored copy).
    pub async fn files_sharing_storage(&self, storage_key: &str) -> Result<u64, StoreError> {
        let row = sqlx::query("SELECT COUNT(*) AS n FROM audio_files WHERE storage_key = $1")
            .bind(storage_key)
            .fetch_one(&self.pool)
            .await?;
        let n: i64 = row.try_get("n")?;
        Ok(u64::try_from(n).unwrap_or(0))
    }

    /// Stores (or replaces) the transcript of a file, outside any job (a
    /// worker's transcript is written with its job's completion instead:
    /// [`Store::complete_with_transcript`]).
    pub async fn save_transcript(
        &self,
        audio_id: Uuid,
        transcript: &Transcript,
    ) -> Result<(), StoreError> {
        let mut tx = self.pool.begin().await?;
        write_transcript(&mut tx, audio_id, transcript).await?;
        tx.commit().await?;
        Ok(())
    }

    /// The stored transcript of a file, if it has one.
    pub async fn transcript(&self, audio_id: Uuid) -> Result<Option<Transcript>, StoreError> {
        let row = sqlx::query("SELECT body FROM transcripts WHERE audio_id = $1")
            .bind(audio_id.to_string())
            .fetch_optional(&self.pool)
            .await?;
        row.map(|row| parse_transcript(&row.try_get::<String, _>("body")?))
            .transpose()
    }

    /// Files with their stored transcripts, in one read: what a batch of
    /// rendering jobs needs. Files that do not exist are left out.
    pub async fn audio_with_transcripts(
        &self,
        ids: &[Uuid],
    ) -> Result<Vec<(AudioFile, Option<Transcript>)>, StoreError> {
        if ids.is_empty() {
            return Ok(Vec::new());
        }
        let sql = format!(
            "SELECT {AUDIO_COLUMNS}, (SELECT body FROM transcripts t \
             WHERE t.audio_id = audio_files.id) AS transcript_body \
             FROM audio_files WHERE id IN ({})",
            crate::jobs::placeholders(1, ids.len())
        );
        let mut query = sqlx::query(&sql);
        for id in ids {
            query = query.bind(id.to_string());
        }
        query
            .fetch_all(&self.pool)
            .await?
            .iter()
            .map(|row| {
                let body: Option<String> = row.try_get("transcript_body")?;
                Ok((
                    rows::audio(row)?,
                    body.as_deref().map(parse_transcript).transpose()?,
                ))
            })
            .collect()
    }

    /// Stores (or replaces) the speaker turns of a file, outside any job (a
    /// worker's are written with its job's completion instead:
    /// [`Store::complete_with_diarization`]).
    pub async fn save_diarization(
        &self,
        audio_id: Uuid,
        diarization: &Diarization,
    ) -> Result<(), StoreError> {
        let mut tx = self.pool.begin().await?;
        write_diarization(&mut tx, audio_id, diarization).await?;
        tx.commit().await?;
        Ok(())
    }

    /// The stored speaker turns of a file, if it was diarized.
    pub async fn diarization(&self, audio_id: Uuid) -> Result<Option<Diarization>, StoreError> {
        let row = sqlx::query("SELECT body FROM diarizations WHERE audio_id = $1")
            .bind(audio_id.to_string())
            .fetch_optional(&self.pool)
            .await?;
        row.map(|row| {
            let body: String = row.try_get("body")?;
            serde_json::from_str(&body).map_err(|e| StoreError::Corrupt {
                table: "diarizations",
                message: e.to_string(),
            })
        })
        .transpose()
    }

    /// The rendered outputs and statistics of a file, if it has them.
    pub async fn results(&self, audio_id: Uuid) -> Result<Option<AudioResults>, StoreError> {
        let row = sqlx::query(
            "SELECT outputs, words, speech_seconds, words_per_minute FROM audio_results \
             WHERE audio_id = $1",
        )
        .bind(audio_id.to_string())
        .fetch_optional(&self.pool)
        .await?;
        let Some(row) = row else { return Ok(None) };
        let outputs: String = row.try_get("outputs")?;
        let corrupt = |message: String| StoreError::Corrupt {
            table: "audio_results",
            message,
        };
        Ok(Some(AudioResults {
            outputs: serde_json::from_str(&outputs).map_err(|e| corrupt(e.to_string()))?,
            words: u64::try_from(row.try_get::<i64, _>("words")?)
                .map_err(|e| corrupt(e.to_string()))?,
            speech_seconds: row.try_get("speech_seconds")?,
            words_per_minute: row.try_get("words_per_minute")?,
        }))
    }

    /// Deletes a file with its jobs, events, transcript and results.
    pub async fn delete_audio(&self, audio_id: Uuid) -> Result<(), StoreError> {
        let id = audio_id.to_string();
        let mut tx = self.pool.begin().await?;
        // Children first: foreign-key cascades are not on for every
        // connection of every backend.
        sqlx::query(
            "DELETE FROM job_events WHERE job_id IN \
             (SELECT id FROM processing_jobs WHERE audio_id = $1)",
        )
        .bind(&id)
        .execute(&mut *tx)
        .await?;
        for table in [
            "processing_jobs",
            "transcripts",
            "diarizations",
            "audio_results",
        ] {
            sqlx::query(&format!("DELETE FROM {table} WHERE audio_id = $1"))
                .bind(&id)
                .execute(&mut *tx)
                .await?;
        }
        let deleted = sqlx::query("DELETE FROM audio_files WHERE id = $1")
            .bind(&id)
            .execute(&mut *tx)
            .await?;
        if deleted.rows_affected() == 0 {
            return Err(StoreError::NotFound {
                what: "audio file",
                id: audio_id,
            });
        }
        tx.commit().await?;
        Ok(())
    }
}

/// Replaces the transcript of a file inside `tx`.
pub(crate) async fn write_transcript(
    tx: &mut Transaction<'_, Any>,
    audio_id: Uuid,
    transcript: &Transcript,
) -> Result<(), StoreError> {
    let body = serde_json::to_string(transcript).map_err(|e| StoreError::Corrupt {
        table: "transcripts",
        message: e.to_string(),
    })?;
    // Delete-then-insert rather than an upsert keeps one statement set
    // for both backends.
    sqlx::query("DELETE FROM transcripts WHERE audio_id = $1")
        .bind(audio_id.to_string())
        .execute(&mut **tx)
        .await?;
    sqlx::query(
        "INSERT INTO transcripts (audio_id, language, model, duration_seconds, body, created_at) \
         VALUES ($1, $2, $3, $4, $5, $6)",
    )
    .bind(audio_id.to_string())
    .bind(&transcript.language)
    .bind(&transcript.model)
    .bind(transcript.duration)
    .bind(body)
    .bind(ts(Utc::now()))
    .execute(&mut **tx)
    .await?;
    Ok(())
}

/// Replaces the speaker turns of a file inside `tx`.
pub(crate) async fn write_diarization(
    tx: &mut Transaction<'_, Any>,
    audio_id: Uuid,
    diarization: &Diarization,
) -> Result<(), StoreError> {
    let body = serde_json::to_string(diarization).map_err(|e| StoreError::Corrupt {
        table: "diarizations",
        message: e.to_string(),
    })?;
    let speakers = diarization
        .turns
        .iter()
        .map(|t| t.speaker.as_str())
        .collect::<std::collections::BTreeSet<_>>()
        .len();
    sqlx::query("DELETE FROM diarizations WHERE audio_id = $1")
        .bind(audio_id.to_string())
        .execute(&mut **tx)
        .await?;
    sqlx::query(
        "INSERT INTO diarizations (audio_id, model, speakers, turns, body, created_at) \
         VALUES ($1, $2, $3, $4, $5, $6)",
    )
    .bind(audio_id.to_string())
    .bind(&diarization.model)
    .bind(i64::try_from(speakers).unwrap_or(i64::MAX))
    .bind(i64::try_from(diarization.turns.len()).unwrap_or(i64::MAX))
    .bind(body)
    .bind(ts(Utc::now()))
    .execute(&mut **tx)
    .await?;
    Ok(())
}

/// Upserts the results of each file, in one statement. A file named twice
/// keeps its last results (PostgreSQL refuses to upsert one row twice in a
/// statement).
pub(crate) async fn write_results(
    tx: &mut Transaction<'_, Any>,
    results: &[(Uuid, &AudioResults)],
) -> Result<(), StoreError> {
    let mut unique: Vec<(Uuid, &AudioResults)> = Vec::with_capacity(results.len());
    for (audio_id, result) in results {
        match unique.iter_mut().find(|(id, _)| id == audio_id) {
            Some(slot) => slot.1 = result,
            None => unique.push((*audio_id, result)),
        }
    }
    if unique.is_empty() {
        return Ok(());
    }
    let rows = (0..unique.len())
        .map(|i| {
            let n = 2 + i * 5;
            format!(
                "(${}, ${}, ${}, ${}, ${}, $1)",
                n,
                n + 1,
                n + 2,
                n + 3,
                n + 4
            )
        })
        .collect::<Vec<_>>()
        .join(", ");
    let sql = format!(
        "INSERT INTO audio_results (audio_id, outputs, words, speech_seconds, \
         words_per_minute, created_at) VALUES {rows} \
         ON CONFLICT (audio_id) DO UPDATE SET outputs = excluded.outputs, \
         words = excluded.words, speech_seconds = excluded.speech_seconds, \
         words_per_minute = excluded.words_per_minute, created_at = excluded.created_at"
    );
    let mut query = sqlx::query(&sql).bind(ts(Utc::now()));
    for (audio_id, result) in unique {
        let outputs = serde_json::to_string(&result.outputs).map_err(|e| StoreError::Corrupt {
            table: "audio_results",
            message: e.to_string(),
        })?;
        query = query
            .bind(audio_id.to_string())
            .bind(outputs)
            .bind(i64::try_from(result.words).unwrap_or(i64::MAX))
            .bind(result.speech_seconds)
            .bind(result.words_per_minute);
    }
    query.execute(&mut **tx).await?;
    Ok(())
}

/// Recomputes a file's status from its jobs inside a transaction.
pub(crate) async fn refresh_audio_status(
    tx: &mut Transaction<'_, Any>,
    outbox: Outbox,
    audio_id: Uuid,
) -> Result<AudioStatus, StoreError> {
    let rows = sqlx::query("SELECT status FROM processing_jobs WHERE audio_id = $1")
        .bind(audio_id.to_string())
        .fetch_all(&mut **tx)
        .await?;
    let mut statuses = Vec::with_capacity(rows.len());
    for row in &rows {
        let status: String = row.try_get("status")?;
        statuses.push(
            status
                .parse::<JobStatus>()
                .map_err(|e| StoreError::Corrupt {
                    table: "processing_jobs",
                    message: e.to_string(),
                })?,
        );
    }
    write_audio_status(tx, outbox, audio_id, AudioStatus::derive(statuses)).await
}

/// Sets a file's status derived from jobs the transaction already holds
/// locked, sparing the query that [`refresh_audio_status`] makes.
pub(crate) async fn write_audio_status(
    tx: &mut Transaction<'_, Any>,
    outbox: Outbox,
    audio_id: Uuid,
    status: AudioStatus,
) -> Result<AudioStatus, StoreError> {
    write_audio_statuses(tx, &[(audio_id, outbox, status)]).await?;
    Ok(status)
}

/// Writes the status of each file, in one statement. Only a change is
/// written (and reported), so `updated_at` is when a file's status last moved.
pub(crate) async fn write_audio_statuses(
    tx: &mut Transaction<'_, Any>,
    files: &[(Uuid, Outbox, AudioStatus)],
) -> Result<(), StoreError> {
    if files.is_empty() {
        return Ok(());
    }
    // A join on the new statuses: on PostgreSQL a chain of ORs costs a
    // comparison per file for every row it reads.
    let rows = (0..files.len())
        .map(|i| format!("(${}, ${})", 2 + i * 2, 3 + i * 2))
        .collect::<Vec<_>>()
        .join(", ");
    let sql = format!(
        "UPDATE audio_files SET status = wanted.column2, updated_at = $1 \
         FROM (VALUES {rows}) AS wanted \
         WHERE audio_files.id = wanted.column1 AND audio_files.status <> wanted.column2 \
         RETURNING audio_files.id"
    );
    let mut query = sqlx::query_as::<_, (String,)>(&sql).bind(ts(Utc::now()));
    for (audio_id, _, status) in files {
        query = query.bind(audio_id.to_string()).bind(status.as_str());
    }
    for (id,) in query.fetch_all(&mut **tx).await? {
        if let Some((audio_id, outbox, status)) = files
            .iter()
            .find(|(audio_id, _, _)| audio_id.to_string() == id)
        {
            outbox.audio_moved(tx, *audio_id, *status).await?;
        }
    }
    Ok(())
}

fn parse_transcript(body: &str) -> Result<Transcript, StoreError> {
    serde_json::from_str(body).map_err(|e| StoreError::Corrupt {
        table: "transcripts",
        message: e.to_string(),
    })
}
