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
