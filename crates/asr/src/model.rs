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

/// Checks that `dir` is a faster-whisper model directory; `vocabulary.json`
/// (large-v3 and later) stands in for `vocabulary.txt`.
pub fn check_model_dir(dir: &Path) -> Result<(), AsrError> {
    if !dir.is_dir() {
        return Err(AsrError::ModelNotFound {
            path: dir.to_path_buf(),
            reason: "no such directory (install one with `pipeline-manager model install`, \
                     or set PIPELINE_MODEL to a faster-whisper model directory)"
                .to_string(),
        });
    }
    for file in MODEL_FILES {
        let path = dir.join(file);
        let stand_in = (file == "vocabulary.txt") && dir.join("vocabulary.json").is_file();
        if !path.is_file() && !stand_in {
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

    #[test]
    fn vocabulary_json_stands_in_for_vocabulary_txt() {
        let dir = tempfile::tempdir().expect("temp dir");
        for file in [
            "config.json",
            "model.bin",
            "tokenizer.json",
            "vocabulary.json",
        ] {
            std::fs::write(dir.path().join(file), "[]").expect("write");
        }
        assert!(check_model_dir(dir.path()).is_ok());
        std::fs::remove_file(dir.path().join("vocabulary.json")).expect("remove");
        let err = check_model_dir(dir.path()).unwrap_err();
        assert!(
            err.to_string().contains("vocabulary.txt is missing"),
            "{err}"
        );
    }
}
