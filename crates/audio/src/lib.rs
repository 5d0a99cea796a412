//! Audio in: what a file holds ([`probe`]), its samples as a stream of 16 kHz
//! mono f32 ([`Decoder`]), and its content hash ([`sha256_file`]).
//!
//! Nothing here panics on a file's content: every problem with a file comes
//! back as an [`AudioError`] that names the file.

mod amr;
mod caf;
mod decode;
mod error;
mod hash;
mod mp4edit;
mod mp4size;
mod opus;
mod probe;
mod source;

pub use decode::{Channel, Decoder, TARGET_SAMPLE_RATE};
pub use error::AudioError;
pub use hash::sha256_file;
pub use probe::{probe, probe_track, probe_with, AudioInfo, Limits, MAX_CHANNELS, SAMPLE_RATES};
pub use source::Track;
