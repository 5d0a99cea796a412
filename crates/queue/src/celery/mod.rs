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
