//! The pipeline's database: audio files, jobs, their audit trail, results
//! and worker heartbeats, on SQLite (a file, WAL mode) or PostgreSQL.
//!
//! Every job transition is checked by the core state machine and written
//! with its [`pipeline_core::JobEvent`] and the file's derived status in one
//! transaction. The jobs table is also the embedded queue: workers claim
//! jobs with a lease ([`Store::claim`]) and a job whose lease expired is
//! claimable again.

mod audio;
mod batch;
mod chunks;
mod clock;
mod dispatch;
mod error;
mod jobs;
mod keys;
mod metrics;
mod retention;
mod rows;
mod schema;
mod segments;
mod webhooks;
mod workers;

pub use audio::{AudioResults, NewAudio};
pub use batch::Completion;
pub use chunks::{ChunkBeat, ChunkLease, ChunkScope};
pub use error::StoreError;
pub use jobs::{Ended, Heartbeat, JobClaim, Lease, NewJob, Reclaim, StageOutput, MAX_LOST_LEASES};
pub use keys::ApiKey;
pub use metrics::{DurationHistogram, JobMetrics};
pub use retention::{Pruned, Retention};
pub use segments::{LiveSegment, NewSegment};
pub use webhooks::{AttemptOutcome, DeliveryStatus, WebhookDelivery, WebhookEndpoint};
pub use workers::WorkerInfo;

use sqlx::any::{AnyPoolOptions, AnyRow};
use sqlx::{AnyPool, Row};
use std::path::Path;
use std::time::{Duration, Instant};

/// Which database engine a store talks to.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Backend {
    Sqlite,
    Postgres,
}

/// A connection pool with the schema migrated to the version this binary knows.
#[derive(Clone)]
pub struct Store {
    pool: AnyPool,
    backend: Backend,
    url: String,
    outbox: webhooks::Outbox,
    clock: std::sync::Arc<clock::Clock>,
    /// Lost workers a job survives (`processing.max_lost_leases`).
    max_lost_leases: u32,
}

impl Store {
    /// Connects (creating a SQLite file and its folder when needed) and
    /// migrates the schema.
    pub async fn connect(url: &str) -> Result<Store, StoreError> {
        sqlx::any::install_default_drivers();
        let backend = if url.starts_with("sqlite:") {
            Backend::Sqlite
        } else if url.starts_with("postgres://") || url.starts_with("postgresql://") {
            Backend::Postgres
        } else {
            return Err(StoreError::UnsupportedUrl(url.to_string()));
        };
        let display = pipeline_core::config::mask_url(url);
        let unreachable = |e: sqlx::Error| StoreError::Unreachable {
            url: display.clone(),
            message: e.to_string(),
        };
        let connect_url = match backend {
            Backend::Sqlite => {
                let path = sqlite_path(url);
                if let Some(parent) = Path::new(&path).parent() {
                    if !parent.as_os_str().is_empty() {
                        std::fs::create_dir_all(parent).map_err(|e| StoreError::Unreachable {
                            url: display.clone(),
                            message: format!("cannot create {}: {e}", parent.display()),
                        })?;
                    }
                }
                if url.contains('?') {
                    url.to_string()
                } else {
                    format!("{url}?mode=rwc")
                }
            }
            Backend::Postgres => url.to_string(),
        };
        let options = AnyPoolOptions::new()
            .acquire_timeout(Duration::from_secs(5))
            .max_connections(match backend {
                Backend::Sqlite => 4,
                Backend::Postgres => 8,
            });
        let options = if backend == Backend::Sqlite {
            options.after_connect(|conn, _meta| {
                Box::pin(async move {
                    // WAL lets readers (status, jobs --follow) run beside a
                    // writing worker; the busy timeout queues writers instead
                    // of failing them.
                    sqlx::query("PRAGMA journal_mode = WAL")
                        .execute(&mut *conn)
                        .await?;
                    sqlx::query("PRAGMA busy_timeout = 10000")
                        .execute(&mut *conn)
                        .await?;
                    sqlx::query("PRAGMA foreign_keys = ON")
                        .execute(&mut *conn)
                        .await?;
                    Ok(())
                })
            })
        } else {
            options
        };
        // One plain connection first: a pool reports a refused connection
        // only as a timeout, after waiting the whole acquire timeout.
        match tokio::time::timeout(
            Duration::from_secs(5),
            <sqlx::AnyConnection as sqlx::Connection>::connect(&connect_url),
        )
        .await
        {
            Ok(Ok(conn)) => {
                let _ = sqlx::Connection::close(conn).await;
            }
            Ok(Err(e)) => return Err(unreachable(e)),
            Err(_) => {
                return Err(StoreError::Unreachable {
                    url: display.clone(),
                    message: "no answer within 5 s".into(),
                })
            }
        }
        let pool = options.connect(&connect_url).await.map_err(unreachable)?;
        let store = Store {
            pool,
            backend,
            url: display,
            outbox: webhooks::Outbox::default(),
            clock: Default::default(),
            max_lost_leases: jobs::MAX_LOST_LEASES,
        };
        store.migrate().await?;
        Ok(store)
    }

    /// How many lost workers a job survives before it is FAILED.
    pub fn with_max_lost_leases(mut self, bound: u32) -> Store {
        self.max_lost_leases = bound.max(1);
        self
    }

    /// The engine behind this store.
    pub fn backend(&self) -> Backend {
        self.backend
    }

    /// The URL with any password masked, for messages.
    pub fn url(&self) -> &str {
        &self.url
    }

    /// Round-trip time of a trivial query.
    pub async fn ping(&self) -> Result<Duration, StoreError> {
        let started = Instant::now();
        sqlx::query("SELECT 1").execute(&self.pool).await?;
        Ok(started.elapsed())
    }

    /// The version of the newest migration applied.
    pub async fn schema_version(&self) -> Result<i64, StoreError> {
        let row: AnyRow = sqlx::query("SELECT MAX(version) AS version FROM schema_migrations")
            .fetch_one(&self.pool)
            .await?;
        Ok(row.try_get::<Option<i64>, _>("version")?.unwrap_or(0))
    }

    async fn migrate(&self) -> Result<(), StoreError> {
        sqlx::query(
            "CREATE TABLE IF NOT EXISTS schema_migrations (\
                 version BIGINT PRIMARY KEY, description TEXT NOT NULL, applied_at TEXT NOT NULL)",
        )
        .execute(&self.pool)
        .await?;
        for migration in schema::migrations() {
            let mut tx = self.pool.begin().await?;
            // Taking the write lock first keeps two processes that start
            // together from applying the same migration twice.
            let claimed = sqlx::query(
                "INSERT INTO schema_migrations (version, description, applied_at) \
                 VALUES ($1, $2, $3) ON CONFLICT (version) DO NOTHING",
            )
            .bind(migration.version)
            .bind(migration.description)
            .bind(rows::ts(chrono::Utc::now()))
            .execute(&mut *tx)
            .await?;
            if claimed.rows_affected() == 0 {
                tx.rollback().await?;
                continue;
            }
            let (scripts, id_column) = match self.backend {
                Backend::Sqlite => (migration.sqlite, "INTEGER PRIMARY KEY AUTOINCREMENT"),
                Backend::Postgres => (migration.postgres, "BIGSERIAL PRIMARY KEY"),
            };
            for script in scripts {
                for statement in script.split(';').map(str::trim).filter(|s| !s.is_empty()) {
                    let statement = statement.replace(schema::ID_COLUMN, id_column);
                    sqlx::query(&statement).execute(&mut *tx).await?;
                }
            }
            tx.commit().await?;
        }
        Ok(())
    }
}

/// The file path inside a `sqlite:` URL.
fn sqlite_path(url: &str) -> String {
    let rest = url
        .trim_start_matches("sqlite://")
        .trim_start_matches("sqlite:");
    rest.split('?').next().unwrap_or(rest).to_string()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn finds_the_sqlite_path() {
        assert_eq!(sqlite_path("sqlite:///tmp/a.db?mode=rwc"), "/tmp/a.db");
        assert_eq!(sqlite_path("sqlite:rel.db"), "rel.db");
    }
}
