//! Live progress as server-sent events. Every audit event (a job's
//! transition, a note) is sent as `event: job`, and every transcript
//! segment as the engine produces it as `event: segment`. Each carries the
//! id `<audit event>:<segment>` of both cursors, so a client that
//! reconnects with `Last-Event-ID` misses nothing; a file's stream also
//! sends `event: progress` when a running job's progress changes.
//!
//! One [`Feed`] per server polls the database (so workers in other
//! processes are seen within a quarter of a second) and broadcasts what it
//! finds; each stream catches up from the database once, then listens.
//! The cost of polling does not grow with the number of clients.

use axum::extract::State;
use axum::http::{HeaderMap, StatusCode};
use axum::response::sse::{Event, KeepAlive, Sse};
use futures_util::stream::{self, Stream};
use pipeline_store::Store;
use serde_json::json;
use std::collections::{HashMap, VecDeque};
use std::convert::Infallible;
use std::sync::{Arc, Mutex};
use std::time::Duration;
use tokio::sync::broadcast;
use uuid::Uuid;

use crate::extract::IdPath;
use crate::{ApiError, AppState};

const POLL: Duration = Duration::from_millis(250);

/// Rows read per query.
const PAGE: u32 = 500;

/// Items a slow stream may fall behind before it re-reads the database.
const BACKLOG: usize = 4096;

/// Event streams one server holds open at most, and one API key.
pub const MAX_STREAMS: usize = 1000;
pub const MAX_STREAMS_PER_KEY: usize = 100;

/// The API key a request was made with (set by the key check).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct KeyId(pub Uuid);

/// Open event streams, in all and per key.
#[derive(Default)]
struct Streams {
    total: usize,
    per_key: HashMap<Uuid, usize>,
}

/// Holds one stream's place; gives it back when the stream ends.
struct StreamSlot {
    streams: Arc<Mutex<Streams>>,
    key: Option<Uuid>,
}

impl Drop for StreamSlot {
    fn drop(&mut self) {
        if let Ok(mut streams) = self.streams.lock() {
            streams.total = streams.total.saturating_sub(1);
            if let Some(key) = self.key {
                if let Some(n) = streams.per_key.get_mut(&key) {
                    *n = n.saturating_sub(1);
                    if *n == 0 {
                        streams.per_key.remove(&key);
                    }
                }
            }
        }
    }
}

fn too_many(message: String) -> ApiError {
    ApiError::new(StatusCode::TOO_MANY_REQUESTS, "too_many_streams", message)
}

/// The two cursors of a `Last-Event-ID` (`<audit event>:<segment>`; a
/// bare number is an audit event id).
fn last_event_id(headers: &HeaderMap) -> Option<(i64, Option<i64>)> {
    let text = headers.get("last-event-id")?.to_str().ok()?.trim();
    match text.split_once(':') {
        Some((events, segments)) => Some((events.parse().ok()?, Some(segments.parse().ok()?))),
        None => Some((text.parse().ok()?, None)),
    }
}

/// What happened, ready to send.
#[derive(Debug, Clone)]
enum Item {
    /// An audit event with its id.
    Job {
        id: i64,
        audio_id: Uuid,
        data: String,
    },
    /// A live segment with its id.
    Segment {
        id: i64,
        audio_id: Uuid,
        data: String,
    },
    /// A running job's progress changed.
    Progress { audio_id: Uuid, data: String },
}

impl Item {
    fn audio_id(&self) -> Uuid {
        match self {
            Item::Job { audio_id, .. }
            | Item::Segment { audio_id, .. }
            | Item::Progress { audio_id, .. } => *audio_id,
        }
    }
}

async fn jobs_after(store: &Store, after: i64, audio_id: Option<Uuid>) -> Vec<Item> {
    let Ok(events) = store.events_after(after, audio_id, PAGE).await else {
        return Vec::new();
    };
    events
        .into_iter()
        .map(|(audio_id, event)| Item::Job {
            id: event.id,
            audio_id,
            data: json!({
                "audio_id": audio_id,
                "job_id": event.job_id,
                "at": event.at,
                "from_status": event.from_status,
                "to_status": event.to_status,
                "attempt": event.attempt,
                "worker": event.worker,
                "message": event.message,
            })
            .to_string(),
        })
        .collect()
}

async fn segments_after(store: &Store, after: i64, audio_id: Option<Uuid>) -> Vec<Item> {
    let Ok(segments) = store.live_segments_after(after, audio_id, PAGE).await else {
        return Vec::new();
    };
    segments
        .into_iter()
        .map(|segment| Item::Segment {
            id: segment.id,
            audio_id: segment.audio_id,
            data: serde_json::to_string(&segment).unwrap_or_default(),
        })
        .collect()
}

/// Audit events and segments past the cursors. A worker writes a job's
/// last segments before the transition that ends it, and the events are
/// read first, so every segment written before those events is in the
/// second read: sending segments first keeps "transcribed" after the text.
async fn read_after(
    store: &Store,
    after: i64,
    after_segment: i64,
    audio_id: Option<Uuid>,
) -> Vec<Item> {
    let jobs = jobs_after(store, after, audio_id).await;
    let mut found = segments_after(store, after_segment, audio_id).await;
    found.extend(jobs);
    found
}

fn progress_item(job: &pipeline_core::ProcessingJob) -> Item {
    Item::Progress {
        audio_id: job.audio_id,
        data: json!({
            "audio_id": job.audio_id,
            "job_id": job.id,
            "job_type": job.job_type.as_str(),
            "status": job.status.as_str(),
            "progress": job.progress,
        })
        .to_string(),
    }
}

/// The server's one reader of the database for live streams.
#[derive(Clone)]
pub struct Feed {
    sender: broadcast::Sender<Arc<Item>>,
    streams: Arc<Mutex<Streams>>,
}

impl Feed {
    /// Starts polling `store` for as long as the runtime runs.
    pub async fn start(store: Store) -> Result<Feed, pipeline_store::StoreError> {
        let (sender, _) = broadcast::channel(BACKLOG);
        let mut after = store.last_event_id().await?;
        let mut after_segment = store.last_live_segment_id().await?;
        let feed = Feed {
            sender: sender.clone(),
            streams: Arc::default(),
        };
        tokio::spawn(async move {
            let mut progress: HashMap<Uuid, f64> = HashMap::new();
            loop {
                tokio::time::sleep(POLL).await;
                let mut found = read_after(&store, after, after_segment, None).await;
                // Progress carries no cursor: with nobody listening there is
                // nothing to compare it against later, so it is not read.
                let listening = sender.receiver_count() > 0;
                if !listening {
                    progress.clear();
                } else if let Ok(running) = store.running_jobs().await {
                    let mut now = HashMap::with_capacity(running.len());
                    for job in &running {
                        if job.progress > 0.0 && progress.get(&job.id) != Some(&job.progress) {
                            found.push(progress_item(job));
                        }
                        now.insert(job.id, job.progress);
                    }
                    progress = now;
                }
                for item in found {
                    match &item {
                        Item::Job { id, .. } => after = *id,
                        Item::Segment { id, .. } => after_segment = *id,
                        Item::Progress { .. } => {}
                    }
                    // No receivers is fine: nobody is watching.
                    let _ = sender.send(Arc::new(item));
                }
            }
        });
        Ok(feed)
    }
}

/// What one stream has sent and has yet to send.
struct Watch {
    state: AppState,
    audio_id: Option<Uuid>,
    after: i64,
    after_segment: i64,
    live: broadcast::Receiver<Arc<Item>>,
    pending: VecDeque<Event>,
    /// The database holds more past the cursors than was read: read a page
    /// more before listening (live items would move the cursors past it).
    behind: bool,
    _slot: StreamSlot,
}

impl Watch {
    /// Queues `item` unless it was sent already or is another file's.
    fn push(&mut self, item: &Item) {
        if self.audio_id.is_some_and(|id| id != item.audio_id()) {
            return;
        }
        let (kind, data) = match item {
            Item::Job { id, data, .. } => {
                if *id <= self.after {
                    return;
                }
                self.after = *id;
                ("job", data)
            }
            Item::Segment { id, data, .. } => {
                if *id <= self.after_segment {
                    return;
                }
                self.after_segment = *id;
                ("segment", data)
            }
            Item::Progress { data, .. } => {
                self.pending
                    .push_back(Event::default().event("progress").data(data));
                return;
            }
        };
        let id = format!("{}:{}", self.after, self.after_segment);
        self.pending
            .push_back(Event::default().event(kind).id(id).data(data));
    }

    /// Reads one page of what the database holds past this stream's
    /// cursors; a stream far behind is sent page by page, never loaded whole.
    async fn catch_up_page(&mut self) {
        let found = read_after(
            &self.state.store,
            self.after,
            self.after_segment,
            self.audio_id,
        )
        .await;
        self.behind = !found.is_empty();
        for item in &found {
            self.push(item);
        }
    }

    /// Opens a stream's place, if the server and the key have room.
    fn open(
        state: AppState,
        audio_id: Option<Uuid>,
        key: Option<KeyId>,
        (after, after_segment): (i64, i64),
    ) -> Result<Watch, ApiError> {
        let streams = state.feed.streams.clone();
        {
            let mut open = streams
                .lock()
                .map_err(|_| too_many("the stream count is unavailable".into()))?;
            if open.total >= MAX_STREAMS {
                return Err(too_many(format!(
                    "this server holds {MAX_STREAMS} event streams already"
                )));
            }
            if let Some(KeyId(key)) = key {
                let mine = open.per_key.entry(key).or_insert(0);
                if *mine >= MAX_STREAMS_PER_KEY {
                    return Err(too_many(format!(
                        "this API key holds {MAX_STREAMS_PER_KEY} event streams already"
                    )));
                }
                *mine += 1;
            }
            open.total += 1;
        }
        // Listen first, then read: nothing can fall between the two.
        let live = state.feed.sender.subscribe();
        Ok(Watch {
            state,
            audio_id,
            after,
            after_segment,
            live,
            pending: VecDeque::new(),
            behind: true,
            _slot: StreamSlot {
                streams,
                key: key.map(|k| k.0),
            },
        })
    }
}

fn stream_from(start: Watch) -> impl Stream<Item = Result<Event, Infallible>> {
    stream::unfold(start, |mut s| async move {
        loop {
            if let Some(event) = s.pending.pop_front() {
                return Some((Ok(event), s));
            }
            if s.behind {
                s.catch_up_page().await;
                continue;
            }
            match s.live.recv().await {
                Ok(item) => s.push(&item),
                // Fell too far behind: the database has everything.
                Err(broadcast::error::RecvError::Lagged(_)) => s.behind = true,
                Err(broadcast::error::RecvError::Closed) => return None,
            }
        }
    })
}

/// `GET /api/v1/audio/{id}/events`: the file's whole audit trail so far
/// (or from `Last-Event-ID`), then live.
pub async fn audio_events(
    State(state): State<AppState>,
    IdPath(audio_id): IdPath,
    key: Option<axum::Extension<KeyId>>,
    headers: HeaderMap,
) -> Result<Sse<impl Stream<Item = Result<Event, Infallible>>>, ApiError> {
    state.store.audio(audio_id).await?;
    let (after, after_segment) = last_event_id(&headers).unwrap_or((0, None));
    let mut start = Watch::open(
        state.clone(),
        Some(audio_id),
        key.map(|k| k.0),
        (after, after_segment.unwrap_or(0)),
    )?;
    start.catch_up_page().await;
    for job in state.store.jobs_for_audio(audio_id).await? {
        if job.progress > 0.0 && !job.status.is_final() {
            start.push(&progress_item(&job));
        }
    }
    Ok(Sse::new(stream_from(start)).keep_alive(KeepAlive::default()))
}

/// `GET /api/v1/events`: every file's events from now (or from
/// `Last-Event-ID`).
pub async fn all_events(
    State(state): State<AppState>,
    key: Option<axum::Extension<KeyId>>,
    headers: HeaderMap,
) -> Result<Sse<impl Stream<Item = Result<Event, Infallible>>>, ApiError> {
    let (after, after_segment) = match last_event_id(&headers) {
        Some((events, Some(segments))) => (events, segments),
        Some((events, None)) => (events, state.store.last_live_segment_id().await?),
        None => (
            state.store.last_event_id().await?,
            state.store.last_live_segment_id().await?,
        ),
    };
    let mut start = Watch::open(state, None, key.map(|k| k.0), (after, after_segment))?;
    start.catch_up_page().await;
    Ok(Sse::new(stream_from(start)).keep_alive(KeepAlive::default()))
}
