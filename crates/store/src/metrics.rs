//! Figures for `/metrics`, aggregated by the database: a scrape costs a
//! few grouped reads however many jobs have ever run.

use sqlx::Row;

use crate::{Backend, Store, StoreError};

/// A histogram of completed jobs' durations for one job type.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct DurationHistogram {
    pub job_type: String,
    /// (upper bound in seconds, jobs at or under it), cumulative.
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
        // Times are RFC 3339 text in both dialects.
        let seconds = match self.backend {
            Backend::Postgres => {
                "CAST(EXTRACT(EPOCH FROM (CAST(j.completed_at AS TIMESTAMPTZ) \
                 - CAST(j.started_at AS TIMESTAMPTZ))) AS DOUBLE PRECISION)"
            }
            Backend::Sqlite => "((julianday(j.completed_at) - julianday(j.started_at)) * 86400.0)",
        };
        let buckets: String = bounds
            .iter()
            .enumerate()
            .map(|(i, bound)| format!(", SUM(CASE WHEN d <= {bound:?} THEN 1 ELSE 0 END) AS b{i}"))
            .collect();
        let sql = format!(
            "SELECT job_type, COUNT(*) AS n, CAST(SUM(d) AS DOUBLE PRECISION) AS total, \
             CAST(SUM(audio) AS DOUBLE PRECISION) AS audio{buckets} \
             FROM (SELECT j.job_type, \
                   CASE WHEN {seconds} > 0 THEN {seconds} ELSE 0.0 END AS d, \
                   a.duration_seconds AS audio \
                   FROM processing_jobs j JOIN audio_files a ON a.id = j.audio_id \
                   WHERE j.status = 'COMPLETED' AND j.started_at IS NOT NULL \
                   AND j.completed_at IS NOT NULL) t \
             GROUP BY job_type ORDER BY job_type"
        );
        for row in sqlx::query(&sql).fetch_all(&self.pool).await? {
            let job_type: String = row.try_get("job_type")?;
            let total: Option<f64> = row.try_get("total")?;
            let mut histogram = DurationHistogram {
                job_type: job_type.clone(),
                buckets: Vec::with_capacity(bounds.len()),
                count: count(&row, "n")?,
                sum_seconds: total.unwrap_or(0.0),
            };
            for (i, bound) in bounds.iter().enumerate() {
                histogram
                    .buckets
                    .push((*bound, count(&row, &format!("b{i}"))?));
            }
            if job_type == pipeline_core::JobType::Transcription.as_str() {
                let audio: Option<f64> = row.try_get("audio")?;
                metrics.audio_seconds = audio.unwrap_or(0.0);
                metrics.transcribe_seconds = histogram.sum_seconds;
            }
            metrics.durations.push(histogram);
        }
        Ok(metrics)
    }
}
