use serde::{Deserialize, Serialize};

pub use pipeline_core::decoding::{DecodeMode, Task};

/// How to decode; the defaults are faster-whisper's `transcribe()` defaults.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct DecodeOptions {
    /// Language code; `None` detects it (multilingual models only).
    pub language: Option<String>,
    pub task: Task,
    pub beam_size: usize,
    /// Candidates sampled when the temperature is above zero.
    pub best_of: usize,
    pub patience: f32,
    pub length_penalty: f32,
    pub repetition_penalty: f32,
    pub no_repeat_ngram_size: usize,
    /// Temperatures tried in turn when a window fails the thresholds below.
    pub temperatures: Vec<f32>,
    pub compression_ratio_threshold: Option<f32>,
    pub log_prob_threshold: Option<f32>,
    pub no_speech_threshold: Option<f32>,
    /// Feed the previous window's text as the prompt of the next.
    pub condition_on_previous_text: bool,
    /// Stop conditioning after a window needed a temperature at or above this.
    pub prompt_reset_on_temperature: f32,
    /// Text every window sees as what was said before it (names, spellings, style).
    pub initial_prompt: Option<String>,
    /// Words and phrases put in every window's prompt (faster-whisper's
    /// `hotwords`): names and jargon to spell as given.
    pub hotwords: Option<String>,
    pub suppress_blank: bool,
    /// Token ids to suppress; -1 means the model's default set.
    pub suppress_tokens: Vec<i32>,
    pub without_timestamps: bool,
    pub max_initial_timestamp: f32,
    pub word_timestamps: bool,
    /// Skip stretches of silence before decoding.
    pub vad_filter: bool,
    /// Sequential windows or batches of speech chunks.
    pub mode: DecodeMode,
    /// Chunks per batch in batched mode.
    pub batch_size: usize,
    /// The speech detector's settings in batched mode.
    pub vad: pipeline_vad::VadOptions,
}

impl Default for DecodeOptions {
    fn default() -> Self {
        Self {
            language: None,
            task: Task::Transcribe,
            beam_size: 5,
            best_of: 5,
            patience: 1.0,
            length_penalty: 1.0,
            repetition_penalty: 1.0,
            no_repeat_ngram_size: 0,
            temperatures: pipeline_core::decoding::temperature_schedule(
                pipeline_core::decoding::DEFAULT_TEMPERATURE_INCREMENT,
            ),
            compression_ratio_threshold: Some(2.4),
            log_prob_threshold: Some(-1.0),
            no_speech_threshold: Some(0.6),
            condition_on_previous_text: true,
            prompt_reset_on_temperature: 0.5,
            initial_prompt: None,
            hotwords: None,
            suppress_blank: true,
            suppress_tokens: vec![-1],
            without_timestamps: false,
            max_initial_timestamp: 1.0,
            word_timestamps: false,
            vad_filter: false,
            mode: DecodeMode::Sequential,
            batch_size: 8,
            vad: pipeline_vad::VadOptions::default(),
        }
    }
}

/// How to load the model; the defaults suit a CPU.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct EngineOptions {
    /// `int8`, `int8_float32`, `float32` (and what CTranslate2 accepts besides).
    pub compute_type: String,
    /// Threads per replica; 0 means one per core.
    pub threads: usize,
    /// Model replicas (each loaded on its own): that many transcriptions
    /// decode in parallel, each on a replica of its own.
    pub replicas: usize,
    /// `cpu`, `cuda` (an NVIDIA GPU, through the CUDA runtime inside the
    /// CTranslate2 library and cuBLAS 12 loaded at run time) or `auto`
    /// (CUDA when a device is seen, else the CPU).
    pub device: String,
    /// The ONNX Runtime library the speech detector runs on (batched mode).
    pub onnxruntime: Option<std::path::PathBuf>,
    /// The Silero VAD model (batched mode).
    pub vad_model: Option<std::path::PathBuf>,
}

impl Default for EngineOptions {
    fn default() -> Self {
        Self {
            compute_type: "int8".to_string(),
            threads: 0,
            replicas: 1,
            device: "cpu".to_string(),
            onnxruntime: None,
            vad_model: None,
        }
    }
}
