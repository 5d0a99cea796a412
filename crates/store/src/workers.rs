//! Worker presence, from the heartbeats workers write while they run.

use chrono::{DateTime, Utc};
use sqlx::Row;
use uuid::Uuid;

use crate::rows::{corrupt, time, ts};
use crate::{Store, StoreError};

/// A worker process as it last reported itself.
#[derive(Debug, Clone, PartialEq, serde::Serialize)]
pub struct WorkerInfo {
    pub id: String,
    pub host: String,
    pub pid: u32,
    pub concurrency: u32,
    pub current_jobs: Vec<Uuid>,
    pub started_at: DateTime<Utc>,
    pub last_seen: DateTime<Utc>,
}

impl Store {
    /// Records that a worker is alive and what it is doing.
    pub async fn worker_seen(&self, worker: &WorkerInfo) -> Result<(), StoreError> {
        let jobs = serde_json::to_string(&worker.current_jobs).unwrap_or_else(|_| "[]".into());
        let mut tx = self.pool.begin().await?;
        sqlx::query("DELETE FROM workers WHERE id = $1")
            .bind(&worker.id)
            .execute(&mut *tx)
            .await?;
        sqlx::query(
            "INSERT INTO workers (id, host, pid, concurrency, current_jobs, started_at, last_seen) \
             VALUES ($1, $2, $3, $4, $5, $6, $7)",
        )
        .bind(&worker.id)
        .bind(&worker.host)
        .bind(i64::from(worker.pid))
        .bind(i64::from(worker.concurrency))
        .bind(jobs)
        .bind(ts(worker.started_at))
        .bind(ts(worker.last_seen))
        .execute(&mut *tx)
        .await?;
        tx.commit().await?;
        Ok(())
    }

    /// Removes a worker that stopped cleanly.
    pub async fn worker_gone(&self, id: &str) -> Result<(), StoreError> {
        sqlx::query("DELETE FROM workers WHERE id = $1")
            .bind(id)
            .execute(&self.pool)
            .await?;
        Ok(())
    }

    /// Workers seen since `since`, most recent first.
    pub async fn workers_since(&self, since: DateTime<Utc>) -> Result<Vec<WorkerInfo>, StoreError> {
        let rows = sqlx::query(
            "SELECT id, host, pid, concurrency, current_jobs, started_at, last_seen FROM workers \
             WHERE last_seen >= $1 ORDER BY last_seen DESC",
        )
        .bind(ts(since))
        .fetch_all(&self.pool)
        .await?;
        const T: &str = "workers";
        rows.iter()
            .map(|row| {
                let jobs: String = row.try_get("current_jobs")?;
                Ok(WorkerInfo {
                    id: row.try_get("id")?,
                    host: row.try_get("host")?,
                    pid: u32::try_from(row.try_get::<i64, _>("pid")?).unwrap_or(0),
                    concurrency: u32::try_from(row.try_get::<i64, _>("concurrency")?).unwrap_or(0),
                    current_jobs: serde_json::from_str(&jobs)
                        .map_err(|e| corrupt(T, format!("column current_jobs: {e}")))?,
                    started_at: time(T, "started_at", &row.try_get::<String, _>("started_at")?)?,
                    last_seen: time(T, "last_seen", &row.try_get::<String, _>("last_seen")?)?,
                })
            })
            .collect()
    }
}
