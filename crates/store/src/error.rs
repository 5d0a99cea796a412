use pipeline_core::IllegalTransition;
use uuid::Uuid;

/// Why a store operation failed.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    /// The database could not be reached or opened.
    #[error("database {url} is unreachable: {message}")]
    Unreachable { url: String, message: String },
    /// The database URL is not one we support.
    #[error("unsupported database URL {0:?}: use sqlite://PATH or postgres://USER@HOST/DB")]
    UnsupportedUrl(String),
    /// A query failed.
    #[error("database error: {0}")]
    Query(#[from] sqlx::Error),
    /// A stored value could not be read back.
    #[error("corrupt row in {table}: {message}")]
    Corrupt {
        table: &'static str,
        message: String,
    },
    /// The audio file or job does not exist.
    #[error("no {what} with id {id}")]
    NotFound { what: &'static str, id: Uuid },
    /// No webhook delivery has this id.
    #[error("no webhook delivery with id {0}")]
    NotFoundDelivery(i64),
    /// The webhook delivery succeeded already; there is nothing to retry.
    #[error("webhook delivery {0} was delivered already")]
    AlreadyDelivered(i64),
    /// The lifecycle forbids the transition.
    #[error(transparent)]
    IllegalTransition(#[from] IllegalTransition),
    /// Someone else changed the job first (another worker, a cancel, a reaper).
    #[error("job {job_id} changed concurrently: {message}")]
    Conflict { job_id: Uuid, message: String },
}

impl StoreError {
    /// Whether trying again later may succeed.
    pub fn is_retryable(&self) -> bool {
        match self {
            StoreError::Unreachable { .. } => true,
            StoreError::Query(e) => {
                matches!(
                    e,
                    sqlx::Error::Io(_)
                        | sqlx::Error::PoolTimedOut
                        | sqlx::Error::PoolClosed
                        | sqlx::Error::WorkerCrashed
                ) || is_busy(e)
            }
            _ => false,
        }
    }

    /// Whether the database itself is out of reach (exit code 3 in the CLI).
    pub fn is_unreachable(&self) -> bool {
        match self {
            StoreError::Unreachable { .. } => true,
            StoreError::Query(e) => matches!(
                e,
                sqlx::Error::Io(_) | sqlx::Error::PoolTimedOut | sqlx::Error::PoolClosed
            ),
            _ => false,
        }
    }
}

fn is_busy(e: &sqlx::Error) -> bool {
    match e {
        sqlx::Error::Database(db) => {
            let message = db.message();
            message.contains("database is locked") || message.contains("busy")
        }
        _ => false,
    }
}
