//! Files in: the options a file is submitted with, the probe, digest and
//! stored copy of its content (a local folder or an S3-compatible object
//! store), its record with its jobs in one transaction, and the
//! `pipeline.ingest` task that lets a broker's producers submit files.
//! The CLI, the API server and the worker all ingest through here; none
//! of it needs the speech engine.

pub mod ingest;
pub mod storage;
mod task;

pub use pipeline_diarize::SpeakerCount;

pub use ingest::{
    check_speaker_count, expand_inputs, ingest_file, IngestError, Ingested, ProcessOptions,
};
pub use storage::{ObjectStoreSettings, Storage, StorageError};
pub use task::{ingest_task, is_language_code, within_roots};
