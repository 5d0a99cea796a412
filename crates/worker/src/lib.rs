//! The worker: the stages that run a file's jobs (TRANSCRIPTION and, when
//! asked for, DIARIZATION beside it, then PROCESSING) from the queue, with
//! leases, heartbeats, progress, retries with backoff, timeouts and
//! graceful shutdown. Files come in through `pipeline-ingest`, re-exported
//! here for the binary.

mod chunks;
pub mod diarize;
mod lease;
pub mod retry;
mod runner;
mod stages;

pub use chunks::is_cut_into_chunks;
pub use diarize::{
    default_model_paths, diarizer_loader, to_diarization, DiarizationEngine, DiarizerLoader,
};
pub use pipeline_core::hostname;
pub use pipeline_diarize::SpeakerCount;
pub use pipeline_ingest::{
    check_speaker_count, expand_inputs, ingest_file, ingest_task, is_language_code, within_roots,
    IngestError, Ingested, ObjectStoreSettings, ProcessOptions, Storage, StorageError,
};
pub use runner::{EngineLoader, RunUntil, Shutdown, Worker, WorkerSettings};
pub use stages::{decode_options, output_paths, DecoderSource};
