use std::path::PathBuf;

/// Why diarization could not run.
#[derive(Debug, thiserror::Error)]
pub enum DiarizeError {
    /// The ONNX Runtime library is missing or unusable.
    #[error("{0}")]
    Runtime(#[from] pipeline_vad::VadError),
    /// A model file is missing or not the model it should be.
    #[error(
        "diarization model {path}: {reason} (install the models with \
         scripts/install-diarization.sh, or point diarization.segmentation_model \
         and diarization.embedding_model at them)"
    )]
    Model { path: PathBuf, reason: String },
    /// An option is out of its range or contradicts another.
    #[error("invalid diarization option: {0}")]
    InvalidOption(String),
    /// Reading the audio failed.
    #[error("{0}")]
    Audio(String),
    /// ONNX Runtime failed while running a model.
    #[error("diarization inference failed: {0}")]
    Inference(String),
    /// The observer asked to stop.
    #[error("diarization cancelled")]
    Cancelled,
}
