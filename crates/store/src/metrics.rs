//! Figures for `/metrics`, aggregated by the database: a scrape costs a
//! few grouped reads however many jobs have ever run.

use sqlx::Row;

use crate::{Backend, Store, StoreError};

/// A histogram of durations, for one job type.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct DurationHistogram {
    pub job_type: String,
    /// (upper bound in seconds, rows at or under it), cumulative.
    pub buckets: Vec<(f64, u64)>,
    pub count: u64,
    pub sum_seconds: f64,
}

/// Figures for `/metrics`, read at scrape time.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct JobMetrics {
    /// (job type, status, how many).
    pub jobs: Vec<(String, String, u64)>,
    /// Durations from start to completion of completed jobs, per type.
    pub durations: Vec<DurationHistogram>,
    /// How long running and completed jobs waited, from being queued (or
    /// queued again) to the start of their last attempt, per type.
    pub queue_waits: Vec<DurationHistogram>,
    /// Durations of completed chunks of long transcriptions (their last
    /// attempt), under the type TRANSCRIPTION.
    pub chunk_durations: Vec<DurationHistogram>,
    /// Seconds of audio whose transcription completed.
    pub audio_seconds: f64,
    /// Seconds spent on those transcriptions (for the real-time factor).
    pub transcribe_seconds: f64,
}

fn count(row: &sqlx::any::AnyRow, column: &str) -> Result<u64, StoreError> {
    let n: Option<i64> = row.try_get(column)?;
    Ok(u64::try_from(n.unwrap_or(0)).unwrap_or(0))
}

impl Store {
    /// Job counts, duration histograms (with these bucket bounds, in
    /// seconds) and transcribed audio, for `/metrics`.
    pub async fn job_metrics(&self, bounds: &[f64]) -> Result<JobMetrics, StoreError> {
        let mut metrics = JobMetrics::default();
        let rows = sqlx::query(
            "SELECT job_type, status, COUNT(*) AS n FROM processing_jobs \
             GROUP BY job_type, status ORDER BY job_type, status",
        )
        .fetch_all(&self.pool)
        .await?;
        for row in rows {
            metrics.jobs.push((
                row.try_get("job_type")?,
                row.try_get("status")?,
                count(&row, "n")?,
            ));
        }
        metrics.durations = self
            .histograms(
                bounds,
                &self.seconds_between("started_at", "completed_at"),
                "processing_jobs WHERE status = 'COMPLETED' \
                 AND started_at IS NOT NULL AND completed_at IS NOT NULL",
                "job_type",
            )
            .await?;
        metrics.queue_waits = self
            .histograms(
                bounds,
                &self.seconds_between("available_at", "started_at"),
                "processing_jobs WHERE status IN ('RUNNING', 'COMPLETED') \
                 AND started_at IS NOT NULL",
                "job_type",
            )
            .await?;
        metrics.chunk_durations = self
            .histograms(
                bounds,
                &self.seconds_between("started_at", "completed_at"),
                "transcription_chunks WHERE status = 'COMPLETED' \
                 AND started_at IS NOT NULL AND completed_at IS NOT NULL",
                "'TRANSCRIPTION'",
            )
            .await?;
        let transcription = pipeline_core::JobType::Transcription.as_str();
        if let Some(histogram) = metrics
            .durations
            .iter()
            .find(|h| h.job_type == transcription)
        {
            metrics.transcribe_seconds = histogram.sum_seconds;
        }
        let audio: Option<f64> = sqlx::query_scalar(
            "SELECT CAST(SUM(a.duration_seconds) AS DOUBLE PRECISION) \
             FROM processing_jobs j JOIN audio_files a ON a.id = j.audio_id \
             WHERE j.job_type = $1 AND j.status = 'COMPLETED' \
             AND j.started_at IS NOT NULL AND j.completed_at IS NOT NULL",
        )
        .bind(transcription)
        .fetch_one(&self.pool)
        .await?;
        metrics.audio_seconds = audio.unwrap_or(0.0);
        Ok(metrics)
    }

    /// Seconds from column `from` to column `to` (RFC 3339 text in both
    /// dialects).
    fn seconds_between(&self, from: &str, to: &str) -> String {
        match self.backend {
            Backend::Postgres => format!(
                "CAST(EXTRACT(EPOCH FROM (CAST({to} AS TIMESTAMPTZ) \
                 - CAST({from} AS TIMESTAMPTZ))) AS DOUBLE PRECISION)"
            ),
            Backend::Sqlite => format!("((julianday({to}) - julianday({from})) * 86400.0)"),
        }
    }

    /// One histogram of `seconds` (below 0 counts as 0) per value of
    /// `label`, over the rows of `rows` (a table and its WHERE clause).
    async fn histograms(
        &self,
        bounds: &[f64],
        seconds: &str,
        rows: &str,
        label: &str,
    ) -> Result<Vec<DurationHistogram>, StoreError> {
        let buckets: String = bounds
            .iter()
            .enumerate()
            .map(|(i, bound)| format!(", SUM(CASE WHEN d <= {bound:?} THEN 1 ELSE 0 END) AS b{i}"))
            .collect();
        let sql = format!(
            "SELECT label, COUNT(*) AS n, CAST(SUM(d) AS DOUBLE PRECISION) AS total{buckets} \
             FROM (SELECT {label} AS label, \
                   CASE WHEN {seconds} > 0 THEN {seconds} ELSE 0.0 END AS d \
                   FROM {rows}) t \
             GROUP BY label ORDER BY label"
        );
        let mut histograms = Vec::new();
        for row in sqlx::query(&sql).fetch_all(&self.pool).await? {
            let total: Option<f64> = row.try_get("total")?;
            let mut histogram = DurationHistogram {
                job_type: row.try_get("label")?,
                buckets: Vec::with_capacity(bounds.len()),
                count: count(&row, "n")?,
                sum_seconds: total.unwrap_or(0.0),
            };
            for (i, bound) in bounds.iter().enumerate() {
                histogram
                    .buckets
                    .push((*bound, count(&row, &format!("b{i}"))?));
            }
            histograms.push(histogram);
        }
        Ok(histograms)
    }
}
