//! Which waiting jobs of a broker have had their message sent.
//!
//! A job becomes runnable in one transaction and its message is published
//! after that commits: a worker that dies in between would leave the job
//! QUEUED with no message anywhere. Every move to QUEUED or RETRYING clears
//! `dispatched_at`; a publish sets it; each broker's sweep sends again what
//! has waited unsent for a while. Duplicates are harmless: the job's row
//! decides who runs it.

use chrono::{DateTime, Utc};
use pipeline_core::ProcessingJob;
use uuid::Uuid;

use crate::jobs::placeholders;
use crate::rows::{self, ts, JOB_COLUMNS};
use crate::{Store, StoreError};

impl Store {
    /// Records that the messages of these jobs were just published.
    pub async fn mark_dispatched(&self, ids: &[Uuid]) -> Result<(), StoreError> {
        if ids.is_empty() {
            return Ok(());
        }
        let now = self.now().await?;
        let sql = format!(
            "UPDATE processing_jobs SET dispatched_at = $1 \
             WHERE status IN ('QUEUED', 'RETRYING') AND id IN ({})",
            placeholders(2, ids.len())
        );
        let mut query = sqlx::query(&sql).bind(ts(now));
        for id in ids {
            query = query.bind(id.to_string());
        }
        query.execute(&self.pool).await?;
        Ok(())
    }

    /// Forgets that a waiting job's message was sent: its message was
    /// taken off the broker before the job was due, and the sweep sends a
    /// new one when it is.
    pub async fn mark_undispatched(&self, id: Uuid) -> Result<(), StoreError> {
        sqlx::query(
            "UPDATE processing_jobs SET dispatched_at = NULL \
             WHERE status IN ('QUEUED', 'RETRYING') AND id = $1",
        )
        .bind(id.to_string())
        .execute(&self.pool)
        .await?;
        Ok(())
    }

    /// Runnable jobs carried by `transport` whose message has not been sent
    /// although they became runnable before `before`, oldest first, at
    /// most `limit`.
    pub async fn undispatched(
        &self,
        transport: &str,
        before: DateTime<Utc>,
        limit: u32,
    ) -> Result<Vec<ProcessingJob>, StoreError> {
        let rows = sqlx::query(&format!(
            "SELECT {JOB_COLUMNS} FROM processing_jobs WHERE status IN ('QUEUED', 'RETRYING') \
             AND transport = $1 AND dispatched_at IS NULL AND available_at <= $2 \
             ORDER BY available_at, created_at, id LIMIT $3"
        ))
        .bind(transport)
        .bind(ts(before))
        .bind(i64::from(limit))
        .fetch_all(&self.pool)
        .await?;
        rows.iter().map(rows::job).collect()
    }
}
