//! Celery protocol 2 over RabbitMQ and Redis, wire compatible with Python
//! Celery 5 both ways, and Celery's Redis result backend.

pub mod amqp;
pub mod backend;
pub mod message;
pub mod redis;

/// Task names our workers run.
pub const TRANSCRIBE_TASK: &str = "pipeline.transcribe";
pub const DIARIZE_TASK: &str = "pipeline.diarize";
pub const PROCESS_TASK: &str = "pipeline.process";
/// Submits audio through Celery alone: kwargs `source` and `process`'s options.
pub const INGEST_TASK: &str = "pipeline.ingest";
/// One chunk of a long transcription (kwargs `audio_id`, `job_id`, `index`,
/// `start`, `end`), for any worker to take.
pub const CHUNK_TASK: &str = "pipeline.transcribe_chunk";
