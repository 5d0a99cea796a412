//! API keys of the HTTP server. A key is shown once, when created; the
//! database keeps only its SHA-256 digest (keys are long random strings, so
//! a fast digest is enough), and a revoked key stays listed.

use chrono::{DateTime, Utc};
use sha2::{Digest, Sha256};
use sqlx::Row;
use uuid::Uuid;

use crate::rows::{opt_time, time, ts};
use crate::{Store, StoreError};

/// An API key as listed (never the key itself).
#[derive(Debug, Clone, PartialEq, serde::Serialize)]
pub struct ApiKey {
    pub id: Uuid,
    pub name: String,
    pub created_at: DateTime<Utc>,
    pub last_used_at: Option<DateTime<Utc>>,
    pub revoked_at: Option<DateTime<Utc>>,
}

fn digest(key: &str) -> String {
    hex::encode(Sha256::digest(key.as_bytes()))
}

impl Store {
    /// Creates a key named `name`; returns its record and the key, which is
    /// not stored and cannot be shown again.
    pub async fn create_api_key(&self, name: &str) -> Result<(ApiKey, String), StoreError> {
        let id = Uuid::new_v4();
        let key = format!("pm_{}{}", Uuid::new_v4().simple(), Uuid::new_v4().simple());
        let now = Utc::now();
        sqlx::query("INSERT INTO api_keys (id, name, digest, created_at) VALUES ($1, $2, $3, $4)")
            .bind(id.to_string())
            .bind(name)
            .bind(digest(&key))
            .bind(ts(now))
            .execute(&self.pool)
            .await?;
        let record = ApiKey {
            id,
            name: name.to_string(),
            created_at: now,
            last_used_at: None,
            revoked_at: None,
        };
        Ok((record, key))
    }

    /// Every key, newest first, revoked ones included.
    pub async fn api_keys(&self) -> Result<Vec<ApiKey>, StoreError> {
        let rows = sqlx::query(
            "SELECT id, name, created_at, last_used_at, revoked_at FROM api_keys \
             ORDER BY created_at DESC, id",
        )
        .fetch_all(&self.pool)
        .await?;
        rows.iter()
            .map(|row| {
                Ok(ApiKey {
                    id: crate::rows::uuid("api_keys", "id", row)?,
                    name: row.try_get("name")?,
                    created_at: time(
                        "api_keys",
                        "created_at",
                        &row.try_get::<String, _>("created_at")?,
                    )?,
                    last_used_at: opt_time(row, "api_keys", "last_used_at")?,
                    revoked_at: opt_time(row, "api_keys", "revoked_at")?,
                })
            })
            .collect()
    }

    /// Revokes a key; false when there is no such key or it was revoked already.
    pub async fn revoke_api_key(&self, id: Uuid) -> Result<bool, StoreError> {
        let done =
            sqlx::query("UPDATE api_keys SET revoked_at = $1 WHERE id = $2 AND revoked_at IS NULL")
                .bind(ts(Utc::now()))
                .bind(id.to_string())
                .execute(&self.pool)
                .await?;
        Ok(done.rows_affected() == 1)
    }

    /// The key's record if `key` is a live key (and notes its use).
    pub async fn verify_api_key(&self, key: &str) -> Result<Option<Uuid>, StoreError> {
        let row = sqlx::query("SELECT id FROM api_keys WHERE digest = $1 AND revoked_at IS NULL")
            .bind(digest(key))
            .fetch_optional(&self.pool)
            .await?;
        let Some(row) = row else {
            return Ok(None);
        };
        let id = crate::rows::uuid("api_keys", "id", &row)?;
        sqlx::query("UPDATE api_keys SET last_used_at = $1 WHERE id = $2")
            .bind(ts(Utc::now()))
            .bind(id.to_string())
            .execute(&self.pool)
            .await?;
        Ok(Some(id))
    }
}
