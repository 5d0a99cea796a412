use std::fs::File;
use std::io::{self, Read};
use std::path::Path;

use sha2::{Digest, Sha256};

use crate::error::AudioError;

/// The SHA-256 of a file's bytes as lowercase hex, and its size, read in fixed blocks.
pub fn sha256_file(path: &Path) -> Result<(String, u64), AudioError> {
    let mut f = File::open(path).map_err(|e| AudioError::from_io(path, e))?;
    let meta = f.metadata().map_err(|e| AudioError::from_io(path, e))?;
    if !meta.is_file() {
        return Err(AudioError::NotAFile {
            file: crate::error::display_name(path),
        });
    }
    let mut hasher = Sha256::new();
    let mut buf = vec![0u8; 256 * 1024];
    let mut size = 0u64;
    loop {
        match f.read(&mut buf) {
            Ok(0) => break,
            Ok(n) => {
                hasher.update(&buf[..n]);
                size += n as u64;
            }
            Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
            Err(e) => return Err(AudioError::from_io(path, e)),
        }
    }
    let digest = hasher.finalize();
    Ok((hex::encode(digest), size))
}
