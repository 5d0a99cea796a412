//! Content-addressed audio storage in the local data directory.

use std::fs;
use std::io;
use std::path::{Path, PathBuf};

/// Audio files kept under `<data_dir>/audio/<first two hex>/<sha256>.<ext>`.
#[derive(Debug, Clone)]
pub struct LocalStorage {
    root: PathBuf,
}

impl LocalStorage {
    /// Storage rooted at the data directory.
    pub fn new(data_dir: &Path) -> Self {
        Self {
            root: data_dir.to_path_buf(),
        }
    }

    /// The storage key of content with this digest and file extension.
    pub fn key_for(sha256: &str, extension: &str) -> String {
        let prefix = sha256.get(..2).unwrap_or("00");
        let ext: String = extension
            .chars()
            .filter(|c| c.is_ascii_alphanumeric())
            .take(8)
            .collect::<String>()
            .to_ascii_lowercase();
        if ext.is_empty() {
            format!("audio/{prefix}/{sha256}")
        } else {
            format!("audio/{prefix}/{sha256}.{ext}")
        }
    }

    /// Copies a file in under `key` unless the same content is already there.
    pub fn put_file(&self, key: &str, source: &Path) -> io::Result<PathBuf> {
        let target = self.path(key);
        if target.is_file() {
            return Ok(target);
        }
        if let Some(parent) = target.parent() {
            fs::create_dir_all(parent)?;
        }
        // Copy to a temporary name first so that a crash never leaves a
        // half-written file under the content's name.
        let partial = target.with_extension(format!("partial-{}", std::process::id()));
        fs::copy(source, &partial)?;
        fs::rename(&partial, &target)?;
        Ok(target)
    }

    /// The local path of a stored key.
    pub fn path(&self, key: &str) -> PathBuf {
        self.root.join(key)
    }

    /// Removes a stored file; a missing one is not an error.
    pub fn remove(&self, key: &str) -> io::Result<()> {
        match fs::remove_file(self.path(key)) {
            Err(e) if e.kind() != io::ErrorKind::NotFound => Err(e),
            _ => Ok(()),
        }
    }
}

/// Writes `contents` to `path` through a temporary file and a rename, so
/// that readers never see half a file and a redelivered job overwrites cleanly.
pub fn write_atomically(path: &Path, contents: &[u8]) -> io::Result<()> {
    if let Some(parent) = path.parent() {
        fs::create_dir_all(parent)?;
    }
    let partial = path.with_extension(format!(
        "{}.partial-{}",
        path.extension().and_then(|e| e.to_str()).unwrap_or(""),
        std::process::id()
    ));
    fs::write(&partial, contents)?;
    fs::rename(&partial, path)
}
