//! The one state machine every job transition goes through.

use serde::{Deserialize, Serialize};
use std::fmt;
use std::str::FromStr;

use crate::model::ParseEnumError;

/// Where a job is in its lifecycle.
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "SCREAMING_SNAKE_CASE")]
pub enum JobStatus {
    /// Waiting for the job it depends on.
    Pending,
    /// Ready for a worker.
    Queued,
    /// Claimed by a worker that holds its lease.
    Running,
    /// Failed with a failure that may pass; queued again after a backoff.
    Retrying,
    Completed,
    Failed,
    Cancelled,
}

impl JobStatus {
    /// Every status, in lifecycle order.
    pub const ALL: [JobStatus; 7] = [
        JobStatus::Pending,
        JobStatus::Queued,
        JobStatus::Running,
        JobStatus::Retrying,
        JobStatus::Completed,
        JobStatus::Failed,
        JobStatus::Cancelled,
    ];

    /// The name stored in the database and shown to users.
    pub fn as_str(self) -> &'static str {
        match self {
            JobStatus::Pending => "PENDING",
            JobStatus::Queued => "QUEUED",
            JobStatus::Running => "RUNNING",
            JobStatus::Retrying => "RETRYING",
            JobStatus::Completed => "COMPLETED",
            JobStatus::Failed => "FAILED",
            JobStatus::Cancelled => "CANCELLED",
        }
    }

    /// Whether the job has ended (until someone retries it).
    pub fn is_final(self) -> bool {
        matches!(
            self,
            JobStatus::Completed | JobStatus::Failed | JobStatus::Cancelled
        )
    }

    /// Whether a worker may claim a job in this status.
    pub fn is_claimable(self) -> bool {
        matches!(self, JobStatus::Queued | JobStatus::Retrying)
    }

    /// Whether the lifecycle allows going from `self` to `to`.
    pub fn can_transition_to(self, to: JobStatus) -> bool {
        use JobStatus::*;
        matches!(
            (self, to),
            // The dependency completed, failed or the file was cancelled.
            (Pending, Queued | Failed | Cancelled)
                // A worker claims it, or it is cancelled before that.
                | (Queued, Running | Cancelled)
                | (Retrying, Running | Cancelled)
                // The worker's outcomes; Queued is a job handed back on
                // shutdown or found with an expired lease.
                | (Running, Completed | Failed | Retrying | Cancelled | Queued)
                // A user's retry: the first stage is queued, later ones wait.
                | (Completed | Failed | Cancelled, Queued | Pending)
        )
    }

    /// Checks a transition, naming both ends when it is illegal.
    pub fn transition(self, to: JobStatus) -> Result<JobStatus, IllegalTransition> {
        if self.can_transition_to(to) {
            Ok(to)
        } else {
            Err(IllegalTransition { from: self, to })
        }
    }
}

impl fmt::Display for JobStatus {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl FromStr for JobStatus {
    type Err = ParseEnumError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        JobStatus::ALL
            .into_iter()
            .find(|status| status.as_str().eq_ignore_ascii_case(s))
            .ok_or_else(|| {
                ParseEnumError::new(
                    "job status",
                    s,
                    "PENDING, QUEUED, RUNNING, RETRYING, COMPLETED, FAILED, CANCELLED",
                )
            })
    }
}

/// A transition the lifecycle forbids: a bug in the caller, never overwritten silently.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[error("illegal job transition {from} -> {to}")]
pub struct IllegalTransition {
    pub from: JobStatus,
    pub to: JobStatus,
}

#[cfg(test)]
mod tests {
    use super::JobStatus::*;
    use super::*;

    #[test]
    fn the_happy_path_is_legal() {
        for (from, to) in [
            (Pending, Queued),
            (Queued, Running),
            (Running, Retrying),
            (Retrying, Running),
            (Running, Completed),
        ] {
            assert_eq!(from.transition(to), Ok(to), "{from} -> {to}");
        }
    }

    #[test]
    fn finished_jobs_do_not_move_without_a_retry() {
        assert!(Completed.transition(Running).is_err());
        assert!(Failed.transition(Completed).is_err());
        assert!(Cancelled.transition(Running).is_err());
        assert!(Pending.transition(Running).is_err());
        assert!(Queued.transition(Completed).is_err());
        assert_eq!(
            Completed.transition(Running).unwrap_err().to_string(),
            "illegal job transition COMPLETED -> RUNNING"
        );
    }

    #[test]
    fn parses_any_case() {
        assert_eq!("running".parse::<JobStatus>(), Ok(Running));
        assert!("RUN".parse::<JobStatus>().is_err());
    }
}
