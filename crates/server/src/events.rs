//! Live progress as server-sent events. Every audit event (a job's
//! transition, a note) is sent as `event: job` with the event's id, so a
//! client that reconnects with `Last-Event-ID` misses nothing; a file's
//! stream also sends `event: progress` when a running job's progress
//! changes. The database is polled with a cursor, so workers in other
//! processes are seen within a poll (a quarter of a second).

use axum::extract::{Path, State};
use axum::http::HeaderMap;
use axum::response::sse::{Event, KeepAlive, Sse};
use futures_util::stream::{self, Stream};
use serde_json::json;
use std::collections::{HashMap, VecDeque};
use std::convert::Infallible;
use std::time::Duration;
use uuid::Uuid;

use crate::{ApiError, AppState};

const POLL: Duration = Duration::from_millis(250);

fn last_event_id(headers: &HeaderMap) -> Option<i64> {
    headers
        .get("last-event-id")
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.trim().parse().ok())
}

/// What a stream remembers between polls.
struct Cursor {
    state: AppState,
    audio_id: Option<Uuid>,
    after: i64,
    progress: HashMap<Uuid, f64>,
    pending: VecDeque<Event>,
}

impl Cursor {
    /// Fills `pending` with what happened since the last poll.
    async fn poll(&mut self) {
        if let Ok(events) = self
            .state
            .store
            .events_after(self.after, self.audio_id, 500)
            .await
        {
            for (audio_id, event) in events {
                self.after = event.id;
                let data = json!({
                    "audio_id": audio_id,
                    "job_id": event.job_id,
                    "at": event.at,
                    "from_status": event.from_status,
                    "to_status": event.to_status,
                    "attempt": event.attempt,
                    "worker": event.worker,
                    "message": event.message,
                });
                self.pending.push_back(
                    Event::default()
                        .event("job")
                        .id(event.id.to_string())
                        .data(data.to_string()),
                );
            }
        }
        if let Some(audio_id) = self.audio_id {
            if let Ok(jobs) = self.state.store.jobs_for_audio(audio_id).await {
                for job in jobs {
                    let seen = self.progress.insert(job.id, job.progress);
                    if seen != Some(job.progress) && job.progress > 0.0 {
                        let data = json!({
                            "audio_id": audio_id,
                            "job_id": job.id,
                            "job_type": job.job_type.as_str(),
                            "status": job.status.as_str(),
                            "progress": job.progress,
                        });
                        self.pending
                            .push_back(Event::default().event("progress").data(data.to_string()));
                    }
                }
            }
        }
    }
}

fn stream_from(cursor: Cursor) -> impl Stream<Item = Result<Event, Infallible>> {
    stream::unfold(cursor, |mut cursor| async move {
        loop {
            if let Some(event) = cursor.pending.pop_front() {
                return Some((Ok(event), cursor));
            }
            tokio::time::sleep(POLL).await;
            cursor.poll().await;
        }
    })
}

/// `GET /api/v1/audio/{id}/events`: the file's whole audit trail so far
/// (or from `Last-Event-ID`), then live.
pub async fn audio_events(
    State(state): State<AppState>,
    Path(id): Path<String>,
    headers: HeaderMap,
) -> Result<Sse<impl Stream<Item = Result<Event, Infallible>>>, ApiError> {
    let audio_id =
        Uuid::parse_str(&id).map_err(|_| ApiError::bad_request(format!("{id:?} is not an id")))?;
    state.store.audio(audio_id).await?;
    let mut cursor = Cursor {
        state,
        audio_id: Some(audio_id),
        after: last_event_id(&headers).unwrap_or(0),
        progress: HashMap::new(),
        pending: VecDeque::new(),
    };
    cursor.poll().await;
    Ok(Sse::new(stream_from(cursor)).keep_alive(KeepAlive::default()))
}

/// `GET /api/v1/events`: every file's events from now (or from
/// `Last-Event-ID`).
pub async fn all_events(
    State(state): State<AppState>,
    headers: HeaderMap,
) -> Result<Sse<impl Stream<Item = Result<Event, Infallible>>>, ApiError> {
    let after = match last_event_id(&headers) {
        Some(id) => id,
        None => state.store.last_event_id().await?,
    };
    let cursor = Cursor {
        state,
        audio_id: None,
        after,
        progress: HashMap::new(),
        pending: VecDeque::new(),
    };
    Ok(Sse::new(stream_from(cursor)).keep_alive(KeepAlive::default()))
}
