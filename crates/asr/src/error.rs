use std::path::PathBuf;

/// Why recognition failed; [`AsrError::is_retryable`] decides the job's fate.
#[derive(Debug, thiserror::Error)]
pub enum AsrError {
    /// The model directory does not exist or lacks a required file.
    #[error("model not found at {path}: {reason}")]
    ModelNotFound { path: PathBuf, reason: String },
    /// The model files exist but cannot be used.
    #[error("invalid model at {path}: {reason}")]
    InvalidModel { path: PathBuf, reason: String },
    /// The audio stream failed while being read.
    #[error("audio could not be read: {message}")]
    Audio { message: String, retryable: bool },
    /// The options asked for something the model cannot do.
    #[error("invalid option: {0}")]
    InvalidOption(String),
    /// CTranslate2 reported an error.
    #[error("speech engine failed: {0}")]
    Backend(String),
    /// A remote endpoint could not be reached or answered with a server error.
    #[error("transcription endpoint {url} unavailable: {message}")]
    Unavailable { url: String, message: String },
    /// A remote endpoint refused the request.
    #[error("transcription endpoint {url} refused the request ({status}): {message}")]
    Rejected {
        url: String,
        status: u16,
        message: String,
    },
    /// Voice activity detection could not run (its runtime or model is
    /// missing, or it failed).
    #[error("{0}")]
    Vad(#[from] pipeline_vad::VadError),
    /// The observer asked to stop.
    #[error("transcription cancelled")]
    Cancelled,
}

impl AsrError {
    /// Whether trying again later may succeed.
    pub fn is_retryable(&self) -> bool {
        match self {
            AsrError::Audio { retryable, .. } => *retryable,
            AsrError::Unavailable { .. } => true,
            _ => false,
        }
    }
}
