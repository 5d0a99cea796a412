//! The schema, embedded in the binary, in one dialect per backend.

/// Stands for the dialect's auto-increasing primary key in a script.
pub(crate) const ID_COLUMN: &str = "{{id}}";

/// A schema change; `version` increases by one each time.
pub(crate) struct Migration {
    pub version: i64,
    pub description: &'static str,
    /// Scripts run in order on SQLite.
    pub sqlite: &'static [&'static str],
    /// Scripts run in order on PostgreSQL.
    pub postgres: &'static [&'static str],
}

/// Tables shared by both dialects, written so that each accepts them.
const V1_COMMON: &str = r#"
CREATE TABLE audio_files (
    id TEXT PRIMARY KEY,
    original_name TEXT NOT NULL,
    sha256 TEXT NOT NULL,
    size_bytes BIGINT NOT NULL,
    container TEXT NOT NULL,
    codec TEXT NOT NULL,
    duration_seconds DOUBLE PRECISION NOT NULL,
    sample_rate BIGINT NOT NULL,
    channels BIGINT NOT NULL,
    storage_key TEXT NOT NULL,
    status TEXT NOT NULL,
    options TEXT NOT NULL,
    settings_key TEXT NOT NULL,
    created_at TEXT NOT NULL,
    updated_at TEXT NOT NULL
);
CREATE INDEX audio_files_created ON audio_files (created_at);
CREATE INDEX audio_files_content ON audio_files (sha256, settings_key);
CREATE TABLE processing_jobs (
    id TEXT PRIMARY KEY,
    audio_id TEXT NOT NULL REFERENCES audio_files (id) ON DELETE CASCADE,
    job_type TEXT NOT NULL,
    status TEXT NOT NULL,
    progress DOUBLE PRECISION NOT NULL DEFAULT 0,
    task_id TEXT NOT NULL,
    attempt BIGINT NOT NULL DEFAULT 0,
    max_attempts BIGINT NOT NULL,
    worker TEXT,
    heartbeat_at TEXT,
    lease_expires_at TEXT,
    available_at TEXT NOT NULL,
    cancel_requested BIGINT NOT NULL DEFAULT 0,
    error_kind TEXT,
    error_message TEXT,
    transport TEXT NOT NULL DEFAULT 'embedded',
    created_at TEXT NOT NULL,
    started_at TEXT,
    completed_at TEXT
);
CREATE INDEX processing_jobs_claim ON processing_jobs (status, available_at);
CREATE INDEX processing_jobs_audio ON processing_jobs (audio_id);
CREATE TABLE transcripts (
    audio_id TEXT PRIMARY KEY REFERENCES audio_files (id) ON DELETE CASCADE,
    language TEXT NOT NULL,
    model TEXT NOT NULL,
    duration_seconds DOUBLE PRECISION NOT NULL,
    body TEXT NOT NULL,
    created_at TEXT NOT NULL
);
CREATE TABLE audio_results (
    audio_id TEXT PRIMARY KEY REFERENCES audio_files (id) ON DELETE CASCADE,
    outputs TEXT NOT NULL,
    words BIGINT NOT NULL,
    speech_seconds DOUBLE PRECISION NOT NULL,
    words_per_minute DOUBLE PRECISION NOT NULL,
    created_at TEXT NOT NULL
);
CREATE TABLE workers (
    id TEXT PRIMARY KEY,
    host TEXT NOT NULL,
    pid BIGINT NOT NULL,
    concurrency BIGINT NOT NULL,
    current_jobs TEXT NOT NULL,
    started_at TEXT NOT NULL,
    last_seen TEXT NOT NULL
);
"#;

const V1_SQLITE_EVENTS: &str = r#"
CREATE TABLE job_events (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    job_id TEXT NOT NULL REFERENCES processing_jobs (id) ON DELETE CASCADE,
    at TEXT NOT NULL,
    from_status TEXT,
    to_status TEXT NOT NULL,
    attempt BIGINT NOT NULL,
    worker TEXT,
    message TEXT NOT NULL
);
CREATE INDEX job_events_job ON job_events (job_id, id);
"#;

const V1_POSTGRES_EVENTS: &str = r#"
CREATE TABLE job_events (
    id BIGSERIAL PRIMARY KEY,
    job_id TEXT NOT NULL REFERENCES processing_jobs (id) ON DELETE CASCADE,
    at TEXT NOT NULL,
    from_status TEXT,
    to_status TEXT NOT NULL,
    attempt BIGINT NOT NULL,
    worker TEXT,
    message TEXT NOT NULL
);
CREATE INDEX job_events_job ON job_events (job_id, id);
"#;

/// API keys for the HTTP server: only a digest of each key is kept.
const V2_API_KEYS: &str = r#"
CREATE TABLE api_keys (
    id TEXT PRIMARY KEY,
    name TEXT NOT NULL,
    digest TEXT NOT NULL UNIQUE,
    created_at TEXT NOT NULL,
    last_used_at TEXT,
    revoked_at TEXT
);
"#;

/// Webhooks: endpoints a file was submitted with, the outbox of events
/// (written in the transaction of the transition they report) and one
/// delivery per event and endpoint. Live segments: what a running
/// transcription has produced so far, for live progress streams.
const V3_WEBHOOKS_COMMON: &str = r#"
CREATE TABLE audio_webhooks (
    audio_id TEXT NOT NULL REFERENCES audio_files (id) ON DELETE CASCADE,
    url TEXT NOT NULL,
    secret TEXT,
    PRIMARY KEY (audio_id, url)
);
ALTER TABLE processing_jobs ADD COLUMN progress_notified DOUBLE PRECISION NOT NULL DEFAULT 0.0
"#;

/// The outbox, deliveries and live segments; `{{id}}` is each dialect's
/// auto-increasing key.
const V3_WEBHOOKS_TABLES: &str = r#"
CREATE TABLE webhook_events (
    id {{id}},
    event_id TEXT NOT NULL,
    event TEXT NOT NULL,
    audio_id TEXT NOT NULL,
    job_id TEXT,
    payload TEXT NOT NULL,
    created_at TEXT NOT NULL
);
CREATE TABLE webhook_deliveries (
    id {{id}},
    event_id TEXT NOT NULL,
    event TEXT NOT NULL,
    audio_id TEXT NOT NULL,
    job_id TEXT,
    url TEXT NOT NULL,
    secret TEXT,
    payload TEXT NOT NULL,
    status TEXT NOT NULL,
    attempts BIGINT NOT NULL DEFAULT 0,
    next_attempt_at TEXT NOT NULL,
    locked_until TEXT,
    last_status_code BIGINT,
    last_error TEXT,
    created_at TEXT NOT NULL,
    delivered_at TEXT
);
CREATE INDEX webhook_deliveries_due ON webhook_deliveries (status, url, id);
CREATE TABLE live_segments (
    id {{id}},
    audio_id TEXT NOT NULL REFERENCES audio_files (id) ON DELETE CASCADE,
    job_id TEXT NOT NULL,
    attempt BIGINT NOT NULL,
    segment BIGINT NOT NULL,
    start_seconds DOUBLE PRECISION NOT NULL,
    end_seconds DOUBLE PRECISION NOT NULL,
    text TEXT NOT NULL
);
CREATE INDEX live_segments_audio ON live_segments (audio_id, id)
"#;

/// Attempts lost with their worker, counted apart from failed ones; when a
/// broker's message was last sent for a waiting job (NULL: not yet), so
/// that a message lost between a commit and its publish is sent again.
const V4_LOST_LEASES: &str = r#"
ALTER TABLE processing_jobs ADD COLUMN lost_leases BIGINT NOT NULL DEFAULT 0;
ALTER TABLE processing_jobs ADD COLUMN dispatched_at TEXT
"#;

/// Speaker turns of diarized files (the DIARIZATION job's result), one row
/// per file, replaced when the job runs again.
const V5_DIARIZATIONS: &str = r#"
CREATE TABLE diarizations (
    audio_id TEXT PRIMARY KEY REFERENCES audio_files (id) ON DELETE CASCADE,
    model TEXT NOT NULL,
    speakers BIGINT NOT NULL,
    turns BIGINT NOT NULL,
    body TEXT NOT NULL,
    created_at TEXT NOT NULL
)
"#;

/// Chunks of long transcriptions: each a stretch of the file that any
/// worker may claim under a lease of its own, with its segments once done.
const V6_CHUNKS: &str = r#"
CREATE TABLE transcription_chunks (
    job_id TEXT NOT NULL REFERENCES processing_jobs (id) ON DELETE CASCADE,
    idx BIGINT NOT NULL,
    start_seconds DOUBLE PRECISION NOT NULL,
    end_seconds DOUBLE PRECISION NOT NULL,
    status TEXT NOT NULL,
    attempt BIGINT NOT NULL DEFAULT 0,
    worker TEXT,
    lease_expires_at TEXT,
    error TEXT,
    language TEXT,
    segments TEXT,
    started_at TEXT,
    completed_at TEXT,
    PRIMARY KEY (job_id, idx)
);
CREATE INDEX transcription_chunks_status ON transcription_chunks (status, job_id)
"#;

/// Every migration in order; the last one's version is the schema version.
pub(crate) fn migrations() -> Vec<Migration> {
    vec![
        Migration {
            version: 1,
            description: "audio files, jobs, events, transcripts, results, workers",
            sqlite: &[V1_COMMON, V1_SQLITE_EVENTS],
            postgres: &[V1_COMMON, V1_POSTGRES_EVENTS],
        },
        Migration {
            version: 2,
            description: "API keys",
            sqlite: &[V2_API_KEYS],
            postgres: &[V2_API_KEYS],
        },
        Migration {
            version: 3,
            description: "webhook outbox and deliveries, live transcript segments",
            sqlite: &[V3_WEBHOOKS_COMMON, V3_WEBHOOKS_TABLES],
            postgres: &[V3_WEBHOOKS_COMMON, V3_WEBHOOKS_TABLES],
        },
        Migration {
            version: 4,
            description:
                "attempts lost with their worker counted apart; dispatch times of broker jobs",
            sqlite: &[V4_LOST_LEASES],
            postgres: &[V4_LOST_LEASES],
        },
        Migration {
            version: 5,
            description: "speaker turns of diarized files",
            sqlite: &[V5_DIARIZATIONS],
            postgres: &[V5_DIARIZATIONS],
        },
        Migration {
            version: 6,
            description: "chunks of long transcriptions",
            sqlite: &[V6_CHUNKS],
            postgres: &[V6_CHUNKS],
        },
    ]
}
