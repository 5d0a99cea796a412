//! The webhook outbox. A transition that users are notified of writes its
//! event into `webhook_events` in the transaction of the transition itself,
//! so a crash can never commit one without the other. A relay (any
//! `serve`, `worker` or `process`) later fans each event out into one
//! delivery per endpoint and sends them, oldest first per endpoint.
//!
//! Events are written for every file when global endpoints are configured,
//! and otherwise only for files submitted with their own endpoint.

use chrono::{DateTime, Utc};
use pipeline_core::{AudioStatus, JobStatus, ProcessingJob};
use serde::Serialize;
use serde_json::{json, Value};
use sqlx::{Any, Row, Transaction};
use std::time::Duration;
use uuid::Uuid;

use crate::rows::{self, corrupt, opt_time, time, ts};
use crate::{Store, StoreError};

/// An endpoint that receives events, with the key its requests are signed with.
#[derive(Clone, PartialEq, Eq)]
pub struct WebhookEndpoint {
    pub url: String,
    /// HMAC-SHA256 key; requests go unsigned without one.
    pub secret: Option<String>,
}

impl std::fmt::Debug for WebhookEndpoint {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("WebhookEndpoint")
            .field("url", &pipeline_core::config::mask_url(&self.url))
            .field("secret", &self.secret.as_ref().map(|_| "****"))
            .finish()
    }
}

/// Where a delivery stands.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(rename_all = "SCREAMING_SNAKE_CASE")]
pub enum DeliveryStatus {
    /// Not delivered yet; tried again at `next_attempt_at`.
    Pending,
    Delivered,
    /// Given up after the retry period; `webhooks retry` sends it again.
    Failed,
}

impl DeliveryStatus {
    /// The name stored and shown.
    pub fn as_str(self) -> &'static str {
        match self {
            DeliveryStatus::Pending => "PENDING",
            DeliveryStatus::Delivered => "DELIVERED",
            DeliveryStatus::Failed => "FAILED",
        }
    }
}

impl std::str::FromStr for DeliveryStatus {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s.to_ascii_uppercase().as_str() {
            "PENDING" => Ok(DeliveryStatus::Pending),
            "DELIVERED" => Ok(DeliveryStatus::Delivered),
            "FAILED" => Ok(DeliveryStatus::Failed),
            _ => Err(format!(
                "unknown delivery status {s:?} (expected PENDING, DELIVERED or FAILED)"
            )),
        }
    }
}

/// One event on its way to one endpoint.
#[derive(Debug, Clone, PartialEq, Serialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct WebhookDelivery {
    pub id: i64,
    /// The event's id, the same for every endpoint: receivers deduplicate on it.
    pub event_id: Uuid,
    pub event: String,
    pub audio_id: Uuid,
    pub job_id: Option<Uuid>,
    pub url: String,
    #[serde(skip)]
    pub secret: Option<String>,
    /// The JSON body sent.
    #[serde(skip)]
    pub payload: String,
    pub status: DeliveryStatus,
    pub attempts: u32,
    pub next_attempt_at: DateTime<Utc>,
    pub last_status_code: Option<u16>,
    pub last_error: Option<String>,
    pub created_at: DateTime<Utc>,
    pub delivered_at: Option<DateTime<Utc>>,
}

/// How one attempt to deliver ended.
#[derive(Debug, Clone, PartialEq)]
pub enum AttemptOutcome {
    /// The endpoint answered 2xx.
    Delivered { status_code: u16 },
    /// No 2xx answer; tried again at `retry_at`, or given up when `None`.
    Failed {
        status_code: Option<u16>,
        error: String,
        retry_at: Option<DateTime<Utc>>,
    },
}

/// Whether transitions of files without their own endpoint write events.
#[derive(Debug, Clone, Copy, Default)]
pub(crate) struct Outbox {
    pub all_files: bool,
    /// Whether the file at hand has its own endpoint, when the caller read
    /// it already ([`ENDPOINT_COLUMN`]); unknown makes every write ask.
    pub file_endpoint: Option<bool>,
}

/// A column for queries on `processing_jobs`: 1 when the job's file has its
/// own webhook endpoint, so that the outbox need not ask per event.
pub(crate) const ENDPOINT_COLUMN: &str = "CAST(CASE WHEN EXISTS (SELECT 1 FROM audio_webhooks w \
     WHERE w.audio_id = processing_jobs.audio_id) THEN 1 ELSE 0 END AS BIGINT) AS file_endpoint";

/// The event a job's move to `to` is reported as, if any.
fn job_event_name(to: JobStatus) -> Option<&'static str> {
    match to {
        JobStatus::Running => Some("job.started"),
        JobStatus::Completed => Some("job.completed"),
        JobStatus::Failed => Some("job.failed"),
        JobStatus::Cancelled => Some("job.cancelled"),
        _ => None,
    }
}

/// The event a file's move to `to` is reported as, if any.
fn audio_event_name(to: AudioStatus) -> Option<&'static str> {
    match to {
        AudioStatus::Queued => Some("audio.queued"),
        AudioStatus::Completed => Some("audio.completed"),
        AudioStatus::Failed => Some("audio.failed"),
        AudioStatus::Cancelled => Some("audio.cancelled"),
        AudioStatus::Processing => None,
    }
}

/// The job's fields as webhook receivers get them.
fn job_fields(job: &ProcessingJob) -> Value {
    json!({
        "id": job.id,
        "type": job.job_type.as_str(),
        "status": job.status.as_str(),
        "progress": job.progress,
        "attempt": job.attempt,
        "max_attempts": job.max_attempts,
        "lost_leases": job.lost_leases,
        "task_id": job.task_id,
        "error": job.error.as_ref().map(|e| json!({"kind": e.kind.as_str(), "message": e.message})),
        "created_at": job.created_at,
        "started_at": job.started_at,
        "completed_at": job.completed_at,
    })
}

impl Outbox {
    /// This outbox for the file of a row read with [`ENDPOINT_COLUMN`].
    pub(crate) fn for_row(self, row: &sqlx::any::AnyRow) -> Result<Outbox, StoreError> {
        let flag: i64 = sqlx::Row::try_get(row, "file_endpoint")?;
        Ok(Outbox {
            file_endpoint: Some(flag != 0),
            ..self
        })
    }

    /// Writes `event` for `audio_id` when someone listens for that file.
    async fn write(
        self,
        tx: &mut Transaction<'_, Any>,
        event: &str,
        audio_id: Uuid,
        job_id: Option<Uuid>,
        details: (&str, Value),
    ) -> Result<(), StoreError> {
        if !self.all_files && self.file_endpoint == Some(false) {
            return Ok(());
        }
        let event_id = Uuid::new_v4();
        let now = Utc::now();
        let mut payload = json!({
            "id": event_id,
            "event": event,
            "created_at": now,
            "audio_id": audio_id,
        });
        payload[details.0] = details.1;
        sqlx::query(
            "INSERT INTO webhook_events (event_id, event, audio_id, job_id, payload, created_at) \
             SELECT $1, $2, $3, $4, $5, $6 \
             WHERE $7 = 1 OR EXISTS (SELECT 1 FROM audio_webhooks WHERE audio_id = $3)",
        )
        .bind(event_id.to_string())
        .bind(event)
        .bind(audio_id.to_string())
        .bind(job_id.map(|id| id.to_string()))
        .bind(payload.to_string())
        .bind(ts(now))
        .bind(i64::from(self.all_files))
        .execute(&mut **tx)
        .await?;
        Ok(())
    }

    /// Reports a job's move from `from` to its current status, if users are
    /// told of such moves.
    pub(crate) async fn job_moved(
        self,
        tx: &mut Transaction<'_, Any>,
        from: Option<JobStatus>,
        job: &ProcessingJob,
    ) -> Result<(), StoreError> {
        if from == Some(job.status) {
            return Ok(());
        }
        let Some(event) = job_event_name(job.status) else {
            return Ok(());
        };
        self.write(
            tx,
            event,
            job.audio_id,
            Some(job.id),
            ("job", job_fields(job)),
        )
        .await
    }

    /// Reports a running job's progress.
    pub(crate) async fn job_progressed(
        self,
        tx: &mut Transaction<'_, Any>,
        job: &ProcessingJob,
    ) -> Result<(), StoreError> {
        self.write(
            tx,
            "job.progress",
            job.audio_id,
            Some(job.id),
            ("job", job_fields(job)),
        )
        .await
    }

    /// Reports a file's move to `to`, if users are told of such moves.
    pub(crate) async fn audio_moved(
        self,
        tx: &mut Transaction<'_, Any>,
        audio_id: Uuid,
        to: AudioStatus,
    ) -> Result<(), StoreError> {
        let Some(event) = audio_event_name(to) else {
            return Ok(());
        };
        let details = json!({"id": audio_id, "status": to.as_str()});
        self.write(tx, event, audio_id, None, ("audio", details))
            .await
    }
}

/// Adds a file's own endpoints inside its ingest transaction.
pub(crate) async fn subscribe(
    tx: &mut Transaction<'_, Any>,
    audio_id: Uuid,
    endpoints: &[WebhookEndpoint],
) -> Result<(), StoreError> {
    for endpoint in endpoints {
        sqlx::query(
            "INSERT INTO audio_webhooks (audio_id, url, secret) VALUES ($1, $2, $3) \
             ON CONFLICT (audio_id, url) DO NOTHING",
        )
        .bind(audio_id.to_string())
        .bind(&endpoint.url)
        .bind(endpoint.secret.clone())
        .execute(&mut **tx)
        .await?;
    }
    Ok(())
}

const DELIVERY_COLUMNS: &str = "id, event_id, event, audio_id, job_id, url, secret, payload, \
     status, attempts, next_attempt_at, last_status_code, last_error, created_at, delivered_at";

fn delivery(row: &sqlx::any::AnyRow) -> Result<WebhookDelivery, StoreError> {
    const T: &str = "webhook_deliveries";
    let text = |column: &str| -> Result<String, StoreError> {
        row.try_get(column)
            .map_err(|e| corrupt(T, format!("column {column}: {e}")))
    };
    let status: String = text("status")?;
    let job_id: Option<String> = row
        .try_get("job_id")
        .map_err(|e| corrupt(T, format!("column job_id: {e}")))?;
    let last_status_code: Option<i64> = row
        .try_get("last_status_code")
        .map_err(|e| corrupt(T, format!("column last_status_code: {e}")))?;
    let attempts: i64 = row
        .try_get("attempts")
        .map_err(|e| corrupt(T, format!("column attempts: {e}")))?;
    Ok(WebhookDelivery {
        id: row
            .try_get("id")
            .map_err(|e| corrupt(T, format!("column id: {e}")))?,
        event_id: rows::uuid(T, "event_id", row)?,
        event: text("event")?,
        audio_id: rows::uuid(T, "audio_id", row)?,
        job_id: job_id
            .map(|id| Uuid::parse_str(&id).map_err(|e| corrupt(T, format!("column job_id: {e}"))))
            .transpose()?,
        url: text("url")?,
        secret: row
            .try_get("secret")
            .map_err(|e| corrupt(T, format!("column secret: {e}")))?,
        payload: text("payload")?,
        status: status.parse().map_err(|e: String| corrupt(T, e))?,
        attempts: u32::try_from(attempts).unwrap_or(u32::MAX),
        next_attempt_at: time(T, "next_attempt_at", &text("next_attempt_at")?)?,
        last_status_code: last_status_code.and_then(|c| u16::try_from(c).ok()),
        last_error: row
            .try_get("last_error")
            .map_err(|e| corrupt(T, format!("column last_error: {e}")))?,
        created_at: time(T, "created_at", &text("created_at")?)?,
        delivered_at: opt_time(row, T, "delivered_at")?,
    })
}

impl Store {
    /// Writes webhook events for every file (global endpoints are
    /// configured), not only for files submitted with their own endpoint.
    pub fn with_webhooks_for_all_files(mut self, on: bool) -> Store {
        self.outbox.all_files = on;
        self
    }

    /// Turns up to `limit` outbox events into deliveries: one for each of
    /// `global` and each of the file's own endpoints. Returns how many
    /// events were handled.
    pub async fn fan_out_webhook_events(
        &self,
        global: &[WebhookEndpoint],
        limit: u32,
    ) -> Result<usize, StoreError> {
        let rows = sqlx::query(
            "SELECT id, event_id, event, audio_id, job_id, payload, created_at \
             FROM webhook_events ORDER BY id LIMIT $1",
        )
        .bind(i64::from(limit))
        .fetch_all(&self.pool)
        .await?;
        let mut handled = 0;
        for row in rows {
            let id: i64 = row.try_get("id")?;
            let audio_id: String = row.try_get("audio_id")?;
            let mut tx = self.pool.begin().await?;
            // Whoever removes the event fans it out (its deliveries carry
            // the payload from then on); a second relay finds it gone.
            let taken = sqlx::query("DELETE FROM webhook_events WHERE id = $1")
                .bind(id)
                .execute(&mut *tx)
                .await?;
            if taken.rows_affected() != 1 {
                tx.rollback().await?;
                continue;
            }
            let own = sqlx::query("SELECT url, secret FROM audio_webhooks WHERE audio_id = $1")
                .bind(&audio_id)
                .fetch_all(&mut *tx)
                .await?;
            let mut endpoints: Vec<WebhookEndpoint> = global.to_vec();
            for row in own {
                let url: String = row.try_get("url")?;
                if endpoints.iter().all(|e| e.url != url) {
                    endpoints.push(WebhookEndpoint {
                        url,
                        secret: row.try_get("secret")?,
                    });
                }
            }
            let event_id: String = row.try_get("event_id")?;
            let event: String = row.try_get("event")?;
            let job_id: Option<String> = row.try_get("job_id")?;
            let payload: String = row.try_get("payload")?;
            let created_at: String = row.try_get("created_at")?;
            for endpoint in endpoints {
                sqlx::query(
                    "INSERT INTO webhook_deliveries (event_id, event, audio_id, job_id, url, \
                     secret, payload, status, attempts, next_attempt_at, created_at) \
                     VALUES ($1, $2, $3, $4, $5, $6, $7, 'PENDING', 0, $8, $8)",
                )
                .bind(&event_id)
                .bind(&event)
                .bind(&audio_id)
                .bind(job_id.clone())
                .bind(&endpoint.url)
                .bind(endpoint.secret)
                .bind(&payload)
                .bind(&created_at)
                .execute(&mut *tx)
                .await?;
            }
            tx.commit().await?;
            handled += 1;
        }
        Ok(handled)
    }

    /// Takes the deliveries that are due, at most `limit`, each the oldest
    /// pending one of its endpoint so that every endpoint sees its events in
    /// order, and holds them for `hold` against other relays.
    pub async fn take_due_webhook_deliveries(
        &self,
        limit: u32,
        hold: Duration,
    ) -> Result<Vec<WebhookDelivery>, StoreError> {
        let now = Utc::now();
        let rows = sqlx::query(&format!(
            "SELECT {DELIVERY_COLUMNS} FROM webhook_deliveries d \
             WHERE status = 'PENDING' AND next_attempt_at <= $1 \
             AND (locked_until IS NULL OR locked_until < $1) \
             AND id = (SELECT MIN(id) FROM webhook_deliveries e \
                       WHERE e.url = d.url AND e.status = 'PENDING') \
             ORDER BY id LIMIT $2"
        ))
        .bind(ts(now))
        .bind(i64::from(limit))
        .fetch_all(&self.pool)
        .await?;
        let until = now + chrono::Duration::from_std(hold).unwrap_or(chrono::Duration::seconds(60));
        let mut taken = Vec::with_capacity(rows.len());
        for row in rows {
            let candidate = delivery(&row)?;
            let held = sqlx::query(
                "UPDATE webhook_deliveries SET locked_until = $1 WHERE id = $2 \
                 AND status = 'PENDING' AND (locked_until IS NULL OR locked_until < $3)",
            )
            .bind(ts(until))
            .bind(candidate.id)
            .bind(ts(now))
            .execute(&self.pool)
            .await?;
            if held.rows_affected() == 1 {
                taken.push(candidate);
            }
        }
        Ok(taken)
    }

    /// Records how an attempt ended.
    pub async fn finish_webhook_attempt(
        &self,
        id: i64,
        outcome: &AttemptOutcome,
    ) -> Result<(), StoreError> {
        let now = Utc::now();
        let (status, code, error, next, delivered) = match outcome {
            AttemptOutcome::Delivered { status_code } => (
                DeliveryStatus::Delivered,
                Some(*status_code),
                None,
                now,
                Some(now),
            ),
            AttemptOutcome::Failed {
                status_code,
                error,
                retry_at,
            } => match retry_at {
                Some(at) => (
                    DeliveryStatus::Pending,
                    *status_code,
                    Some(error.clone()),
                    *at,
                    None,
                ),
                None => (
                    DeliveryStatus::Failed,
                    *status_code,
                    Some(error.clone()),
                    now,
                    None,
                ),
            },
        };
        let updated = sqlx::query(
            "UPDATE webhook_deliveries SET status = $1, attempts = attempts + 1, \
             last_status_code = $2, last_error = $3, next_attempt_at = $4, delivered_at = $5, \
             locked_until = NULL WHERE id = $6",
        )
        .bind(status.as_str())
        .bind(code.map(i64::from))
        .bind(error)
        .bind(ts(next))
        .bind(delivered.map(ts))
        .bind(id)
        .execute(&self.pool)
        .await?;
        if updated.rows_affected() == 0 {
            return Err(StoreError::NotFoundDelivery(id));
        }
        Ok(())
    }

    /// Deliveries, newest first, optionally of one status.
    pub async fn webhook_deliveries(
        &self,
        status: Option<DeliveryStatus>,
        limit: u32,
    ) -> Result<Vec<WebhookDelivery>, StoreError> {
        let filter = if status.is_some() {
            "WHERE status = $2"
        } else {
            "WHERE $2 = $2"
        };
        let rows = sqlx::query(&format!(
            "SELECT {DELIVERY_COLUMNS} FROM webhook_deliveries {filter} ORDER BY id DESC LIMIT $1"
        ))
        .bind(i64::from(limit))
        .bind(status.map(|s| s.as_str()).unwrap_or(""))
        .fetch_all(&self.pool)
        .await?;
        rows.iter().map(delivery).collect()
    }

    /// One delivery.
    pub async fn webhook_delivery(&self, id: i64) -> Result<WebhookDelivery, StoreError> {
        let row = sqlx::query(&format!(
            "SELECT {DELIVERY_COLUMNS} FROM webhook_deliveries WHERE id = $1"
        ))
        .bind(id)
        .fetch_optional(&self.pool)
        .await?;
        match row {
            Some(row) => delivery(&row),
            None => Err(StoreError::NotFoundDelivery(id)),
        }
    }

    /// Sends a delivery again now (a failed one, or a pending one at once).
    pub async fn retry_webhook_delivery(&self, id: i64) -> Result<WebhookDelivery, StoreError> {
        let updated = sqlx::query(
            "UPDATE webhook_deliveries SET status = 'PENDING', next_attempt_at = $1, \
             locked_until = NULL WHERE id = $2 AND status <> 'DELIVERED'",
        )
        .bind(ts(Utc::now()))
        .bind(id)
        .execute(&self.pool)
        .await?;
        let found = self.webhook_delivery(id).await?;
        if updated.rows_affected() == 0 {
            return Err(StoreError::AlreadyDelivered(id));
        }
        Ok(found)
    }

    /// Sends every failed delivery again; returns how many.
    pub async fn retry_failed_webhook_deliveries(&self) -> Result<u64, StoreError> {
        let updated = sqlx::query(
            "UPDATE webhook_deliveries SET status = 'PENDING', next_attempt_at = $1, \
             locked_until = NULL WHERE status = 'FAILED'",
        )
        .bind(ts(Utc::now()))
        .execute(&self.pool)
        .await?;
        Ok(updated.rows_affected())
    }

    /// When the next pending delivery is due, if any is pending.
    pub async fn next_webhook_attempt_at(&self) -> Result<Option<DateTime<Utc>>, StoreError> {
        let row = sqlx::query(
            "SELECT MIN(next_attempt_at) AS at FROM webhook_deliveries WHERE status = 'PENDING'",
        )
        .fetch_one(&self.pool)
        .await?;
        let at: Option<String> = row.try_get("at")?;
        at.map(|at| time("webhook_deliveries", "next_attempt_at", &at))
            .transpose()
    }

    /// Deliveries by status, for `/metrics`.
    pub async fn webhook_delivery_counts(&self) -> Result<Vec<(String, u64)>, StoreError> {
        let rows = sqlx::query(
            "SELECT status, COUNT(*) AS n FROM webhook_deliveries GROUP BY status ORDER BY status",
        )
        .fetch_all(&self.pool)
        .await?;
        rows.iter()
            .map(|row| {
                let n: i64 = row.try_get("n")?;
                Ok((row.try_get("status")?, u64::try_from(n).unwrap_or(0)))
            })
            .collect()
    }

    /// Writes `job.progress` when a running job's progress crossed into a
    /// new tenth since the last one reported.
    pub(crate) async fn report_progress(
        &self,
        job: &ProcessingJob,
        notified: f64,
    ) -> Result<(), StoreError> {
        if (job.progress / 10.0).floor() <= (notified / 10.0).floor() || job.progress >= 100.0 {
            return Ok(());
        }
        let mut tx = self.pool.begin().await?;
        let claimed = sqlx::query(
            "UPDATE processing_jobs SET progress_notified = $1 \
             WHERE id = $2 AND attempt = $3 AND progress_notified < $1",
        )
        .bind(job.progress)
        .bind(job.id.to_string())
        .bind(i64::from(job.attempt))
        .execute(&mut *tx)
        .await?;
        if claimed.rows_affected() == 1 {
            self.outbox.job_progressed(&mut tx, job).await?;
            tx.commit().await?;
        } else {
            tx.rollback().await?;
        }
        Ok(())
    }
}
