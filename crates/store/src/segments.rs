//! Transcript segments as a running transcription produces them, so that
//! live progress streams in any process can show a partial transcript.

use serde::Serialize;
use sqlx::Row;
use uuid::Uuid;

use crate::jobs::Lease;
use crate::rows;
use crate::{Store, StoreError};

/// One segment of a running transcription.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct LiveSegment {
    /// Position in the stream of all live segments (the resume cursor).
    pub id: i64,
    pub audio_id: Uuid,
    pub job_id: Uuid,
    /// Segments of an earlier attempt are superseded by a later one's.
    pub attempt: u32,
    /// Position of the segment in its transcript, from 0.
    pub segment: u32,
    pub start: f64,
    pub end: f64,
    pub text: String,
}

/// A segment to record: (position, start, end, text).
pub type NewSegment = (u32, f64, f64, String);

impl Store {
    /// Records segments of the attempt `held` runs.
    pub async fn add_live_segments(
        &self,
        held: &Lease,
        segments: &[NewSegment],
    ) -> Result<(), StoreError> {
        if segments.is_empty() {
            return Ok(());
        }
        let mut tx = self.pool.begin().await?;
        for (segment, start, end, text) in segments {
            sqlx::query(
                "INSERT INTO live_segments (audio_id, job_id, attempt, segment, start_seconds, \
                 end_seconds, text) VALUES ($1, $2, $3, $4, $5, $6, $7)",
            )
            .bind(held.audio_id.to_string())
            .bind(held.job_id.to_string())
            .bind(i64::from(held.attempt))
            .bind(i64::from(*segment))
            .bind(*start)
            .bind(*end)
            .bind(text)
            .execute(&mut *tx)
            .await?;
        }
        tx.commit().await?;
        Ok(())
    }

    /// Live segments after `after` (all files, or one), oldest first.
    pub async fn live_segments_after(
        &self,
        after: i64,
        audio_id: Option<Uuid>,
        limit: u32,
    ) -> Result<Vec<LiveSegment>, StoreError> {
        let filter = if audio_id.is_some() {
            "AND audio_id = $3"
        } else {
            "AND $3 = $3"
        };
        let rows = sqlx::query(&format!(
            "SELECT id, audio_id, job_id, attempt, segment, start_seconds, end_seconds, text \
             FROM live_segments WHERE id > $1 {filter} ORDER BY id LIMIT $2"
        ))
        .bind(after)
        .bind(i64::from(limit))
        .bind(audio_id.map(|id| id.to_string()).unwrap_or_default())
        .fetch_all(&self.pool)
        .await?;
        const T: &str = "live_segments";
        rows.iter()
            .map(|row| {
                let attempt: i64 = row.try_get("attempt")?;
                let segment: i64 = row.try_get("segment")?;
                Ok(LiveSegment {
                    id: row.try_get("id")?,
                    audio_id: rows::uuid(T, "audio_id", row)?,
                    job_id: rows::uuid(T, "job_id", row)?,
                    attempt: u32::try_from(attempt).unwrap_or(0),
                    segment: u32::try_from(segment).unwrap_or(0),
                    start: row.try_get("start_seconds")?,
                    end: row.try_get("end_seconds")?,
                    text: row.try_get("text")?,
                })
            })
            .collect()
    }

    /// The id of the newest live segment (0 when there is none).
    pub async fn last_live_segment_id(&self) -> Result<i64, StoreError> {
        let row = sqlx::query("SELECT COALESCE(MAX(id), 0) AS id FROM live_segments")
            .fetch_one(&self.pool)
            .await?;
        Ok(row.try_get::<i64, _>("id")?)
    }
}
