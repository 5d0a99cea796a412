use std::io;
use std::path::Path;

/// Why an audio file could not be probed, decoded or hashed; every message names the file.
#[derive(Debug, thiserror::Error)]
pub enum AudioError {
    /// The path does not exist.
    #[error("{file}: file not found")]
    NotFound {
        /// The file as the caller named it.
        file: String,
    },
    /// The path is a directory or another thing that is not a file.
    #[error("{file}: not a regular file")]
    NotAFile {
        /// The file as the caller named it.
        file: String,
    },
    /// The file has no bytes at all.
    #[error("{file}: file is empty")]
    Empty {
        /// The file as the caller named it.
        file: String,
    },
    /// No reader or decoder we have recognizes the file.
    #[error("{file}: not a supported audio file ({reason})")]
    Unsupported {
        /// The file as the caller named it.
        file: String,
        /// What was not recognized, in words.
        reason: String,
    },
    /// The container holds no audio track (video only, or only metadata).
    #[error("{file}: no audio track")]
    NoAudioTrack {
        /// The file as the caller named it.
        file: String,
    },
    /// The format was recognized but not one packet of it decoded.
    #[error("{file}: no decodable audio ({reason})")]
    Undecodable {
        /// The file as the caller named it.
        file: String,
        /// The last decoder complaint, in words.
        reason: String,
    },
    /// The audio is longer than the limit allows (from its header, or as decoded).
    #[error("{file}: longer than the limit of {max_seconds:.0} s (processing.max_duration_secs)")]
    TooLong {
        /// The file as the caller named it.
        file: String,
        /// The longest audio taken, in seconds.
        max_seconds: f64,
    },
    /// The sample rate cannot be converted to 16 kHz.
    #[error("{file}: cannot resample {rate} Hz audio to 16 kHz ({reason})")]
    Resample {
        /// The file as the caller named it.
        file: String,
        /// The file's sample rate.
        rate: u32,
        /// What the resampler refused.
        reason: String,
    },
    /// The operating system failed to read the file.
    #[error("{file}: I/O error reading file: {source}")]
    Io {
        /// The file as the caller named it.
        file: String,
        /// The underlying error.
        #[source]
        source: io::Error,
    },
}

impl AudioError {
    /// Whether trying again later may succeed (a transient I/O failure) rather than fail the same way.
    pub fn is_retryable(&self) -> bool {
        match self {
            AudioError::Io { source, .. } => io_is_transient(source),
            _ => false,
        }
    }

    /// The file the error is about, as the caller named it.
    pub fn file(&self) -> &str {
        match self {
            AudioError::NotFound { file }
            | AudioError::NotAFile { file }
            | AudioError::Empty { file }
            | AudioError::Unsupported { file, .. }
            | AudioError::NoAudioTrack { file }
            | AudioError::Undecodable { file, .. }
            | AudioError::Resample { file, .. }
            | AudioError::TooLong { file, .. }
            | AudioError::Io { file, .. } => file,
        }
    }

    /// Maps an error from opening or reading `path`, keeping "not found" distinct.
    pub(crate) fn from_io(path: &Path, source: io::Error) -> Self {
        let file = display_name(path);
        match source.kind() {
            io::ErrorKind::NotFound => AudioError::NotFound { file },
            io::ErrorKind::IsADirectory => AudioError::NotAFile { file },
            _ => AudioError::Io { file, source },
        }
    }
}

/// Failures that come from the moment (a signal, a slow network mount), not from the file.
fn io_is_transient(e: &io::Error) -> bool {
    use io::ErrorKind::*;
    // ESTALE and EIO on network file systems often clear up when the mount recovers.
    const EIO: i32 = 5;
    const ESTALE: i32 = 116;
    matches!(
        e.kind(),
        Interrupted
            | TimedOut
            | WouldBlock
            | ResourceBusy
            | StaleNetworkFileHandle
            | ConnectionReset
            | ConnectionAborted
            | NotConnected
    ) || matches!(e.raw_os_error(), Some(EIO) | Some(ESTALE))
}

/// How a path is shown in messages: as the caller gave it, which is what the user typed.
pub(crate) fn display_name(path: &Path) -> String {
    path.display().to_string()
}
