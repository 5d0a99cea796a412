//! The data model of the audio pipeline, shared by every other crate.

pub mod transcript;

pub use transcript::{Segment, Transcript, Word};
pub mod wer;
