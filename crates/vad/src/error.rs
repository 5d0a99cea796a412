use std::path::PathBuf;

/// Why voice activity detection could not run.
#[derive(Debug, thiserror::Error)]
pub enum VadError {
    /// The ONNX Runtime library is missing or unusable.
    #[error(
        "ONNX Runtime library {path}: {reason} (install it with scripts/install-vad.sh, \
         or point vad.onnxruntime at libonnxruntime.so 1.31 or later)"
    )]
    Runtime { path: PathBuf, reason: String },
    /// The Silero model file is missing or not a Silero VAD model.
    #[error(
        "Silero VAD model {path}: {reason} (install it with scripts/install-vad.sh, \
         or point vad.model at silero_vad_v6.onnx)"
    )]
    Model { path: PathBuf, reason: String },
    /// An option is out of its range.
    #[error("invalid VAD option: {0}")]
    InvalidOption(String),
    /// ONNX Runtime failed while running the model.
    #[error("Silero VAD inference failed: {0}")]
    Inference(String),
}
