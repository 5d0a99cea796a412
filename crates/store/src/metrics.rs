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

/// Adds one (type, status) group's `prefix` columns (`dn`, `dsum`, `d0`...)
/// to its type's histogram, when the group has such rows.
fn add_to(
    histograms: &mut std::collections::BTreeMap<String, DurationHistogram>,
    job_type: &str,
    row: &sqlx::any::AnyRow,
    bounds: &[f64],
    prefix: &str,
) -> Result<(), StoreError> {
    let n = count(row, &format!("{prefix}n"))?;
    if n == 0 {
        return Ok(());
    }
    let sum: Option<f64> = row.try_get(format!("{prefix}sum").as_str())?;
    let histogram = histograms
        .entry(job_type.to_string())
        .or_insert_with(|| DurationHistogram {
            job_type: job_type.to_string(),
            buckets: bounds.iter().map(|b| (*b, 0)).collect(),
            count: 0,
            sum_seconds: 0.0,
        });
    histogram.count += n;
    histogram.sum_seconds += sum.unwrap_or(0.0);
    for (i, bucket) in histogram.buckets.iter_mut().enumerate() {
        bucket.1 += count(row, &format!("{prefix}{i}"))?;
    }
    Ok(())
}

fn count(row: &sqlx::any::AnyRow, column: &str) -> Result<u64, StoreError> {
    let n: Option<i64> = row.try_get(column)?;
    Ok(u64::try_from(n.unwrap_or(0)).unwrap_or(0))
}

impl Store {
    /// Job counts, duration histograms (with these bucket bounds, in
    /// seconds) and transcribed audio, for `/metrics`: one grouped pass
    /// over the jobs, one over the chunks.
    pub async fn job_metrics(&self, bounds: &[f64]) -> Result<JobMetrics, StoreError> {
        let mut metrics = JobMetrics::default();
        let transcription = pipeline_core::JobType::Transcription.as_str();
        let finished = "j.status = 'COMPLETED' AND j.started_at IS NOT NULL \
                        AND j.completed_at IS NOT NULL";
        let duration = self.seconds_between("j.started_at", "j.completed_at");
        let wait = self.seconds_between("j.available_at", "j.started_at");
        let buckets = |column: &str, prefix: &str| -> String {
            bounds
                .iter()
                .enumerate()
                .map(|(i, bound)| {
                    format!(
                        ", SUM(CASE WHEN {column} <= {bound:?} THEN 1 ELSE 0 END) AS {prefix}{i}"
                    )
                })
                .collect()
        };
        // A row's duration (completed jobs) and wait (running and completed
        // ones) are NULL where they do not apply, so each aggregate counts
        // only its own rows.
        let sql = format!(
            "SELECT job_type, status, COUNT(*) AS n, \
             SUM(CASE WHEN d IS NULL THEN 0 ELSE 1 END) AS dn, \
             CAST(SUM(d) AS DOUBLE PRECISION) AS dsum{d_buckets}, \
             SUM(CASE WHEN w IS NULL THEN 0 ELSE 1 END) AS wn, \
             CAST(SUM(w) AS DOUBLE PRECISION) AS wsum{w_buckets}, \
             CAST(SUM(audio) AS DOUBLE PRECISION) AS audio \
             FROM (SELECT j.job_type, j.status, \
                   CASE WHEN {finished} THEN \
                     (CASE WHEN {duration} > 0 THEN {duration} ELSE 0.0 END) END AS d, \
                   CASE WHEN j.status IN ('RUNNING', 'COMPLETED') AND j.started_at IS NOT NULL \
                     THEN (CASE WHEN {wait} > 0 THEN {wait} ELSE 0.0 END) END AS w, \
                   CASE WHEN j.job_type = '{transcription}' AND {finished} \
                     THEN a.duration_seconds END AS audio \
                   FROM processing_jobs j LEFT JOIN audio_files a ON a.id = j.audio_id) t \
             GROUP BY job_type, status ORDER BY job_type, status",
            d_buckets = buckets("d", "d"),
            w_buckets = buckets("w", "w"),
        );
        let mut durations = std::collections::BTreeMap::<String, DurationHistogram>::new();
        let mut waits = std::collections::BTreeMap::<String, DurationHistogram>::new();
        for row in sqlx::query(&sql).fetch_all(&self.pool).await? {
            let job_type: String = row.try_get("job_type")?;
            metrics
                .jobs
                .push((job_type.clone(), row.try_get("status")?, count(&row, "n")?));
            add_to(&mut durations, &job_type, &row, bounds, "d")?;
            add_to(&mut waits, &job_type, &row, bounds, "w")?;
            let audio: Option<f64> = row.try_get("audio")?;
            metrics.audio_seconds += audio.unwrap_or(0.0);
        }
        metrics.durations = durations.into_values().collect();
        metrics.queue_waits = waits.into_values().collect();
        metrics.chunk_durations = self
            .histograms(
                bounds,
                &self.seconds_between("started_at", "completed_at"),
                "transcription_chunks WHERE status = 'COMPLETED' \
                 AND started_at IS NOT NULL AND completed_at IS NOT NULL",
                "'TRANSCRIPTION'",
            )
            .await?;
        if let Some(histogram) = metrics
            .durations
            .iter()
            .find(|h| h.job_type == transcription)
        {
            metrics.transcribe_seconds = histogram.sum_seconds;
        }
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
