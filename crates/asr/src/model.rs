//! The layout of a faster-whisper model directory.

use std::path::Path;

use crate::AsrError;

/// Files a faster-whisper model directory must hold.
pub const MODEL_FILES: [&str; 4] = [
    "config.json",
    "model.bin",
    "tokenizer.json",
    "vocabulary.txt",
];

/// Checks that `dir` is a faster-whisper model directory.
pub fn check_model_dir(dir: &Path) -> Result<(), AsrError> {
    if !dir.is_dir() {
        return Err(AsrError::ModelNotFound {
            path: dir.to_path_buf(),
            reason: "no such directory (install a model with scripts/install-model.sh or set \
                     PIPELINE_MODEL to a faster-whisper model directory)"
                .to_string(),
        });
    }
    for file in MODEL_FILES {
        let path = dir.join(file);
        if !path.is_file() {
            return Err(AsrError::ModelNotFound {
                path,
                reason: format!(
                    "{file} is missing (a faster-whisper model directory holds {})",
                    MODEL_FILES.join(", ")
                ),
            });
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn missing_model_names_path_and_file() {
        let dir = std::env::temp_dir().join("pipeline-asr-no-such-model");
        let err = check_model_dir(&dir).unwrap_err();
        assert!(matches!(err, AsrError::ModelNotFound { .. }));
        assert!(err.to_string().contains("pipeline-asr-no-such-model"));
    }
}
