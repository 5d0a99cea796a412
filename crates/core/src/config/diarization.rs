//! `[diarization]`: who speaks when, the DIARIZATION job's engine and the
//! speaker counts files get unless they ask otherwise.

use std::path::PathBuf;

use serde::{Deserialize, Serialize};

use super::fields;

/// Most speakers a file may ask for (the diarization engine's bound).
pub const MAX_SPEAKERS: u32 = 64;

/// Where scripts/install-diarization.sh puts the segmentation model, under
/// the data directory.
pub const DEFAULT_SEGMENTATION_MODEL: &str = "models/pyannote-segmentation-3.0.onnx";
/// Where scripts/install-diarization.sh puts the embedding model, under the
/// data directory.
pub const DEFAULT_EMBEDDING_MODEL: &str = "models/campplus-cn-en-common.onnx";

/// `[diarization]`: speaker diarization (pyannote segmentation-3.0 and a
/// CAM++ speaker embedding on ONNX Runtime, the library of `[vad]`).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DiarizationConfig {
    /// Whether files are diarized unless they say otherwise (off: only
    /// files submitted with `--diarize` get a DIARIZATION job).
    pub enabled: bool,
    /// pyannote segmentation-3.0 in ONNX; `None` means
    /// `<data_dir>/models/pyannote-segmentation-3.0.onnx`.
    #[serde(deserialize_with = "fields::opt_path")]
    pub segmentation_model: Option<PathBuf>,
    /// The CAM++ speaker embedding in ONNX; `None` means
    /// `<data_dir>/models/campplus-cn-en-common.onnx`.
    #[serde(deserialize_with = "fields::opt_path")]
    pub embedding_model: Option<PathBuf>,
    /// Threads ONNX Runtime may use per model; 0 means all cores.
    pub threads: usize,
    /// Seconds between the starts of two 10 s segmentation windows.
    pub step_seconds: f64,
    /// Cosine distance under which two clusters of speaker embeddings are
    /// merged, when the number of speakers is not given.
    pub threshold: f64,
    /// Least speech, in seconds, of a speaker in a window for an embedding.
    pub min_embedding_seconds: f64,
    /// Exactly this many speakers, unless a file says otherwise; `None`
    /// (0 in the file or environment) lets the clustering decide.
    #[serde(deserialize_with = "fields::speakers")]
    pub speakers: Option<u32>,
    /// At least this many speakers, unless a file says otherwise.
    #[serde(deserialize_with = "fields::speakers")]
    pub min_speakers: Option<u32>,
    /// At most this many speakers, unless a file says otherwise.
    #[serde(deserialize_with = "fields::speakers")]
    pub max_speakers: Option<u32>,
}

impl Default for DiarizationConfig {
    fn default() -> Self {
        Self {
            enabled: false,
            segmentation_model: None,
            embedding_model: None,
            threads: 0,
            step_seconds: 5.0,
            // The engine's defaults (pipeline_diarize::Settings), kept in
            // step by a test in the CLI, which sees both.
            threshold: 0.55,
            min_embedding_seconds: 1.0,
            speakers: None,
            min_speakers: None,
            max_speakers: None,
        }
    }
}

impl DiarizationConfig {
    /// The first rule between the values that does not hold, as
    /// `(key, reason)`.
    pub(crate) fn check(&self) -> Result<(), (&'static str, String)> {
        for (key, value) in [
            ("diarization.speakers", self.speakers),
            ("diarization.min_speakers", self.min_speakers),
            ("diarization.max_speakers", self.max_speakers),
        ] {
            if value.is_some_and(|n| n > MAX_SPEAKERS) {
                return Err((
                    key,
                    format!("must be at most {MAX_SPEAKERS} (0 lets the clustering decide)"),
                ));
            }
        }
        if let (Some(min), Some(max)) = (self.min_speakers, self.max_speakers) {
            if min > max {
                return Err((
                    "diarization.min_speakers",
                    format!("{min} is above diarization.max_speakers ({max})"),
                ));
            }
        }
        if let Some(n) = self.speakers {
            if self.min_speakers.is_some_and(|m| m > n) || self.max_speakers.is_some_and(|m| m < n)
            {
                return Err((
                    "diarization.speakers",
                    format!("{n} is outside diarization.min_speakers..diarization.max_speakers"),
                ));
            }
        }
        if !(0.1..=10.0).contains(&self.step_seconds) {
            return Err((
                "diarization.step_seconds",
                "must be between 0.1 and 10 (the window's length)".to_string(),
            ));
        }
        if self.threads > 256 {
            return Err(("diarization.threads", "must be at most 256".to_string()));
        }
        if !(0.0..=2.0).contains(&self.threshold) {
            return Err((
                "diarization.threshold",
                "must be between 0 and 2 (a cosine distance)".to_string(),
            ));
        }
        if self.min_embedding_seconds > 10.0 {
            return Err((
                "diarization.min_embedding_seconds",
                "must be at most 10 (the window's length)".to_string(),
            ));
        }
        Ok(())
    }
}
