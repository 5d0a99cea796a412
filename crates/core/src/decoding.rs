//! What a file asks of the speech engine that is stored with it: the task
//! and the decoding mode. Here rather than in the engine's crate so that
//! ingest and the API can name them without building the engine.

use serde::{Deserialize, Serialize};

/// Whether to write down the speech in its language or translate it to English.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Task {
    #[default]
    Transcribe,
    Translate,
}

impl std::str::FromStr for Task {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s.trim().to_ascii_lowercase().as_str() {
            "transcribe" => Ok(Task::Transcribe),
            "translate" => Ok(Task::Translate),
            other => Err(format!(
                "unknown task {other:?} (expected transcribe or translate)"
            )),
        }
    }
}

/// How a file's audio is laid out for the model.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum DecodeMode {
    /// One 30 s window after another, each conditioned on the text before
    /// it (faster-whisper's `transcribe()`).
    #[default]
    Sequential,
    /// Speech found by the Silero VAD, joined into chunks of up to 30 s and
    /// decoded `batch_size` at a time (faster-whisper's `BatchedInferencePipeline`).
    Batched,
}

impl std::str::FromStr for DecodeMode {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s.trim().to_ascii_lowercase().as_str() {
            "sequential" => Ok(DecodeMode::Sequential),
            "batched" => Ok(DecodeMode::Batched),
            other => Err(format!(
                "unknown mode {other:?} (expected sequential or batched)"
            )),
        }
    }
}

impl std::fmt::Display for DecodeMode {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            DecodeMode::Sequential => "sequential",
            DecodeMode::Batched => "batched",
        })
    }
}

/// The fallback's step between temperatures unless configured otherwise
/// (faster-whisper's and openai-whisper's).
pub const DEFAULT_TEMPERATURE_INCREMENT: f32 = 0.2;

/// The temperatures a window is decoded at in turn, from 0 up to 1.0 in
/// steps of `increment`, as openai-whisper's `temperature_increment_on_fallback`
/// makes them; a step of 0 (or not a number) gives the single beam search.
pub fn temperature_schedule(increment: f32) -> Vec<f32> {
    if increment.is_nan() || increment <= 0.0 {
        return vec![0.0];
    }
    let steps = (1.0 / increment + 1e-4).floor() as usize;
    // Counted in steps, so that 0.2's rounding never drops the 1.0.
    (0..=steps.min(100))
        .map(|i| ((i as f32 * increment) * 1e4).round() / 1e4)
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn schedules_run_from_zero_to_one() {
        assert_eq!(
            temperature_schedule(DEFAULT_TEMPERATURE_INCREMENT),
            vec![0.0, 0.2, 0.4, 0.6, 0.8, 1.0]
        );
        assert_eq!(temperature_schedule(0.5), vec![0.0, 0.5, 1.0]);
        assert_eq!(temperature_schedule(0.3), vec![0.0, 0.3, 0.6, 0.9]);
        assert_eq!(temperature_schedule(1.0), vec![0.0, 1.0]);
        assert_eq!(temperature_schedule(0.0), vec![0.0]);
        assert_eq!(temperature_schedule(f32::NAN), vec![0.0]);
        assert_eq!(temperature_schedule(1e-9).len(), 101, "bounded");
    }
}
