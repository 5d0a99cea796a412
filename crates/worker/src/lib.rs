//! The worker: ingest of files, and the stages that run a file's jobs
//! (TRANSCRIPTION and, when asked for, DIARIZATION beside it, then
//! PROCESSING) from the embedded queue, with leases, heartbeats, progress,
//! retries with backoff, timeouts and graceful shutdown.

mod chunks;
pub mod diarize;
pub mod ingest;
pub mod retry;
mod runner;
mod stages;
pub mod storage;
mod task;

pub use diarize::{
    default_model_paths, diarizer_loader, to_diarization, DiarizationEngine, DiarizerLoader,
};
pub use ingest::{
    check_speaker_count, expand_inputs, ingest_file, IngestError, Ingested, ProcessOptions,
};
pub use pipeline_diarize::SpeakerCount;
pub use runner::{hostname, EngineLoader, RunUntil, Shutdown, Worker, WorkerSettings};
pub use stages::{output_paths, DecoderSource};
pub use storage::{ObjectStoreSettings, Storage, StorageError};
pub use task::{ingest_task, is_language_code, within_roots};
