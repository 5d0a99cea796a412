//! What live progress streams and `status` read: events after a cursor,
//! the running jobs, the newest event's id.

use super::*;

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
