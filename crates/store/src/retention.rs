//! What is kept how long: rows that only serve a while (live segments of
//! ended jobs, settled webhook deliveries) are pruned in bounded batches,
//! so that the database does not grow with every file ever processed.

use chrono::Duration as TimeDelta;
use std::time::Duration;

use crate::rows::ts;
use crate::{Store, StoreError};

/// Rows deleted per statement: a prune never holds a long lock.
const BATCH: i64 = 5_000;

/// How long each kind of row is kept; `None` keeps it for good.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Retention {
    /// Live transcript segments, after their job ended (the transcript has them all).
    pub live_segments: Option<Duration>,
    /// DELIVERED webhook deliveries, after delivery.
    pub delivered_webhooks: Option<Duration>,
    /// FAILED webhook deliveries, after they were created (`webhooks retry` needs them).
    pub failed_webhooks: Option<Duration>,
}

impl Default for Retention {
    fn default() -> Self {
        Retention {
            live_segments: Some(Duration::from_secs(24 * 3600)),
            delivered_webhooks: Some(Duration::from_secs(7 * 24 * 3600)),
            failed_webhooks: Some(Duration::from_secs(30 * 24 * 3600)),
        }
    }
}

/// What one prune deleted.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Pruned {
    pub live_segments: u64,
    pub webhook_deliveries: u64,
}

impl Store {
    /// Deletes what `retention` no longer keeps.
    pub async fn prune(&self, retention: &Retention) -> Result<Pruned, StoreError> {
        let now = self.now().await?;
        let before = |age: Duration| {
            let cutoff = TimeDelta::from_std(age)
                .ok()
                .and_then(|age| now.checked_sub_signed(age))
                .unwrap_or(chrono::DateTime::<chrono::Utc>::MIN_UTC);
            ts(cutoff)
        };
        let mut pruned = Pruned::default();
        if let Some(age) = retention.live_segments {
            pruned.live_segments = self
                .delete_in_batches(
                    "DELETE FROM live_segments WHERE id IN (SELECT s.id FROM live_segments s \
                     JOIN processing_jobs j ON j.id = s.job_id \
                     WHERE j.status IN ('COMPLETED', 'FAILED', 'CANCELLED') \
                     AND j.completed_at < $1 LIMIT $2)",
                    &before(age),
                )
                .await?;
        }
        for (keep, status, since) in [
            (retention.delivered_webhooks, "DELIVERED", "delivered_at"),
            (retention.failed_webhooks, "FAILED", "created_at"),
        ] {
            let Some(age) = keep else { continue };
            let sql = format!(
                "DELETE FROM webhook_deliveries WHERE id IN (SELECT id FROM webhook_deliveries \
                 WHERE status = '{status}' AND {since} < $1 LIMIT $2)"
            );
            pruned.webhook_deliveries += self.delete_in_batches(&sql, &before(age)).await?;
        }
        Ok(pruned)
    }

    async fn delete_in_batches(&self, sql: &str, before: &str) -> Result<u64, StoreError> {
        let mut total = 0;
        loop {
            let deleted = sqlx::query(sql)
                .bind(before)
                .bind(BATCH)
                .execute(&self.pool)
                .await?
                .rows_affected();
            total += deleted;
            if deleted < BATCH as u64 {
                return Ok(total);
            }
        }
    }
}
