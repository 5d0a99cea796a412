//! The data model of the audio pipeline, shared by every other crate.

pub mod chunk;
pub mod config;
pub mod decoding;
pub mod host;
pub mod model;
pub mod render;
pub mod speakers;
pub mod state;
pub mod transcript;

pub use chunk::{Chunk, ChunkCounts, ChunkStatus};
pub use host::{cores, hostname};
pub use model::{AudioFile, AudioStatus, ErrorKind, JobError, JobEvent, JobType, ProcessingJob};
pub use speakers::{Diarization, SpeakerSummary, SpeakerTurn};
pub use state::{IllegalTransition, JobStatus};
pub use transcript::{Segment, Transcript, Word};
pub mod wer;
