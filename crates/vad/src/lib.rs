//! Voice activity detection for batched transcription: the Silero VAD v6
//! model on ONNX Runtime (the library loaded at run time) and
//! faster-whisper's `get_speech_timestamps`, both over a stream, so that an
//! hour of audio is never held in memory.

mod error;
mod silero;
mod timestamps;

use std::path::Path;

use serde::{Deserialize, Serialize};

pub use error::VadError;
pub use silero::{load_runtime, Silero, SileroStream};
pub use timestamps::SpeechTimestamps;

/// Sample rate the model runs at, in Hz.
pub const SAMPLE_RATE: u32 = 16_000;
/// Samples per speech probability (32 ms).
pub const WINDOW_SAMPLES: usize = 512;

/// A stretch of speech, in samples of the stream (end exclusive).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Speech {
    /// First sample.
    pub start: usize,
    /// One past the last sample.
    pub end: usize,
}

/// faster-whisper's `VadOptions`, with the defaults its batched pipeline uses.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct VadOptions {
    /// Probability at or above which a window is speech.
    pub threshold: f32,
    /// Probability below which speech ends; `None` is `threshold - 0.15`.
    pub neg_threshold: Option<f32>,
    /// Shorter speeches are dropped.
    pub min_speech_duration_ms: u32,
    /// Longer speeches are cut, at a pause of 98 ms or more where there is one.
    pub max_speech_duration_s: f64,
    /// Silence that ends a speech.
    pub min_silence_duration_ms: u32,
    /// Audio kept on each side of a speech.
    pub speech_pad_ms: u32,
}

impl Default for VadOptions {
    fn default() -> Self {
        Self {
            threshold: 0.5,
            neg_threshold: None,
            min_speech_duration_ms: 0,
            max_speech_duration_s: 30.0,
            min_silence_duration_ms: 160,
            speech_pad_ms: 400,
        }
    }
}

impl VadOptions {
    /// Checks the ranges; a speech must fit a 30 s window with its pads.
    pub fn validate(&self) -> Result<(), VadError> {
        let bad = |m: &str| Err(VadError::InvalidOption(m.to_string()));
        if !(0.0..=1.0).contains(&self.threshold) {
            return bad("threshold must be between 0 and 1");
        }
        if let Some(neg) = self.neg_threshold {
            if !(0.0..=self.threshold).contains(&neg) {
                return bad("neg_threshold must be between 0 and threshold");
            }
        }
        if !(1.0..=30.0).contains(&self.max_speech_duration_s) {
            return bad("max_speech_duration_s must be between 1 and 30");
        }
        let pads = 2.0 * f64::from(self.speech_pad_ms) / 1000.0 + 0.032;
        if pads >= self.max_speech_duration_s {
            return bad("speech_pad_ms is too long for max_speech_duration_s");
        }
        if self.min_silence_duration_ms > 60_000 {
            return bad("min_silence_duration_ms must be at most 60000");
        }
        Ok(())
    }
}

/// Silero with the options: padded speech spans of a stream as it is read.
pub struct Vad<'a> {
    probabilities: SileroStream<'a>,
    timestamps: SpeechTimestamps,
    samples: usize,
    probs: Vec<f32>,
}

impl<'a> Vad<'a> {
    /// A stream over `model` with `options`.
    pub fn new(model: &'a Silero, options: &VadOptions) -> Result<Self, VadError> {
        options.validate()?;
        Ok(Self {
            probabilities: model.stream(),
            timestamps: SpeechTimestamps::new(options),
            samples: 0,
            probs: Vec::new(),
        })
    }

    /// Takes the next samples; the speeches now final go to `out`.
    pub fn push(&mut self, samples: &[f32], out: &mut Vec<Speech>) -> Result<(), VadError> {
        self.samples += samples.len();
        self.probabilities.push(samples, &mut self.probs)?;
        for p in self.probs.drain(..) {
            self.timestamps.push(p, out);
        }
        Ok(())
    }

    /// Ends the stream; the last speeches go to `out`.
    pub fn finish(&mut self, out: &mut Vec<Speech>) -> Result<(), VadError> {
        self.probabilities.finish(&mut self.probs)?;
        for p in self.probs.drain(..) {
            self.timestamps.push(p, out);
        }
        self.timestamps.finish(self.samples, out);
        Ok(())
    }

    /// The first sample a speech not yet given out may cover.
    pub fn keep_from(&self) -> usize {
        // Samples waiting for a whole call of the model are not judged yet.
        self.timestamps.keep_from()
    }
}

/// Where scripts/install-vad.sh puts the library, under a data directory.
pub fn default_runtime_path(data_dir: &Path) -> std::path::PathBuf {
    data_dir.join("lib/onnxruntime-1.31.1/libonnxruntime.so.1.31.1")
}

/// Where scripts/install-vad.sh puts the model, under a data directory.
pub fn default_model_path(data_dir: &Path) -> std::path::PathBuf {
    data_dir.join("models/silero-vad-v6.onnx")
}
