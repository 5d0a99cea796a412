//! Speech recognition behind one [`Transcriber`] trait.
//!
//! Two engines: Whisper on CTranslate2 (the model format of faster-whisper),
//! the default; and a client for an OpenAI-compatible
//! `/v1/audio/transcriptions` endpoint, for users with a GPU server.

pub mod batched;
mod buffer;
pub mod decode;
mod error;
pub mod hub;
pub mod longform;
pub mod mel;
mod model;
pub mod openai;
mod options;
pub mod runtime;
pub mod tokenizer;
pub mod vad;
#[cfg(feature = "ctranslate2")]
mod whisper;

pub use error::AsrError;
pub use model::{check_model_dir, MODEL_FILES};
pub use options::{DecodeMode, DecodeOptions, EngineOptions, Task};
pub use pipeline_core::{Segment, Transcript, Word};
pub use pipeline_vad::VadOptions;
#[cfg(feature = "ctranslate2")]
pub use whisper::{choose_device, parse_compute_type, WhisperEngine};

/// Sample rate every engine expects, in Hz.
pub const SAMPLE_RATE: u32 = 16_000;

/// A stream of 16 kHz mono f32 samples, read a block at a time so that memory
/// does not grow with the length of the file.
pub trait AudioSource {
    /// Fills `buf` from the start and returns how many samples were written;
    /// 0 means the end of the stream.
    fn read(&mut self, buf: &mut [f32]) -> Result<usize, AsrError>;

    /// Total duration in seconds when it is known up front (for progress).
    fn duration_hint(&self) -> Option<f64>;
}

/// Receives what the engine learns while it works.
pub trait TranscribeObserver {
    /// Seconds of audio done so far out of the total (monotonic).
    fn on_progress(&mut self, _done_seconds: f64, _total_seconds: f64) {}

    /// A segment as soon as it is final, for live partial transcripts.
    fn on_segment(&mut self, _segment: &Segment) {}

    /// Checked between windows; `true` stops the engine with [`AsrError::Cancelled`].
    fn is_cancelled(&self) -> bool {
        false
    }
}

/// An observer that ignores everything.
pub struct NoObserver;

impl TranscribeObserver for NoObserver {}

/// A speech recognition engine, loaded once and shared by a worker's threads.
pub trait Transcriber: Send + Sync {
    /// Short name of the model, recorded with every transcript.
    fn model_name(&self) -> &str;

    /// Transcribes a whole stream.
    fn transcribe(
        &self,
        audio: &mut dyn AudioSource,
        options: &DecodeOptions,
        observer: &mut dyn TranscribeObserver,
    ) -> Result<Transcript, AsrError>;
}

/// Loads the Whisper engine (CTranslate2) for a faster-whisper model
/// directory, for callers that only need the [`Transcriber`].
pub fn load_whisper(
    dir: &std::path::Path,
    options: &EngineOptions,
) -> Result<std::sync::Arc<dyn Transcriber>, AsrError> {
    #[cfg(feature = "ctranslate2")]
    {
        WhisperEngine::load(dir, options)
            .map(|engine| std::sync::Arc::new(engine) as std::sync::Arc<dyn Transcriber>)
    }
    #[cfg(not(feature = "ctranslate2"))]
    {
        let _ = options;
        Err(AsrError::InvalidModel {
            path: dir.to_path_buf(),
            reason: "this build has no CTranslate2 engine (feature `ctranslate2` is off)".into(),
        })
    }
}

#[cfg(all(
    feature = "ctranslate2",
    not(any(feature = "ctranslate2-prebuilt", feature = "ctranslate2-source"))
))]
compile_error!(
    "feature `ctranslate2` needs a library: enable `ctranslate2-prebuilt` (the wheel's, \
     scripts/install-ctranslate2.sh) or `ctranslate2-source` (oneDNN, built from source)"
);
