//! Who spoke when, in the pyannote 3.x way, on ONNX Runtime and the CPU:
//! pyannote segmentation-3.0 over sliding 10 s windows (up to three local
//! speakers each), one CAM++ speaker embedding per (window, local speaker)
//! with enough speech, agglomerative clustering of the embeddings over the
//! whole file, and per-frame reconstruction into speaker turns. The audio
//! is read as a stream: memory holds one window of samples, plus a few
//! bytes per frame of the file for the segmentation scores.

mod cluster;
mod error;
pub mod fbank;
pub mod models;
mod pipeline;

use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

pub use error::DiarizeError;

/// Sample rate the models run at, in Hz.
pub const SAMPLE_RATE: u32 = 16_000;

/// A stream of 16 kHz mono f32 samples.
pub trait Samples {
    /// Fills `buf` from the start and returns how many samples were written;
    /// 0 means the end of the stream.
    fn read(&mut self, buf: &mut [f32]) -> Result<usize, DiarizeError>;

    /// Total duration in seconds when it is known up front (for progress).
    fn duration_hint(&self) -> Option<f64>;
}

/// Receives progress and may stop the work.
pub trait Observer {
    /// Seconds of audio done so far out of the total (monotonic).
    fn on_progress(&mut self, _done_seconds: f64, _total_seconds: f64) {}

    /// Checked between windows; `true` stops with [`DiarizeError::Cancelled`].
    fn is_cancelled(&self) -> bool {
        false
    }
}

/// How many speakers to find; all `None` lets the clustering decide.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct SpeakerCount {
    /// Exactly this many speakers.
    pub speakers: Option<u32>,
    /// At least this many.
    pub min_speakers: Option<u32>,
    /// At most this many.
    pub max_speakers: Option<u32>,
}

/// Most speakers a request may ask for.
pub const MAX_SPEAKERS: u32 = 64;

impl SpeakerCount {
    /// Checks the bounds: each within 1..=[`MAX_SPEAKERS`], min <= max, and an
    /// exact count not combined with contradicting bounds.
    pub fn validate(&self) -> Result<(), DiarizeError> {
        let bad = |m: String| Err(DiarizeError::InvalidOption(m));
        for (name, value) in [
            ("speakers", self.speakers),
            ("min_speakers", self.min_speakers),
            ("max_speakers", self.max_speakers),
        ] {
            if let Some(v) = value {
                if !(1..=MAX_SPEAKERS).contains(&v) {
                    return bad(format!(
                        "{name} must be between 1 and {MAX_SPEAKERS}, not {v}"
                    ));
                }
            }
        }
        if let (Some(min), Some(max)) = (self.min_speakers, self.max_speakers) {
            if min > max {
                return bad(format!(
                    "min_speakers ({min}) is above max_speakers ({max})"
                ));
            }
        }
        if let Some(n) = self.speakers {
            if self.min_speakers.is_some_and(|m| m > n) || self.max_speakers.is_some_and(|m| m < n)
            {
                return bad(format!(
                    "speakers ({n}) is outside min_speakers..max_speakers"
                ));
            }
        }
        Ok(())
    }
}

/// One stretch of time in which one speaker talks.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Turn {
    /// Start in seconds.
    pub start: f64,
    /// End in seconds.
    pub end: f64,
    /// The speaker, from 0 in order of first appearance.
    pub speaker: usize,
}

/// The turns of a file, ordered by start; turns of different speakers
/// overlap where they talk at once.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Output {
    /// The turns.
    pub turns: Vec<Turn>,
    /// How many speakers were found.
    pub speakers: usize,
    /// Seconds of audio read.
    pub duration: f64,
}

/// Where the runtime and the two models are.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ModelPaths {
    /// libonnxruntime.so (the one the VAD loads).
    pub onnxruntime: PathBuf,
    /// pyannote segmentation-3.0 in ONNX.
    pub segmentation: PathBuf,
    /// CAM++ in ONNX, made by scripts/convert-campplus.py.
    pub embedding: PathBuf,
}

impl ModelPaths {
    /// Where the install scripts put them under a data directory: the
    /// VAD's ONNX Runtime and scripts/install-diarization.sh's two models.
    pub fn under(data_dir: &Path) -> Self {
        Self {
            onnxruntime: pipeline_vad::default_runtime_path(data_dir),
            segmentation: default_segmentation_path(data_dir),
            embedding: default_embedding_path(data_dir),
        }
    }
}

/// Where scripts/install-diarization.sh puts the segmentation model.
pub fn default_segmentation_path(data_dir: &Path) -> PathBuf {
    data_dir.join("models/pyannote-segmentation-3.0.onnx")
}

/// Where scripts/install-diarization.sh puts the embedding model.
pub fn default_embedding_path(data_dir: &Path) -> PathBuf {
    data_dir.join("models/campplus-cn-en-common.onnx")
}

/// Engine settings a worker loads the models with.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct Settings {
    /// Threads ONNX Runtime may use per model (0: all cores).
    pub threads: usize,
    /// Seconds between the starts of two segmentation windows (10 s long).
    pub step_seconds: f64,
    /// Cosine distance under which two clusters of embeddings are merged,
    /// when the number of speakers is not given.
    pub threshold: f32,
    /// Least speech, in seconds, of a local speaker for an embedding.
    pub min_embedding_seconds: f64,
}

impl Default for Settings {
    fn default() -> Self {
        Self {
            threads: 0,
            step_seconds: 5.0,
            threshold: 0.55,
            min_embedding_seconds: 1.0,
        }
    }
}

/// The loaded models, shared by a worker's jobs.
pub struct Diarizer {
    segmentation: models::Segmentation,
    embedder: models::Embedder,
    pipelined: bool,
    settings: Settings,
    name: String,
}

impl std::fmt::Debug for Diarizer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Diarizer")
            .field("name", &self.name)
            .finish_non_exhaustive()
    }
}

/// A diarization engine, as workers drive it: the loaded [`Diarizer`], or
/// a stand-in in tests. One is shared by every job of a worker, so it is
/// called from several threads at once.
pub trait Diarize: Send + Sync {
    /// Name of the models, recorded with every result.
    fn model_name(&self) -> &str;

    /// Diarizes a whole stream, reporting progress to `observer` and
    /// stopping with [`DiarizeError::Cancelled`] when it asks.
    fn diarize(
        &self,
        samples: &mut dyn Samples,
        count: &SpeakerCount,
        observer: &mut dyn Observer,
    ) -> Result<Output, DiarizeError>;
}

impl Diarize for Diarizer {
    fn model_name(&self) -> &str {
        &self.name
    }

    fn diarize(
        &self,
        samples: &mut dyn Samples,
        count: &SpeakerCount,
        observer: &mut dyn Observer,
    ) -> Result<Output, DiarizeError> {
        Diarizer::diarize(self, samples, count, observer)
    }
}

/// The name recorded with every result.
pub const MODEL_NAME: &str = "pyannote-segmentation-3.0+campplus-cn-en-common";

impl Settings {
    /// Checks the ranges.
    pub fn validate(&self) -> Result<(), DiarizeError> {
        let bad = |m: &str| Err(DiarizeError::InvalidOption(m.to_string()));
        if !(0.1..=10.0).contains(&self.step_seconds) {
            return bad("step_seconds must be between 0.1 and 10");
        }
        if !(0.0..=2.0).contains(&self.threshold) {
            return bad("threshold must be between 0 and 2");
        }
        if !(0.0..=10.0).contains(&self.min_embedding_seconds) {
            return bad("min_embedding_seconds must be between 0 and 10");
        }
        if self.threads > 256 {
            return bad("threads must be at most 256");
        }
        Ok(())
    }
}

impl Diarizer {
    /// Loads both models on the ONNX Runtime library.
    pub fn load(paths: &ModelPaths, settings: &Settings) -> Result<Self, DiarizeError> {
        settings.validate()?;
        let environment = pipeline_vad::load_runtime(&paths.onnxruntime)?;
        let threads = match settings.threads {
            0 => std::thread::available_parallelism().map_or(1, |n| n.get()),
            n => n,
        };
        // With two threads or more, the models run side by side (see
        // pipeline::first_pass_pipelined): segmentation on one, the
        // embedder on the rest.
        let pipelined = threads >= 2;
        let (segmentation_threads, embedder_threads) =
            if pipelined { (1, threads - 1) } else { (1, 1) };
        let segmentation =
            models::Segmentation::load(&environment, &paths.segmentation, segmentation_threads)?;
        let embedder = models::Embedder::load(&environment, &paths.embedding, embedder_threads)?;
        Ok(Self {
            segmentation,
            embedder,
            pipelined,
            settings: settings.clone(),
            name: MODEL_NAME.into(),
        })
    }

    /// Name of the models, recorded with every result.
    pub fn model_name(&self) -> &str {
        &self.name
    }

    /// Diarizes a whole stream.
    pub fn diarize(
        &self,
        samples: &mut dyn Samples,
        count: &SpeakerCount,
        observer: &mut dyn Observer,
    ) -> Result<Output, DiarizeError> {
        count.validate()?;
        pipeline::diarize(
            &self.segmentation,
            &self.embedder,
            &self.settings,
            self.pipelined,
            samples,
            count,
            observer,
        )
    }
}
